//! The jobs history an import carries over (`flotilla import --with-jobs`): a job finished on
//! the source, stored finished here with its devices' outcomes, in one transaction. It is a
//! record: its status is final, so the engine never starts or drives it.

use flotilla_model::job_state::{DeviceStatus, FailureReason};
use serde_json::Value;

use crate::error::Entity;
use crate::jobs::JobRecord;
use crate::{Result, Store, now_ms};

/// One device of an imported job, as the source reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedJobDevice {
    pub device_id: String,
    pub status: DeviceStatus,
    pub reason: Option<String>,
    pub reason_code: Option<FailureReason>,
    /// A command's answer (`responseCode`, `response`), as the job's devices show it.
    pub detail: Option<Value>,
}

impl Store {
    /// Writes a finished job and its devices in one transaction. With `replace`, the job of that
    /// id is deleted first (with its devices), in the same transaction. `Conflict` when (without
    /// `replace`) its id is taken. The job's status must be final.
    pub async fn put_imported_job(
        &self,
        job: &JobRecord,
        devices: &[ImportedJobDevice],
        replace: bool,
    ) -> Result<()> {
        // A job that is not final would be driven by the engine: an import never writes one.
        debug_assert!(job.status.is_final(), "an imported job must be final");
        let mut tx = self.begin_write().await?;
        if replace {
            // Its rows first: on PostgreSQL no foreign key deletes them with the job.
            for table in ["job_devices", "job_previous_values"] {
                sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE job_id = ?")))
                    .bind(&job.id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(&self.sql("DELETE FROM jobs WHERE id = ?"))
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO jobs (id, sort_key, scheduled_job_id, definition, status, reason, start_ms, \
             end_ms, total, completed, failed, skipped, batch_size, rerun_of, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&job.id)
        .bind(&job.sort_key)
        .bind(job.scheduled_job_id.as_deref())
        .bind(job.definition.to_string())
        .bind(job.status.as_str())
        .bind(job.reason.as_deref())
        .bind(job.start_ms)
        .bind(job.end_ms)
        .bind(job.total)
        .bind(job.completed)
        .bind(job.failed)
        .bind(job.skipped)
        .bind(job.batch_size)
        .bind(job.rerun_of.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        crate::inserted(inserted, Entity::Job, &job.id)?;
        let statement = self.sql(
            "INSERT INTO job_devices (job_id, device_id, position, batch, status, reason, \
             reason_code, detail) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
        );
        for (position, device) in devices.iter().enumerate() {
            sqlx::query(&statement)
                .bind(&job.id)
                .bind(&device.device_id)
                .bind(position as i64)
                .bind(device.status.as_str())
                .bind(device.reason.as_deref())
                .bind(device.reason_code.map(FailureReason::as_str))
                .bind(device.detail.as_ref().map(Value::to_string))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.caches.changed(crate::cache::Changed::Jobs);
        Ok(())
    }
}
