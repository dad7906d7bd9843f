//! Templates, enrollment groups, device groups, scheduled jobs and API tokens: each read from the
//! source, compared with the database's, and written (one statement or transaction each) when
//! new or changed.

use std::collections::HashSet;

use flotilla_model::device_group::DeviceGroup;
use flotilla_model::enrollment_group::{EnrollmentGroup, EnrollmentGroupType};
use flotilla_model::new_etag;
use flotilla_model::schedule::Schedule;
use flotilla_model::template::DeviceTemplate;
use flotilla_store::{ScheduledJobRecord, Store, StoreError};
use serde_json::{Map, Value};

use crate::ImportError;
use crate::client::{Client, PREVIEW, STABLE, segment};
use crate::report::{Kind, Outcome, Report};

/// The database written, or with `plan` only read.
pub struct Target<'a> {
    pub store: &'a Store,
    pub plan: bool,
}

/// The outcome of a resource whose current value is `existing`.
pub fn outcome<T: PartialEq>(existing: Option<&T>, wanted: &T) -> Outcome {
    match existing {
        None => Outcome::Created,
        Some(current) if current == wanted => Outcome::Unchanged,
        Some(_) => Outcome::Updated,
    }
}

fn id_of(item: &Value, field: &str) -> String {
    item.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn text(item: &Value, field: &str) -> Option<String> {
    item.get(field).and_then(Value::as_str).map(str::to_string)
}

/// A write that lost a race with another writer (or a row deleted meanwhile).
fn changed_meanwhile(kind: Kind, id: &str, report: &mut Report) {
    report.fail(
        kind,
        id,
        "changed in the database during the import; run it again",
    );
}

/// Writes a resource as its outcome says and counts it: nothing when it is unchanged or the run
/// only plans; `insert` when it is new; `replace` with the current etag when it changed, which
/// answers `false` when another writer changed it meanwhile (reported as a failure).
async fn write_and_count(
    target: &Target<'_>,
    report: &mut Report,
    (kind, id): (Kind, &str),
    outcome: Outcome,
    current_etag: Option<&str>,
    insert: impl AsyncFnOnce() -> Result<(), StoreError>,
    replace: impl AsyncFnOnce(&str) -> Result<bool, StoreError>,
) -> Result<(), ImportError> {
    if !target.plan && outcome != Outcome::Unchanged {
        let written = match current_etag {
            None => {
                insert().await?;
                true
            }
            Some(etag) => replace(etag).await?,
        };
        if !written {
            changed_meanwhile(kind, id, report);
            return Ok(());
        }
    }
    report.count(kind, outcome);
    Ok(())
}

/// Imports the templates; returns the ids of those this server takes (written, unchanged, or
/// with `plan` to be written), for the devices to check theirs against.
pub async fn templates(
    client: &Client,
    target: &Target<'_>,
    report: &mut Report,
) -> Result<HashSet<String>, ImportError> {
    let mut taken = HashSet::new();
    for item in client.list("/deviceTemplates", STABLE).await? {
        let id = id_of(&item, "@id");
        let template = match DeviceTemplate::from_json(&id, &item) {
            Ok(template) => template,
            Err(invalid) => {
                report.fail(Kind::DeviceTemplates, &id, invalid.to_string());
                continue;
            }
        };
        taken.insert(id.clone());
        let existing = target.store.template(&id).await?;
        let outcome = outcome(existing.as_ref().map(|t| &t.body), &template.body);
        write_and_count(
            target,
            report,
            (Kind::DeviceTemplates, &id),
            outcome,
            existing.as_ref().map(|t| t.etag.as_str()),
            async || target.store.insert_template(&template, &new_etag()).await,
            async |etag| {
                let new = new_etag();
                target.store.replace_template(&template, etag, &new).await
            },
        )
        .await?;
    }
    Ok(taken)
}

/// Imports the enrollment groups with their keys; returns the source's ID scope, which each
/// group states.
pub async fn enrollment_groups(
    client: &Client,
    target: &Target<'_>,
    report: &mut Report,
) -> Result<Option<String>, ImportError> {
    let mut scope = None;
    for listed in client.list("/enrollmentGroups", STABLE).await? {
        let id = id_of(&listed, "id");
        // The list may leave the keys out; the group itself carries them.
        let Some(item) = client
            .get(&format!("/enrollmentGroups/{}", segment(&id)), STABLE)
            .await?
        else {
            report.fail(Kind::EnrollmentGroups, &id, "deleted during the import");
            continue;
        };
        scope = scope.or_else(|| text(&item, "idScope"));
        let attestation = &item["attestation"];
        let keys = &attestation["symmetricKey"];
        let (Some(primary_key), Some(secondary_key)) =
            (text(keys, "primaryKey"), text(keys, "secondaryKey"))
        else {
            let kind = attestation["type"].as_str().unwrap_or("unknown");
            report.skip(
                Kind::EnrollmentGroups,
                &id,
                format!(
                    "{kind} attestation: only symmetric-key groups are carried over (X.509 \
                     certificates stay with their CA)"
                ),
            );
            continue;
        };
        let Some(kind) = item["type"].as_str().and_then(EnrollmentGroupType::parse) else {
            report.fail(Kind::EnrollmentGroups, &id, "unknown group type");
            continue;
        };
        let existing = target.store.enrollment_group(&id).await?;
        let mut group = EnrollmentGroup {
            id: id.clone(),
            etag: existing
                .as_ref()
                .map(|g| g.etag.clone())
                .unwrap_or_default(),
            display_name: text(&item, "displayName").unwrap_or_else(|| id.clone()),
            enabled: item["enabled"].as_bool().unwrap_or(true),
            kind,
            primary_key,
            secondary_key,
        };
        let outcome = outcome(existing.as_ref(), &group);
        group.etag = new_etag();
        write_and_count(
            target,
            report,
            (Kind::EnrollmentGroups, &id),
            outcome,
            existing.as_ref().map(|g| g.etag.as_str()),
            async || target.store.insert_enrollment_group(&group, false).await,
            async |etag| target.store.replace_enrollment_group(&group, etag).await,
        )
        .await?;
    }
    Ok(scope)
}

pub async fn device_groups(
    client: &Client,
    target: &Target<'_>,
    report: &mut Report,
) -> Result<(), ImportError> {
    for item in client.list("/deviceGroups", STABLE).await? {
        let id = id_of(&item, "id");
        let existing = target.store.device_group(&id).await?;
        let mut group = DeviceGroup {
            id: id.clone(),
            etag: existing
                .as_ref()
                .map(|g| g.etag.clone())
                .unwrap_or_default(),
            display_name: text(&item, "displayName").unwrap_or_else(|| id.clone()),
            filter: text(&item, "filter").unwrap_or_default(),
            description: text(&item, "description"),
            organizations: item["organizations"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        };
        if let Err(error) = flotilla_filter::parse(&group.filter) {
            report.fail(Kind::DeviceGroups, &id, format!("its filter: {error}"));
            continue;
        }
        let outcome = outcome(existing.as_ref(), &group);
        group.etag = new_etag();
        write_and_count(
            target,
            report,
            (Kind::DeviceGroups, &id),
            outcome,
            existing.as_ref().map(|g| g.etag.as_str()),
            async || target.store.insert_device_group(&group).await,
            async |etag| target.store.replace_device_group(&group, etag).await,
        )
        .await?;
    }
    Ok(())
}

/// The application takes the source's ID scope: a device keeps scope, registration id and key.
pub async fn take_id_scope(target: &Target<'_>, scope: &str) -> Result<(), ImportError> {
    if !target.plan {
        target.store.mark_setting("id_scope", scope).await?;
    }
    Ok(())
}

/// Scheduled jobs (IoT Central's preview API): new ones disabled unless `enable`; one enabled
/// here stays enabled.
pub async fn scheduled_jobs(
    client: &Client,
    target: &Target<'_>,
    enable: bool,
    report: &mut Report,
) -> Result<(), ImportError> {
    for item in client.list("/scheduledJobs", PREVIEW).await? {
        let id = id_of(&item, "id");
        let schedule_json = item["schedule"].clone();
        let schedule = match Schedule::from_json(&schedule_json) {
            Ok(schedule) => schedule,
            Err(invalid) => {
                report.fail(Kind::ScheduledJobs, &id, invalid.to_string());
                continue;
            }
        };
        let mut definition: Map<String, Value> = item.as_object().cloned().unwrap_or_default();
        for key in ["schedule", "enabled", "completed", "etag", "id"] {
            definition.remove(key);
        }
        let definition = Value::Object(definition);
        let completed = item["completed"].as_bool().unwrap_or(false);
        let existing = target.store.scheduled_job(&id).await?;
        // Whether it runs here. A new schedule is imported disabled, unless `enable` and the
        // source has it enabled. Once here, that is this server's to decide: a run never
        // disables one enabled here (taken over with `enable`, or through the API), and enables
        // one only with `enable` where the source has it enabled.
        let enabled = (enable && item["enabled"].as_bool().unwrap_or(false))
            || existing.as_ref().is_some_and(|current| current.enabled);
        let same = existing.as_ref().is_some_and(|current| {
            current.definition == definition
                && current.schedule == schedule_json
                && current.enabled == enabled
                && current.completed == completed
        });
        let outcome = match (&existing, same) {
            (None, _) => Outcome::Created,
            (Some(_), true) => Outcome::Unchanged,
            (Some(_), false) => Outcome::Updated,
        };
        // Occurrences are counted from now: the past is not replayed here.
        let next_occurrence = match schedule.first_upcoming(jiff::Timestamp::now()) {
            Ok(n) => i64::from(n),
            Err(_) => i64::from(u32::MAX),
        };
        let record = ScheduledJobRecord {
            id: id.clone(),
            etag: new_etag(),
            definition,
            schedule: schedule_json,
            enabled,
            completed,
            next_occurrence,
        };
        write_and_count(
            target,
            report,
            (Kind::ScheduledJobs, &id),
            outcome,
            existing.as_ref().map(|j| j.etag.as_str()),
            async || target.store.insert_scheduled_job(&record).await,
            async |etag| target.store.replace_scheduled_job(&record, etag).await,
        )
        .await?;
    }
    Ok(())
}

/// API tokens are listed in the report as skipped: IoT Central never returns a token's secret.
pub async fn api_tokens(client: &Client, report: &mut Report) -> Result<(), ImportError> {
    for item in client.list("/apiTokens", STABLE).await? {
        report.skip(
            Kind::ApiTokens,
            &id_of(&item, "id"),
            "IoT Central never returns an API token's secret; create a new one here",
        );
    }
    Ok(())
}
