//! Flotilla's storage: one interface ([`Store`]) over an embedded SQLite database (the default)
//! or PostgreSQL (for several replicas). Each table's SQL lives in its own module; every
//! statement is written once, with `?` placeholders, and runs on both databases.
//!
//! Beside the SQL, and apart from it: group commit (`group_commit`), the read caches (`cache`)
//! and the queue for SQLite's one write lock (`write_gate`).

mod api_tokens;
mod bulk;
mod cache;
mod commands;
mod device_calls;
mod device_groups;
mod device_templates;
mod devices;
mod dialect;
mod enrollment_groups;
mod error;
pub mod filter_sql;
mod group_commit;
mod imported_jobs;
mod instance_lock;
mod job_cache;
mod job_events;
mod job_pace;
mod job_plan;
mod job_previous_values;
mod job_reports;
mod jobs;
mod leases;
mod mqtt_sessions;
mod presence;
mod replicas;
mod scheduled_jobs;
mod settings;
mod signals;
mod sqlite;
mod stats;
mod telemetry;
mod token_cache;
mod twins;
mod webhooks;
mod write_gate;

pub use commands::CommandRecord;
pub use device_calls::{CallKind, CallState, CallStatus, DeviceCall};
pub use device_templates::StoredTemplate;
pub use devices::{CloudPropertiesUpdate, ImportedDevice};
pub use dialect::Dialect;
pub use error::{ConflictKind, Entity, StoreError};
pub use imported_jobs::ImportedJobDevice;
pub use instance_lock::{InstanceLock, LockError, LockFile};
pub use job_events::{FinishedDevice, JobEventState};
pub use job_pace::{BatchOutcome, RecentStarts};
pub use job_plan::PlannedDevice;
pub use job_previous_values::PreviousValue;
pub use job_reports::{BatchCounts, JobDeviceFilter, ReasonCount};
pub use jobs::{Finish, JobDevice, JobPageRequest, JobRecord};
pub use leases::LeaseName;
pub use presence::HeldConnection;
pub use replicas::{ReplicaId, ReplicaInfo};
pub use scheduled_jobs::ScheduledJobRecord;
pub use signals::{Heard, Signal, SignalListener};
pub use webhooks::{ClaimedDelivery, DeliveryRecord, NewDelivery, WebhookCursor};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One page of a list, ordered by id: the items, and whether more follow the last one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// Where a list page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// Only ids after this one (keyset paging, so deep pages cost no more than the first).
    pub after: Option<&'a str>,
    pub size: usize,
}

