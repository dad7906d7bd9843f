//! The live job events behind `GET /jobs/{id}/events` and `GET /events`, read from the
//! database (so any server sharing it serves the same events) a few times a second while a
//! client listens; nothing is read for a stream nobody holds.
//!
//! Each stream is a task that writes its events into a small channel the response reads: when
//! the client goes away the channel closes and the task ends at its next look.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use flotilla_model::job_events::JobEndEvent;
use flotilla_model::job_state::JobStatus;
use flotilla_store::{BatchCounts, JobEventState, Store, StoreError};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::live::Live;

/// How often a stream looks: progress is coalesced to at most this cadence (4 per second).
pub const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How often per-batch counts are read again while nothing on the job's row moved (devices
/// starting change them without touching the row).
const BATCHES_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// Finished devices read per look at most (a stream catching up reads on at once).
const DEVICES_PER_READ: usize = 500;
/// A comment line sent when nothing else was, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// `GET /events` rereads jobs that ended this long before its last look: a status change
/// committed late, or stamped by a server whose clock is behind, is still seen.
const ENDED_SLACK_MS: i64 = 10_000;

type Events = mpsc::Sender<Event>;

/// The response for a stream whose events `produce` writes into the channel it is given.
pub fn respond<F>(
    live: Live,
    produce: impl FnOnce(Events) -> F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let task = produce(tx);

    tokio::spawn(async move {
        tokio::select! {
            done = task => if let Err(e) = done {
                tracing::warn!(error = %e, "an event stream stopped: the database failed");
            },
            () = live.closed() => {}
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .expect("event data serializes")
}

/// Sends an event; `false` when the client went away.
async fn send(tx: &Events, event: Event) -> bool {
    tx.send(event).await.is_ok()
}

/// One job's events: `status` and `progress` first, then the devices that finished after
/// `after` (every one when `None`), then as things change, until the job has ended, no device
/// of it runs, and its last events went out (`end`).
pub async fn job_stream(
    store: Store,
    job_id: String,
    after: Option<i64>,
    tx: Events,
) -> Result<(), StoreError> {
    let mut cursor = after.unwrap_or(0);
    let mut sent_status: Option<JobStatus> = None;
    let mut sent_progress = None;
    let mut seen: Option<JobEventState> = None;
    let mut batches: Vec<BatchCounts> = Vec::new();
    let mut batches_read = Instant::now();
    let mut first = true;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let Some(state) = store.job_event_state(&job_id).await? else {
            return Ok(());
        };
        let stale = batches_read.elapsed() >= BATCHES_AT_LEAST_EVERY && !state.status.is_final();
        if seen.as_ref() != Some(&state) || stale {
            batches = store.job_batch_counts(&job_id).await?;
            batches_read = Instant::now();
        }
        let mut out = Vec::new();
        let status = state.status_event(&job_id);
        let progress = state.progress_event(&job_id, &batches);
        if first {
            // A fresh snapshot opens every stream, resumed ones included.
            out.push(event("status", &status));
            out.push(event("progress", &progress));
        }
        // The devices: all committed finishes numbered up to `state.device_seq` are visible
        // now (the row was read first), so a read that was not cut short moves the cursor
        // past the numbers no device took.
        loop {
            let devices = store
                .finished_job_devices(&job_id, cursor, DEVICES_PER_READ)
                .await?;
            for device in &devices {
                out.push(event("device", &device.event(&job_id)).id(device.sequence.to_string()));
                cursor = device.sequence;
            }
            if devices.len() < DEVICES_PER_READ {
                cursor = cursor.max(state.device_seq);
                break;
            }
            // Catching up: send what was read before reading on.
            for e in out.drain(..) {
                if !send(&tx, e).await {
                    return Ok(());
                }
            }
        }
        if !first && sent_status != Some(state.status) {
            out.push(event("status", &status));
        }
        if !first && sent_progress.as_ref() != Some(&progress) {
            out.push(event("progress", &progress));
        }
        let running: i64 = batches.iter().map(|b| b.running).sum();
        let ended = state.status.is_final() && running == 0;
        if ended {
            let end = JobEndEvent {
                job_id: job_id.clone(),
                status: state.status,
            };
            out.push(event("end", &end));
        }
        for e in out {
            if !send(&tx, e).await {
                return Ok(());
            }
        }
        if ended {
            return Ok(());
        }
        first = false;
        sent_status = Some(state.status);
        sent_progress = Some(progress);
        seen = Some(state);
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Every job's `status` events: first those of the jobs that have not ended, then each change.
pub async fn all_jobs_stream(store: Store, tx: Events) -> Result<(), StoreError> {
    let mut known: HashMap<String, JobStatus> = HashMap::new();
    let mut first = true;
    let mut since = now_ms() - ENDED_SLACK_MS;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let looked = now_ms();
        let states = store.job_event_states(since).await?;
        let mut current = HashMap::with_capacity(states.len());
        for (id, state) in states {
            let changed = known.get(&id) != Some(&state.status);
            // The first look reports where jobs are, not what ended just before.
            let report = if first {
                !state.status.is_final()
            } else {
                changed
            };
            if report && !send(&tx, event("status", &state.status_event(&id))).await {
                return Ok(());
            }
            current.insert(id, state.status);
        }
        // A job that left the window has ended for good: it changes no more.
        known = current;
        first = false;
        since = looked - ENDED_SLACK_MS;
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
