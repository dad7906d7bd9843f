//! What `flotilla serve` and the in-process test server share: the first start's setup
//! (`bootstrap`) and the parts of the server wired together (`wiring`).

pub mod bootstrap;
pub mod prometheus;
pub mod replica;
pub mod wiring;
