//! Group commit for the writes that come by the thousand while jobs run: devices' reported
//! patches, desired-property writes, a job device's progress notes and its outcome, and the
//! cloud-property writes and template migrations of jobs.
//!
//! A caller queues its write and waits for the answer; the writer takes everything queued and
//! applies it in one transaction, with bulk statements (one `SELECT ... IN (...)`, one
//! `UPDATE ... FROM (VALUES ...)` per few hundred rows) instead of a few statements and a
//! commit per device. While a transaction commits, the next writes gather, so the batches grow
//! with the load. Each write keeps the conditions it has on its own: twin writes are
//! compare-and-swap on the version they read, a job device finishes only while it is running
//! and is counted in its job in the same transaction, the cancellation threshold is checked
//! after each failure in order, and nobody hears of a write before its transaction committed.
//! If a batch's transaction fails, each of its writes is tried again on its own; a twin write
//! that lost a compare-and-swap race (PostgreSQL, with a concurrent writer) also runs again on
//! its own. "On its own" is a batch of one, through the same statements: each write's SQL
//! exists once, in its table's module (`twins`) or in `job_progress`.

mod job_progress;
mod twin_plan;

use std::sync::LazyLock;

use std::collections::HashSet;

use flotilla_model::job::Threshold;
use flotilla_model::job_state::DeviceOutcome;
use flotilla_model::twin::Twin;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::cache::Changed;
use crate::devices::DeviceChange;
use crate::jobs::Finish;
use crate::{ConflictKind, Entity, Result, Store, StoreError};
pub(crate) use job_progress::finish_bulk;
use job_progress::notes_bulk;
pub(crate) use twin_plan::DevicePlan;
use twin_plan::{Plan, plan_writes, write_desired, write_reported};

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 2000;
/// How often a twin write runs again on its own when another writer changed the document
/// meanwhile.
const CAS_ATTEMPTS: usize = 20;

pub(crate) struct ReportedWrite {
    pub device_id: String,
    pub patch: Value,
}

pub(crate) struct DesiredWrite {
    pub device_id: String,
    pub change: Value,
    pub job_id: Option<String>,
}

pub(crate) struct NoteWrite {
    pub job_id: String,
    pub device_id: String,
    pub desired_version: Option<i64>,
    pub sent: bool,
}

pub(crate) struct FinishWrite {
    pub job_id: String,
    pub device_id: String,
    pub outcome: DeviceOutcome,
    pub reason: Option<String>,
    pub detail: Option<Value>,
    pub threshold: Option<(Threshold, i64)>,
}

pub(crate) struct DeviceChangeWrite {
    pub device_id: String,
    pub change: DeviceChange,
}

/// The writer's metrics, registered once (a handle records without looking its name up).
struct CommitMetrics {
    /// A batch's transaction, from asking for the write lock to the commit.
    duration: metrics::Histogram,
    /// Writes per transaction.
    writes: metrics::Histogram,
    /// Transactions that failed (their writes then run again on their own).
    failed: metrics::Counter,
}

static COMMIT_METRICS: LazyLock<CommitMetrics> = LazyLock::new(|| CommitMetrics {
    duration: metrics::histogram!("flotilla_db_group_commit_duration_seconds"),
    writes: metrics::histogram!("flotilla_db_group_commit_writes"),
    failed: metrics::counter!("flotilla_db_group_commit_failures_total"),
});

/// Where a write's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// A reported write's answer: the version and the document it made.
pub(crate) type ReportedAnswer = (i64, Value);

/// A write, and where its answer goes.
pub(crate) enum Write {
    Reported(ReportedWrite, Reply<ReportedAnswer>),
    Desired(DesiredWrite, Reply<Twin>),
    /// Answered `false` when the device is no longer this replica's (or a `sent` note found
    /// it sent already).
    Note(NoteWrite, Reply<bool>),
    Finish(FinishWrite, Reply<Finish>),
    /// Answered `false` when there is no such device.
    DeviceChange(DeviceChangeWrite, Reply<bool>),
}

/// Where writes queue: each kind goes to one writer, so writes of one kind commit in the order
/// they came. On SQLite, with its one write lock, one writer takes them all. On PostgreSQL three
/// writers, each on connections of its own, so that the database works on a job's writes with
/// both cores: with one writer a 10,000-device job kept one backend busy and the other idle.
/// Each writer's transactions lock rows in key order, as another replica's writer's do, and a
/// device's writes of different kinds come one after another (the engine waits for each answer).
#[derive(Clone)]
pub(crate) struct Writers {
    /// Twin writes (`devices` rows), with the desired versions and previous values a job's
    /// desired write records (`job_devices`, `job_previous_values`).
    twins: mpsc::UnboundedSender<Write>,
    /// Job devices' progress notes and outcomes (`jobs` rows, then `job_devices` rows).
    job_progress: mpsc::UnboundedSender<Write>,
    /// Jobs' changes to device rows (cloud properties, template migrations: `devices` rows,
    /// then `job_previous_values`).
    device_changes: mpsc::UnboundedSender<Write>,
}

