//! Flotilla's rollout extensions of IoT Central's job body (issue 14), one module per
//! extension: its types, field-by-field validation and response shape.

pub mod conflicts;
pub mod deadlines;
pub mod device_fields;
pub mod gate;
pub mod offline;
pub mod pacing;
pub mod plan;
pub mod reason_code;
pub mod retry;
pub mod revert;
pub mod windows;
