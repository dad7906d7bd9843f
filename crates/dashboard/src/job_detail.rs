//! One job: its definition, live counters and per-batch table with threshold headroom (polled
//! every 500 ms while the job can still change), failures grouped by reason, its devices
//! filtered by status, reason and id prefix (keyset pages, so a 100,000-device job pages as
//! fast as a small one), the actions its status allows, and the CSV of its devices, streamed.

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect};
use flotilla_api::auth::token_of_value;
use flotilla_model::job::{Threshold, threshold_of};
use flotilla_model::job_state::{DeviceStatus, FailureReason, JobStatus};
use flotilla_model::roles::{Access, Area};
use flotilla_store::{BatchCounts, JobDevice, JobDeviceFilter, JobRecord, Store};
use serde::Deserialize;
use serde_json::Value;

use crate::Dash;
use crate::jobs::JobRow;
use crate::page::{Nav, PageError, PageResult, encode, render};
use crate::session::Session;

/// Devices per page of the device table.
const DEVICE_PAGE: usize = 50;
/// Devices per read while streaming the CSV.
const EXPORT_CHUNK: usize = 1000;

/// The device table's filters, as the URL carries them.
#[derive(Deserialize, Default, Clone)]
pub struct DeviceQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    prefix: String,
    after: Option<i64>,
}

/// The filters, checked.
struct Filters {
    status: Option<DeviceStatus>,
    reason: Option<FailureReason>,
    prefix: Option<String>,
}

impl DeviceQuery {
    fn filters(&self) -> Result<Filters, PageError> {
        let bad = |what: &str| PageError::new(StatusCode::BAD_REQUEST, what.to_string());
        Ok(Filters {
            status: match self.status.as_str() {
                "" => None,
                s => Some(
                    s.parse()
                        .map_err(|_| bad("There is no such device status."))?,
                ),
            },
            reason: match self.reason.as_str() {
                "" => None,
                s => Some(
                    s.parse()
                        .map_err(|_| bad("There is no such failure reason."))?,
                ),
            },
            prefix: (!self.prefix.is_empty()).then(|| self.prefix.clone()),
        })
    }

    /// The query string of these filters (without the page), for links.
    fn link(&self) -> String {
        format!(
            "status={}&reason={}&prefix={}",
            encode(&self.status),
            encode(&self.reason),
            encode(&self.prefix)
        )
    }
}

impl Filters {
    fn store(&self) -> JobDeviceFilter<'_> {
        JobDeviceFilter {
            status: self.status,
            reason: self.reason,
            id_prefix: self.prefix.as_deref(),
        }
    }
}

/// A batch as its table row shows it.
struct BatchRow {
    number: i64,
    counts: BatchCounts,
    done_pct: f64,
    failed_pct: f64,
    /// "2 of 5" when failures in this batch cancel the job.
    headroom: String,
}

/// A group of failures.
struct ReasonRow {
    code: String,
    example: String,
    count: i64,
}

/// The live part of the page: status, counters, actions, batches, reasons.
#[derive(Template)]
#[template(path = "job_live.html")]
struct Live {
    job: JobRow,
    reason: Option<String>,
    /// Polled again: the job can still change (only a final job cannot).
    poll: bool,
    batches: Vec<BatchRow>,
    reasons: Vec<ReasonRow>,
    /// The job-wide threshold's headroom, when the threshold counts over the whole job.
    job_headroom: Option<String>,
    can_stop: bool,
    can_resume: bool,
    can_rerun: bool,
    may_write: bool,
    csrf: String,
    rerun_id: String,
}

struct DeviceRow {
    id: String,
    batch: i64,
    status: String,
    reason_code: String,
    reason: String,
    response_code: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    error: Option<String>,
    id: String,
    name: String,
    description: String,
    group: String,
    data: Vec<(String, String, String)>,
    batch: String,
    threshold: String,
    definition: String,
    live: Live,
    devices: Vec<DeviceRow>,
    query: DeviceQuery,
    query_link: String,
    next_after: Option<i64>,
    statuses: Vec<&'static str>,
    reasons: Vec<&'static str>,
}

/// The number of failures among `size` devices that reaches the threshold.
fn failure_limit(threshold: Threshold, size: i64) -> i64 {
    let size = size.max(0) as u64;
    let mut n = 1u64;
    // Failures are counted one by one, so the first count that reaches it is the limit; a
    // threshold above the size is never reached.
    while n <= size && !threshold.reached(n, size) {
        n += 1;
    }
    n as i64
}

