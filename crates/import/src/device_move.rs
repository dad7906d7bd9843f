//! `flotilla import move`: moves the devices of one device group from a departure application to
//! a destination one. On the departure, through its own jobs API, a command job per template
//! calls the devices' move command (Microsoft's migrator convention: `DeviceMove` in a "Device
//! Migration" component) with a payload naming the destination's ID scope and device host; then
//! the destination is watched until each device has connected there. Forward, the departure is
//! the source application and the destination this server; `--back` swaps them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Client, ClientError, STABLE, segment};

/// The job description Microsoft's migrator gives its move jobs.
const DESCRIPTION: &str = "AUTOMATED-DEVICE-MOVE";

/// What to move, and how.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// The departure's device group whose devices move.
    pub group: String,
    /// The command's path as a job names it: `DeviceMove`, or `component.DeviceMove`.
    pub command: String,
    /// The command's request; `{idScope}` and `{host}` in its strings are filled in.
    pub payload: Value,
    /// The destination's device host (its DPS and MQTT endpoint, as devices dial it).
    pub host: String,
    /// How long to wait for the devices to arrive.
    pub timeout: Duration,
    /// The pause between two looks at the destination and the departure's jobs.
    pub poll: Duration,
    /// The id of the departure's job; with several templates, `-2`, `-3`... name the others.
    pub job_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("the departure application has no device group {0}")]
    NoSuchGroup(String),
    #[error("the destination application states no ID scope (no enrollment group shows one)")]
    NoIdScope,
}

/// How one device ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Moved,
    /// Not moved, and why: the departure job's status and reason for it, or what else stopped it.
    NotMoved(String),
}

/// Each device of the group and how it ended, and the departure's jobs.
#[derive(Debug, Default)]
pub struct MoveReport {
    pub jobs: Vec<String>,
    pub devices: BTreeMap<String, Fate>,
}

impl MoveReport {
    pub fn all_moved(&self) -> bool {
        self.devices.values().all(|fate| *fate == Fate::Moved)
    }
}

impl fmt::Display for MoveReport {
    /// `moved <id>` or `not moved <id>: <why>` per device, then the count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, fate) in &self.devices {
            match fate {
                Fate::Moved => writeln!(f, "moved {id}")?,
                Fate::NotMoved(why) => writeln!(f, "not moved {id}: {why}")?,
            }
        }
        let moved = self.devices.values().filter(|f| **f == Fate::Moved).count();
        writeln!(
            f,
            "{moved} of {} devices moved (jobs on the departure: {})",
            self.devices.len(),
            if self.jobs.is_empty() {
                "none".to_string()
            } else {
                self.jobs.join(", ")
            }
        )
    }
}

