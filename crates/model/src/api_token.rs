//! API tokens: what a client authenticates with. The value looks like IoT Central's
//! (`SharedAccessSignature sr=...&sig=...&skn=<tokenId>&se=<ms>`); only its hash is stored.

use base64::Engine;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::Invalid;
use crate::keys::random_bytes;
use crate::roles;
use crate::validate::Fields;

/// A role held, optionally within an organization.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoleAssignment {
    /// The role's ID (one of the built-in roles).
    pub role: String,
    /// The organization the role applies in.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub organization: Option<String>,
}

/// A token as stored (never its value).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: String,
    pub roles: Vec<RoleAssignment>,
    pub expiry: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ApiTokenSpec {
    pub roles: Vec<RoleAssignment>,
    pub expiry: Timestamp,
}

pub const READ_ONLY: &[&str] = &["id", "token"];

/// An API token as the API shows it; its value (`token`) only in the response that creates it
/// (this type is also its OpenAPI schema).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiToken)]
pub struct ApiTokenBody {
    /// Unique ID of the API token (the path's `tokenId`).
    #[schema(read_only)]
    pub id: String,
    /// The roles the token holds; at least one.
    #[schema(min_items = 1)]
    pub roles: Vec<RoleAssignment>,
    /// When the token expires (UTC, with milliseconds); a year after its creation by default.
    #[schema(required = false, format = DateTime)]
    pub expiry: String,
    /// The token's value, to send in the `Authorization` header; only in the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false)]
    pub token: Option<String>,
}

impl ApiToken {
    /// `token` is the value, shown only in the response that creates it.
    pub fn body(&self, token: Option<String>) -> ApiTokenBody {
        ApiTokenBody {
            id: self.id.clone(),
            roles: self.roles.clone(),
            expiry: format_time(self.expiry),
            token,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.role == role)
    }
}

/// Timestamps in responses: RFC 3339 in UTC with milliseconds, as IoT Central writes them.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl ApiTokenSpec {
    /// Validates a create body. Tokens expire after a year unless `expiry` says otherwise.
    pub fn from_json(body: &Value, now: Timestamp) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        let items = fields
            .array("roles")?
            .ok_or_else(|| Invalid::field("roles", "is required"))?;
        if items.is_empty() {
            return Err(Invalid::field(
                "roles",
                "must hold at least one role assignment",
            ));
        }
        let mut assignments = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("roles[{i}]");
            let item = Fields::nested(item, &at)?;
            let role = item.required_string("role")?;
            if roles::find(role).is_none() {
                return Err(Invalid::field(
                    &item.name("role"),
                    format_args!("names the role '{role}', which does not exist"),
                ));
            }
            assignments.push(RoleAssignment {
                role: role.to_string(),
                organization: item.string("organization")?.map(str::to_string),
            });
        }
        let expiry = match fields.string("expiry")? {
            None => now
                .to_zoned(jiff::tz::TimeZone::UTC)
                .checked_add(1.year())
                .map_err(|e| Invalid::field("expiry", e))?
                .timestamp(),
            Some(text) => {
                let expiry: Timestamp = text.parse().map_err(|_| {
                    Invalid::field("expiry", "must be a date-time such as 2030-01-01T00:00:00Z")
                })?;
                if expiry <= now {
                    return Err(Invalid::field("expiry", "must be in the future"));
                }
                expiry
            }
        };
        Ok(ApiTokenSpec {
            roles: assignments,
            expiry,
        })
    }
}

/// A new token value for `token_id`, in IoT Central's format.
pub fn new_token_value(token_id: &str, app: &str, expiry: Timestamp) -> String {
    let sig = base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>());
    let sig = utf8_percent_encode(&sig);
    format!(
        "SharedAccessSignature sr={app}&sig={sig}&skn={token_id}&se={}",
        expiry.as_millisecond()
    )
}

/// The hash a token is stored and looked up by: SHA-256 of the value exactly as issued.
pub fn token_hash(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token value inside an `Authorization` header: `SharedAccessSignature ...` as sent, or
/// `Bearer <value>`, where a value starting `sr=` gets the `SharedAccessSignature ` prefix back.
/// Anything else is taken as it is (an operator may supply a token of any form).
pub fn token_from_header(header: &str) -> Option<String> {
    const SAS: &str = "SharedAccessSignature ";
    let header = header.trim();
    let value = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .unwrap_or(header)
        .trim();
    if value.is_empty() {
        None
    } else if value.starts_with("sr=") {
        Some(format!("{SAS}{value}"))
    } else {
        Some(value.to_string())
    }
}

fn utf8_percent_encode(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn token_values_and_headers() {
        let expiry: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let value = new_token_value("ops", "app-1", expiry);
        assert!(value.starts_with("SharedAccessSignature sr=app-1&sig="));
        assert!(value.ends_with(&format!("&skn=ops&se={}", expiry.as_millisecond())));
        assert_eq!(token_from_header(&value).as_deref(), Some(value.as_str()));
        assert_eq!(
            token_from_header(&format!("Bearer {value}")).as_deref(),
            Some(value.as_str())
        );
        let bare = value.trim_start_matches("SharedAccessSignature ");
        assert_eq!(
            token_from_header(&format!("Bearer {bare}")).as_deref(),
            Some(value.as_str())
        );
        assert_eq!(token_from_header("   "), None);
        assert_eq!(
            token_from_header("my-own-secret").as_deref(),
            Some("my-own-secret")
        );
        assert_eq!(token_hash("a").len(), 64);
    }

    #[test]
    fn spec_validation() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let spec =
            ApiTokenSpec::from_json(&json!({"roles": [{"role": roles::OPERATOR}]}), now).unwrap();
        assert_eq!(format_time(spec.expiry), "2027-01-01T00:00:00.000Z");
        let err = ApiTokenSpec::from_json(&json!({"roles": []}), now).unwrap_err();
        assert_eq!(err.field, "roles");
        let err = ApiTokenSpec::from_json(&json!({"roles": [{"role": "x"}]}), now).unwrap_err();
        assert_eq!(err.field, "roles[0].role");
        let err = ApiTokenSpec::from_json(
            &json!({"roles": [{"role": roles::OPERATOR}], "expiry": "2020-01-01T00:00:00Z"}),
            now,
        )
        .unwrap_err();
        assert_eq!(err.field, "expiry");
    }
}
