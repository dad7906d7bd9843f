//! What a job does to one device: its property writes (as one desired patch, then waiting for
//! the device's acknowledgement), commands, cloud-property writes and template migration.
//! Each step that must not be repeated is recorded before it is taken, so a restart resumes the
//! device rather than redoing it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{DesiredPatch, DeviceBus, InvokeError, MethodCall, MethodResponse, method_name};
use flotilla_model::job::{CapabilityTarget, Operation};
use flotilla_model::job_state::FailureReason;
use flotilla_model::rollout::offline::{Offline, Policy};
use flotilla_model::twin::{ack_of, desired_patch_message, mark_components, plain_values};
use flotilla_model::validate::merge_patch;
use flotilla_store::{JobDevice, Store, StoreError};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::config::EngineConfig;

/// How a device's operations ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed {
        detail: Option<Value>,
    },
    Failed {
        code: FailureReason,
        reason: String,
        detail: Option<Value>,
    },
    /// The device was not connected when its turn came, and the job's offline policy skips
    /// such devices.
    Skipped {
        reason: String,
    },
    /// The device is no longer this replica's to work (another took it over, or this replica's
    /// lease lapsed): the task stops without recording anything.
    Abandoned,
}

/// Whether a store error means this task must stop: the device is not ours, or we are fenced.
fn abandons(e: &StoreError) -> bool {
    matches!(e, StoreError::Fenced | StoreError::NotOwner(_))
}

fn failed(code: FailureReason, reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        code,
        reason: reason.into(),
        detail: None,
    }
}

/// A device's reported document as it changes, for the property operations waiting on it
/// (the gateway hands over each change, so waiting needs no database read).
#[derive(Default)]
pub struct ReportedWatch {
    notify: Notify,
    /// The newest reported document seen, and its version.
    latest: Mutex<Option<(i64, Arc<Value>)>>,
    /// Bumped when changes were missed: waiters read the twin again.
    missed: AtomicU64,
}

impl ReportedWatch {
    pub fn changed(&self, version: i64, reported: Arc<Value>) {
        {
            let mut latest = self.latest.lock().unwrap();
            if latest.as_ref().is_none_or(|(v, _)| version > *v) {
                *latest = Some((version, reported));
            }
        }
        self.notify.notify_waiters();
    }

