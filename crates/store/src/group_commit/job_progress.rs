//! The group-committed writes to `job_devices` (and the counters in `jobs` they move): progress
//! notes, outcomes with the cancellation threshold, and the desired versions a job's twin
//! writes made.
//!
//! Each bulk statement joins its few hundred rows of values against `job_devices`; the plan
//! wanted is one primary-key lookup per value. The planners need its other conditions written
//! differently:
//! - PostgreSQL: every condition against the values (the job, the owner, the status expected,
//!   bound in each row), and the owner and status kept off the indexes (`Store::not_indexed`).
//!   With statistics older than a job's rows (written a second before), it estimated one row
//!   for any condition and chose the index that matched most of them: with `job_id = ?` it
//!   walked the job's devices by status once per statement, with the conditions against the
//!   values once per value (a 10,000-device property job took 40 s instead of 3; a statement
//!   of 250 finishes over a 100,000-device job 1 s instead of 12 ms). And the transaction
//!   runs with scans and hash joins off (`Store::look_up_by_key`): against a table of tens of
//!   thousands of rows, it costed one pass over the table, or over the index of running
//!   devices, below a few hundred lookups.
//! - SQLite: the same conditions as constants, the status kept off the indexes, which makes
//!   it look each value up by the key. Against the values, it scanned the job's rows per
//!   statement (the property job took 11 s instead of 1).
//!
use std::collections::{HashMap, HashSet};

use flotilla_model::job::Threshold;
use flotilla_model::job_state::{DeviceEvent, DeviceOutcome, DeviceStatus};
use serde_json::Value;
use sqlx::Row;

use super::{FinishWrite, NoteWrite, Reply};
use crate::bulk::{CHUNK, marks, value_rows};
use crate::jobs::{Finish, batch_failures_sql, reason_code};
use crate::write_gate::WriteTx;
use crate::{Dialect, ReplicaId, Result, Store, now_ms};

