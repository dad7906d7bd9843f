//! The REST client: the base URL, the token and the api-version on every request, IoT Central's
//! error shape turned into [`ApiFailure`], and lists followed through their `nextLink`s.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::{ApiFailure, CliError, Result};

/// The stable api-version, which IoT Central's jobs, devices, groups and tokens speak.
pub const STABLE: &str = "2022-07-31";
/// The preview that has scheduled jobs in IoT Central.
pub const PREVIEW: &str = "2022-10-31-preview";

/// Most pages a list is followed through: a `nextLink` that loops must not hang the CLI.
const MAX_PAGES: usize = 100_000;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The server's base, without `/api` and without a trailing slash.
    base: String,
    token: String,
    version: String,
}

impl Client {
    pub fn new(http: reqwest::Client, base: &str, token: String, version: String) -> Client {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/api").unwrap_or(base).to_string();
        Client {
            http,
            base,
            token,
            version,
        }
    }

    /// The same client speaking another api-version.
    pub fn with_version(&self, version: &str) -> Client {
        Client {
            version: version.to_string(),
            ..self.clone()
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The URL of an API path (relative to `/api`, segments already encoded) with the version.
    pub fn url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!(
            "{}/api{path}{separator}api-version={}",
            self.base, self.version
        )
    }

    /// A request with the token, to a full URL.
    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("Authorization", &self.token)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let url = self.url(path);
        self.send_url(Method::GET, &url, None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        self.send_url(Method::PUT, &url, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        self.send_url(Method::PATCH, &url, Some(body)).await
    }

    /// POSTs; an answer without a body (204) is `Null`.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = self.url(path);
        self.send_url(Method::POST, &url, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        let url = self.url(path);
        self.send_url(Method::DELETE, &url, None).await
    }

    /// Sends a request and returns the JSON body (`Null` when empty), or the API's error.
    pub async fn send_url(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Value> {
        let mut request = self.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| unreachable(url, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| unreachable(url, e))?;
        if !status.is_success() {
            return Err(CliError::Api(failure(status, &text)));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            CliError::Api(ApiFailure {
                status: status.as_u16(),
                code: "InvalidResponse".into(),
                message: format!("the answer is not JSON ({e})"),
                request_id: None,
            })
        })
    }

    /// Every item of a list: `value` of each page, following `nextLink` (an absolute URL, sent
    /// as it is: it carries the api-version and the page's position).
    pub async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut url = self.url(path);
        for _ in 0..MAX_PAGES {
            let page = self.send_url(Method::GET, &url, None).await?;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => url = next.to_string(),
                _ => return Ok(items),
            }
        }
        Err(CliError::Reported(format!(
            "{path}: more than {MAX_PAGES} pages; the server's nextLink seems to loop"
        )))
    }
}

pub fn unreachable(url: &str, source: reqwest::Error) -> CliError {
    // The URL without its query: the api-version adds nothing to the message.
    let url = url.split('?').next().unwrap_or(url).to_string();
    CliError::Unreachable {
        url,
        source: source.without_url(),
    }
}

/// IoT Central's error body, or a stand-in naming the status when the body has another shape.
pub fn failure(status: StatusCode, text: &str) -> ApiFailure {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = &body["error"];
    let code = error["code"].as_str();
    let message = error["message"].as_str();
    match (code, message) {
        (Some(code), Some(message)) => ApiFailure {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.to_string(),
            request_id: error["requestId"].as_str().map(str::to_string),
        },
        _ => {
            let text: String = text.trim().chars().take(300).collect();
            ApiFailure {
                status: status.as_u16(),
                code: status
                    .canonical_reason()
                    .unwrap_or("Error")
                    .replace(' ', ""),
                message: if text.is_empty() {
                    "the server answered without a body".into()
                } else {
                    text
                },
                request_id: None,
            }
        }
    }
}

/// Percent-encodes one path segment (DTMIs hold ';' and ':'; ids may hold anything).
pub fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_version_once_and_drop_a_trailing_api() {
        let client = Client::new(
            reqwest::Client::new(),
            "http://h:1/api/",
            "t".into(),
            STABLE.into(),
        );
        assert_eq!(
            client.url("/jobs"),
            "http://h:1/api/jobs?api-version=2022-07-31"
        );
        assert_eq!(
            client.url("/jobs?x=1"),
            "http://h:1/api/jobs?x=1&api-version=2022-07-31"
        );
        assert_eq!(segment("dtmi:a:b;1"), "dtmi:a:b%3B1");
    }

    #[test]
    fn errors_read_iot_centrals_shape_or_name_the_status() {
        let found = failure(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"NotFound","message":"no","requestId":"r1","time":"t"}}"#,
        );
        assert_eq!(found.to_string(), "404 NotFound: no (requestId r1)");
        let other = failure(StatusCode::BAD_GATEWAY, "");
        assert_eq!(
            other.to_string(),
            "502 BadGateway: the server answered without a body"
        );
    }
}
