//! The server's stop, in order: what makes work for the others stops before what it uses, and
//! the database closes last, so no part meets a closed pool (and logs it as an error).

use flotilla_jobs::Engine;
use flotilla_jobs::scheduler::Scheduler;
use flotilla_store::Store;
use tokio::task::JoinHandle;

/// What runs until the server stops; the REST API's own listener has stopped before.
pub struct Running {
    pub scheduler: Scheduler,
    pub webhooks: flotilla_webhooks::Webhooks,
    pub engine: Engine,
    /// The device listener and the HTTPS listener's accept loops.
    pub listeners: Vec<JoinHandle<()>>,
    pub store: Store,
}

impl Running {
    pub async fn stop(self) {
        // The scheduler creates jobs for the engine; the engine's device tasks talk to devices
        // through the listeners' connections, which must outlive them, or a task would record
        // a disconnection the stop caused as a device's failure.
        self.scheduler.stop().await;
        // Webhook deliveries in flight are let go (sent again after a restart or elsewhere).
        self.webhooks.stop().await;
        self.engine.stop().await;
        // In cluster mode, what the engine was working on is handed over now, not a lease later
        // (on SQLite the next start takes it over). Bounded: a stop must not wait on a database
        // that does not answer.
        if self.store.dialect() == flotilla_store::Dialect::Postgres {
            let retire = self.store.retire_replica();
            match tokio::time::timeout(std::time::Duration::from_secs(5), retire).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "handing this server's job devices over failed");
                }
                Err(_) => tracing::warn!("handing this server's job devices over timed out"),
            }
        }
        for listener in self.listeners {
            listener.abort();
        }
        self.store.close().await;
    }
}
