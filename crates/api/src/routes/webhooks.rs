//! `/webhooks` (Flotilla extension): create or replace, get, list, delete, and each webhook's
//! delivery history. Only the role that manages API tokens may use them: a webhook sends job
//! data out of the application and holds a secret (which is never returned).

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotilla_model::api_token::format_time;
use flotilla_model::ids::check_entity_id;
use flotilla_model::roles::{Access, Area};
use flotilla_model::validate::Fields;
use flotilla_model::webhook::{Webhook, WebhookBody, WebhookSpec};
use flotilla_store::DeliveryRecord;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::{WebhookCollection, WebhookDeliveryCollection};
use crate::error::{ApiError, ApiResult};
use crate::openapi::ListParams;
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, put, remove))
        .routes(routes!(deliveries))
}

fn not_found(id: &str) -> ApiError {
    ApiError::missing(flotilla_store::Entity::Webhook, id)
}

/// One delivery as the history shows it (this type is also its OpenAPI schema).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The delivery's id, sent as `X-Flotilla-Delivery` on every attempt.
    pub id: String,
    /// `job.status`, `job.progress` or `job.device`.
    pub event: String,
    /// `pending` (due, or to be tried again), `delivered` or `failed` (gave up).
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// The HTTP status of the last answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub response_status: Option<i64>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub last_attempt: Option<String>,
    /// When a pending delivery is tried next.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub next_attempt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub delivered: Option<String>,
    /// The body POSTed (`{"id","type","time","data"}`).
    pub body: Value,
}

fn time(ms: i64) -> String {
    format_time(jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

fn render_delivery(d: &DeliveryRecord) -> WebhookDelivery {
    WebhookDelivery {
        id: d.id.clone(),
        event: d.event.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        response_status: d.response_status,
        error: d.error.clone(),
        created: time(d.created_ms),
        last_attempt: d.last_attempt_ms.map(time),
        next_attempt: d.next_ms.map(time),
        delivered: d.delivered_ms.map(time),
        body: serde_json::from_str(&d.body).unwrap_or(Value::Null),
    }
}

#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "Webhooks_List",
    tag = "Webhooks",
    summary = "Get the list of webhooks (Flotilla extension)",
    description = "Administrators only. Secrets are never returned.",
    params(ListParams),
    responses((status = 200, description = "Success", body = WebhookCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<WebhookCollection>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_webhooks(query.page()).await?;
    Ok(Json(list_body(
        page,
        |w| &w.id,
        Webhook::body,
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/webhooks/{webhookId}",
    operation_id = "Webhooks_Get",
    tag = "Webhooks",
    summary = "Get a webhook by ID (Flotilla extension)",
    params(("webhookId" = String, Path, description = "Unique ID of the webhook.")),
    responses((status = 200, description = "Success", body = WebhookBody)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookBody>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let webhook = state
        .store
        .webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(webhook.body()))
}

#[utoipa::path(
    put,
    path = "/webhooks/{webhookId}",
    operation_id = "Webhooks_Create",
    tag = "Webhooks",
    summary = "Create or replace a webhook (Flotilla extension)",
    description = "Body: `url` (http or https), `secret` (16 to 256 characters, write-only), `events` (`job.status`, `job.progress`, `job.device`), optional `displayName`. Each delivery is a POST signed with `X-Flotilla-Signature: sha256=<hex HMAC-SHA256 of the body>`.",
    params(("webhookId" = String, Path, description = "Unique ID of the webhook.")),
    request_body(content = crate::openapi::WebhookRequest, description = "The webhook, with its `secret`."),
    responses((status = 200, description = "Success (without the secret)", body = WebhookBody)),
)]
async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<WebhookBody>> {
    caller.require(Area::ApiTokens, Access::Write)?;
    let body = body.into_json()?;
    check_entity_id("webhookId", &id)?;
    Fields::of(&body)?.check_path_id("id", &id)?;
    let spec = WebhookSpec::from_json(&body)?;
    let webhook = Webhook {
        id: id.clone(),
        url: spec.url,
        secret: spec.secret,
        events: spec.events,
        display_name: spec.display_name,
    };
    let created = state.store.put_webhook(&webhook).await?;
    tracing::info!(webhook = %id, created, by = %caller.token.id, "webhook stored");
    Ok(Json(webhook.body()))
}

#[utoipa::path(
    delete,
    path = "/webhooks/{webhookId}",
    operation_id = "Webhooks_Remove",
    tag = "Webhooks",
    summary = "Delete a webhook and its deliveries (Flotilla extension)",
    params(("webhookId" = String, Path, description = "Unique ID of the webhook.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::ApiTokens, Access::Write)?;
    state.store.delete_webhook(&id).await?;
    tracing::info!(webhook = %id, by = %caller.token.id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/webhooks/{webhookId}/deliveries",
    operation_id = "Webhooks_ListDeliveries",
    tag = "Webhooks",
    summary = "Get a webhook's deliveries, newest first (Flotilla extension)",
    params(("webhookId" = String, Path, description = "Unique ID of the webhook."), ListParams),
    responses((status = 200, description = "Success", body = WebhookDeliveryCollection)),
)]
async fn deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<WebhookDeliveryCollection>> {
    caller.require(Area::ApiTokens, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    state
        .store
        .webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let page = query.page();
    let deliveries = state
        .store
        .webhook_deliveries(&id, page.after, page.size)
        .await?;
    Ok(Json(list_body(
        deliveries,
        |d| &d.id,
        render_delivery,
        &uri,
        &origin,
    )))
}
