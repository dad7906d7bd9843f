//! SQL for `jobs` and `job_devices`. Every device state change is conditional on the state it
//! leaves (`... WHERE status = 'running'`) and moves the job's counters in the same transaction,
//! so a device is counted once and ends in exactly one final state, across crashes and retries.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use flotilla_model::job::Threshold;

use crate::error::corrupt;
use crate::{Page, Result, Store, StoreError, inserted, into_page, now_ms};

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub sort_key: String,
    pub scheduled_job_id: Option<String>,
    /// The job's definition as the API shows it (displayName, group, batch, data, ...).
    pub definition: Value,
    pub status: String,
    /// Why a job failed as a whole (its group vanished, say).
    pub reason: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub batch_size: i64,
    pub rerun_of: Option<String>,
}

/// One device of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDevice {
    pub device_id: String,
    pub position: i64,
    pub batch: i64,
    pub status: String,
    pub reason: Option<String>,
    pub detail: Option<Value>,
    pub deadline_ms: Option<i64>,
    pub desired_version: Option<i64>,
    pub sent: bool,
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
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
        total: row.try_get("total")?,
        completed: row.try_get("completed")?,
        failed: row.try_get("failed")?,
        batch_size: row.try_get("batch_size")?,
        rerun_of: row.try_get("rerun_of")?,
    })
}

/// The columns of a job device, in the order `device_from_json` reads them.
const DEVICE_COLUMNS: &str =
    "device_id, position, batch, status, reason, detail, deadline_ms, desired_version, sent";

