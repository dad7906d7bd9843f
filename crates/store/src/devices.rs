//! SQL for `devices`: the device entity, its cloud properties and its attestation, and the
//! devices matching a device-group filter (compiled by `filter_sql`).

use flotilla_filter::Filter;
use flotilla_model::device::Device;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::bulk::marks;
use crate::error::corrupt;
use crate::filter_sql::{self, SqlParam};
use crate::group_commit::{DeviceChangeWrite, Write};
use crate::job_previous_values::{
    CLOUD_PROPERTY, PreviousRecord, PreviousValue, record_previous_values,
};
use crate::{Entity, Page, PageRequest, Result, Store, StoreError, inserted, into_page, now_ms};

/// Reads a boolean column, selected as `CAST(CASE WHEN column THEN 1 ELSE 0 END AS BIGINT)`:
/// sqlx's Any driver cannot decode SQLite's BOOLEAN, and this reads the same on both databases.
pub(crate) fn bool_column(row: &AnyRow, name: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(name)? != 0)
}

fn from_row(row: &AnyRow) -> Result<Device> {
    let organizations: Vec<String> =
        serde_json::from_str(&row.try_get::<String, _>("organizations")?).map_err(corrupt)?;
    Ok(Device {
        id: row.try_get("id")?,
        etag: row.try_get("etag")?,
        display_name: row.try_get("display_name")?,
        template: row.try_get("template")?,
        enabled: bool_column(row, "enabled")?,
        provisioned: bool_column(row, "provisioned")?,
        simulated: bool_column(row, "simulated")?,
        organizations,
    })
}

const DEVICE_COLUMNS: &str = "id, etag, display_name, template, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) AS enabled, \
     CAST(CASE WHEN provisioned THEN 1 ELSE 0 END AS BIGINT) AS provisioned, CAST(CASE WHEN simulated THEN 1 ELSE 0 END AS BIGINT) AS simulated, organizations";

/// Binds a compiled filter's parameters, in order.
fn bind_condition<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    params: Vec<SqlParam>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for param in params {
        query = match param {
            SqlParam::Text(s) => query.bind(s),
            SqlParam::Real(n) => query.bind(n),
            SqlParam::Bool(b) => query.bind(b),
        };
    }
    query
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("JSON values always serialize")
}

/// A conditional write of a device's cloud properties.
pub struct CloudPropertiesUpdate<'a> {
    pub device_id: &'a str,
    pub expected_etag: &'a str,
    pub new_etag: &'a str,
    pub properties: &'a Value,
}

