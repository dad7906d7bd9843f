//! The jobs history (`--with-jobs`): each job finished on the source (complete, cancelled or
//! failed), with its devices' outcomes, stored finished here as a record the engine never runs.
//! A job still pending, running or stopped on the source is skipped: it may change yet.

use flotilla_model::job_state::{DeviceStatus, FailureReason, JobStatus};
use flotilla_model::keys::random_hex;
use flotilla_store::{ImportedJobDevice, JobRecord};
use serde_json::Value;

use crate::ImportError;
use crate::client::{Client, STABLE, segment};
use crate::report::{Kind, Outcome, Report};
use crate::resources::Target;

/// The fields of a job the server sets; the rest is its definition.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "scheduledJobId",
    "status",
    "reason",
    "progress",
    "start",
    "end",
    "etag",
];

pub async fn import(
    client: &Client,
    target: &Target<'_>,
    report: &mut Report,
) -> Result<(), ImportError> {
    for item in client.list("/jobs", STABLE).await? {
        let id = item["id"].as_str().unwrap_or_default().to_string();
        let status = match item["status"].as_str().map(str::parse::<JobStatus>) {
            Some(Ok(status)) => status,
            _ => {
                report.fail(Kind::Jobs, &id, "its status is not one this server knows");
                continue;
            }
        };
        if !status.is_final() {
            report.skip(
                Kind::Jobs,
                &id,
                format!("{status} on the source: only finished jobs are carried over; import again once it ends"),
            );
            continue;
        }
        let path = format!("/jobs/{}/devices", segment(&id));
        let devices: Vec<ImportedJobDevice> = client
            .list(&path, STABLE)
            .await?
            .iter()
            .map(job_device)
            .collect();
        let job = record(&id, &item, status, &devices);

        let existing = target.store.job(&id).await?;
        let outcome = match &existing {
            None => Outcome::Created,
            Some(current) if !current.status.is_final() => {
                report.fail(
                    Kind::Jobs,
                    &id,
                    format!("a job with this id is {} here", current.status),
                );
                continue;
            }
            Some(current) if same(current, &job) => Outcome::Unchanged,
            Some(_) => Outcome::Updated,
        };
        if !target.plan && outcome != Outcome::Unchanged {
            target
                .store
                .put_imported_job(&job, &devices, existing.is_some())
                .await?;
        }
        report.count(Kind::Jobs, outcome);
    }
    Ok(())
}

/// Whether the stored job is the source's (all but its order key).
fn same(current: &JobRecord, wanted: &JobRecord) -> bool {
    JobRecord {
        sort_key: String::new(),
        ..current.clone()
    } == JobRecord {
        sort_key: String::new(),
        ..wanted.clone()
    }
}

/// A device's row as the source's `GET /jobs/{id}/devices` shows it (`reason`, `reasonCode`,
/// `responseCode` and `response` where the source is a Flotilla).
fn job_device(item: &Value) -> ImportedJobDevice {
    let status = item["status"].as_str().and_then(|s| s.parse().ok());
    let (status, reason) = match status {
        Some(DeviceStatus::Running) | None => (
            DeviceStatus::Failed,
            Some(format!(
                "{} on the source when its job ended",
                item["status"].as_str().unwrap_or("no status")
            )),
        ),
        Some(status) => (status, item["reason"].as_str().map(str::to_string)),
    };
    let detail = ["responseCode", "response"]
        .iter()
        .filter_map(|key| item.get(*key).map(|v| (key.to_string(), v.clone())))
        .collect::<serde_json::Map<_, _>>();
    ImportedJobDevice {
        device_id: item["id"].as_str().unwrap_or_default().to_string(),
        status,
        reason,
        reason_code: item["reasonCode"]
            .as_str()
            .and_then(|c| c.parse::<FailureReason>().ok()),
        detail: (!detail.is_empty()).then_some(Value::Object(detail)),
    }
}

fn millis(item: &Value, field: &str) -> Option<i64> {
    item[field]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
}

fn record(id: &str, item: &Value, status: JobStatus, devices: &[ImportedJobDevice]) -> JobRecord {
    let mut definition = item.as_object().cloned().unwrap_or_default();
    for field in SERVER_FIELDS {
        definition.remove(*field);
    }
    let count = |wanted: DeviceStatus| devices.iter().filter(|d| d.status == wanted).count() as i64;
    let start_ms = millis(item, "start");
    let end_ms = millis(item, "end");
    // In the source's order: by when it started (else ended, else now).
    let order_ms = start_ms
        .or(end_ms)
        .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    JobRecord {
        id: id.to_string(),
        sort_key: format!("{order_ms:013}-{}", random_hex::<6>()),
        scheduled_job_id: item["scheduledJobId"].as_str().map(str::to_string),
        definition: Value::Object(definition),
        status,
        reason: item["reason"].as_str().map(str::to_string),
        start_ms,
        end_ms,
        total: devices.len() as i64,
        completed: count(DeviceStatus::Completed),
        failed: count(DeviceStatus::Failed),
        skipped: count(DeviceStatus::Skipped),
        // One batch (numbered 0) of all its devices.
        batch_size: devices.len() as i64,
        rerun_of: None,
    }
}
