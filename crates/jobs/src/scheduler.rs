//! The scheduler: at each occurrence of an enabled scheduled job, it creates a job (named
//! "{displayName} - {n}", with `scheduledJobId`) that the engine runs over the group as it is at
//! that moment. Each occurrence runs once: the run, the job and the schedule's progress are
//! written in one transaction keyed by (schedule, occurrence). After downtime only the latest
//! missed occurrence runs.

use std::sync::Arc;
use std::time::Duration;

use flotilla_model::schedule::Schedule;
use flotilla_store::{JobRecord, ScheduledJobRecord, Store};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::Engine;
use crate::service::{new_job, sort_key_at};

/// How often the scheduler looks at the schedules: occurrences start within this of their time.
const TICK: Duration = Duration::from_millis(250);

/// Handle to the running scheduler.
pub struct Scheduler {
    stopping: CancellationToken,
    /// The loop; `None` when cut short by `stop`.
    task: JoinHandle<Option<()>>,
}

pub fn start(store: Store, engine: Engine, clock: Arc<dyn Clock>) -> Scheduler {
    let stopping = CancellationToken::new();
    let task = tokio::spawn(stopping.clone().run_until_cancelled_owned(async move {
        loop {
            if let Err(e) = pass(&store, &engine, clock.as_ref()).await {
                tracing::error!(error = %e, "scheduler pass failed");
            }
            tokio::time::sleep(TICK).await;
        }
    }));
    Scheduler { stopping, task }
}

impl Scheduler {
    /// Stops the scheduler and returns when it has. A pass cut short leaves nothing half done:
    /// an occurrence's job and the schedule's progress are written in one transaction.
    pub async fn stop(self) {
        self.stopping.cancel();
        let _ = self.task.await;
    }
}

async fn pass(store: &Store, engine: &Engine, clock: &dyn Clock) -> flotilla_store::Result<()> {
    let now = clock.now();
    for scheduled in store.active_scheduled_jobs().await? {
        // One schedule's trouble must not hold back the others.
        if let Err(e) = visit(store, engine, &scheduled, now).await {
            tracing::error!(scheduled_job = %scheduled.id, error = %e, "running a schedule failed");
        }
    }
    Ok(())
}

async fn visit(
    store: &Store,
    engine: &Engine,
    scheduled: &ScheduledJobRecord,
    now: jiff::Timestamp,
) -> flotilla_store::Result<()> {
    let schedule = match Schedule::from_json(&scheduled.schedule) {
        Ok(schedule) => schedule,
        Err(e) => {
            tracing::error!(scheduled_job = %scheduled.id, error = %e.message, "a stored schedule no longer parses");
            return Ok(());
        }
    };
    let next = scheduled.next_occurrence.max(0) as u32;
    match schedule.due(next, now) {
        Some(occurrence) => {
            let at = schedule.nth(occurrence).unwrap_or(now);
            let job = occurrence_job(scheduled, occurrence, now);
            let completed = !schedule.has_more(occurrence + 1);
            let fired = store
                .fire_occurrence(
                    &scheduled.id,
                    occurrence as i64,
                    at.as_millisecond(),
                    &job,
                    completed,
                    &flotilla_model::new_etag(),
                )
                .await?;
            if let Some(job_id) = fired {
                if occurrence > next {
                    tracing::warn!(scheduled_job = %scheduled.id, skipped = occurrence - next, "missed occurrences skipped; ran the latest");
                }
                tracing::info!(scheduled_job = %scheduled.id, occurrence, job = %job_id, "scheduled job ran");
                engine.wake();
            }
        }
        None if !schedule.has_more(next) => {
            store
                .complete_scheduled_job(&scheduled.id, &flotilla_model::new_etag())
                .await?
        }
        None => {}
    }
    Ok(())
}

/// The job an occurrence creates: the schedule's definition, numbered.
fn occurrence_job(
    scheduled: &ScheduledJobRecord,
    occurrence: u32,
    now: jiff::Timestamp,
) -> JobRecord {
    let mut definition = scheduled.definition.clone();
    let number = occurrence + 1;
    let name = definition
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or(&scheduled.id)
        .to_string();
    definition["displayName"] = json!(format!("{name} - {number}"));
    let mut job = new_job(&format!("{}-{number}", scheduled.id), definition, None);
    job.scheduled_job_id = Some(scheduled.id.clone());
    job.sort_key = sort_key_at(
        now.as_millisecond()
            .max(jiff::Timestamp::now().as_millisecond()),
    );
    job
}
