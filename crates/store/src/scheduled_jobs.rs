//! SQL for `scheduled_jobs` and their runs.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::cache::Changed;
use crate::devices::bool_column;
use crate::error::corrupt;
use crate::jobs::JobRecord;
use crate::{Entity, Page, PageRequest, Result, Store, inserted, now_ms};

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJobRecord {
    pub id: String,
    pub etag: String,
    /// The job definition (displayName, group, batch, data, ...).
    pub definition: Value,
    pub schedule: Value,
    pub enabled: bool,
    pub completed: bool,
    pub next_occurrence: i64,
}

const COLUMNS: &str = "id, etag, definition, schedule, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) AS enabled, \
     CAST(CASE WHEN completed THEN 1 ELSE 0 END AS BIGINT) AS completed, next_occurrence";

fn from_row(row: &AnyRow) -> Result<ScheduledJobRecord> {
    Ok(ScheduledJobRecord {
        id: row.try_get("id")?,
        etag: row.try_get("etag")?,
        definition: serde_json::from_str(&row.try_get::<String, _>("definition")?)
            .map_err(corrupt)?,
        schedule: serde_json::from_str(&row.try_get::<String, _>("schedule")?).map_err(corrupt)?,
        enabled: bool_column(row, "enabled")?,
        completed: bool_column(row, "completed")?,
        next_occurrence: row.try_get("next_occurrence")?,
    })
}

impl Store {
    pub async fn insert_scheduled_job(&self, job: &ScheduledJobRecord) -> Result<()> {
        let result = sqlx::query(&self.sql(
            "INSERT INTO scheduled_jobs (id, etag, definition, schedule, enabled, completed, next_occurrence, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&job.id)
        .bind(&job.etag)
        .bind(job.definition.to_string())
        .bind(job.schedule.to_string())
        .bind(job.enabled)
        .bind(job.completed)
        .bind(job.next_occurrence)
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        inserted(result, Entity::ScheduledJob, &job.id)
    }

    /// Replaces a scheduled job if its etag is still `expected_etag`; `Ok(false)` if not.
    pub async fn replace_scheduled_job(
        &self,
        job: &ScheduledJobRecord,
        expected_etag: &str,
    ) -> Result<bool> {
        let done = sqlx::query(&self.sql(
            "UPDATE scheduled_jobs SET etag = ?, definition = ?, schedule = ?, enabled = ?, completed = ?, \
             next_occurrence = ? WHERE id = ? AND etag = ?",
        ))
        .bind(&job.etag)
        .bind(job.definition.to_string())
        .bind(job.schedule.to_string())
        .bind(job.enabled)
        .bind(job.completed)
        .bind(job.next_occurrence)
        .bind(&job.id)
        .bind(expected_etag)
        .execute(&*self.writing().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn scheduled_job(&self, id: &str) -> Result<Option<ScheduledJobRecord>> {
        self.row_by_id("scheduled_jobs", COLUMNS, id, from_row)
            .await
    }

    pub async fn list_scheduled_jobs(
        &self,
        page: PageRequest<'_>,
    ) -> Result<Page<ScheduledJobRecord>> {
        self.page_of("scheduled_jobs", COLUMNS, page, from_row)
            .await
    }

    /// The enabled, unfinished scheduled jobs (the scheduler's work list).
    pub async fn active_scheduled_jobs(&self) -> Result<Vec<ScheduledJobRecord>> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {COLUMNS} FROM scheduled_jobs WHERE enabled = ? AND completed = ? ORDER BY id"
        )))
        .bind(true)
        .bind(false)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn delete_scheduled_job(&self, id: &str) -> Result<()> {
        self.delete_by_id("scheduled_jobs", Entity::ScheduledJob, id)
            .await
    }

    /// Runs occurrence `occurrence` (due at `occurrence_ms`) of a scheduled job: moves the
    /// schedule on (with a new etag), records the run and creates its job, all or nothing.
    /// Runs are keyed by the occurrence's time, so an occurrence never creates two jobs, across
    /// restarts, replicas and reschedules. `Ok(None)` when the schedule moved on meanwhile, or
    /// that moment already ran (the schedule still moves on); else the id of the job created
    /// (the job's own id, unless a job already holds it: then a suffixed one).
    pub async fn fire_occurrence(
        &self,
        scheduled_job_id: &str,
        occurrence: i64,
        occurrence_ms: i64,
        job: &JobRecord,
        completed: bool,
        new_etag: &str,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        // Moving the schedule first locks its row (PostgreSQL): one replica fires at a time.
        let moved = sqlx::query(&self.sql(
            "UPDATE scheduled_jobs SET next_occurrence = ?, completed = ?, etag = ? \
             WHERE id = ? AND next_occurrence <= ? AND enabled = ?",
        ))
        .bind(occurrence + 1)
        .bind(completed)
        .bind(new_etag)
        .bind(scheduled_job_id)
        .bind(occurrence)
        .bind(true)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        let mut job_id = job.id.clone();
        let taken = sqlx::query(&self.sql("SELECT 1 AS one FROM jobs WHERE id = ?"))
            .bind(&job_id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            job_id = format!("{}-{}", job.id, flotilla_model::keys::random_hex::<3>());
        }
        let run = sqlx::query(&self.sql(
            "INSERT INTO scheduled_job_runs (scheduled_job_id, occurrence, job_id) VALUES (?, ?, ?) \
             ON CONFLICT (scheduled_job_id, occurrence) DO NOTHING",
        ))
        .bind(scheduled_job_id)
        .bind(occurrence_ms)
        .bind(&job_id)
        .execute(&mut *tx)
        .await?;
        if run.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        sqlx::query(&self.sql(
            "INSERT INTO jobs (id, sort_key, scheduled_job_id, definition, status, rerun_of, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&job_id)
        .bind(&job.sort_key)
        .bind(job.scheduled_job_id.as_deref())
        .bind(job.definition.to_string())
        .bind(job.status.as_str())
        .bind(job.rerun_of.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(Some(job_id))
    }

    /// Marks a scheduled job completed (no occurrence remains), with a new etag.
    pub async fn complete_scheduled_job(&self, id: &str, new_etag: &str) -> Result<()> {
        sqlx::query(&self.sql(
            "UPDATE scheduled_jobs SET completed = ?, etag = ? WHERE id = ? AND completed = ?",
        ))
        .bind(true)
        .bind(new_etag)
        .bind(id)
        .bind(false)
        .execute(&*self.writing().await)
        .await?;
        Ok(())
    }
}
