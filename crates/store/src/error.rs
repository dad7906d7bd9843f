//! What can go wrong in the store, in terms the API maps to HTTP statuses.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to change or read does not exist.
    #[error("not found")]
    NotFound,
    /// A row with that id exists already, or a change would break a reference.
    #[error("{0}")]
    Conflict(String),
    #[error("database URLs must start with sqlite: or postgres:, not {0}:")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A queued write's answer never came (the writing task stopped): it may or may not have
    /// been applied.
    #[error("the write was interrupted; it may or may not have been applied")]
    Interrupted,
    #[error(transparent)]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether a database error is a unique-key violation (a concurrent insert of the same id).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
