//! `/deviceGroups`: list, get, create or update, patch, delete, and the devices a group holds
//! (its filter, evaluated in SQL).

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use flotilla_model::device::Device;
use flotilla_model::device_group::{self, DeviceGroup, DeviceGroupSpec};
use flotilla_model::ids::check_entity_id;
use flotilla_model::new_etag;
use flotilla_model::roles::{Access, Area};
use flotilla_store::Entity;
use flotilla_store::Result as StoreResult;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::conditional::{Creatable, Resource, patch_resource, put_resource};
use super::expected_etag;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::{DeviceGroupCollection, DeviceGroupDeviceCollection};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, IfMatch, ListParams};
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, create_or_replace, update, remove))
        .routes(routes!(devices))
}

fn not_found(id: &str) -> ApiError {
    super::conditional::not_found::<DeviceGroup>(id)
}

fn build(id: &str, spec: DeviceGroupSpec) -> DeviceGroup {
    DeviceGroup {
        id: id.to_string(),
        etag: new_etag(),
        display_name: spec.display_name,
        filter: spec.filter,
        description: spec.description,
        organizations: spec.organizations,
    }
}

impl Resource for DeviceGroup {
    const COLLECTION: &'static str = "deviceGroups";
    const ENTITY: Entity = Entity::DeviceGroup;
    const READ_ONLY: &'static [&'static str] = device_group::READ_ONLY;
    type Changed = Self;

    async fn load(state: &AppState, id: &str) -> StoreResult<Option<Self>> {
        state.store.device_group(id).await
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    fn document(&self, _: &AppState) -> Value {
        self.to_json()
    }

    async fn from_document(_: &AppState, id: &str, document: &Value, _: &Self) -> ApiResult<Self> {
        Ok(build(id, DeviceGroupSpec::from_json(id, document)?))
    }

    async fn replace(state: &AppState, group: &Self, expected: &str) -> StoreResult<bool> {
        state.store.replace_device_group(group, expected).await
    }
}

impl Creatable for DeviceGroup {
    async fn insert(&self, state: &AppState) -> StoreResult<()> {
        state.store.insert_device_group(self).await
    }
}

#[utoipa::path(
    get,
    path = "/deviceGroups",
    operation_id = "DeviceGroups_List",
    tag = "DeviceGroups",
    summary = "Get the list of device groups in an application.",
    params(ListParams),
    responses((status = 200, description = "Success", body = DeviceGroupCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<DeviceGroupCollection>> {
    caller.require(Area::DeviceGroups, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_device_groups(query.page()).await?;
    Ok(Json(list_body(
        page,
        |g| &g.id,
        DeviceGroup::clone,
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/deviceGroups/{deviceGroupId}",
    operation_id = "DeviceGroups_Get",
    tag = "DeviceGroups",
    summary = "Get the device group by ID.",
    params(("deviceGroupId" = String, Path, description = "Unique ID of the device group.")),
    responses((status = 200, description = "Success", body = DeviceGroup)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceGroup>> {
    caller.require(Area::DeviceGroups, Access::Read)?;
    let group = state
        .store
        .device_group(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(group))
}

#[utoipa::path(
    put,
    path = "/deviceGroups/{deviceGroupId}",
    operation_id = "DeviceGroups_Create",
    tag = "DeviceGroups",
    summary = "Create or update a device group",
    description = "Create or update a device group.",
    params(("deviceGroupId" = String, Path, description = "Unique ID of the device group."), IfMatch),
    request_body(content = DeviceGroup, description = "Device group body."),
    responses((status = 200, description = "Success", body = DeviceGroup)),
)]
async fn create_or_replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Json<DeviceGroup>> {
    caller.require(Area::DeviceGroups, Access::Write)?;
    let body = body.into_json()?;
    check_entity_id("deviceGroupId", &id)?;
    let expected = expected_etag(&headers, Some(&body))?;
    let spec = DeviceGroupSpec::from_json(&id, &body)?;
    let group = put_resource(&state, &id, expected.as_deref(), &body, |_| {
        Ok(build(&id, spec.clone()))
    })
    .await?;
    Ok(Json(group))
}

#[utoipa::path(
    patch,
    path = "/deviceGroups/{deviceGroupId}",
    operation_id = "DeviceGroups_Update",
    tag = "DeviceGroups",
    summary = "Update a device group via patch",
    description = "Update an existing device group by ID.",
    params(("deviceGroupId" = String, Path, description = "Unique ID of the device group."), IfMatch),
    request_body(description = "A JSON merge patch of the device group.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = DeviceGroup)),
)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody,
) -> ApiResult<Json<DeviceGroup>> {
    caller.require(Area::DeviceGroups, Access::Write)?;
    let patch = patch.into_json()?;
    let expected = expected_etag(&headers, Some(&patch))?;
    let group = patch_resource::<DeviceGroup>(&state, &id, expected.as_deref(), &patch).await?;
    Ok(Json(group))
}

#[utoipa::path(
    delete,
    path = "/deviceGroups/{deviceGroupId}",
    operation_id = "DeviceGroups_Remove",
    tag = "DeviceGroups",
    summary = "Delete a device group.",
    params(("deviceGroupId" = String, Path, description = "Unique ID of the device group.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::DeviceGroups, Access::Write)?;
    state.store.delete_device_group(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group's devices right now: its filter, compiled to SQL, over the devices table.
#[utoipa::path(
    get,
    path = "/deviceGroups/{deviceGroupId}/devices",
    operation_id = "DeviceGroups_GetDevices",
    tag = "DeviceGroups",
    summary = "Get the devices of a device group",
    description = "The devices the group's filter selects now.",
    params(("deviceGroupId" = String, Path, description = "Unique ID of the device group."), ListParams),
    responses((status = 200, description = "Success", body = DeviceGroupDeviceCollection)),
)]
async fn devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<DeviceGroupDeviceCollection>> {
    caller.require(Area::DeviceGroups, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let group = state
        .store
        .device_group(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let filter = flotilla_filter::parse(&group.filter).map_err(|e| {
        tracing::error!(group = %id, error = %e, "a stored device-group filter no longer parses");
        ApiError::internal()
    })?;
    let page = state.store.devices_matching(&filter, query.page()).await?;
    Ok(Json(list_body(
        page,
        |d| &d.id,
        Device::clone,
        &uri,
        &origin,
    )))
}
