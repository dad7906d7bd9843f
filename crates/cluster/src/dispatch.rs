//! What this server does with the signals it hears: closes connections another server took
//! over, makes the device calls other servers hand it, and wakes its own callers when their
//! calls are answered. After every listener (re)connect it re-reads the calls addressed to it.

use flotilla_bus::{Delivery, DesiredPatch, DeviceBus};
use flotilla_store::{CallKind, CallStatus, DeviceCall, Heard, Signal, SignalListener};
use serde_json::{Value, json};

use crate::ClusterBus;
use crate::calls;

pub(crate) async fn run(bus: ClusterBus, mut listener: SignalListener) {
    loop {
        match listener.next().await {
            Heard::Signal(Signal::Close { device, connection }) => {
                bus.shared.hub.close_connection(&device, connection as u64);
            }
            Heard::Signal(Signal::CloseDevice { device }) => bus.shared.hub.disconnect(&device),
            Heard::Signal(Signal::Call { call }) => {
                tokio::spawn(serve_call(bus.clone(), call));
            }
            Heard::Signal(Signal::CallDone { call }) => bus.shared.waiters.wake(&call),
            Heard::Resync => resync(&bus).await,
        }
    }
}

/// Signals may have been lost: make every call still waiting for this server, and let every
/// caller here read its row.
async fn resync(bus: &ClusterBus) {
    bus.shared.waiters.wake_all();
    match bus.shared.store.pending_device_call_ids().await {
        Ok(ids) => {
            for id in ids {
                tokio::spawn(serve_call(bus.clone(), id));
            }
        }
        Err(error) => tracing::warn!(%error, "re-reading the calls for this server failed"),
    }
}

/// Makes a call another server handed this one, once, and answers it.
async fn serve_call(bus: ClusterBus, id: String) {
    if !bus.shared.serving.lock().unwrap().insert(id.clone()) {
        return;
    }
    let answer = match bus.shared.store.pending_device_call(&id).await {
        Ok(Some(call)) => Some(make_call(&bus, &call).await),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(call = id, %error, "reading a device call failed");
            None
        }
    };
    if let Some((status, response)) = answer
        && let Err(error) = bus
            .shared
            .store
            .answer_device_call(&id, status, &response)
            .await
    {
        tracing::warn!(call = id, %error, "answering a device call failed");
    }
    bus.shared.serving.lock().unwrap().remove(&id);
}

async fn make_call(bus: &ClusterBus, call: &DeviceCall) -> (CallStatus, Value) {
    let hub = &bus.shared.hub;
    if !hub.is_connected_here(&call.device_id) {
        return (CallStatus::Moved, Value::Null);
    }
    match call.kind {
        CallKind::Invoke => {
            let Some(method) = calls::method_call(&call.request) else {
                return (CallStatus::Failed, json!({"error": "unreadable"}));
            };
            let outcome = hub.invoke(&call.device_id, method).await;
            calls::invoke_answer(&outcome)
        }
        CallKind::Push => {
            let (Some(version), message) = (
                call.request["version"].as_i64(),
                call.request["message"].clone(),
            ) else {
                return (CallStatus::Failed, json!({"error": "unreadable"}));
            };
            let delivery = hub
                .push_desired(&call.device_id, DesiredPatch { version, message })
                .await;
            (
                CallStatus::Answered,
                json!({"sent": delivery == Delivery::Sent}),
            )
        }
    }
}
