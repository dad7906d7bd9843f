//! `/devices/{id}/commands/{name}` and the component variant: run a command on a device (a
//! direct method: `{component}*{name}` for a component's) and wait for its answer, and read a
//! command's history.

use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotilla_bus::{InvokeError, MethodCall, method_name};
use flotilla_model::roles::{Access, Area};
use flotilla_model::schema::check_value;
use flotilla_model::template::{CapabilityKind, find};
use flotilla_model::validate::Fields;
use flotilla_store::CommandRecord;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::not_found;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::DeviceCommandCollection;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, ListParams};
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history, run))
        .routes(routes!(component_history, run_component))
}

/// A command run on a device, and the device's answer (this type is also its OpenAPI schema, of
/// the request too: a client sends `request` and the timeouts).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommand {
    /// The id of this execution.
    #[schema(read_only)]
    pub id: String,
    /// Seconds (0 to 30) to wait for a disconnected device to connect. Default 0.
    #[schema(required = false, minimum = 0, maximum = 30)]
    pub connection_timeout: i64,
    /// Seconds (5 to 30) to wait for the device's answer. Default 30.
    #[schema(required = false, minimum = 5, maximum = 30)]
    pub response_timeout: i64,
    /// The command's payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The device's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub response: Option<Value>,
    /// The status code the device answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false)]
    pub response_code: Option<i64>,
}

fn render(command: &CommandRecord) -> DeviceCommand {
    DeviceCommand {
        id: command.id.clone(),
        connection_timeout: command.connection_timeout,
        response_timeout: command.response_timeout,
        request: command.request.clone(),
        response: command.response.clone(),
        response_code: command.response_code,
    }
}

/// A timeout field: a whole number of seconds within the spec's range.
fn seconds(
    fields: &Fields,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> ApiResult<i64> {
    match fields.get(name) {
        None => Ok(default),
        Some(value) => value.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
            ApiError::bad_request(format!(
                "The field '{name}' must be a whole number of seconds from {} to {}.",
                range.start(),
                range.end()
            ))
        }),
    }
}

async fn run_command(
    state: &AppState,
    id: &str,
    component: Option<&str>,
    name: &str,
    mut body: Value,
) -> ApiResult<(StatusCode, Json<DeviceCommand>)> {
    let device = state.store.device(id).await?.ok_or_else(|| not_found(id))?;
    let template = device.template.as_deref().ok_or_else(|| {
        ApiError::bad_request(format!(
            "The device '{id}' has no device template, so it has no commands."
        ))
    })?;
    let capabilities = state.store.template_capabilities(template).await?;
    let command = find(&capabilities, component, name)
        .filter(|c| c.kind == CapabilityKind::Command)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The device template '{template}' has no command '{}'.",
                match component {
                    Some(c) => format!("{c}.{name}"),
                    None => name.to_string(),
                }
            ))
        })?;
    let fields = Fields::of(&body)?;
    let connection_timeout = seconds(&fields, "connectionTimeout", 0..=30, 0)?;
    let response_timeout = seconds(&fields, "responseTimeout", 5..=30, 30)?;
    // Taken out of the body, not copied: a large request is held while the device is awaited,
    // and the body's memory budget counts one parsed copy of it besides the call's.
    let request = body
        .get_mut("request")
        .map(Value::take)
        .filter(|request| !request.is_null());
    drop(body);
    if let Some(request) = &request
        && !command.schema.is_null()
    {
        check_value(&command.schema, request)
            .map_err(|problem| ApiError::bad_request(format!("The field 'request' {problem}.")))?;
    }
    let method = method_name(component, name);
    let call = MethodCall {
        method: method.clone(),
        payload: request.clone().unwrap_or(Value::Null),
        connect_timeout: Duration::from_secs(connection_timeout as u64),
        response_timeout: Duration::from_secs(response_timeout as u64),
    };
    let outcome = state.bus.invoke(id, call).await;
    let mut record = CommandRecord {
        id: uuid::Uuid::now_v7().to_string(),
        device_id: id.to_string(),
        component: component.map(str::to_string),
        name: name.to_string(),
        connection_timeout,
        response_timeout,
        request,
        response: None,
        response_code: None,
    };
    if let Ok(answer) = &outcome {
        record.response = (!answer.payload.is_null()).then(|| answer.payload.clone());
        record.response_code = Some(answer.status);
    }
    state.store.insert_command(&record).await?;
    match outcome {
        Ok(_) => Ok((StatusCode::CREATED, Json(render(&record)))),
        Err(InvokeError::Timeout) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "GatewayTimeout",
            format!(
                "The device '{id}' did not answer the command '{method}' within {response_timeout} s."
            ),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "DeviceNotOnline",
            format!(
                "The command '{method}' could not reach the device '{id}' within {connection_timeout} s: {e}."
            ),
        )),
    }
}

