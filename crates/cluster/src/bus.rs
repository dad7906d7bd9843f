//! The device bus in cluster mode: this server's hub for the devices connected here, a call
//! through the database to the server holding any other.

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::{
    BoxFuture, Delivery, DesiredPatch, DeviceBus, InvokeError, MethodCall, MethodResponse,
    ReportedChanges,
};
use flotilla_gateway::Hub;
use flotilla_store::{CallKind, CallStatus, DeviceCall, ReplicaId, Store};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::calls::{self, Waiters};

/// How often a caller re-reads its call's row, in case the answer's signal was lost.
const ANSWER_POLL: Duration = Duration::from_millis(250);
/// How often a call waiting for an offline device looks for it again.
const PRESENCE_POLL: Duration = Duration::from_millis(100);
/// Time allowed beyond a call's own timeouts for the hop to the holder and back.
const HOP_ALLOWANCE: Duration = Duration::from_secs(2);
/// How long a desired patch handed to another server may take to go out.
const PUSH_WITHIN: Duration = Duration::from_secs(2);

/// The device bus over every server sharing the database.
#[derive(Clone)]
pub struct ClusterBus {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub hub: Hub,
    pub store: Store,
    pub waiters: Waiters,
    /// Calls this server is making for others now (a signal and a resync may both bring one).
    pub serving: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// How a call handed to another server ended.
enum Remote {
    /// Answered (or failed, or moved) as the row says.
    Done(CallStatus, Option<Value>),
    /// The server asked stopped (its lease ran out) before answering.
    HolderGone,
    TimedOut,
}

impl ClusterBus {
    pub(crate) fn new(store: Store, hub: Hub) -> ClusterBus {
        ClusterBus {
            shared: Arc::new(Shared {
                hub,
                store,
                waiters: Waiters::default(),
                serving: Default::default(),
            }),
        }
    }

    fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The other live server holding the device's connection, if one does.
    async fn remote_holder(&self, device_id: &str) -> Option<ReplicaId> {
        match self.store().connection_holder(device_id).await {
            Ok(holder) => holder.filter(|holder| holder != self.store().replica()),
            Err(error) => {
                tracing::warn!(device = device_id, %error, "reading where a device is connected failed");
                None
            }
        }
    }

    /// Hands a call to `holder` and waits up to `within` for its answer: woken by the answer's
    /// signal, re-reading the row every `ANSWER_POLL` regardless.
    async fn call_remote(
        &self,
        holder: &ReplicaId,
        device_id: &str,
        kind: CallKind,
        request: Value,
        within: Duration,
    ) -> Remote {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let answered = self.shared.waiters.register(&id);
        let deadline = Instant::now() + within;
        let call = DeviceCall {
            id: id.clone(),
            device_id: device_id.to_string(),
            kind,
            request,
            deadline_ms: jiff::Timestamp::now().as_millisecond() + within.as_millis() as i64,
        };
        let outcome = match self.store().send_device_call(holder, &call).await {
            Ok(()) => self.await_answer(&id, &answered, deadline).await,
            Err(error) => {
                tracing::warn!(device = device_id, %error, "handing a call to another server failed");
                Remote::HolderGone
            }
        };
        self.shared.waiters.remove(&id);
        if let Err(error) = self.store().forget_device_call(&id).await {
            tracing::warn!(call = id, %error, "deleting a finished device call failed");
        }
        outcome
    }

    async fn await_answer(
        &self,
        id: &str,
        answered: &tokio::sync::Notify,
        deadline: Instant,
    ) -> Remote {
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(ANSWER_POLL);
            let _ = tokio::time::timeout(wait, answered.notified()).await;
            match self.store().device_call_state(id).await {
                Ok(Some(state)) if state.status != CallStatus::Pending => {
                    return Remote::Done(state.status, state.response);
                }
                Ok(Some(state)) if !state.holder_alive => return Remote::HolderGone,
                Ok(_) => {}
                Err(error) => tracing::warn!(call = id, %error, "reading a device call failed"),
            }
            if Instant::now() >= deadline {
                return Remote::TimedOut;
            }
        }
    }

