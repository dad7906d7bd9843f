//! Which active jobs hold some of a job's devices (the engine's order rule makes a device wait
//! for them), and the refusal a `"conflicts": "refuse"` job gets when one of them works on the
//! same capability.

use std::collections::HashSet;

use flotilla_model::job::JobSpec;
use flotilla_model::job_state::JobStatus;
use flotilla_model::rollout::conflicts::shared_capabilities;
use flotilla_store::{JobRecord, Store};

use crate::members::job_members;
use crate::templates::Templates;

/// An active job holding some of a job's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub job_id: String,
    pub status: JobStatus,
    /// How many of the job's devices it holds.
    pub devices: u64,
    /// The capabilities both jobs work on (empty: the devices only wait their turn).
    pub shared: Vec<String>,
}

impl Holder {
    /// What the holder holds, for a refusal: "the running job 'y', which holds property 'p' on
    /// 3 of its devices".
    pub fn describe(&self) -> String {
        format!(
            "the {} job '{}', which holds {} on {} of its devices",
            self.status,
            self.job_id,
            self.shared.join(", "),
            self.devices
        )
    }
}

/// The active jobs created before `before` (every active job when `None`) that hold some of
/// `devices`, oldest first: started jobs by their unfinished job devices, jobs not started yet
/// by the devices their group selects now.
pub async fn holders(
    store: &Store,
    templates: &Templates,
    spec: &JobSpec,
    devices: &[String],
    before: Option<&str>,
) -> flotilla_store::Result<Vec<Holder>> {
    if devices.is_empty() {
        return Ok(vec![]);
    }
    let earlier = |job: &JobRecord| before.is_none_or(|key| job.sort_key.as_str() < key);
    let mut found: Vec<(JobRecord, u64)> = Vec::new();
    for (job_id, count) in store.jobs_holding(devices).await? {
        if let Some(job) = store.job(&job_id).await?
            && earlier(&job)
        {
            found.push((job, count as u64));
        }
    }
    let mut wanted: Option<HashSet<&str>> = None;
    for job in store.jobs_with_status(&[JobStatus::Pending]).await? {
        if job.start_ms.is_some() || !earlier(&job) {
            continue;
        }
        let Ok(other) = JobSpec::from_json(&job.definition, templates) else {
            continue;
        };
        let Ok(theirs) = job_members(store, templates, &other, job.rerun_of.as_deref()).await?
        else {
            continue;
        };
        let wanted = wanted.get_or_insert_with(|| devices.iter().map(String::as_str).collect());
        let count = theirs
            .iter()
            .filter(|d| wanted.contains(d.as_str()))
            .count() as u64;
        if count > 0 {
            found.push((job, count));
        }
    }
    found.sort_by(|a, b| a.0.sort_key.cmp(&b.0.sort_key));
    Ok(found
        .into_iter()
        .map(|(job, devices)| Holder {
            shared: JobSpec::from_json(&job.definition, templates)
                .map(|other| shared_capabilities(spec, &other))
                .unwrap_or_default(),
            job_id: job.id,
            status: job.status,
            devices,
        })
        .collect())
}

/// The first holder that works on the same capability, which refuses a `refuse` job.
pub fn refusing(holders: &[Holder]) -> Option<&Holder> {
    holders.iter().find(|h| !h.shared.is_empty())
}
