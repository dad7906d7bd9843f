//! Webhooks: job events, derived from the database, queued as deliveries in an outbox table
//! (`producer`), and POSTed, signed, at least once with backoff (`sender`, `signature`).
//!
//! Both run on every server: the producer's cursor moves by compare-and-swap, so two servers
//! looking at once make each delivery once; the sender claims due deliveries (SKIP LOCKED on
//! PostgreSQL) for a while, so one server makes a given attempt.

mod producer;
mod sender;
pub mod signature;

use std::time::Duration;

use flotilla_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How webhooks are produced and sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How often job changes are turned into deliveries.
    pub produce_every: Duration,
    /// How often due deliveries are looked for.
    pub send_every: Duration,
    /// An attempt's deadline (connect, send, answer).
    pub timeout: Duration,
    /// The wait after the first failed attempt; it doubles after each, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before a delivery is `failed` for good.
    pub max_attempts: i64,
    /// `job.progress` at most this often per job (and once when it ends).
    pub progress_every: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            produce_every: Duration::from_secs(1),
            send_every: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 10,
            progress_every: Duration::from_secs(5),
        }
    }
}

/// The running producer and sender.
pub struct Webhooks {
    stopping: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the producer and the sender over `store`.
pub fn start(store: Store, config: WebhookConfig) -> Webhooks {
    let stopping = CancellationToken::new();
    let tasks = vec![
        tokio::spawn(producer::run(
            store.clone(),
            config.clone(),
            stopping.clone(),
        )),
        tokio::spawn(sender::run(store, config, stopping.clone())),
    ];
    Webhooks { stopping, tasks }
}

impl Webhooks {
    /// Stops both; an attempt in flight is abandoned and its claim released, so it is made
    /// again (by this server after a restart, or by another at once).
    pub async fn stop(self) {
        self.stopping.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
