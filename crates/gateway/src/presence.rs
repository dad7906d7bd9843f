//! Cluster mode: the connections this server holds, written to `device_connections` in batches.
//! A connect or a disconnect only queues its change, so a reconnect storm costs a few
//! statements, not one round trip per device, and no connection waits for the database. One
//! task writes the changes in order: each batch's claims (the newest connection per device),
//! then its releases, which delete a row only if it is still the released connection. Once a
//! claim is written, another task adopts the device's running job devices (ownership follows the
//! device), so adoptions never hold up presence.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_store::{HeldConnection, Store};
use tokio::sync::mpsc;

/// Changes written together at most.
const MAX_BATCH: usize = 4096;
/// Tries of a batch before it is given up (the database is unreachable meanwhile).
const TRIES: u32 = 5;

enum Change {
    Claim(HeldConnection),
    Release(HeldConnection),
}

/// Where connects and disconnects queue their presence changes.
#[derive(Clone)]
pub(crate) struct PresenceQueue(mpsc::UnboundedSender<Change>);

impl PresenceQueue {
    /// Starts the writer task.
    pub(crate) fn start(store: Store) -> PresenceQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        let (adopt_tx, adopt_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_changes(store.clone(), rx, adopt_tx));
        tokio::spawn(adopt_job_devices(store, adopt_rx));
        PresenceQueue(tx)
    }

    pub(crate) fn claim(&self, device_id: &str, connection_id: u64) {
        let _ = self.0.send(Change::Claim(held(device_id, connection_id)));
    }

    pub(crate) fn release(&self, device_id: &str, connection_id: u64) {
        let _ = self.0.send(Change::Release(held(device_id, connection_id)));
    }
}

fn held(device_id: &str, connection_id: u64) -> HeldConnection {
    HeldConnection {
        device_id: device_id.to_string(),
        connection_id,
    }
}

async fn write_changes(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Change>,
    adopt: mpsc::UnboundedSender<String>,
) {
    let mut changes = Vec::new();
    while rx.recv_many(&mut changes, MAX_BATCH).await > 0 {
        let (claims, releases) = in_order(changes.drain(..));
        for attempt in 1..=TRIES {
            let written = match store.claim_connections(&claims).await {
                Ok(()) => store.release_connections(&releases).await,
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => {
                    for claim in &claims {
                        let _ = adopt.send(claim.device_id.clone());
                    }
                    break;
                }
                Err(error) if attempt < TRIES => {
                    tracing::warn!(%error, "writing device presence failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(error) => tracing::error!(%error, "writing device presence failed"),
            }
        }
    }
}

/// The running job devices of devices that connected here become this server's to work: the
/// devices claimed meanwhile, in one statement per few hundred.
async fn adopt_job_devices(store: Store, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut device_ids = Vec::new();
    while rx.recv_many(&mut device_ids, MAX_BATCH).await > 0 {
        let ids: Vec<&str> = device_ids.iter().map(String::as_str).collect();
        if let Err(error) = store.adopt_job_devices(&ids).await {
            tracing::warn!(devices = ids.len(), %error, "adopting connected devices' job devices failed");
        }
        device_ids.clear();
    }
}

/// A batch's claims, the newest per device (connection ids grow), and its releases. Claims go
/// first: a release then deletes only a row its own connection wrote.
fn in_order(changes: impl Iterator<Item = Change>) -> (Vec<HeldConnection>, Vec<HeldConnection>) {
    let mut claims = BTreeMap::new();
    let mut releases = Vec::new();
    for change in changes {
        match change {
            Change::Claim(held) => {
                let newest = claims.entry(held.device_id).or_insert(held.connection_id);
                *newest = (*newest).max(held.connection_id);
            }
            Change::Release(held) => releases.push(held),
        }
    }
    let claims = claims
        .into_iter()
        .map(|(device_id, connection_id)| HeldConnection {
            device_id,
            connection_id,
        })
        .collect();
    (claims, releases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_claims_each_device_s_newest_connection_then_releases() {
        let changes = vec![
            Change::Claim(held("b", 1)),
            Change::Release(held("b", 1)),
            Change::Claim(held("a", 3)),
            Change::Claim(held("b", 2)),
        ];
        let (claims, releases) = in_order(changes.into_iter());
        assert_eq!(claims, vec![held("a", 3), held("b", 2)]);
        assert_eq!(releases, vec![held("b", 1)]);
    }
}
