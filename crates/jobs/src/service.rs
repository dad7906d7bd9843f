//! The lifecycle commands users give a job (create, stop, resume, rerun). The engine applies
//! them through the transition table (`flotilla_model::job_state`), so the engine alone moves a
//! job's status; callers only read jobs.

use flotilla_model::job_state::{IllegalTransition, JobEvent, JobStatus};
use flotilla_store::{JobRecord, StoreError};
use serde_json::Value;

use flotilla_model::job::JobSpec;
use flotilla_model::rollout::conflicts::{self, ConflictPolicy};
use flotilla_model::rollout::revert::{revert_definition, unrevertable};

use crate::conflicts::{holders, refusing};
use crate::engine::Engine;
use crate::members::job_members;
use crate::templates::Templates;

/// Why a lifecycle command was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job '{0}' was not found")]
    NotFound(String),
    #[error("a job with the id '{0}' already exists")]
    AlreadyExists(String),
    /// The job's status does not allow the command.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("the job has no failed devices to rerun")]
    NoFailedDevices,
    /// Every creation-order key drawn was taken (a server fault, not the caller's).
    #[error("no free creation-order key for the job '{0}'")]
    NoSortKey(String),
    /// A revert of a job that ran a command or migrated templates (the message says which).
    #[error("the job cannot be reverted: it {0}")]
    Unrevertable(&'static str),
    /// A revert of a job that changed no device.
    #[error("the job changed no device")]
    NothingToRevert,
    /// A `"conflicts": "refuse"` job that an active job conflicts with (the message names it).
    #[error("{0}")]
    Conflicting(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new job's creation-order key: time first, then a random tie-breaker.
pub fn sort_key() -> String {
    sort_key_at(jiff::Timestamp::now().as_millisecond())
}

/// The creation-order key of a job created at `ms` (milliseconds since the epoch).
pub fn sort_key_at(ms: i64) -> String {
    format!("{ms:013}-{}", flotilla_model::keys::random_hex::<6>())
}

/// A new pending job with this definition (validated by the caller).
pub fn new_job(id: &str, definition: Value, rerun_of: Option<String>) -> JobRecord {
    JobRecord {
        id: id.to_string(),
        sort_key: sort_key(),
        scheduled_job_id: None,
        definition,
        status: JobStatus::Pending,
        reason: None,
        start_ms: None,
        end_ms: None,
        total: 0,
        completed: 0,
        failed: 0,
        skipped: 0,
        batch_size: 0,
        rerun_of,
    }
}

impl Engine {
    /// Stores a new pending job and wakes the engine to start it.
    pub async fn create_job(&self, mut job: JobRecord) -> Result<JobRecord, JobError> {
        let store = &self.inner.store;
        if let Some(refusal) = self.conflict_refusal(&job).await? {
            return Err(JobError::Conflicting(refusal));
        }
        for _ in 0..3 {
            match store.insert_job(&job).await {
                Ok(()) => {
                    self.wake();
                    return Ok(job);
                }
                // Two jobs created in the same millisecond with the same tie-breaker: draw again.
                Err(StoreError::Conflict { .. }) if store.job(&job.id).await?.is_none() => {
                    job.sort_key = sort_key();
                }
                Err(StoreError::Conflict { .. }) => return Err(JobError::AlreadyExists(job.id)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::NoSortKey(job.id))
    }

    /// For a `"conflicts": "refuse"` job, the refusal when an active job holds the same
    /// capability on some of its devices (checked before the job is stored: two such jobs
    /// created at the same moment may both pass, and the later is then refused when it starts).
    async fn conflict_refusal(&self, job: &JobRecord) -> Result<Option<String>, JobError> {
        // Only a job that asks for it pays for the check.
        if job.definition.get(conflicts::FIELD).and_then(Value::as_str)
            != Some(ConflictPolicy::Refuse.as_str())
        {
            return Ok(None);
        }
        let store = &self.inner.store;
        let templates = Templates::load(store).await?;
        let Ok(spec) = JobSpec::from_json(&job.definition, &templates) else {
            return Ok(None);
        };
        let Ok(devices) = job_members(store, &templates, &spec, job.rerun_of.as_deref()).await?
        else {
            return Ok(None);
        };
        let holders = holders(store, &templates, &spec, &devices, None).await?;
        Ok(refusing(&holders).map(|h| {
            format!(
                "The job '{}' conflicts with {}; with \"conflicts\": \"refuse\" it is not \
                 created (send \"queue\" to wait for it).",
                job.id,
                h.describe()
            )
        }))
    }

    /// Stops a pending or running job: no device starts; devices in flight finish.
    pub async fn stop_job(&self, id: &str) -> Result<(), JobError> {
        self.apply(id, |_| JobEvent::Stop).await
    }

    /// Resumes a stopped job (to pending when it was stopped before it started).
    pub async fn resume_job(&self, id: &str) -> Result<(), JobError> {
        self.apply(id, |job| JobEvent::Resume {
            started: job.start_ms.is_some(),
        })
        .await?;
        self.wake();
        Ok(())
    }

    /// Creates a job that reruns a settled job (`original`, as the caller read it) on the
    /// devices that failed in it.
    pub async fn rerun_job(
        &self,
        original: &JobRecord,
        rerun_id: &str,
    ) -> Result<JobRecord, JobError> {
        original.status.next(&JobEvent::Rerun)?;
        if original.failed == 0 {
            return Err(JobError::NoFailedDevices);
        }
        let rerun = new_job(
            rerun_id,
            original.definition.clone(),
            Some(original.id.clone()),
        );
        self.create_job(rerun).await
    }

    /// Creates a job that restores, on each device a settled job (`original`, as the caller
    /// read it) changed, the values it replaced.
    pub async fn revert_job(
        &self,
        original: &JobRecord,
        revert_id: &str,
    ) -> Result<JobRecord, JobError> {
        let templates = Templates::load(&self.inner.store).await?;
        if let Ok(spec) = JobSpec::from_json(&original.definition, &templates)
            && let Some(why) = unrevertable(&spec)
        {
            return Err(JobError::Unrevertable(why));
        }
        // Settled as for a rerun: a job still writing would change devices after the revert.
        original.status.next(&JobEvent::Rerun)?;
        if !self.inner.store.job_changed_devices(&original.id).await? {
            return Err(JobError::NothingToRevert);
        }
        let definition = revert_definition(&original.id, &original.definition);
        self.create_job(new_job(revert_id, definition, None)).await
    }

    /// Applies the event `for_job` makes of the job as read; `Illegal` (with the status read)
    /// when the table refuses it then, or the job moved on before the update.
    async fn apply(
        &self,
        id: &str,
        for_job: impl FnOnce(&JobRecord) -> JobEvent,
    ) -> Result<(), JobError> {
        let store = &self.inner.store;
        let job = store
            .job(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        let event = for_job(&job);
        job.status.next(&event)?;
        if store.transition(id, &event).await? {
            Ok(())
        } else {
            Err(IllegalTransition {
                from: job.status,
                event: event.name(),
            }
            .into())
        }
    }
}
