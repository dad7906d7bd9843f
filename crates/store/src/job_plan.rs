//! The reads a job's dry-run plan and its conflict check need: the state of the devices a job
//! would hold (enabled, template, cloud properties, reported properties), and which active jobs
//! still hold some of them. Reads only; nothing here writes.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;

use flotilla_model::job_state::{DeviceStatus, JobStatus};

use crate::bulk::{CHUNK, marks};
use crate::devices::bool_column;
use crate::error::corrupt;
use crate::{Result, Store};

/// What a plan needs to know of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDevice {
    pub id: String,
    pub enabled: bool,
    pub template: Option<String>,
    pub cloud_properties: Value,
    pub reported: Value,
}

impl Store {
    /// These devices' states, in no particular order (a device that is gone is left out).
    pub async fn planned_devices(&self, ids: &[String]) -> Result<Vec<PlannedDevice>> {
        let mut devices = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "SELECT id, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) AS enabled, \
                 template, cloud_properties, reported FROM devices WHERE id IN ({})",
                marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let json = |column: &str| -> Result<Value> {
                    serde_json::from_str(&row.try_get::<String, _>(column)?).map_err(corrupt)
                };
                devices.push(PlannedDevice {
                    id: row.try_get("id")?,
                    enabled: bool_column(&row, "enabled")?,
                    template: row.try_get("template")?,
                    cloud_properties: json("cloud_properties")?,
                    reported: json("reported")?,
                });
            }
        }
        Ok(devices)
    }

    /// Which of these devices are connected to a live server, as the servers' presence table
    /// shows it (on PostgreSQL, where several servers may share the database; it trails a
    /// connect or disconnect by moments). `None` on SQLite: one server, whose own connections
    /// tell (the `DeviceBus`).
    pub async fn devices_connected_anywhere(
        &self,
        device_ids: &[String],
    ) -> Result<Option<HashSet<String>>> {
        if self.dialect == crate::Dialect::Sqlite {
            return Ok(None);
        }
        let mut connected = HashSet::new();
        for chunk in device_ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "SELECT c.device_id AS device_id FROM device_connections c \
                 JOIN replicas r ON r.id = c.replica_id WHERE c.device_id IN ({}) \
                 AND r.state = 'alive'",
                marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                connected.insert(row.try_get("device_id")?);
            }
        }
        Ok(Some(connected))
    }

    /// The started jobs that still hold some of these devices, with how many each holds: as
    /// the engine's order rule sees it, a job holds a device while its operation on it runs, or
    /// while it is pending in a pending or running job. Jobs not started yet have no devices
    /// here (their group is evaluated when they start).
    pub async fn jobs_holding(&self, device_ids: &[String]) -> Result<HashMap<String, i64>> {
        let active = JobStatus::ACTIVE
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut held: HashMap<String, i64> = HashMap::new();
        for chunk in device_ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "SELECT d.job_id AS job_id, COUNT(*) AS devices FROM job_devices d \
                 JOIN jobs j ON j.id = d.job_id WHERE d.device_id IN ({}) \
                 AND (d.status = '{}' OR (d.status = '{}' AND j.status IN ({active}))) \
                 GROUP BY d.job_id",
                marks(chunk.len()),
                DeviceStatus::Running,
                DeviceStatus::Pending,
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                *held.entry(row.try_get("job_id")?).or_default() +=
                    row.try_get::<i64, _>("devices")?;
            }
        }
        Ok(held)
    }
}
