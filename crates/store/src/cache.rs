//! The store's read caches, as one layer with one invalidation hook.
//!
//! Reads of jobs (`job_cache`) and of API tokens (`token_cache`) are answered from memory; every
//! write to the rows they mirror calls [`Caches::changed`] once it has committed. That hook is
//! the only way a cache learns of a change, so when several servers share one database, a
//! change another server announces (PostgreSQL's LISTEN/NOTIFY, say) is one call here.
//! Until then this process sees only its own writes (one server per database, see
//! docs/api-behaviour.md).

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
#[derive(Default)]
pub(crate) struct Caches {
    pub jobs: JobCache,
    pub tokens: TokenCache,
}

impl Caches {
    /// Rows changed (called after the write committed): later readers read them again.
    pub(crate) fn changed(&self, what: Changed) {
        match what {
            Changed::Jobs => self.jobs.changed(),
            Changed::ApiTokens => self.tokens.clear(),
        }
    }
}
