//! The `/api` routes, one module per IoT Central resource. Each handler checks the caller's role,
//! validates with the domain model, and reads or writes through the store.

mod api_tokens;
mod conditional;
pub(crate) mod device_commands;
pub(crate) mod device_components;
mod device_connection;
mod device_groups;
pub(crate) mod device_modules;
mod device_properties;
mod device_telemetry;
mod device_templates;
mod devices;
mod enrollment_groups;
mod events;
pub(crate) mod jobs;
mod roles;
pub(crate) mod scheduled_jobs;
pub(crate) mod webhooks;

use axum::http::HeaderMap;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

/// Every `/api` route (paths relative to `/api`), with the OpenAPI operations their handlers
/// declare: the router that serves the requests is the one that collects the document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(api_tokens::router())
        .merge(roles::router())
        .merge(device_templates::router())
        .merge(devices::router())
        .merge(device_connection::router())
        .merge(device_properties::router())
        .merge(device_commands::router())
        .merge(device_telemetry::router())
        .merge(device_components::router())
        .merge(device_modules::router())
        .merge(device_groups::router())
        .merge(enrollment_groups::router())
        .merge(jobs::router())
        .merge(scheduled_jobs::router())
        .merge(events::router())
        .merge(webhooks::router())
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
