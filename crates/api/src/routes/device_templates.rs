//! `/deviceTemplates`: list, get, publish (PUT), patch, delete.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use flotilla_model::ids::check_dtmi;
use flotilla_model::new_etag;
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::{self, DeviceTemplate, PublishedTemplate};
use flotilla_store::Result as StoreResult;
use flotilla_store::{Entity, StoredTemplate};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::conditional::{Resource, patch_resource};
use super::expected_etag;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::DeviceTemplateCollection;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, IfMatch, ListParams};
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, publish, update, remove))
}

fn not_found(id: &str) -> ApiError {
    super::conditional::not_found::<StoredTemplate>(id)
}

/// A template validated for publishing, with its new etag.
pub(super) struct Revision {
    template: DeviceTemplate,
    etag: String,
}

impl Revision {
    fn published(self) -> PublishedTemplate {
        PublishedTemplate::new(self.template.body, self.etag)
    }
}

impl Resource for StoredTemplate {
    const COLLECTION: &'static str = "deviceTemplates";
    const ENTITY: Entity = Entity::DeviceTemplate;
    const READ_ONLY: &'static [&'static str] = template::READ_ONLY;
    type Changed = Revision;

    async fn load(state: &AppState, id: &str) -> StoreResult<Option<Self>> {
        state.store.template(id).await
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    /// The template document, without its etag.
    fn document(&self, _: &AppState) -> Value {
        self.body.clone()
    }

    async fn from_document(
        _: &AppState,
        id: &str,
        document: &Value,
        _: &Self,
    ) -> ApiResult<Revision> {
        Ok(Revision {
            template: DeviceTemplate::from_json(id, document)?,
            etag: new_etag(),
        })
    }

    async fn replace(state: &AppState, revision: &Revision, expected: &str) -> StoreResult<bool> {
        state
            .store
            .replace_template(&revision.template, expected, &revision.etag)
            .await
    }
}

#[utoipa::path(
    get,
    path = "/deviceTemplates",
    operation_id = "DeviceTemplates_List",
    tag = "DeviceTemplates",
    summary = "Get the list of device templates in an application.",
    params(ListParams),
    responses((status = 200, description = "Success", body = DeviceTemplateCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<DeviceTemplateCollection>> {
    caller.require(Area::DeviceTemplates, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_templates(query.page()).await?;
    Ok(Json(list_body(
        page,
        |t| &t.id,
        |t| PublishedTemplate::new(t.body.clone(), t.etag.clone()),
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/deviceTemplates/{deviceTemplateId}",
    operation_id = "DeviceTemplates_Get",
    tag = "DeviceTemplates",
    summary = "Get a device template by ID",
    params(("deviceTemplateId" = String, Path, description = "Unique ID (a DTMI) of the device template.")),
    responses((status = 200, description = "Success", body = PublishedTemplate)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<PublishedTemplate>> {
    caller.require(Area::DeviceTemplates, Access::Read)?;
    let stored = state
        .store
        .template(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(PublishedTemplate::new(stored.body, stored.etag)))
}

#[utoipa::path(
    put,
    path = "/deviceTemplates/{deviceTemplateId}",
    operation_id = "DeviceTemplates_Create",
    tag = "DeviceTemplates",
    summary = "Publish a new device template.",
    description = "Publishes the template, replacing one published under the same ID.",
    params(("deviceTemplateId" = String, Path, description = "Unique ID (a DTMI) of the device template.")),
    request_body(content = PublishedTemplate, description = "Device template body."),
    responses((status = 200, description = "Success", body = PublishedTemplate)),
)]
async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<PublishedTemplate>> {
    caller.require(Area::DeviceTemplates, Access::Write)?;
    let body = body.into_json()?;
    check_dtmi("deviceTemplateId", &id)?;
    let template = DeviceTemplate::from_json(&id, &body)?;
    let revision = Revision {
        template,
        etag: new_etag(),
    };
    state
        .store
        .insert_template(&revision.template, &revision.etag)
        .await?;
    Ok(Json(revision.published()))
}

/// A JSON merge patch of the template document, validated again as a whole.
#[utoipa::path(
    patch,
    path = "/deviceTemplates/{deviceTemplateId}",
    operation_id = "DeviceTemplates_Update",
    tag = "DeviceTemplates",
    summary = "Update an existing device template via patch.",
    params(("deviceTemplateId" = String, Path, description = "Unique ID (a DTMI) of the device template."), IfMatch),
    request_body(description = "A JSON merge patch of the template document; the result is validated again as a whole.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = PublishedTemplate)),
)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody,
) -> ApiResult<Json<PublishedTemplate>> {
    caller.require(Area::DeviceTemplates, Access::Write)?;
    let patch = patch.into_json()?;
    let expected = expected_etag(&headers, Some(&patch))?;
    let revision =
        patch_resource::<StoredTemplate>(&state, &id, expected.as_deref(), &patch).await?;
    Ok(Json(revision.published()))
}

#[utoipa::path(
    delete,
    path = "/deviceTemplates/{deviceTemplateId}",
    operation_id = "DeviceTemplates_Remove",
    tag = "DeviceTemplates",
    summary = "Delete a device template",
    params(("deviceTemplateId" = String, Path, description = "Unique ID (a DTMI) of the device template.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::DeviceTemplates, Access::Write)?;
    state.store.delete_template(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
