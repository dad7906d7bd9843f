//! Symmetric keys: random ones for enrollment groups and devices, and the per-device key that
//! DPS derives from a group key (HMAC-SHA256 of the device id, keyed with the group key).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A new random key: 64 bytes, base64, the length Azure issues.
pub fn random_key() -> String {
    STANDARD.encode(random_bytes::<64>())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// Lower-case hex of random bytes, for opaque ids and etags.
pub fn random_hex<const N: usize>() -> String {
    random_bytes::<N>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The device key a device in a symmetric-key enrollment group uses. `None` when the group key
/// is not valid base64.
pub fn derive_device_key(group_key: &str, device_id: &str) -> Option<String> {
    let key = STANDARD.decode(group_key).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(device_id.as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether a string is a usable symmetric key: base64 of 16 to 64 bytes.
pub fn is_valid_key(key: &str) -> bool {
    STANDARD
        .decode(key)
        .is_ok_and(|bytes| (16..=64).contains(&bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_matches_python_hmac() {
        // base64(hmac.new(key, b"device-1", hashlib.sha256).digest()) in Python, as the Azure
        // IoT SDK samples compute a group-derived device key.
        let group_key = STANDARD.encode(b"0123456789abcdef0123456789abcdef");
        let derived = derive_device_key(&group_key, "device-1").unwrap();
        assert_eq!(derived, "RMt/vH6618dIqXOfPQmgeanMrOxw2/w49k23Foj+FWg=");
        assert!(derive_device_key("not base64!", "d").is_none());
    }

    #[test]
    fn random_keys_are_valid_and_distinct() {
        let (a, b) = (random_key(), random_key());
        assert!(is_valid_key(&a));
        assert_ne!(a, b);
        assert_eq!(random_hex::<8>().len(), 16);
    }
}
