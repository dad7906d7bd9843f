//! The export of a job's devices (`GET /jobs/{id}/devices` with `Accept: text/csv` or
//! `application/x-ndjson`): every device, in the job's order, read in keyset pages and sent as
//! each page is read, so a job of any size streams in constant memory, at any time.

use axum::body::Body;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use flotilla_model::api_token::format_time;
use flotilla_model::job_state::DeviceStatus;
use flotilla_model::rollout::reason_code::ReasonCode;
use flotilla_store::{JobDevice, Store};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Devices read per page while streaming.
const PAGE: usize = 1000;

/// The formats an export comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    NdJson,
}

impl Format {
    /// The export format the `Accept` header asks for, if any (else the JSON pages answer).
    /// The first of the two media types named wins; quality values are not weighed.
    pub fn requested(headers: &HeaderMap) -> Option<Format> {
        let accept = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for range in accept.flat_map(|v| v.split(',')) {
            let media = range.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("text/csv") {
                return Some(Format::Csv);
            }
            if media.eq_ignore_ascii_case("application/x-ndjson") {
                return Some(Format::NdJson);
            }
        }
        None
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::NdJson => "application/x-ndjson",
        }
    }

    /// What comes before the rows.
    fn header(self) -> &'static str {
        match self {
            Format::Csv => "id,status,reasonCode,reason,responseCode,attempts,start,end\n",
            Format::NdJson => "",
        }
    }

    fn row(self, device: &JobDevice) -> String {
        let row = ExportedDevice::of(device);
        match self {
            Format::Csv => row.csv_line(),
            Format::NdJson => {
                let mut line = serde_json::to_string(&row).expect("rows serialize");
                line.push('\n');
                line
            }
        }
    }
}

/// One device in an export (an NDJSON line; a CSV row has the same columns in this order).
/// Every key is present; a value the device does not have is `null` (empty in CSV).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportedDevice {
    pub id: String,
    pub status: DeviceStatus,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<String>,
    /// For a command job, the status code the device answered with.
    #[schema(value_type = Option<i64>)]
    pub response_code: Option<Value>,
    /// How many times the device's operation started (0 while it waits for its first).
    pub attempts: i64,
    /// When its operation last started.
    #[schema(format = DateTime)]
    pub start: Option<String>,
    /// When it finished.
    #[schema(format = DateTime)]
    pub end: Option<String>,
}

impl ExportedDevice {
    fn of(device: &JobDevice) -> ExportedDevice {
        let time = |ms: i64| format_time(jiff::Timestamp::from_millisecond(ms).unwrap_or_default());
        ExportedDevice {
            id: device.device_id.clone(),
            status: device.status,
            reason_code: ReasonCode::of_device(device.status, device.reason_code),
            reason: device.reason.clone(),
            response_code: device
                .detail
                .as_ref()
                .and_then(|d| d.get("responseCode"))
                .cloned(),
            attempts: device.attempts,
            start: device.started_ms.map(time),
            end: device.finished_ms.map(time),
        }
    }

    fn csv_line(&self) -> String {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let fields = [
            self.id.clone(),
            self.status.as_str().to_string(),
            self.reason_code
                .map_or(String::new(), |c| c.as_str().to_string()),
            text(&self.reason),
            self.response_code
                .as_ref()
                .map_or(String::new(), |v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            self.attempts.to_string(),
            text(&self.start),
            text(&self.end),
        ];
        let mut line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        line.push('\n');
        line
    }
}

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Where a stream is: the position read up to, and whether the last page was sent.
struct Cursor {
    store: Store,
    job_id: String,
    format: Format,
    after: Option<i64>,
    header_sent: bool,
    done: bool,
}

/// The job's devices as a streamed response in `format`.
pub fn stream(store: Store, job_id: String, format: Format) -> Response {
    let cursor = Cursor {
        store,
        job_id,
        format,
        after: None,
        header_sent: false,
        done: false,
    };
    let body = futures_util::stream::unfold(cursor, |mut c| async move {
        if !c.header_sent {
            c.header_sent = true;
            return Some((Ok::<_, std::io::Error>(c.format.header().to_string()), c));
        }
        if c.done {
            return None;
        }
        match c.store.job_devices_uncached(&c.job_id, c.after, PAGE).await {
            Ok(page) => {
                c.after = page.items.last().map(|d| d.position).or(c.after);
                c.done = !page.more;
                let chunk: String = page.items.iter().map(|d| c.format.row(d)).collect();
                Some((Ok(chunk), c))
            }
            Err(e) => {
                // The status went out with the first bytes: a cut body tells the client.
                tracing::error!(job = %c.job_id, error = %e, "a job device export stopped");
                c.done = true;
                Some((Err(std::io::Error::other(e.to_string())), c))
            }
        }
    });
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Format> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        Format::requested(&headers)
    }

    #[test]
    fn the_accept_header_picks_the_format() {
        assert_eq!(accept("text/csv"), Some(Format::Csv));
        assert_eq!(accept("application/x-ndjson"), Some(Format::NdJson));
        assert_eq!(accept("Text/CSV; charset=utf-8"), Some(Format::Csv));
        assert_eq!(
            accept("application/x-ndjson, text/csv;q=0.5"),
            Some(Format::NdJson)
        );
        assert_eq!(accept("application/json"), None);
        assert_eq!(accept("*/*"), None);
        assert_eq!(Format::requested(&HeaderMap::new()), None);
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("dev-1"), "dev-1");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
