//! Signals between the servers sharing a PostgreSQL database, over LISTEN/NOTIFY (cluster mode
//! only). A signal is a hint that carries ids; the rows it points at are the truth. Each server
//! listens on a channel of its own and on one every server hears. A notification goes out when
//! the transaction that sent it commits, so nobody hears of a row before it is there; and it is
//! delivered at most once: the listener reports a resync after every reconnect, and the
//! listening side then re-reads what it may have missed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;

use crate::{ReplicaId, Result, Store};

/// What one server signals another (or every other).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// Close this connection of the device: a newer one took over on another server. (Also
    /// written by `presence`'s statement as JSON: keep the field names.)
    Close { device: String, connection: i64 },
    /// Close whatever connection the device has (it was disabled, deleted or its credentials
    /// changed); sent to every server.
    CloseDevice { device: String },
    /// A device call (`device_calls`) addressed to this server is waiting.
    Call { call: String },
    /// A call this server made was answered.
    CallDone { call: String },
}

impl Signal {
    /// The notification's payload.
    pub(crate) fn payload(&self) -> String {
        serde_json::to_string(self).expect("a signal serializes")
    }
}

/// Channel names start with this, followed by the server's id (`replica_channel`).
pub(crate) const REPLICA_CHANNEL_PREFIX: &str = "flotilla_r_";

/// The channel every server listens on.
const BROADCAST_CHANNEL: &str = "flotilla_all";

/// The channel a server listens on for signals addressed to it.
fn replica_channel(replica: &ReplicaId) -> String {
    format!("{REPLICA_CHANNEL_PREFIX}{replica}")
}

/// What the listener hears next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Signal(Signal),
    /// The listener (re)connected: signals sent meanwhile may be lost, re-read the rows.
    Resync,
}

/// A connection listening to this server's channel and the broadcast one.
pub struct SignalListener {
    listener: PgListener,
    resync_due: bool,
}

/// How long to wait before retrying a listener whose database is unreachable.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

impl SignalListener {
    /// The next signal, or `Resync` first and after every reconnect. Retries a lost database
    /// forever (the server keeps serving its own devices meanwhile).
    pub async fn next(&mut self) -> Heard {
        loop {
            if self.resync_due {
                // Any statement reconnects the listener and listens again on its channels.
                match sqlx::query("SELECT 1").execute(&mut self.listener).await {
                    Ok(_) => {
                        self.resync_due = false;
                        return Heard::Resync;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the signal listener cannot reconnect yet");
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                }
            }
            match self.listener.try_recv().await {
                Ok(Some(notification)) => match serde_json::from_str(notification.payload()) {
                    Ok(signal) => return Heard::Signal(signal),
                    Err(error) => {
                        tracing::warn!(%error, payload = notification.payload(), "an unreadable signal")
                    }
                },
                // Lost and already reconnected (sqlx reconnects eagerly).
                Ok(None) => {
                    tracing::warn!("the signal listener lost its connection");
                    self.resync_due = true;
                }
                Err(error) => {
                    tracing::warn!(%error, "the signal listener failed");
                    self.resync_due = true;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }
}

impl Store {
    /// A listener on this server's channel and the broadcast one (PostgreSQL only).
    pub async fn signal_listener(&self) -> Result<SignalListener> {
        let url = self.pool.connect_options().database_url.to_string();
        let mut listener = PgListener::connect(&url).await?;
        listener
            .listen_all([replica_channel(self.replica()).as_str(), BROADCAST_CHANNEL])
            .await?;
        Ok(SignalListener {
            listener,
            resync_due: true,
        })
    }

    /// Signals every server (this one too).
    pub async fn broadcast_signal(&self, signal: &Signal) -> Result<()> {
        sqlx::query(&self.sql("SELECT count(pg_notify(?, ?)) AS sent"))
            .bind(BROADCAST_CHANNEL)
            .bind(signal.payload())
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_small_tagged_json() {
        let close = Signal::Close {
            device: "d1".into(),
            connection: 7,
        };
        assert_eq!(
            close.payload(),
            r#"{"kind":"close","device":"d1","connection":7}"#
        );
        // As `presence` writes it with json_build_object.
        let written = r#"{"kind" : "close", "device" : "d1", "connection" : 7}"#;
        assert_eq!(serde_json::from_str::<Signal>(written).unwrap(), close);
        let call = Signal::CallDone { call: "c".into() };
        assert_eq!(
            serde_json::from_str::<Signal>(&call.payload()).unwrap(),
            call
        );
    }
}
