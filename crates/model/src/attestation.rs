//! A device's individual attestation (symmetric key, TPM or X.509), and the credentials a
//! device connects with.

use serde_json::{Value, json};

use crate::Invalid;
use crate::keys::is_valid_key;
use crate::validate::Fields;

/// Validates an individual attestation and returns it normalized (only the spec's fields).
pub fn attestation_from_json(body: &Value) -> Result<Value, Invalid> {
    let fields = Fields::of(body)?;
    match fields.required_string("type")? {
        "symmetricKey" => {
            let keys = fields
                .object("symmetricKey")?
                .ok_or_else(|| Invalid::field("symmetricKey", "is required"))?;
            let keys = Fields::nested(keys, "symmetricKey")?;
            let mut out = serde_json::Map::new();
            for name in ["primaryKey", "secondaryKey"] {
                let key = keys.required_string(name)?;
                if !is_valid_key(key) {
                    return Err(Invalid::field(
                        &keys.name(name),
                        "must be a base64-encoded key of 16 to 64 bytes",
                    ));
                }
                out.insert(name.into(), json!(key));
            }
            Ok(json!({"type": "symmetricKey", "symmetricKey": out}))
        }
        "tpm" => {
            let tpm = fields
                .object("tpm")?
                .ok_or_else(|| Invalid::field("tpm", "is required"))?;
            let key = Fields::nested(tpm, "tpm")?
                .required_string("endorsementKey")?
                .to_string();
            Ok(json!({"type": "tpm", "tpm": {"endorsementKey": key}}))
        }
        "x509" => {
            let x509 = fields
                .object("x509")?
                .ok_or_else(|| Invalid::field("x509", "is required"))?;
            let certs = Fields::nested(x509, "x509")?
                .object("clientCertificates")?
                .ok_or_else(|| Invalid::field("x509.clientCertificates", "is required"))?;
            let certs_fields = Fields::nested(certs, "x509.clientCertificates")?;
            let mut out = serde_json::Map::new();
            for entry in ["primary", "secondary"] {
                match certs_fields.object(entry)? {
                    None if entry == "primary" => {
                        return Err(Invalid::field(
                            "x509.clientCertificates.primary",
                            "is required",
                        ));
                    }
                    None => {}
                    Some(cert) => {
                        let cert_fields =
                            Fields::nested(cert, &format!("x509.clientCertificates.{entry}"))?;
                        let pem = cert_fields.required_string("certificate")?;
                        out.insert(entry.into(), json!({"certificate": pem}));
                    }
                }
            }
            Ok(json!({"type": "x509", "x509": {"clientCertificates": out}}))
        }
        other => Err(Invalid::field(
            "type",
            format_args!("is \"{other}\"; it must be \"symmetricKey\", \"tpm\" or \"x509\""),
        )),
    }
}

/// A device's credentials: its individual attestation where it has one, else keys derived from
/// the default enrollment group (as IoT Central gives every device created through the API).
pub fn credentials(
    id_scope: &str,
    attestation: Option<&Value>,
    derived: (String, String),
) -> Value {
    let mut out = json!({"idScope": id_scope});
    match attestation
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
    {
        Some("tpm") => out["tpm"] = attestation.unwrap()["tpm"].clone(),
        Some("x509") => out["x509"] = attestation.unwrap()["x509"].clone(),
        Some("symmetricKey") => out["symmetricKey"] = attestation.unwrap()["symmetricKey"].clone(),
        _ => {
            out["symmetricKey"] = json!({"primaryKey": derived.0, "secondaryKey": derived.1});
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