/// On PostgreSQL, the stores of the writers beside the twins' one.
pub(crate) struct MoreWriters {
    pub job_progress: Store,
    pub device_changes: Store,
}

impl Writers {
    /// Starts the twins' writer, which takes every write unless `more` writers are given.
    pub(crate) fn start(twins: Store, more: Option<MoreWriters>) -> Writers {
        let twins = start(twins, "store-writer");
        let (job_progress, device_changes) = match more {
            Some(more) => (
                start(more.job_progress, "job-writer"),
                start(more.device_changes, "device-writer"),
            ),
            None => (twins.clone(), twins.clone()),
        };
        Writers {
            twins,
            job_progress,
            device_changes,
        }
    }

    fn for_write(&self, write: &Write) -> &mpsc::UnboundedSender<Write> {
        match write {
            Write::Reported(..) | Write::Desired(..) => &self.twins,
            Write::Note(..) | Write::Finish(..) => &self.job_progress,
            Write::DeviceChange(..) => &self.device_changes,
        }
    }
}

/// Starts a writer; it ends when every sender is gone.
///
/// Two stages: the first takes what is queued, reads the twins it changes (on a connection of
/// its own, outside any transaction) and works out their new documents; the second writes a
/// prepared batch in one transaction, each twin write a compare-and-swap on the version the
/// first stage read. So while one batch commits, the next one's reading and JSON work runs
/// beside it, and the transaction, which holds SQLite's one write lock, only writes.
///
/// Both stages run on a thread of their own (with its own small runtime): on the server's
/// runtime, each database answer would wake them behind the thousands of device tasks the last
/// batch's answers woke, and the whole pipeline would wait on that queue.
fn start(core: Store, thread: &str) -> mpsc::UnboundedSender<Write> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (prepared_tx, mut prepared_rx) = mpsc::channel::<Prepared>(1);
    let preparer = core.clone();
    let stages = async move {
        let prepare_stage = async move {
            let mut queued = Vec::new();
            while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
                let prepared = prepare(&preparer, std::mem::take(&mut queued)).await;
                if prepared_tx.send(prepared).await.is_err() {
                    return;
                }
            }
        };
        let apply_stage = async move {
            while let Some(prepared) = prepared_rx.recv().await {
                for write in apply(&core, prepared).await {
                    run_alone(&core, write).await;
                }
            }
        };
        tokio::join!(prepare_stage, apply_stage);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the store's writer runtime starts");
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            lower_priority();
            runtime.block_on(stages)
        })
        .expect("the store's writer thread starts");
    tx
}

/// The writer works for devices in bulk: like the device runtime's threads (see
/// `flotilla_gateway::runtime`), it yields the CPU to the REST API's threads when both cores
/// are busy.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority on this thread's own id; a failure leaves the priority as
    // it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 5);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// A write's outcome in a batch: done, or to be run again on its own.
pub(crate) enum Outcome<T> {
    Done(Result<T>),
    Again,
}

/// A batch's writes by kind.
#[derive(Default)]
struct Batch {
    reported: Vec<(ReportedWrite, Reply<ReportedAnswer>)>,
    desired: Vec<(DesiredWrite, Reply<Twin>)>,
    notes: Vec<(NoteWrite, Reply<bool>)>,
    finishes: Vec<(FinishWrite, Reply<Finish>)>,
    device_changes: Vec<(DeviceChangeWrite, Reply<bool>)>,
}

/// A batch with its twin writes worked out from the twins as the first stage read them.
struct Prepared {
    batch: Batch,
    reported: Plan<ReportedAnswer>,
    desired: Plan<Twin>,
}

async fn prepare(core: &Store, writes: Vec<Write>) -> Prepared {
    let mut batch = Batch::default();
    for write in writes {
        match write {
            Write::Reported(w, reply) => batch.reported.push((w, reply)),
            Write::Desired(w, reply) => batch.desired.push((w, reply)),
            Write::Note(w, reply) => batch.notes.push((w, reply)),
            Write::Finish(w, reply) => batch.finishes.push((w, reply)),
            Write::DeviceChange(w, reply) => batch.device_changes.push((w, reply)),
        }
    }
    // Reading ahead is only an optimization: if it fails, the transaction reads for itself.
    // Only twin writes read ahead (on PostgreSQL only the twins' writer has them).
    let (reported, desired) = if batch.reported.is_empty() && batch.desired.is_empty() {
        (Plan::default(), Plan::default())
    } else {
        read_ahead(core, &batch).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading twins ahead of a batch failed");
            (Plan::default(), Plan::default())
        })
    };
    Prepared {
        batch,
        reported,
        desired,
    }
}

