//! The twin writes of a batch worked out ahead (`plan_writes`) and written as compare-and-swap
//! on the versions read (`write_planned`); the writes whose devices changed meanwhile are
//! worked out again inside the transaction.

use std::collections::{HashMap, HashSet};

use flotilla_model::twin::{
    COMPONENT_MARKER, Twin, apply_reported_patch, is_component, plain_values,
};
use flotilla_model::validate::merge_patch;
use serde_json::Value;

use super::job_progress::record_desired_versions;
use super::{DesiredWrite, Outcome, Reply, ReportedAnswer, ReportedWrite, distinct};
use crate::job_previous_values::{PROPERTY, PreviousRecord, PreviousValue, record_previous_values};
use crate::write_gate::WriteTx;
use crate::{Entity, Result, Store, StoreError};

/// Twin writes worked out: per device, the document to write and the version it replaces;
/// per write, its answer (`None`: the device was not found).
pub(crate) struct Plan<A> {
    pub devices: Vec<DevicePlan>,
    pub answers: Vec<Option<A>>,
}

impl<A> Default for Plan<A> {
    fn default() -> Self {
        Plan {
            devices: Vec::new(),
            answers: Vec::new(),
        }
    }
}

/// One device's twin document to write.
pub(crate) struct DevicePlan {
    pub id: String,
    /// The version read: the write happens only if it is still the one stored.
    pub read_version: i64,
    pub version: i64,
    pub document: Value,
}

/// A twin write of either kind, as `plan_writes` and `write_planned` handle them.
pub(crate) trait TwinWrite {
    type Answer;
    /// Whether it changes the reported document (else the desired one).
    const REPORTED: bool;
    fn device_id(&self) -> &str;
    /// Applies the write to the twin (document and version) and gives its answer.
    fn apply(&self, twin: &mut Twin) -> Self::Answer;
}

impl TwinWrite for ReportedWrite {
    /// The version and document it made.
    type Answer = ReportedAnswer;
    const REPORTED: bool = true;
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn apply(&self, twin: &mut Twin) -> ReportedAnswer {
        apply_reported_patch(&mut twin.reported, &self.patch);
        twin.reported_version += 1;
        (twin.reported_version, twin.reported.clone())
    }
}

impl TwinWrite for DesiredWrite {
    /// The twin it made.
    type Answer = Twin;
    const REPORTED: bool = false;
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn apply(&self, twin: &mut Twin) -> Twin {
        merge_patch(&mut twin.desired, &self.change);
        twin.desired_version += 1;
        twin.clone()
    }
}

/// The device's reported values that a desired change replaces with other values (a desired
/// write leaves the reported document as it was, so the twin after it still shows them). A
/// property the device never reported has no value to restore and is left out.
fn replaced_properties(change: &Value, reported: &Value) -> Vec<PreviousValue> {
    let plain = plain_values(reported);
    let mut replaced = Vec::new();
    let mut consider = |component: Option<&str>, name: &str, new: &Value| {
        let current = match component {
            Some(c) => plain.get(c).and_then(|o| o.get(name)),
            None => plain.get(name),
        };
        if let Some(current) = current
            && current != new
        {
            replaced.push(PreviousValue {
                kind: PROPERTY,
                component: component.map(str::to_string),
                name: name.to_string(),
                value: current.clone(),
            });
        }
    };
    let Value::Object(fields) = change else {
        return replaced;
    };
    for (key, value) in fields {
        if is_component(value) {
            if let Value::Object(inner) = value {
                for (name, new) in inner.iter().filter(|(n, _)| n.as_str() != COMPONENT_MARKER) {
                    consider(Some(key), name, new);
                }
            }
        } else if key != COMPONENT_MARKER {
            consider(None, key, value);
        }
    }
    replaced
}

/// The version of the document a kind of write changes.
fn version_of<W: TwinWrite>(twin: &Twin) -> i64 {
    if W::REPORTED {
        twin.reported_version
    } else {
        twin.desired_version
    }
}

/// Writes applied in order on the twins read: per device, the document to write and the version
/// it replaces; per write, its answer.
pub(crate) fn plan_writes<'a, W: TwinWrite + 'a>(
    mut twins: HashMap<String, Twin>,
    writes: impl Iterator<Item = &'a W>,
) -> Plan<W::Answer> {
    let read: HashMap<String, i64> = twins
        .iter()
        .map(|(id, t)| (id.clone(), version_of::<W>(t)))
        .collect();
    let mut order = Vec::new();
    let mut answers = Vec::new();
    for w in writes {
        match twins.get_mut(w.device_id()) {
            Some(twin) => {
                if version_of::<W>(twin) == read[w.device_id()] {
                    order.push(w.device_id().to_string());
                }
                answers.push(Some(w.apply(twin)));
            }
            None => answers.push(None),
        }
    }
    let devices = order
        .into_iter()
        .map(|id| {
            let twin = twins.remove(&id).expect("planned");
            DevicePlan {
                read_version: read[&id],
                id,
                version: version_of::<W>(&twin),
                document: if W::REPORTED {
                    twin.reported
                } else {
                    twin.desired
                },
            }
        })
        .collect();
    Plan { devices, answers }
}

