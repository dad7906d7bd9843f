//! Group commit for the writes that come by the thousand while jobs run: devices' reported
//! patches, desired-property writes, a job device's progress notes and its outcome.
//!
//! A caller queues its write and waits for the answer; the writer takes everything queued and
//! applies it in one transaction, with bulk statements (one `SELECT ... IN (...)`, one
//! `UPDATE ... FROM (VALUES ...)` per few hundred rows) instead of a few statements and a
//! commit per device. While a transaction commits, the next writes gather, so the batches grow
//! with the load. Each write keeps the conditions it has on its own: twin writes are
//! compare-and-swap on the version they read, a job device finishes only while it is running
//! and is counted in its job in the same transaction, the cancellation threshold is checked
//! after each failure in order, and nobody hears of a write before its transaction committed.
//! If a batch's transaction fails, each of its writes is tried again on its own, as it would
//! have run without batching; a twin write that lost a compare-and-swap race (PostgreSQL, with
//! a concurrent writer) also runs again on its own.

use std::collections::{HashMap, HashSet};

use flotilla_model::job::Threshold;
use flotilla_model::twin::{Twin, apply_reported_patch, plain_values};
use flotilla_model::validate::merge_patch;
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::jobs::{Finish, batch_failures_sql, device_source, reason_code};
use crate::write_gate::WriteTx;
use crate::{Result, Store, StoreError, now_ms};
use flotilla_model::job_state::{DeviceEvent, DeviceOutcome, DeviceStatus};

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 2000;
/// Rows per bulk statement (SQLite allows 32,766 parameters; PostgreSQL 65,535).
const CHUNK: usize = 250;

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

/// Where a write's answer goes.
type Reply<T> = oneshot::Sender<Result<T>>;

/// A reported write's answer: the version and the document it made.
type ReportedAnswer = (i64, Value);

/// A write, and where its answer goes.
pub(crate) enum Write {
    Reported(ReportedWrite, Reply<ReportedAnswer>),
    Desired(DesiredWrite, Reply<Twin>),
    Note(NoteWrite, Reply<()>),
    Finish(FinishWrite, Reply<Finish>),
}

/// Starts the writer; it ends when every sender is gone.
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
pub(crate) fn start(core: Store) -> mpsc::UnboundedSender<Write> {
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
                apply(&core, prepared).await;
            }
        };
        tokio::join!(prepare_stage, apply_stage);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the store's writer runtime starts");
    std::thread::Builder::new()
        .name("store-writer".into())
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
enum Outcome<T> {
    Done(Result<T>),
    Again,
}

/// A batch's writes by kind.
#[derive(Default)]
struct Batch {
    reported: Vec<(ReportedWrite, Reply<ReportedAnswer>)>,
    desired: Vec<(DesiredWrite, Reply<Twin>)>,
    notes: Vec<(NoteWrite, Reply<()>)>,
    finishes: Vec<(FinishWrite, Reply<Finish>)>,
}

/// A batch with its twin writes worked out from the twins as the first stage read them.
struct Prepared {
    batch: Batch,
    reported: Plan<ReportedAnswer>,
    desired: Plan<Twin>,
}

/// Twin writes worked out: per device, the document to write and the version it replaces;
/// per write, its answer (`None`: the device was not found).
struct Plan<A> {
    devices: Vec<DevicePlan>,
    answers: Vec<Option<A>>,
}

impl<A> Default for Plan<A> {
    fn default() -> Self {
        Plan {
            devices: Vec::new(),
            answers: Vec::new(),
        }
    }
}

struct DevicePlan {
    id: String,
    /// The version read: the write happens only if it is still the one stored.
    read_version: i64,
    version: i64,
    document: Value,
}

async fn prepare(core: &Store, writes: Vec<Write>) -> Prepared {
    let mut batch = Batch::default();
    for write in writes {
        match write {
            Write::Reported(w, reply) => batch.reported.push((w, reply)),
            Write::Desired(w, reply) => batch.desired.push((w, reply)),
            Write::Note(w, reply) => batch.notes.push((w, reply)),
            Write::Finish(w, reply) => batch.finishes.push((w, reply)),
        }
    }
    // Reading ahead is only an optimization: if it fails, the transaction reads for itself.
    let planned = async {
        let mut connection = core.pool.acquire().await?;
        let reported = if batch.reported.is_empty() {
            Plan::default()
        } else {
            let ids = distinct(batch.reported.iter().map(|(w, _)| w.device_id.as_str()));
            let twins = read_twins(core, &mut connection, &ids, false).await?;
            plan_writes(twins, batch.reported.iter().map(|(w, _)| w))
        };
        let desired = if batch.desired.is_empty() {
            Plan::default()
        } else {
            let ids = distinct(batch.desired.iter().map(|(w, _)| w.device_id.as_str()));
            let twins = read_twins(core, &mut connection, &ids, true).await?;
            plan_writes(twins, batch.desired.iter().map(|(w, _)| w))
        };
        Ok::<_, StoreError>((reported, desired))
    }
    .await;
    let (reported, desired) = planned.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading twins ahead of a batch failed");
        (Plan::default(), Plan::default())
    });
    Prepared {
        batch,
        reported,
        desired,
    }
}

