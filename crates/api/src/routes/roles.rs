//! `GET /roles` and `GET /roles/{roleId}`: the built-in roles.

use axum::extract::OriginalUri;
use axum::{Extension, Json};
use flotilla_model::roles::{self, Access, Area, Role};
use flotilla_store::Page;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::collections::RoleCollection;
use crate::error::{ApiError, ApiResult};
use crate::openapi::ListParams;
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
}

#[utoipa::path(
    get,
    path = "/roles",
    operation_id = "Roles_List",
    tag = "Roles",
    summary = "Get the list of roles in an application.",
    params(ListParams),
    responses((status = 200, description = "Success", body = RoleCollection)),
)]
async fn list(
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<RoleCollection>> {
    caller.require(Area::Roles, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let request = query.page();
    let mut items: Vec<&Role> = roles::BUILT_IN.iter().collect();
    items.sort_by_key(|role| role.id);
    let items: Vec<&Role> = items
        .into_iter()
        .filter(|role| request.after.is_none_or(|after| role.id > after))
        .take(request.size + 1)
        .collect();
    let more = items.len() > request.size;
    let page = Page {
        items: items.into_iter().take(request.size).collect(),
        more,
    };
    Ok(Json(list_body(
        page,
        |r| r.id,
        |r| Role::clone(r),
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/roles/{roleId}",
    operation_id = "Roles_Get",
    tag = "Roles",
    summary = "Get a role by ID.",
    params(("roleId" = String, Path, description = "Unique ID of the role.")),
    responses((status = 200, description = "Success", body = Role)),
)]
async fn get_one(
    Extension(caller): Extension<Caller>,
    Path(role_id): Path<String>,
) -> ApiResult<Json<Role>> {
    caller.require(Area::Roles, Access::Read)?;
    let role = roles::find(&role_id)
        .ok_or_else(|| ApiError::not_found(format!("The role '{role_id}' was not found.")))?;
    Ok(Json(role.clone()))
}
