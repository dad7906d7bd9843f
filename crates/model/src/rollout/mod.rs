//! Flotilla's rollout extensions of IoT Central's job body, one module per extension.

pub mod conflicts;
pub mod device_fields;
pub mod offline;
pub mod plan;
pub mod reason_code;
pub mod retry;
pub mod revert;
