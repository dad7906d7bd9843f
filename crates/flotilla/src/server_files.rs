//! What the server keeps on disk is private to its user, and one server at a time uses it: the
//! database holds the enrollment groups' keys, from which every device's key derives. Each
//! server has a data dir of its own; several share one database only on PostgreSQL.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use flotilla_store::{InstanceLock, LockFile, Store};

/// Makes the data dir private (creating it) and locks it for this process's life. From here on,
/// every file this process creates is private too: SQLite adds `-wal` and `-shm` files beside
/// the database whenever it needs them, so a umask covers them where a chmod could not.
pub fn open_data_dir(path: &Path) -> anyhow::Result<LockFile> {
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating the data dir {}", path.display()))?;
    make_private(path, 0o700)?;
    LockFile::acquire(
        &path.join("server.lock"),
        &format!("the data dir {}", path.display()),
    )
    .context("locking the data dir")
}

/// What keeps a data dir and its database this process's while it runs.
pub struct Locks {
    _data_dir: LockFile,
    _database: InstanceLock,
}

/// Opens the data dir and the database (`database_url`, else a SQLite file in the data dir),
/// locked for as long as the returned `Locks` live: `serve` and `import` open them the same way,
/// and refuse while another process holds them.
pub async fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<(Store, Locks)> {
    let data_dir_lock = open_data_dir(data_dir)?;
    let database_url = database_url.map(str::to_string).unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("flotilla.db").display()
        )
    });
    let database_lock = lock_database(&database_url)
        .await
        .with_context(|| format!("opening the database {}", redact(&database_url)))?;
    let store = Store::connect(&database_url)
        .await
        .with_context(|| format!("opening the database {}", redact(&database_url)))?;
    Ok((
        store,
        Locks {
            _data_dir: data_dir_lock,
            _database: database_lock,
        },
    ))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Locks a SQLite database for this process's life (a PostgreSQL database is shared by the
/// servers on it); a SQLite database's files that an older version left readable by others
/// are made private.
pub async fn lock_database(url: &str) -> anyhow::Result<InstanceLock> {
    let lock = InstanceLock::acquire(url)
        .await
        .context("locking the database")?;
    if let Some(database) = lock.sqlite_file() {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = database.as_os_str().to_owned();
            file.push(suffix);
            let file = Path::new(&file);
            if file.exists() {
                make_private(file, 0o600)?;
            }
        }
    }
    Ok(lock)
}

/// Takes group and other users' access away from `path` if it has any.
fn make_private(path: &Path, mode: u32) -> anyhow::Result<()> {
    let current = std::fs::metadata(path)
        .with_context(|| format!("reading the mode of {}", path.display()))?
        .permissions()
        .mode();
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private", path.display()))?;
        tracing::warn!(path = %path.display(), was = format!("{:o}", current & 0o777), "was open to other users; made private");
    }
    Ok(())
}

/// The data dir's own id (made at its first use, kept in `instance-id`): a server restarted on
/// the same data dir is the same instance, and retires the registration its predecessor left
/// (see `Store::register_replica`).
pub fn instance_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => write_instance_id(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_instance_id(&path),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_instance_id(path: &Path) -> anyhow::Result<String> {
    let id = flotilla_model::keys::random_hex::<16>();
    std::fs::write(path, format!("{id}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}