/// The database behind the API.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Where the writes that come by the thousand during jobs queue for group commit (see
    /// `group_commit`); `None` in the store the writer itself uses.
    writer: Option<group_commit::Writers>,
    /// Rows as last read (see `cache`); shared with the writer's store, whose commits empty them.
    caches: std::sync::Arc<cache::Caches>,
    /// Where writes wait for their turn (see `write_gate`); shared with the writer's store.
    write_gate: write_gate::WriteGate,
    /// This process's id among the servers sharing the database (see `replicas`).
    replica: ReplicaId,
    /// Whether this process's lease is known valid; shared with the writer's store.
    lease: std::sync::Arc<replicas::Lease>,
    /// On PostgreSQL, a connection of the heartbeat's own (see `replicas`): a pool saturated by
    /// requests and job work must not hold up a lease renewal, or a busy server would fence
    /// itself. On SQLite, the pool.
    lease_pool: AnyPool,
}

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let options = match dialect {
            Dialect::Sqlite => {
                sqlite::without_memory_statistics();
                sqlite::pool_options(8, "")
            }
            Dialect::Postgres => {
                // A database that does not answer fails the start at once, not after the
                // pool's 30 s of retries.
                sqlx::AnyConnection::connect(url).await?.close().await?;
                AnyPoolOptions::new()
            }
        };
        let pool = options.connect(url).await?;
        match dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        // The group-commit writers (`group_commit::Writers`) have connections of their own. The
        // twins' writer (on SQLite the one writer) has two: one reads ahead, one writes; on
        // SQLite they keep a page cache large enough for the rows jobs touch (the default 2 MB
        // holds the rows of a few thousand devices), while the API's connections keep the
        // default. On PostgreSQL the job-progress and device-change writers read nothing ahead:
        // one connection each.
        let writer_options = match dialect {
            Dialect::Sqlite => sqlite::pool_options(2, "PRAGMA cache_size = -65536;"),
            Dialect::Postgres => AnyPoolOptions::new().max_connections(2),
        };
        let writer_pool = writer_options.connect(url).await?;
        let lease_pool = match dialect {
            Dialect::Sqlite => pool.clone(),
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?
            }
        };
        let caches = std::sync::Arc::new(cache::Caches::for_dialect(dialect));
        let write_gate = write_gate::WriteGate::for_dialect(dialect);
        let replica = ReplicaId::generate();
        let lease = std::sync::Arc::new(replicas::Lease::default());
        let writer_store = |pool: AnyPool| Store {
            pool,
            dialect,
            writer: None,
            caches: caches.clone(),
            write_gate: write_gate.clone(),
            replica: replica.clone(),
            lease: lease.clone(),
            lease_pool: lease_pool.clone(),
        };
        let more_writers = match dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => {
                let one = AnyPoolOptions::new().max_connections(1);
                Some(group_commit::MoreWriters {
                    job_progress: writer_store(one.clone().connect(url).await?),
                    device_changes: writer_store(one.connect(url).await?),
                })
            }
        };
        let writer = group_commit::Writers::start(writer_store(writer_pool), more_writers);
        Ok(Store {
            pool,
            dialect,
            writer: Some(writer),
            caches,
            write_gate,
            replica,
            lease,
            lease_pool,
        })
    }

    /// A (text) column in a condition that must not pick an index: the database would
    /// otherwise walk a job's devices by status or owner (thousands of rows) and probe a bulk
    /// statement's few hundred ids against each, instead of looking each id up by the primary
    /// key. `+column` keeps SQLite off an index, `(column || '')` PostgreSQL (see
    /// `group_commit::job_progress` for what each did without).
    fn not_indexed(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("+{column}"),
            Dialect::Postgres => format!("({column} || '')"),
        }
    }

    /// For the rest of the transaction `tx`, PostgreSQL looks rows up by key: it neither scans
    /// a table nor joins by hashing or merging, so a join against a statement's values is a
    /// lookup per value (settings local to the transaction); nothing on SQLite. For
    /// transactions whose statements each name a few hundred keys (the group commit's, a job's
    /// starts). Against a table of tens of thousands of rows, PostgreSQL's planner costs a few
    /// hundred lookups above one pass over the table (or over an index of all running devices),
    /// so each such statement read the whole `devices` or `job_devices` table: at 10,000
    /// devices 5-10 ms a statement where the lookups take 1-2 (auto_explain, pg_stat_statements).
    pub(crate) async fn look_up_by_key(&self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(
                "SELECT set_config('enable_seqscan', 'off', true), \
                 set_config('enable_hashjoin', 'off', true), \
                 set_config('enable_mergejoin', 'off', true)",
            )
            .execute(tx)
            .await?;
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The statement text for this database (placeholders renumbered for PostgreSQL).
    fn sql(&self, sql: &str) -> String {
        self.dialect.placeholders(sql)
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.lease_pool.close().await;
    }
}

/// Milliseconds since the Unix epoch, how the schema keeps times.
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Store {
    /// One page of `SELECT {columns} FROM {table}` ordered by id, after `page.after`.
    async fn page_of<T>(
        &self,
        table: &str,
        columns: &str,
        page: PageRequest<'_>,
        from_row: impl Fn(&sqlx::any::AnyRow) -> Result<T>,
    ) -> Result<Page<T>> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {columns} FROM {table} WHERE id > ? ORDER BY id LIMIT ?"
        )))
        .bind(page.after.unwrap_or(""))
        .bind(page.size as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.size))
    }

    /// The row of `table` with this id, mapped.
    async fn row_by_id<T>(
        &self,
        table: &str,
        columns: &str,
        id: &str,
        from_row: impl Fn(&sqlx::any::AnyRow) -> Result<T>,
    ) -> Result<Option<T>> {
        let row = sqlx::query(&self.sql(&format!("SELECT {columns} FROM {table} WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Deletes the row of `table` with this id; `NotFound` when there was none.
    async fn delete_by_id(&self, table: &str, entity: Entity, id: &str) -> Result<()> {
        let done = sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE id = ?")))
            .bind(id)
            .execute(&*self.writing().await)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(entity, id));
        }
        Ok(())
    }
}

/// An insert's outcome, with a unique-key violation reported as `Conflict` (`Exists`).
fn inserted<T>(
    result: std::result::Result<T, sqlx::Error>,
    entity: Entity,
    id: &str,
) -> Result<()> {
    match result.map_err(StoreError::from) {
        Err(e) if e.is_unique_violation() => {
            Err(StoreError::conflict(entity, id, ConflictKind::Exists))
        }
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Splits `size + 1` fetched rows into a page and whether more follow.
fn into_page<T>(mut items: Vec<T>, size: usize) -> Page<T> {
    let more = items.len() > size;
    items.truncate(size);
    Page { items, more }
}
