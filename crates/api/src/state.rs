//! What every handler shares.

use flotilla_store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The application's DPS ID scope, returned in device credentials.
    pub id_scope: String,
    /// The application's id, named in API token values (`sr=`).
    pub app_id: String,
    /// How routes reach devices (the gateway, for devices connected to this process).
    pub bus: std::sync::Arc<dyn flotilla_bus::DeviceBus>,
    /// The job engine, woken when jobs change.
    pub jobs: flotilla_jobs::Engine,
    /// The time schedules go by (the system clock, or a test's).
    pub clock: std::sync::Arc<dyn flotilla_jobs::clock::Clock>,
    /// The proxies whose `X-Forwarded-*` headers links are built on (see [`crate::origin`]).
    pub trusted_proxies: crate::origin::TrustedProxies,
    /// Turns for this process's writers of one entity.
    pub turns: crate::turns::EntityTurns,
    /// Ends the event streams when the server stops.
    pub live: crate::live::Live,
}
