//! `/apiTokens`: list, get, create, delete. A token's value is returned once, by the create.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotilla_model::api_token::{
    ApiToken, ApiTokenBody, ApiTokenSpec, new_token_value, token_hash,
};
use flotilla_model::ids::check_token_id;
use flotilla_model::roles::{Access, Area};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::ApiTokenCollection;
use crate::error::{ApiError, ApiResult};
use crate::openapi::ListParams;
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, create, remove))
}

fn not_found(id: &str) -> ApiError {
    ApiError::missing(flotilla_store::Entity::ApiToken, id)
}

#[utoipa::path(
    get,
    path = "/apiTokens",
    operation_id = "ApiTokens_List",
    tag = "ApiTokens",
    summary = "Get the list of API tokens in an application. The token value will never be returned for security reasons.",
    params(ListParams),
    responses((status = 200, description = "Success", body = ApiTokenCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<ApiTokenCollection>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_api_tokens(query.page()).await?;
    Ok(Json(list_body(
        page,
        |t| &t.id,
        |t| t.body(None),
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/apiTokens/{tokenId}",
    operation_id = "ApiTokens_Get",
    tag = "ApiTokens",
    summary = "Get an API token by ID.",
    params(("tokenId" = String, Path, description = "Unique ID of the API token.")),
    responses((status = 200, description = "Success", body = ApiTokenBody)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiTokenBody>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let token = state
        .store
        .api_token(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(token.body(None)))
}

#[utoipa::path(
    put,
    path = "/apiTokens/{tokenId}",
    operation_id = "ApiTokens_Create",
    tag = "ApiTokens",
    summary = "Create a new API token in the application to use in the IoT Central public API. The token value will be returned in the response, and won't be returned again in subsequent requests.",
    params(("tokenId" = String, Path, description = "Unique ID of the API token.")),
    request_body(content = ApiTokenBody, description = "API token body."),
    responses((status = 200, description = "Success: the token, with its value", body = ApiTokenBody)),
)]
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<ApiTokenBody>> {
    caller.require(Area::ApiTokens, Access::Write)?;
    let body = body.into_json()?;
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
    Ok(Json(token.body(Some(value))))
}

#[utoipa::path(
    delete,
    path = "/apiTokens/{tokenId}",
    operation_id = "ApiTokens_Remove",
    tag = "ApiTokens",
    summary = "Delete an API token.",
    params(("tokenId" = String, Path, description = "Unique ID of the API token.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::ApiTokens, Access::Write)?;
    state.store.delete_api_token(&id).await?;
    tracing::info!(token = %id, by = %caller.token.id, "API token deleted");
    Ok(StatusCode::NO_CONTENT)
}