fn headroom(threshold: Threshold, failed: i64, size: i64) -> String {
    let limit = failure_limit(threshold, size);
    if limit > size {
        return format!("{failed} failed; cannot reach the threshold");
    }
    let left = (limit - failed).max(0);
    format!("{failed} of {limit} failures that cancel; {left} to go")
}

fn describe_measure(value: &Value) -> String {
    match value["type"].as_str() {
        Some("percentage") => format!("{}%", value["value"]),
        Some(_) => format!("{} devices", value["value"]),
        None => String::new(),
    }
}

async fn job_or_404(store: &Store, id: &str) -> Result<JobRecord, PageError> {
    store
        .job(id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no job '{id}'.")))
}

async fn live_of(dash: &Dash, session: &Session, job: &JobRecord) -> Result<Live, PageError> {
    let store = &dash.app.store;
    let threshold = threshold_of(&job.definition);
    let batches = store.job_batch_counts(&job.id).await?;
    let reasons = store.job_failure_reasons(&job.id).await?;
    let pct = |n: i64, of: i64| {
        if of > 0 {
            n as f64 * 100.0 / of as f64
        } else {
            0.0
        }
    };
    let batch_rows = batches
        .into_iter()
        .map(|counts| BatchRow {
            number: counts.batch + 1,
            done_pct: pct(counts.completed, counts.total),
            failed_pct: pct(counts.failed, counts.total),
            headroom: match threshold {
                Some(t) if t.per_batch => headroom(t, counts.failed, counts.total),
                _ => String::new(),
            },
            counts,
        })
        .collect();
    let status = job.status;
    Ok(Live {
        job: JobRow::of(job),
        reason: job.reason.clone(),
        poll: !matches!(
            status,
            JobStatus::Complete | JobStatus::Failed | JobStatus::Cancelled
        ),
        batches: batch_rows,
        reasons: reasons
            .into_iter()
            .map(|r| ReasonRow {
                code: r.code.map_or("", FailureReason::as_str).to_string(),
                example: r.example.unwrap_or_default(),
                count: r.count,
            })
            .collect(),
        job_headroom: match threshold {
            Some(t) if !t.per_batch => Some(headroom(t, job.failed, job.total)),
            _ => None,
        },
        can_stop: matches!(status, JobStatus::Pending | JobStatus::Running),
        can_resume: status == JobStatus::Stopped,
        can_rerun: status.is_final() && job.failed > 0,
        may_write: session.may(Area::Jobs, Access::Write),
        csrf: session.csrf.clone(),
        rerun_id: format!(
            "{}-rerun-{}",
            job.id.chars().take(200).collect::<String>(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ),
    })
}

async fn detail(
    dash: &Dash,
    session: &Session,
    id: &str,
    query: DeviceQuery,
    error: Option<PageError>,
) -> PageResult {
    session.require(Area::Jobs, Access::Read)?;
    let job = job_or_404(&dash.app.store, id).await?;
    let filters = query.filters()?;
    let page = dash
        .app
        .store
        .job_devices_filtered(id, filters.store(), query.after, DEVICE_PAGE)
        .await?;
    let definition = &job.definition;
    let text = |key: &str| definition[key].as_str().unwrap_or("").to_string();
    let data = definition["data"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let kind = e["type"].as_str().unwrap_or("").to_string();
                    let what = e["path"]
                        .as_str()
                        .or(e["template"].as_str())
                        .unwrap_or("")
                        .to_string();
                    let value = e.get("value").map(Value::to_string).unwrap_or_default();
                    (kind, what, value)
                })
                .collect()
        })
        .unwrap_or_default();
    let threshold = match definition.get("cancellationThreshold") {
        Some(t) => format!(
            "{} {}",
            describe_measure(t),
            if t["batch"].as_bool() == Some(true) {
                "per batch"
            } else {
                "of the job"
            }
        ),
        None => "none".into(),
    };
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    let mut response = render(&JobPage {
        nav: Nav::new(session, "jobs"),
        error: error.map(|e| e.message),
        id: job.id.clone(),
        name: definition["displayName"]
            .as_str()
            .unwrap_or(&job.id)
            .to_string(),
        description: text("description"),
        group: text("group"),
        data,
        batch: definition
            .get("batch")
            .map(describe_measure)
            .unwrap_or_else(|| "one batch".into()),
        threshold,
        definition: serde_json::to_string_pretty(definition).unwrap_or_default(),
        live: live_of(dash, session, &job).await?,
        next_after: page
            .more
            .then(|| page.items.last().map(|d| d.position))
            .flatten(),
        devices: page.items.iter().map(device_row).collect(),
        query_link: query.link(),
        query,
        statuses: DeviceStatus::ALL.iter().map(|s| s.as_str()).collect(),
        reasons: FailureReason::ALL.iter().map(|r| r.as_str()).collect(),
    });
    *response.status_mut() = status;
    Ok(response)
}

