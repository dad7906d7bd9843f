//! Devices as the REST API shows them, and the checks on what a client may set.

use serde_json::{Value, json};

use crate::Invalid;
use crate::ids::check_dtmi;
use crate::validate::Fields;

/// A device as stored and returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub etag: String,
    pub display_name: String,
    pub template: Option<String>,
    pub enabled: bool,
    pub provisioned: bool,
    pub simulated: bool,
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
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "id": self.id,
            "etag": self.etag,
            "displayName": self.display_name,
            "enabled": self.enabled,
            "provisioned": self.provisioned,
            "simulated": self.simulated,
        });
        if let Some(template) = &self.template {
            body["template"] = json!(template);
        }
        if !self.organizations.is_empty() {
            body["organizations"] = json!(self.organizations);
        }
        body
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
