//! Reads of `job_devices` for people watching a job (the dashboard): counts per batch, failures
//! grouped by reason, and pages of devices filtered by status, reason and id prefix. Every one is
//! a keyset or aggregate read on the job's indexes, so a 100,000-device job costs no more per
//! page than a small one.

use sqlx::Row;

use flotilla_model::job_state::{DeviceStatus, FailureReason};

use crate::jobs::DEVICE_COLUMNS;
use crate::{JobDevice, Page, Result, Store, into_page};

/// A batch's devices by status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchCounts {
    /// The batch's number (0 first).
    pub batch: i64,
    pub total: i64,
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    /// Skipped by the job's offline policy.
    pub skipped: i64,
}

/// A job's failed devices that share a reason code, with one of their messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasonCount {
    /// `None` for failures recorded without a code.
    pub code: Option<FailureReason>,
    /// One of the group's messages (the first in text order), as an example.
    pub example: Option<String>,
    pub count: i64,
}

/// Which of a job's devices a page holds; `None` fields do not filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobDeviceFilter<'a> {
    pub status: Option<DeviceStatus>,
    pub reason: Option<FailureReason>,
    /// Only devices whose id starts with this (case-sensitive on both databases).
    pub id_prefix: Option<&'a str>,
}

impl Store {
    /// A job's devices counted per batch and status, in batch order.
    pub async fn job_batch_counts(&self, job_id: &str) -> Result<Vec<BatchCounts>> {
        let rows = sqlx::query(&self.sql(
            "SELECT batch, status, COUNT(*) AS n FROM job_devices WHERE job_id = ? \
             GROUP BY batch, status ORDER BY batch",
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        let mut batches: Vec<BatchCounts> = Vec::new();
        for row in rows {
            let batch: i64 = row.try_get("batch")?;
            let n: i64 = row.try_get("n")?;
            if batches.last().is_none_or(|b| b.batch != batch) {
                batches.push(BatchCounts {
                    batch,
                    ..Default::default()
                });
            }
            let counts = batches.last_mut().expect("pushed above");
            counts.total += n;
            let status: String = row.try_get("status")?;
            match status
                .parse::<DeviceStatus>()
                .map_err(crate::error::corrupt)?
            {
                DeviceStatus::Pending => counts.pending += n,
                DeviceStatus::Running => counts.running += n,
                DeviceStatus::Completed => counts.completed += n,
                DeviceStatus::Failed => counts.failed += n,
                DeviceStatus::Skipped => counts.skipped += n,
            }
        }
        Ok(batches)
    }

    /// A job's failed devices grouped by reason code, the largest group first.
    pub async fn job_failure_reasons(&self, job_id: &str) -> Result<Vec<ReasonCount>> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT reason_code, MIN(reason) AS example, COUNT(*) AS n FROM job_devices \
             WHERE job_id = ? AND status = '{}' GROUP BY reason_code \
             ORDER BY n DESC, reason_code",
            DeviceStatus::Failed
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let code: Option<String> = row.try_get("reason_code")?;
                Ok(ReasonCount {
                    code: code
                        .map(|c| c.parse().map_err(crate::error::corrupt))
                        .transpose()?,
                    example: row.try_get("example")?,
                    count: row.try_get("n")?,
                })
            })
            .collect()
    }

    /// A page of a job's devices that pass `filter`, in the job's order (keyset on the position).
    pub async fn job_devices_filtered(
        &self,
        job_id: &str,
        filter: JobDeviceFilter<'_>,
        after_position: Option<i64>,
        size: usize,
    ) -> Result<Page<JobDevice>> {
        let mut conditions = String::new();
        if filter.status.is_some() {
            conditions.push_str(" AND status = ?");
        }
        if filter.reason.is_some() {
            conditions.push_str(" AND reason_code = ?");
        }
        if filter.id_prefix.is_some() {
            conditions.push_str(" AND substr(device_id, 1, CAST(? AS INTEGER)) = ?");
        }
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND position > ?\
             {conditions} ORDER BY position LIMIT ?"
        ));
        let mut query = sqlx::query(&sql)
            .bind(job_id)
            .bind(after_position.unwrap_or(-1));
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(reason) = filter.reason {
            query = query.bind(reason.as_str());
        }
        if let Some(prefix) = filter.id_prefix {
            query = query
                .bind(prefix.chars().count() as i64)
                .bind(prefix.to_string());
        }
        let items = self.job_device_list(query.bind(size as i64 + 1)).await?;
        Ok(into_page(items, size))
    }
}
