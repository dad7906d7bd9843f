//! SQL for `device_templates` and the index of their capabilities.

use flotilla_model::template::{Capability, CapabilityKind, DeviceTemplate};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::corrupt;
use crate::{ConflictKind, Entity, Page, PageRequest, Result, Store, StoreError, now_ms};

/// A template as stored: its body (without etag) and etag.
#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub id: String,
    pub etag: String,
    pub body: Value,
}

fn from_row(row: &AnyRow) -> Result<StoredTemplate> {
    Ok(StoredTemplate {
        id: row.try_get("id")?,
        etag: row.try_get("etag")?,
        body: serde_json::from_str(&row.try_get::<String, _>("body")?).map_err(corrupt)?,
    })
}

impl Store {
    /// Stores a new template and its capability index. `Conflict` when the id is taken.
    pub async fn insert_template(&self, template: &DeviceTemplate, etag: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO device_templates (id, etag, display_name, body, created_ms) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(&template.id)
        .bind(etag)
        .bind(&template.display_name)
        .bind(template.body.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from);
        if let Err(e) = inserted {
            return Err(if e.is_unique_violation() {
                StoreError::conflict(Entity::DeviceTemplate, &template.id, ConflictKind::Exists)
            } else {
                e
            });
        }
        self.write_capabilities(&mut tx, template).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a template if its etag is still `expected_etag`. `Ok(false)` when it changed
    /// meanwhile (or was deleted).
    pub async fn replace_template(
        &self,
        template: &DeviceTemplate,
        expected_etag: &str,
        new_etag: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE device_templates SET etag = ?, display_name = ?, body = ? WHERE id = ? AND etag = ?",
        ))
        .bind(new_etag)
        .bind(&template.display_name)
        .bind(template.body.to_string())
        .bind(&template.id)
        .bind(expected_etag)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(&self.sql("DELETE FROM template_capabilities WHERE template_id = ?"))
            .bind(&template.id)
            .execute(&mut *tx)
            .await?;
        self.write_capabilities(&mut tx, template).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn write_capabilities(
        &self,
        tx: &mut crate::write_gate::WriteTx,
        template: &DeviceTemplate,
    ) -> Result<()> {
        let insert = self.sql(
            "INSERT INTO template_capabilities (template_id, component, name, kind, schema) VALUES (?, ?, ?, ?, ?)",
        );
        for capability in &template.capabilities {
            sqlx::query(&insert)
                .bind(&template.id)
                .bind(capability.component.as_deref().unwrap_or(""))
                .bind(&capability.name)
                .bind(capability.kind.as_str())
                .bind(capability.schema.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub async fn template(&self, id: &str) -> Result<Option<StoredTemplate>> {
        self.row_by_id("device_templates", "*", id, from_row).await
    }

    pub async fn template_exists(&self, id: &str) -> Result<bool> {
        let row = sqlx::query(&self.sql("SELECT 1 AS one FROM device_templates WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The capabilities the template's index holds (none if there is no such template).
    pub async fn template_capabilities(&self, id: &str) -> Result<Vec<Capability>> {
        let rows = sqlx::query(&self.sql(
            "SELECT component, name, kind, schema FROM template_capabilities WHERE template_id = ? ORDER BY component, name",
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let component: String = row.try_get("component")?;
                let kind: String = row.try_get("kind")?;
                Ok(Capability {
                    component: (!component.is_empty()).then_some(component),
                    name: row.try_get("name")?,
                    kind: CapabilityKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("unknown capability kind {kind}")))?,
                    schema: serde_json::from_str(&row.try_get::<String, _>("schema")?)
                        .map_err(corrupt)?,
                })
            })
            .collect()
    }

    pub async fn list_templates(&self, page: PageRequest<'_>) -> Result<Page<StoredTemplate>> {
        self.page_of("device_templates", "*", page, from_row).await
    }

    /// Deletes a template no device uses. `NotFound`, or `Conflict` naming how many devices
    /// still use it.
    pub async fn delete_template(&self, id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&self.sql("SELECT COUNT(*) AS n FROM devices WHERE template = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let users: i64 = row.try_get("n")?;
        if users > 0 {
            return Err(StoreError::conflict(
                Entity::DeviceTemplate,
                id,
                ConflictKind::InUse { users },
            ));
        }
        sqlx::query(&self.sql("DELETE FROM template_capabilities WHERE template_id = ?"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(&self.sql("DELETE FROM device_templates WHERE id = ?"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(Entity::DeviceTemplate, id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every template as (id, its capability model's `@id`): few enough (IoT Central allows
    /// 1,000) to scan, for jobs whose target names either.
    pub async fn template_model_ids(&self) -> Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query("SELECT id, body FROM device_templates ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let body: Value =
                    serde_json::from_str(&row.try_get::<String, _>("body")?).map_err(corrupt)?;
                let model = body
                    .pointer("/capabilityModel/@id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok((row.try_get("id")?, model))
            })
            .collect()
    }
}
