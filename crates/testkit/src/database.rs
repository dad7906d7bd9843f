//! A fresh database per test server.

use std::path::{Path, PathBuf};
use std::process::Command;

use flotilla_model::keys::random_hex;

/// A database of its own (and a directory for the server's files), removed when dropped.
pub struct TestDatabase {
    url: String,
    dir: PathBuf,
    /// The PostgreSQL server's URL and the database's name, when on PostgreSQL.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A new, empty database: on the PostgreSQL server `FLOTILLA_TEST_POSTGRES` names, or a
    /// SQLite file (one file, not `:memory:`: the store's pools open several connections, and
    /// each would get a memory database of its own).
    pub fn fresh() -> TestDatabase {
        // Random, so that test processes running at once never pick the same name.
        let name = format!("flotilla_testkit_{}", random_hex::<8>());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("a fresh temporary directory");
        let postgres = std::env::var("FLOTILLA_TEST_POSTGRES").ok();
        let url = match &postgres {
            Some(server) => {
                psql(server, &format!("CREATE DATABASE {name}"));
                format!("{server}/{name}")
            }
            None => format!("sqlite://{}?mode=rwc", dir.join("flotilla.db").display()),
        };
        TestDatabase {
            url,
            dir,
            postgres: postgres.map(|server| (server, name)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory for the server's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((server, name)) = &self.postgres {
            psql(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one statement against the `postgres` database of the server at `url`.
pub fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .arg(format!("{url}/postgres"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {sql}");
}