async fn list_history(
    state: &AppState,
    caller: &Caller,
    id: &str,
    component: Option<&str>,
    name: &str,
    uri: &axum::http::Uri,
    origin: &Origin,
) -> ApiResult<Json<DeviceCommandCollection>> {
    state.store.device(id).await?.ok_or_else(|| not_found(id))?;
    let query = ListQuery::parse(uri, caller)?;
    let page = state
        .store
        .command_history(id, component, name, query.page())
        .await?;
    Ok(Json(list_body(page, |c| &c.id, render, uri, origin)))
}

#[utoipa::path(
    post,
    path = "/devices/{deviceId}/commands/{commandName}",
    operation_id = "Devices_RunCommand",
    tag = "Devices",
    summary = "Run a device command",
    description = "Waits up to connectionTimeout for the device to connect (else 404 DeviceNotOnline) and up to responseTimeout for its answer (else 504 GatewayTimeout).",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("commandName" = String, Path, description = "Name of this device command."),
    ),
    request_body(content = DeviceCommand, description = "The command's payload and timeouts."),
    responses(
        (status = 201, description = "Success: the device's answer", body = DeviceCommand),
        (status = 404, description = "No such device or command, or the device was not connected in time (code `DeviceNotOnline`)", body = openapi::Error),
        (status = 504, description = "The device did not answer in time (code `GatewayTimeout`)", body = openapi::Error),
    ),
)]
async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<DeviceCommand>)> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    run_command(&state, &id, None, &name, body).await
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/commands/{commandName}",
    operation_id = "Devices_GetCommandHistory",
    tag = "Devices",
    summary = "Get device command history",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("commandName" = String, Path, description = "Name of this device command."),
        ListParams,
    ),
    responses((status = 200, description = "Success", body = DeviceCommandCollection)),
)]
async fn history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<DeviceCommandCollection>> {
    caller.require(Area::Devices, Access::Read)?;
    list_history(&state, &caller, &id, None, &name, &uri, &origin).await
}

#[utoipa::path(
    post,
    path = "/devices/{deviceId}/components/{componentName}/commands/{commandName}",
    operation_id = "Devices_RunComponentCommand",
    tag = "Devices",
    summary = "Run a component command",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("componentName" = String, Path, description = "Name of the device component."),
        ("commandName" = String, Path, description = "Name of this device command."),
    ),
    request_body(content = DeviceCommand, description = "The command's payload and timeouts."),
    responses(
        (status = 201, description = "Success: the device's answer", body = DeviceCommand),
        (status = 404, description = "No such device or command, or the device was not connected in time (code `DeviceNotOnline`)", body = openapi::Error),
        (status = 504, description = "The device did not answer in time (code `GatewayTimeout`)", body = openapi::Error),
    ),
)]
async fn run_component(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, component, name)): Path<(String, String, String)>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<DeviceCommand>)> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    run_command(&state, &id, Some(&component), &name, body).await
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/components/{componentName}/commands/{commandName}",
    operation_id = "Devices_GetComponentCommandHistory",
    tag = "Devices",
    summary = "Get component command history",
    params(
        ("deviceId" = String, Path, description = "Unique ID of the device."),
        ("componentName" = String, Path, description = "Name of the device component."),
        ("commandName" = String, Path, description = "Name of this device command."),
        ListParams,
    ),
    responses((status = 200, description = "Success", body = DeviceCommandCollection)),
)]
async fn component_history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, component, name)): Path<(String, String, String)>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<DeviceCommandCollection>> {
    caller.require(Area::Devices, Access::Read)?;
    list_history(&state, &caller, &id, Some(&component), &name, &uri, &origin).await
}
