//! SQL for `device_commands`: the history of the commands sent to each device.

use serde_json::Value;
use sqlx::Row;

use crate::error::parse_json;
use crate::{Page, PageRequest, Result, Store, into_page, now_ms};

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

impl Store {
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
}
