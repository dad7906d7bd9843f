//! SQL for twins: the desired and reported documents of `devices`, with their versions.
//!
//! Twin writes are compare-and-swap on the document's version, so concurrent writers (REST and
//! the device, or two replicas) never lose each other's changes. They are group-committed
//! (`group_commit`), which reads and writes them in bulk with the statements here.

use std::collections::{HashMap, HashSet};

use flotilla_model::twin::{Twin, plain_values};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use crate::bulk::{CHUNK, marks, value_rows};
use crate::error::parse_json;
use crate::group_commit::{DesiredWrite, DevicePlan, ReportedAnswer, ReportedWrite, Write};
use crate::write_gate::WriteTx;
use crate::{Result, Store};

impl Store {
    pub async fn twin(&self, device_id: &str) -> Result<Option<Twin>> {
        let row = sqlx::query(&self.sql(
            "SELECT desired, desired_version, reported, reported_version FROM devices WHERE id = ?",
        ))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Twin {
            desired: parse_json(&row.try_get::<String, _>("desired")?)?,
            desired_version: row.try_get("desired_version")?,
            reported: parse_json(&row.try_get::<String, _>("reported")?)?,
            reported_version: row.try_get("reported_version")?,
        }))
    }

    /// Merges a device's reported patch into its twin; returns the new reported version and the
    /// reported document it made. Also refreshes `reported_properties`, the plain values that
    /// filters compare against. Group-committed with other writes.
    pub async fn patch_reported(&self, device_id: &str, patch: &Value) -> Result<ReportedAnswer> {
        let write = ReportedWrite {
            device_id: device_id.to_string(),
            patch: patch.clone(),
        };
        self.group_commit(|reply| Write::Reported(write, reply))
            .await
    }

    /// Merges a change into a device's desired properties; returns the twin after the change.
    pub async fn patch_desired(&self, device_id: &str, change: &Value) -> Result<Twin> {
        self.patch_desired_for(device_id, change, None).await
    }

    /// The same, recording in the same transaction the desired version a job's device write
    /// made (so a restart never writes it twice). Group-committed with other writes.
    pub async fn patch_desired_for(
        &self,
        device_id: &str,
        change: &Value,
        job_id: Option<&str>,
    ) -> Result<Twin> {
        let write = DesiredWrite {
            device_id: device_id.to_string(),
            change: change.clone(),
            job_id: job_id.map(str::to_string),
        };
        self.group_commit(|reply| Write::Desired(write, reply))
            .await
    }

    /// The twins of these devices (each once); the desired document only when asked for (a
    /// reported write needs only the reported one).
    pub(crate) async fn read_twins(
        &self,
        connection: &mut AnyConnection,
        ids: &[&str],
        with_desired: bool,
    ) -> Result<HashMap<String, Twin>> {
        let columns = if with_desired {
            "id, desired, desired_version, reported, reported_version"
        } else {
            "id, reported, reported_version"
        };
        let mut twins = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "SELECT {columns} FROM devices WHERE id IN ({})",
                marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *connection).await? {
                let parse = |column: &str| -> Result<Value> {
                    serde_json::from_str(&row.try_get::<String, _>(column)?)
                        .map_err(crate::error::corrupt)
                };
                let (desired, desired_version) = if with_desired {
                    (parse("desired")?, row.try_get("desired_version")?)
                } else {
                    (Value::Null, 0)
                };
                twins.insert(
                    row.try_get("id")?,
                    Twin {
                        desired,
                        desired_version,
                        reported: parse("reported")?,
                        reported_version: row.try_get("reported_version")?,
                    },
                );
            }
        }
        Ok(twins)
    }

    /// Writes planned twin documents, each only if its version is still the one read; returns
    /// the devices written.
    pub(crate) async fn write_twins(
        &self,
        tx: &mut WriteTx,
        devices: &[DevicePlan],
        reported: bool,
    ) -> Result<HashSet<String>> {
        let mut written = HashSet::new();
        for chunk in devices.chunks(CHUNK) {
            let sql = if reported {
                format!(
                    "UPDATE devices SET reported = v.column2, reported_version = v.column3, \
                     reported_properties = v.column4 FROM (VALUES {}) AS v \
                     WHERE devices.id = v.column1 AND devices.reported_version = v.column5 \
                     RETURNING devices.id AS id",
                    value_rows(chunk.len(), 5)
                )
            } else {
                format!(
                    "UPDATE devices SET desired = v.column2, desired_version = v.column3 \
                     FROM (VALUES {}) AS v \
                     WHERE devices.id = v.column1 AND devices.desired_version = v.column4 \
                     RETURNING devices.id AS id",
                    value_rows(chunk.len(), 4)
                )
            };
            let sql = self.sql(&sql);
            let mut query = sqlx::query(&sql);
            for device in chunk {
                query = query
                    .bind(&device.id)
                    .bind(device.document.to_string())
                    .bind(device.version);
                if reported {
                    query = query.bind(plain_values(&device.document).to_string());
                }
                query = query.bind(device.read_version);
            }
            for row in query.fetch_all(&mut **tx).await? {
                written.insert(row.try_get::<String, _>("id")?);
            }
        }
        Ok(written)
    }
}
