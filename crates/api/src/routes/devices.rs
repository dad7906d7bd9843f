//! `/devices`: the device entity (list, get, create or update, patch, delete) and the parts of a
//! device that are not its twin: cloud properties, credentials and individual attestation.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use flotilla_model::attestation::{
    Attestation, DeviceCredentials, SymmetricKey, attestation_from_json, credentials,
};
use flotilla_model::device::{self, Device, DeviceSpec};
use flotilla_model::enrollment_group::DEFAULT_ID;
use flotilla_model::ids::check_device_id;
use flotilla_model::keys::derive_device_key;
use flotilla_model::new_etag;
use flotilla_model::roles::{Access, Area};
use flotilla_model::schema::check_value;
use flotilla_model::template::{CapabilityKind, find};
use flotilla_model::validate::merge_patch;
use flotilla_store::Result as StoreResult;
use flotilla_store::{CloudPropertiesUpdate, Entity};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::conditional::{
    Creatable, Resource, patch_resource, put_resource, read_modify_write, replace_resource,
};
use super::expected_etag;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::DeviceCollection;
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
        .routes(routes!(
            get_cloud_properties,
            replace_cloud_properties,
            update_cloud_properties
        ))
        .routes(routes!(get_credentials))
        .routes(routes!(
            get_attestation,
            replace_attestation,
            update_attestation,
            remove_attestation
        ))
}

/// The name a device's writers take turns under (its cloud properties and attestation included).
fn entity(id: &str) -> String {
    format!("{}/{id}", Device::COLLECTION)
}

pub(super) fn not_found(id: &str) -> ApiError {
    super::conditional::not_found::<Device>(id)
}

#[utoipa::path(
    get,
    path = "/devices",
    operation_id = "Devices_List",
    tag = "Devices",
    summary = "Get the list of devices in an application.",
    params(ListParams),
    responses((status = 200, description = "Success", body = DeviceCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<DeviceCollection>> {
    caller.require(Area::Devices, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_devices(query.page()).await?;
    Ok(Json(list_body(
        page,
        |d| &d.id,
        Device::clone,
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}",
    operation_id = "Devices_Get",
    tag = "Devices",
    summary = "Get a device by ID",
    description = "Get details about an existing device by device ID.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = Device)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Device>> {
    caller.require(Area::Devices, Access::Read)?;
    let device = state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(device))
}

/// A device may only name a template that exists.
async fn check_template(state: &AppState, spec: &DeviceSpec) -> ApiResult<()> {
    if let Some(template) = &spec.template
        && !state.store.template_exists(template).await?
    {
        return Err(ApiError::bad_request(format!(
            "The field 'template' names the device template '{template}', which does not exist."
        )));
    }
    Ok(())
}

fn build(id: &str, spec: DeviceSpec, provisioned: bool) -> Device {
    Device {
        id: id.to_string(),
        etag: new_etag(),
        display_name: spec.display_name,
        template: spec.template,
        enabled: spec.enabled,
        provisioned,
        simulated: spec.simulated,
        organizations: spec.organizations,
    }
}

impl Resource for Device {
    const COLLECTION: &'static str = "devices";
    const ENTITY: Entity = Entity::Device;
    const READ_ONLY: &'static [&'static str] = device::READ_ONLY;
    type Changed = Self;

    async fn load(state: &AppState, id: &str) -> StoreResult<Option<Self>> {
        state.store.device(id).await
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    fn document(&self, _: &AppState) -> Value {
        self.to_json()
    }

    async fn from_document(
        state: &AppState,
        id: &str,
        document: &Value,
        current: &Self,
    ) -> ApiResult<Self> {
        let spec = DeviceSpec::from_json(id, document)?;
        if spec.template != current.template {
            check_template(state, &spec).await?;
        }
        Ok(build(id, spec, current.provisioned))
    }

    async fn replace(state: &AppState, device: &Self, expected: &str) -> StoreResult<bool> {
        state.store.replace_device(device, expected).await
    }
}

impl Creatable for Device {
    async fn insert(&self, state: &AppState) -> StoreResult<()> {
        state.store.insert_device(self).await
    }
}

/// The answer to a device written: the device, and a disabled one is disconnected (it may not
/// stay connected).
fn written(state: &AppState, device: Device) -> Json<Device> {
    if !device.enabled {
        state.bus.disconnect(&device.id);
    }
    Json(device)
}

/// `PUT /devices/{id}` creates the device, or replaces the settable fields of an existing one.
#[utoipa::path(
    put,
    path = "/devices/{deviceId}",
    operation_id = "Devices_Create",
    tag = "Devices",
    summary = "Create or update a device",
    description = "Creates the device, or replaces the settable fields of an existing one.",
    params(("deviceId" = String, Path, description = "Unique ID of the device."), IfMatch),
    request_body(content = Device, description = "Device body."),
    responses((status = 200, description = "Success", body = Device)),
)]
async fn create_or_replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Json<Device>> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    check_device_id(&id)?;
    let expected = expected_etag(&headers, Some(&body))?;
    let spec = DeviceSpec::from_json(&id, &body)?;
    check_template(&state, &spec).await?;
    let device = put_resource(
        &state,
        &id,
        expected.as_deref(),
        &body,
        |current: Option<&Device>| {
            if current.is_none() && body.get("provisioned") == Some(&Value::Bool(true)) {
                return Err(flotilla_model::Invalid::field("provisioned", "is read-only").into());
            }
            let provisioned = current.is_some_and(|c| c.provisioned);
            Ok(build(&id, spec.clone(), provisioned))
        },
    )
    .await?;
    Ok(written(&state, device))
}

#[utoipa::path(
    patch,
    path = "/devices/{deviceId}",
    operation_id = "Devices_Update",
    tag = "Devices",
    summary = "Update a device via patch",
    description = "Update an existing device by ID.",
    params(("deviceId" = String, Path, description = "Unique ID of the device."), IfMatch),
    request_body(description = "A JSON merge patch of the device.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = Device)),
)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody,
) -> ApiResult<Json<Device>> {
    caller.require(Area::Devices, Access::Write)?;
    let patch = patch.into_json()?;
    let expected = expected_etag(&headers, Some(&patch))?;
    let device = patch_resource::<Device>(&state, &id, expected.as_deref(), &patch).await?;
    Ok(written(&state, device))
}

