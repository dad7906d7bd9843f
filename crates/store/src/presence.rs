//! SQL for `device_connections`: which server holds each device's connection (cluster mode,
//! PostgreSQL only; one server on SQLite knows its connections in memory). A row counts only
//! while its server is alive: a heartbeat within the lease.

use sqlx::Row;

use crate::signals::{REPLICA_CHANNEL_PREFIX, Signal};
use crate::{ReplicaId, Result, Store, now_ms};

/// How long a server's heartbeat keeps it alive (in its own clock, as `register_replica` writes
/// it).
pub const REPLICA_LEASE_MS: i64 = 10_000;

impl Store {
    /// Records that this server holds the device's connection now. In the same statement, a
    /// previous holder that is another live server is told to close its connection (one
    /// connection per device in the whole cluster, the newest wins).
    pub async fn claim_connection(&self, device_id: &str, connection_id: u64) -> Result<()> {
        let now = now_ms();
        sqlx::query(&self.sql(
            "WITH previous AS ( \
                 SELECT replica_id, connection_id FROM device_connections \
                 WHERE device_id = ? FOR UPDATE), \
             claimed AS ( \
                 INSERT INTO device_connections (device_id, replica_id, connection_id, since_ms) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET \
                 replica_id = excluded.replica_id, connection_id = excluded.connection_id, \
                 since_ms = excluded.since_ms) \
             SELECT count(pg_notify(? || p.replica_id, json_build_object( \
                 'kind', 'close', 'device', ?::text, 'connection', p.connection_id)::text)) AS kicked \
             FROM previous p JOIN replicas r ON r.id = p.replica_id \
             WHERE p.replica_id <> ? AND r.state = 'alive' AND r.heartbeat_ms >= ?",
        ))
        .bind(device_id)
        .bind(device_id)
        .bind(self.replica().as_str())
        .bind(connection_id as i64)
        .bind(now)
        .bind(REPLICA_CHANNEL_PREFIX)
        .bind(device_id)
        .bind(self.replica().as_str())
        .bind(now - REPLICA_LEASE_MS)
        .fetch_one(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets this server's connection of the device, unless a newer one replaced it.
    pub async fn release_connection(&self, device_id: &str, connection_id: u64) -> Result<()> {
        sqlx::query(&self.sql(
            "DELETE FROM device_connections \
             WHERE device_id = ? AND replica_id = ? AND connection_id = ?",
        ))
        .bind(device_id)
        .bind(self.replica().as_str())
        .bind(connection_id as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live server holding the device's connection, if any.
    pub async fn connection_holder(&self, device_id: &str) -> Result<Option<ReplicaId>> {
        let row = sqlx::query(&self.sql(
            "SELECT c.replica_id FROM device_connections c JOIN replicas r ON r.id = c.replica_id \
             WHERE c.device_id = ? AND r.state = 'alive' AND r.heartbeat_ms >= ?",
        ))
        .bind(device_id)
        .bind(now_ms() - REPLICA_LEASE_MS)
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

    /// Renews this server's heartbeat. A stopgap until the replica heartbeat loop lands
    /// (`replicas`); it writes the same column the same way.
    pub async fn renew_heartbeat(&self) -> Result<()> {
        sqlx::query(
            &self.sql("UPDATE replicas SET heartbeat_ms = ? WHERE id = ? AND state = 'alive'"),
        )
        .bind(now_ms())
        .bind(self.replica().as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