async fn apply(core: &Store, prepared: Prepared) {
    let Prepared {
        batch,
        reported: reported_plan,
        desired: desired_plan,
    } = prepared;
    let started = std::time::Instant::now();
    let result = async {
        let mut tx = core.begin_write().await?;
        let r = write_reported(core, &mut tx, &batch.reported, reported_plan).await?;
        let d = write_desired(core, &mut tx, &batch.desired, desired_plan).await?;
        notes_bulk(core, &mut tx, &batch.notes).await?;
        let f = finish_bulk(core, &mut tx, &batch.finishes).await?;
        tx.commit().await?;
        Ok::<_, StoreError>((r, d, f))
    }
    .await;
    // Before anyone hears of these writes, reads of jobs see them.
    if !batch.notes.is_empty() || !batch.finishes.is_empty() || !batch.desired.is_empty() {
        core.job_cache.changed();
    }
    tracing::debug!(
        reported = batch.reported.len(),
        desired = batch.desired.len(),
        notes = batch.notes.len(),
        finished = batch.finishes.len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        ok = result.is_ok(),
        "group commit"
    );
    let Batch {
        reported,
        desired,
        notes,
        finishes,
    } = batch;
    match result {
        Ok((r, d, f)) => {
            for ((w, reply), outcome) in reported.into_iter().zip(r) {
                let result = match outcome {
                    Outcome::Done(result) => result,
                    Outcome::Again => core.patch_reported_direct(&w.device_id, &w.patch).await,
                };
                let _ = reply.send(result);
            }
            for ((w, reply), outcome) in desired.into_iter().zip(d) {
                let result = match outcome {
                    Outcome::Done(result) => result,
                    Outcome::Again => {
                        core.patch_desired_direct(&w.device_id, &w.change, w.job_id.as_deref())
                            .await
                    }
                };
                let _ = reply.send(result);
            }
            for (_, reply) in notes {
                let _ = reply.send(Ok(()));
            }
            for ((_, reply), finish) in finishes.into_iter().zip(f) {
                let _ = reply.send(Ok(finish));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a batch of writes failed; trying each on its own");
            for (w, reply) in reported {
                let _ = reply.send(core.patch_reported_direct(&w.device_id, &w.patch).await);
            }
            for (w, reply) in desired {
                let result = core
                    .patch_desired_direct(&w.device_id, &w.change, w.job_id.as_deref())
                    .await;
                let _ = reply.send(result);
            }
            for (w, reply) in notes {
                let result = core
                    .note_job_device_direct(&w.job_id, &w.device_id, w.desired_version, w.sent)
                    .await;
                let _ = reply.send(result);
            }
            for (w, reply) in finishes {
                let result = core
                    .finish_job_device_direct(
                        &w.job_id,
                        &w.device_id,
                        w.outcome,
                        w.reason.as_deref(),
                        w.detail.as_ref(),
                        w.threshold,
                    )
                    .await;
                let _ = reply.send(result);
            }
        }
    }
}

/// `(?, ?, ?), (?, ?, ?)`: `rows` rows of `columns` placeholders.
fn value_rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Distinct ids, in first-seen order.
fn distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}

/// The twins of these devices (each once); the desired document only when asked for (a
/// reported write needs only the reported one).
async fn read_twins(
    core: &Store,
    connection: &mut AnyConnection,
    ids: &[&str],
    with_desired: bool,
) -> Result<HashMap<String, Twin>> {
    let columns = if with_desired {
        "id, desired, desired_version, reported, reported_version"
    } else {
        "id, reported, reported_version"
    };
    let mut twins = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sql = core.sql(&format!(
            "SELECT {columns} FROM devices WHERE id IN ({})",
            marks(chunk.len())
        ));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *connection).await? {
            let parse = |column: &str| -> Result<Value> {
                serde_json::from_str(&row.try_get::<String, _>(column)?)
                    .map_err(crate::error::corrupt)
            };
            let (desired, desired_version) = if with_desired {
                (parse("desired")?, row.try_get("desired_version")?)
            } else {
                (Value::Null, 0)
            };
            twins.insert(
                row.try_get("id")?,
                Twin {
                    desired,
                    desired_version,
                    reported: parse("reported")?,
                    reported_version: row.try_get("reported_version")?,
                },
            );
        }
    }
    Ok(twins)
}