#[utoipa::path(
    delete,
    path = "/devices/{deviceId}",
    operation_id = "Devices_Remove",
    tag = "Devices",
    summary = "Delete a device",
    description = "Delete an existing device by device ID.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Devices, Access::Write)?;
    state.store.delete_device(&id).await?;
    state.bus.disconnect(&id);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/cloudProperties",
    operation_id = "Devices_GetCloudProperties",
    tag = "Devices",
    summary = "Get a device's cloud properties",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = openapi::CloudProperties)),
)]
async fn get_cloud_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Read)?;
    let (properties, _) = state
        .store
        .cloud_properties(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(properties))
}

#[utoipa::path(
    put,
    path = "/devices/{deviceId}/cloudProperties",
    operation_id = "Devices_ReplaceCloudProperties",
    tag = "Devices",
    summary = "Replace a device's cloud properties",
    description = "Each property must be a cloud property of the device's template, with a value that fits its schema.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    request_body(content = openapi::CloudProperties, description = "The cloud properties, all of them: properties left out are removed."),
    responses((status = 200, description = "Success", body = openapi::CloudProperties)),
)]
async fn replace_cloud_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    let written = replace_resource::<CloudProperties>(&state, &id, &body).await?;
    Ok(Json(written.values))
}

#[utoipa::path(
    patch,
    path = "/devices/{deviceId}/cloudProperties",
    operation_id = "Devices_UpdateCloudProperties",
    tag = "Devices",
    summary = "Update a device's cloud properties via patch",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    request_body(description = "A JSON merge patch of the cloud properties.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = openapi::CloudProperties)),
)]
async fn update_cloud_properties(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    patch: JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Devices, Access::Write)?;
    let patch = patch.into_json()?;
    let written = patch_resource::<CloudProperties>(&state, &id, None, &patch).await?;
    Ok(Json(written.values))
}

/// A device's cloud properties, written under their own etag and checked against the device's
/// template.
struct CloudProperties {
    device: Device,
    values: Value,
    etag: String,
}

impl Resource for CloudProperties {
    // One device's writers take turns, whichever part of it they write.
    const COLLECTION: &'static str = Device::COLLECTION;
    const ENTITY: Entity = Entity::Device;
    const READ_ONLY: &'static [&'static str] = &[];
    type Changed = Self;

    async fn load(state: &AppState, id: &str) -> StoreResult<Option<Self>> {
        let Some(device) = state.store.device(id).await? else {
            return Ok(None);
        };
        let Some((values, etag)) = state.store.cloud_properties(id).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            device,
            values,
            etag,
        }))
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    fn document(&self, _: &AppState) -> Value {
        self.values.clone()
    }

    async fn from_document(
        state: &AppState,
        _: &str,
        document: &Value,
        current: &Self,
    ) -> ApiResult<Self> {
        check_cloud_properties(state, &current.device, document).await?;
        Ok(Self {
            device: current.device.clone(),
            values: document.clone(),
            etag: new_etag(),
        })
    }

    async fn replace(state: &AppState, changed: &Self, expected: &str) -> StoreResult<bool> {
        let update = CloudPropertiesUpdate {
            device_id: &changed.device.id,
            expected_etag: expected,
            new_etag: &changed.etag,
            properties: &changed.values,
        };
        state.store.set_cloud_properties(update).await
    }
}

