//! SQL for the device side: twins (desired and reported documents with versions), the last
//! telemetry values, command history, and persistent MQTT subscriptions.
//!
//! Twin writes are compare-and-swap on the document's version, so concurrent writers (REST and
//! the device, or two replicas) never lose each other's changes.

use flotilla_model::twin::{Twin, apply_reported_patch, plain_values};
use flotilla_model::validate::merge_patch;
use serde_json::Value;
use sqlx::Row;

use crate::error::corrupt;
use crate::{Page, PageRequest, Result, Store, StoreError, into_page, now_ms};

/// How often a twin write retries when another writer changed the document meanwhile.
const CAS_ATTEMPTS: usize = 20;

/// One command sent to a device, as its history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub id: String,
    pub device_id: String,
    pub component: Option<String>,
    pub name: String,
    pub connection_timeout: i64,
    pub response_timeout: i64,
    pub request: Option<Value>,
    pub response: Option<Value>,
    pub response_code: Option<i64>,
}

fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(corrupt)
}

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
    /// filters compare against. Group-committed with other writes (`batch`).
    pub async fn patch_reported(&self, device_id: &str, patch: &Value) -> Result<(i64, Value)> {
        self.queued(
            |reply| {
                crate::batch::Write::Reported(
                    crate::batch::ReportedWrite {
                        device_id: device_id.to_string(),
                        patch: patch.clone(),
                    },
                    reply,
                )
            },
            async || self.patch_reported_direct(device_id, patch).await,
        )
        .await
    }

    /// `patch_reported` on its own: read, merge, compare-and-swap.
    pub(crate) async fn patch_reported_direct(
        &self,
        device_id: &str,
        patch: &Value,
    ) -> Result<(i64, Value)> {
        for _ in 0..CAS_ATTEMPTS {
            let twin = self.twin(device_id).await?.ok_or(StoreError::NotFound)?;
            let mut reported = twin.reported;
            apply_reported_patch(&mut reported, patch);
            let version = twin.reported_version + 1;
            let done = sqlx::query(&self.sql(
                "UPDATE devices SET reported = ?, reported_version = ?, reported_properties = ? \
                 WHERE id = ? AND reported_version = ?",
            ))
            .bind(reported.to_string())
            .bind(version)
            .bind(plain_values(&reported).to_string())
            .bind(device_id)
            .bind(twin.reported_version)
            .execute(&*self.writing().await)
            .await?;
            if done.rows_affected() == 1 {
                return Ok((version, reported));
            }
        }
        Err(StoreError::Conflict(format!(
            "The twin of device '{device_id}' kept changing; retry."
        )))
    }

    /// Merges a change into a device's desired properties; returns the twin after the change.
    pub async fn patch_desired(&self, device_id: &str, change: &Value) -> Result<Twin> {
        self.patch_desired_for(device_id, change, None).await
    }

    /// The same, recording in the same transaction the desired version a job's device write
    /// made (so a restart never writes it twice). Group-committed with other writes (`batch`).
    pub async fn patch_desired_for(
        &self,
        device_id: &str,
        change: &Value,
        job_id: Option<&str>,
    ) -> Result<Twin> {
        self.queued(
            |reply| {
                crate::batch::Write::Desired(
                    crate::batch::DesiredWrite {
                        device_id: device_id.to_string(),
                        change: change.clone(),
                        job_id: job_id.map(str::to_string),
                    },
                    reply,
                )
            },
            async || self.patch_desired_direct(device_id, change, job_id).await,
        )
        .await
    }

    /// `patch_desired_for` on its own: read, merge, compare-and-swap.
    pub(crate) async fn patch_desired_direct(
        &self,
        device_id: &str,
        change: &Value,
        job_id: Option<&str>,
    ) -> Result<Twin> {
        for _ in 0..CAS_ATTEMPTS {
            let mut twin = self.twin(device_id).await?.ok_or(StoreError::NotFound)?;
            let previous = twin.desired_version;
            merge_patch(&mut twin.desired, change);
            twin.desired_version += 1;
            let mut tx = self.begin_write().await?;
            let done = sqlx::query(&self.sql(
                "UPDATE devices SET desired = ?, desired_version = ? WHERE id = ? AND desired_version = ?",
            ))
            .bind(twin.desired.to_string())
            .bind(twin.desired_version)
            .bind(device_id)
            .bind(previous)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                if let Some(job_id) = job_id {
                    sqlx::query(&self.sql(
                        "UPDATE job_devices SET desired_version = ? WHERE job_id = ? AND device_id = ?",
                    ))
                    .bind(twin.desired_version)
                    .bind(job_id)
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                if job_id.is_some() {
                    self.job_cache.changed();
                }
                return Ok(twin);
            }
        }
        Err(StoreError::Conflict(format!(
            "The twin of device '{device_id}' kept changing; retry."
        )))
    }

    /// Marks a device provisioned (DPS registered it), giving it a template if it has none.
    pub async fn set_provisioned(&self, device_id: &str, template: Option<&str>) -> Result<()> {
        let done = sqlx::query(&self.sql(
            "UPDATE devices SET provisioned = ?, template = COALESCE(template, ?) WHERE id = ?",
        ))
        .bind(true)
        .bind(template)
        .bind(device_id)
        .execute(&*self.writing().await)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Keeps the latest value of each telemetry in a message.
    pub async fn record_telemetry(
        &self,
        device_id: &str,
        component: Option<&str>,
        values: &serde_json::Map<String, Value>,
        time_ms: i64,
    ) -> Result<()> {
        let sql = self.sql(
            "INSERT INTO device_telemetry (device_id, component, name, value, time_ms) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (device_id, component, name) DO UPDATE SET value = excluded.value, time_ms = excluded.time_ms",
        );
        let mut tx = self.begin_write().await?;
        for (name, value) in values {
            sqlx::query(&sql)
                .bind(device_id)
                .bind(component.unwrap_or(""))
                .bind(name)
                .bind(value.to_string())
                .bind(time_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last value of a telemetry and when it arrived (ms since the epoch).
    pub async fn telemetry(
        &self,
        device_id: &str,
        component: Option<&str>,
        name: &str,
    ) -> Result<Option<(Value, i64)>> {
        let row = sqlx::query(&self.sql(
            "SELECT value, time_ms FROM device_telemetry WHERE device_id = ? AND component = ? AND name = ?",
        ))
        .bind(device_id)
        .bind(component.unwrap_or(""))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            parse_json(&row.try_get::<String, _>("value")?)?,
            row.try_get("time_ms")?,
        )))
    }

    pub async fn insert_command(&self, command: &CommandRecord) -> Result<()> {
        sqlx::query(&self.sql(
            "INSERT INTO device_commands (id, device_id, component, name, connection_timeout, response_timeout, \
             request, response, response_code, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&command.id)
        .bind(&command.device_id)
        .bind(command.component.as_deref().unwrap_or(""))
        .bind(&command.name)
        .bind(command.connection_timeout)
        .bind(command.response_timeout)
        .bind(command.request.as_ref().map(Value::to_string))
        .bind(command.response.as_ref().map(Value::to_string))
        .bind(command.response_code)
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await?;
        Ok(())
    }

    /// A page of a command's history on a device, oldest first (ids are time-ordered).
    pub async fn command_history(
        &self,
        device_id: &str,
        component: Option<&str>,
        name: &str,
        page: PageRequest<'_>,
    ) -> Result<Page<CommandRecord>> {
        let rows = sqlx::query(&self.sql(
            "SELECT * FROM device_commands WHERE device_id = ? AND component = ? AND name = ? AND id > ? \
             ORDER BY id LIMIT ?",
        ))
        .bind(device_id)
        .bind(component.unwrap_or(""))
        .bind(name)
        .bind(page.after.unwrap_or(""))
        .bind(page.size as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                let component: String = row.try_get("component")?;
                let json = |column: &str| -> Result<Option<Value>> {
                    row.try_get::<Option<String>, _>(column)?
                        .map(|t| parse_json(&t))
                        .transpose()
                };
                Ok(CommandRecord {
                    id: row.try_get("id")?,
                    device_id: row.try_get("device_id")?,
                    component: (!component.is_empty()).then_some(component),
                    name: row.try_get("name")?,
                    connection_timeout: row.try_get("connection_timeout")?,
                    response_timeout: row.try_get("response_timeout")?,
                    request: json("request")?,
                    response: json("response")?,
                    response_code: row.try_get("response_code")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.size))
    }

    /// The MQTT subscriptions (topic filter, QoS) a client keeps across connections.
    pub async fn session_subscriptions(&self, client_id: &str) -> Result<Vec<(String, u8)>> {
        let row =
            sqlx::query(&self.sql("SELECT subscriptions FROM mqtt_sessions WHERE client_id = ?"))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(vec![]) };
        let value = parse_json(&row.try_get::<String, _>("subscriptions")?)?;
        Ok(value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        Some((item[0].as_str()?.to_string(), item[1].as_u64()? as u8))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Stores a client's subscriptions; an empty list forgets the session.
    pub async fn save_session(
        &self,
        client_id: &str,
        subscriptions: &[(String, u8)],
    ) -> Result<()> {
        if subscriptions.is_empty() {
            sqlx::query(&self.sql("DELETE FROM mqtt_sessions WHERE client_id = ?"))
                .bind(client_id)
                .execute(&*self.writing().await)
                .await?;
            return Ok(());
        }
        let value: Vec<Value> = subscriptions
            .iter()
            .map(|(filter, qos)| serde_json::json!([filter, qos]))
            .collect();
        sqlx::query(&self.sql(
            "INSERT INTO mqtt_sessions (client_id, subscriptions) VALUES (?, ?) \
             ON CONFLICT (client_id) DO UPDATE SET subscriptions = excluded.subscriptions",
        ))
        .bind(client_id)
        .bind(Value::Array(value).to_string())
        .execute(&*self.writing().await)
        .await?;
        Ok(())
    }
}
