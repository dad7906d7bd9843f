//! `/apiTokens`: list, get, create, delete. A token's value is returned once, by the create.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Extension, Json, Router};
use flotilla_model::api_token::{ApiToken, ApiTokenSpec, new_token_value, token_hash};
use flotilla_model::ids::check_token_id;
use flotilla_model::roles::{Access, Area};
use serde_json::Value;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::paging::{ListQuery, list_body};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/apiTokens", get(list)).route(
        "/apiTokens/{tokenId}",
        get(get_one).put(create).delete(remove),
    )
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The API token '{id}' was not found."))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_api_tokens(query.page()).await?;
    Ok(Json(list_body(
        page,
        |t| &t.id,
        |t| t.to_json(None),
        &uri,
        &headers,
    )))
}

async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let token = state
        .store
        .api_token(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(token.to_json(None)))
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require(Area::ApiTokens, Access::Write)?;
    check_token_id(&id)?;
    flotilla_model::validate::check_read_only(&Value::Null, &body, &["token"])?;
    let spec = ApiTokenSpec::from_json(&body, jiff::Timestamp::now())?;
    let token = ApiToken {
        id: id.clone(),
        roles: spec.roles,
        expiry: spec.expiry,
    };
    let value = new_token_value(&id, &state.app_id, token.expiry);
    state
        .store
        .insert_api_token(&token, &token_hash(&value))
        .await?;
    tracing::info!(token = %id, by = %caller.token.id, "API token created");
    Ok(Json(token.to_json(Some(&value))))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::ApiTokens, Access::Write)?;
    state
        .store
        .delete_api_token(&id)
        .await
        .map_err(|e| match e {
            flotilla_store::StoreError::NotFound => not_found(&id),
            other => other.into(),
        })?;
    tracing::info!(token = %id, by = %caller.token.id, "API token deleted");
    Ok(StatusCode::NO_CONTENT)
}
