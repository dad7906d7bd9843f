//! Flotilla's rollout extensions of IoT Central's job body, one module per extension.

pub mod conflicts;
pub mod plan;
pub mod revert;
