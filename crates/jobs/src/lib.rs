//! Flotilla's job engine: runs jobs (set writable properties, run commands, set cloud
//! properties, migrate templates) across a device group's devices, in batches, with
//! cancellation thresholds, stop and resume, durable in the database so that a restart goes on
//! where the last process stopped.
//!
//! `engine` drives jobs and `service` takes the users' lifecycle commands (the job state
//! machine itself is `flotilla_model::job_state`); `scheduler` creates the jobs of scheduled jobs at their occurrences
//! (by `clock`); `device_op` is what a job does to one device; `templates` resolves a
//! job's target template; `config` holds the timings.

pub mod clock;
pub mod config;
pub mod conflicts;
mod device_op;
pub mod engine;
pub mod members;
mod meters;
pub mod plan;
pub mod rollout;
pub mod scheduler;
pub mod service;
pub mod templates;

pub use config::EngineConfig;
pub use engine::Engine;
pub use service::JobError;