/// Reads the twins the batch's twin writes change, outside any transaction's write lock, and
/// works out the writes' new documents.
async fn read_ahead(core: &Store, batch: &Batch) -> Result<(Plan<ReportedAnswer>, Plan<Twin>)> {
    let mut connection = core.pool.begin().await?;
    core.look_up_by_key(&mut connection).await?;
    let reported = if batch.reported.is_empty() {
        Plan::default()
    } else {
        let ids = distinct(batch.reported.iter().map(|(w, _)| w.device_id.as_str()));
        let twins = core.read_twins(&mut connection, &ids, false).await?;
        plan_writes(twins, batch.reported.iter().map(|(w, _)| w))
    };
    let desired = if batch.desired.is_empty() {
        Plan::default()
    } else {
        let ids = distinct(batch.desired.iter().map(|(w, _)| w.device_id.as_str()));
        let twins = core.read_twins(&mut connection, &ids, true).await?;
        plan_writes(twins, batch.desired.iter().map(|(w, _)| w))
    };
    connection.commit().await?;
    Ok((reported, desired))
}

/// Applies a prepared batch in one transaction and answers its writes. Returns the writes to
/// run again on their own: twin writes that lost a compare-and-swap race, or every write of a
/// failed batch of more than one (a write on its own gets its error as its answer).
async fn apply(core: &Store, prepared: Prepared) -> Vec<Write> {
    let Prepared {
        batch,
        reported: reported_plan,
        desired: desired_plan,
    } = prepared;
    let started = std::time::Instant::now();
    let result = async {
        // Refused while this replica's lease is not known valid (a zombie writes nothing).
        let mut tx = core.begin_write().await?;
        core.look_up_by_key(&mut tx).await?;
        // Finishes first: they lock their jobs' rows before any job device row (see
        // `finish_bulk`), so no transaction waits for a job's row while holding device rows.
        let finishes: Vec<&FinishWrite> = batch.finishes.iter().map(|(w, _)| w).collect();
        let f = finish_bulk(core, &mut tx, &finishes, &core.replica).await?;
        let r = write_reported(core, &mut tx, &batch.reported, reported_plan).await?;
        let d = write_desired(core, &mut tx, &batch.desired, desired_plan).await?;
        let n = notes_bulk(core, &mut tx, &batch.notes).await?;
        let changes: Vec<(&str, &DeviceChange)> = batch
            .device_changes
            .iter()
            .map(|(w, _)| (w.device_id.as_str(), &w.change))
            .collect();
        let c = core.change_devices_bulk(&mut tx, &changes).await?;
        tx.commit().await?;
        Ok::<_, StoreError>((r, d, n, f, c))
    }
    .await;
    let meters = &*COMMIT_METRICS;
    meters.duration.record(started.elapsed());
    meters.writes.record(batch.len() as f64);
    if result.is_err() {
        meters.failed.increment(1);
    }
    // Before anyone hears of these writes, reads of jobs see them.
    if !batch.notes.is_empty() || !batch.finishes.is_empty() || !batch.desired.is_empty() {
        core.caches.changed(Changed::Jobs);
    }
    tracing::debug!(
        reported = batch.reported.len(),
        desired = batch.desired.len(),
        notes = batch.notes.len(),
        finished = batch.finishes.len(),
        device_changes = batch.device_changes.len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        ok = result.is_ok(),
        "group commit"
    );
    let (r, d, n, f, c) = match result {
        Ok(done) => done,
        Err(e) => {
            let mut writes = batch.into_writes();
            if matches!(e, StoreError::Fenced) {
                for write in writes {
                    write.fail(StoreError::Fenced);
                }
                return Vec::new();
            }
            if writes.len() == 1 {
                writes.pop().expect("one write").fail(e);
                return Vec::new();
            }
            tracing::warn!(error = %e, "a batch of writes failed; trying each on its own");
            return writes;
        }
    };
    let Batch {
        reported,
        desired,
        notes,
        finishes,
        device_changes,
    } = batch;
    let mut again = Vec::new();
    for ((w, reply), outcome) in reported.into_iter().zip(r) {
        match outcome {
            Outcome::Done(result) => drop(reply.send(result)),
            Outcome::Again => again.push(Write::Reported(w, reply)),
        }
    }
    for ((w, reply), outcome) in desired.into_iter().zip(d) {
        match outcome {
            Outcome::Done(result) => drop(reply.send(result)),
            Outcome::Again => again.push(Write::Desired(w, reply)),
        }
    }
    for ((_, reply), noted) in notes.into_iter().zip(n) {
        let _ = reply.send(Ok(noted));
    }
    for ((_, reply), finish) in finishes.into_iter().zip(f) {
        let _ = reply.send(Ok(finish));
    }
    for ((_, reply), exists) in device_changes.into_iter().zip(c) {
        let _ = reply.send(Ok(exists));
    }
    again
}