fn device_row(device: &JobDevice) -> DeviceRow {
    DeviceRow {
        id: device.device_id.clone(),
        batch: device.batch + 1,
        status: device.status.as_str().to_string(),
        reason_code: device
            .reason_code
            .map_or("", FailureReason::as_str)
            .to_string(),
        reason: device.reason.clone().unwrap_or_default(),
        response_code: device
            .detail
            .as_ref()
            .and_then(|d| d.get("responseCode"))
            .map(Value::to_string)
            .unwrap_or_default(),
    }
}

pub async fn page(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<DeviceQuery>,
) -> PageResult {
    detail(&dash, &session, &id, query, None).await
}

/// How often a job's stream looks at the job's row.
const STREAM_LOOK: std::time::Duration = std::time::Duration::from_millis(250);
/// The least time between two renders of a running job's fragment: each counts the job's
/// devices per batch (about 20 ms of SQLite for 100,000 devices), so a viewer of a busy job
/// costs at most two of those a second. A final state is sent at once.
const STREAM_RENDER_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// What a job's live part shows changes only with these.
fn live_key(job: &JobRecord) -> (JobStatus, i64, i64, i64, Option<String>) {
    (
        job.status,
        job.total,
        job.completed,
        job.failed,
        job.reason.clone(),
    )
}

