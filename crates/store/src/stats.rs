//! Counts for the metrics endpoint, read from the database at each scrape: with several servers
//! on one PostgreSQL database, every server reports the same fleet-wide figures.

use flotilla_model::job_state::JobStatus;
use sqlx::Row;

use crate::{Result, Store};

impl Store {
    /// How many jobs are in each status (statuses without jobs are left out).
    pub async fn job_counts_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get("status")?;
            // The database CHECKs the statuses; one it did not know would be a newer server's.
            if let Ok(status) = status.parse::<JobStatus>() {
                counts.push((status, row.try_get("n")?));
            }
        }
        Ok(counts)
    }

    /// How many devices are registered.
    pub async fn device_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM devices")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
