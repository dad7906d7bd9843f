//! The scheduler: at each occurrence of an enabled scheduled job, it creates a job (named
//! "{displayName} - {n}", with `scheduledJobId`) that the engine runs over the group as it is at
//! that moment. Each occurrence runs once: the run, the job and the schedule's progress are
//! written in one transaction keyed by (schedule, occurrence). After downtime only the latest
//! missed occurrence runs.
//!
//! Only the leader polls: with several servers on one PostgreSQL database, the one holding the
//! `leader` lease (`Store::hold_lease`); with SQLite, the one process. Leadership saves the
//! others' polls; it is not what makes an occurrence run once (`fire_occurrence` is), so two
//! servers that both believe they lead for a moment run nothing twice.

use std::sync::Arc;
use std::time::Duration;

use flotilla_model::schedule::Schedule;
use flotilla_store::{Dialect, JobRecord, LeaseName, ScheduledJobRecord, Store};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::Engine;
use crate::service::{new_job, sort_key_at};

/// How often the scheduler looks at the schedules: occurrences start within this of their time.
const TICK: Duration = Duration::from_millis(250);

/// How long the leader's lease lasts from its last renewal: when the leader dies, another
/// server takes over within this (and `CLAIM_EVERY`).
const LEASE_TERM: Duration = Duration::from_secs(15);

/// How often the leader renews its lease, and the others try to take it.
const CLAIM_EVERY: Duration = Duration::from_secs(3);

/// Handle to the running scheduler.
pub struct Scheduler {
    stopping: CancellationToken,
    /// The loop; `None` when cut short by `stop`.
    task: JoinHandle<Option<()>>,
    store: Store,
}

pub fn start(store: Store, engine: Engine, clock: Arc<dyn Clock>) -> Scheduler {
    let stopping = CancellationToken::new();
    let mut leadership = Leadership::new(&store);
    let task = tokio::spawn(stopping.clone().run_until_cancelled_owned({
        let store = store.clone();
        async move {
            loop {
                if leadership.leads(&store).await
                    && let Err(e) = pass(&store, &engine, clock.as_ref()).await
                {
                    tracing::error!(error = %e, "scheduler pass failed");
                }
                tokio::time::sleep(TICK).await;
            }
        }
    }));
    Scheduler {
        stopping,
        task,
        store,
    }
}

impl Scheduler {
    /// Stops the scheduler and returns when it has, giving up the leader's lease so that
    /// another server takes over at once. A pass cut short leaves nothing half done: an
    /// occurrence's job and the schedule's progress are written in one transaction.
    pub async fn stop(self) {
        self.stopping.cancel();
        let _ = self.task.await;
        if self.store.dialect() == Dialect::Postgres
            && let Err(e) = self.store.release_lease(LeaseName::LEADER).await
        {
            tracing::warn!(error = %e, "could not give up the scheduler's lease; another server takes it when it expires");
        }
    }
}

/// Whether this server leads the scheduler, as far as it knows.
enum Leadership {
    /// SQLite: the one process leads.
    Alone,
    /// PostgreSQL: whoever holds the `leader` lease.
    Lease {
        /// When this server last asked for the lease (`None`: never yet).
        claimed_at: Option<Instant>,
        /// Until when, by this server's monotonic clock, it holds the lease: the term counted
        /// from before it asked, so never later than the database's expiry.
        held_until: Option<Instant>,
    },
}

impl Leadership {
    fn new(store: &Store) -> Leadership {
        match store.dialect() {
            Dialect::Sqlite => Leadership::Alone,
            Dialect::Postgres => Leadership::Lease {
                claimed_at: None,
                held_until: None,
            },
        }
    }

    /// Whether this server leads now, renewing or claiming the lease when it is time to.
    async fn leads(&mut self, store: &Store) -> bool {
        let Leadership::Lease {
            claimed_at,
            held_until,
        } = self
        else {
            return true;
        };
        let asked = Instant::now();
        if claimed_at.is_none_or(|at| asked >= at + CLAIM_EVERY) {
            *claimed_at = Some(asked);
            let led = held_until.is_some_and(|until| asked < until);
            match store.hold_lease(LeaseName::LEADER, LEASE_TERM).await {
                Ok(true) => {
                    if !led {
                        tracing::info!(replica = %store.replica(), "this server now leads the scheduler");
                    }
                    *held_until = Some(asked + LEASE_TERM);
                }
                Ok(false) => {
                    if led {
                        tracing::warn!(replica = %store.replica(), "another server took over the scheduler");
                    }
                    *held_until = None;
                }
                // A renewal that failed leaves the lease as it was: held until it expires.
                Err(e) => tracing::warn!(error = %e, "claiming the scheduler's lease failed"),
            }
        }
        held_until.is_some_and(|until| Instant::now() < until)
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
                // How late it ran: the scheduler's tick, a busy database, or downtime.
                let lag = std::time::Duration::try_from(now.duration_since(at)).unwrap_or_default();
                crate::meters::occurrence_fired(lag);
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
