//! SQL for `api_tokens`. Token values are never stored, only their SHA-256.

use flotilla_model::api_token::{ApiToken, RoleAssignment};
use jiff::Timestamp;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::cache::Changed;
use crate::error::corrupt;
use crate::{Entity, Page, PageRequest, Result, Store, inserted, now_ms};

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
        self.caches.changed(Changed::ApiTokens);
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
        self.caches.changed(Changed::ApiTokens);
        inserted(result, Entity::ApiToken, &token.id)
    }

    /// Stores a token, replacing any with the same id (an operator-supplied admin token).
    pub async fn upsert_api_token(&self, token: &ApiToken, token_hash: &str) -> Result<()> {
        self.caches.changed(Changed::ApiTokens);
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
        self.caches.changed(Changed::ApiTokens);
        result?;
        Ok(())
    }

    pub async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        self.row_by_id("api_tokens", "*", id, from_row).await
    }

    /// The token whose value hashes to `token_hash`, if any (expired ones included: the caller
    /// decides what expiry means).
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let generation = match self.caches.tokens.get(token_hash) {
            Ok(token) => return Ok(Some(token)),
            Err(generation) => generation,
        };
        let row = sqlx::query(&self.sql("SELECT * FROM api_tokens WHERE token_hash = ?"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        let token = row.as_ref().map(from_row).transpose()?;
        if let Some(token) = &token {
            self.caches.tokens.put(generation, token_hash, token);
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
        self.caches.changed(Changed::ApiTokens);
        let deleted = self.delete_by_id("api_tokens", Entity::ApiToken, id).await;
        // Again after the delete: a lookup that read the token meanwhile may not keep it.
        self.caches.changed(Changed::ApiTokens);
        deleted
    }
}
