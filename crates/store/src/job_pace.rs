//! Reads and writes of `jobs` and `job_devices` that a job's rollout controls decide on
//! (`rollout`, `batchGate`, `windows`): how many of its devices started lately, how a batch
//! ended, holding a job at a batch gate, and the note a waiting job shows.

use sqlx::Row;

use flotilla_model::job_state::{DeviceStatus, JobEvent, JobStatus};

use crate::cache::Changed;
use crate::jobs::statuses_except;
use crate::{Result, Store};

/// A job's device starts in the last minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentStarts {
    pub in_minute: u64,
    pub oldest_in_minute_ms: Option<i64>,
}

/// How a finished batch ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub total: u64,
    pub succeeded: u64,
    /// When its last device finished.
    pub last_finished_ms: Option<i64>,
}

impl Store {
    /// The job's devices started after `since_ms`, and the earliest of those starts.
    pub async fn recent_job_starts(&self, job_id: &str, since_ms: i64) -> Result<RecentStarts> {
        let row = sqlx::query(&self.sql(
            "SELECT COUNT(*) AS n, MIN(started_ms) AS oldest FROM job_devices \
             WHERE job_id = ? AND started_ms > ?",
        ))
        .bind(job_id)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(RecentStarts {
            in_minute: row.try_get::<i64, _>("n")?.max(0) as u64,
            oldest_in_minute_ms: row.try_get("oldest")?,
        })
    }

    /// How a batch of the job ended: its devices, those completed, its last finish.
    pub async fn batch_outcome(&self, job_id: &str, batch: i64) -> Result<BatchOutcome> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN status = '{}' THEN 1 ELSE 0 END), 0) AS succeeded, \
             MAX(finished_ms) AS last_finished FROM job_devices WHERE job_id = ? \
             AND status IN ({}) AND batch = ?",
            DeviceStatus::Completed,
            statuses_except(&[]),
        )))
        .bind(job_id)
        .bind(batch)
        .fetch_one(&self.pool)
        .await?;
        Ok(BatchOutcome {
            total: row.try_get::<i64, _>("total")?.max(0) as u64,
            succeeded: row.try_get::<i64, _>("succeeded")?.max(0) as u64,
            last_finished_ms: row.try_get("last_finished")?,
        })
    }

    /// Whether any device of this batch has started (its gate was passed then).
    pub async fn batch_has_started(&self, job_id: &str, batch: i64) -> Result<bool> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT 1 AS one FROM job_devices WHERE job_id = ? AND status IN ({}) AND batch = ? \
             LIMIT 1",
            statuses_except(&[DeviceStatus::Pending]),
        )))
        .bind(job_id)
        .bind(batch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The batch whose gate stopped the job last (a resumed job lets it through).
    pub async fn gate_held_batch(&self, job_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query(&self.sql("SELECT gate_held_batch FROM jobs WHERE id = ?"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("gate_held_batch")?,
            None => None,
        })
    }

    /// Stops a running job at the gate of `batch`, with the reason, in one transaction;
    /// `Ok(false)` if it was no longer running.
    pub async fn hold_at_gate(&self, job_id: &str, batch: i64, reason: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let event = JobEvent::GateNotMet(reason.to_string());
        let moved = self.transition_with(&mut tx, job_id, &event).await?;
        if moved {
            sqlx::query(&self.sql("UPDATE jobs SET gate_held_batch = ? WHERE id = ?"))
                .bind(batch)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(moved)
    }

    /// Sets (or clears) what a running job shows as its `reason` while it waits (outside its
    /// maintenance windows); a write only when it changes.
    pub async fn note_job_waiting(&self, job_id: &str, note: Option<&str>) -> Result<()> {
        let changed = sqlx::query(&self.sql(&format!(
            "UPDATE jobs SET reason = ? WHERE id = ? AND status = '{}' \
             AND COALESCE(reason, '') <> COALESCE(?, '')",
            JobStatus::Running
        )))
        .bind(note)
        .bind(job_id)
        .bind(note)
        .execute(&*self.writing().await)
        .await?
        .rows_affected();
        if changed > 0 {
            self.caches.changed(Changed::Jobs);
        }
        Ok(())
    }
}
