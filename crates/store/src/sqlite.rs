//! What the store sets up only on SQLite: its connections' settings, written once.

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

/// Options for a pool of `max` SQLite connections, each set up with what every connection needs
/// and then the `extra` PRAGMAs. WAL lets readers run beside the writer; FULL sync keeps every
/// acknowledged write across a crash or power loss; foreign keys are off by default in SQLite.
/// No ping before each use: an embedded database's connection cannot go stale, and the ping is
/// a round trip to the connection's thread per query (a fifth of a REST GET).
pub(crate) fn pool_options(max: u32, extra: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                let pragmas = format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; {extra}"
                );
                conn.execute(pragmas.as_str()).await?;
                Ok(())
            })
        })
}

/// Turns off SQLite's memory statistics, once per process, before its first connection. With
/// them on (SQLite's default), every allocation SQLite makes takes one process-wide mutex, and
/// the threads of a pool's connections (reading rows copies every value) queue on it.
pub(crate) fn without_memory_statistics() {
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