/// A job device from one element of a `job_device_list` array.
fn device_from_json(item: &Value) -> Result<JobDevice> {
    let bad = || corrupt("a job device row read back as JSON");
    let field = |i: usize| item.get(i).ok_or_else(bad);
    let text = |i: usize| -> Result<Option<String>> { Ok(field(i)?.as_str().map(str::to_string)) };
    Ok(JobDevice {
        device_id: text(0)?.ok_or_else(bad)?,
        position: field(1)?.as_i64().ok_or_else(bad)?,
        batch: field(2)?.as_i64().ok_or_else(bad)?,
        status: text(3)?.ok_or_else(bad)?,
        reason: text(4)?,
        detail: text(5)?
            .map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()?,
        deadline_ms: field(6)?.as_i64(),
        desired_version: field(7)?.as_i64(),
        sent: field(8)?.as_i64().ok_or_else(bad)? != 0,
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

/// The ends a device's operation can come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOutcome {
    Completed,
    Failed,
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
        .bind(&job.status)
        .bind(job.rerun_of.as_deref())
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        self.job_cache.changed();
        inserted(result, "job", &job.id)
    }

    /// A job (from `job_cache` when no job changed since it was last read).
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let entry = self.job_cache.job(id);
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
    pub async fn jobs_with_status(&self, statuses: &[&str]) -> Result<Vec<JobRecord>> {
        let marks = vec!["?"; statuses.len()].join(", ");
        let sql = self.sql(&format!(
            "SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY sort_key"
        ));
        let mut query = sqlx::query(&sql);
        for status in statuses {
            query = query.bind(*status);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Moves a job from one of `from` to `to`; `Ok(false)` if it was in none of them.
    pub async fn set_job_status(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
        ended: bool,
    ) -> Result<bool> {
        let marks = vec!["?"; from.len()].join(", ");
        let end = if ended { ", end_ms = ?" } else { "" };
        let sql = self.sql(&format!(
            "UPDATE jobs SET status = ?, reason = COALESCE(?, reason){end} WHERE id = ? AND status IN ({marks})"
        ));
        let mut query = sqlx::query(&sql).bind(to).bind(reason);
        if ended {
            query = query.bind(now_ms());
        }
        query = query.bind(id);
        for status in from {
            query = query.bind(*status);
        }
        let moved = query.execute(&*self.writing().await).await?.rows_affected() == 1;
        self.job_cache.changed();
        Ok(moved)
    }

    /// Starts a pending job: fixes its devices (in this order), numbers their batches, and
    /// marks it running; its first `running` devices start at once, with this deadline (as
    /// `start_job_devices` would start them). `Ok(false)` if it was no longer pending.
    pub async fn start_job(
        &self,
        id: &str,
        devices: &[String],
        batch_size: i64,
        running: usize,
        deadline_ms: i64,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let started = sqlx::query(&self.sql(
            "UPDATE jobs SET status = 'running', start_ms = ?, total = ?, batch_size = ? \
             WHERE id = ? AND status = 'pending'",
        ))
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
            let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT INTO job_devices (job_id, device_id, position, batch, status, started_ms, \
                 deadline_ms) VALUES {values}"
            ));
            let mut query = sqlx::query(&sql);
            for (i, device) in chunk.iter().enumerate() {
                let position = (chunk_index * 200 + i) as i64;
                let started = (position as usize) < running;
                query = query
                    .bind(id)
                    .bind(device)
                    .bind(position)
                    .bind(position / batch_size.max(1))
                    .bind(if started { "running" } else { "pending" })
                    .bind(started.then_some(now))
                    .bind(started.then_some(deadline_ms));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.job_cache.changed();
        Ok(true)
    }

    /// A statement for the job devices `select` picks (a `SELECT ... FROM job_devices ...`
    /// with its own conditions, order and limit), in position order, run by `job_device_list`.
    /// They come back as one row holding a JSON array: sqlx hands SQLite's rows over from the
    /// connection's thread one at a time, each a thread wake-up, which cost more than the rows
    /// themselves (a page of 100 devices was about 0.7 ms of CPU).
    fn job_device_list_sql(&self, select: &str) -> String {
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

    async fn job_device_list<'q>(
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
        let entry = self.job_cache.page(job_id, after, size);
        let page = entry
            .get_or_try_init(async || {
                let sql = self.job_device_list_sql(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND position > ? \
                     ORDER BY position LIMIT ?"
                ));
                let query = sqlx::query(&sql)
                    .bind(job_id)
                    .bind(after)
                    .bind(size as i64 + 1);
                let items = self.job_device_list(query).await?;
                Ok::<_, StoreError>(into_page(items, size))
            })
            .await?;
        Ok(page.clone())
    }

    /// A job's devices in one status, in order, at most `limit`.
    pub async fn job_devices_with_status(
        &self,
        job_id: &str,
        status: &str,
        limit: usize,
    ) -> Result<Vec<JobDevice>> {
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND status = ? \
             ORDER BY position LIMIT ?"
        ));
        let query = sqlx::query(&sql)
            .bind(job_id)
            .bind(status)
            .bind(limit as i64);
        self.job_device_list(query).await
    }

    /// The first batch that still has devices to finish, and its pending devices (in order, at
    /// most `limit`). `None` when every device has finished.
    pub async fn current_batch(
        &self,
        job_id: &str,
        limit: usize,
    ) -> Result<Option<(i64, Vec<JobDevice>)>> {
        let row = sqlx::query(&self.sql(
            "SELECT MIN(batch) AS batch FROM job_devices WHERE job_id = ? AND status IN ('pending', 'running')",
        ))
        .bind(job_id)
        .fetch_one(&self.pool)
        .await?;
        let Some(batch) = row.try_get::<Option<i64>, _>("batch")? else {
            return Ok(None);
        };
        let sql = self.job_device_list_sql(&format!(
            "SELECT {DEVICE_COLUMNS} FROM job_devices WHERE job_id = ? AND batch = ? \
             AND status = 'pending' ORDER BY position LIMIT ?"
        ));
        let query = sqlx::query(&sql)
            .bind(job_id)
            .bind(batch)
            .bind(limit as i64);
        let devices = self.job_device_list(query).await?;
        Ok(Some((batch, devices)))
    }

    /// Whether any job created before this one is still pending or running (when none is, no
    /// device of this job can be held back by another job).
    pub async fn earlier_active_job_exists(&self, sort_key: &str) -> Result<bool> {
        let row = sqlx::query(&self.sql(
            "SELECT 1 AS one FROM jobs j WHERE j.sort_key < ? AND (j.status IN ('pending', 'running') \
             OR EXISTS (SELECT 1 FROM job_devices d WHERE d.job_id = j.id AND d.status = 'running')) LIMIT 1",
        ))
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
        let row = sqlx::query(&self.sql(
            "SELECT 1 AS one FROM job_devices d JOIN jobs j ON j.id = d.job_id \
             WHERE d.device_id = ? AND j.sort_key < ? AND (d.status = 'running' \
             OR (d.status = 'pending' AND j.status IN ('pending', 'running'))) LIMIT 1",
        ))
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

    /// Marks these pending devices running, with one deadline, if the job is running, in one
    /// transaction; returns the ids it started (a device no longer pending is left alone).
    pub async fn start_job_devices(
        &self,
        job_id: &str,
        device_ids: &[&str],
        deadline_ms: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        // Touching the job's row locks it (PostgreSQL) against a concurrent stop or cancel, so
        // the check and the start are one step.
        let running = sqlx::query(
            &self.sql("UPDATE jobs SET status = status WHERE id = ? AND status = 'running'"),
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        if running.rows_affected() == 0 {
            return Ok(vec![]);
        }
        let now = now_ms();
        let mut started = Vec::with_capacity(device_ids.len());
        for chunk in device_ids.chunks(250) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "UPDATE job_devices SET status = 'running', started_ms = ?, deadline_ms = ? \
                 WHERE job_id = ? AND device_id IN ({marks}) AND {} = 'pending' \
                 RETURNING device_id",
                self.not_indexed("status"),
            ));
            let mut query = sqlx::query(&sql).bind(now).bind(deadline_ms).bind(job_id);
            for device in chunk {
                query = query.bind(*device);
            }
            for row in query.fetch_all(&mut *tx).await? {
                started.push(row.try_get::<String, _>("device_id")?);
            }
        }
        tx.commit().await?;
        self.job_cache.changed();
        Ok(started)
    }

    /// Records progress of a running device: the desired version its property write made, or
    /// that its command was sent (so a restart never sends it again).
    /// Group-committed with other writes (`batch`).
    pub async fn note_job_device(
        &self,
        job_id: &str,
        device_id: &str,
        desired_version: Option<i64>,
        sent: bool,
    ) -> Result<()> {
        self.queued(
            |reply| {
                crate::batch::Write::Note(
                    crate::batch::NoteWrite {
                        job_id: job_id.to_string(),
                        device_id: device_id.to_string(),
                        desired_version,
                        sent,
                    },
                    reply,
                )
            },
            async || {
                self.note_job_device_direct(job_id, device_id, desired_version, sent)
                    .await
            },
        )
        .await
    }

    pub(crate) async fn note_job_device_direct(
        &self,
        job_id: &str,
        device_id: &str,
        desired_version: Option<i64>,
        sent: bool,
    ) -> Result<()> {
        sqlx::query(&self.sql(
            "UPDATE job_devices SET desired_version = COALESCE(?, desired_version), \
             sent = CASE WHEN ? THEN 1 ELSE sent END WHERE job_id = ? AND device_id = ?",
        ))
        .bind(desired_version)
        .bind(sent)
        .bind(job_id)
        .bind(device_id)
        .execute(&*self.writing().await)
        .await?;
        self.job_cache.changed();
        Ok(())
    }

    /// Ends a running device's operation and counts it in the job, once; with a threshold
    /// (and the device's batch), cancels the job in the same transaction when its failures reach
    /// it, so no device can start between the failure and the cancel.
    /// Group-committed with other writes (`batch`).
    pub async fn finish_job_device(
        &self,
        job_id: &str,
        device_id: &str,
        outcome: DeviceOutcome,
        reason: Option<&str>,
        detail: Option<&Value>,
        threshold: Option<(Threshold, i64)>,
    ) -> Result<Finish> {
        self.queued(
            |reply| {
                crate::batch::Write::Finish(
                    crate::batch::FinishWrite {
                        job_id: job_id.to_string(),
                        device_id: device_id.to_string(),
                        outcome,
                        reason: reason.map(str::to_string),
                        detail: detail.cloned(),
                        threshold,
                    },
                    reply,
                )
            },
            async || {
                self.finish_job_device_direct(job_id, device_id, outcome, reason, detail, threshold)
                    .await
            },
        )
        .await
    }

    pub(crate) async fn finish_job_device_direct(
        &self,
        job_id: &str,
        device_id: &str,
        outcome: DeviceOutcome,
        reason: Option<&str>,
        detail: Option<&Value>,
        threshold: Option<(Threshold, i64)>,
    ) -> Result<Finish> {
        let (status, counter) = match outcome {
            DeviceOutcome::Completed => ("completed", "completed"),
            DeviceOutcome::Failed => ("failed", "failed"),
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE job_devices SET status = ?, reason = ?, detail = ?, finished_ms = ? \
             WHERE job_id = ? AND device_id = ? AND status = 'running'",
        ))
        .bind(status)
        .bind(reason)
        .bind(detail.map(Value::to_string))
        .bind(now_ms())
        .bind(job_id)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Finish::default());
        }
        // Updating the job's row first locks it (PostgreSQL), so concurrent finishers of one job
        // count their failures one after another.
        sqlx::query(&self.sql(&format!(
            "UPDATE jobs SET {counter} = {counter} + 1 WHERE id = ?"
        )))
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        let mut cancelled = None;
        if let (DeviceOutcome::Failed, Some((threshold, batch))) = (outcome, threshold) {
            let (failed, size) = if threshold.per_batch {
                let row = sqlx::query(&self.sql(
                    "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed \
                     FROM job_devices WHERE job_id = ? AND batch = ?",
                ))
                .bind(job_id)
                .bind(batch)
                .fetch_one(&mut *tx)
                .await?;
                (
                    row.try_get::<i64, _>("failed")?,
                    row.try_get::<i64, _>("total")?,
                )
            } else {
                let row = sqlx::query(&self.sql("SELECT failed, total FROM jobs WHERE id = ?"))
                    .bind(job_id)
                    .fetch_one(&mut *tx)
                    .await?;
                (
                    row.try_get::<i64, _>("failed")?,
                    row.try_get::<i64, _>("total")?,
                )
            };
            cancelled = self
                .cancel_at_threshold(&mut tx, job_id, &threshold, failed, size)
                .await?;
        }
        tx.commit().await?;
        self.job_cache.changed();
        Ok(Finish {
            counted: true,
            cancelled,
        })
    }

    /// Cancels the job, in the caller's transaction, when `failed` of `size` devices reach the
    /// threshold and it is still running or stopped; why, if this cancelled it.
    pub(crate) async fn cancel_at_threshold(
        &self,
        tx: &mut sqlx::AnyConnection,
        job_id: &str,
        threshold: &Threshold,
        failed: i64,
        size: i64,
    ) -> Result<Option<String>> {
        if !threshold.reached(failed.max(0) as u64, size.max(0) as u64) {
            return Ok(None);
        }
        let scope = if threshold.per_batch { "batch" } else { "job" };
        let why = format!(
            "cancelled: {failed} of the {scope}'s {size} devices failed, reaching the cancellation threshold"
        );
        let moved = sqlx::query(&self.sql(
            "UPDATE jobs SET status = 'cancelled', reason = ?, end_ms = ? \
             WHERE id = ? AND status IN ('running', 'stopped')",
        ))
        .bind(&why)
        .bind(now_ms())
        .bind(job_id)
        .execute(tx)
        .await?;
        Ok((moved.rows_affected() == 1).then_some(why))
    }

    /// The ids of a job's failed devices, in order (what a rerun targets).
    pub async fn failed_job_devices(&self, job_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(&self.sql(
            "SELECT device_id FROM job_devices WHERE job_id = ? AND status = 'failed' ORDER BY position",
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("device_id").map_err(StoreError::from))
            .collect()
    }

    /// The ids of devices matching a condition, in id order (a job's membership).
    pub async fn device_ids(
        &self,
        condition: &flotilla_filter::sql::SqlCondition,
        templates: &[String],
    ) -> Result<Vec<String>> {
        let in_templates = if templates.is_empty() {
            String::new()
        } else {
            format!(
                " AND template IN ({})",
                vec!["?"; templates.len()].join(", ")
            )
        };
        let sql = self.sql(&format!(
            "SELECT id FROM devices WHERE ({}){in_templates} ORDER BY id",
            condition.sql
        ));
        let mut query = sqlx::query(&sql);
        for param in &condition.params {
            query = match param {
                flotilla_filter::sql::SqlParam::Text(s) => query.bind(s.clone()),
                flotilla_filter::sql::SqlParam::Real(n) => query.bind(*n),
                flotilla_filter::sql::SqlParam::Bool(b) => query.bind(*b),
            };
        }
        for template in templates {
            query = query.bind(template.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }
}
