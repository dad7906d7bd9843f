//! The server's parts wired together over one store: the device gateway's hub (the device bus
//! for this process's devices), the job engine, the scheduler and the REST API's state. The
//! binary and the in-process test server both build them here, so tests run the parts as the
//! server does; listeners stay with the caller.

use std::sync::Arc;

use flotilla_api::AppState;
use flotilla_api::origin::TrustedProxies;
use flotilla_bus::DeviceBus;
use flotilla_gateway::Hub;
use flotilla_jobs::clock::Clock;
use flotilla_jobs::scheduler::Scheduler;
use flotilla_jobs::{Engine, EngineConfig};
use flotilla_store::{Dialect, ReplicaInfo, Store};

use crate::bootstrap::App;
use crate::replica::{self, Membership};

/// What the parts are built with, besides the store.
pub struct Settings {
    /// The application's identity, from `bootstrap::run`.
    pub app: App,
    /// The data dir's own id (`server_files::instance_id`).
    pub instance: String,
    /// The IoT Hub host name DPS assigns devices to.
    pub assigned_hub: String,
    pub engine: EngineConfig,
    /// The time schedules go by.
    pub clock: Arc<dyn Clock>,
    pub trusted_proxies: TrustedProxies,
}

/// The running parts: the device listeners serve `hub`, the REST API serves `state`.
pub struct Parts {
    pub hub: Hub,
    pub engine: Engine,
    pub scheduler: Scheduler,
    /// Job events POSTed to webhooks, from an outbox in the database.
    pub webhooks: flotilla_webhooks::Webhooks,
    pub state: AppState,
    /// This server's lease among the replicas: the server stops once it is fenced.
    pub replica: Membership,
}

/// Registers this server among those sharing the database and starts its heartbeat, builds the
/// parts and starts the engine and the scheduler.
pub async fn start(store: &Store, settings: Settings) -> anyhow::Result<Parts> {
    store
        .register_replica_for(
            &ReplicaInfo {
                instance: settings.instance.clone(),
                hostname: settings.assigned_hub.clone(),
            },
            settings.engine.lease,
        )
        .await?;
    let replica = replica::start(
        store.clone(),
        settings.engine.heartbeat,
        settings.engine.lease,
    );
    let hub = Hub::new(
        store.clone(),
        settings.app.id_scope.clone(),
        settings.assigned_hub,
    );
    // The engine and the API reach devices through the bus: the gateway's own devices on
    // SQLite (one server), any server's on PostgreSQL (cluster mode).
    let bus: Arc<dyn DeviceBus> = match store.dialect() {
        Dialect::Sqlite => Arc::new(hub.clone()),
        Dialect::Postgres => Arc::new(flotilla_cluster::start(store.clone(), hub.clone()).await?),
    };
    let engine = Engine::start(
        store.clone(),
        bus.clone(),
        flotilla_gateway::runtime::devices(),
        settings.engine,
    );
    // Maintenance windows go by the scheduler's clock (a file clock in tests).
    engine.use_clock(settings.clock.clone());
    let scheduler =
        flotilla_jobs::scheduler::start(store.clone(), engine.clone(), settings.clock.clone());
    let webhooks = flotilla_webhooks::start(store.clone(), Default::default());
    let state = AppState {
        store: store.clone(),
        id_scope: settings.app.id_scope,
        app_id: settings.app.app_id,
        bus,
        jobs: engine.clone(),
        clock: settings.clock,
        trusted_proxies: settings.trusted_proxies,
        turns: Default::default(),
        live: Default::default(),
    };
    Ok(Parts {
        hub,
        engine,
        scheduler,
        webhooks,
        state,
        replica,
    })
}