async fn check_cloud_properties(
    state: &AppState,
    device: &Device,
    properties: &Value,
) -> ApiResult<()> {
    let empty = Map::new();
    let properties = properties.as_object().unwrap_or(&empty);
    if properties.is_empty() {
        return Ok(());
    }
    let Some(template) = &device.template else {
        return Err(ApiError::bad_request(format!(
            "The device '{}' has no device template, so it has no cloud properties.",
            device.id
        )));
    };
    let capabilities = state.store.template_capabilities(template).await?;
    for (name, value) in properties {
        let capability = find(&capabilities, None, name)
            .filter(|c| c.kind == CapabilityKind::CloudProperty)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "The field '{name}' is not a cloud property of the device template '{template}'."
                ))
            })?;
        check_value(&capability.schema, value)
            .map_err(|problem| ApiError::bad_request(format!("The field '{name}' {problem}.")))?;
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/credentials",
    operation_id = "Devices_GetCredentials",
    tag = "Devices",
    summary = "Get device credentials",
    description = "The device's individual attestation where it has one, else symmetric keys derived from the default enrollment group.",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = DeviceCredentials)),
)]
async fn get_credentials(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceCredentials>> {
    caller.require(Area::Devices, Access::Read)?;
    let attestation = stored_attestation(&state, &id).await?;
    let group = state.store.enrollment_group(DEFAULT_ID).await?;
    let derived = group
        .and_then(|g| {
            Some(SymmetricKey {
                primary_key: derive_device_key(&g.primary_key, &id)?,
                secondary_key: derive_device_key(&g.secondary_key, &id)?,
            })
        })
        .unwrap_or_default();
    Ok(Json(credentials(&state.id_scope, attestation, derived)))
}

/// The device's individual attestation, if it has one (`None`); not found without the device.
async fn stored_attestation(state: &AppState, id: &str) -> ApiResult<Option<Attestation>> {
    let stored = state
        .store
        .attestation(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    // What is stored is what `attestation_from_json` accepted, so it reads back the same.
    stored
        .map(|json| attestation_from_json(&json))
        .transpose()
        .map_err(|invalid| {
            tracing::error!(device = id, %invalid, "a stored attestation does not validate");
            ApiError::internal()
        })
}

fn no_attestation(id: &str) -> ApiError {
    ApiError::not_found(format!("The device '{id}' has no individual attestation."))
}

#[utoipa::path(
    get,
    path = "/devices/{deviceId}/attestation",
    operation_id = "Devices_GetAttestation",
    tag = "Devices",
    summary = "Get device attestation",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 200, description = "Success", body = Attestation)),
)]
async fn get_attestation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Attestation>> {
    caller.require(Area::Devices, Access::Read)?;
    let attestation = stored_attestation(&state, &id).await?;
    attestation.map(Json).ok_or_else(|| no_attestation(&id))
}

#[utoipa::path(
    put,
    path = "/devices/{deviceId}/attestation",
    operation_id = "Devices_CreateAttestation",
    tag = "Devices",
    summary = "Create an individual device attestation",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    request_body(content = Attestation, description = "Individual device attestation body."),
    responses((status = 200, description = "Success", body = Attestation)),
)]
async fn replace_attestation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Attestation>> {
    caller.require(Area::Devices, Access::Write)?;
    let body = body.into_json()?;
    let attestation = attestation_from_json(&body)?;
    let before = stored_attestation(&state, &id).await?;
    set_attestation(&state, &id, Some(&attestation.to_json())).await?;
    if before.as_ref() != Some(&attestation) {
        credentials_changed(&state, &id);
    }
    Ok(Json(attestation))
}

#[utoipa::path(
    patch,
    path = "/devices/{deviceId}/attestation",
    operation_id = "Devices_UpdateAttestation",
    tag = "Devices",
    summary = "Update an individual device attestation via patch",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    request_body(description = "A JSON merge patch of the attestation.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = Attestation)),
)]
async fn update_attestation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    patch: JsonBody,
) -> ApiResult<Json<Attestation>> {
    caller.require(Area::Devices, Access::Write)?;
    let patch = patch.into_json()?;
    read_modify_write(&state, entity(&id), || async {
        let current = state
            .store
            .attestation(&id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let mut merged = current.ok_or_else(|| no_attestation(&id))?;
        let before = merged.clone();
        merge_patch(&mut merged, &patch);
        let attestation = attestation_from_json(&merged)?;
        let attestation_json = attestation.to_json();
        set_attestation(&state, &id, Some(&attestation_json)).await?;
        if attestation_json != before {
            credentials_changed(&state, &id);
        }
        Ok(Some(Json(attestation)))
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/devices/{deviceId}/attestation",
    operation_id = "Devices_RemoveAttestation",
    tag = "Devices",
    summary = "Remove an individual device attestation",
    params(("deviceId" = String, Path, description = "Unique ID of the device.")),
    responses((status = 204, description = "Success")),
)]
async fn remove_attestation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Devices, Access::Write)?;
    let current = state
        .store
        .attestation(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    current.ok_or_else(|| no_attestation(&id))?;
    set_attestation(&state, &id, None).await?;
    credentials_changed(&state, &id);
    Ok(StatusCode::NO_CONTENT)
}

/// A device whose credentials changed is disconnected wherever it is connected (the bus
/// reaches the server holding it): a connection made with a key that was revoked may not
/// outlive it. The device reconnects with whichever key is valid now.
fn credentials_changed(state: &AppState, id: &str) {
    state.bus.disconnect(id);
}

async fn set_attestation(state: &AppState, id: &str, attestation: Option<&Value>) -> ApiResult<()> {
    Ok(state.store.set_attestation(id, attestation).await?)
}
