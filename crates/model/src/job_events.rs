//! Live job events: what `GET /api/jobs/{id}/events`, `GET /api/events` and webhooks send about
//! jobs. Each type is an event's `data` (and its OpenAPI schema).

use serde::Serialize;
use utoipa::ToSchema;

use crate::job_state::{DeviceStatus, FailureReason, JobStatus};

/// `status`: a job's status (when it changes, and first on every stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatusEvent {
    pub job_id: String,
    pub status: JobStatus,
    /// Why the job failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// One batch's device counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BatchProgress {
    /// From 0, in the job's order.
    pub index: i64,
    pub total: i64,
    /// Not started yet.
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    /// Skipped by the job's `offline` policy (only when some were).
    #[serde(skip_serializing_if = "is_zero")]
    #[schema(required = false)]
    pub skipped: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `progress`: a job's device counts, in total and per batch (coalesced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobProgressEvent {
    pub job_id: String,
    pub status: JobStatus,
    pub total: i64,
    /// Not started yet (unlike the REST `progress.pending`, which counts running ones too).
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    /// Skipped by the job's `offline` policy (only when some were).
    #[serde(skip_serializing_if = "is_zero")]
    #[schema(required = false)]
    pub skipped: i64,
    pub batches: Vec<BatchProgress>,
}

impl JobProgressEvent {
    /// The counts from the batches' (one consistent read), or from the job's counters before
    /// it has devices.
    pub fn new(
        job_id: &str,
        status: JobStatus,
        counters: (i64, i64, i64),
        batches: Vec<BatchProgress>,
    ) -> JobProgressEvent {
        let (total, completed, failed) = counters;
        let sum = |f: fn(&BatchProgress) -> i64| batches.iter().map(f).sum::<i64>();
        let (total, running, completed, failed, skipped) = if batches.is_empty() {
            (total, 0, completed, failed, 0)
        } else {
            (
                sum(|b| b.total),
                sum(|b| b.running),
                sum(|b| b.completed),
                sum(|b| b.failed),
                sum(|b| b.skipped),
            )
        };
        JobProgressEvent {
            job_id: job_id.to_string(),
            status,
            total,
            pending: (total - running - completed - failed - skipped).max(0),
            running,
            completed,
            failed,
            skipped,
            batches,
        }
    }
}

/// `device`: a device of a job finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDeviceEvent {
    pub job_id: String,
    pub device_id: String,
    /// `completed` or `failed`.
    pub status: DeviceStatus,
    /// A failed device's stable reason code (`null` when it completed).
    pub reason_code: Option<FailureReason>,
    /// A failed device's reason (`null` when it completed).
    pub reason: Option<String>,
    /// The device's batch, from 0.
    pub batch: i64,
    /// Its place in the job's finish order (the SSE event's `id`).
    pub sequence: i64,
}

/// `end`: the job ended and nothing more will be sent about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEndEvent {
    pub job_id: String,
    pub status: JobStatus,
}
