//! The servers sharing this database (`replicas`): each process has an id of its own, made when
//! it opens the store and never reused, and registers under it with a heartbeat that is its
//! lease. The id is also the fencing token: a job device's `owner` is the id of the server
//! working it, and every write that server makes to the row checks it.

use std::fmt;
use std::sync::Arc;

use crate::{Result, Store, now_ms};

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

impl Store {
    /// This process's id.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// Registers this process as alive, and retires the rows an earlier process on the same
    /// data dir left.
    pub async fn register_replica(&self, info: &ReplicaInfo) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(&self.sql(
            "UPDATE replicas SET state = 'dead' WHERE instance = ? AND state = 'alive' AND id <> ?",
        ))
        .bind(&info.instance)
        .bind(self.replica.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.sql(
            "INSERT INTO replicas (id, instance, hostname, state, started_ms, heartbeat_ms) \
             VALUES (?, ?, ?, 'alive', ?, ?)",
        ))
        .bind(self.replica.as_str())
        .bind(&info.instance)
        .bind(&info.hostname)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
