//! Devices as the REST API shows them, and the checks on what a client may set.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::ids::check_dtmi;
use crate::validate::Fields;

/// A device as stored, and as the API returns it (this type is also its OpenAPI schema).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Unique ID of the device (the path's `deviceId`).
    #[schema(read_only)]
    pub id: String,
    /// ETag used to prevent conflict in device updates.
    #[schema(required = false)]
    pub etag: String,
    /// Display name of the device (at most 200 characters); the id when not given.
    #[schema(required = false, max_length = 200)]
    pub display_name: String,
    /// The device template (DTMI) of the device; absent when the device has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub template: Option<String>,
    /// Whether the device connection to IoT Central has been enabled.
    #[schema(required = false, default = true)]
    pub enabled: bool,
    /// Whether resources have been allocated for the device.
    #[schema(read_only)]
    pub provisioned: bool,
    /// Whether the device is simulated.
    #[schema(required = false, default = false)]
    pub simulated: bool,
    /// The organizations the device belongs to; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub organizations: Vec<String>,
}

/// What a client sets on a device (everything but the read-only fields).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub display_name: String,
    pub template: Option<String>,
    pub enabled: bool,
    pub simulated: bool,
    pub organizations: Vec<String>,
}

/// The server sets these; a body may only echo them unchanged.
pub const READ_ONLY: &[&str] = &["id", "provisioned"];

impl Device {
    /// The device as the API shows it, which is what a merge patch applies to.
    pub fn to_json(&self) -> Value {
        crate::to_json(self)
    }
}

impl DeviceSpec {
    /// Validates a device body. Absent fields take IoT Central's defaults: the display name is
    /// the id, the device is enabled and not simulated.
    pub fn from_json(id: &str, body: &Value) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        fields.check_path_id("id", id)?;
        let template = fields.string("template")?;
        if let Some(template) = template {
            check_dtmi("template", template)?;
        }
        if fields.contains("provisioned") {
            fields.bool("provisioned")?;
        }
        Ok(DeviceSpec {
            display_name: fields
                .bounded_string("displayName", 200)?
                .unwrap_or(id)
                .to_string(),
            template: template.map(str::to_string),
            enabled: fields.bool("enabled")?.unwrap_or(true),
            simulated: fields.bool("simulated")?.unwrap_or(false),
            organizations: fields.organizations()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_and_errors() {
        let spec = DeviceSpec::from_json("d1", &json!({})).unwrap();
        assert_eq!(spec.display_name, "d1");
        assert!(spec.enabled && !spec.simulated);
        let err = DeviceSpec::from_json("d1", &json!({"enabled": "yes"})).unwrap_err();
        assert_eq!(err.field, "enabled");
        let err = DeviceSpec::from_json("d1", &json!({"template": "nope"})).unwrap_err();
        assert_eq!(err.field, "template");
        let err = DeviceSpec::from_json("d1", &json!({"id": "d2"})).unwrap_err();
        assert_eq!(err.field, "id");
    }
}
