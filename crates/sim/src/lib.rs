//! `flotilla sim`: a fleet of simulated IoT Hub devices in one process, for load and job
//! testing. Each device registers through DPS (or uses a known key), connects over MQTT 3.1.1
//! and TLS like the Azure IoT SDKs do, reads its twin, acknowledges writable properties the Plug
//! and Play way, and answers direct methods; some can be made to fail, answer late, or go
//! offline.
//!
//! `config` says what to run; `fleet` runs it (a task per device, paced connections,
//! progress); `device` is one device's behaviour; `provision` is DPS registration; `pnp`
//! builds acknowledgements; `mqtt` is the small MQTT client; `tls` the client TLS setup;
//! `stats` the counters and summary.

pub mod config;
mod device;
pub mod fleet;
pub mod mqtt;
pub mod pnp;
pub mod provision;
pub mod stats;
pub mod tls;

use std::path::PathBuf;

pub use config::{Behaviour, Config, Credential};
pub use fleet::run;
pub use stats::Summary;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}
