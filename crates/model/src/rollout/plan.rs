//! A job's dry-run plan (`POST /jobs/{id}/plan`): what the job would do if it were created now,
//! as the API answers it, and the pure parts of working it out (which devices the job would not
//! change, how long it would take).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::job::Operation;
use crate::job_state::JobStatus;
use crate::twin::plain_values;

/// At most this many batches are listed (`batchCount` counts them all).
pub const MAX_LISTED_BATCHES: usize = 100;
/// At most this many device ids are listed per batch.
pub const FIRST_DEVICE_IDS: usize = 5;
/// At most this many skipped devices are listed (`skippedCount` counts them all).
pub const MAX_LISTED_SKIPPED: usize = 1000;

/// The estimate's time for one device's operation when it involves the device (a property
/// write and its acknowledgement, a command and its answer): a round trip over MQTT and the
/// device's own work.
pub const DEVICE_OPERATION_SECONDS: f64 = 0.5;
/// The estimate's time for one device's operation the server does alone (a cloud property, a
/// template migration): a group-committed database write.
pub const SERVER_OPERATION_SECONDS: f64 = 0.01;

/// What a job would do if it were created now. Nothing is stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPlan {
    /// The devices the job would hold (its `progress.total` if it were created now).
    pub total: u64,
    /// How many batches the job would have.
    pub batch_count: u64,
    /// The batches in order (the first 100).
    pub batches: Vec<PlannedBatch>,
    /// How many of the group's devices the job would not change.
    pub skipped_count: u64,
    /// The group's devices the job would not change, with why (the first 1,000, by id).
    pub skipped: Vec<SkippedDevice>,
    /// How many of the job's devices are not connected now.
    pub offline: u64,
    /// Active jobs that hold some of the job's devices (its devices wait for them), oldest first.
    pub conflicts: Vec<PlanConflict>,
    /// Set when the body says `"conflicts": "refuse"` and an active job holds the same
    /// capability on some of its devices: the job it names would make the PUT answer 409.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refused_by: Option<String>,
    /// How long the job would take, in seconds (see docs/api-behaviour.md for the model).
    pub estimated_seconds: f64,
}

/// One batch of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedBatch {
    /// From 0, in the order the job runs its batches.
    pub index: u64,
    pub size: u64,
    /// The batch's first device ids (at most 5), in the job's order.
    pub first_device_ids: Vec<String>,
}

/// Why a device of the group would not be changed by the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// Not of the job's target template: the job leaves it out (not among `total`).
    WrongTemplate,
    /// Disabled, so it cannot connect: a property or command job would fail it as offline
    /// (among `total`).
    Disabled,
    /// Every value the job sets is already the device's (among `total`: the job still writes).
    AlreadyAtValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SkippedDevice {
    pub id: String,
    pub reason: SkipReason,
}

/// An active job holding some of a planned job's devices.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanConflict {
    pub job_id: String,
    pub status: JobStatus,
    /// How many of the planned job's devices it holds.
    pub devices: u64,
    /// The capabilities both jobs set or run (empty: the devices only wait their turn).
    pub shared_capabilities: Vec<String>,
}

/// Whether a job's operations involve the device itself (it must be connected).
pub fn needs_device(operations: &[Operation]) -> bool {
    operations
        .iter()
        .any(|op| matches!(op, Operation::Property(_) | Operation::Command(_)))
}

/// Whether every value the job's operations set is already the device's: its reported value of
/// each writable property, its cloud properties, its template. A command always does something.
pub fn already_at_value(
    operations: &[Operation],
    template: Option<&str>,
    cloud_properties: &Value,
    reported: &Value,
) -> bool {
    let plain = plain_values(reported);
    !operations.is_empty()
        && operations.iter().all(|op| match op {
            Operation::Command(_) => false,
            Operation::TemplateMigration { template: to } => template == Some(to.as_str()),
            Operation::CloudProperty(c) => {
                same_value(cloud_properties.get(&c.name), c.effective_value.as_ref())
            }
            Operation::Property(c) => {
                let current = match &c.component {
                    Some(component) => plain.get(component).and_then(|o| o.get(&c.name)),
                    None => plain.get(&c.name),
                };
                same_value(current, c.effective_value.as_ref())
            }
        })
}