/// Records the desired version each (job, device) write made, on the running devices this
/// replica owns; returns the (job, device) pairs recorded (the others are no longer ours).
pub(crate) async fn record_desired_versions(
    core: &Store,
    tx: &mut WriteTx,
    recorded: &[(&str, &str, i64)],
) -> Result<HashSet<(String, String)>> {
    let mut done = HashSet::new();
    let running = DeviceStatus::Running.as_str();
    let per_row = core.dialect == Dialect::Postgres;
    let (owner, status) = (
        core.not_indexed("job_devices.owner"),
        core.not_indexed("job_devices.status"),
    );
    for chunk in recorded.chunks(CHUNK) {
        // The owner and status: in each row of values on PostgreSQL, constants on SQLite
        // (see the module's note).
        let (columns, conditions) = if per_row {
            (5, format!("{owner} = v.column4 AND {status} = v.column5"))
        } else {
            (
                3,
                format!("job_devices.owner = ? AND {status} = '{running}'"),
            )
        };
        let sql = core.sql(&format!(
            "UPDATE job_devices SET desired_version = v.column3 FROM (VALUES {}) AS v \
             WHERE job_devices.job_id = v.column1 AND job_devices.device_id = v.column2 \
             AND {conditions} \
             RETURNING job_devices.job_id AS job_id, job_devices.device_id AS device_id",
            value_rows(chunk.len(), columns),
        ));
        let mut query = sqlx::query(&sql);
        for (job, device, version) in chunk {
            query = query.bind(*job).bind(*device).bind(*version);
            if per_row {
                query = query.bind(core.replica.as_str()).bind(running);
            }
        }
        if !per_row {
            query = query.bind(core.replica.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            done.insert((row.try_get("job_id")?, row.try_get("device_id")?));
        }
    }
    Ok(done)
}

/// Notes progress on running devices this replica owns; per write, whether it was noted. A
/// `sent` note is a compare-and-set (`sent = 0` before): only the note that set it lets the
/// command go out.
pub(crate) async fn notes_bulk(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[(NoteWrite, Reply<bool>)],
) -> Result<Vec<bool>> {
    let mut noted = vec![false; writes.len()];
    let running = DeviceStatus::Running;
    // Commands about to be sent, per job in one statement; anything else one by one.
    let mut sent: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (w, _)) in writes.iter().enumerate() {
        if w.sent && w.desired_version.is_none() {
            match sent.iter_mut().find(|(job, _)| *job == w.job_id) {
                Some((_, indexes)) => indexes.push(i),
                None => sent.push((&w.job_id, vec![i])),
            }
        } else {
            let done = sqlx::query(&core.sql(&format!(
                "UPDATE job_devices SET desired_version = COALESCE(?, desired_version), \
                 sent = CASE WHEN ? THEN 1 ELSE sent END WHERE job_id = ? AND device_id = ? \
                 AND {} = ? AND {} = '{running}' AND (sent = 0 OR NOT ?)",
                core.not_indexed("owner"),
                core.not_indexed("status"),
            )))
            .bind(w.desired_version)
            .bind(w.sent)
            .bind(&w.job_id)
            .bind(&w.device_id)
            .bind(core.replica.as_str())
            .bind(w.sent)
            .execute(&mut **tx)
            .await?;
            noted[i] = done.rows_affected() == 1;
        }
    }
    let per_row = core.dialect == Dialect::Postgres;
    let (owner, status) = (
        core.not_indexed("job_devices.owner"),
        core.not_indexed("job_devices.status"),
    );
    for (job, mut indexes) in sent {
        // In key order: rows are locked in the same order by every replica.
        indexes.sort_by(|&a, &b| writes[a].0.device_id.cmp(&writes[b].0.device_id));
        for chunk in indexes.chunks(CHUNK) {
            // The job, owner and status: in each row of values on PostgreSQL, constants on
            // SQLite (see the module's note).
            let sql = if per_row {
                core.sql(&format!(
                    "UPDATE job_devices SET sent = 1 FROM (VALUES {}) AS v \
                     WHERE job_devices.job_id = v.column1 AND job_devices.device_id = v.column2 \
                     AND {owner} = v.column3 AND {status} = v.column4 \
                     AND job_devices.sent = 0 RETURNING job_devices.device_id AS device_id",
                    value_rows(chunk.len(), 4),
                ))
            } else {
                format!(
                    "UPDATE job_devices SET sent = 1 WHERE job_id = ? AND device_id IN ({}) \
                     AND owner = ? AND {status} = '{running}' AND sent = 0 RETURNING device_id",
                    marks(chunk.len()),
                )
            };
            let mut query = sqlx::query(&sql);
            if per_row {
                for &i in chunk {
                    query = query
                        .bind(job)
                        .bind(&writes[i].0.device_id)
                        .bind(core.replica.as_str())
                        .bind(running.as_str());
                }
            } else {
                query = query.bind(job);
                for &i in chunk {
                    query = query.bind(&writes[i].0.device_id);
                }
                query = query.bind(core.replica.as_str());
            }
            let rows = query.fetch_all(&mut **tx).await?;
            let set: HashSet<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>("device_id"))
                .collect::<Result<_, _>>()?;
            for &i in chunk {
                noted[i] = set.contains(&writes[i].0.device_id);
            }
        }
    }
    Ok(noted)
}

