//! Application-wide settings that are made once and never change, such as the ID scope, and
//! the development CA every server on the database signs its certificate with (a secret: its
//! key issues certificates that devices trust).

use crate::{Result, Store};
use sqlx::Row;

impl Store {
    /// The setting `name`, storing `make()` first if it has none (the first caller wins, also
    /// across replicas sharing the database).
    pub async fn setting_or_init(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String> {
        sqlx::query(
            &self.sql(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            ),
        )
        .bind(name)
        .bind(make())
        .execute(&*self.writing().await)
        .await?;
        let row = sqlx::query(&self.sql("SELECT value FROM settings WHERE name = ?"))
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Sets the setting `name` to `value`, whatever it was.
    pub async fn mark_setting(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query(&self.sql(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        ))
        .bind(name)
        .bind(value)
        .execute(&*self.writing().await)
        .await?;
        Ok(())
    }
}
