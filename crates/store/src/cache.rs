//! The store's read caches, as one layer with one invalidation hook.
//!
//! Reads of jobs (`job_cache`) and of API tokens (`token_cache`) are answered from memory; every
//! write to the rows they mirror calls [`Caches::changed`] once it has committed. That hook is
//! the only way a cache learns of a change, so when several servers share one database, a
//! change another server announces (PostgreSQL's LISTEN/NOTIFY, say) is one call here.
//! On PostgreSQL, where several servers may share the database, both caches are bypassed:
//! every read goes to the database, so a write acknowledged on one server is seen on every
//! other at once (the thread hops the job cache saves are SQLite's).

use crate::Dialect;
use crate::job_cache::JobCache;
use crate::token_cache::TokenCache;

/// Which cached rows changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Changed {
    /// `jobs` or `job_devices`.
    Jobs,
    ApiTokens,
}

/// Every cache of one store (shared with its group-commit writer, whose commits empty them).
pub(crate) struct Caches {
    pub jobs: JobCache,
    pub tokens: TokenCache,
}

impl Caches {
    /// Caching on SQLite (one server), reading through on PostgreSQL (any number).
    pub(crate) fn for_dialect(dialect: Dialect) -> Caches {
        let cached = dialect == Dialect::Sqlite;
        Caches {
            jobs: JobCache::new(cached),
            tokens: TokenCache::new(cached),
        }
    }

    /// Rows changed (called after the write committed): later readers read them again.
    pub(crate) fn changed(&self, what: Changed) {
        match what {
            Changed::Jobs => self.jobs.changed(),
            Changed::ApiTokens => self.tokens.clear(),
        }
    }
}
