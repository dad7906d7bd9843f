//! Enrollment groups: how devices that the server has never seen provision themselves (DPS),
//! each device deriving its key from the group's. Symmetric-key groups only, for now.

use serde_json::{Value, json};

use crate::Invalid;
use crate::keys::{is_valid_key, random_key};
use crate::validate::Fields;

/// The group made at first start, like IoT Central's `SAS-IoT-Devices`.
pub const DEFAULT_ID: &str = "sas-iot-devices";
pub const DEFAULT_DISPLAY_NAME: &str = "SAS-IoT-Devices";

#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentGroup {
    pub id: String,
    pub etag: String,
    pub display_name: String,
    pub enabled: bool,
    /// `iot` or `iotEdge`.
    pub kind: String,
    pub primary_key: String,
    pub secondary_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentGroupSpec {
    pub display_name: String,
    pub enabled: bool,
    pub kind: String,
    pub primary_key: String,
    pub secondary_key: String,
}

pub const READ_ONLY: &[&str] = &["id", "idScope"];

impl EnrollmentGroup {
    pub fn to_json(&self, id_scope: &str) -> Value {
        json!({
            "id": self.id,
            "etag": self.etag,
            "displayName": self.display_name,
            "enabled": self.enabled,
            "type": self.kind,
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {
                    "primaryKey": self.primary_key,
                    "secondaryKey": self.secondary_key,
                }
            },
            "idScope": id_scope,
        })
    }
}

impl EnrollmentGroupSpec {
    /// Validates a group body. Keys the client leaves out are generated, as IoT Central does.
    pub fn from_json(id: &str, body: &Value) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        fields.check_path_id("id", id)?;
        let display_name = fields
            .bounded_string("displayName", 200)?
            .ok_or_else(|| Invalid::field("displayName", "is required"))?;
        let kind = fields
            .string("type")?
            .ok_or_else(|| Invalid::field("type", "is required"))?;
        if kind != "iot" && kind != "iotEdge" {
            return Err(Invalid::field("type", "must be \"iot\" or \"iotEdge\""));
        }
        let attestation_value = fields
            .object("attestation")?
            .ok_or_else(|| Invalid::field("attestation", "is required"))?;
        let attestation = Fields::nested(attestation_value, "attestation")?;
        match attestation.required_string("type")? {
            "symmetricKey" => {}
            "x509" => {
                return Err(Invalid::field(
                    "attestation.type",
                    "\"x509\" is not supported yet; use \"symmetricKey\"",
                ));
            }
            _ => {
                return Err(Invalid::field(
                    "attestation.type",
                    "must be \"symmetricKey\"",
                ));
            }
        }
        let (primary_key, secondary_key) = match attestation.object("symmetricKey")? {
            None => (random_key(), random_key()),
            Some(keys) => {
                let keys = Fields::nested(keys, "attestation.symmetricKey")?;
                let mut pair = Vec::new();
                for name in ["primaryKey", "secondaryKey"] {
                    let key = keys.required_string(name)?;
                    if !is_valid_key(key) {
                        return Err(Invalid::field(
                            &keys.name(name),
                            "must be a base64-encoded key of 16 to 64 bytes",
                        ));
                    }
                    pair.push(key.to_string());
                }
                (pair[0].clone(), pair[1].clone())
            }
        };
        Ok(EnrollmentGroupSpec {
            display_name: display_name.to_string(),
            enabled: fields.bool("enabled")?.unwrap_or(true),
            kind: kind.to_string(),
            primary_key,
            secondary_key,
        })
    }
}
