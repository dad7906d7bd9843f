//! What live job events (and webhooks) read: a job's status and counters, its per-batch counts,
//! and the devices that finished after a cursor on the job's finish sequence.
//!
//! The sequence: every finish takes a number from the job's `device_seq` counter in the
//! transaction that finishes the device (`take_finish_seqs`), which holds the job's row until it
//! commits, so numbers follow commit order on both databases and a reader that saw number n has
//! seen every finish numbered below it.

use flotilla_model::job_events::{BatchProgress, JobDeviceEvent, JobProgressEvent, JobStatusEvent};
use flotilla_model::job_state::{DeviceStatus, FailureReason, JobStatus};
use sqlx::Row;

use crate::error::corrupt;
use crate::{BatchCounts, Result, Store};

/// A job's row as events read it (not cached: it is read a few times a second while watched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventState {
    pub status: JobStatus,
    pub reason: Option<String>,
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    /// The job's finish counter: every finish so far has a sequence number below or at it.
    pub device_seq: i64,
    pub created_ms: i64,
}

/// A device that finished, with its place in the job's finish order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedDevice {
    pub sequence: i64,
    pub device_id: String,
    pub status: DeviceStatus,
    pub reason_code: Option<FailureReason>,
    pub reason: Option<String>,
    pub batch: i64,
}

/// Takes `count` finish sequence numbers from the job's counter, in the caller's transaction
/// (locking the job's row on PostgreSQL until it commits); the first of them, or `None` when
/// the job does not exist.
pub(crate) async fn take_finish_seqs(
    core: &Store,
    tx: &mut sqlx::AnyConnection,
    job_id: &str,
    count: usize,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        &core.sql("UPDATE jobs SET device_seq = device_seq + ? WHERE id = ? RETURNING device_seq"),
    )
    .bind(count as i64)
    .bind(job_id)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| Ok(r.try_get::<i64, _>("device_seq")? - count as i64 + 1))
        .transpose()
}

pub(crate) fn state_from_row(row: &sqlx::any::AnyRow) -> Result<JobEventState> {
    Ok(JobEventState {
        status: row
            .try_get::<String, _>("status")?
            .parse()
            .map_err(corrupt)?,
        reason: row.try_get("reason")?,
        total: row.try_get("total")?,
        completed: row.try_get("completed")?,
        failed: row.try_get("failed")?,
        device_seq: row.try_get("device_seq")?,
        created_ms: row.try_get("created_ms")?,
    })
}

const STATE_COLUMNS: &str = "id, status, reason, total, completed, failed, device_seq, created_ms";

impl Store {
    /// A job's status and counters, read from the database (`None`: no such job).
    pub async fn job_event_state(&self, job_id: &str) -> Result<Option<JobEventState>> {
        self.row_by_id("jobs", STATE_COLUMNS, job_id, state_from_row)
            .await
    }

    /// Jobs' statuses and counters: those not ended (pending, running, stopped), and those
    /// that ended at or after `ended_since_ms`; by id.
    pub async fn job_event_states(
        &self,
        ended_since_ms: i64,
    ) -> Result<Vec<(String, JobEventState)>> {
        let open = [JobStatus::Pending, JobStatus::Running, JobStatus::Stopped]
            .map(|s| format!("'{s}'"))
            .join(", ");
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {STATE_COLUMNS} FROM jobs WHERE status IN ({open}) OR end_ms >= ? ORDER BY id"
        )))
        .bind(ended_since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, state_from_row(r)?)))
            .collect()
    }

    /// The devices of a job that finished after sequence number `after`, in finish order, at
    /// most `limit`.
    pub async fn finished_job_devices(
        &self,
        job_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FinishedDevice>> {
        let rows = sqlx::query(&self.sql(
            "SELECT finish_seq, device_id, status, reason_code, reason, batch FROM job_devices \
             WHERE job_id = ? AND finish_seq IS NOT NULL AND finish_seq > ? \
             ORDER BY finish_seq LIMIT ?",
        ))
        .bind(job_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FinishedDevice {
                    sequence: row.try_get("finish_seq")?,
                    device_id: row.try_get("device_id")?,
                    status: row
                        .try_get::<String, _>("status")?
                        .parse()
                        .map_err(corrupt)?,
                    reason_code: row
                        .try_get::<Option<String>, _>("reason_code")?
                        .map(|c| c.parse().map_err(corrupt))
                        .transpose()?,
                    reason: row.try_get("reason")?,
                    batch: row.try_get("batch")?,
                })
            })
            .collect()
    }
}

impl JobEventState {
    /// The job's `status` event.
    pub fn status_event(&self, job_id: &str) -> JobStatusEvent {
        JobStatusEvent {
            job_id: job_id.to_string(),
            status: self.status,
            reason: self.reason.clone(),
        }
    }

    /// The job's `progress` event, with these per-batch counts.
    pub fn progress_event(&self, job_id: &str, batches: &[BatchCounts]) -> JobProgressEvent {
        JobProgressEvent::new(
            job_id,
            self.status,
            (self.total, self.completed, self.failed),
            batches
                .iter()
                .map(|b| BatchProgress {
                    index: b.batch,
                    total: b.total,
                    pending: b.pending,
                    running: b.running,
                    completed: b.completed,
                    failed: b.failed,
                    skipped: b.skipped,
                })
                .collect(),
        )
    }
}

impl FinishedDevice {
    /// The device's `device` event.
    pub fn event(&self, job_id: &str) -> JobDeviceEvent {
        JobDeviceEvent {
            job_id: job_id.to_string(),
            device_id: self.device_id.clone(),
            status: self.status,
            reason_code: self.reason_code,
            reason: self.reason.clone(),
            batch: self.batch,
            sequence: self.sequence,
        }
    }
}
