//! The live side of the gateway: which devices are connected (one connection each), what they
//! subscribed to, and the calls the rest of the server makes on devices: push a desired-property
//! patch, invoke a direct method and wait for its response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::{
    BoxFuture, Delivery, DesiredPatch, DeviceBus, InvokeError, MethodCall, MethodResponse,
    ReportedChange, ReportedChanges,
};
use flotilla_store::{Dialect, Store};
use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::presence::PresenceQueue;
use crate::topics::{self, Subscription};

/// A packet for a connection's writer.
#[derive(Debug)]
pub enum Outgoing {
    Publish {
        topic: String,
        payload: Bytes,
        /// 1 for at-least-once (the writer numbers it), 0 for at-most-once.
        qos: u8,
    },
    /// A control packet (acknowledgements, pings). Boxed: every connection's queue allocates
    /// room for 32 of these at once, so their size is memory per idle device.
    Packet(Box<rumqttc::Packet>),
    /// Close the connection (another connection took over, or the device was disabled).
    Close,
}

/// A connection's subscriptions and their granted QoS.
pub type Subscriptions = Arc<Mutex<HashMap<Subscription, u8>>>;

/// A live connection, as the hub knows it.
#[derive(Clone)]
pub(crate) struct Live {
    pub id: u64,
    pub tx: mpsc::Sender<Outgoing>,
    pub subscriptions: Subscriptions,
    pub closed: Arc<Notify>,
    /// The newest desired version pushed on this connection: an older one arriving late (two
    /// writers racing) is not pushed after it.
    pub desired_version: Arc<std::sync::atomic::AtomicI64>,
}

/// Removes a method call's pending entry when the call ends, however it ends.
struct Forget<'a> {
    hub: &'a Hub,
    rid: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.hub
            .inner
            .pending_methods
            .lock()
            .unwrap()
            .remove(&self.rid);
    }
}

/// Reported changes kept for listeners that fall behind (a job's devices acknowledge by the
/// thousand at once).
const REPORTED_BACKLOG: usize = 16 * 1024;

/// A method call waiting for its response: the device asked, and where the answer goes.
type PendingMethod = (String, oneshot::Sender<MethodResponse>);

/// Shared handle to the gateway's live state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    id_scope: String,
    assigned_hub: String,
    live: Mutex<HashMap<String, Live>>,
    /// Woken whenever a device connects, for calls that wait for one.
    connected: Notify,
    pending_methods: Mutex<HashMap<String, PendingMethod>>,
    /// Reported properties as they change (jobs wait for acknowledgements).
    reported: broadcast::Sender<ReportedChange>,
    next_id: AtomicU64,
    /// Cluster mode (PostgreSQL): where this server's connections are recorded for the others.
    presence: Option<PresenceQueue>,
}