/// A twin write of either kind, as `plan_writes` and `write_planned` handle them.
trait TwinWrite {
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
fn plan_writes<'a, W: TwinWrite + 'a>(
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

/// Writes planned twin documents, each only if its version is still the one read; returns
/// the devices written.
async fn write_twins(
    core: &Store,
    tx: &mut WriteTx,
    devices: &[DevicePlan],
    reported: bool,
) -> Result<HashSet<String>> {
    let mut written = HashSet::new();
    for chunk in devices.chunks(CHUNK) {
        let sql = if reported {
            format!(
                "UPDATE devices SET reported = v.column2, reported_version = v.column3, \
                 reported_properties = v.column4 FROM (VALUES {}) AS v \
                 WHERE devices.id = v.column1 AND devices.reported_version = v.column5 \
                 RETURNING devices.id AS id",
                value_rows(chunk.len(), 5)
            )
        } else {
            format!(
                "UPDATE devices SET desired = v.column2, desired_version = v.column3 \
                 FROM (VALUES {}) AS v \
                 WHERE devices.id = v.column1 AND devices.desired_version = v.column4 \
                 RETURNING devices.id AS id",
                value_rows(chunk.len(), 4)
            )
        };
        let sql = core.sql(&sql);
        let mut query = sqlx::query(&sql);
        for device in chunk {
            query = query
                .bind(&device.id)
                .bind(device.document.to_string())
                .bind(device.version);
            if reported {
                query = query.bind(plain_values(&device.document).to_string());
            }
            query = query.bind(device.read_version);
        }
        for row in query.fetch_all(&mut **tx).await? {
            written.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(written)
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
    let mut written = write_twins(core, tx, &plan.devices, W::REPORTED).await?;
    let again: Vec<usize> = (0..writes.len())
        .filter(|&i| !written.contains(writes[i].0.device_id()))
        .collect();
    if !again.is_empty() {
        let ids = distinct(again.iter().map(|&i| writes[i].0.device_id()));
        let twins = read_twins(core, tx, &ids, !W::REPORTED).await?;
        let plan = plan_writes(twins, again.iter().map(|&i| &writes[i].0));
        written.extend(write_twins(core, tx, &plan.devices, W::REPORTED).await?);
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
            None => Outcome::Done(Err(StoreError::NotFound)),
            Some(answer) if written.contains(w.device_id()) => Outcome::Done(Ok(answer)),
            Some(_) => Outcome::Again,
        })
        .collect()
}

async fn write_reported(
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

async fn write_desired(
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
    for chunk in recorded.chunks(CHUNK) {
        let sql = core.sql(&format!(
            "UPDATE job_devices SET desired_version = v.column3 FROM (VALUES {}) AS v \
             WHERE job_devices.job_id = v.column1 AND job_devices.device_id = v.column2",
            value_rows(chunk.len(), 3)
        ));
        let mut query = sqlx::query(&sql);
        for (job, device, version) in chunk {
            query = query.bind(*job).bind(*device).bind(*version);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(outcomes(writes, answers, &written))
}

async fn notes_bulk(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[(NoteWrite, Reply<()>)],
) -> Result<()> {
    // Commands about to be sent, per job in one statement; anything else one by one.
    let mut sent: Vec<(&str, Vec<&str>)> = Vec::new();
    for (w, _) in writes {
        if w.sent && w.desired_version.is_none() {
            match sent.iter_mut().find(|(job, _)| *job == w.job_id) {
                Some((_, devices)) => devices.push(&w.device_id),
                None => sent.push((&w.job_id, vec![&w.device_id])),
            }
        } else {
            sqlx::query(&core.sql(
                "UPDATE job_devices SET desired_version = COALESCE(?, desired_version), \
                 sent = CASE WHEN ? THEN 1 ELSE sent END WHERE job_id = ? AND device_id = ?",
            ))
            .bind(w.desired_version)
            .bind(w.sent)
            .bind(&w.job_id)
            .bind(&w.device_id)
            .execute(&mut **tx)
            .await?;
        }
    }
    for (job, devices) in sent {
        for chunk in devices.chunks(CHUNK) {
            let sql = core.sql(&format!(
                "UPDATE job_devices SET sent = 1 WHERE job_id = ? AND device_id IN ({})",
                marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql).bind(job);
            for device in chunk {
                query = query.bind(*device);
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

async fn finish_bulk(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[(FinishWrite, Reply<Finish>)],
) -> Result<Vec<Finish>> {
    let mut results = vec![Finish::default(); writes.len()];
    // Per job, in the order the writes came.
    let mut jobs: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (w, _)) in writes.iter().enumerate() {
        match jobs.iter_mut().find(|(job, _)| *job == w.job_id) {
            Some((_, indexes)) => indexes.push(i),
            None => jobs.push((&w.job_id, vec![i])),
        }
    }
    let now = now_ms();
    for (job_id, indexes) in jobs {
        // End the devices that are still running; the statement says which those were.
        let mut counted = HashSet::new();
        for chunk in indexes.chunks(CHUNK) {
            let sql = core.sql(&format!(
                "UPDATE job_devices SET status = v.column2, reason = v.column3, detail = v.column4, \
                 reason_code = v.column5, finished_ms = ? FROM (VALUES {}) AS v \
                 WHERE job_devices.job_id = ? AND job_devices.device_id = v.column1 \
                 AND {} = {} RETURNING job_devices.device_id AS device_id",
                value_rows(chunk.len(), 5),
                core.not_indexed("job_devices.status"),
                device_source(DeviceEvent::Finish(DeviceOutcome::Completed)),
            ));
            let mut query = sqlx::query(&sql).bind(now);
            for &i in chunk {
                let w = &writes[i].0;
                query = query
                    .bind(&w.device_id)
                    .bind(DeviceStatus::target(DeviceEvent::Finish(w.outcome)).as_str())
                    .bind(w.reason.as_deref())
                    .bind(w.detail.as_ref().map(Value::to_string))
                    .bind(reason_code(w.outcome));
            }
            for row in query.bind(job_id).fetch_all(&mut **tx).await? {
                counted.insert(row.try_get::<String, _>("device_id")?);
            }
        }
        let counted: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&i| counted.contains(&writes[i].0.device_id))
            .collect();
        if counted.is_empty() {
            continue;
        }
        let failures: Vec<usize> = counted
            .iter()
            .copied()
            .filter(|&i| matches!(writes[i].0.outcome, DeviceOutcome::Failed(_)))
            .collect();
        // Updating the job's row locks it (PostgreSQL), so concurrent finishers of one job
        // count their failures one after another.
        sqlx::query(
            &core
                .sql("UPDATE jobs SET completed = completed + ?, failed = failed + ? WHERE id = ?"),
        )
        .bind((counted.len() - failures.len()) as i64)
        .bind(failures.len() as i64)
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
        for &i in &counted {
            results[i].counted = true;
        }
        // The threshold, checked after each failure in turn, as if they had come one by one.
        if let Some((threshold, _)) = failures.iter().find_map(|&i| writes[i].0.threshold) {
            check_threshold(core, tx, job_id, threshold, writes, &failures, &mut results).await?;
        }
    }
    Ok(results)
}

/// Walks this batch's counted failures in order, counting them on top of the failures before
/// the batch, and cancels the job at the first that reaches the threshold (with the count at
/// that failure in the reason, as when they came one by one).
async fn check_threshold(
    core: &Store,
    tx: &mut WriteTx,
    job_id: &str,
    threshold: Threshold,
    writes: &[(FinishWrite, Reply<Finish>)],
    failures: &[usize],
    results: &mut [Finish],
) -> Result<()> {
    let batch_of = |i: usize| writes[i].0.threshold.map(|(_, batch)| batch).unwrap_or(0);
    // (failed before this batch, size) per scope.
    let mut scopes: HashMap<Option<i64>, (i64, i64)> = HashMap::new();
    if threshold.per_batch {
        let mut batches: Vec<i64> = failures.iter().map(|&i| batch_of(i)).collect();
        batches.sort_unstable();
        batches.dedup();
        for batch in batches {
            let row = sqlx::query(&core.sql(&batch_failures_sql()))
                .bind(job_id)
                .bind(batch)
                .fetch_one(&mut **tx)
                .await?;
            let ours = failures.iter().filter(|&&i| batch_of(i) == batch).count() as i64;
            scopes.insert(
                Some(batch),
                (
                    row.try_get::<i64, _>("failed")? - ours,
                    row.try_get::<i64, _>("total")?,
                ),
            );
        }
    } else {
        let row = sqlx::query(&core.sql("SELECT failed, total FROM jobs WHERE id = ?"))
            .bind(job_id)
            .fetch_one(&mut **tx)
            .await?;
        scopes.insert(
            None,
            (
                row.try_get::<i64, _>("failed")? - failures.len() as i64,
                row.try_get::<i64, _>("total")?,
            ),
        );
    }
    for &i in failures {
        let key = threshold.per_batch.then(|| batch_of(i));
        let (failed, size) = {
            let scope = scopes.get_mut(&key).expect("every scope was read");
            scope.0 += 1;
            *scope
        };
        if let Some(why) = core
            .cancel_at_threshold(tx, job_id, &threshold, failed, size)
            .await?
        {
            results[i].cancelled = Some(why);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(value_rows(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(marks(3), "?, ?, ?");
        assert_eq!(distinct(["a", "b", "a"].into_iter()), ["a", "b"]);
    }

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
