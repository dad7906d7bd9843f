//! SQL for `jobs` and `job_devices`. Every state change is conditional on the states it leaves,
//! which come from the transition tables in `flotilla_model::job_state` (`... WHERE status IN
//! (..)`); a device's change moves the job's counters in the same transaction, so a device is
//! counted once and ends in exactly one final state, across crashes and retries.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use flotilla_model::job::Threshold;
use flotilla_model::job_state::{
    DeviceEvent, DeviceOutcome, DeviceStatus, FailureReason, JobEvent, JobStatus,
};

use crate::cache::Changed;
use crate::error::corrupt;
use crate::group_commit::{FinishWrite, NoteWrite, Write, finish_bulk};
use crate::write_gate::WriteTx;
use crate::{
    Dialect, Entity, Page, ReplicaId, Result, Store, StoreError, inserted, into_page, now_ms,
};

/// How a server whose job devices are released left: why a command it sent fails (it may have
/// run, so it is never sent again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// It started again on its data dir (or its engine did, on this store): as one server sees
    /// it, a restart.
    Restarted,
    /// It stopped, or its lease ran out, and another server takes over.
    Stopped,
}

impl Departure {
    fn command_reason(self) -> &'static str {
        match self {
            Departure::Restarted => {
                "the server restarted after sending the command and before its answer; it was \
                 not sent again"
            }
            Departure::Stopped => {
                "the replica that sent the command stopped before its answer; it was not sent \
                 again"
            }
        }
    }
}

/// A condition on `job_devices` rows (bind: this replica's id): the device is not connected to
/// another live replica, whose engine works it there (locality: its pushes, acknowledgements
/// and answers stay in one process). Without cluster mode nothing is connected elsewhere.
const NOT_HELD_ELSEWHERE: &str = "NOT EXISTS (SELECT 1 FROM device_connections c \
     JOIN replicas r ON r.id = c.replica_id WHERE c.device_id = job_devices.device_id \
     AND c.replica_id <> ? AND r.state = 'alive')";

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub sort_key: String,
    pub scheduled_job_id: Option<String>,
    /// The job's definition as the API shows it (displayName, group, batch, data, ...).
    pub definition: Value,
    pub status: JobStatus,
    /// Why a job failed as a whole (its group vanished, say).
    pub reason: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    /// Devices the job's offline policy skipped (neither completed nor failed).
    pub skipped: i64,
    pub batch_size: i64,
    pub rerun_of: Option<String>,
}

/// One device of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDevice {
    pub device_id: String,
    pub position: i64,
    pub batch: i64,
    pub status: DeviceStatus,
    /// Why it failed: the human message, and its stable code.
    pub reason: Option<String>,
    pub reason_code: Option<FailureReason>,
    pub detail: Option<Value>,
    pub deadline_ms: Option<i64>,
    pub desired_version: Option<i64>,
    pub sent: bool,
    /// How many times its operation was started (0 before its first start).
    pub attempts: i64,
    /// When its operation last started, and when it finished.
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// A page of jobs, newest first: the keyset is the `sort_key`.
#[derive(Debug, Clone, Copy)]
pub struct JobPageRequest<'a> {
    pub before: Option<&'a str>,
    pub size: usize,
    pub scheduled_job_id: Option<&'a str>,
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord> {
    Ok(JobRecord {
        id: row.try_get("id")?,
        sort_key: row.try_get("sort_key")?,
        scheduled_job_id: row.try_get("scheduled_job_id")?,
        definition: serde_json::from_str(&row.try_get::<String, _>("definition")?)
            .map_err(corrupt)?,
        status: parse(&row.try_get::<String, _>("status")?)?,
        reason: row.try_get("reason")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
        total: row.try_get("total")?,
        completed: row.try_get("completed")?,
        failed: row.try_get("failed")?,
        skipped: row.try_get("skipped")?,
        batch_size: row.try_get("batch_size")?,
        rerun_of: row.try_get("rerun_of")?,
    })
}

/// A stored status (or reason code) as its enum; an unknown one is corrupt data.
fn parse<T: std::str::FromStr<Err = flotilla_model::job_state::UnknownStatus>>(
    text: &str,
) -> Result<T> {
    text.parse().map_err(corrupt)
}

