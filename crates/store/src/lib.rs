//! Flotilla's storage: one interface ([`Store`]) over an embedded SQLite database (the default)
//! or PostgreSQL (for several replicas). Each resource's SQL lives in its own module; every
//! statement is written once, with `?` placeholders, and runs on both databases.

mod api_tokens;
mod batch;
mod device_groups;
mod device_templates;
mod devices;
mod dialect;
mod enrollment_groups;
mod error;
mod instance_lock;
mod job_cache;
mod jobs;
mod scheduled_jobs;
mod settings;
mod twins;
mod write_gate;

pub use device_templates::StoredTemplate;
pub use devices::CloudPropertiesUpdate;
pub use dialect::Dialect;
pub use error::StoreError;
pub use instance_lock::{InstanceLock, LockError, LockFile};
pub use jobs::{Finish, JobDevice, JobPageRequest, JobRecord};
pub use scheduled_jobs::ScheduledJobRecord;
pub use twins::CommandRecord;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

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
    /// `batch`); `None` in the store the writer itself uses.
    writer: Option<tokio::sync::mpsc::UnboundedSender<batch::Write>>,
    /// API tokens recently looked up by hash (see `api_tokens`).
    tokens: std::sync::Arc<api_tokens::TokenCache>,
    /// Jobs and job device pages as last read (see `job_cache`); shared with the writer's store,
    /// whose commits empty it.
    job_cache: std::sync::Arc<job_cache::JobCache>,
    /// Where writes wait for their turn (see `write_gate`); shared with the writer's store.
    write_gate: write_gate::WriteGate,
}

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let mut options = AnyPoolOptions::new();
        if dialect == Dialect::Sqlite {
            sqlite_without_memory_statistics();
            // WAL lets readers run beside the writer; FULL sync keeps every acknowledged write
            // across a crash or power loss; foreign keys are off by default in SQLite. No ping
            // before each use: an embedded database's connection cannot go stale, and the ping
            // is a round trip to the connection's thread per query (a fifth of a REST GET).
            options = options
                .max_connections(8)
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                });
        }
        let pool = options.connect(url).await?;
        match dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        // The group-commit writer (`batch`) has connections of its own: one reads ahead, one
        // writes. On SQLite they keep a page cache large enough for the rows jobs touch (the
        // default 2 MB holds the rows of a few thousand devices), while the API's connections
        // keep the default.
        let mut writer_options = AnyPoolOptions::new().max_connections(2);
        if dialect == Dialect::Sqlite {
            writer_options =
                writer_options
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                             PRAGMA cache_size = -65536;",
                            )
                            .await?;
                            Ok(())
                        })
                    });
        }
        let writer_pool = writer_options.connect(url).await?;
        let job_cache = std::sync::Arc::new(job_cache::JobCache::default());
        let write_gate = write_gate::for_dialect(dialect);
        let writer = batch::start(Store {
            pool: writer_pool,
            dialect,
            writer: None,
            tokens: Default::default(),
            job_cache: job_cache.clone(),
            write_gate: write_gate.clone(),
        });
        Ok(Store {
            pool,
            dialect,
            writer: Some(writer),
            tokens: Default::default(),
            job_cache,
            write_gate,
        })
    }

    /// Queues a write for group commit and waits for its answer; without a writer (the
    /// writer's own store), `direct` runs it on its own.
    async fn queued<T>(
        &self,
        write: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> batch::Write,
        direct: impl AsyncFnOnce() -> Result<T>,
    ) -> Result<T> {
        if let Some(writer) = &self.writer {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // Not queued (the writer is gone): nothing was applied, so it runs on its own.
            if writer.send(write(tx)).is_ok() {
                return rx.await.unwrap_or(Err(StoreError::Interrupted));
            }
        }
        direct().await
    }

    /// A column in a condition that must not pick the index: SQLite would otherwise scan a
    /// job's devices by status (thousands of rows) and probe a bulk statement's few hundred
    /// ids for each, instead of looking each id up by the primary key (`+column` keeps SQLite
    /// off an index; PostgreSQL plans by its statistics and needs no hint).
    fn not_indexed(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("+{column}"),
            Dialect::Postgres => column.to_string(),
        }
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
    }
}

/// Turns off SQLite's memory statistics, once per process, before its first connection. With
/// them on (SQLite's default), every allocation SQLite makes takes one process-wide mutex, and
/// the threads of a pool's connections (reading rows copies every value) queue on it.
fn sqlite_without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: called before this process opens any SQLite connection (the first store
        // connects after it), as sqlite3_config requires; after initialization it only returns
        // SQLITE_MISUSE and changes nothing.
        unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            );
        }
    });
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
    async fn delete_by_id(&self, table: &str, id: &str) -> Result<()> {
        let done = sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE id = ?")))
            .bind(id)
            .execute(&*self.writing().await)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// An insert's outcome, with a unique-key violation reported as `Conflict` ("A {what} with the
/// id '{id}' already exists.").
fn inserted<T>(result: std::result::Result<T, sqlx::Error>, what: &str, id: &str) -> Result<()> {
    match result.map_err(StoreError::from) {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(format!(
            "A {what} with the id '{id}' already exists."
        ))),
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
