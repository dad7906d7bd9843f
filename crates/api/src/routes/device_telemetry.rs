//! `/devices/{id}/telemetry/{name}` and the component variant: the last value a device sent.

use axum::extract::State;
use axum::{Extension, Json};
use flotilla_model::api_token::format_time;
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::{CapabilityKind, find};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::not_found;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::openapi;
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(telemetry))
        .routes(routes!(component_telemetry))
}

/// The last value, `{}` before the first; a name the device's template does not define is 404.
async fn last_value(
    state: &AppState,
    id: &str,
    component: Option<&str>,
    name: &str,
) -> ApiResult<Json<Value>> {
    let device = state.store.device(id).await?.ok_or_else(|| not_found(id))?;
    if let Some(template) = &device.template {
        let capabilities = state.store.template_capabilities(template).await?;
        if find(&capabilities, component, name).is_none_or(|c| c.kind != CapabilityKind::Telemetry)
        {
            return Err(ApiError::not_found(format!(
                "The device template '{template}' has no telemetry '{name}'{}.",
                component
                    .map(|c| format!(" in component '{c}'"))
                    .unwrap_or_default()
            )));
        }
    }
    let value = state.store.telemetry(id, component, name).await?;
    Ok(Json(match value {
        Some((value, time_ms)) => {
            let time = jiff::Timestamp::from_millisecond(time_ms).unwrap_or_default();
            json!({"value": value, "timestamp": format_time(time)})
        }
        None => json!({}),
    }))
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/telemetry/{telemetryName}",
    operation_id = "Devices_GetTelemetryValue",
    tag = "Devices",
    summary = "Get device telemetry value",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("telemetryName" = String, Path, description = "Name of this device telemetry."),
    ),
    responses((status = 200, description = "Success", body = openapi::DeviceTelemetry)),
)]
async fn telemetry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Read)?;
    last_value(&state, &id, None, &name).await
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/components/{componentName}/telemetry/{telemetryName}",
    operation_id = "Devices_GetComponentTelemetryValue",
    tag = "Devices",
    summary = "Get component telemetry value",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("componentName" = String, Path, description = "Name of the device component."),
        ("telemetryName" = String, Path, description = "Name of this device telemetry."),
    ),
    responses((status = 200, description = "Success", body = openapi::DeviceTelemetry)),
)]
async fn component_telemetry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, component, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Read)?;
    last_value(&state, &id, Some(&component), &name).await
}
