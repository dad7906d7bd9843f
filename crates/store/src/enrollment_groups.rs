//! SQL for `enrollment_groups`.

use flotilla_model::enrollment_group::{EnrollmentGroup, EnrollmentGroupType};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::devices::bool_column;
use crate::error::corrupt;
use crate::{Entity, Page, PageRequest, Result, Store, inserted, now_ms};

const GROUP_COLUMNS: &str = "id, etag, display_name, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) AS enabled, kind, \
     primary_key, secondary_key";

fn from_row(row: &AnyRow) -> Result<EnrollmentGroup> {
    let enabled = bool_column(row, "enabled")?;
    Ok(EnrollmentGroup {
        id: row.try_get("id")?,
        etag: row.try_get("etag")?,
        display_name: row.try_get("display_name")?,
        enabled,
        kind: EnrollmentGroupType::parse(&row.try_get::<String, _>("kind")?)
            .ok_or_else(|| corrupt("an enrollment group's kind is not iot or iotEdge"))?,
        primary_key: row.try_get("primary_key")?,
        secondary_key: row.try_get("secondary_key")?,
    })
}

impl Store {
    /// Stores a new group. `Conflict` when the id is taken; `ignore_existing` makes that a no-op
    /// instead (for the default group, made at every start).
    pub async fn insert_enrollment_group(
        &self,
        group: &EnrollmentGroup,
        ignore_existing: bool,
    ) -> Result<()> {
        let conflict = if ignore_existing {
            " ON CONFLICT (id) DO NOTHING"
        } else {
            ""
        };
        let result = sqlx::query(&self.sql(&format!(
            "INSERT INTO enrollment_groups (id, etag, display_name, enabled, kind, primary_key, secondary_key, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?){conflict}"
        )))
        .bind(&group.id)
        .bind(&group.etag)
        .bind(&group.display_name)
        .bind(group.enabled)
        .bind(group.kind.as_str())
        .bind(&group.primary_key)
        .bind(&group.secondary_key)
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        inserted(result, Entity::EnrollmentGroup, &group.id)
    }

    /// Replaces a group if its etag is still `expected_etag`; `Ok(false)` if not.
    pub async fn replace_enrollment_group(
        &self,
        group: &EnrollmentGroup,
        expected_etag: &str,
    ) -> Result<bool> {
        let done = sqlx::query(&self.sql(
            "UPDATE enrollment_groups SET etag = ?, display_name = ?, enabled = ?, kind = ?, primary_key = ?, \
             secondary_key = ? WHERE id = ? AND etag = ?",
        ))
        .bind(&group.etag)
        .bind(&group.display_name)
        .bind(group.enabled)
        .bind(group.kind.as_str())
        .bind(&group.primary_key)
        .bind(&group.secondary_key)
        .bind(&group.id)
        .bind(expected_etag)
        .execute(&*self.writing().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn enrollment_group(&self, id: &str) -> Result<Option<EnrollmentGroup>> {
        self.row_by_id("enrollment_groups", GROUP_COLUMNS, id, from_row)
            .await
    }

    pub async fn list_enrollment_groups(
        &self,
        page: PageRequest<'_>,
    ) -> Result<Page<EnrollmentGroup>> {
        self.page_of("enrollment_groups", GROUP_COLUMNS, page, from_row)
            .await
    }

    /// `NotFound` when there was no such group.
    pub async fn delete_enrollment_group(&self, id: &str) -> Result<()> {
        self.delete_by_id("enrollment_groups", Entity::EnrollmentGroup, id)
            .await
    }
}
