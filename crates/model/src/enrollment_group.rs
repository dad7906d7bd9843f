//! Enrollment groups: how devices that the server has never seen provision themselves (DPS),
//! each device deriving its key from the group's. Symmetric-key groups only, for now.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::attestation::SymmetricKey;
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
    pub kind: EnrollmentGroupType,
    pub primary_key: String,
    pub secondary_key: String,
}

/// The type of devices that connect through an enrollment group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum EnrollmentGroupType {
    #[serde(rename = "iot")]
    Iot,
    #[serde(rename = "iotEdge")]
    IotEdge,
}

impl EnrollmentGroupType {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentGroupType::Iot => "iot",
            EnrollmentGroupType::IotEdge => "iotEdge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [EnrollmentGroupType::Iot, EnrollmentGroupType::IotEdge]
            .into_iter()
            .find(|kind| kind.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentGroupSpec {
    pub display_name: String,
    pub enabled: bool,
    pub kind: EnrollmentGroupType,
    pub primary_key: String,
    pub secondary_key: String,
}

pub const READ_ONLY: &[&str] = &["id", "idScope"];

/// An enrollment group as the API shows it: how devices the server has never seen provision
/// themselves (this type is also its OpenAPI schema).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EnrollmentGroup)]
pub struct EnrollmentGroupBody {
    /// Unique ID of the enrollment group (the path's `enrollmentGroupId`).
    #[schema(read_only)]
    pub id: String,
    /// ETag used to prevent conflict in enrollment group updates.
    #[schema(required = false)]
    pub etag: String,
    /// Display name of the enrollment group.
    #[schema(max_length = 200)]
    pub display_name: String,
    /// Whether the devices using the group are allowed to connect to IoT Central.
    #[schema(required = false, default = true)]
    pub enabled: bool,
    /// The type of devices that connect through the group.
    #[serde(rename = "type")]
    pub kind: EnrollmentGroupType,
    /// The attestation mechanism of the group.
    pub attestation: GroupAttestation,
    /// The DPS ID scope of the application.
    #[schema(read_only)]
    pub id_scope: String,
}

/// An enrollment group's attestation. Only symmetric keys are supported; keys left out of a
/// create are generated, and responses always carry them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupAttestation {
    #[serde(rename = "type")]
    pub kind: GroupAttestationType,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub symmetric_key: Option<SymmetricKey>,
}

/// The attestation type of an enrollment group.
#[derive(Debug, Serialize, ToSchema)]
pub enum GroupAttestationType {
    #[serde(rename = "symmetricKey")]
    SymmetricKey,
}

impl EnrollmentGroup {
    /// The group as the API shows it, in the application of `id_scope`.
    pub fn body(&self, id_scope: &str) -> EnrollmentGroupBody {
        EnrollmentGroupBody {
            id: self.id.clone(),
            etag: self.etag.clone(),
            display_name: self.display_name.clone(),
            enabled: self.enabled,
            kind: self.kind,
            attestation: GroupAttestation {
                kind: GroupAttestationType::SymmetricKey,
                symmetric_key: Some(SymmetricKey {
                    primary_key: self.primary_key.clone(),
                    secondary_key: self.secondary_key.clone(),
                }),
            },
            id_scope: id_scope.to_string(),
        }
    }

    /// The group as the API shows it, which is what a merge patch applies to.
    pub fn to_json(&self, id_scope: &str) -> Value {
        crate::to_json(&self.body(id_scope))
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
        let kind = EnrollmentGroupType::parse(kind)
            .ok_or_else(|| Invalid::field("type", "must be \"iot\" or \"iotEdge\""))?;
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
            kind,
            primary_key,
            secondary_key,
        })
    }
}
