//! What a simulation run is: which devices (and their keys), where the server is, how the
//! devices behave, and how fast they connect.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_model::keys::derive_device_key;
use serde::Deserialize;

use crate::Error;

/// One device's identity: its id and the base64 symmetric key it signs SAS tokens with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Credential {
    #[serde(rename = "deviceId")]
    pub device_id: String,
    pub key: String,
}

/// How the devices behave once connected.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Announced in the CONNECT username (`model-id`) and in the DPS payload (`modelId`).
    pub model: Option<String>,
    /// This fraction of devices (picked by a hash of the id) answers methods with 500 and
    /// acknowledges writable properties with `ac: 500`.
    pub fail_fraction: f64,
    /// Method responses and acknowledgements go out this long after the request.
    pub delay: Duration,
    /// This fraction of devices (another hash of the id) is offline for `offline_for`: once
    /// right after provisioning, and again every `offline_every` if that is set.
    pub offline_fraction: f64,
    pub offline_for: Duration,
    pub offline_every: Option<Duration>,
    /// QoS of the device's own publishes (twin GET, reported patches, method responses).
    pub qos: u8,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            model: None,
            fail_fraction: 0.0,
            delay: Duration::ZERO,
            offline_fraction: 0.0,
            offline_for: Duration::from_secs(30),
            offline_every: None,
            qos: 1,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host the devices dial (name or address); it must be covered by the server's
    /// certificate, which the development CA issues for `localhost` and `127.0.0.1`.
    pub server: String,
    pub port: u16,
    /// The host name in usernames and SAS resources. `None`: the hub DPS assigned, or else
    /// `server`. (Like the SDKs' `GatewayHostName`: the dial target stays `server`.)
    pub hub_host: Option<String>,
    /// The CA certificate (PEM) the devices trust.
    pub ca_pem: PathBuf,
    pub devices: Vec<Credential>,
    /// Register every device with DPS (this ID scope) before connecting it to the hub.
    pub id_scope: Option<String>,
    pub behaviour: Behaviour,
    /// TLS handshakes started per second, across the fleet (DPS and hub connections alike).
    pub connect_rate: u32,
    /// Connections (handshake to CONNACK, or a whole DPS registration) in progress at once.
    pub max_pending: usize,
    /// Local addresses to connect from, device `i` using `source_addrs[i % len]`: each address
    /// has its own ephemeral ports. Empty: the kernel picks.
    pub source_addrs: Vec<IpAddr>,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// How often progress is printed; zero prints none.
    pub progress_every: Duration,
    pub keep_alive: Duration,
    /// Lifetime of SAS tokens; a device reconnects with a fresh token shortly before it ends,
    /// as the Python SDK does.
    pub sas_ttl: Duration,
    /// Where to write the final summary as JSON.
    pub summary_file: Option<PathBuf>,
}

impl Config {
    /// A configuration with the defaults for everything but where the server is and who the
    /// devices are.
    pub fn new(server: String, port: u16, ca_pem: PathBuf, devices: Vec<Credential>) -> Config {
        Config {
            server,
            port,
            hub_host: None,
            ca_pem,
            devices,
            id_scope: None,
            behaviour: Behaviour::default(),
            connect_rate: 1000,
            max_pending: 256,
            source_addrs: Vec::new(),
            duration: None,
            progress_every: Duration::from_secs(5),
            keep_alive: Duration::from_secs(60),
            sas_ttl: Duration::from_secs(24 * 3600),
            summary_file: None,
        }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.devices.is_empty() {
            return bad("no devices to simulate".into());
        }
        for (name, value) in [
            ("--fail-fraction", self.behaviour.fail_fraction),
            ("--offline-fraction", self.behaviour.offline_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return bad(format!("{name} must be between 0.0 and 1.0, not {value}"));
            }
        }
        if self.connect_rate == 0 || self.max_pending == 0 {
            return bad("--connect-rate and --max-pending must be at least 1".into());
        }
        if self.behaviour.qos > 1 {
            return bad("--qos must be 0 or 1 (IoT Hub closes the connection on QoS 2)".into());
        }
        if self.keep_alive.as_secs() == 0 || self.keep_alive.as_secs() > 1740 {
            return bad("--keep-alive must be between 1 and 1740 seconds".into());
        }
        if self.sas_ttl < Duration::from_secs(60) {
            return bad("--sas-ttl must be at least 60 seconds".into());
        }
        if self.behaviour.offline_every == Some(Duration::ZERO) {
            return bad("--offline-every must be more than 0 seconds".into());
        }
        Ok(())
    }
}

/// Device ids `{prefix}{first:05}` … with keys derived from an enrollment group's key, as DPS
/// derives them: base64(HMAC-SHA256(base64decode(groupKey), deviceId)).
pub fn group_devices(
    prefix: &str,
    first: usize,
    count: usize,
    group_key: &str,
) -> Result<Vec<Credential>, Error> {
    (first..first + count)
        .map(|i| {
            let device_id = format!("{prefix}{i:05}");
            let key = derive_device_key(group_key, &device_id)
                .ok_or_else(|| Error::Config("the group key is not valid base64".into()))?;
            Ok(Credential { device_id, key })
        })
        .collect()
}

/// Reads JSON lines `{"deviceId": ..., "key": ...}` (blank lines and `#` comments skipped).
pub fn read_credentials(path: &Path) -> Result<Vec<Credential>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| {
                Error::Config(format!(
                    "{}:{}: expected {{\"deviceId\": ..., \"key\": ...}}: {e}",
                    path.display(),
                    n + 1
                ))
            })
        })
        .collect()
}

/// A number in [0, 1) fixed by the device id and a salt (FNV-1a), so the same devices are
/// picked in every run and the picks for different salts are independent.
pub fn pick(device_id: &str, salt: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in salt.bytes().chain([0]).chain(device_id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Mix the high bits down (FNV's low bits are weak for short inputs).
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 32;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_keys_as_dps_does() {
        // The vector from the DPS documentation (device-protocol.md, "IoT Central group keys").
        let key = derive_device_key(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        );
        assert_eq!(
            key.as_deref(),
            Some("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=")
        );
        let devices = group_devices("sim-", 0, 3, "MDEyMzQ1Njc4OWFiY2RlZg==").unwrap();
        let ids: Vec<_> = devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["sim-00000", "sim-00001", "sim-00002"]);
        assert!(group_devices("sim-", 0, 1, "not base64!").is_err());
    }

    #[test]
    fn picks_are_stable_and_roughly_uniform() {
        assert_eq!(pick("sim-00001", "fail"), pick("sim-00001", "fail"));
        assert_ne!(pick("sim-00001", "fail"), pick("sim-00001", "offline"));
        let n = 10_000;
        let picked = (0..n)
            .filter(|i| pick(&format!("sim-{i:05}"), "fail") < 0.1)
            .count();
        assert!(
            (800..1200).contains(&picked),
            "{picked} of {n} picked at 0.1"
        );
    }

    #[test]
    fn reads_credentials_files() {
        let dir = std::env::temp_dir().join(format!("flotilla-sim-creds-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# devices\n{\"deviceId\": \"a\", \"key\": \"k1\"}\n\n{\"deviceId\": \"b\", \"key\": \"k2\"}\n",
        )
        .unwrap();
        let creds = read_credentials(&dir).unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[1].device_id, "b");
        std::fs::write(&dir, "{\"id\": \"a\"}\n").unwrap();
        assert!(read_credentials(&dir).is_err());
        let _ = std::fs::remove_file(&dir);
    }
}