/// Writes the plan; the writes whose devices changed since they were read (or were not read)
/// are worked out again on the twins as the transaction sees them, and written. Returns each
/// write's answer (`None`: no such device) and the devices written.
async fn write_planned<W: TwinWrite>(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[(W, Reply<W::Answer>)],
    plan: Plan<W::Answer>,
) -> Result<(Vec<Option<W::Answer>>, HashSet<String>)> {
    let mut answers = plan.answers;
    answers.resize_with(writes.len(), || None);
    let mut written = core.write_twins(tx, &plan.devices, W::REPORTED).await?;
    let again: Vec<usize> = (0..writes.len())
        .filter(|&i| !written.contains(writes[i].0.device_id()))
        .collect();
    if !again.is_empty() {
        let ids = distinct(again.iter().map(|&i| writes[i].0.device_id()));
        let twins = core.read_twins(tx, &ids, !W::REPORTED).await?;
        let plan = plan_writes(twins, again.iter().map(|&i| &writes[i].0));
        written.extend(core.write_twins(tx, &plan.devices, W::REPORTED).await?);
        for (&i, answer) in again.iter().zip(plan.answers) {
            answers[i] = answer;
        }
    }
    Ok((answers, written))
}

/// Each write's outcome: its answer if its device was written, else to be run on its own.
fn outcomes<W: TwinWrite>(
    writes: &[(W, Reply<W::Answer>)],
    answers: Vec<Option<W::Answer>>,
    written: &HashSet<String>,
) -> Vec<Outcome<W::Answer>> {
    writes
        .iter()
        .zip(answers)
        .map(|((w, _), answer)| match answer {
            None => Outcome::Done(Err(StoreError::not_found(Entity::Device, w.device_id()))),
            Some(answer) if written.contains(w.device_id()) => Outcome::Done(Ok(answer)),
            Some(_) => Outcome::Again,
        })
        .collect()
}

pub(crate) async fn write_reported(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[(ReportedWrite, Reply<ReportedAnswer>)],
    plan: Plan<ReportedAnswer>,
) -> Result<Vec<Outcome<ReportedAnswer>>> {
    if writes.is_empty() {
        return Ok(vec![]);
    }
    let (answers, written) = write_planned(core, tx, writes, plan).await?;
    Ok(outcomes(writes, answers, &written))
}

pub(crate) async fn write_desired(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[(DesiredWrite, Reply<Twin>)],
    plan: Plan<Twin>,
) -> Result<Vec<Outcome<Twin>>> {
    if writes.is_empty() {
        return Ok(vec![]);
    }
    let (answers, written) = write_planned(core, tx, writes, plan).await?;
    // A job's write records the version it made, in the same transaction.
    let recorded: Vec<(&str, &str, i64)> = writes
        .iter()
        .zip(&answers)
        .filter(|((w, _), _)| written.contains(&w.device_id))
        .filter_map(|((w, _), twin)| {
            Some((
                w.job_id.as_deref()?,
                w.device_id.as_str(),
                twin.as_ref()?.desired_version,
            ))
        })
        .collect();
    let noted = record_desired_versions(core, tx, &recorded).await?;
    // And, for a revert, the reported values it replaced.
    let previous: Vec<PreviousRecord> = writes
        .iter()
        .zip(&answers)
        .filter_map(|((w, _), twin)| {
            let job = w.job_id.as_deref()?;
            noted
                .contains(&(job.to_string(), w.device_id.clone()))
                .then_some((job, w, twin.as_ref()?))
        })
        .flat_map(|(job, w, twin)| {
            replaced_properties(&w.change, &twin.reported)
                .into_iter()
                .map(move |previous| PreviousRecord {
                    job_id: job,
                    device_id: &w.device_id,
                    previous,
                })
        })
        .collect();
    record_previous_values(core, tx, &previous).await?;
    let mut outcomes = outcomes(writes, answers, &written);
    // A job's write whose version was not recorded: the device is no longer this replica's
    // (its document changed all the same, to what the new owner writes too), and the task
    // working it must stop without pushing.
    for ((w, _), outcome) in writes.iter().zip(outcomes.iter_mut()) {
        if let (Some(job), Outcome::Done(Ok(_))) = (&w.job_id, &outcome)
            && !noted.contains(&(job.clone(), w.device_id.clone()))
        {
            *outcome = Outcome::Done(Err(StoreError::NotOwner(w.device_id.clone())));
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_to_one_device_in_a_batch_apply_in_order() {
        let twin = Twin {
            desired: Value::Null,
            desired_version: 0,
            reported: serde_json::json!({"a": 1}),
            reported_version: 4,
        };
        let twins = HashMap::from([("d".to_string(), twin)]);
        let writes = [
            ReportedWrite {
                device_id: "d".into(),
                patch: serde_json::json!({"b": 2}),
            },
            ReportedWrite {
                device_id: "x".into(),
                patch: serde_json::json!({}),
            },
            ReportedWrite {
                device_id: "d".into(),
                patch: serde_json::json!({"a": null}),
            },
        ];
        let plan = plan_writes(twins, writes.iter());
        assert_eq!(plan.devices.len(), 1);
        assert_eq!(plan.devices[0].read_version, 4);
        assert_eq!(plan.devices[0].version, 6);
        assert_eq!(plan.devices[0].document, serde_json::json!({"b": 2}));
        assert_eq!(
            plan.answers[0],
            Some((5, serde_json::json!({"a": 1, "b": 2})))
        );
        assert_eq!(plan.answers[1], None);
        assert_eq!(plan.answers[2], Some((6, serde_json::json!({"b": 2}))));
    }
}
