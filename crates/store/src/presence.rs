//! SQL for `device_connections`: which server holds each device's connection (cluster mode,
//! PostgreSQL only; one server on SQLite knows its connections in memory). A row counts only
//! while its server is alive: a heartbeat within the lease.

use sqlx::Row;

use crate::signals::{REPLICA_CHANNEL_PREFIX, Signal};
use crate::{ReplicaId, Result, Store, now_ms};

/// How long a server's heartbeat keeps it alive for routing, in the database's time (the
/// default lease; a replica past it is about to be swept).
const REPLICA_LEASE_MS: i64 = 10_000;

/// A device connection this server holds (or held): the device and the connection's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldConnection {
    pub device_id: String,
    pub connection_id: u64,
}

/// Rows per statement (2 parameters a row, well under PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 1000;

/// `(?, ?::bigint), ...` for `rows` rows.
fn values(rows: usize) -> String {
    vec!["(?, ?::bigint)"; rows].join(", ")
}

impl Store {
    /// Records that this server holds these connections now (at most one per device). In the
    /// same statement, each previous holder that is another live server is told to close its
    /// connection (one connection per device in the whole cluster, the newest wins). Rows are
    /// taken in device order, so two servers claiming at once do not deadlock.
    pub async fn claim_connections(&self, held: &[HeldConnection]) -> Result<()> {
        let now = now_ms();
        for chunk in held.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH incoming (device_id, connection_id) AS (VALUES {}), \
                 previous AS ( \
                     SELECT c.device_id, c.replica_id, c.connection_id \
                     FROM device_connections c JOIN incoming i ON i.device_id = c.device_id \
                     ORDER BY c.device_id FOR UPDATE OF c), \
                 claimed AS ( \
                     INSERT INTO device_connections (device_id, replica_id, connection_id, since_ms) \
                     SELECT device_id, ?, connection_id, ? FROM incoming ORDER BY device_id \
                     ON CONFLICT (device_id) DO UPDATE SET replica_id = excluded.replica_id, \
                     connection_id = excluded.connection_id, since_ms = excluded.since_ms) \
                 SELECT count(pg_notify(? || p.replica_id, json_build_object( \
                     'kind', 'close', 'device', p.device_id, 'connection', p.connection_id)::text)) AS kicked \
                 FROM previous p JOIN replicas r ON r.id = p.replica_id \
                 WHERE p.replica_id <> ? AND {}",
                values(chunk.len()),
                self.replica_alive("r")
            );
            let sql = self.sql(&sql);
            let mut query = sqlx::query(&sql);
            for connection in chunk {
                query = query
                    .bind(&connection.device_id)
                    .bind(connection.connection_id as i64);
            }
            query
                .bind(self.replica().as_str())
                .bind(now)
                .bind(REPLICA_CHANNEL_PREFIX)
                .bind(self.replica().as_str())
                .fetch_one(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Forgets these connections of this server, each unless a newer one replaced it.
    pub async fn release_connections(&self, held: &[HeldConnection]) -> Result<()> {
        for chunk in held.chunks(ROWS_PER_STATEMENT) {
            let sql = self.sql(&format!(
                "DELETE FROM device_connections WHERE replica_id = ? \
                 AND (device_id, connection_id) IN (VALUES {})",
                values(chunk.len())
            ));
            let mut query = sqlx::query(&sql).bind(self.replica().as_str());
            for connection in chunk {
                query = query
                    .bind(&connection.device_id)
                    .bind(connection.connection_id as i64);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The live server holding the device's connection, if any.
    pub async fn connection_holder(&self, device_id: &str) -> Result<Option<ReplicaId>> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT c.replica_id FROM device_connections c JOIN replicas r ON r.id = c.replica_id \
             WHERE c.device_id = ? AND {}",
            self.replica_alive("r")
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| row.try_get("replica_id").map(ReplicaId::from_stored))
            .transpose()
            .map_err(Into::into)
    }

    /// Tells every server to close the device's connection, wherever it is.
    pub async fn close_device_everywhere(&self, device_id: &str) -> Result<()> {
        self.broadcast_signal(&Signal::CloseDevice {
            device: device_id.to_string(),
        })
        .await
    }

    /// SQL: whether the replica `alias` is alive (its heartbeat within the lease, in the
    /// database's time).
    pub(crate) fn replica_alive(&self, alias: &str) -> String {
        format!(
            "{alias}.state = 'alive' AND {alias}.heartbeat_ms >= {} - {REPLICA_LEASE_MS}",
            self.database_now_ms()
        )
    }
}