/// The live part of the job page as Server-Sent Events (the htmx SSE extension swaps each
/// `live` event in): the job's row is read every 250 ms, and when it changed the fragment is
/// rendered again (so at most 4 renders a second, whatever the job's size, and none while it
/// stands still). A final job sends its last fragment, then `end`, and the stream closes. Read
/// from the database, so any replica shows what every other wrote.
pub async fn stream(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    session.require(Area::Jobs, Access::Read)?;
    job_or_404(&dash.app.store, &id).await?;
    struct Cursor {
        dash: Dash,
        session: Session,
        id: String,
        last: Option<(JobStatus, i64, i64, i64, Option<String>)>,
        ended: bool,
        first: bool,
        rendered: Option<tokio::time::Instant>,
        looks: u32,
    }
    let cursor = Cursor {
        dash,
        session,
        id,
        last: None,
        ended: false,
        first: true,
        rendered: None,
        looks: 0,
    };
    let events = futures_util::stream::unfold(cursor, |mut c| async move {
        if c.ended {
            return None;
        }
        loop {
            if !c.first {
                tokio::time::sleep(STREAM_LOOK).await;
            }
            c.first = false;
            c.looks += 1;
            // The server is stopping: its graceful shutdown waits for every response.
            if c.dash.app.live.is_closed() {
                return None;
            }
            // The session's token is checked again every second: deleting or expiring it ends
            // the stream as it ends every other request.
            if c.looks.is_multiple_of(4)
                && !matches!(
                    token_of_value(&c.dash.app, &c.session.value).await,
                    Ok(Some(_))
                )
            {
                return None;
            }
            let job = match c.dash.app.store.job(&c.id).await {
                Ok(Some(job)) => job,
                // Deleted, or the database is unreachable: the page keeps its last state.
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(job = %c.id, error = %e, "a dashboard job stream stopped");
                    return None;
                }
            };
            let key = live_key(&job);
            let too_soon = c
                .rendered
                .is_some_and(|at| at.elapsed() < STREAM_RENDER_EVERY);
            if c.last.as_ref() == Some(&key) || (too_soon && !job.status.is_final()) {
                continue;
            }
            c.last = Some(key);
            c.rendered = Some(tokio::time::Instant::now());
            let event = match live_of(&c.dash, &c.session, &job).await {
                Ok(live) => match live.render() {
                    Ok(html) => Event::default().event("live").data(html),
                    Err(_) => return None,
                },
                Err(_) => return None,
            };
            let mut batch = vec![Ok::<_, std::convert::Infallible>(event)];
            if job.status.is_final() {
                // The last state, then `end` (the extension closes the stream on it).
                c.ended = true;
                batch.push(Ok(Event::default().event("end").data(job.status.as_str())));
            }
            return Some((futures_util::stream::iter(batch), c));
        }
    });
    use futures_util::StreamExt;
    Ok(Sse::new(events.flatten())
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Runs a lifecycle command through the REST API; back to the job, or the job with the refusal.
async fn act(dash: &Dash, session: &Session, id: &str, path: String) -> PageResult {
    match dash.api(session, Method::POST, &path, None).await {
        Ok(_) => Ok(Redirect::to(&format!("/jobs/{}", encode(id))).into_response()),
        Err(e) => detail(dash, session, id, DeviceQuery::default(), Some(e)).await,
    }
}

pub async fn stop(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    act(&dash, &session, &id, format!("/jobs/{}/stop", encode(&id))).await
}

pub async fn resume(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    act(
        &dash,
        &session,
        &id,
        format!("/jobs/{}/resume", encode(&id)),
    )
    .await
}

#[derive(Deserialize)]
pub struct RerunForm {
    rerun_id: String,
}

pub async fn rerun(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RerunForm>,
) -> PageResult {
    let path = format!("/jobs/{}/rerun/{}", encode(&id), encode(&form.rerun_id));
    match dash.api(&session, Method::PUT, &path, None).await {
        Ok(_) => Ok(Redirect::to(&format!("/jobs/{}", encode(&form.rerun_id))).into_response()),
        Err(e) => detail(&dash, &session, &id, DeviceQuery::default(), Some(e)).await,
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

const CSV_HEADER: &str = "deviceId,status,batch,reasonCode,reason,responseCode,response\n";

fn csv_row(device: &JobDevice) -> String {
    let detail = |key: &str| {
        device
            .detail
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let fields = [
        device.device_id.clone(),
        device.status.as_str().to_string(),
        (device.batch + 1).to_string(),
        device
            .reason_code
            .map_or("", FailureReason::as_str)
            .to_string(),
        device.reason.clone().unwrap_or_default(),
        detail("responseCode"),
        detail("response"),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// The job's devices (with the page's filters) as CSV, read and sent a chunk at a time, so a
/// 100,000-device job streams in flat memory; available at any time, not only at the end.
pub async fn export(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<DeviceQuery>,
) -> PageResult {
    session.require(Area::Jobs, Access::Read)?;
    job_or_404(&dash.app.store, &id).await?;
    let filters = query.filters()?;
    let store = dash.app.store.clone();
    let job = id.clone();
    // State: (the position read up to, whether the header went, whether the end was reached).
    let stream = futures_util::stream::unfold(
        (None::<i64>, false, false),
        move |(after, header_sent, finished)| {
            let store = store.clone();
            let job = job.clone();
            let filter = (filters.status, filters.reason, filters.prefix.clone());
            async move {
                if !header_sent {
                    return Some((
                        Ok::<_, std::io::Error>(CSV_HEADER.to_string()),
                        (after, true, false),
                    ));
                }
                if finished {
                    return None;
                }
                let filter = JobDeviceFilter {
                    status: filter.0,
                    reason: filter.1,
                    id_prefix: filter.2.as_deref(),
                };
                match store
                    .job_devices_filtered(&job, filter, after, EXPORT_CHUNK)
                    .await
                {
                    Ok(page) => {
                        let next = page.items.last().map(|d| d.position).or(after);
                        let chunk: String = page.items.iter().map(csv_row).collect();
                        Some((Ok(chunk), (next, true, !page.more)))
                    }
                    Err(e) => {
                        tracing::error!(job = %job, error = %e, "the CSV export stopped");
                        Some((
                            Err(std::io::Error::other(e.to_string())),
                            (after, true, true),
                        ))
                    }
                }
            }
        },
    );
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-devices.csv\""),
            ),
            (CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::job::ThresholdKind;

    fn threshold(kind: ThresholdKind) -> Threshold {
        Threshold {
            kind,
            per_batch: true,
        }
    }

    #[test]
    fn the_limit_is_the_first_failure_count_that_cancels() {
        assert_eq!(failure_limit(threshold(ThresholdKind::Number(3)), 10), 3);
        // 10% of 25 devices is reached at the 3rd failure (300 >= 250), not the 2nd.
        assert_eq!(
            failure_limit(threshold(ThresholdKind::Percentage(10.0)), 25),
            3
        );
        assert_eq!(
            failure_limit(threshold(ThresholdKind::Percentage(100.0)), 4),
            4
        );
        assert_eq!(
            headroom(threshold(ThresholdKind::Number(5)), 2, 10),
            "2 of 5 failures that cancel; 3 to go"
        );
        // More failures allowed than devices: the batch cannot cancel the job.
        assert_eq!(
            headroom(threshold(ThresholdKind::Number(50)), 1, 10),
            "1 failed; cannot reach the threshold"
        );
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("dev-1"), "dev-1");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