/// Statuses as an SQL list of literals (`'pending', 'running'`): they are fixed words, and
/// literals keep each statement's plan as it was with the statuses written out.
fn status_list(statuses: impl IntoIterator<Item = &'static str>) -> String {
    statuses
        .into_iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The move `event` makes in the transition table: the statuses it leaves, as an SQL list, and
/// the one status it leads to. `None` for an event that moves no job (a rerun creates one).
fn job_move(event: &JobEvent) -> Option<(String, JobStatus)> {
    let sources = JobStatus::sources(event);
    let to = sources.first()?.next(event).ok()?;
    if sources.iter().any(|s| s.next(event) != Ok(to)) {
        return None;
    }
    let list = status_list(sources.into_iter().map(JobStatus::as_str));
    Some((list, to))
}

/// The statuses `event` moves a job device from, as an SQL list (one literal for `Start` and
/// `Finish`, which move a device from one status).
pub(crate) fn device_source(event: DeviceEvent) -> String {
    status_list(
        DeviceStatus::sources(event)
            .into_iter()
            .map(DeviceStatus::as_str),
    )
}

/// The active job statuses (`JobStatus::ACTIVE`), as an SQL list.
fn active_jobs() -> String {
    status_list(JobStatus::ACTIVE.iter().map(|s| s.as_str()))
}

/// The columns of a job device, in the order `device_from_json` reads them.
pub(crate) const DEVICE_COLUMNS: &str = "device_id, position, batch, status, reason, detail, deadline_ms, \
     desired_version, sent, reason_code, attempts, started_ms, finished_ms";

/// A job device from one element of a `job_device_list` array.
fn device_from_json(item: &Value) -> Result<JobDevice> {
    let bad = || corrupt("a job device row read back as JSON");
    let field = |i: usize| item.get(i).ok_or_else(bad);
    let text = |i: usize| -> Result<Option<String>> { Ok(field(i)?.as_str().map(str::to_string)) };
    Ok(JobDevice {
        device_id: text(0)?.ok_or_else(bad)?,
        position: field(1)?.as_i64().ok_or_else(bad)?,
        batch: field(2)?.as_i64().ok_or_else(bad)?,
        status: parse(&text(3)?.ok_or_else(bad)?)?,
        reason: text(4)?,
        reason_code: text(9)?.as_deref().map(parse).transpose()?,
        detail: text(5)?
            .map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()?,
        deadline_ms: field(6)?.as_i64(),
        desired_version: field(7)?.as_i64(),
        sent: field(8)?.as_i64().ok_or_else(bad)? != 0,
        attempts: field(10)?.as_i64().ok_or_else(bad)?,
        started_ms: field(11)?.as_i64(),
        finished_ms: field(12)?.as_i64(),
    })
}

/// What finishing a device did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finish {
    /// The device was running and is now counted (false: it had already finished).
    pub counted: bool,
    /// The job was cancelled by this failure, and why.
    pub cancelled: Option<String>,
}

/// The stored code of a device's outcome (a completed device has none).
pub(crate) fn reason_code(outcome: DeviceOutcome) -> Option<&'static str> {
    match outcome {
        DeviceOutcome::Completed | DeviceOutcome::Skipped => None,
        DeviceOutcome::Failed(reason) => Some(reason.as_str()),
    }
}

/// Counts a batch's devices and its failed ones (binds: job id, batch).
pub(crate) fn batch_failures_sql() -> String {
    format!(
        "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN status = '{}' THEN 1 ELSE 0 END), 0) \
         AS failed FROM job_devices WHERE job_id = ? AND status IN ({}) AND batch = ?",
        DeviceStatus::Failed,
        statuses_except(&[]),
    )
}

/// The device statuses but `except`, as an SQL list. A job's devices are indexed by job,
/// status, batch and position (one index serves both a status's devices and a batch's): a
/// condition on a batch names the statuses too, so the index is walked one status at a time
/// (a handful of short ranges) rather than over the whole job.
pub(crate) fn statuses_except(except: &[DeviceStatus]) -> String {
    status_list(
        DeviceStatus::ALL
            .iter()
            .filter(|s| !except.contains(s))
            .map(|s| s.as_str()),
    )
}

impl Store {
    /// Stores a new job (status pending). `Conflict` when the id is taken.
    pub async fn insert_job(&self, job: &JobRecord) -> Result<()> {
        let result = sqlx::query(&self.sql(
            "INSERT INTO jobs (id, sort_key, scheduled_job_id, definition, status, rerun_of, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&job.id)
        .bind(&job.sort_key)
        .bind(job.scheduled_job_id.as_deref())
        .bind(job.definition.to_string())
        .bind(job.status.as_str())
        .bind(job.rerun_of.as_deref())
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        self.caches.changed(Changed::Jobs);
        inserted(result, Entity::Job, &job.id)
    }

    /// A job (from `job_cache` when no job changed since it was last read).
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let entry = self.caches.jobs.job(id);
        let job = entry
            .get_or_try_init(|| self.row_by_id("jobs", "*", id, job_from_row))
            .await?;
        Ok(job.clone())
    }

    /// A page of jobs, newest first (optionally only one scheduled job's runs).
    pub async fn list_jobs(&self, page: JobPageRequest<'_>) -> Result<Page<JobRecord>> {
        let by_schedule = if page.scheduled_job_id.is_some() {
            " AND scheduled_job_id = ?"
        } else {
            ""
        };
        let sql = self.sql(&format!(
            "SELECT * FROM jobs WHERE sort_key < ?{by_schedule} ORDER BY sort_key DESC LIMIT ?"
        ));
        let mut query = sqlx::query(&sql).bind(page.before.unwrap_or("\u{10FFFF}"));
        if let Some(schedule) = page.scheduled_job_id {
            query = query.bind(schedule);
        }
        let rows = query
            .bind(page.size as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.size))
    }

