//! A job's dry-run plan: what a job with this definition would do if it were created now (its
//! devices and batches, the devices it would not change, those offline, the active jobs holding
//! some of them, and an estimate of its duration). It reads and stores nothing.

use std::collections::{HashMap, HashSet};

use flotilla_bus::DeviceBus;
use flotilla_model::job::{JobSpec, Operation};
use flotilla_model::rollout::conflicts::ConflictPolicy;
use flotilla_model::rollout::plan::{
    FIRST_DEVICE_IDS, JobPlan, MAX_LISTED_BATCHES, MAX_LISTED_SKIPPED, PlanConflict, PlannedBatch,
    SkipReason, SkippedDevice, already_at_value, estimated_seconds, needs_device,
    seconds_per_device,
};
use flotilla_store::Store;

use crate::config::EngineConfig;
use crate::conflicts::{holders, refusing};
use crate::members::{group_members, job_members};
use crate::templates::Templates;

/// The plan of a job with this (validated) definition; `Err` with the reason the job would
/// fail to start.
pub async fn plan(
    store: &Store,
    bus: &dyn DeviceBus,
    config: &EngineConfig,
    spec: &JobSpec,
) -> flotilla_store::Result<Result<JobPlan, String>> {
    let templates = Templates::load(store).await?;
    let devices = match job_members(store, &templates, spec, None).await? {
        Ok(devices) => devices,
        Err(reason) => return Ok(Err(reason)),
    };
    let operations: Vec<Operation> = spec.operations().cloned().collect();
    let needs_device = needs_device(&operations);

    let mut skipped = Vec::new();
    if spec.target().is_some() {
        let members: HashSet<&str> = devices.iter().map(String::as_str).collect();
        if let Ok(group) = group_members(store, &spec.group, &[]).await? {
            skipped.extend(
                group
                    .into_iter()
                    .filter(|id| !members.contains(id.as_str()))
                    .map(|id| SkippedDevice {
                        id,
                        reason: SkipReason::WrongTemplate,
                    }),
            );
        }
    }
    let states: HashMap<String, _> = store
        .planned_devices(&devices)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    for id in &devices {
        let Some(state) = states.get(id) else {
            continue;
        };
        let reason = if needs_device && !state.enabled {
            SkipReason::Disabled
        } else if already_at_value(
            &operations,
            state.template.as_deref(),
            &state.cloud_properties,
            &state.reported,
        ) {
            SkipReason::AlreadyAtValue
        } else {
            continue;
        };
        skipped.push(SkippedDevice {
            id: id.clone(),
            reason,
        });
    }
    skipped.sort_by(|a, b| a.id.cmp(&b.id));
    let skipped_count = skipped.len() as u64;
    skipped.truncate(MAX_LISTED_SKIPPED);

    // In bulk where several servers share the database (asking the bus would be a query per
    // device not connected here); else this server's own connections.
    let connected = store.devices_connected_anywhere(&devices).await?;
    let mut offline: HashSet<&str> = HashSet::new();
    for id in &devices {
        let away = match &connected {
            Some(connected) => !connected.contains(id),
            None => !bus.is_connected(id).await,
        };
        if away {
            offline.insert(id);
        }
    }
    // The job's batches, as the engine numbers them when it starts.
    let total = devices.len() as u64;
    let batch_size = spec.batch.map(|b| b.size(total)).unwrap_or(total).max(1) as usize;
    let chunks: Vec<&[String]> = devices.chunks(batch_size).collect();
    let batches = chunks
        .iter()
        .take(MAX_LISTED_BATCHES)
        .enumerate()
        .map(|(index, batch)| PlannedBatch {
            index: index as u64,
            size: batch.len() as u64,
            first_device_ids: batch.iter().take(FIRST_DEVICE_IDS).cloned().collect(),
        })
        .collect();
    let sizes: Vec<(u64, u64)> = chunks
        .iter()
        .map(|batch| {
            let away = batch
                .iter()
                .filter(|id| offline.contains(id.as_str()))
                .count();
            (batch.len() as u64, away as u64)
        })
        .collect();
    let device_timeout = spec
        .device_timeout_seconds
        .map_or(config.device_timeout.as_secs_f64(), |s| s as f64);
    let estimate = estimated_seconds(
        &sizes,
        config.max_in_flight_per_job as u64,
        seconds_per_device(&operations),
        needs_device.then_some(device_timeout),
    );
    // Under the job's pace: its devices start no faster than `rollout` lets them, and each
    // batch gate soaks between batches.
    let estimate = crate::rollout::paced_seconds(
        estimate,
        spec.pacing.as_ref(),
        spec.batch_gate.map_or(0, |gate| gate.soak_seconds),
        total,
        chunks.len() as u64,
        seconds_per_device(&operations),
    );

    let holders = holders(store, &templates, spec, &devices, None).await?;
    let refused_by = (spec.conflicts == Some(ConflictPolicy::Refuse))
        .then(|| refusing(&holders).map(|h| h.job_id.clone()))
        .flatten();
    Ok(Ok(JobPlan {
        total,
        batch_count: chunks.len() as u64,
        batches,
        skipped_count,
        skipped,
        offline: offline.len() as u64,
        conflicts: holders
            .into_iter()
            .map(|h| PlanConflict {
                job_id: h.job_id,
                status: h.status,
                devices: h.devices,
                shared_capabilities: h.shared,
            })
            .collect(),
        refused_by,
        estimated_seconds: estimate,
    }))
}
