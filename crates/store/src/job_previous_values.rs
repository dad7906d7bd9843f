//! SQL for `job_previous_values`: what a job's writes replaced, per device and capability, for
//! a revert. Recorded in the transaction of the write itself (`group_commit`'s desired writes,
//! `devices.rs`'s cloud-property changes); the first record of a capability wins, so it is the
//! value from before the job whatever the job wrote after.

use serde_json::Value;
use sqlx::Row;

use crate::bulk::{CHUNK, value_rows};
use crate::error::corrupt;
use crate::write_gate::WriteTx;
use crate::{Result, Store};

/// The kinds of value recorded, as the job data types name them.
pub const PROPERTY: &str = "property";
pub const CLOUD_PROPERTY: &str = "cloudProperty";

/// A value a job's write replaced on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousValue {
    /// `property` (the device's reported value) or `cloudProperty`.
    pub kind: &'static str,
    pub component: Option<String>,
    pub name: String,
    /// `null` for a cloud property that was not set.
    pub value: Value,
}

/// A record to make: the job, the device, the value.
pub(crate) struct PreviousRecord<'a> {
    pub job_id: &'a str,
    pub device_id: &'a str,
    pub previous: PreviousValue,
}

/// Records values before jobs' writes, in the writes' transaction (a value already recorded for
/// the job, device and capability stays).
pub(crate) async fn record_previous_values(
    core: &Store,
    tx: &mut WriteTx,
    records: &[PreviousRecord<'_>],
) -> Result<()> {
    for chunk in records.chunks(CHUNK) {
        let sql = core.sql(&format!(
            "INSERT INTO job_previous_values (job_id, device_id, kind, component, name, value) \
             VALUES {} ON CONFLICT DO NOTHING",
            value_rows(chunk.len(), 6)
        ));
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(r.job_id)
                .bind(r.device_id)
                .bind(r.previous.kind)
                .bind(r.previous.component.clone().unwrap_or_default())
                .bind(r.previous.name.clone())
                .bind(r.previous.value.to_string());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Whether the job recorded any value it replaced (whether a revert has anything to do).
    pub async fn job_changed_devices(&self, job_id: &str) -> Result<bool> {
        let row = sqlx::query(
            &self.sql("SELECT 1 AS one FROM job_previous_values WHERE job_id = ? LIMIT 1"),
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The devices on which the job replaced a value, by id (a revert's devices).
    pub async fn devices_changed_by(&self, job_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(&self.sql(
            "SELECT DISTINCT device_id FROM job_previous_values WHERE job_id = ? ORDER BY device_id",
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("device_id").map_err(Into::into))
            .collect()
    }

    /// The values the job replaced on a device.
    pub async fn previous_values(
        &self,
        job_id: &str,
        device_id: &str,
    ) -> Result<Vec<PreviousValue>> {
        let rows = sqlx::query(&self.sql(
            "SELECT kind, component, name, value FROM job_previous_values \
             WHERE job_id = ? AND device_id = ? ORDER BY kind, component, name",
        ))
        .bind(job_id)
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind = match r.try_get::<String, _>("kind")?.as_str() {
                    PROPERTY => PROPERTY,
                    CLOUD_PROPERTY => CLOUD_PROPERTY,
                    other => return Err(corrupt(format!("a previous value of kind '{other}'"))),
                };
                let component: String = r.try_get("component")?;
                Ok(PreviousValue {
                    kind,
                    component: (!component.is_empty()).then_some(component),
                    name: r.try_get("name")?,
                    value: serde_json::from_str(&r.try_get::<String, _>("value")?)
                        .map_err(corrupt)?,
                })
            })
            .collect()
    }
}
