//! SQL for `mqtt_sessions`: the subscriptions an MQTT client keeps across connections.

use serde_json::Value;
use sqlx::Row;

use crate::error::parse_json;
use crate::{Result, Store};

impl Store {
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
