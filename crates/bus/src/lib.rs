//! The device bus: everything the rest of the server asks of devices, as one trait. The
//! gateway implements it for the devices connected to this process; the job engine and the
//! REST API hold an `Arc<dyn DeviceBus>` and never see connections, topics or the MQTT side.
//! Its types carry only device ids and JSON, so an implementation spanning several servers
//! (presence and calls over the database) fits behind it as well.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

/// A future a bus method returns (boxed: the trait is used as `dyn DeviceBus`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the server asks of devices.
pub trait DeviceBus: Send + Sync {
    /// Sends a desired-property patch to the device, if it is connected and subscribed to
    /// them. A device that is not gets the change from its twin when it next connects.
    fn push_desired<'a>(
        &'a self,
        device_id: &'a str,
        patch: DesiredPatch,
    ) -> BoxFuture<'a, Delivery>;

    /// Invokes a direct method: waits up to the call's connect timeout for the device to be
    /// reachable, then up to its response timeout for the answer.
    fn invoke<'a>(
        &'a self,
        device_id: &'a str,
        call: MethodCall,
    ) -> BoxFuture<'a, Result<MethodResponse, InvokeError>>;

    /// Waits up to `within` for the device to be reachable (connected and subscribed to
    /// methods).
    fn wait_until_reachable<'a>(
        &'a self,
        device_id: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<(), InvokeError>>;

    /// Whether the device is connected now (to this server, or to any server sharing its
    /// database).
    fn is_connected<'a>(&'a self, device_id: &'a str) -> BoxFuture<'a, bool>;

    /// Closes the device's connection, if it has one (it was disabled or deleted).
    fn disconnect(&self, device_id: &str);

    /// Reported documents as they change, from now on.
    fn reported_changes(&self) -> ReportedChanges;
}

/// A desired-property patch as the device receives it, and the desired version it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPatch {
    pub version: i64,
    /// The message body (`model::twin::desired_patch_message`).
    pub message: Value,
}

/// Whether a desired patch went out to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Offline, not subscribed, or a newer version already went out: the device reads its twin
    /// when it (re)connects.
    NotSent,
}

/// A direct method call.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// The method's name on the wire ([`method_name`]).
    pub method: String,
    pub payload: Value,
    /// How long to wait for the device to be reachable.
    pub connect_timeout: Duration,
    /// How long to wait for its answer once asked.
    pub response_timeout: Duration,
}

/// The name a device's command is invoked by: `{component}*{name}` for a component's.
pub fn method_name(component: Option<&str>, name: &str) -> String {
    match component {
        Some(component) => format!("{component}*{name}"),
        None => name.to_string(),
    }
}

/// A device's answer to a method call.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResponse {
    pub status: i64,
    pub payload: Value,
}

/// Why a direct method call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    #[error("the device is not connected")]
    NotConnected,
    #[error("the device is connected but has not subscribed to direct methods")]
    NotSubscribed,
    #[error("the device did not answer in time")]
    Timeout,
    /// The call went to the server holding the device's connection, which stopped before an
    /// answer came back: the device may have run it.
    #[error("the server holding the device's connection stopped before the device answered")]
    HolderLost,
}

/// A device's reported properties after a change: the document (as stored) and its version,
/// so that nobody waiting for an acknowledgement has to read the twin again.
#[derive(Debug, Clone)]
pub struct ReportedChange {
    pub device_id: String,
    pub version: i64,
    pub reported: Arc<Value>,
}

/// What a listener of reported changes hears next.
#[derive(Debug, Clone)]
pub enum ReportedEvent {
    Changed(ReportedChange),
    /// Changes were missed (the listener fell behind): re-check everything waited for.
    Missed,
}

/// A subscription to reported changes.
pub struct ReportedChanges {
    receiver: broadcast::Receiver<ReportedChange>,
}

impl ReportedChanges {
    /// Listens on a broadcast channel a bus sends every change to.
    pub fn new(receiver: broadcast::Receiver<ReportedChange>) -> ReportedChanges {
        ReportedChanges { receiver }
    }

    /// The next change, `Missed` after falling behind, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<ReportedEvent> {
        match self.receiver.recv().await {
            Ok(change) => Some(ReportedEvent::Changed(change)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(ReportedEvent::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_s_command_is_invoked_by_component_star_name() {
        assert_eq!(
            method_name(Some("thermostat1"), "reboot"),
            "thermostat1*reboot"
        );
        assert_eq!(method_name(None, "reboot"), "reboot");
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_hears_that_it_missed_changes() {
        let (sender, receiver) = broadcast::channel(1);
        let mut changes = ReportedChanges::new(receiver);
        for version in [1, 2] {
            sender
                .send(ReportedChange {
                    device_id: "d".into(),
                    version,
                    reported: Arc::new(Value::Null),
                })
                .unwrap();
        }
        assert!(matches!(changes.next().await, Some(ReportedEvent::Missed)));
        assert!(matches!(changes.next().await, Some(ReportedEvent::Changed(c)) if c.version == 2));
        drop(sender);
        assert!(changes.next().await.is_none());
    }
}
