//! This server's membership among the replicas sharing its database: a heartbeat renews its
//! lease (in the database's time) and then sweeps the replicas whose lease ran out, releasing
//! their work to the living. A heartbeat that finds this replica declared dead, or a lease that
//! lapsed by this process's own clock (after a pause, say), makes it a zombie: the store already
//! refuses its writes (`StoreError::Fenced`), and `fenced` resolves so the server stops and
//! exits; its supervisor restarts it under a new id.

use std::time::Duration;

use flotilla_store::{Dialect, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running heartbeat.
pub struct Membership {
    fenced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// Starts the heartbeat for a store that registered (`Store::register_replica`): every
/// `heartbeat`, renew the lease for `lease`, then sweep.
pub fn start(store: Store, heartbeat: Duration, lease: Duration) -> Membership {
    let (fenced_tx, fenced) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match store.heartbeat(lease).await {
                Ok(()) => {}
                Err(StoreError::Fenced) => break,
                Err(e) => {
                    // The database may be back before the lease runs out; the store fences
                    // this replica by its own clock if not.
                    tracing::warn!(error = %e, "renewing this server's lease failed");
                    if store.is_fenced() {
                        break;
                    }
                    continue;
                }
            }
            // A SQLite database has one server: nobody else to sweep.
            if store.dialect() == Dialect::Sqlite {
                continue;
            }
            match store.sweep_dead_replicas(lease).await {
                Ok(dead) => {
                    for replica in dead {
                        tracing::warn!(%replica, "a replica's lease ran out: declared dead, its job devices released");
                    }
                }
                Err(StoreError::Fenced) => break,
                Err(e) => tracing::warn!(error = %e, "sweeping replicas failed"),
            }
        }
        tracing::error!(
            replica = %store.replica(),
            "this server's lease lapsed or the others declared it dead; it stops"
        );
        let _ = fenced_tx.send(true);
    });
    Membership { fenced, task }
}

impl Membership {
    /// Resolves once this replica is fenced (never, while its lease holds).
    pub fn fenced(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut fenced = self.fenced.clone();
        async move {
            if fenced.wait_for(|fenced| *fenced).await.is_err() {
                // The heartbeat ended without fencing (it was stopped): never resolves.
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn is_fenced(&self) -> bool {
        *self.fenced.borrow()
    }

    /// Stops the heartbeat (the server is stopping).
    pub fn stop(&self) {
        self.task.abort();
    }
}
