//! The client of the source application: its token and api-version on every request, a request
//! rate it keeps under, `429` answered by waiting its `Retry-After`, 5xx and connection errors
//! retried with a doubling, bounded backoff, and lists followed through their `nextLink`s, only
//! where they stay on the source (the token goes with every request).

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The stable api-version: templates, devices, groups, enrollment groups, tokens.
pub const STABLE: &str = "2022-07-31";
/// The preview in which IoT Central has scheduled jobs.
pub const PREVIEW: &str = "2022-10-31-preview";

/// Attempts of one request before it fails (429s, 5xx and connection errors).
const MAX_ATTEMPTS: u32 = 8;
/// The first retry's wait; it doubles on each retry, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured as given; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Most pages a list is followed through: a `nextLink` that loops must not hang the import.
const MAX_PAGES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: the source answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: the answer is not the JSON expected: {reason}")]
    Shape { url: String, reason: String },
    #[error("{0}: more pages than any application has; the nextLinks loop")]
    EndlessList(String),
    #[error(
        "{link}: a nextLink away from the source ({origin}, as --from names it); not followed, \
         so that the source's API token is not sent there"
    )]
    ForeignNextLink { link: String, origin: String },
    #[error("{base}: not a URL: {reason}")]
    BadBase { base: String, reason: String },
}

pub struct Client {
    http: reqwest::Client,
    /// The source's base, without `/api` and without a trailing slash.
    base: String,
    /// The same, parsed: a `nextLink` is followed only at its scheme, host and port.
    origin: Url,
    token: String,
    /// The time of the next request this client may send, for the rate.
    next_slot: Mutex<Instant>,
    interval: Duration,
}

