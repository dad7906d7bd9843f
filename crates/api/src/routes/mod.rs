//! The `/api` routes, one module per IoT Central resource. Each handler checks the caller's role,
//! validates with the domain model, and reads or writes through the store.

mod api_tokens;
mod device_commands;
mod device_components;
mod device_groups;
mod device_modules;
mod device_properties;
mod device_telemetry;
mod device_templates;
mod devices;
mod enrollment_groups;
mod jobs;
mod roles;
mod scheduled_jobs;

use axum::http::HeaderMap;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Every `/api` route (paths relative to `/api`), with the OpenAPI operations their handlers
/// declare: the router that serves the requests is the one that collects the document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(api_tokens::router())
        .merge(roles::router())
        .merge(device_templates::router())
        .merge(devices::router())
        .merge(device_properties::router())
        .merge(device_commands::router())
        .merge(device_telemetry::router())
        .merge(device_components::router())
        .merge(device_modules::router())
        .merge(device_groups::router())
        .merge(enrollment_groups::router())
        .merge(jobs::router())
        .merge(scheduled_jobs::router())
}

/// Runs a read-modify-write of one entity (`entity` names it, e.g. `devices/{id}`) until it
/// applies: `attempt` reads, checks and writes with compare-and-swap, and answers `None` when
/// another writer changed the entity between its read and its write. Without a precondition the
/// next attempt applies the change to what that writer left (last writer wins), so a merge patch
/// is never refused for contention; with one, the next attempt reads the new etag and answers
/// 412. Every retry follows another writer's success, and this process's writers of the entity
/// take turns, so retries stay few.
async fn read_modify_write<T, Attempt>(
    state: &AppState,
    entity: String,
    mut attempt: impl FnMut() -> Attempt,
) -> ApiResult<T>
where
    Attempt: Future<Output = ApiResult<Option<T>>>,
{
    let _turn = state.turns.take(entity).await;
    loop {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
}

/// Optimistic concurrency: the etag the client says it last saw, from `If-Match` (preview) or
/// the body's `etag` field. `*` matches anything.
fn expected_etag(headers: &HeaderMap, body: Option<&Value>) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get("if-match") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("The If-Match header is not valid text."))?;
        return Ok((value.trim() != "*").then(|| value.trim().to_string()));
    }
    match body.and_then(|b| b.get("etag")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(etag)) => Ok(Some(etag.clone())),
        Some(_) => Err(ApiError::bad_request("The field 'etag' must be a string.")),
    }
}

/// 412 unless the client's etag (if it sent one) is the current one.
fn check_etag(expected: Option<&str>, current: &str) -> Result<(), ApiError> {
    match expected {
        Some(expected) if expected != current => Err(ApiError::precondition_failed(format!(
            "The etag {expected} does not match the current etag {current}; read the resource again and retry."
        ))),
        _ => Ok(()),
    }
}