/// Finishes running devices `owner` works (this replica, or a dead one the sweep releases) and
/// counts them in their jobs; per write, what it did. A device no longer theirs is left alone.
pub(crate) async fn finish_bulk(
    core: &Store,
    tx: &mut WriteTx,
    writes: &[&FinishWrite],
    owner: &ReplicaId,
) -> Result<Vec<Finish>> {
    let mut results = vec![Finish::default(); writes.len()];
    // Per job, in the order the writes came; jobs in key order, so replicas finishing devices
    // of the same jobs lock the jobs' rows in the same order.
    let mut jobs: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, w) in writes.iter().enumerate() {
        match jobs.iter_mut().find(|(job, _)| *job == w.job_id) {
            Some((_, indexes)) => indexes.push(i),
            None => jobs.push((&w.job_id, vec![i])),
        }
    }
    jobs.sort_by(|a, b| a.0.cmp(b.0));
    let now = now_ms();
    let [source] = DeviceStatus::sources(DeviceEvent::Finish(DeviceOutcome::Completed))[..] else {
        unreachable!("a device finishes from one status");
    };
    // A SQLite database has one server, whose devices are all its own: the owner is neither
    // checked nor cleared there (with SQLite's plan, those two made a job's finishes cost twice
    // as much; measured with bench/bench.py at 5,000 devices). The job, status and owner: in
    // each row of values on PostgreSQL, constants on SQLite (see the module's note).
    let per_row = core.dialect == Dialect::Postgres;
    let (owner_column, status) = (
        core.not_indexed("job_devices.owner"),
        core.not_indexed("job_devices.status"),
    );
    let (columns, conditions, clear_owner) = if per_row {
        let conditions = format!(
            "job_devices.job_id = v.column7 AND {status} = v.column8 AND {owner_column} = v.column9"
        );
        (9, conditions, ", owner = NULL")
    } else {
        let conditions = format!("job_devices.job_id = ? AND {status} = '{source}'");
        (6, conditions, "")
    };
    // The jobs' rows first, before any device's: each job's counter hands its finishes their
    // sequence numbers (one each, whether or not it counts: gaps are fine), and the row stays
    // locked until the commit (PostgreSQL), so the numbers follow the order finishes commit in
    // and a live event stream's cursor never passes one that commits late. Job rows before
    // device rows, as a job's start and its failure lock them.
    let mut first_seqs = Vec::with_capacity(jobs.len());
    for (job_id, indexes) in &jobs {
        first_seqs
            .push(crate::job_events::take_finish_seqs(core, tx, job_id, indexes.len()).await?);
    }
    for ((job_id, indexes), first_seq) in jobs.into_iter().zip(first_seqs) {
        let Some(first_seq) = first_seq else {
            continue;
        };
        // End the devices that are still running; the statement says which those were.
        let mut counted = HashSet::new();
        for (chunk_index, chunk) in indexes.chunks(CHUNK).enumerate() {
            let sql = core.sql(&format!(
                "UPDATE job_devices SET status = v.column2, reason = v.column3, detail = v.column4, \
                 reason_code = v.column5, finish_seq = v.column6, finished_ms = ?{clear_owner} \
                 FROM (VALUES {}) AS v \
                 WHERE job_devices.device_id = v.column1 AND {conditions} \
                 RETURNING job_devices.device_id AS device_id",
                value_rows(chunk.len(), columns),
            ));
            let mut query = sqlx::query(&sql).bind(now);
            for (k, &i) in chunk.iter().enumerate() {
                let w = writes[i];
                query = query
                    .bind(&w.device_id)
                    .bind(DeviceStatus::target(DeviceEvent::Finish(w.outcome)).as_str())
                    .bind(w.reason.as_deref())
                    .bind(w.detail.as_ref().map(Value::to_string))
                    .bind(reason_code(w.outcome))
                    .bind(first_seq + (chunk_index * CHUNK + k) as i64);
                if per_row {
                    query = query
                        .bind(job_id)
                        .bind(source.as_str())
                        .bind(owner.as_str());
                }
            }
            if !per_row {
                query = query.bind(job_id);
            }
            let rows = query.fetch_all(&mut **tx).await?;
            for row in rows {
                counted.insert(row.try_get::<String, _>("device_id")?);
            }
        }
        let counted: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&i| counted.contains(&writes[i].device_id))
            .collect();
        if counted.is_empty() {
            continue;
        }
        let failures: Vec<usize> = counted
            .iter()
            .copied()
            .filter(|&i| matches!(writes[i].outcome, DeviceOutcome::Failed(_)))
            .collect();
        let skipped = counted
            .iter()
            .filter(|&&i| writes[i].outcome == DeviceOutcome::Skipped)
            .count();
        // Updating the job's row locks it (PostgreSQL), so concurrent finishers of one job
        // count their failures one after another.
        sqlx::query(&core.sql(
            "UPDATE jobs SET completed = completed + ?, failed = failed + ?, \
             skipped = skipped + ? WHERE id = ?",
        ))
        .bind((counted.len() - failures.len() - skipped) as i64)
        .bind(failures.len() as i64)
        .bind(skipped as i64)
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
        for &i in &counted {
            results[i].counted = true;
        }
        // The threshold, checked after each failure in turn, as if they had come one by one.
        if let Some((threshold, _)) = failures.iter().find_map(|&i| writes[i].threshold) {
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
    writes: &[&FinishWrite],
    failures: &[usize],
    results: &mut [Finish],
) -> Result<()> {
    let batch_of = |i: usize| writes[i].threshold.map(|(_, batch)| batch).unwrap_or(0);
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
