//! The servers sharing this database (`replicas`): each process has an id of its own, made when
//! it opens the store and never reused, and registers under it with a heartbeat that is its
//! lease. The id is also the fencing token: a job device's `owner` is the id of the server
//! working it, and every write that server makes to the row checks it.
//!
//! Leases are judged twice. The database judges in its own time: a replica whose heartbeat is
//! older than the lease is declared dead by the sweep (any replica runs it; it is a
//! compare-and-set), which releases its job devices. The replica judges by its own monotonic
//! clock, from before it sent its last successful heartbeat: past the lease (after a pause, say),
//! or once a heartbeat finds its row dead, it is fenced for good, and the store refuses to begin
//! writes (`StoreError::Fenced`). Its own clock runs out first, so by the time the others may
//! declare it dead it has stopped writing; a write already under way then fails the owner check.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::jobs::Departure;
use crate::{Dialect, Result, Store, StoreError};

/// One server process's id (a UUID v7: ids sort by start time).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(Arc<str>);

impl ReplicaId {
    /// A new id, never given before.
    pub fn generate() -> ReplicaId {
        ReplicaId(uuid::Uuid::now_v7().simple().to_string().into())
    }

    /// An id as stored (read back from the database or a signal).
    pub fn from_stored(id: String) -> ReplicaId {
        ReplicaId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a server registers as.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    /// The data dir's own id: rows of an earlier process on the same data dir are retired at
    /// once (that process is gone: the data dir is locked by one process at a time).
    pub instance: String,
    /// The host name this server presents and DPS hands out.
    pub hostname: String,
}

/// Whether this process's lease is known valid.
#[derive(Default)]
pub(crate) struct Lease {
    /// Until when, by this process's monotonic clock; `None` before it registers (a store that
    /// never registers, one part under test, is never fenced).
    valid_until: Mutex<Option<Instant>>,
    /// Set for good once the lease lapsed or the database declared this replica dead.
    fenced: AtomicBool,
}

impl Lease {
    /// `Err(Fenced)` unless the lease is known valid now (or was never taken).
    pub(crate) fn check(&self) -> Result<()> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(StoreError::Fenced);
        }
        let lapsed = self
            .valid_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() >= until);
        if lapsed {
            if !self.fenced.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    "this server did not renew its lease in time: it makes no more writes"
                );
            }
            return Err(StoreError::Fenced);
        }
        Ok(())
    }

    fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// A heartbeat sent at `sent_at` succeeded: valid for `lease` from then.
    fn renewed(&self, sent_at: Instant, lease: Duration) {
        let mut until = self.valid_until.lock().unwrap();
        if until.is_none_or(|until| until < sent_at + lease) {
            *until = Some(sent_at + lease);
        }
    }
}

impl Store {
    /// This process's id.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// Registers this process as alive (`register_replica_for` the default lease of 10 s).
    pub async fn register_replica(&self, info: &ReplicaInfo) -> Result<()> {
        self.register_replica_for(info, Duration::from_secs(10))
            .await
    }

    /// Registers this process as alive, with a lease of `lease` from now, and retires the rows
    /// an earlier process on the same data dir left: that process is gone (the data dir is
    /// locked by one process at a time), so its job devices are released at once, as the sweep
    /// releases a dead replica's.
    pub async fn register_replica_for(&self, info: &ReplicaInfo, lease: Duration) -> Result<()> {
        let sent_at = Instant::now();
        let mut tx = self.begin_write().await?;
        let retired = sqlx::query(&self.sql(
            "UPDATE replicas SET state = 'dead' WHERE instance = ? AND state = 'alive' AND id <> ? \
             RETURNING id",
        ))
        .bind(&info.instance)
        .bind(self.replica.as_str())
        .fetch_all(&mut *tx)
        .await?;
        for row in retired {
            let id = ReplicaId::from_stored(row.try_get("id")?);
            self.release_replica_work(&mut tx, &id, Departure::Restarted)
                .await?;
        }
        let now = self.database_now_ms();
        sqlx::query(&self.sql(&format!(
            "INSERT INTO replicas (id, instance, hostname, state, started_ms, heartbeat_ms) \
             VALUES (?, ?, ?, 'alive', {now}, {now})"
        )))
        .bind(self.replica.as_str())
        .bind(&info.instance)
        .bind(&info.hostname)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.caches.changed(crate::cache::Changed::Jobs);
        self.renewed(sent_at, lease);
        Ok(())
    }

