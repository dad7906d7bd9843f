//! Device groups: a named filter over the devices.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::validate::Fields;

/// A device group as stored, and as the API returns it (this type is also its OpenAPI schema).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceGroup {
    /// Unique ID of the device group (the path's `deviceGroupId`).
    #[schema(read_only)]
    pub id: String,
    /// ETag used to prevent conflict in device group updates.
    #[schema(required = false)]
    pub etag: String,
    /// Display name of the device group.
    #[schema(max_length = 200)]
    pub display_name: String,
    /// The query that selects the group's devices, e.g.
    /// `SELECT * FROM devices WHERE $template = "dtmi:..." AND $simulated = false`.
    #[schema(max_length = 4096)]
    pub filter: String,
    /// Short summary of the device group.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 1000)]
    pub description: Option<String>,
    /// The organizations the group belongs to; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub organizations: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DeviceGroupSpec {
    pub display_name: String,
    pub filter: String,
    pub parsed: flotilla_filter::Filter,
    pub description: Option<String>,
    pub organizations: Vec<String>,
}

pub const READ_ONLY: &[&str] = &["id"];

impl DeviceGroup {
    /// The group as the API shows it, which is what a merge patch applies to.
    pub fn to_json(&self) -> Value {
        crate::to_json(self)
    }
}

impl DeviceGroupSpec {
    pub fn from_json(id: &str, body: &Value) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        fields.check_path_id("id", id)?;
        let display_name = fields
            .bounded_string("displayName", 200)?
            .ok_or_else(|| Invalid::field("displayName", "is required"))?;
        let filter = fields
            .bounded_string("filter", 4096)?
            .ok_or_else(|| Invalid::field("filter", "is required"))?;
        let parsed = flotilla_filter::parse(filter)
            .map_err(|e| Invalid::new("filter", format!("The field 'filter' is an {e}.")))?;
        Ok(DeviceGroupSpec {
            display_name: display_name.to_string(),
            filter: filter.to_string(),
            parsed,
            description: fields
                .bounded_string("description", 1000)?
                .map(str::to_string),
            organizations: fields.organizations()?,
        })
    }
}
