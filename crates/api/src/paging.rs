//! Lists: `{"value": [...], "nextLink": "..."}`, where `nextLink` is an absolute URL that the
//! client GETs as it is. Pages are keyset pages over the id; the `$skiptoken` carries the last
//! id of the page before, so deep pages cost no more than the first.

use axum::http::Uri;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_store::{Page, PageRequest};

use crate::auth::Caller;
use crate::collections::Collection;
use crate::error::ApiError;
use crate::origin::Origin;
use crate::query::query_pairs;
use crate::version::ApiVersion;

/// Page size when the client gives none (IoT Central's documented default).
pub const DEFAULT_PAGE_SIZE: usize = 25;
pub const MAX_PAGE_SIZE: usize = 100;

/// Where a list request starts and how long its page is, from its query string.
pub struct ListQuery {
    after: Option<String>,
    size: usize,
}

impl ListQuery {
    /// The page size comes from the parameter the caller's version declares (`maxpagesize` on
    /// 2022-10-31-preview, OData's `$top` on 2022-06-30-preview, both 1..100); the stable
    /// version declares none, so there it is ignored like any unknown parameter.
    pub fn parse(uri: &Uri, caller: &Caller) -> Result<Self, ApiError> {
        let mut after = None;
        let mut size = DEFAULT_PAGE_SIZE;
        let page_size = caller.version.page_size_parameter();
        for (key, value) in query_pairs(uri.query()) {
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
                name if Some(name) == page_size => {
                    size = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "The query parameter '{key}' must be a whole number from 1 to {MAX_PAGE_SIZE}, not '{value}'."
                            ))
                        })?;
                }
                // 2022-10-31-preview's own list expressions: refused rather than answered
                // with a silently unfiltered list. (2022-06-30-preview's OData `$filter` and
                // `$orderby`, which the Azure CLI adds, are ignored like unknown parameters.)
                "filter" | "orderby" if caller.version == ApiVersion::V2022_10_31Preview => {
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
pub fn list_body<T, C: Collection>(
    page: Page<T>,
    last_id: impl Fn(&T) -> &str,
    render: impl Fn(&T) -> C::Item,
    uri: &Uri,
    origin: &Origin,
) -> C {
    let next_link = match page.items.last() {
        Some(last) if page.more => Some(next_link(uri, origin, last_id(last))),
        _ => None,
    };
    C::new(page.items.iter().map(render).collect(), next_link)
}

/// The absolute URL of the next page: this request's URL on the client's [`Origin`], with the
/// skip token replaced.
fn next_link(uri: &Uri, origin: &Origin, last_id: &str) -> String {
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
    origin.url(&format!("{}?{}", uri.path(), query.join("&")))
}

#[cfg(test)]
mod tests {
    use flotilla_model::device::Device;

    use super::*;
    use crate::collections::DeviceCollection;

    fn device(id: &str) -> Device {
        Device {
            id: id.into(),
            etag: "\"e\"".into(),
            display_name: id.into(),
            template: None,
            enabled: true,
            provisioned: false,
            simulated: false,
            organizations: vec![],
        }
    }

    #[test]
    fn a_page_links_to_the_next_only_when_more_follow() {
        let uri: Uri = "/api/devices?api-version=2022-07-31&$skiptoken=ZDA"
            .parse()
            .unwrap();
        let origin = Origin {
            scheme: "https",
            host: "flotilla.example".into(),
        };
        let render = |more| {
            let page = Page {
                items: vec![device("d1"), device("d2")],
                more,
            };
            list_body::<_, DeviceCollection>(page, |d| &d.id, Device::clone, &uri, &origin)
        };
        let last = serde_json::to_value(render(false)).unwrap();
        assert_eq!(last.as_object().unwrap().len(), 1, "{last}");
        assert_eq!(last["value"][1]["id"], "d2");
        let next = render(true).next_link.unwrap();
        assert_eq!(
            next,
            format!(
                "https://flotilla.example/api/devices?api-version=2022-07-31&$skiptoken={}",
                URL_SAFE_NO_PAD.encode("d2")
            )
        );
    }
}