    /// Whether the device is connected to another live server (a database read).
    async fn connected_elsewhere(&self, device_id: &str) -> bool {
        self.remote_holder(device_id).await.is_some()
    }
}

impl DeviceBus for ClusterBus {
    fn push_desired<'a>(
        &'a self,
        device_id: &'a str,
        patch: DesiredPatch,
    ) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if self.hub().is_connected_here(device_id) {
                return self.hub().push_desired(device_id, patch).await;
            }
            let Some(holder) = self.remote_holder(device_id).await else {
                return Delivery::NotSent;
            };
            let request = json!({"version": patch.version, "message": patch.message});
            match self
                .call_remote(&holder, device_id, CallKind::Push, request, PUSH_WITHIN)
                .await
            {
                Remote::Done(CallStatus::Answered, Some(answer))
                    if answer["sent"].as_bool() == Some(true) =>
                {
                    Delivery::Sent
                }
                _ => Delivery::NotSent,
            }
        })
    }

    fn invoke<'a>(
        &'a self,
        device_id: &'a str,
        call: MethodCall,
    ) -> BoxFuture<'a, Result<MethodResponse, InvokeError>> {
        Box::pin(async move {
            let connect_deadline = Instant::now() + call.connect_timeout;
            // A holder that lost the device meanwhile answers `Moved`: look once more.
            let mut moves_left = 1;
            loop {
                let connect_left = connect_deadline.saturating_duration_since(Instant::now());
                if self.hub().is_connected_here(device_id) {
                    let here = MethodCall {
                        connect_timeout: connect_left,
                        ..call
                    };
                    return self.hub().invoke(device_id, here).await;
                }
                if let Some(holder) = self.remote_holder(device_id).await {
                    let request = calls::invoke_request(&call, connect_left);
                    let within = connect_left + call.response_timeout + HOP_ALLOWANCE;
                    match self
                        .call_remote(&holder, device_id, CallKind::Invoke, request, within)
                        .await
                    {
                        Remote::Done(CallStatus::Moved, _) if moves_left > 0 => {
                            moves_left -= 1;
                            continue;
                        }
                        Remote::Done(status, answer) => {
                            return calls::invoke_outcome(status, answer.as_ref());
                        }
                        // Its server stopped, perhaps after the device got the call: not a
                        // device that was never reached.
                        Remote::HolderGone => return Err(InvokeError::HolderLost),
                        Remote::TimedOut => return Err(InvokeError::Timeout),
                    }
                }
                if connect_left.is_zero() {
                    return Err(InvokeError::NotConnected);
                }
                tokio::time::sleep(connect_left.min(PRESENCE_POLL)).await;
            }
        })
    }

    fn wait_until_reachable<'a>(
        &'a self,
        device_id: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<(), InvokeError>> {
        Box::pin(async move {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if self.hub().is_connected_here(device_id) {
                    return self.hub().wait_until_reachable(device_id, left).await;
                }
                // Subscriptions are known only to the holder; its answer to the call says.
                if self.connected_elsewhere(device_id).await {
                    return Ok(());
                }
                if left.is_zero() {
                    return Err(InvokeError::NotConnected);
                }
                tokio::time::sleep(left.min(PRESENCE_POLL)).await;
            }
        })
    }

    /// Here, or on another live server (read from `device_connections`).
    fn is_connected<'a>(&'a self, device_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.hub().is_connected_here(device_id) || self.connected_elsewhere(device_id).await
        })
    }

    /// Closes the connection here at once, and signals every server to close theirs.
    fn disconnect(&self, device_id: &str) {
        self.hub().disconnect(device_id);
        let store = self.store().clone();
        let device_id = device_id.to_string();
        tokio::spawn(async move {
            if let Err(error) = store.close_device_everywhere(&device_id).await {
                tracing::error!(device = device_id, %error, "signalling a disconnect failed");
            }
        });
    }

    /// This server's devices only: job work stays with the server holding the device.
    fn reported_changes(&self) -> ReportedChanges {
        self.hub().reported_changes()
    }
}
