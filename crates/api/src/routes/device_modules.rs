//! `/devices/{id}/modules` and the module routes below it. Modules are IoT Edge's, which
//! Flotilla does not run: every device has none, so the list is empty and every module route
//! answers IoT Central's 404 for an unknown module (after the device's own 404).

use axum::extract::State;
use axum::{Extension, Json};
use flotilla_model::roles::{Access, Area};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::device_commands::DeviceCommand;
use super::devices::not_found;
use crate::auth::Caller;
use crate::collections::{self, ModuleCollection};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, CommandPath, ComponentPath, ListParams, TelemetryPath};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(list_module_components))
        .routes(routes!(
            get_module_properties,
            replace_module_properties,
            update_module_properties
        ))
        .routes(routes!(get_module_telemetry))
        .routes(routes!(get_module_command_history, run_module_command))
        .routes(routes!(
            get_module_component_properties,
            replace_module_component_properties,
            update_module_component_properties
        ))
        .routes(routes!(get_module_component_telemetry))
        .routes(routes!(
            get_module_component_command_history,
            run_module_component_command
        ))
}

/// An IoT Edge module of a device (this type is also its OpenAPI schema). Flotilla's devices
/// have none, so the list is always empty.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    #[serde(rename = "@id")]
    pub id: String,
    /// `["Relationship", "SemanticType/EdgeModule"]`.
    #[serde(rename = "@type")]
    pub types: Vec<String>,
    /// The module's name, as in `/modules/{moduleName}`.
    pub name: String,
}

/// The path parameters every module route has (the others are never reached).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct ModulePath {
    /// Unique ID of the device.
    device_id: String,
    /// Name of the device module.
    module_name: String,
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/modules",
    operation_id = "Devices_ListModules",
    tag = "Devices",
    summary = "List the modules present in a device",
    description = "Always empty: devices here are not IoT Edge devices.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = ModuleCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModuleCollection>> {
    caller.require(Area::Devices, Access::Read)?;
    state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(ModuleCollection {
        value: Vec::new(),
        next_link: None,
    }))
}

/// 404 for the device if it does not exist, else 404 for its module, which cannot.
async fn unknown_module(state: &AppState, path: &ModulePath) -> ApiError {
    let ModulePath {
        device_id,
        module_name,
    } = path;
    match state.store.device(device_id).await {
        Ok(Some(_)) => ApiError::not_found(format!(
            "The module '{module_name}' was not found on the device '{device_id}'."
        )),
        Ok(None) => not_found(device_id),
        Err(e) => e.into(),
    }
}

/// A module route: its OpenAPI operation (the spec's success response, and the 404 it always
/// gives), and a handler that checks the caller may take `access` to devices, then answers 404.
macro_rules! module_route {
    (
        $name:ident, $access:expr, $method:ident $path:literal, $id:literal, $summary:literal,
        params($($param:tt)*), $(body = $body:path,)? $status:literal => $response:path
    ) => {
        #[utoipa::path(
            $method,
            path = $path,
            operation_id = $id,
            tag = "Devices",
            summary = $summary,
            params(ModulePath, $($param)*),
            $(request_body(content = $body, description = "The body the spec declares (never read: no module exists)."),)?
            responses(
                (status = $status, description = "Success", body = $response),
                (status = 404, description = "No such device or module", body = openapi::Error),
            ),
        )]
        async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(path): Path<ModulePath>,
        ) -> ApiResult<Json<Value>> {
            caller.require(Area::Devices, $access)?;
            Err(unknown_module(&state, &path).await)
        }
    };
}

module_route!(
    list_module_components, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/components",
    "Devices_ListModuleComponents", "List the components present in a module",
    params(), 200 => collections::ComponentCollection
);
module_route!(
    get_module_properties, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/properties",
    "Devices_GetModuleProperties", "Get module properties",
    params(), 200 => openapi::DeviceProperties
);
module_route!(
    replace_module_properties, Access::Write,
    put "/devices/{deviceId}/modules/{moduleName}/properties",
    "Devices_ReplaceModuleProperties", "Replace module properties",
    params(), body = openapi::DeviceProperties, 202 => openapi::DeviceProperties
);
module_route!(
    update_module_properties, Access::Write,
    patch "/devices/{deviceId}/modules/{moduleName}/properties",
    "Devices_UpdateModuleProperties", "Update module properties via patch",
    params(), body = openapi::MergePatch, 202 => openapi::DeviceProperties
);
module_route!(
    get_module_telemetry, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/telemetry/{telemetryName}",
    "Devices_GetModuleTelemetryValue", "Get module telemetry value",
    params(TelemetryPath), 200 => openapi::DeviceTelemetry
);
module_route!(
    get_module_command_history, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/commands/{commandName}",
    "Devices_GetModuleCommandHistory", "Get module command history",
    params(CommandPath, ListParams), 200 => collections::DeviceCommandCollection
);
module_route!(
    run_module_command, Access::Write,
    post "/devices/{deviceId}/modules/{moduleName}/commands/{commandName}",
    "Devices_RunModuleCommand", "Run a module command",
    params(CommandPath), body = DeviceCommand, 201 => DeviceCommand
);
module_route!(
    get_module_component_properties, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/properties",
    "Devices_GetModuleComponentProperties", "Get module properties for a specific component",
    params(ComponentPath), 200 => openapi::DeviceProperties
);
module_route!(
    replace_module_component_properties, Access::Write,
    put "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/properties",
    "Devices_ReplaceModuleComponentProperties", "Replace module properties for a specific component",
    params(ComponentPath), body = openapi::DeviceProperties, 202 => openapi::DeviceProperties
);
module_route!(
    update_module_component_properties, Access::Write,
    patch "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/properties",
    "Devices_UpdateModuleComponentProperties", "Update module properties for a specific component via patch",
    params(ComponentPath), body = openapi::MergePatch, 202 => openapi::DeviceProperties
);
module_route!(
    get_module_component_telemetry, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/telemetry/{telemetryName}",
    "Devices_GetModuleComponentTelemetryValue", "Get module component telemetry value",
    params(ComponentPath, TelemetryPath), 200 => openapi::DeviceTelemetry
);
module_route!(
    get_module_component_command_history, Access::Read,
    get "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/commands/{commandName}",
    "Devices_GetModuleComponentCommandHistory", "Get module component command history",
    params(ComponentPath, CommandPath, ListParams), 200 => collections::DeviceCommandCollection
);
module_route!(
    run_module_component_command, Access::Write,
    post "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/commands/{commandName}",
    "Devices_RunModuleComponentCommand", "Run a module component command",
    params(ComponentPath, CommandPath), body = DeviceCommand, 201 => DeviceCommand
);
