//! One server per SQLite database: a server takes the database's lock file before it touches
//! the database, and holds it for its life. The operating system releases the lock when the
//! process ends, however it ends, so a server killed with SIGKILL leaves nothing behind for the
//! next start to clean up. A PostgreSQL database is shared by as many servers as run on it
//! (cluster mode), so it has no such lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use crate::{Dialect, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error(
        "another flotilla server{holder} is using {what}; stop it first (one server at a time)"
    )]
    Held { what: String, holder: String },
    #[error("locking {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A file locked (flock) by this process until the value is dropped or the process ends. The
/// file holds the holder's process id, for the message another process gets.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

impl LockFile {
    /// Locks `path` (created if missing) for `what` it stands for, or says who holds it.
    pub fn acquire(path: &Path, what: &str) -> Result<LockFile, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                writeln!(file, "{}", std::process::id()).map_err(io)?;
                Ok(LockFile { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                Err(LockError::Held {
                    what: what.to_string(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// A database's lock, held by this server, or why it needs none.
#[derive(Debug)]
pub enum InstanceLock {
    /// `<database>.lock` beside a SQLite file.
    SqliteFile { database: PathBuf, _lock: LockFile },
    /// An in-memory SQLite database is this process's alone.
    InMemory,
    /// A PostgreSQL database is shared by every server on it.
    Shared,
}

impl InstanceLock {
    /// Takes the lock of the SQLite database at `url`, or says that another server has it.
    pub async fn acquire(url: &str) -> Result<InstanceLock, LockError> {
        match Dialect::of_url(url)? {
            Dialect::Sqlite => {
                if sqlite_in_memory(url) {
                    return Ok(InstanceLock::InMemory);
                }
                let database = SqliteConnectOptions::from_str(url)
                    .map_err(StoreError::from)?
                    .get_filename()
                    .to_path_buf();
                let mut lock_path = database.clone().into_os_string();
                lock_path.push(".lock");
                let lock = LockFile::acquire(
                    Path::new(&lock_path),
                    &format!("the database {}", database.display()),
                )?;
                Ok(InstanceLock::SqliteFile {
                    database,
                    _lock: lock,
                })
            }
            Dialect::Postgres => Ok(InstanceLock::Shared),
        }
    }

    /// The SQLite database file, when the database is one.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match self {
            InstanceLock::SqliteFile { database, .. } => Some(database),
            _ => None,
        }
    }
}

/// Whether a SQLite URL names an in-memory database (`sqlite::memory:`, `?mode=memory`), as
/// sqlx reads it.
fn sqlite_in_memory(url: &str) -> bool {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-lock-{}-{}",
            std::process::id(),
            flotilla_model::keys::random_hex::<4>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_sqlite_file_is_locked_once_until_released() {
        let dir = temp_dir();
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.display());
        let first = InstanceLock::acquire(&url).await.unwrap();
        assert_eq!(first.sqlite_file(), Some(dir.join("db.sqlite").as_path()));
        let refused = InstanceLock::acquire(&url).await.unwrap_err().to_string();
        assert!(
            refused.contains("another flotilla server")
                && refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(first);
        InstanceLock::acquire(&url).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn postgresql_databases_are_shared_without_a_lock() {
        // Nothing listens on port 1: taking no lock, it connects to nothing.
        let lock = InstanceLock::acquire("postgres://flotilla@127.0.0.1:1/db")
            .await
            .unwrap();
        assert!(matches!(lock, InstanceLock::Shared));
    }

    #[tokio::test]
    async fn in_memory_databases_need_no_lock() {
        let lock = InstanceLock::acquire("sqlite::memory:").await.unwrap();
        assert!(lock.sqlite_file().is_none());
    }
}
