//! SQL for `api_tokens`. Token values are never stored, only their SHA-256.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_model::api_token::{ApiToken, RoleAssignment};
use jiff::Timestamp;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::corrupt;
use crate::{Page, PageRequest, Result, Store, inserted, now_ms};

/// How long a token looked up by hash is answered from memory. Every request authenticates, and
/// the lookup was half of a `GET /jobs/{id}`'s database work. A token this process creates,
/// replaces or deletes empties the cache at once; the time limit bounds what another process
/// sharing the database could change behind it. Expiry is checked on every request regardless.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
const TOKEN_CACHE_SIZE: usize = 1024;

/// API tokens by hash, with when they were read. The generation changes with every change to
/// the tokens, so a lookup that read the database before a change does not keep what it read.
#[derive(Default)]
pub(crate) struct TokenCache(Mutex<(u64, CachedTokens)>);

/// Tokens by hash, with when each was read.
type CachedTokens = HashMap<String, (ApiToken, Instant)>;

impl TokenCache {
    /// The cached token, or the generation to store a looked-up one with.
    fn get(&self, hash: &str) -> Result<ApiToken, u64> {
        let cache = self.0.lock().unwrap();
        match cache.1.get(hash) {
            Some((token, read)) if read.elapsed() < TOKEN_CACHE_TTL => Ok(token.clone()),
            _ => Err(cache.0),
        }
    }

    fn put(&self, generation: u64, hash: &str, token: &ApiToken) {
        let mut cache = self.0.lock().unwrap();
        if cache.0 != generation {
            return;
        }
        if cache.1.len() >= TOKEN_CACHE_SIZE {
            cache.1.clear();
        }
        cache
            .1
            .insert(hash.to_string(), (token.clone(), Instant::now()));
    }

    fn clear(&self) {
        let mut cache = self.0.lock().unwrap();
        cache.0 += 1;
        cache.1.clear();
    }
}

fn roles_to_json(roles: &[RoleAssignment]) -> String {
    let items: Vec<Value> = roles
        .iter()
        .map(|r| json!({"role": r.role, "organization": r.organization}))
        .collect();
    Value::Array(items).to_string()
}

fn from_row(row: &AnyRow) -> Result<ApiToken> {
    let roles: Value =
        serde_json::from_str(&row.try_get::<String, _>("roles")?).map_err(corrupt)?;
    let roles = roles
        .as_array()
        .ok_or_else(|| corrupt("api token roles are not an array"))?
        .iter()
        .map(|r| RoleAssignment {
            role: r["role"].as_str().unwrap_or_default().to_string(),
            organization: r["organization"].as_str().map(str::to_string),
        })
        .collect();
    let expiry = Timestamp::from_millisecond(row.try_get("expiry_ms")?).map_err(corrupt)?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        roles,
        expiry,
    })
}

impl Store {
    /// Stores a new token. `Conflict` when the id is taken.
    pub async fn insert_api_token(&self, token: &ApiToken, token_hash: &str) -> Result<()> {
        self.tokens.clear();
        let result = sqlx::query(&self.sql(
            "INSERT INTO api_tokens (id, token_hash, roles, expiry_ms, created_ms) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(&token.id)
        .bind(token_hash)
        .bind(roles_to_json(&token.roles))
        .bind(token.expiry.as_millisecond())
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        self.tokens.clear();
        inserted(result, "API token", &token.id)
    }

    /// Stores a token, replacing any with the same id (an operator-supplied admin token).
    pub async fn upsert_api_token(&self, token: &ApiToken, token_hash: &str) -> Result<()> {
        self.tokens.clear();
        let result = sqlx::query(&self.sql(
            "INSERT INTO api_tokens (id, token_hash, roles, expiry_ms, created_ms) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, roles = excluded.roles, \
             expiry_ms = excluded.expiry_ms",
        ))
        .bind(&token.id)
        .bind(token_hash)
        .bind(roles_to_json(&token.roles))
        .bind(token.expiry.as_millisecond())
        .bind(now_ms())
        .execute(&*self.writing().await)
        .await;
        // Again after the write: a lookup that read the old token meanwhile may not keep it.
        self.tokens.clear();
        result?;
        Ok(())
    }

    pub async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        self.row_by_id("api_tokens", "*", id, from_row).await
    }

    /// The token whose value hashes to `token_hash`, if any (expired ones included: the caller
    /// decides what expiry means).
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let generation = match self.tokens.get(token_hash) {
            Ok(token) => return Ok(Some(token)),
            Err(generation) => generation,
        };
        let row = sqlx::query(&self.sql("SELECT * FROM api_tokens WHERE token_hash = ?"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        let token = row.as_ref().map(from_row).transpose()?;
        if let Some(token) = &token {
            self.tokens.put(generation, token_hash, token);
        }
        Ok(token)
    }

    pub async fn list_api_tokens(&self, page: PageRequest<'_>) -> Result<Page<ApiToken>> {
        self.page_of("api_tokens", "*", page, from_row).await
    }

    pub async fn count_api_tokens(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// `NotFound` when there was no such token.
    pub async fn delete_api_token(&self, id: &str) -> Result<()> {
        self.tokens.clear();
        let deleted = self.delete_by_id("api_tokens", id).await;
        // Again after the delete: a lookup that read the token meanwhile may not keep it.
        self.tokens.clear();
        deleted
    }
}
