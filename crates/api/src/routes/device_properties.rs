//! `/devices/{id}/properties` and `/devices/{id}/components/{component}/properties`: reported
//! values with the state of each writable property, and writes that become desired properties,
//! pushed to a connected device at once or read from its twin when it next connects.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotilla_bus::{Delivery, DesiredPatch};
use flotilla_model::properties::{desired_change, view};
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::Capability;
use flotilla_model::twin::{desired_patch_message, mark_components};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::not_found;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::openapi;
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            get_properties,
            replace_properties,
            update_properties
        ))
        .routes(routes!(
            get_component_properties,
            replace_component_properties,
            update_component_properties
        ))
}

/// The device's template capabilities (none without a template); 404 for an unknown device.
async fn capabilities(state: &AppState, id: &str) -> ApiResult<Vec<Capability>> {
    let device = state.store.device(id).await?.ok_or_else(|| not_found(id))?;
    Ok(match &device.template {
        Some(template) => state.store.template_capabilities(template).await?,
        None => vec![],
    })
}

async fn read(state: &AppState, id: &str, component: Option<&str>) -> ApiResult<Json<Value>> {
    let capabilities = capabilities(state, id).await?;
    if let Some(c) = component
        && !capabilities
            .iter()
            .any(|cap| cap.component.as_deref() == Some(c))
    {
        return Err(ApiError::not_found(format!(
            "The device '{id}' has no component '{c}'."
        )));
    }
    let twin = state.store.twin(id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(view(&twin, component, &capabilities)))
}

/// Checks the write, merges it into the desired properties, and pushes the change to the device.
async fn write(
    state: &AppState,
    id: &str,
    component: Option<&str>,
    body: Value,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let capabilities = capabilities(state, id).await?;
    if capabilities.is_empty() {
        return Err(ApiError::bad_request(format!(
            "The device '{id}' has no device template, so it has no writable properties."
        )));
    }
    let mut change =
        desired_change(&capabilities, component, &body).map_err(ApiError::bad_request)?;
    let components: Vec<String> = capabilities
        .iter()
        .filter_map(|c| c.component.clone())
        .collect();
    mark_components(&mut change, &components);
    let twin = state.store.patch_desired(id, &change).await?;
    let message = desired_patch_message(&change, twin.desired_version, &components);
    let patch = DesiredPatch {
        version: twin.desired_version,
        message,
    };
    let delivery = state.bus.push_desired(id, patch).await;
    tracing::info!(
        device = id,
        version = twin.desired_version,
        pushed = delivery == Delivery::Sent,
        "desired properties set"
    );
    Ok((StatusCode::ACCEPTED, Json(body)))
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/properties",
    operation_id = "Devices_GetProperties",
    tag = "Devices",
    summary = "Get device properties",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = openapi::DeviceProperties)),
)]
async fn get_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Read)?;
    read(&state, &id, None).await
}

#[utoipa::path(
    put,
    path = "/devices/{deviceId}/properties",
    operation_id = "Devices_ReplaceProperties",
    tag = "Devices",
    summary = "Replace device properties",
    description = "Sets the given writable properties (the others keep their desired values).",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    request_body(content = openapi::DeviceProperties, description = "Writable properties by name; a component's as a nested object."),
    responses((status = 202, description = "Accepted", body = openapi::DeviceProperties)),
)]
async fn replace_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    write(&state, &id, None, body).await
}

#[utoipa::path(
    patch,
    path = "/devices/{deviceId}/properties",
    operation_id = "Devices_UpdateProperties",
    tag = "Devices",
    summary = "Update device properties via patch",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    request_body(description = "Writable properties by name; a component's as a nested object.", content((openapi::DeviceProperties = "application/merge-patch+json"), (openapi::DeviceProperties = "application/json"))),
    responses((status = 202, description = "Accepted", body = openapi::DeviceProperties)),
)]
async fn update_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    write(&state, &id, None, body).await
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/components/{componentName}/properties",
    operation_id = "Devices_GetComponentProperties",
    tag = "Devices",
    summary = "Get device properties for a specific component",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("componentName" = String, Path, description = "Name of the device component."),
    ),
    responses((status = 200, description = "Success", body = openapi::DeviceProperties)),
)]
async fn get_component_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, component)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Read)?;
    read(&state, &id, Some(&component)).await
}

#[utoipa::path(
    put,
    path = "/devices/{deviceId}/components/{componentName}/properties",
    operation_id = "Devices_ReplaceComponentProperties",
    tag = "Devices",
    summary = "Replace device properties for a specific component",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("componentName" = String, Path, description = "Name of the device component."),
    ),
    request_body(content = openapi::DeviceProperties, description = "The component's writable properties by name."),
    responses((status = 202, description = "Accepted", body = openapi::DeviceProperties)),
)]
async fn replace_component_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, component)): Path<(String, String)>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    write(&state, &id, Some(&component), body).await
}

#[utoipa::path(
    patch,
    path = "/devices/{deviceId}/components/{componentName}/properties",
    operation_id = "Devices_UpdateComponentProperties",
    tag = "Devices",
    summary = "Update device properties for a specific component via patch",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("componentName" = String, Path, description = "Name of the device component."),
    ),
    request_body(description = "The component's writable properties by name.", content((openapi::DeviceProperties = "application/merge-patch+json"), (openapi::DeviceProperties = "application/json"))),
    responses((status = 202, description = "Accepted", body = openapi::DeviceProperties)),
)]
async fn update_component_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, component)): Path<(String, String)>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    write(&state, &id, Some(&component), body).await
}