impl Client {
    /// A client of the application at `base` (`https://<app>.azureiotcentral.com` or any base),
    /// sending at most `rate` requests a second.
    pub fn new(base: &str, token: String, rate: u32) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/api").unwrap_or(base).to_string();
        let origin = Url::parse(&base).map_err(|error| ClientError::BadBase {
            base: base.clone(),
            reason: error.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: base.clone(),
                source,
            })?;
        Ok(Client {
            http,
            base,
            origin,
            token,
            next_slot: Mutex::new(Instant::now()),
            interval: Duration::from_secs(1) / rate.max(1),
        })
    }

    /// The URL of an API path (relative to `/api`, segments encoded) at `version`.
    pub fn url(&self, path: &str, version: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}/api{path}{separator}api-version={version}", self.base)
    }

    /// GET of a path; `None` when the source answers 404.
    pub async fn get(&self, path: &str, version: &str) -> Result<Option<Value>, ClientError> {
        self.get_url(&self.url(path, version)).await
    }

    /// Every item of a list, following `nextLink` (absolute, as IoT Central gives it) while it
    /// stays on the source.
    pub async fn list(&self, path: &str, version: &str) -> Result<Vec<Value>, ClientError> {
        let mut pages = self.pages(path, version);
        let mut items = Vec::new();
        while let Some(page) = pages.next(self).await? {
            items.extend(page);
        }
        Ok(items)
    }

    /// A list read a page at a time, so that a long one (devices) is never held whole.
    pub fn pages(&self, path: &str, version: &str) -> Pages {
        Pages {
            path: path.to_string(),
            next: Some(Ok(self.url(path, version))),
            read: 0,
        }
    }

    /// Waits for this request's slot under the rate.
    async fn pace(&self) {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// PUT of a JSON body (idempotent: a retry after a lost answer writes the same); `None`
    /// when the source answers 404.
    pub async fn put(
        &self,
        path: &str,
        version: &str,
        body: &Value,
    ) -> Result<Option<Value>, ClientError> {
        self.send(reqwest::Method::PUT, &self.url(path, version), Some(body))
            .await
    }

    async fn get_url(&self, url: &str) -> Result<Option<Value>, ClientError> {
        self.send(reqwest::Method::GET, url, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            self.pace().await;
            let mut request = self
                .http
                .request(method.clone(), url)
                .header("Authorization", &self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let sent = request.send().await;
            let wait = match sent {
                Ok(response) if response.status().is_success() => {
                    let text =
                        response
                            .text()
                            .await
                            .map_err(|source| ClientError::Unreachable {
                                url: url.to_string(),
                                source,
                            })?;
                    return serde_json::from_str(&text).map(Some).map_err(|error| {
                        ClientError::Shape {
                            url: url.to_string(),
                            reason: error.to_string(),
                        }
                    });
                }
                Ok(response) if response.status() == StatusCode::NOT_FOUND => return Ok(None),
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    retry_after(response.headers()).unwrap_or(backoff)
                }
                Ok(response) if response.status().is_server_error() => backoff,
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    return Err(ClientError::Status {
                        url: url.to_string(),
                        status,
                        body,
                    });
                }
                Err(source) if attempt >= MAX_ATTEMPTS => {
                    return Err(ClientError::Unreachable {
                        url: url.to_string(),
                        source,
                    });
                }
                Err(_) => backoff,
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(ClientError::Status {
                    url: url.to_string(),
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: format!("still refused after {MAX_ATTEMPTS} attempts"),
                });
            }
            tracing::debug!(url, attempt, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A list's pages, read one by one through `Pages::next`.
pub struct Pages {
    path: String,
    /// The next page's URL, or why the last page's `nextLink` is not followed (an error only
    /// once the pages before it are read).
    next: Option<Result<String, ClientError>>,
    read: usize,
}

impl Pages {
    /// The next page's items; `None` after the last page; `ForeignNextLink` when the page
    /// before named one away from the source.
    pub async fn next(&mut self, client: &Client) -> Result<Option<Vec<Value>>, ClientError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let url = url?;
        self.read += 1;
        if self.read > MAX_PAGES {
            return Err(ClientError::EndlessList(self.path.clone()));
        }
        let page = client
            .get_url(&url)
            .await?
            .ok_or_else(|| ClientError::Status {
                url: url.clone(),
                status: StatusCode::NOT_FOUND,
                body: String::new(),
            })?;
        let Some(Value::Array(items)) = page.get("value") else {
            return Err(ClientError::Shape {
                url,
                reason: "no `value` array".into(),
            });
        };
        let items = items.clone();
        self.next = page
            .get("nextLink")
            .and_then(Value::as_str)
            .map(|link| next_page(&client.origin, &url, link));
        Ok(Some(items))
    }
}

/// The URL of the page a `nextLink` names (resolved against the page that gave it, should it be
/// relative), when it has the source's scheme, host and port: the client sends the source's
/// token with every request, so a link elsewhere (another host, a port, plain `http`) is never
/// followed. IoT Central's `nextLink`s are absolute `https` URLs on the application's own host.
fn next_page(origin: &Url, page: &str, link: &str) -> Result<String, ClientError> {
    let foreign = || ClientError::ForeignNextLink {
        link: link.to_string(),
        origin: origin.origin().ascii_serialization(),
    };
    let next = Url::parse(page)
        .and_then(|page| page.join(link))
        .map_err(|_| foreign())?;
    if next.origin() != origin.origin() {
        return Err(foreign());
    }
    Ok(next.into())
}

/// A `Retry-After` in seconds (IoT Central's form) or as an HTTP date (RFC 9110's other form:
/// the wait is until then, none when it is past), bounded.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    retry_after_at(headers, jiff::Timestamp::now())
}

fn retry_after_at(headers: &reqwest::header::HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Duration::from_secs_f64(seconds),
        Ok(_) => return None,
        Err(_) => {
            let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
            let ms = date.as_millisecond() - now.as_millisecond();
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A path segment, percent-encoded.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(reqwest::header::RETRY_AFTER, "100000".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn retry_after_as_an_http_date_waits_until_then() {
        let now: jiff::Timestamp = "2015-10-21T07:27:53Z".parse().unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after_at(&headers, now), Some(Duration::from_secs(7)));
        // A date past is no wait; a date far ahead is bounded.
        let later: jiff::Timestamp = "2015-10-22T00:00:00Z".parse().unwrap();
        assert_eq!(retry_after_at(&headers, later), Some(Duration::ZERO));
        let earlier: jiff::Timestamp = "2015-10-20T00:00:00Z".parse().unwrap();
        assert_eq!(retry_after_at(&headers, earlier), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("th-00001"), "th-00001");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn a_next_link_is_followed_only_at_the_sources_scheme_host_and_port() {
        let origin = Url::parse("https://myapp.azureiotcentral.com").unwrap();
        let page = "https://myapp.azureiotcentral.com/api/devices?api-version=2022-07-31";
        let next =
            "https://myapp.azureiotcentral.com/api/devices?api-version=2022-07-31&$skiptoken=x";
        assert_eq!(next_page(&origin, page, next).unwrap(), next);
        // The same origin spelled otherwise: the default port, the host's case, a relative link.
        for same in [
            "https://myapp.azureiotcentral.com:443/api/devices?$skiptoken=x",
            "https://MyApp.AzureIoTCentral.com/api/devices?$skiptoken=x",
            "/api/devices?$skiptoken=x",
            "devices?$skiptoken=x",
        ] {
            assert_eq!(
                next_page(&origin, page, same).unwrap(),
                "https://myapp.azureiotcentral.com/api/devices?$skiptoken=x",
                "{same}"
            );
        }
        for foreign in [
            "https://elsewhere.example/api/devices?$skiptoken=x",
            "https://myapp.azureiotcentral.com.elsewhere.example/api/devices",
            "https://myapp.azureiotcentral.com@elsewhere.example/api/devices",
            "https://myapp.azureiotcentral.com:8443/api/devices",
            "http://myapp.azureiotcentral.com/api/devices",
            "//elsewhere.example/api/devices",
            "file:///etc/passwd",
            "https://[::1/api/devices",
        ] {
            let refused = next_page(&origin, page, foreign).unwrap_err();
            assert!(
                matches!(&refused, ClientError::ForeignNextLink { link, origin }
                    if link == foreign && origin == "https://myapp.azureiotcentral.com"),
                "{foreign}: {refused}"
            );
        }
        // A source on plain http and a port of its own (a Flotilla on loopback) is followed there.
        let local = Url::parse("http://127.0.0.1:8080").unwrap();
        let page = "http://127.0.0.1:8080/api/jobs";
        assert!(next_page(&local, page, "http://127.0.0.1:8080/api/jobs?$skiptoken=y").is_ok());
        assert!(next_page(&local, page, "http://localhost:8080/api/jobs?$skiptoken=y").is_err());
        assert!(next_page(&local, page, "http://127.0.0.1:8081/api/jobs?$skiptoken=y").is_err());
    }

    #[test]
    fn a_base_that_is_not_a_url_is_refused() {
        assert!(matches!(
            Client::new("myapp.azureiotcentral.com", "t".into(), 20),
            Err(ClientError::BadBase { .. })
        ));
    }

    #[test]
    fn the_base_may_end_in_api_or_a_slash() {
        for base in [
            "https://app.example",
            "https://app.example/",
            "https://app.example/api",
        ] {
            let client = Client::new(base, "t".into(), 20).unwrap();
            assert_eq!(
                client.url("/devices", STABLE),
                "https://app.example/api/devices?api-version=2022-07-31"
            );
        }
    }
}
