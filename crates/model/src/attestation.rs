//! A device's individual attestation (symmetric key, TPM or X.509), and the credentials a
//! device connects with.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::keys::is_valid_key;
use crate::validate::Fields;

/// A device's individual attestation, by its `type` (this type is also its OpenAPI schema).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum Attestation {
    #[serde(rename = "symmetricKey")]
    SymmetricKey(SymmetricKeyAttestation),
    #[serde(rename = "tpm")]
    Tpm(TpmAttestation),
    #[serde(rename = "x509")]
    X509(X509Attestation),
}

/// Symmetric-key attestation (`"type": "symmetricKey"`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    pub symmetric_key: SymmetricKey,
}

/// TPM attestation (`"type": "tpm"`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TpmAttestation {
    pub tpm: Tpm,
}

/// X.509 attestation (`"type": "x509"`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct X509Attestation {
    pub x509: X509,
}

/// A pair of symmetric keys, each base64 of 16 to 64 bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    pub primary_key: String,
    pub secondary_key: String,
}

/// A TPM attestation's endorsement key.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tpm {
    pub endorsement_key: String,
}

/// X.509 client certificates.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct X509 {
    pub client_certificates: X509Certificates,
}

/// The primary and (optional) secondary certificate.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct X509Certificates {
    pub primary: X509Certificate,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub secondary: Option<X509Certificate>,
}

/// A certificate, PEM or base64.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct X509Certificate {
    pub certificate: String,
}

impl Attestation {
    /// The attestation as the API shows it (and as it is stored), which is what a merge patch
    /// applies to.
    pub fn to_json(&self) -> Value {
        crate::to_json(self)
    }
}

/// Validates an individual attestation: only the spec's fields are kept.
pub fn attestation_from_json(body: &Value) -> Result<Attestation, Invalid> {
    let fields = Fields::of(body)?;
    match fields.required_string("type")? {
        "symmetricKey" => {
            let keys = fields
                .object("symmetricKey")?
                .ok_or_else(|| Invalid::field("symmetricKey", "is required"))?;
            let keys = Fields::nested(keys, "symmetricKey")?;
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
            let secondary_key = pair.pop().unwrap_or_default();
            let primary_key = pair.pop().unwrap_or_default();
            Ok(Attestation::SymmetricKey(SymmetricKeyAttestation {
                symmetric_key: SymmetricKey {
                    primary_key,
                    secondary_key,
                },
            }))
        }
        "tpm" => {
            let tpm = fields
                .object("tpm")?
                .ok_or_else(|| Invalid::field("tpm", "is required"))?;
            let endorsement_key = Fields::nested(tpm, "tpm")?
                .required_string("endorsementKey")?
                .to_string();
            Ok(Attestation::Tpm(TpmAttestation {
                tpm: Tpm { endorsement_key },
            }))
        }
        "x509" => {
            let x509 = fields
                .object("x509")?
                .ok_or_else(|| Invalid::field("x509", "is required"))?;
            let certs = Fields::nested(x509, "x509")?
                .object("clientCertificates")?
                .ok_or_else(|| Invalid::field("x509.clientCertificates", "is required"))?;
            let certs_fields = Fields::nested(certs, "x509.clientCertificates")?;
            let certificate = |entry: &str| -> Result<Option<X509Certificate>, Invalid> {
                let Some(cert) = certs_fields.object(entry)? else {
                    return Ok(None);
                };
                let cert_fields =
                    Fields::nested(cert, &format!("x509.clientCertificates.{entry}"))?;
                let certificate = cert_fields.required_string("certificate")?.to_string();
                Ok(Some(X509Certificate { certificate }))
            };
            let primary = certificate("primary")?
                .ok_or_else(|| Invalid::field("x509.clientCertificates.primary", "is required"))?;
            let secondary = certificate("secondary")?;
            Ok(Attestation::X509(X509Attestation {
                x509: X509 {
                    client_certificates: X509Certificates { primary, secondary },
                },
            }))
        }
        other => Err(Invalid::field(
            "type",
            format_args!("is \"{other}\"; it must be \"symmetricKey\", \"tpm\" or \"x509\""),
        )),
    }
}

/// A device's credentials: its individual attestation where it has one, else symmetric keys
/// derived from the default enrollment group (this type is also its OpenAPI schema).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCredentials {
    /// The DPS ID scope the device provisions through.
    pub id_scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub symmetric_key: Option<SymmetricKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tpm: Option<Tpm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub x509: Option<X509>,
}

/// A device's credentials: its individual attestation where it has one, else keys derived from
/// the default enrollment group (as IoT Central gives every device created through the API).
pub fn credentials(
    id_scope: &str,
    attestation: Option<Attestation>,
    derived: SymmetricKey,
) -> DeviceCredentials {
    let mut out = DeviceCredentials {
        id_scope: id_scope.to_string(),
        symmetric_key: None,
        tpm: None,
        x509: None,
    };
    match attestation {
        Some(Attestation::Tpm(a)) => out.tpm = Some(a.tpm),
        Some(Attestation::X509(a)) => out.x509 = Some(a.x509),
        Some(Attestation::SymmetricKey(a)) => out.symmetric_key = Some(a.symmetric_key),
        None => out.symmetric_key = Some(derived),
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attestation_types() {
        let key = crate::keys::random_key();
        let sym = json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}});
        assert!(attestation_from_json(&sym).is_ok());
        let bad = json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": "x", "secondaryKey": key}});
        assert_eq!(
            attestation_from_json(&bad).unwrap_err().field,
            "symmetricKey.primaryKey"
        );
        assert_eq!(
            attestation_from_json(&json!({"type": "magic"}))
                .unwrap_err()
                .field,
            "type"
        );
        assert!(
            attestation_from_json(&json!({"type": "tpm", "tpm": {"endorsementKey": "ek"}})).is_ok()
        );
    }
}