impl Hub {
    pub fn new(store: Store, id_scope: String, assigned_hub: String) -> Hub {
        let presence =
            (store.dialect() == Dialect::Postgres).then(|| PresenceQueue::start(store.clone()));
        Hub {
            inner: Arc::new(Inner {
                presence,
                store,
                id_scope,
                assigned_hub,
                live: Mutex::new(HashMap::new()),
                connected: Notify::new(),
                pending_methods: Mutex::new(HashMap::new()),
                reported: broadcast::channel(REPORTED_BACKLOG).0,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn id_scope(&self) -> &str {
        &self.inner.id_scope
    }

    /// The host name DPS hands devices as their hub.
    pub fn assigned_hub(&self) -> &str {
        &self.inner.assigned_hub
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a device's new connection; an older one is told to close (one connection per
    /// device id, the newest wins).
    pub(crate) fn attach(&self, device_id: &str, live: Live) {
        let old = self
            .inner
            .live
            .lock()
            .unwrap()
            .insert(device_id.to_string(), live);
        if let Some(old) = old {
            tracing::info!(
                device = device_id,
                "a new connection takes over from the old one"
            );
            old.closed.notify_one();
            let _ = old.tx.try_send(Outgoing::Close);
        }
        self.inner.connected.notify_waiters();
    }

    /// Forgets a connection that ended, unless a newer one already replaced it.
    pub(crate) fn detach(&self, device_id: &str, connection_id: u64) {
        let mut live = self.inner.live.lock().unwrap();
        if live.get(device_id).is_some_and(|l| l.id == connection_id) {
            live.remove(device_id);
        }
    }

    /// Cluster mode: records in the database that this server holds the device's connection,
    /// so that REST calls on any server reach it, and a connection another server holds for the
    /// device is closed (the newest wins across the cluster, as `attach` does here). Queued,
    /// not waited for (see `presence`).
    pub(crate) fn claim_presence(&self, device_id: &str, connection_id: u64) {
        if let Some(presence) = &self.inner.presence {
            presence.claim(device_id, connection_id);
        }
    }

    /// Cluster mode: forgets the connection's presence row, unless a newer one replaced it.
    pub(crate) fn release_presence(&self, device_id: &str, connection_id: u64) {
        if let Some(presence) = &self.inner.presence {
            presence.release(device_id, connection_id);
        }
    }

    /// Closes the device's connection if it is still this one (another server took over).
    pub fn close_connection(&self, device_id: &str, connection_id: u64) {
        let mut live = self.inner.live.lock().unwrap();
        if live.get(device_id).is_some_and(|l| l.id == connection_id)
            && let Some(old) = live.remove(device_id)
        {
            tracing::info!(
                device = device_id,
                "a connection on another server takes over from this one"
            );
            old.closed.notify_one();
            let _ = old.tx.try_send(Outgoing::Close);
        }
    }

    fn live(&self, device_id: &str) -> Option<Live> {
        self.inner.live.lock().unwrap().get(device_id).cloned()
    }

    /// Whether the device is connected to this server now.
    pub fn is_connected_here(&self, device_id: &str) -> bool {
        self.inner.live.lock().unwrap().contains_key(device_id)
    }

    /// How many devices are connected now.
    pub fn connected_count(&self) -> usize {
        self.inner.live.lock().unwrap().len()
    }

    /// Queues a message for a connection without waiting; a connection whose queue is full has
    /// stopped reading and is closed (it gets its twin again when it reconnects).
    fn send_or_cut(&self, device_id: &str, live: &Live, outgoing: Outgoing) -> bool {
        match live.tx.try_send(outgoing) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    device = device_id,
                    "closing a connection that stopped reading"
                );
                self.disconnect(device_id);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    async fn wait_for_methods(
        &self,
        device_id: &str,
        connect_timeout: Duration,
    ) -> Result<Live, InvokeError> {
        let deadline = tokio::time::Instant::now() + connect_timeout;
        loop {
            // Register interest before checking, so a connect in between is not missed.
            let notified = self.inner.connected.notified();
            let mut not_subscribed = false;
            if let Some(live) = self.live(device_id) {
                if live
                    .subscriptions
                    .lock()
                    .unwrap()
                    .contains_key(&Subscription::Methods)
                {
                    return Ok(live);
                }
                not_subscribed = true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(if not_subscribed {
                    InvokeError::NotSubscribed
                } else {
                    InvokeError::NotConnected
                });
            }
            // Subscriptions arrive after the connect: poll briefly as well as waiting.
            let wait = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(wait, notified).await;
        }
    }

    /// Tells listeners that a device's reported properties changed, and to what.
    pub(crate) fn reported_changed(&self, device_id: &str, version: i64, reported: Value) {
        let _ = self.inner.reported.send(ReportedChange {
            device_id: device_id.to_string(),
            version,
            reported: Arc::new(reported),
        });
    }

    /// A device's answer to a method call; ignored unless that device was the one asked.
    pub(crate) fn method_response(&self, device_id: &str, rid: &str, status: i64, payload: Value) {
        let mut pending = self.inner.pending_methods.lock().unwrap();
        if pending
            .get(rid)
            .is_some_and(|(device, _)| device == device_id)
            && let Some((_, tx)) = pending.remove(rid)
        {
            let _ = tx.send(MethodResponse { status, payload });
        }
    }
}

impl DeviceBus for Hub {
    fn push_desired<'a>(
        &'a self,
        device_id: &'a str,
        patch: DesiredPatch,
    ) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let Some(live) = self.live(device_id) else {
                return Delivery::NotSent;
            };
            let Some(qos) = live
                .subscriptions
                .lock()
                .unwrap()
                .get(&Subscription::DesiredPatches)
                .copied()
            else {
                return Delivery::NotSent;
            };
            if live
                .desired_version
                .fetch_max(patch.version, Ordering::SeqCst)
                >= patch.version
            {
                return Delivery::NotSent;
            }
            let outgoing = Outgoing::Publish {
                topic: topics::desired_patch(patch.version),
                payload: Bytes::from(patch.message.to_string()),
                qos: qos.min(1),
            };
            if self.send_or_cut(device_id, &live, outgoing) {
                Delivery::Sent
            } else {
                Delivery::NotSent
            }
        })
    }

    fn invoke<'a>(
        &'a self,
        device_id: &'a str,
        call: MethodCall,
    ) -> BoxFuture<'a, Result<MethodResponse, InvokeError>> {
        Box::pin(async move {
            let live = self
                .wait_for_methods(device_id, call.connect_timeout)
                .await?;
            let rid = format!("{:x}", self.next_id());
            let (tx, rx) = oneshot::channel();
            self.inner
                .pending_methods
                .lock()
                .unwrap()
                .insert(rid.clone(), (device_id.to_string(), tx));
            let qos = live
                .subscriptions
                .lock()
                .unwrap()
                .get(&Subscription::Methods)
                .copied()
                .unwrap_or(0);
            let outgoing = Outgoing::Publish {
                topic: topics::method_request(&call.method, &rid),
                payload: Bytes::from(call.payload.to_string()),
                qos: qos.min(1),
            };
            // Whatever happens to this call (its caller may go away), the pending entry goes.
            let _forget = Forget {
                hub: self,
                rid: rid.clone(),
            };
            if !self.send_or_cut(device_id, &live, outgoing) {
                return Err(InvokeError::NotConnected);
            }
            match tokio::time::timeout(call.response_timeout, rx).await {
                Ok(Ok(response)) => Ok(response),
                _ => Err(InvokeError::Timeout),
            }
        })
    }

    fn wait_until_reachable<'a>(
        &'a self,
        device_id: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<(), InvokeError>> {
        Box::pin(async move { self.wait_for_methods(device_id, within).await.map(|_| ()) })
    }

    fn is_connected<'a>(&'a self, device_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(self.is_connected_here(device_id)))
    }

    fn disconnect(&self, device_id: &str) {
        if let Some(live) = self.inner.live.lock().unwrap().remove(device_id) {
            live.closed.notify_one();
            let _ = live.tx.try_send(Outgoing::Close);
        }
    }

    /// A listener that falls behind hears `Missed` and should re-check everything it waits for.
    fn reported_changes(&self) -> ReportedChanges {
        ReportedChanges::new(self.inner.reported.subscribe())
    }
}