impl Store {
    /// Stores a new device. `Conflict` when the id is taken.
    pub async fn insert_device(&self, device: &Device) -> Result<()> {
        let result = sqlx::query(&self.sql(
            "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, simulated, organizations, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&device.id)
        .bind(&device.etag)
        .bind(&device.display_name)
        .bind(device.template.as_deref())
        .bind(device.enabled)
        .bind(device.provisioned)
        .bind(device.simulated)
        .bind(json_text(&device.organizations))
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        inserted(result, Entity::Device, &device.id)
    }

    /// Replaces a device's fields if its etag is still `expected_etag`; `Ok(false)` if not.
    pub async fn replace_device(&self, device: &Device, expected_etag: &str) -> Result<bool> {
        let done = sqlx::query(&self.sql(
            "UPDATE devices SET etag = ?, display_name = ?, template = ?, enabled = ?, provisioned = ?, \
             simulated = ?, organizations = ? WHERE id = ? AND etag = ?",
        ))
        .bind(&device.etag)
        .bind(&device.display_name)
        .bind(device.template.as_deref())
        .bind(device.enabled)
        .bind(device.provisioned)
        .bind(device.simulated)
        .bind(json_text(&device.organizations))
        .bind(&device.id)
        .bind(expected_etag)
        .execute(&*self.writing().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn device(&self, id: &str) -> Result<Option<Device>> {
        self.row_by_id("devices", DEVICE_COLUMNS, id, from_row)
            .await
    }

    /// `NotFound` when there was no such device.
    pub async fn delete_device(&self, id: &str) -> Result<()> {
        self.delete_by_id("devices", Entity::Device, id).await
    }

    /// A page of devices.
    pub async fn list_devices(&self, page: PageRequest<'_>) -> Result<Page<Device>> {
        self.page_of("devices", DEVICE_COLUMNS, page, from_row)
            .await
    }

    /// A page of the devices a device-group filter selects.
    pub async fn devices_matching(
        &self,
        filter: &Filter,
        page: PageRequest<'_>,
    ) -> Result<Page<Device>> {
        let condition = filter_sql::condition(filter, self.dialect);
        let sql = self.sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE ({}) AND id > ? ORDER BY id LIMIT ?",
            condition.sql
        ));
        let rows = bind_condition(sqlx::query::<Any>(&sql), condition.params)
            .bind(page.after.unwrap_or(""))
            .bind(page.size as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.size))
    }

    /// How many devices a device-group filter selects now (a group's size, a filter's preview).
    pub async fn count_devices_matching(&self, filter: &Filter) -> Result<i64> {
        let condition = filter_sql::condition(filter, self.dialect);
        let sql = self.sql(&format!(
            "SELECT COUNT(*) AS n FROM devices WHERE ({})",
            condition.sql
        ));
        let row = bind_condition(sqlx::query::<Any>(&sql), condition.params)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The ids of the devices a device-group filter selects, in id order, only those of these
    /// templates unless there are none (a job's devices).
    pub async fn device_ids_matching(
        &self,
        filter: &Filter,
        templates: &[String],
    ) -> Result<Vec<String>> {
        let condition = filter_sql::condition(filter, self.dialect);
        let in_templates = if templates.is_empty() {
            String::new()
        } else {
            format!(" AND template IN ({})", marks(templates.len()))
        };
        let sql = self.sql(&format!(
            "SELECT id FROM devices WHERE ({}){in_templates} ORDER BY id",
            condition.sql
        ));
        let mut query = bind_condition(sqlx::query::<Any>(&sql), condition.params);
        for template in templates {
            query = query.bind(template.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// A device's cloud properties (a JSON object) and its etag.
    pub async fn cloud_properties(&self, id: &str) -> Result<Option<(Value, String)>> {
        let row = sqlx::query(&self.sql("SELECT cloud_properties, etag FROM devices WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let properties = serde_json::from_str(&row.try_get::<String, _>("cloud_properties")?)
            .map_err(corrupt)?;
        Ok(Some((properties, row.try_get("etag")?)))
    }

    /// Writes a device's cloud properties if its etag is unchanged; `Ok(false)` if it changed.
    pub async fn set_cloud_properties(&self, update: CloudPropertiesUpdate<'_>) -> Result<bool> {
        let done = sqlx::query(
            &self
                .sql("UPDATE devices SET cloud_properties = ?, etag = ? WHERE id = ? AND etag = ?"),
        )
        .bind(update.properties.to_string())
        .bind(update.new_etag)
        .bind(update.device_id)
        .bind(update.expected_etag)
        .execute(&*self.writing().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `Ok(None)` if the device does not exist; `Ok(Some(None))` if it has no attestation.
    pub async fn attestation(&self, id: &str) -> Result<Option<Option<Value>>> {
        let row = sqlx::query(&self.sql("SELECT attestation FROM devices WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: Option<String> = row.try_get("attestation")?;
        let value = text
            .map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()?;
        Ok(Some(value))
    }

    /// Sets (or with `None` removes) a device's attestation. `NotFound` if there is no device.
    pub async fn set_attestation(&self, id: &str, attestation: Option<&Value>) -> Result<()> {
        let done = sqlx::query(&self.sql("UPDATE devices SET attestation = ? WHERE id = ?"))
            .bind(attestation.map(Value::to_string))
            .bind(id)
            .execute(&*self.writing().await)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(Entity::Device, id));
        }
        Ok(())
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
            return Err(StoreError::not_found(Entity::Device, device_id));
        }
        Ok(())
    }
}

/// A change a job makes to a device's row, group-committed (`Store::set_cloud_property`,
/// `Store::migrate_device`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeviceChange {
    /// Sets one cloud property (a JSON merge patch of `{name: value}`: `null` removes it).
    /// `job_id`: the job making it, which records the value it replaces (for a revert).
    CloudProperty {
        name: String,
        value: Value,
        job_id: Option<String>,
    },
    /// Moves the device to another template.
    Template(String),
}

/// A device row as the changes see it.
struct Changing {
    cloud_properties: Value,
    template: Option<String>,
    changed: bool,
}

impl Store {
    /// Sets one cloud property of a device (`null` removes it), group-committed with the other
    /// writes jobs make; `Ok(false)` when there is no such device.
    pub async fn set_cloud_property(
        &self,
        device_id: &str,
        name: &str,
        value: Value,
    ) -> Result<bool> {
        self.set_cloud_property_for(device_id, name, value, None)
            .await
    }

    /// `set_cloud_property` for a job, which records the value it replaces in the same
    /// transaction (for a revert).
    pub async fn set_cloud_property_for(
        &self,
        device_id: &str,
        name: &str,
        value: Value,
        job_id: Option<&str>,
    ) -> Result<bool> {
        let change = DeviceChange::CloudProperty {
            name: name.to_string(),
            value,
            job_id: job_id.map(str::to_string),
        };
        self.change_device(device_id, change).await
    }

    /// Moves a device to another template, group-committed with the other writes jobs make;
    /// `Ok(false)` when there is no such device.
    pub async fn migrate_device(&self, device_id: &str, template: &str) -> Result<bool> {
        let change = DeviceChange::Template(template.to_string());
        self.change_device(device_id, change).await
    }

    async fn change_device(&self, device_id: &str, change: DeviceChange) -> Result<bool> {
        let write = DeviceChangeWrite {
            device_id: device_id.to_string(),
            change,
        };
        self.group_commit(|reply| Write::DeviceChange(write, reply))
            .await
    }

    /// Applies job changes to devices in the writer's transaction: reads the rows (on
    /// PostgreSQL locked, in id order, so a REST write's compare-and-swap on the etag sees
    /// them), applies each change in order, and writes each changed row once with a new etag.
    /// Per change, whether its device exists.
    pub(crate) async fn change_devices_bulk(
        &self,
        tx: &mut crate::write_gate::WriteTx,
        changes: &[(&str, &DeviceChange)],
    ) -> Result<Vec<bool>> {
        let mut ids: Vec<&str> = changes.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let lock = match self.dialect {
            crate::Dialect::Postgres => " FOR UPDATE",
            crate::Dialect::Sqlite => "",
        };
        let mut rows = std::collections::HashMap::new();
        for chunk in ids.chunks(crate::bulk::CHUNK) {
            let sql = self.sql(&format!(
                "SELECT id, cloud_properties, template FROM devices WHERE id IN ({}) \
                 ORDER BY id{lock}",
                marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let id: String = row.try_get("id")?;
                let cloud_properties =
                    serde_json::from_str(&row.try_get::<String, _>("cloud_properties")?)
                        .map_err(corrupt)?;
                let template = row.try_get("template")?;
                rows.insert(
                    id,
                    Changing {
                        cloud_properties,
                        template,
                        changed: false,
                    },
                );
            }
        }
        let mut exists = Vec::with_capacity(changes.len());
        let mut previous = Vec::new();
        for (id, change) in changes {
            let Some(row) = rows.get_mut(*id) else {
                exists.push(false);
                continue;
            };
            match change {
                DeviceChange::CloudProperty {
                    name,
                    value,
                    job_id,
                } => {
                    let before = row
                        .cloud_properties
                        .get(name)
                        .cloned()
                        .unwrap_or(Value::Null);
                    if let Some(job_id) = job_id
                        && &before != value
                    {
                        previous.push(PreviousRecord {
                            job_id: job_id.as_str(),
                            device_id: id,
                            previous: PreviousValue {
                                kind: CLOUD_PROPERTY,
                                component: None,
                                name: name.clone(),
                                value: before,
                            },
                        });
                    }
                    let patch = serde_json::json!({ name: value });
                    flotilla_model::validate::merge_patch(&mut row.cloud_properties, &patch);
                }
                DeviceChange::Template(template) => row.template = Some(template.clone()),
            }
            row.changed = true;
            exists.push(true);
        }
        let mut changed: Vec<(&String, &Changing)> =
            rows.iter().filter(|(_, row)| row.changed).collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for chunk in changed.chunks(crate::bulk::CHUNK) {
            let sql = self.sql(&format!(
                "UPDATE devices SET cloud_properties = v.column2, template = v.column3, \
                 etag = v.column4 FROM (VALUES {}) AS v WHERE devices.id = v.column1",
                crate::bulk::value_rows(chunk.len(), 4)
            ));
            let mut query = sqlx::query(&sql);
            for (id, row) in chunk {
                query = query
                    .bind(id.as_str())
                    .bind(row.cloud_properties.to_string())
                    .bind(row.template.as_deref())
                    .bind(flotilla_model::new_etag());
            }
            query.execute(&mut **tx).await?;
        }
        record_previous_values(self, tx, &previous).await?;
        Ok(exists)
    }
}

/// A device as an import writes it: the entity, its individual attestation and its cloud
/// properties, in one statement (`flotilla import`).
pub struct ImportedDevice<'a> {
    pub device: &'a Device,
    pub attestation: Option<&'a Value>,
    pub cloud_properties: &'a Value,
}

impl Store {
    /// Stores an imported device whole. `Conflict` when the id is taken.
    pub async fn insert_imported_device(&self, imported: ImportedDevice<'_>) -> Result<()> {
        let device = imported.device;
        let result = sqlx::query(&self.sql(
            "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, simulated, organizations, \
             attestation, cloud_properties, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&device.id)
        .bind(&device.etag)
        .bind(&device.display_name)
        .bind(device.template.as_deref())
        .bind(device.enabled)
        .bind(device.provisioned)
        .bind(device.simulated)
        .bind(json_text(&device.organizations))
        .bind(imported.attestation.map(Value::to_string))
        .bind(imported.cloud_properties.to_string())
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        inserted(result, Entity::Device, &device.id)
    }

    /// Replaces an imported device whole (not `provisioned`) if its etag is still
    /// `expected_etag`; `Ok(false)` if not.
    pub async fn replace_imported_device(
        &self,
        imported: ImportedDevice<'_>,
        expected_etag: &str,
    ) -> Result<bool> {
        let device = imported.device;
        let done = sqlx::query(&self.sql(
            "UPDATE devices SET etag = ?, display_name = ?, template = ?, enabled = ?, simulated = ?, \
             organizations = ?, attestation = ?, cloud_properties = ? WHERE id = ? AND etag = ?",
        ))
        .bind(&device.etag)
        .bind(&device.display_name)
        .bind(device.template.as_deref())
        .bind(device.enabled)
        .bind(device.simulated)
        .bind(json_text(&device.organizations))
        .bind(imported.attestation.map(Value::to_string))
        .bind(imported.cloud_properties.to_string())
        .bind(&device.id)
        .bind(expected_etag)
        .execute(&*self.writing().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
