//! The job engine's timings and limits.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long one device's operation may take, from its start: a property job waits this long
    /// for the acknowledgement (an offline device included), a command job this long for the
    /// device to connect. Default 5 minutes.
    pub device_timeout: Duration,
    /// How long a command job waits for a connected device's answer (IoT Central's fixed 30 s).
    pub command_response_timeout: Duration,
    /// Devices of one job in flight at once, on this replica (each replica of a database works
    /// up to this many of a job's devices).
    pub max_in_flight_per_job: usize,
    /// How often the engine looks for work when nothing wakes it.
    pub tick: Duration,
    /// How often this replica renews its lease (its heartbeat, in the database's time) and
    /// sweeps the replicas whose lease ran out. Default 2 s.
    pub heartbeat: Duration,
    /// How long a lease lasts without a heartbeat: past it, the others declare this replica dead
    /// and take its job devices over, and it stops writing by its own clock. Default 10 s; the
    /// same on every replica of a database.
    pub lease: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            device_timeout: Duration::from_secs(300),
            command_response_timeout: Duration::from_secs(30),
            max_in_flight_per_job: 1000,
            tick: Duration::from_millis(500),
            heartbeat: Duration::from_secs(2),
            lease: Duration::from_secs(10),
        }
    }
}
