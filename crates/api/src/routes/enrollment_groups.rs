//! `/enrollmentGroups`: symmetric-key groups that devices provision through (DPS).

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use flotilla_model::enrollment_group::{
    self, EnrollmentGroup, EnrollmentGroupBody, EnrollmentGroupSpec,
};
use flotilla_model::ids::check_enrollment_group_id;
use flotilla_model::new_etag;
use flotilla_model::roles::{Access, Area};
use flotilla_store::Entity;
use flotilla_store::Result as StoreResult;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::conditional::{Resource, patch_resource};
use super::expected_etag;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::EnrollmentGroupCollection;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, IfMatch, ListParams};
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, create, update, remove))
}

fn not_found(id: &str) -> ApiError {
    super::conditional::not_found::<EnrollmentGroup>(id)
}

fn build(id: &str, spec: EnrollmentGroupSpec) -> EnrollmentGroup {
    EnrollmentGroup {
        id: id.to_string(),
        etag: new_etag(),
        display_name: spec.display_name,
        enabled: spec.enabled,
        kind: spec.kind,
        primary_key: spec.primary_key,
        secondary_key: spec.secondary_key,
    }
}

impl Resource for EnrollmentGroup {
    const COLLECTION: &'static str = "enrollmentGroups";
    const ENTITY: Entity = Entity::EnrollmentGroup;
    const READ_ONLY: &'static [&'static str] = enrollment_group::READ_ONLY;
    type Changed = Self;

    async fn load(state: &AppState, id: &str) -> StoreResult<Option<Self>> {
        state.store.enrollment_group(id).await
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    fn document(&self, state: &AppState) -> Value {
        self.to_json(&state.id_scope)
    }

    async fn from_document(_: &AppState, id: &str, document: &Value, _: &Self) -> ApiResult<Self> {
        Ok(build(id, EnrollmentGroupSpec::from_json(id, document)?))
    }

    async fn replace(state: &AppState, group: &Self, expected: &str) -> StoreResult<bool> {
        state.store.replace_enrollment_group(group, expected).await
    }
}

#[utoipa::path(
    get,
    path = "/enrollmentGroups",
    operation_id = "EnrollmentGroups_List",
    tag = "EnrollmentGroups",
    summary = "Get the list of enrollment groups in an application",
    params(ListParams),
    responses((status = 200, description = "Success", body = EnrollmentGroupCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<EnrollmentGroupCollection>> {
    caller.require(Area::EnrollmentGroups, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_enrollment_groups(query.page()).await?;
    let scope = state.id_scope.clone();
    Ok(Json(list_body(
        page,
        |g| &g.id,
        |g| g.body(&scope),
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/enrollmentGroups/{enrollmentGroupId}",
    operation_id = "EnrollmentGroups_Get",
    tag = "EnrollmentGroups",
    summary = "Get an enrollment group by ID",
    description = "Get details about an enrollment group by ID.",
    params(("enrollmentGroupId" = String, Path, description = "Unique ID of the enrollment group.")),
    responses((status = 200, description = "Success", body = EnrollmentGroupBody)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<EnrollmentGroupBody>> {
    caller.require(Area::EnrollmentGroups, Access::Read)?;
    let group = state
        .store
        .enrollment_group(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(group.body(&state.id_scope)))
}

/// `PUT` creates; the spec names it "Create an enrollment group", so an existing id is a 409.
#[utoipa::path(
    put,
    path = "/enrollmentGroups/{enrollmentGroupId}",
    operation_id = "EnrollmentGroups_Create",
    tag = "EnrollmentGroups",
    summary = "Create an enrollment group",
    description = "Create an enrollment group; an existing ID is a conflict (409).",
    params(("enrollmentGroupId" = String, Path, description = "Unique ID of the enrollment group.")),
    request_body(content = EnrollmentGroupBody, description = "Enrollment group body."),
    responses((status = 200, description = "Success", body = EnrollmentGroupBody)),
)]
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<EnrollmentGroupBody>> {
    caller.require(Area::EnrollmentGroups, Access::Write)?;
    let body = body.into_json()?;
    check_enrollment_group_id(&id)?;
    let group = build(&id, EnrollmentGroupSpec::from_json(&id, &body)?);
    state.store.insert_enrollment_group(&group, false).await?;
    Ok(Json(group.body(&state.id_scope)))
}

#[utoipa::path(
    patch,
    path = "/enrollmentGroups/{enrollmentGroupId}",
    operation_id = "EnrollmentGroups_Update",
    tag = "EnrollmentGroups",
    summary = "Update an enrollment group",
    description = "Update an enrollment group.",
    params(("enrollmentGroupId" = String, Path, description = "Unique ID of the enrollment group."), IfMatch),
    request_body(description = "A JSON merge patch of the enrollment group.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = EnrollmentGroupBody)),
)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody,
) -> ApiResult<Json<EnrollmentGroupBody>> {
    caller.require(Area::EnrollmentGroups, Access::Write)?;
    let patch = patch.into_json()?;
    let expected = expected_etag(&headers, Some(&patch))?;
    let group = patch_resource::<EnrollmentGroup>(&state, &id, expected.as_deref(), &patch).await?;
    Ok(Json(group.body(&state.id_scope)))
}

#[utoipa::path(
    delete,
    path = "/enrollmentGroups/{enrollmentGroupId}",
    operation_id = "EnrollmentGroups_Remove",
    tag = "EnrollmentGroups",
    summary = "Delete an enrollment group",
    description = "Delete an enrollment group by ID.",
    params(("enrollmentGroupId" = String, Path, description = "Unique ID of the enrollment group.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::EnrollmentGroups, Access::Write)?;
    state.store.delete_enrollment_group(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
