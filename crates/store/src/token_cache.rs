//! API tokens recently looked up by hash, answered from memory for a short while.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_model::api_token::ApiToken;

/// How long a token looked up by hash is answered from memory (SQLite only: on PostgreSQL other
/// servers may change tokens, and a token deleted on one is refused on every other at once).
/// Every request authenticates, and the lookup was half of a `GET /jobs/{id}`'s database work.
/// A token this process creates, replaces or deletes empties the cache at once; the time limit
/// bounds what another process could change behind it. Expiry is checked on every request
/// regardless.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
const TOKEN_CACHE_SIZE: usize = 1024;

/// API tokens by hash, with when they were read. The generation changes with every change to
/// the tokens, so a lookup that read the database before a change does not keep what it read.
#[derive(Default)]
pub(crate) struct TokenCache {
    state: Mutex<(u64, CachedTokens)>,
    /// When false, nothing is kept: every lookup reads the database.
    cached: bool,
}

/// Tokens by hash, with when each was read.
type CachedTokens = HashMap<String, (ApiToken, Instant)>;

impl TokenCache {
    pub(crate) fn new(cached: bool) -> TokenCache {
        TokenCache {
            state: Mutex::default(),
            cached,
        }
    }

    /// The cached token, or the generation to store a looked-up one with.
    pub(crate) fn get(&self, hash: &str) -> Result<ApiToken, u64> {
        let cache = self.state.lock().unwrap();
        match cache.1.get(hash) {
            Some((token, read)) if read.elapsed() < TOKEN_CACHE_TTL => Ok(token.clone()),
            _ => Err(cache.0),
        }
    }

    pub(crate) fn put(&self, generation: u64, hash: &str, token: &ApiToken) {
        let mut cache = self.state.lock().unwrap();
        if !self.cached || cache.0 != generation {
            return;
        }
        if cache.1.len() >= TOKEN_CACHE_SIZE {
            cache.1.clear();
        }
        cache
            .1
            .insert(hash.to_string(), (token.clone(), Instant::now()));
    }

    pub(crate) fn clear(&self) {
        let mut cache = self.state.lock().unwrap();
        cache.0 += 1;
        cache.1.clear();
    }
}
