//! `GET /devices/{id}/connection` (a Flotilla extension, not in IoT Central's API): whether the
//! device is connected now. `flotilla import move` watches it to see a moved device arrive.

use axum::extract::State;
use axum::{Extension, Json};
use flotilla_model::roles::{Access, Area};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::not_found;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_connection))
}

/// A device's connection to the servers of this application.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceConnection {
    /// Whether the device holds an MQTT connection now (to this server, or on PostgreSQL to any
    /// live server sharing its database).
    pub connected: bool,
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/connection",
    operation_id = "Devices_GetConnection",
    tag = "Devices",
    summary = "Get whether a device is connected (Flotilla extension)",
    description = "Whether the device holds an MQTT connection now. Not in IoT Central's API.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = DeviceConnection)),
)]
async fn get_connection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceConnection>> {
    caller.require(Area::Devices, Access::Read)?;
    if state.store.device(&id).await?.is_none() {
        return Err(not_found(&id));
    }
    Ok(Json(DeviceConnection {
        connected: state.bus.is_connected(&id).await,
    }))
}
