//! `GET /devices/{id}/components`: the components of the device's template.

use axum::extract::State;
use axum::{Extension, Json};
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::components;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::not_found;
use crate::auth::Caller;
use crate::collections::ComponentCollection;
use crate::error::ApiResult;
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One page with every component: the spec does not page this list, and a template has few.
#[utoipa::path(
    get,
    path = "/devices/{deviceId}/components",
    operation_id = "Devices_ListComponents",
    tag = "Devices",
    summary = "List the components present in a device",
    description = "The components of the device's template, as the template declares them (an inline interface is named by its `@id`); none for a device without a template.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = ComponentCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ComponentCollection>> {
    caller.require(Area::Devices, Access::Read)?;
    let device = state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let template = match &device.template {
        Some(template) => state.store.template(template).await?,
        None => None,
    };
    let value = template.map_or_else(Vec::new, |t| components(&t.body["capabilityModel"]));
    Ok(Json(ComponentCollection {
        value,
        next_link: None,
    }))
}
