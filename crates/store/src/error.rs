//! What can go wrong in the store, in terms the API maps to HTTP statuses. Errors name what
//! they are about (the kind of entity and its id), never how a client should read it: the API
//! words its own messages.

use serde_json::Value;

/// A kind of stored thing, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Device,
    /// A device's twin (its id is the device's).
    Twin,
    DeviceGroup,
    DeviceTemplate,
    EnrollmentGroup,
    ApiToken,
    Job,
    ScheduledJob,
    Webhook,
}

/// Why a change conflicts with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A row with that id exists already.
    Exists,
    /// Other rows still refer to it (`users` of them).
    InUse { users: i64 },
    /// Other writers kept changing it; every compare-and-swap lost.
    Contended,
}

/// How errors read in logs and in a job device's failure message (the API words its own).
impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Device => "device",
            Entity::Twin => "the twin of device",
            Entity::DeviceGroup => "device group",
            Entity::DeviceTemplate => "device template",
            Entity::EnrollmentGroup => "enrollment group",
            Entity::ApiToken => "API token",
            Entity::Job => "job",
            Entity::ScheduledJob => "scheduled job",
            Entity::Webhook => "webhook",
        })
    }
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictKind::Exists => f.write_str("exists already"),
            ConflictKind::InUse { users } => write!(f, "is still used by {users}"),
            ConflictKind::Contended => f.write_str("kept changing while it was being written"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to change or read does not exist.
    #[error("{entity} '{id}' not found")]
    NotFound { entity: Entity, id: String },
    /// The change conflicts with what is stored.
    #[error("{entity} '{id}' {kind}")]
    Conflict {
        entity: Entity,
        id: String,
        kind: ConflictKind,
    },
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
    /// This server's lease is not known valid (its heartbeat found it declared dead, or it did
    /// not renew it in time, after a pause say): it makes no more writes, and must stop.
    #[error("this server's lease has lapsed; it makes no more writes (restart it)")]
    Fenced,
    /// The job device is no longer this server's to work (another took it over).
    #[error("job device '{0}' is no longer this server's to work")]
    NotOwner(String),
    #[error(transparent)]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn not_found(entity: Entity, id: &str) -> StoreError {
        StoreError::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub fn conflict(entity: Entity, id: &str, kind: ConflictKind) -> StoreError {
        StoreError::Conflict {
            entity,
            id: id.to_string(),
            kind,
        }
    }

    /// Whether a database error is a unique-key violation (a concurrent insert of the same id).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    /// Whether the database refused the statement itself (too complex, a value it cannot cast,
    /// malformed stored JSON), so that running it again fails again, unlike a busy database,
    /// a lost connection or a full disk.
    pub fn is_permanent(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        if let Some(e) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            // Data exceptions, syntax or access rules, program limits.
            return ["22", "42", "54"]
                .iter()
                .any(|class| e.code().starts_with(class));
        }
        // SQLite's primary result code is the extended code's low byte: SQLITE_ERROR,
        // SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE.
        let primary = e
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
            && matches!(primary, Some(1 | 18 | 20 | 25))
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A JSON column's text, parsed.
pub(crate) fn parse_json(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(corrupt)
}