    /// Jobs in any of these statuses, oldest first (the engine's work list).
    pub async fn jobs_with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRecord>> {
        let marks = vec!["?"; statuses.len()].join(", ");
        let sql = self.sql(&format!(
            "SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY sort_key"
        ));
        let mut query = sqlx::query(&sql);
        for status in statuses {
            query = query.bind(status.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Applies `event` to a job, if the transition table allows it in the job's status now;
    /// `Ok(false)` if not. A final status sets the end time; the event's reason (if any)
    /// replaces the job's. A job that fails takes its unfinished devices with it.
    pub async fn transition(&self, id: &str, event: &JobEvent) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = self.transition_with(&mut tx, id, event).await?;
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(moved)
    }

    /// `transition` in the caller's transaction.
    pub(crate) async fn transition_with(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        event: &JobEvent,
    ) -> Result<bool> {
        let Some((sources, to)) = job_move(event) else {
            return Ok(false);
        };
        let end = if to.is_final() { ", end_ms = ?" } else { "" };
        // A resumed job no longer shows why it stopped (a batch gate); other events keep the
        // reason unless they give one.
        let reason = if matches!(event, JobEvent::Resume { .. }) {
            "?"
        } else {
            "COALESCE(?, reason)"
        };
        let sql = self.sql(&format!(
            "UPDATE jobs SET status = ?, reason = {reason}{end} \
             WHERE id = ? AND status IN ({sources})"
        ));
        let mut query = sqlx::query(&sql).bind(to.as_str()).bind(event.reason());
        if to.is_final() {
            query = query.bind(now_ms());
        }
        let moved = query.bind(id).execute(&mut *tx).await?.rows_affected() == 1;
        if moved && to == JobStatus::Failed {
            self.fail_unfinished_devices(tx, id, event).await?;
        }
        Ok(moved)
    }

    /// Fails a failed job's pending and running devices, and counts them in its failures: none
    /// stays `running` for good, and each says why it failed. A device task still running ends
    /// uncounted (its finish only moves a running device).
    async fn fail_unfinished_devices(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        event: &JobEvent,
    ) -> Result<()> {
        let job_reason = event.reason();
        let reason = format!(
            "the job failed before this device finished: {}",
            job_reason.as_deref().unwrap_or("no reason given")
        );
        // Their finish sequence numbers in the job's order, after every finish before (the
        // job's row is locked by the transition).
        let total = sqlx::query(&self.sql("SELECT total FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("total")?;
        let first_seq =
            crate::job_events::take_finish_seqs(self, &mut *tx, id, total.max(0) as usize).await?;
        let failed = sqlx::query(&self.sql(&format!(
            "UPDATE job_devices SET status = ?, reason = ?, reason_code = ?, finished_ms = ?, \
             finish_seq = ? + position WHERE job_id = ? AND status IN ({})",
            device_source(DeviceEvent::JobFailed)
        )))
        .bind(DeviceStatus::target(DeviceEvent::JobFailed).as_str())
        .bind(reason)
        .bind(event.device_failure().as_str())
        .bind(now_ms())
        .bind(first_seq.unwrap_or(0))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if failed > 0 {
            sqlx::query(&self.sql("UPDATE jobs SET failed = failed + ? WHERE id = ?"))
                .bind(failed as i64)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Starts a pending job: fixes its devices (in this order), numbers their batches, and
    /// marks it running; the devices at the `eager` positions (ascending) start at once, with
    /// this deadline, owned by this replica (as `start_job_devices` would start them).
    /// `Ok(false)` if it was no longer pending.
    pub async fn start_job(
        &self,
        id: &str,
        devices: &[String],
        batch_size: i64,
        eager: &[usize],
        deadline_ms: i64,
    ) -> Result<bool> {
        let mut eager = eager.iter().copied().peekable();
        let now = now_ms();
        let (sources, to) = job_move(&JobEvent::Start).expect("the table starts pending jobs");
        let mut tx = self.begin_write().await?;
        let started = sqlx::query(&self.sql(&format!(
            "UPDATE jobs SET status = ?, start_ms = ?, total = ?, batch_size = ? \
             WHERE id = ? AND status IN ({sources})"
        )))
        .bind(to.as_str())
        .bind(now)
        .bind(devices.len() as i64)
        .bind(batch_size)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if started.rows_affected() == 0 {
            return Ok(false);
        }
        // Many rows per statement: a 100,000-device job is a few hundred statements.
        for (chunk_index, chunk) in devices.chunks(200).enumerate() {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT INTO job_devices (job_id, device_id, position, batch, status, started_ms, \
                 deadline_ms, owner, attempts) VALUES {values}"
            ));
            let mut query = sqlx::query(&sql);
            for (i, device) in chunk.iter().enumerate() {
                let position = (chunk_index * 200 + i) as i64;
                let started = eager.next_if_eq(&(position as usize)).is_some();
                query = query
                    .bind(id)
                    .bind(device)
                    .bind(position)
                    .bind(position / batch_size.max(1))
                    .bind(if started {
                        DeviceStatus::Running.as_str()
                    } else {
                        DeviceStatus::Pending.as_str()
                    })
                    .bind(started.then_some(now))
                    .bind(started.then_some(deadline_ms))
                    .bind(started.then_some(self.replica.as_str()))
                    .bind(i64::from(started));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(true)
    }

    /// Which of these devices are connected to another live replica (which works them there).
    /// Without cluster mode none is.
    pub async fn devices_held_elsewhere(&self, device_ids: &[String]) -> Result<HashSet<String>> {
        let mut held = HashSet::new();
        if self.dialect == crate::Dialect::Sqlite {
            return Ok(held);
        }
        for chunk in device_ids.chunks(crate::bulk::CHUNK) {
            let sql = self.sql(&format!(
                "SELECT c.device_id AS device_id FROM device_connections c \
                 JOIN replicas r ON r.id = c.replica_id WHERE c.device_id IN ({}) \
                 AND c.replica_id <> ? AND r.state = 'alive'",
                crate::bulk::marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query
                .bind(self.replica.as_str())
                .fetch_all(&self.pool)
                .await?
            {
                held.insert(row.try_get("device_id")?);
            }
        }
        Ok(held)
    }

    /// A statement for the job devices `select` picks (a `SELECT ... FROM job_devices ...`
    /// with its own conditions, order and limit), in position order, run by `job_device_list`.
    /// They come back as one row holding a JSON array: sqlx hands SQLite's rows over from the
    /// connection's thread one at a time, each a thread wake-up, which cost more than the rows
    /// themselves (a page of 100 devices was about 0.7 ms of CPU).
    pub(crate) fn job_device_list_sql(&self, select: &str) -> String {
        self.sql(&match self.dialect {
            crate::Dialect::Sqlite => format!(
                "SELECT json_group_array(json_array({DEVICE_COLUMNS}) ORDER BY position) AS list \
                 FROM ({select}) AS picked"
            ),
            crate::Dialect::Postgres => format!(
                "SELECT COALESCE(json_agg(json_build_array({DEVICE_COLUMNS}) ORDER BY position), \
                 '[]'::json)::text AS list FROM ({select}) AS picked"
            ),
        })
    }

    pub(crate) async fn job_device_list<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<JobDevice>> {
        let row = query.fetch_one(&self.pool).await?;
        let list: Value =
            serde_json::from_str(&row.try_get::<String, _>("list")?).map_err(corrupt)?;
        list.as_array()
            .ok_or_else(|| corrupt("a job device list is not an array"))?
            .iter()
            .map(device_from_json)
            .collect()
    }

    /// A page of a job's devices, in the job's order (keyset on the position).
    pub async fn job_devices(
        &self,
        job_id: &str,
        after_position: Option<i64>,
        size: usize,
    ) -> Result<Page<JobDevice>> {
        let after = after_position.unwrap_or(-1);
        let entry = self.caches.jobs.page(job_id, after, size);
        let page = entry
            .get_or_try_init(async || self.job_devices_uncached(job_id, Some(after), size).await)
            .await?;
        Ok(page.clone())
    }

    /// `job_devices`, read from the database past the cache (an export reads every page once:
    /// keeping them would hold the whole job in memory).
    pub async fn job_devices_uncached(
        &self,
        job_id: &str,
        after_position: Option<i64>,
        size: usize,
    ) -> Result<Page<JobDevice>> {
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND position > ? \
             ORDER BY position LIMIT ?"
        ));
        let query = sqlx::query(&sql)
            .bind(job_id)
            .bind(after_position.unwrap_or(-1))
            .bind(size as i64 + 1);
        let items = self.job_device_list(query).await?;
        Ok(into_page(items, size))
    }

    /// A job's devices in one status, in order, at most `limit`.
    pub async fn job_devices_with_status(
        &self,
        job_id: &str,
        status: DeviceStatus,
        limit: usize,
    ) -> Result<Vec<JobDevice>> {
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND status = ? \
             ORDER BY position LIMIT ?"
        ));
        let query = sqlx::query(&sql)
            .bind(job_id)
            .bind(status.as_str())
            .bind(limit as i64);
        self.job_device_list(query).await
    }

    /// The first batch that still has devices to finish, and its pending devices (in order, at
    /// most `limit`) that are not connected to another live replica (that one starts those).
    /// `None` when every device has finished.
    pub async fn current_batch(
        &self,
        job_id: &str,
        limit: usize,
    ) -> Result<Option<(i64, Vec<JobDevice>)>> {
        // The lowest batch of each unfinished status on its own: each is the first entry of
        // one range of the (job, status, batch) index, where one MIN over both statuses would
        // read every unfinished device.
        let row = sqlx::query(&self.sql(&format!(
            "SELECT MIN(batch) AS batch FROM (\
             SELECT MIN(batch) AS batch FROM job_devices WHERE job_id = ? AND status = '{pending}' \
             UNION ALL \
             SELECT MIN(batch) AS batch FROM job_devices WHERE job_id = ? AND status = '{running}') \
             AS lowest",
            pending = DeviceStatus::Pending,
            running = DeviceStatus::Running,
        )))
        .bind(job_id)
        .bind(job_id)
        .fetch_one(&self.pool)
        .await?;
        let Some(batch) = row.try_get::<Option<i64>, _>("batch")? else {
            return Ok(None);
        };
        // A device waiting for its retry's backoff is not due yet (its batch waits for it).
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND batch = ? \
             AND status = {} AND (retry_at_ms IS NULL OR retry_at_ms <= ?) \
             AND {NOT_HELD_ELSEWHERE} ORDER BY position LIMIT ?",
            device_source(DeviceEvent::Start)
        ));
        let query = sqlx::query(&sql)
            .bind(job_id)
            .bind(batch)
            .bind(now_ms())
            .bind(self.replica.as_str())
            .bind(limit as i64);
        let devices = self.job_device_list(query).await?;
        Ok(Some((batch, devices)))
    }

    /// Whether any job created before this one is still pending or running (when none is, no
    /// device of this job can be held back by another job).
    pub async fn earlier_active_job_exists(&self, sort_key: &str) -> Result<bool> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT 1 AS one FROM jobs j WHERE j.sort_key < ? AND (j.status IN ({}) \
             OR EXISTS (SELECT 1 FROM job_devices d WHERE d.job_id = j.id AND d.status = '{}')) LIMIT 1",
            active_jobs(),
            DeviceStatus::Running,
        )))
        .bind(sort_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whether an earlier job still has this device to do: a device gets the operations of the
    /// jobs that target it in the order the jobs were created. An earlier job holds the device
    /// while its operation on it runs (whatever that job's status), or while it is pending in a
    /// job that is pending or running (a stopped job does not hold later ones back).
    pub async fn earlier_job_holds_device(&self, sort_key: &str, device_id: &str) -> Result<bool> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT 1 AS one FROM job_devices d JOIN jobs j ON j.id = d.job_id \
             WHERE d.device_id = ? AND j.sort_key < ? AND (d.status = '{}' \
             OR (d.status = '{}' AND j.status IN ({}))) LIMIT 1",
            DeviceStatus::Running,
            DeviceStatus::Pending,
            active_jobs(),
        )))
        .bind(device_id)
        .bind(sort_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Marks a pending device running, with its deadline, if its job is running (a stopped or
    /// cancelled job starts no device, whatever the engine read before). `Ok(false)` if not.
    pub async fn start_job_device(
        &self,
        job_id: &str,
        device_id: &str,
        deadline_ms: i64,
    ) -> Result<bool> {
        let started = self
            .start_job_devices(job_id, &[device_id], deadline_ms)
            .await?;
        Ok(!started.is_empty())
    }

    /// Marks these pending devices running, with one deadline and this replica as their owner,
    /// if the job is running, in one transaction; returns the ids it started (a device no longer
    /// pending, or connected to another live replica, is left alone). Several replicas starting
    /// devices of one job take turns on the job's row.
    pub async fn start_job_devices(
        &self,
        job_id: &str,
        device_ids: &[&str],
        deadline_ms: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        self.look_up_by_key(&mut tx).await?;
        // Touching the job's row locks it (PostgreSQL) against a concurrent stop or cancel, so
        // the check and the start are one step.
        let running = sqlx::query(&self.sql(&format!(
            "UPDATE jobs SET status = status WHERE id = ? AND status = '{}'",
            JobStatus::Running
        )))
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        if running.rows_affected() == 0 {
            return Ok(vec![]);
        }
        let now = now_ms();
        let mut started = Vec::with_capacity(device_ids.len());
        // In key order: two replicas' statements lock rows in the same order.
        let mut device_ids = device_ids.to_vec();
        device_ids.sort_unstable();
        let [source] = DeviceStatus::sources(DeviceEvent::Start)[..] else {
            unreachable!("a device starts from one status");
        };
        let target = DeviceStatus::target(DeviceEvent::Start);
        let set = format!(
            "UPDATE job_devices SET status = '{target}', started_ms = ?, deadline_ms = ?, \
             owner = ?, attempts = attempts + 1"
        );
        for chunk in device_ids.chunks(250) {
            // PostgreSQL: the job and status in each row of values, as the group commit's
            // statements have them (see `group_commit::job_progress`): with `job_id = ?` it
            // walked the job's pending devices by an index once per statement (a 100,000-device
            // job spent most of its time here). SQLite: constants, the status off the indexes.
            let status = self.not_indexed("job_devices.status");
            let sql = match self.dialect {
                Dialect::Postgres => self.sql(&format!(
                    "{set} FROM (VALUES {}) AS v WHERE job_devices.job_id = v.column1 \
                     AND job_devices.device_id = v.column2 AND {status} = v.column3 \
                     AND {NOT_HELD_ELSEWHERE} RETURNING job_devices.device_id AS device_id",
                    crate::bulk::value_rows(chunk.len(), 3),
                )),
                Dialect::Sqlite => format!(
                    "{set} WHERE job_id = ? AND device_id IN ({}) AND {status} = '{source}' \
                     AND {NOT_HELD_ELSEWHERE} RETURNING device_id",
                    crate::bulk::marks(chunk.len()),
                ),
            };
            let mut query = sqlx::query(&sql)
                .bind(now)
                .bind(deadline_ms)
                .bind(self.replica.as_str());
            match self.dialect {
                Dialect::Postgres => {
                    for device in chunk {
                        query = query.bind(job_id).bind(*device).bind(source.as_str());
                    }
                }
                Dialect::Sqlite => {
                    query = query.bind(job_id);
                    for device in chunk {
                        query = query.bind(*device);
                    }
                }
            }
            query = query.bind(self.replica.as_str());
            for row in query.fetch_all(&mut *tx).await? {
                started.push(row.try_get::<String, _>("device_id")?);
            }
        }
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(started)
    }

    /// Records progress of a running device this replica owns: the desired version its property
    /// write made, or that its command is about to be sent (so no restart or other replica
    /// sends it again). `Ok(false)` when the device is no longer this replica's, or (for `sent`)
    /// its command was noted as sent already: the command must not go out.
    /// Group-committed with other writes (`group_commit`).
    pub async fn note_job_device(
        &self,
        job_id: &str,
        device_id: &str,
        desired_version: Option<i64>,
        sent: bool,
    ) -> Result<bool> {
        let write = NoteWrite {
            job_id: job_id.to_string(),
            device_id: device_id.to_string(),
            desired_version,
            sent,
        };
        self.group_commit(|reply| Write::Note(write, reply)).await
    }

    /// Ends a running device's operation (if this replica still owns it) and counts it in the
    /// job, once; with a threshold
    /// (and the device's batch), cancels the job in the same transaction when its failures reach
    /// it, so no device can start between the failure and the cancel.
    /// Group-committed with other writes (`group_commit`).
    pub async fn finish_job_device(
        &self,
        job_id: &str,
        device_id: &str,
        outcome: DeviceOutcome,
        reason: Option<&str>,
        detail: Option<&Value>,
        threshold: Option<(Threshold, i64)>,
    ) -> Result<Finish> {
        let write = FinishWrite {
            job_id: job_id.to_string(),
            device_id: device_id.to_string(),
            outcome,
            reason: reason.map(str::to_string),
            detail: detail.cloned(),
            threshold,
        };
        self.group_commit(|reply| Write::Finish(write, reply)).await
    }

    /// Sends a running device this replica owns back to `pending` for another try (the job's
    /// retry policy), not before `retry_at_ms`, keeping its failure's reason and code; it is not
    /// counted in the job. Only a device whose command was never sent goes back (one that was
    /// sent may have run: it must not be sent again). `Ok(false)` when the device was not
    /// sent back (no longer ours, or its command went out): the caller finishes it instead.
    pub async fn retry_job_device(
        &self,
        job_id: &str,
        device_id: &str,
        reason: FailureReason,
        message: &str,
        detail: Option<&Value>,
        retry_at_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let sent_back = sqlx::query(&self.sql(&format!(
            "UPDATE job_devices SET status = '{}', reason = ?, reason_code = ?, detail = ?, \
             retry_at_ms = ?, owner = NULL, desired_version = NULL, deadline_ms = NULL \
             WHERE job_id = ? AND device_id = ? AND status IN ({}) AND owner = ? AND sent = 0",
            DeviceStatus::target(DeviceEvent::Retry),
            device_source(DeviceEvent::Retry),
        )))
        .bind(message)
        .bind(reason.as_str())
        .bind(detail.map(Value::to_string))
        .bind(retry_at_ms)
        .bind(job_id)
        .bind(device_id)
        .bind(self.replica.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(sent_back)
    }

    /// Cancels the job, in the caller's transaction, when `failed` of `size` devices reach the
    /// threshold (the model decides) and the table allows it; why, if this cancelled it.
    pub(crate) async fn cancel_at_threshold(
        &self,
        tx: &mut sqlx::AnyConnection,
        job_id: &str,
        threshold: &Threshold,
        failed: i64,
        size: i64,
    ) -> Result<Option<String>> {
        let Some(cancellation) = threshold.cancellation(failed, size) else {
            return Ok(None);
        };
        let event = JobEvent::ThresholdReached(cancellation);
        let moved = self.transition_with(tx, job_id, &event).await?;
        Ok(moved.then(|| cancellation.reason()))
    }

    /// Takes over running devices of this job that no replica owns (their replica died, or this
    /// one restarted), at most `limit`, in order, leaving those connected to another live
    /// replica to it; returns them as stored (a property device keeps the desired version its
    /// write made, a command device whether it was sent).
    pub async fn claim_orphaned_job_devices(
        &self,
        job_id: &str,
        limit: usize,
    ) -> Result<Vec<JobDevice>> {
        // Replicas claiming at once skip each other's rows instead of waiting on them.
        let skip_locked = match self.dialect {
            crate::Dialect::Sqlite => "",
            crate::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let running = DeviceStatus::Running;
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&self.sql(&format!(
            "UPDATE job_devices SET owner = ? WHERE job_id = ? AND status = '{running}' \
             AND owner IS NULL AND device_id IN (SELECT device_id FROM job_devices \
             WHERE job_id = ? AND status = '{running}' AND owner IS NULL AND {NOT_HELD_ELSEWHERE} \
             ORDER BY position LIMIT ?{skip_locked}) RETURNING device_id"
        )))
        .bind(self.replica.as_str())
        .bind(job_id)
        .bind(job_id)
        .bind(self.replica.as_str())
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        self.caches.changed(Changed::Jobs);
        let ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>("device_id"))
            .collect::<Result<Vec<_>, _>>()?;
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND owner = ? \
             AND status = '{running}' AND device_id IN ({})",
            crate::bulk::marks(ids.len())
        ));
        let mut query = sqlx::query(&sql).bind(job_id).bind(self.replica.as_str());
        for id in &ids {
            query = query.bind(id);
        }
        self.job_device_list(query).await
    }

    /// Ownership follows the device: when a device connects to this replica, its running job
    /// devices another replica works (and has sent no command for) lose their owner, and this
    /// replica's engine claims them (they are connected here, so the claim is local); the
    /// other's task stops at its next write. A command already sent stays with its sender,
    /// which waits for its answer. One transaction for a batch of connects. Returns how many
    /// were released.
    pub async fn adopt_job_devices(&self, device_ids: &[&str]) -> Result<u64> {
        let mut released = 0;
        let mut tx = self.begin_write().await?;
        // In key order: rows are locked in the same order by every replica.
        let mut device_ids = device_ids.to_vec();
        device_ids.sort_unstable();
        for chunk in device_ids.chunks(crate::bulk::CHUNK) {
            let sql = self.sql(&format!(
                "UPDATE job_devices SET owner = NULL WHERE device_id IN ({}) AND status = '{}' \
                 AND owner IS NOT NULL AND owner <> ? AND sent = 0",
                crate::bulk::marks(chunk.len()),
                DeviceStatus::Running
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            released += query
                .bind(self.replica.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        if released > 0 {
            self.caches.changed(Changed::Jobs);
        }
        Ok(released)
    }

    /// The jobs with running devices that no replica owns, in any status (a stopped job's
    /// devices in flight finish too).
    pub async fn jobs_with_orphaned_devices(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT job_id FROM job_devices WHERE status = '{}' AND owner IS NULL \
             ORDER BY job_id",
            DeviceStatus::Running
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("job_id").map_err(StoreError::from))
            .collect()
    }

    /// Releases the job devices this replica's engine held: an engine starting on this store
    /// (after another on it stopped) has no task for them. As for a dead replica (see
    /// `release_job_devices`).
    pub async fn release_own_job_devices(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.release_job_devices(&mut tx, &self.replica.clone(), Departure::Restarted)
            .await?;
        tx.commit().await?;
        self.caches.changed(Changed::Jobs);
        Ok(())
    }

    /// Releases a stopped replica's running job devices, in the caller's transaction: a command
    /// it sent fails (it may have run; it is never sent again), counted in its job against the
    /// job's threshold; every other device loses its owner and is claimed again by a live
    /// replica (a property device keeps its recorded desired version and is not pushed again).
    pub(crate) async fn release_job_devices(
        &self,
        tx: &mut WriteTx,
        replica: &ReplicaId,
        departure: Departure,
    ) -> Result<()> {
        let sent = sqlx::query(&self.sql(&format!(
            "SELECT d.job_id AS job_id, d.device_id AS device_id, d.batch AS batch, \
             j.definition AS definition FROM job_devices d JOIN jobs j ON j.id = d.job_id \
             WHERE d.owner = ? AND d.status = '{}' AND d.sent = 1 ORDER BY d.job_id, d.device_id",
            DeviceStatus::Running
        )))
        .bind(replica.as_str())
        .fetch_all(&mut **tx)
        .await?;
        let mut thresholds: std::collections::HashMap<String, Option<Threshold>> =
            Default::default();
        let mut failures = Vec::with_capacity(sent.len());
        for row in sent {
            let job_id: String = row.try_get("job_id")?;
            let threshold = match thresholds.get(&job_id) {
                Some(threshold) => *threshold,
                None => {
                    let definition: Value =
                        serde_json::from_str(&row.try_get::<String, _>("definition")?)
                            .map_err(corrupt)?;
                    let threshold = flotilla_model::job::threshold_of(&definition);
                    thresholds.insert(job_id.clone(), threshold);
                    threshold
                }
            };
            let batch: i64 = row.try_get("batch")?;
            failures.push(FinishWrite {
                job_id,
                device_id: row.try_get("device_id")?,
                outcome: DeviceOutcome::Failed(FailureReason::Interrupted),
                reason: Some(departure.command_reason().to_string()),
                detail: None,
                threshold: threshold.map(|t| (t, batch)),
            });
        }
        let failures: Vec<&FinishWrite> = failures.iter().collect();
        for finish in finish_bulk(self, tx, &failures, replica).await? {
            if let Some(reason) = finish.cancelled {
                tracing::info!(%reason, "job cancelled");
            }
        }
        sqlx::query(&self.sql(&format!(
            "UPDATE job_devices SET owner = NULL WHERE owner = ? AND status = '{}'",
            DeviceStatus::Running
        )))
        .bind(replica.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The ids of a job's failed devices, in order (what a rerun targets).
    pub async fn failed_job_devices(&self, job_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT device_id FROM job_devices WHERE job_id = ? AND status = '{}' ORDER BY position",
            DeviceStatus::Failed
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("device_id").map_err(StoreError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migrations' CHECK lists name every status and reason code the model knows.
    #[test]
    fn the_database_checks_list_every_status_the_model_knows() {
        // Device statuses are listed again, with `skipped`, by 0013.
        let migrations = [
            concat!(
                include_str!("../migrations/sqlite/0007_job_status_checks.sql"),
                include_str!("../migrations/sqlite/0013_job_device_skipped.sql")
            ),
            concat!(
                include_str!("../migrations/postgres/0007_job_status_checks.sql"),
                include_str!("../migrations/postgres/0013_job_device_skipped.sql")
            ),
        ];
        // Reason codes added since are listed again in full by the migration adding them.
        let reason_codes = [
            include_str!("../migrations/sqlite/0014_rollout_pace.sql"),
            include_str!("../migrations/postgres/0014_rollout_pace.sql"),
        ];
        for code in FailureReason::ALL {
            for migration in reason_codes {
                assert!(migration.contains(&format!("'{code}'")), "{code}");
            }
        }
        let words = JobStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(DeviceStatus::ALL.iter().map(|s| s.as_str()));
        for word in words {
            for migration in migrations {
                assert!(migration.contains(&format!("'{word}'")), "{word}");
            }
        }
    }
}