    /// Renews this replica's lease (its heartbeat, in the database's time) for `lease` from
    /// before the statement was sent. `Err(Fenced)`, for good, when the lease had already lapsed
    /// by this process's clock or the database no longer counts this replica alive.
    pub async fn heartbeat(&self, lease: Duration) -> Result<()> {
        let sent_at = Instant::now();
        self.lease.check()?;
        let sql = self.sql(&format!(
            "UPDATE replicas SET heartbeat_ms = {} WHERE id = ? AND state = 'alive'",
            self.database_now_ms()
        ));
        let query = sqlx::query(&sql).bind(self.replica.as_str());
        let renewed = match self.dialect {
            Dialect::Postgres => query.execute(&self.lease_pool).await?,
            Dialect::Sqlite => query.execute(&*self.writing().await).await?,
        };
        if renewed.rows_affected() == 0 {
            self.lease.fence();
            return Err(StoreError::Fenced);
        }
        // A heartbeat that took longer than the lease renewed nothing this process can count on.
        self.renewed(sent_at, lease);
        self.lease.check()
    }

    /// Counts the lease from `sent_at`. Only in cluster mode (PostgreSQL): a SQLite database has
    /// one server, which nobody can take over, so a pause (a slow disk holding the write lock,
    /// say) must not stop it.
    fn renewed(&self, sent_at: Instant, lease: Duration) {
        if self.dialect == Dialect::Postgres {
            self.lease.renewed(sent_at, lease);
        }
    }

    /// Leaves the replicas on a clean stop, once this process's engine has stopped: its row is
    /// dead and its job devices are released at once (as the sweep would release them a lease
    /// later), for the others or the next start to take over. It writes nothing after this.
    pub async fn retire_replica(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&self.sql("UPDATE replicas SET state = 'dead' WHERE id = ?"))
            .bind(self.replica.as_str())
            .execute(&mut *tx)
            .await?;
        self.release_replica_work(&mut tx, &self.replica.clone(), Departure::Stopped)
            .await?;
        tx.commit().await?;
        self.caches.changed(crate::cache::Changed::Jobs);
        self.lease.fence();
        Ok(())
    }

    /// Whether this replica has stopped writing for good (its lease lapsed or it was declared
    /// dead).
    pub fn is_fenced(&self) -> bool {
        self.lease.check().is_err()
    }

    /// Declares dead the replicas whose heartbeat is older than `lease` in the database's time,
    /// and releases their work in the same transaction (see `release_replica_work`). A
    /// compare-and-set: replicas sweeping at once declare each one dead once. Returns the
    /// replicas it declared dead.
    pub async fn sweep_dead_replicas(&self, lease: Duration) -> Result<Vec<ReplicaId>> {
        let mut tx = self.begin_write().await?;
        let dead = sqlx::query(&self.sql(&format!(
            "UPDATE replicas SET state = 'dead' WHERE state = 'alive' AND heartbeat_ms < {} - ? \
             RETURNING id",
            self.database_now_ms()
        )))
        .bind(lease.as_millis() as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(dead.len());
        for row in dead {
            ids.push(ReplicaId::from_stored(row.try_get("id")?));
        }
        ids.sort();
        for id in &ids {
            self.release_replica_work(&mut tx, id, Departure::Stopped)
                .await?;
        }
        tx.commit().await?;
        if !ids.is_empty() {
            self.caches.changed(crate::cache::Changed::Jobs);
        }
        Ok(ids)
    }

    /// What a replica that stopped leaves behind, in the caller's transaction: its job devices
    /// (`release_job_devices`), its devices' connection rows, and the device calls it made
    /// (nobody waits for their answers any more; a live caller forgets its own calls).
    async fn release_replica_work(
        &self,
        tx: &mut crate::write_gate::WriteTx,
        replica: &ReplicaId,
        departure: Departure,
    ) -> Result<()> {
        self.release_job_devices(tx, replica, departure).await?;
        sqlx::query(&self.sql("DELETE FROM device_connections WHERE replica_id = ?"))
            .bind(replica.as_str())
            .execute(&mut **tx)
            .await?;
        sqlx::query(&self.sql("DELETE FROM device_calls WHERE caller = ?"))
            .bind(replica.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