/// Two present values that are equal, numbers by their value (`21` is `21.0`).
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The estimate of a job's duration, in seconds: its batches run one after the other; in a
/// batch, at most `max_in_flight` devices are worked at once, each taking `per_device` seconds,
/// so a batch of n devices takes ceil(n / max_in_flight) × `per_device`; a batch that holds a
/// device that is offline now, in a job that needs the device, lasts at least the device
/// timeout (the job waits that long for it). Batches are `(size, offline devices)`.
/// Pure, so that other limits (pacing) can be added where it is computed.
pub fn estimated_seconds(
    batches: &[(u64, u64)],
    max_in_flight: u64,
    per_device: f64,
    waits_for_offline: Option<f64>,
) -> f64 {
    let in_flight = max_in_flight.max(1);
    let seconds: f64 = batches
        .iter()
        .map(|&(size, offline)| {
            let working = size.div_ceil(in_flight) as f64 * per_device;
            match waits_for_offline {
                Some(timeout) if offline > 0 => working.max(timeout),
                _ => working,
            }
        })
        .sum();
    // Milliseconds are noise in an estimate.
    (seconds * 100.0).round() / 100.0
}

/// The per-device time the estimate uses for these operations.
pub fn seconds_per_device(operations: &[Operation]) -> f64 {
    if needs_device(operations) {
        DEVICE_OPERATION_SECONDS
    } else {
        SERVER_OPERATION_SECONDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::CapabilityTarget;
    use serde_json::json;

    fn property(component: Option<&str>, name: &str, value: Value) -> Operation {
        Operation::Property(CapabilityTarget {
            target: "t".into(),
            path: name.into(),
            component: component.map(str::to_string),
            name: name.into(),
            value: Some(value.clone()),
            effective_value: Some(value),
        })
    }

    #[test]
    fn the_estimate_adds_up_batches_of_rounds() {
        // 3 batches of 10, 10 and 5 devices, 4 at a time, 0.5 s each: 3 + 3 + 2 rounds.
        assert_eq!(
            estimated_seconds(&[(10, 0), (10, 0), (5, 0)], 4, 0.5, Some(30.0)),
            4.0
        );
        // An offline device in the second batch: that batch waits the device timeout.
        assert_eq!(
            estimated_seconds(&[(10, 0), (10, 1), (5, 0)], 4, 0.5, Some(30.0)),
            32.5
        );
        // A job that does not need the device does not wait for it.
        assert_eq!(estimated_seconds(&[(10, 3)], 1000, 0.01, None), 0.01);
        assert_eq!(estimated_seconds(&[], 1000, 0.5, Some(30.0)), 0.0);
    }

    #[test]
    fn a_device_is_at_the_value_when_it_reported_it() {
        let ops = [property(
            Some("thermostat1"),
            "targetTemperature",
            json!(21.0),
        )];
        let reported = json!({"thermostat1": {"__t": "c", "targetTemperature": {"value": 21.0, "ac": 200, "av": 2}}});
        assert!(already_at_value(&ops, None, &json!({}), &reported));
        let other = json!({"thermostat1": {"__t": "c", "targetTemperature": 20.0}});
        assert!(!already_at_value(&ops, None, &json!({}), &other));
        assert!(!already_at_value(&ops, None, &json!({}), &json!({})));
        let whole = json!({"thermostat1": {"__t": "c", "targetTemperature": 21}});
        assert!(already_at_value(&ops, None, &json!({}), &whole));
        let migrate = [Operation::TemplateMigration {
            template: "b".into(),
        }];
        assert!(already_at_value(
            &migrate,
            Some("b"),
            &json!({}),
            &json!({})
        ));
        assert!(!already_at_value(
            &migrate,
            Some("a"),
            &json!({}),
            &json!({})
        ));
    }
}
