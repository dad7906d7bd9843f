//! Lists: `{"value": [...], "nextLink": "..."}`, where `nextLink` is an absolute URL that the
//! client GETs as it is. Pages are keyset pages over the id; the `$skiptoken` carries the last
//! id of the page before, so deep pages cost no more than the first.

use axum::http::{HeaderMap, Uri};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_store::{Page, PageRequest};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;

/// Page size when the client gives none (IoT Central's documented default).
pub const DEFAULT_PAGE_SIZE: usize = 25;
pub const MAX_PAGE_SIZE: usize = 100;

/// Where a list request starts and how long its page is, from its query string.
pub struct ListQuery {
    after: Option<String>,
    size: usize,
}

impl ListQuery {
    /// `maxpagesize` (1..100) exists only in the preview version; the stable version declares no
    /// paging parameter, so there it is ignored like any unknown parameter.
    pub fn parse(uri: &Uri, caller: &Caller) -> Result<Self, ApiError> {
        let mut after = None;
        let mut size = DEFAULT_PAGE_SIZE;
        for (key, value) in query_pairs(uri) {
            match key.as_str() {
                "$skiptoken" | "skiptoken" => {
                    let decoded = URL_SAFE_NO_PAD
                        .decode(value.as_bytes())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| {
                            ApiError::bad_request("The $skiptoken is not one this server issued.")
                        })?;
                    after = Some(decoded);
                }
                "maxpagesize" if caller.version.is_preview() => {
                    size = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "The query parameter 'maxpagesize' must be a whole number from 1 to {MAX_PAGE_SIZE}, not '{value}'."
                            ))
                        })?;
                }
                "filter" | "orderby" if caller.version.is_preview() => {
                    return Err(ApiError::bad_request(format!(
                        "The query parameter '{key}' is not supported by this server yet."
                    )));
                }
                _ => {}
            }
        }
        Ok(ListQuery { after, size })
    }

    pub fn page(&self) -> PageRequest<'_> {
        PageRequest {
            after: self.after.as_deref(),
            size: self.size,
        }
    }
}

/// The response body of a list: the page's items and, when more follow, a `nextLink` to them.
pub fn list_body<T>(
    page: Page<T>,
    last_id: impl Fn(&T) -> &str,
    render: impl Fn(&T) -> Value,
    uri: &Uri,
    headers: &HeaderMap,
) -> Value {
    let value: Vec<Value> = page.items.iter().map(&render).collect();
    let mut body = json!({"value": value});
    if page.more
        && let Some(last) = page.items.last()
    {
        body["nextLink"] = json!(next_link(uri, headers, last_id(last)));
    }
    body
}

/// The absolute URL of the next page: this request's URL, with the skip token replaced.
fn next_link(uri: &Uri, headers: &HeaderMap, last_id: &str) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    let mut query: Vec<String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && key != "$skiptoken" && key != "skiptoken"
        })
        .map(str::to_string)
        .collect();
    query.push(format!("$skiptoken={}", URL_SAFE_NO_PAD.encode(last_id)));
    format!("{scheme}://{host}{}?{}", uri.path(), query.join("&"))
}

/// The query string's pairs, percent-decoded.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(percent_decode("%24skiptoken"), "$skiptoken");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
