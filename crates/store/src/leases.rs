//! Named leases (`leases`): one server at a time holds a lease until it expires, in the
//! database's time, so that the servers' own clocks never decide who holds it. A server takes
//! a lease that is free, expired, or held by a server known to be gone (its `replicas` row is
//! `dead`: a restart on the same data dir need not wait for its predecessor's lease to run out).

use std::time::Duration;

use crate::{Dialect, Result, Store};

/// A lease's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseName(&'static str);

impl LeaseName {
    /// The scheduler's leader: the one server that polls the schedules.
    pub const LEADER: LeaseName = LeaseName("leader");

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Store {
    /// Takes or renews `lease` for this process until `term` from now, in the database's
    /// time; whether this process holds it now. Another server's lease that has not expired
    /// is left alone.
    pub async fn hold_lease(&self, lease: LeaseName, term: Duration) -> Result<bool> {
        let now = self.database_now_ms();
        let held = sqlx::query(&self.sql(&format!(
            "INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, {now} + ?) \
             ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms < {now} \
                OR leases.holder IN (SELECT id FROM replicas WHERE state = 'dead') \
             RETURNING holder"
        )))
        .bind(lease.as_str())
        .bind(self.replica().as_str())
        .bind(term.as_millis() as i64)
        .fetch_optional(&*self.writing().await)
        .await?;
        Ok(held.is_some())
    }

    /// Gives `lease` up if this process holds it, so that another server takes it at once.
    pub async fn release_lease(&self, lease: LeaseName) -> Result<()> {
        sqlx::query(&self.sql("DELETE FROM leases WHERE name = ? AND holder = ?"))
            .bind(lease.as_str())
            .bind(self.replica().as_str())
            .execute(&*self.writing().await)
            .await?;
        Ok(())
    }

    /// The database's current time in milliseconds since the Unix epoch, as SQL: every server
    /// sharing the database reads the same clock.
    pub(crate) fn database_now_ms(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaInfo;

    async fn store() -> Store {
        Store::connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_server_until_it_expires_or_is_released() {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-leases-{}",
            flotilla_model::keys::random_hex::<4>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.display());
        // Two processes' stores on one database: each has its own replica id.
        let first = Store::connect(&url).await.unwrap();
        let second = Store::connect(&url).await.unwrap();
        let term = Duration::from_millis(300);
        assert!(first.hold_lease(LeaseName::LEADER, term).await.unwrap());
        assert!(!second.hold_lease(LeaseName::LEADER, term).await.unwrap());
        // Renewing keeps it.
        assert!(first.hold_lease(LeaseName::LEADER, term).await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Expired: the other takes it, and the first no longer holds it.
        assert!(second.hold_lease(LeaseName::LEADER, term).await.unwrap());
        assert!(!first.hold_lease(LeaseName::LEADER, term).await.unwrap());
        // Released: taken at once.
        first.release_lease(LeaseName::LEADER).await.unwrap();
        assert!(!first.hold_lease(LeaseName::LEADER, term).await.unwrap());
        second.release_lease(LeaseName::LEADER).await.unwrap();
        assert!(first.hold_lease(LeaseName::LEADER, term).await.unwrap());

        // A server restarted on the holder's data dir retires the holder: its lease is free.
        let instance = |n: &str| ReplicaInfo {
            instance: n.into(),
            hostname: "localhost".into(),
        };
        first.register_replica(&instance("a")).await.unwrap();
        second.register_replica(&instance("b")).await.unwrap();
        let long = Duration::from_secs(60);
        assert!(first.hold_lease(LeaseName::LEADER, long).await.unwrap());
        assert!(!second.hold_lease(LeaseName::LEADER, long).await.unwrap());
        let restarted = Store::connect(&url).await.unwrap();
        restarted.register_replica(&instance("a")).await.unwrap();
        assert!(restarted.hold_lease(LeaseName::LEADER, long).await.unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_database_clock_is_the_unix_time_in_milliseconds() {
        let store = store().await;
        let sql = format!("SELECT {} AS now", store.database_now_ms());
        let now: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!((now - crate::now_ms()).abs() < 1_000, "{now}");
    }
}