/// Runs a write as a batch of its own, again while it loses its compare-and-swap race, at most
/// `CAS_ATTEMPTS` times.
async fn run_alone(core: &Store, mut write: Write) {
    for _ in 0..CAS_ATTEMPTS {
        match apply(core, prepare(core, vec![write]).await).await.pop() {
            Some(again) => write = again,
            None => return,
        }
    }
    let id = write.device_id().to_string();
    write.fail(StoreError::conflict(
        Entity::Twin,
        &id,
        ConflictKind::Contended,
    ));
}

impl Store {
    /// Queues a write for group commit and waits for its answer. Without a writer (in the
    /// writer's own store) or when the writer is gone, it runs as a batch of its own.
    pub(crate) async fn group_commit<T>(&self, write: impl FnOnce(Reply<T>) -> Write) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let write = write(reply);
        let unqueued = match &self.writer {
            Some(writers) => writers
                .for_write(&write)
                .send(write)
                .err()
                .map(|unsent| unsent.0),
            None => Some(write),
        };
        if let Some(write) = unqueued {
            run_alone(self, write).await;
        }
        answer.await.unwrap_or(Err(StoreError::Interrupted))
    }
}

impl Write {
    fn device_id(&self) -> &str {
        match self {
            Write::Reported(w, _) => &w.device_id,
            Write::Desired(w, _) => &w.device_id,
            Write::Note(w, _) => &w.device_id,
            Write::Finish(w, _) => &w.device_id,
            Write::DeviceChange(w, _) => &w.device_id,
        }
    }

    /// Answers the write with an error.
    fn fail(self, error: StoreError) {
        match self {
            Write::Reported(_, reply) => drop(reply.send(Err(error))),
            Write::Desired(_, reply) => drop(reply.send(Err(error))),
            Write::Note(_, reply) => drop(reply.send(Err(error))),
            Write::Finish(_, reply) => drop(reply.send(Err(error))),
            Write::DeviceChange(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

impl Batch {
    fn len(&self) -> usize {
        self.reported.len()
            + self.desired.len()
            + self.notes.len()
            + self.finishes.len()
            + self.device_changes.len()
    }

    fn into_writes(self) -> Vec<Write> {
        let reported = self
            .reported
            .into_iter()
            .map(|(w, r)| Write::Reported(w, r));
        let desired = self.desired.into_iter().map(|(w, r)| Write::Desired(w, r));
        let notes = self.notes.into_iter().map(|(w, r)| Write::Note(w, r));
        let finishes = self.finishes.into_iter().map(|(w, r)| Write::Finish(w, r));
        let changes = self
            .device_changes
            .into_iter()
            .map(|(w, r)| Write::DeviceChange(w, r));
        reported
            .chain(desired)
            .chain(notes)
            .chain(finishes)
            .chain(changes)
            .collect()
    }
}

/// Distinct ids, in first-seen order.
pub(crate) fn distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::device::Device;
    use serde_json::json;

    #[tokio::test]
    async fn a_write_without_a_writer_runs_as_a_batch_of_one() {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-group-commit-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
        let store = Store::connect(&url).await.unwrap();
        store
            .insert_device(&Device {
                id: "d".into(),
                etag: "e".into(),
                display_name: "d".into(),
                template: None,
                enabled: true,
                provisioned: false,
                simulated: false,
                organizations: vec![],
            })
            .await
            .unwrap();
        // As the writer's own store: nothing to queue on, so each write is a batch of its own.
        let alone = Store {
            writer: None,
            ..store.clone()
        };
        let (version, reported) = alone.patch_reported("d", &json!({"a": 1})).await.unwrap();
        assert_eq!((version, reported), (2, json!({"a": 1})));
        let twin = alone.patch_desired("d", &json!({"b": 2})).await.unwrap();
        assert_eq!((twin.desired_version, twin.desired), (2, json!({"b": 2})));
        // The queued path reads the same rows.
        let (version, _) = store.patch_reported("d", &json!({"a": 2})).await.unwrap();
        assert_eq!(version, 3);
        match alone.patch_reported("ghost", &json!({})).await {
            Err(StoreError::NotFound {
                entity: Entity::Device,
                id,
            }) => assert_eq!(id, "ghost"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn distinct_keeps_the_first_of_each() {
        assert_eq!(distinct(["a", "b", "a"].into_iter()), ["a", "b"]);
    }
}