    pub fn missed(&self) {
        self.missed.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn latest(&self) -> Option<(i64, Arc<Value>)> {
        self.latest.lock().unwrap().clone()
    }
}

pub struct DeviceRun<'a> {
    pub store: &'a Store,
    pub bus: &'a dyn DeviceBus,
    pub config: &'a EngineConfig,
    pub job_id: &'a str,
    pub device: &'a JobDevice,
    pub deadline_ms: i64,
    /// The device's time (the job's `deviceTimeoutSeconds`, or the server's default).
    pub timeout: Duration,
    /// The job's `deadline`: a device cut short by it fails with the code `deadline`.
    pub job_deadline_ms: Option<i64>,
    /// The device's reported properties as they change.
    pub reported: Arc<ReportedWatch>,
    pub components: Vec<String>,
    /// The job's offline policy, if it has one.
    pub offline: Option<&'a Offline>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl DeviceRun<'_> {
    fn remaining(&self) -> Duration {
        Duration::from_millis((self.deadline_ms - now_ms()).max(0) as u64)
    }

    /// The failure of a device whose time ran out: `code` and `reason`, unless the job's
    /// deadline is what ended it.
    fn out_of_time(&self, code: FailureReason, reason: String) -> Outcome {
        match self.job_deadline_ms {
            Some(deadline) if now_ms() >= deadline && self.deadline_ms <= deadline => failed(
                FailureReason::Deadline,
                format!("the job's deadline passed before the device finished ({reason})"),
            ),
            _ => failed(code, reason),
        }
    }

    pub async fn run(&self, operations: &[Operation]) -> Outcome {
        if let Some(outcome) = self.offline_policy(operations).await {
            return outcome;
        }
        let properties: Vec<&CapabilityTarget> = operations
            .iter()
            .filter_map(|op| match op {
                Operation::Property(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut detail = Map::new();
        for operation in operations {
            let outcome = match operation {
                Operation::Property(_) => continue,
                Operation::CloudProperty(c) => self.cloud_property(c).await,
                Operation::TemplateMigration { template } => self.migrate(template).await,
                Operation::Command(c) => self.command(c).await,
            };
            match outcome {
                // A command's answer: `responseCode` and `response`, beside the device's status.
                Outcome::Completed {
                    detail: Some(Value::Object(fields)),
                } => detail.extend(fields),
                Outcome::Completed { detail: Some(_) } => {}
                Outcome::Completed { detail: None } => {}
                failure => return failure,
            }
        }
        if !properties.is_empty() {
            let outcome = self.properties(&properties).await;
            if !matches!(outcome, Outcome::Completed { .. }) {
                return outcome;
            }
        }
        Outcome::Completed {
            detail: (!detail.is_empty()).then_some(Value::Object(detail)),
        }
    }

    /// The job's offline policy for a device not connected as its operation starts: `Some`
    /// outcome to end it with (skipped, or failed), `None` to go on (it connected in time, or
    /// the policy waits as a job without one does). A device taken over midway (its property
    /// written, its command sent) already went past this point.
    async fn offline_policy(&self, operations: &[Operation]) -> Option<Outcome> {
        let offline = self.offline?;
        let reaches_device = operations
            .iter()
            .any(|op| matches!(op, Operation::Property(_) | Operation::Command(_)));
        let resumed = self.device.sent || self.device.desired_version.is_some();
        let id = &self.device.device_id;
        if !reaches_device || resumed || self.bus.is_connected(id).await {
            return None;
        }
        match offline.policy {
            Policy::Skip => Some(Outcome::Skipped {
                reason: "skipped: the device was not connected when its turn came (offline \
                         policy skip)"
                    .to_string(),
            }),
            Policy::Fail => Some(failed(
                FailureReason::Offline,
                "the device was not connected when its turn came (offline policy fail)",
            )),
            Policy::Wait => {
                let wait = offline.wait()?.min(self.remaining());
                match self.bus.wait_until_reachable(id, wait).await {
                    Ok(()) => None,
                    Err(e) => Some(failed(
                        FailureReason::Offline,
                        format!(
                            "the device did not connect within {} s (offline policy wait): {e}",
                            wait.as_secs()
                        ),
                    )),
                }
            }
        }
    }

    /// Writes every property of the job as one desired patch (once: the version it made is
    /// recorded), then waits for the device to accept them all.
    async fn properties(&self, properties: &[&CapabilityTarget]) -> Outcome {
        // The reported document to judge by, with its version: the twin as the write left it,
        // then each change the gateway hands over; read from the database when there is none.
        let mut current: Option<(i64, Arc<Value>)> = None;
        let version = match self.device.desired_version {
            Some(version) => version,
            None => {
                let mut change = Value::Object(Map::new());
                for p in properties {
                    let value = p.effective_value.clone().unwrap_or(Value::Null);
                    let piece = match &p.component {
                        Some(c) => json!({ c: { &p.name: value } }),
                        None => json!({ &p.name: value }),
                    };
                    merge_patch(&mut change, &piece);
                }
                mark_components(&mut change, &self.components);
                let write = self
                    .store
                    .patch_desired_for(&self.device.device_id, &change, Some(self.job_id))
                    .await;
                let twin = match write {
                    Ok(twin) => twin,
                    Err(e) if abandons(&e) => return Outcome::Abandoned,
                    Err(StoreError::NotFound { .. }) => {
                        return failed(FailureReason::DeviceDeleted, "the device was deleted");
                    }
                    Err(e) => {
                        return failed(
                            FailureReason::StorageError,
                            format!("writing desired properties failed: {e}"),
                        );
                    }
                };
                let message =
                    desired_patch_message(&change, twin.desired_version, &self.components);
                let patch = DesiredPatch {
                    version: twin.desired_version,
                    message,
                };
                self.bus.push_desired(&self.device.device_id, patch).await;
                current = Some((twin.reported_version, Arc::new(twin.reported)));
                twin.desired_version
            }
        };
        let mut missed = self.reported.missed.load(Ordering::SeqCst);
        loop {
            let notified = self.reported.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now_missed = self.reported.missed.load(Ordering::SeqCst);
            if now_missed != missed {
                missed = now_missed;
                current = None;
            }
            if let Some(latest) = self.reported.latest()
                && current.as_ref().is_none_or(|(v, _)| latest.0 > *v)
            {
                current = Some(latest);
            }
            if current.is_none() {
                match self.store.twin(&self.device.device_id).await {
                    Ok(Some(twin)) => {
                        current = Some((twin.reported_version, Arc::new(twin.reported)));
                    }
                    Ok(None) => {
                        return failed(FailureReason::DeviceDeleted, "the device was deleted");
                    }
                    Err(e) => tracing::warn!(error = %e, "reading a twin failed"),
                }
            }
            let verdict = current
                .as_ref()
                .and_then(|(_, reported)| acknowledged(reported, properties, version));
            match verdict {
                Some(outcome) => return outcome,
                None if now_ms() >= self.deadline_ms => {
                    // The last word is the database's: an acknowledgement another replica
                    // stored (the device moved there) counts.
                    if let Ok(Some(twin)) = self.store.twin(&self.device.device_id).await
                        && let Some(outcome) = acknowledged(&twin.reported, properties, version)
                    {
                        return outcome;
                    }
                    let (code, state) = if self.bus.is_connected(&self.device.device_id).await {
                        (
                            FailureReason::NoAcknowledgement,
                            "the device did not acknowledge it",
                        )
                    } else {
                        (FailureReason::Offline, "the device was offline")
                    };
                    return self.out_of_time(
                        code,
                        format!(
                            "no acknowledgement of desired version {version} within {} s: {state}",
                            self.timeout.as_secs()
                        ),
                    );
                }
                None => {}
            }
            let _ = tokio::time::timeout(self.remaining(), notified).await;
        }
    }

    /// Runs a command, unless it was already sent before a restart (then it is not sent again:
    /// the device may have run it).
    async fn command(&self, c: &CapabilityTarget) -> Outcome {
        if self.device.sent {
            return failed(
                FailureReason::Interrupted,
                "the server restarted after sending the command and before its answer; it was not sent again",
            );
        }
        let method = method_name(c.component.as_deref(), &c.name);
        // Wait for the device first: only a command about to be sent is recorded as sent.
        if let Err(e) = self
            .bus
            .wait_until_reachable(&self.device.device_id, self.remaining())
            .await
        {
            return self.out_of_time(
                FailureReason::Offline,
                format!(
                    "the command '{method}' could not reach the device within {} s: {e}",
                    self.timeout.as_secs()
                ),
            );
        }
        // Only the note that marks it sent lets the command go out (a compare-and-set on a
        // device this replica still owns), so no replica ever sends it twice.
        match self
            .store
            .note_job_device(self.job_id, &self.device.device_id, None, true)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Outcome::Abandoned,
            Err(e) if abandons(&e) => return Outcome::Abandoned,
            Err(e) => {
                return failed(
                    FailureReason::StorageError,
                    format!("recording progress failed: {e}"),
                );
            }
        }
        let remaining = self.remaining();
        let response_timeout = self
            .config
            .command_response_timeout
            .min(remaining.max(Duration::from_secs(1)));
        let call = MethodCall {
            method: method.clone(),
            payload: c.effective_value.clone().unwrap_or(Value::Null),
            connect_timeout: Duration::from_secs(1),
            response_timeout,
        };
        let result = self.bus.invoke(&self.device.device_id, call).await;
        match result {
            Ok(MethodResponse {
                status: code,
                payload: response,
            }) => {
                let detail = json!({"responseCode": code, "response": response});
                if (200..300).contains(&code) {
                    Outcome::Completed {
                        detail: Some(detail),
                    }
                } else {
                    Outcome::Failed {
                        code: FailureReason::Rejected,
                        reason: format!("the device answered '{method}' with status {code}"),
                        detail: Some(detail),
                    }
                }
            }
            Err(InvokeError::HolderLost) => failed(
                FailureReason::Interrupted,
                format!(
                    "the server holding the device's connection stopped before the device answered \
                     '{method}'; it was not sent again"
                ),
            ),
            Err(InvokeError::Timeout) => self.out_of_time(
                FailureReason::TimedOut,
                format!(
                    "the device did not answer '{method}' within {} s",
                    response_timeout.as_secs()
                ),
            ),
            Err(e) => self.out_of_time(
                FailureReason::Offline,
                format!(
                    "the command '{method}' could not reach the device within {} s: {e}",
                    self.timeout.as_secs()
                ),
            ),
        }
    }

    async fn cloud_property(&self, c: &CapabilityTarget) -> Outcome {
        let value = c.effective_value.clone().unwrap_or(Value::Null);
        let written = self
            .store
            .set_cloud_property_for(&self.device.device_id, &c.name, value, Some(self.job_id))
            .await;
        changed(written, "writing the cloud property")
    }

    async fn migrate(&self, template: &str) -> Outcome {
        let written = self
            .store
            .migrate_device(&self.device.device_id, template)
            .await;
        changed(written, "migrating the device")
    }
}

/// The outcome of a change to the device's row (`Ok(false)`: there is no such device).
fn changed(written: Result<bool, StoreError>, doing: &str) -> Outcome {
    match written {
        Ok(true) => Outcome::Completed { detail: None },
        Ok(false) => failed(FailureReason::DeviceDeleted, "the device was deleted"),
        Err(e) if abandons(&e) => Outcome::Abandoned,
        Err(e) => failed(FailureReason::StorageError, format!("{doing} failed: {e}")),
    }
}

/// `Some` once every property is accepted, or one is refused, by this reported document.
fn acknowledged(
    reported: &Value,
    properties: &[&CapabilityTarget],
    version: i64,
) -> Option<Outcome> {
    let plain = plain_values(reported);
    for p in properties {
        match ack_of(reported, p.component.as_deref(), &p.name) {
            Some(ack) if ack.version.is_some_and(|v| v >= version) => match ack.code {
                Some(code) if (200..300).contains(&code) && code != 202 => continue,
                Some(202) | None => return None,
                Some(code) => {
                    return Some(Outcome::Failed {
                        code: FailureReason::Rejected,
                        reason: format!(
                            "the device refused '{}' with ac {code}{}",
                            p.path,
                            ack.description
                                .map(|d| format!(": {d}"))
                                .unwrap_or_default()
                        ),
                        detail: Some(json!({"ackCode": code, "value": ack.value})),
                    });
                }
            },
            // An earlier version's refusal says nothing of this version: the device's answer to
            // it is awaited (its refused value, echoed in the old refusal, is not acceptance).
            Some(ack) if ack.code.is_some_and(|code| !(200..300).contains(&code)) => return None,
            _ => {
                // A device that reports the value itself (no acknowledgement) also took it.
                let reported = match &p.component {
                    Some(c) => plain.get(c).and_then(|o| o.get(&p.name)),
                    None => plain.get(&p.name),
                };
                if reported.is_some() && reported == p.effective_value.as_ref() {
                    continue;
                }
                return None;
            }
        }
    }
    Some(Outcome::Completed { detail: None })
}