/// Fills `{idScope}` and `{host}` in every string of `payload`.
pub fn fill_placeholders(payload: &Value, id_scope: &str, host: &str) -> Value {
    match payload {
        Value::String(text) => {
            Value::String(text.replace("{idScope}", id_scope).replace("{host}", host))
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill_placeholders(v, id_scope, host))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), fill_placeholders(v, id_scope, host)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The application's ID scope, as its enrollment groups state it.
pub async fn id_scope(client: &Client) -> Result<String, MoveError> {
    client
        .list("/enrollmentGroups", STABLE)
        .await?
        .iter()
        .find_map(|g| g["idScope"].as_str().map(str::to_string))
        .ok_or(MoveError::NoIdScope)
}

/// Runs the move: the command jobs on `departure`, then the watch of `destination`.
pub async fn run(
    departure: &Client,
    destination: &Client,
    options: &MoveOptions,
) -> Result<MoveReport, MoveError> {
    let scope = id_scope(destination).await?;
    let payload = fill_placeholders(&options.payload, &scope, &options.host);

    // The group's devices, by template: a job's command names one template's capability.
    let group_path = format!("/deviceGroups/{}", segment(&options.group));
    if departure.get(&group_path, STABLE).await?.is_none() {
        return Err(MoveError::NoSuchGroup(options.group.clone()));
    }
    let mut report = MoveReport::default();
    let mut by_template: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for device in departure
        .list(&format!("{group_path}/devices"), STABLE)
        .await?
    {
        let id = device["id"].as_str().unwrap_or_default().to_string();
        match device["template"].as_str() {
            Some(template) => by_template
                .entry(template.to_string())
                .or_default()
                .push(id),
            None => {
                report.devices.insert(
                    id,
                    Fate::NotMoved("it has no template, so no command job reaches it".into()),
                );
            }
        }
    }

    let mut pending = BTreeSet::new();
    for (n, (template, ids)) in by_template.into_iter().enumerate() {
        let job_id = if n == 0 {
            options.job_id.clone()
        } else {
            format!("{}-{}", options.job_id, n + 1)
        };
        let body = json!({
            "displayName": format!("Move {} to {}", options.group, options.host),
            "description": DESCRIPTION,
            "group": options.group,
            "data": [{
                "type": "command",
                "target": template,
                "path": options.command,
                "value": payload,
            }],
        });
        let created = departure
            .put(&format!("/jobs/{}", segment(&job_id)), STABLE, &body)
            .await;
        match created {
            Ok(_) => {
                report.jobs.push(job_id);
                pending.extend(ids);
            }
            // A template without the command (or a payload its schema refuses): its devices
            // cannot be asked to move; the others still are.
            Err(ClientError::Status { status, body, .. }) if status.is_client_error() => {
                let why = format!(
                    "the departure refused the command job for its template {template}: {status} {body}"
                );
                for id in ids {
                    report.devices.insert(id, Fate::NotMoved(why.clone()));
                }
            }
            Err(error) => return Err(error.into()),
        }
    }

    watch(departure, destination, options, pending, &mut report).await?;
    Ok(report)
}

/// Whether a device is connected on an application, through Flotilla's
/// `GET /devices/{id}/connection`.
enum Presence {
    Connected,
    NotConnected,
    /// The application does not have the device.
    Unknown,
    /// The application has the device but does not say whether it is connected (IoT Central).
    Unobservable,
}

async fn presence(client: &Client, id: &str) -> Result<Presence, ClientError> {
    let path = format!("/devices/{}", segment(id));
    Ok(
        match client.get(&format!("{path}/connection"), STABLE).await? {
            Some(answer) if answer["connected"] == true => Presence::Connected,
            Some(_) => Presence::NotConnected,
            None if client.get(&path, STABLE).await?.is_none() => Presence::Unknown,
            None => Presence::Unobservable,
        },
    )
}

/// A device's row in one of the departure's jobs.
struct JobDevice {
    job: String,
    status: String,
    reason: Option<String>,
    job_finished: bool,
}

impl JobDevice {
    fn describe(&self) -> String {
        match &self.reason {
            Some(reason) => format!(
                "the departure's job {}: {}: {reason}",
                self.job, self.status
            ),
            None => format!("the departure's job {}: {}", self.job, self.status),
        }
    }
}

/// Every device of the departure's jobs, with its status there.
async fn job_devices(
    departure: &Client,
    jobs: &[String],
) -> Result<BTreeMap<String, JobDevice>, ClientError> {
    let mut devices = BTreeMap::new();
    for job in jobs {
        let path = format!("/jobs/{}", segment(job));
        let status = departure
            .get(&path, STABLE)
            .await?
            .and_then(|j| j["status"].as_str().map(str::to_string))
            .unwrap_or_default();
        let job_finished = matches!(status.as_str(), "complete" | "cancelled" | "failed");
        for device in departure.list(&format!("{path}/devices"), STABLE).await? {
            let id = device["id"].as_str().unwrap_or_default().to_string();
            devices.insert(
                id,
                JobDevice {
                    job: job.clone(),
                    status: device["status"].as_str().unwrap_or("unknown").to_string(),
                    reason: device["reason"].as_str().map(str::to_string),
                    job_finished,
                },
            );
        }
    }
    Ok(devices)
}

/// Looks at the destination (has each device connected there?) and the departure's jobs (has
/// its command failed?) until every device is moved or cannot move any more, or the timeout.
async fn watch(
    departure: &Client,
    destination: &Client,
    options: &MoveOptions,
    mut pending: BTreeSet<String>,
    report: &mut MoveReport,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + options.timeout;
    loop {
        let rows = job_devices(departure, &report.jobs).await?;
        let mut unobservable = BTreeSet::new();
        for id in pending.clone() {
            let row = rows.get(&id);
            let fate = match presence(destination, &id).await? {
                Presence::Connected => Some(Fate::Moved),
                Presence::Unknown => Some(Fate::NotMoved(
                    "the destination has no such device: import it first".into(),
                )),
                Presence::NotConnected => None,
                Presence::Unobservable => {
                    unobservable.insert(id.clone());
                    None
                }
            };
            // The destination cannot say (IoT Central): moved once the command succeeded and
            // the device has left the departure.
            let fate = match fate {
                None if unobservable.contains(&id)
                    && row.is_some_and(|r| r.status == "completed")
                    && matches!(presence(departure, &id).await?, Presence::NotConnected) =>
                {
                    Some(Fate::Moved)
                }
                None => match row {
                    Some(r) if r.status == "failed" => Some(Fate::NotMoved(r.describe())),
                    Some(r) if r.job_finished && r.status != "completed" => {
                        Some(Fate::NotMoved(r.describe()))
                    }
                    _ => None,
                },
                fate => fate,
            };
            if let Some(fate) = fate {
                pending.remove(&id);
                report.devices.insert(id, fate);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for id in pending {
                let state = match rows.get(&id) {
                    Some(row) => row.describe(),
                    None => "not in the departure's job".to_string(),
                };
                let why = format!(
                    "not connected to the destination after {} s ({state})",
                    options.timeout.as_secs()
                );
                report.devices.insert(id, Fate::NotMoved(why));
            }
            return Ok(());
        }
        tokio::time::sleep(options.poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_every_string() {
        let payload = json!({"idScope": "{idScope}", "dps": {"host": "https://{host}/"},
                             "n": 3, "list": ["{host}"]});
        assert_eq!(
            fill_placeholders(&payload, "0ne00AB", "flotilla.example"),
            json!({"idScope": "0ne00AB", "dps": {"host": "https://flotilla.example/"},
                   "n": 3, "list": ["flotilla.example"]})
        );
    }

    #[test]
    fn the_report_names_each_device_and_counts() {
        let mut report = MoveReport {
            jobs: vec!["move-1".into()],
            ..MoveReport::default()
        };
        report.devices.insert("a".into(), Fate::Moved);
        report
            .devices
            .insert("b".into(), Fate::NotMoved("offline".into()));
        assert!(!report.all_moved());
        assert_eq!(
            report.to_string(),
            "moved a\nnot moved b: offline\n1 of 2 devices moved (jobs on the departure: move-1)\n"
        );
    }
}
