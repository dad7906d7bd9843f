//! Shared access signatures as devices send them in CONNECT's password, and the CONNECT
//! username's two shapes (IoT Hub's `host/device/?query` and DPS's `scope/registrations/id/...`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A parsed `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SasToken {
    /// The resource URI exactly as sent (still percent-encoded when the SDK encoded it): the
    /// signature covers these bytes, so they are never decoded and re-encoded.
    pub resource_as_sent: String,
    /// The resource URI decoded, for checking which device it names.
    pub resource: String,
    pub signature: Vec<u8>,
    /// Expiry, seconds since the Unix epoch.
    pub expiry: i64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SasError {
    #[error("the password is not a SharedAccessSignature")]
    Malformed,
    #[error("the token expired")]
    Expired,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the token is for another resource")]
    WrongResource,
}

impl SasToken {
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let fields = token
            .trim()
            .strip_prefix("SharedAccessSignature ")
            .ok_or(SasError::Malformed)?;
        let (mut sr, mut sig, mut se) = (None, None, None);
        for pair in fields.split('&') {
            let (key, value) = pair.split_once('=').ok_or(SasError::Malformed)?;
            match key {
                "sr" => sr = Some(value),
                "sig" => sig = Some(value),
                "se" => se = Some(value),
                _ => {}
            }
        }
        let sr = sr.ok_or(SasError::Malformed)?;
        let signature = STANDARD
            .decode(percent_decode(sig.ok_or(SasError::Malformed)?))
            .map_err(|_| SasError::Malformed)?;
        let expiry = se
            .ok_or(SasError::Malformed)?
            .parse()
            .map_err(|_| SasError::Malformed)?;
        Ok(SasToken {
            resource_as_sent: sr.to_string(),
            resource: percent_decode(sr),
            signature,
            expiry,
        })
    }

    /// Checks the token against a base64 key: signature over `<sr as sent>\n<se>`, expiry, and
    /// that the resource is (or ends with) `expected_resource`, ignoring case in the host part.
    pub fn verify(&self, key: &str, expected_suffix: &str, now_secs: i64) -> Result<(), SasError> {
        let resource = self.resource.to_ascii_lowercase();
        let expected = expected_suffix.to_ascii_lowercase();
        if !(resource == expected || resource.ends_with(&format!("/{expected}"))) {
            return Err(SasError::WrongResource);
        }
        let key = STANDARD.decode(key).map_err(|_| SasError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::BadSignature)?;
        mac.update(self.resource_as_sent.as_bytes());
        mac.update(b"\n");
        mac.update(self.expiry.to_string().as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| SasError::BadSignature)?;
        if self.expiry <= now_secs {
            return Err(SasError::Expired);
        }
        Ok(())
    }
}

/// Signs a token (for the simulator and tests): `sr` is used as given.
pub fn sign(sr: &str, key: &str, expiry: i64) -> Option<String> {
    let key = STANDARD.decode(key).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    Some(format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}",
        percent_encode(&sig)
    ))
}

/// What a CONNECT's username says the client is.
#[derive(Debug, Clone, PartialEq)]
pub enum Username {
    /// An IoT Hub device: `{host}/{deviceId}/?api-version=...&model-id=...`.
    Device {
        host: String,
        device_id: String,
        model_id: Option<String>,
    },
    /// A DPS registration: `{idScope}/registrations/{registrationId}/api-version=...`.
    Registration {
        id_scope: String,
        registration_id: String,
    },
}

impl Username {
    pub fn parse(username: &str) -> Option<Username> {
        let mut parts = username.splitn(4, '/');
        let first = parts.next()?;
        let second = parts.next()?;
        let third = parts.next();
        if second == "registrations" {
            let registration_id = third?;
            return (!first.is_empty() && !registration_id.is_empty()).then(|| {
                Username::Registration {
                    id_scope: first.to_string(),
                    registration_id: registration_id.to_string(),
                }
            });
        }
        // Hub: "host/device/?query" or the legacy "host/device/query".
        let rest = match (third, parts.next()) {
            (Some(third), Some(fourth)) => format!("{third}/{fourth}"),
            (Some(third), None) => third.to_string(),
            _ => String::new(),
        };
        let query = rest.strip_prefix('?').unwrap_or(&rest);
        let model_id = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "model-id")
            .map(|(_, value)| percent_decode(value));
        (!first.is_empty() && !second.is_empty()).then(|| Username::Device {
            host: first.to_string(),
            device_id: second.to_string(),
            model_id,
        })
    }
}

pub fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector observed with the Python SDK (device-protocol.md §1.3).
    #[test]
    fn verifies_the_python_sdk_vector() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let token = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=lcMrhKDU5G9QRH1FvTOHnEdTd%2BT6V8KtS0W07mPMWsA%3D&se=1795782917";
        let parsed = SasToken::parse(token).unwrap();
        assert_eq!(parsed.resource, "localhost/devices/dev1");
        assert!(parsed.verify(key, "devices/dev1", 1_700_000_000).is_ok());
        assert_eq!(
            parsed.verify(key, "devices/dev1", 1_795_782_917),
            Err(SasError::Expired)
        );
        assert_eq!(
            parsed.verify(key, "devices/dev2", 1_700_000_000),
            Err(SasError::WrongResource)
        );
        let other = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWE=";
        assert_eq!(
            parsed.verify(other, "devices/dev1", 1_700_000_000),
            Err(SasError::BadSignature)
        );
    }

    #[test]
    fn signs_what_it_verifies_with_raw_or_encoded_resources() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        for sr in [
            "0ne00ABCDEF/registrations/dev3",
            "0ne00ABCDEF%2Fregistrations%2Fdev3",
        ] {
            let token = sign(sr, key, 2_000_000_000).unwrap();
            let parsed = SasToken::parse(&token).unwrap();
            assert!(
                parsed
                    .verify(key, "0ne00abcdef/registrations/dev3", 1_700_000_000)
                    .is_ok()
            );
        }
        assert_eq!(SasToken::parse("Basic abc"), Err(SasError::Malformed));
    }

    #[test]
    fn usernames() {
        assert_eq!(
            Username::parse(
                "localhost/dev1/?api-version=2020-09-30&DeviceClientType=x&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"
            ),
            Some(Username::Device {
                host: "localhost".into(),
                device_id: "dev1".into(),
                model_id: Some("dtmi:com:example:Thermostat;1".into())
            })
        );
        assert_eq!(
            Username::parse(
                "localhost/dev2/?api-version=2021-04-12&model-id=dtmi:com:example:Thermostat;1&DeviceClientType=azure-iot-device%2F1.18.4%20(node)"
            ),
            Some(Username::Device {
                host: "localhost".into(),
                device_id: "dev2".into(),
                model_id: Some("dtmi:com:example:Thermostat;1".into())
            })
        );
        assert_eq!(
            Username::parse(
                "0ne00ABCDEF/registrations/dev1/api-version=2019-03-31&ClientVersion=x"
            ),
            Some(Username::Registration {
                id_scope: "0ne00ABCDEF".into(),
                registration_id: "dev1".into()
            })
        );
        assert_eq!(Username::parse("nonsense"), None);
    }
}
