//! SQL for `device_groups`. Membership is not stored: it is the group's filter, evaluated in SQL
//! over `devices` when asked (see `Store::list_devices`).

use flotilla_model::device_group::DeviceGroup;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::corrupt;
use crate::{Entity, Page, PageRequest, Result, Store, inserted, now_ms};

fn from_row(row: &AnyRow) -> Result<DeviceGroup> {
    Ok(DeviceGroup {
        id: row.try_get("id")?,
        etag: row.try_get("etag")?,
        display_name: row.try_get("display_name")?,
        filter: row.try_get("filter")?,
        description: row.try_get("description")?,
        organizations: serde_json::from_str(&row.try_get::<String, _>("organizations")?)
            .map_err(corrupt)?,
    })
}

impl Store {
    /// Stores a new group. `Conflict` when the id is taken.
    pub async fn insert_device_group(&self, group: &DeviceGroup) -> Result<()> {
        let result = sqlx::query(&self.sql(
            "INSERT INTO device_groups (id, etag, display_name, filter, description, organizations, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&group.id)
        .bind(&group.etag)
        .bind(&group.display_name)
        .bind(&group.filter)
        .bind(group.description.as_deref())
        .bind(serde_json::Value::from(group.organizations.clone()).to_string())
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        inserted(result, Entity::DeviceGroup, &group.id)
    }

    /// Replaces a group if its etag is still `expected_etag`; `Ok(false)` if not.
    pub async fn replace_device_group(
        &self,
        group: &DeviceGroup,
        expected_etag: &str,
    ) -> Result<bool> {
        let done = sqlx::query(&self.sql(
            "UPDATE device_groups SET etag = ?, display_name = ?, filter = ?, description = ?, organizations = ? \
             WHERE id = ? AND etag = ?",
        ))
        .bind(&group.etag)
        .bind(&group.display_name)
        .bind(&group.filter)
        .bind(group.description.as_deref())
        .bind(serde_json::Value::from(group.organizations.clone()).to_string())
        .bind(&group.id)
        .bind(expected_etag)
        .execute(&*self.writing().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn device_group(&self, id: &str) -> Result<Option<DeviceGroup>> {
        self.row_by_id("device_groups", "*", id, from_row).await
    }

    pub async fn list_device_groups(&self, page: PageRequest<'_>) -> Result<Page<DeviceGroup>> {
        self.page_of("device_groups", "*", page, from_row).await
    }

    /// `NotFound` when there was no such group.
    pub async fn delete_device_group(&self, id: &str) -> Result<()> {
        self.delete_by_id("device_groups", Entity::DeviceGroup, id)
            .await
    }
}
