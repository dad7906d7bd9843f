//! Flotilla's storage: one interface ([`Store`]) over an embedded SQLite database (the default)
//! or PostgreSQL (for several replicas). Each resource's SQL lives in its own module; every
//! statement is written once, with `?` placeholders, and runs on both databases.

mod api_tokens;
mod device_groups;
mod device_templates;
mod devices;
mod dialect;
mod enrollment_groups;
mod error;
mod jobs;
mod scheduled_jobs;
mod settings;
mod twins;

pub use device_templates::StoredTemplate;
pub use devices::CloudPropertiesUpdate;
pub use dialect::Dialect;
pub use error::StoreError;
pub use jobs::{DeviceOutcome, Finish, JobDevice, JobPageRequest, JobRecord};
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
}

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let mut options = AnyPoolOptions::new();
        if dialect == Dialect::Sqlite {
            // WAL lets readers run beside the writer; FULL sync keeps every acknowledged write
            // across a crash or power loss; foreign keys are off by default in SQLite.
            options = options.max_connections(8).after_connect(|conn, _meta| {
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
        Ok(Store { pool, dialect })
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
            .execute(&self.pool)
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
