//! SQL for `device_telemetry`: the last value of each telemetry a device sent.

use serde_json::Value;
use sqlx::Row;

use crate::error::parse_json;
use crate::{Result, Store};

impl Store {
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
}
