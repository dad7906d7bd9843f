//! `GET /metrics`: the process's metrics in Prometheus's text format, on the REST API's
//! listeners (outside `/api`: no api-version, and no API token but the metrics token, when one
//! is set).
//!
//! Library crates record through the `metrics` facade (counters and histograms registered once,
//! held as handles); this module installs the one recorder those go to, once per process,
//! before anything records: a handle taken before would stay a no-op for good. A test process
//! that runs several in-process servers (`flotilla-testkit`) installs nothing, so their
//! records go nowhere and nothing conflicts; `install` itself may be called again and answers
//! the same handle.
//!
//! At each scrape, the gauges that describe state rather than events are set from their
//! source: connected devices from this server's hub, jobs by status and registered devices from
//! the database (so with several servers on one PostgreSQL database, each reports the same
//! fleet-wide figures for those, and its own for the rest).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flotilla_api::error::ApiError;
use flotilla_gateway::Hub;
use flotilla_model::job_state::JobStatus;
use flotilla_store::{Dialect, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds, in seconds, of every `_seconds` histogram: from a fast REST answer or commit
/// to a device operation waiting out its acknowledgement.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Bucket bounds of the writes per group commit (at most 2000 a transaction).
const WRITES: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// How often histograms are folded and idle series dropped between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder, once, and answers the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("flotilla_db_group_commit_writes".into()),
                        WRITES,
                    )
                })
                .expect("the bucket bounds are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            // After the recorder exists, or the descriptions go nowhere.
            describe();
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// HELP text of every metric (and the unit in its name, by Prometheus's conventions).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "flotilla_build_info",
        "This server's version and database (always 1)."
    );
    describe_gauge!(
        "flotilla_devices_connected",
        "Devices connected to this server (MQTT over TLS or WebSockets)."
    );
    describe_gauge!(
        "flotilla_devices_registered",
        "Devices registered in the database."
    );
    describe_gauge!(
        "flotilla_jobs",
        "Jobs by status, read from the database at each scrape."
    );
    describe_counter!(
        "flotilla_job_device_operations_total",
        "Job device operations this server finished, by job type, outcome and failure reason."
    );
    describe_histogram!(
        "flotilla_job_device_operation_duration_seconds",
        "How long a job device operation took on this server, from its start to its outcome."
    );
    describe_histogram!(
        "flotilla_scheduler_lag_seconds",
        "How late a scheduled job's occurrence ran after its planned time."
    );
    describe_counter!(
        "flotilla_scheduler_runs_total",
        "Scheduled job occurrences this server ran."
    );
    describe_histogram!(
        "flotilla_db_group_commit_duration_seconds",
        "A group commit's transaction, from asking for the write lock to the commit."
    );
    describe_histogram!(
        "flotilla_db_group_commit_writes",
        "Writes in one group commit transaction."
    );
    describe_counter!(
        "flotilla_db_group_commit_failures_total",
        "Group commit transactions that failed (their writes are retried one by one)."
    );
    describe_histogram!(
        "flotilla_http_request_duration_seconds",
        "REST API requests: time to the response's head, by method, route template and status class."
    );
    describe_counter!(
        "flotilla_http_auth_failures_total",
        "REST API requests refused with 401: no API token, one this server did not issue, or an expired one."
    );
    describe_counter!(
        "flotilla_mqtt_received_packets_total",
        "MQTT packets received from devices, by packet type."
    );
    describe_counter!(
        "flotilla_mqtt_sent_packets_total",
        "MQTT packets sent to devices, by packet type."
    );
    describe_counter!(
        "flotilla_mqtt_received_bytes_total",
        "Bytes of MQTT received from devices (after TLS)."
    );
    describe_counter!(
        "flotilla_mqtt_sent_bytes_total",
        "Bytes of MQTT sent to devices (before TLS)."
    );
    describe_counter!(
        "flotilla_mqtt_connections_accepted_total",
        "MQTT CONNECTs accepted (devices and DPS registrations)."
    );
    describe_counter!(
        "flotilla_connections_refused_total",
        "Connections refused, by listener (mqtt, http) and cause."
    );
}

/// What a scrape reads.
#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    store: Store,
    hub: Hub,
    token: Option<Arc<str>>,
}

/// The `/metrics` route, behind `token` when one is given (`Authorization: Bearer <token>`).
pub fn router(handle: PrometheusHandle, store: Store, hub: Hub, token: Option<String>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            handle,
            store,
            hub,
            token: token.map(Into::into),
        })
}

async fn scrape(State(scrape): State<Scrape>, headers: HeaderMap) -> Response {
    if let Some(token) = &scrape.token
        && !bearer_matches(&headers, token)
    {
        let mut refused = ApiError::unauthorized(
            "GET /metrics needs the metrics token: Authorization: Bearer <token>.",
        )
        .into_response();
        refused
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    }
    set_state_gauges(&scrape).await;
    let mut response = scrape.handle.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Sets the gauges read from their source at each scrape.
async fn set_state_gauges(scrape: &Scrape) {
    let database = match scrape.store.dialect() {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgres",
    };
    metrics::gauge!(
        "flotilla_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "database" => database,
    )
    .set(1.0);
    metrics::gauge!("flotilla_devices_connected").set(scrape.hub.connected_count() as f64);
    match scrape.store.job_counts_by_status().await {
        Ok(counts) => {
            for status in JobStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("flotilla_jobs", "status" => status.as_str()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading job counts for /metrics failed"),
    }
    match scrape.store.device_count().await {
        Ok(n) => metrics::gauge!("flotilla_devices_registered").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "reading the device count for /metrics failed"),
    }
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_token_passes() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3creT"), "s3cret"));
        assert!(!bearer_matches(&with("s3cret"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }
}
