//! Webhooks: where job events are POSTed, and which. A webhook's body is validated field by
//! field (`WebhookSpec::from_json`); its secret is write-only (`WebhookBody` has no field for it).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::validate::{Fields, Invalid};

/// The events a webhook can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
pub enum WebhookEvent {
    /// A job's status changed.
    #[serde(rename = "job.status")]
    JobStatus,
    /// A job's device counts (coalesced).
    #[serde(rename = "job.progress")]
    JobProgress,
    /// Devices of a job finished (several per delivery).
    #[serde(rename = "job.device")]
    JobDevice,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 3] = [
        WebhookEvent::JobStatus,
        WebhookEvent::JobProgress,
        WebhookEvent::JobDevice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::JobStatus => "job.status",
            WebhookEvent::JobProgress => "job.progress",
            WebhookEvent::JobDevice => "job.device",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookEvent> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// A secret's length in characters.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;
const MAX_DISPLAY_NAME_LEN: usize = 200;

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub events: Vec<WebhookEvent>,
    pub display_name: Option<String>,
}

impl Webhook {
    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events.contains(&event)
    }

    /// The webhook as the API shows it: never its secret.
    pub fn body(&self) -> WebhookBody {
        WebhookBody {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            display_name: self.display_name.clone(),
        }
    }
}

/// A webhook as the API shows it (this type is also its OpenAPI schema). `PUT` also takes
/// `secret` (16 to 256 characters), which is never returned.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody {
    /// Unique ID of the webhook (the path's `webhookId`).
    #[schema(read_only)]
    pub id: String,
    /// Where deliveries are POSTed: an absolute `http` or `https` URL.
    pub url: String,
    /// The events wanted: `job.status`, `job.progress`, `job.device`.
    pub events: Vec<WebhookEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
}

/// A validated `PUT` body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: String,
    pub secret: String,
    pub events: Vec<WebhookEvent>,
    pub display_name: Option<String>,
}

impl WebhookSpec {
    /// Checks a `PUT` body field by field; the first refusal names its field.
    pub fn from_json(body: &Value) -> Result<WebhookSpec, Invalid> {
        let fields = Fields::of(body)?;
        if let Some(unknown) = fields
            .keys()
            .find(|k| !["id", "url", "secret", "events", "displayName"].contains(&k.as_str()))
        {
            return Err(Invalid::field(unknown, "is not a field of a webhook"));
        }
        let url = fields.required_string("url")?;
        check_url(url)?;
        let secret = fields.required_string("secret")?;
        let length = secret.chars().count();
        if !SECRET_LEN.contains(&length) {
            return Err(Invalid::field(
                "secret",
                format_args!(
                    "must be {} to {} characters long",
                    SECRET_LEN.start(),
                    SECRET_LEN.end()
                ),
            ));
        }
        let names = fields
            .array("events")?
            .ok_or_else(|| Invalid::field("events", "is required"))?;
        if names.is_empty() {
            return Err(Invalid::field("events", "must name at least one event"));
        }
        let mut events = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let field = format!("events[{i}]");
            let event = name.as_str().and_then(WebhookEvent::parse).ok_or_else(|| {
                Invalid::field(
                    &field,
                    "must be one of 'job.status', 'job.progress', 'job.device'",
                )
            })?;
            if events.contains(&event) {
                return Err(Invalid::field(&field, "repeats an event named before"));
            }
            events.push(event);
        }
        let display_name = fields
            .bounded_string("displayName", MAX_DISPLAY_NAME_LEN)?
            .map(str::to_string);
        Ok(WebhookSpec {
            url: url.to_string(),
            secret: secret.to_string(),
            events,
            display_name,
        })
    }
}

/// An absolute `http` or `https` URL with a host.
fn check_url(url: &str) -> Result<(), Invalid> {
    if url.chars().count() > MAX_URL_LEN {
        return Err(Invalid::field(
            "url",
            format_args!("must be at most {MAX_URL_LEN} characters long"),
        ));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| Invalid::field("url", format_args!("is not an absolute URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Invalid::field("url", "must be an http or https URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::field("url", "must name a host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(body: Value) -> String {
        WebhookSpec::from_json(&body).unwrap_err().field
    }

    #[test]
    fn a_body_is_checked_field_by_field() {
        let good = json!({"url": "https://example.com/hook", "secret": "0123456789abcdef",
                          "events": ["job.status", "job.device"]});
        let spec = WebhookSpec::from_json(&good).unwrap();
        assert_eq!(
            spec.events,
            [WebhookEvent::JobStatus, WebhookEvent::JobDevice]
        );
        let with = |key: &str, value: Value| {
            let mut body = good.clone();
            body[key] = value;
            body
        };
        assert_eq!(field_of(with("url", json!("ftp://example.com/"))), "url");
        assert_eq!(field_of(with("url", json!("/relative"))), "url");
        assert_eq!(field_of(with("url", json!(3))), "url");
        assert_eq!(field_of(with("secret", json!("short"))), "secret");
        assert_eq!(field_of(with("events", json!([]))), "events");
        assert_eq!(field_of(with("events", json!(["job.nope"]))), "events[0]");
        assert_eq!(
            field_of(with("events", json!(["job.status", "job.status"]))),
            "events[1]"
        );
        assert_eq!(field_of(with("extra", json!(1))), "extra");
        assert_eq!(field_of(json!({"secret": "0123456789abcdef"})), "url");
    }
}
