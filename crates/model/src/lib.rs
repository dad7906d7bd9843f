//! Flotilla's domain model: the IoT Central entities as the REST API shows them, the rules their
//! ids follow, the built-in roles, and what a device template says about its devices.
//!
//! Nothing here does I/O: the store persists these types and the API validates with them.

pub mod api_token;
pub mod attestation;
pub mod device;
pub mod device_group;
pub mod enrollment_group;
pub mod ids;
pub mod job;
pub mod job_events;
pub mod job_state;
pub mod keys;
pub mod properties;
pub mod roles;
pub mod rollout;
pub mod schedule;
pub mod schema;
pub mod template;
pub mod twin;
pub mod validate;
pub mod webhook;

pub use validate::Invalid;

/// The JSON of a response type: what the API answers, and what a merge patch applies to.
fn to_json(body: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(body).expect("response types have string keys and finite numbers")
}

/// A new etag: opaque, quoted like IoT Central's (`"\"...\""`), different on every change.
pub fn new_etag() -> String {
    format!("\"{}\"", keys::random_hex::<12>())
}
