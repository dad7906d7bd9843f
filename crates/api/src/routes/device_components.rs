//! `GET /devices/{id}/components`: the components of the device's template.

use axum::extract::State;
use axum::{Extension, Json};
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::components;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::not_found;
use crate::auth::Caller;
use crate::collections::ComponentCollection;
use crate::error::ApiResult;
use crate::path::Path;
use crate::state::AppState;

/// A component of a device's template, as the template declares it (this type is also its
/// OpenAPI schema).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    #[serde(rename = "@id", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    /// `"Component"`, or an array that holds it.
    #[serde(rename = "@type")]
    pub types: Value,
    /// The component's name, as in `/components/{componentName}`.
    pub name: String,
    /// The component's interface, by its `@id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub schema: Option<String>,
    /// `displayName`, `description` and any other field, as the template declares them.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Component {
    /// A component as `flotilla_model::template::components` finds it. A field of another
    /// type than this one's stays in `other`, so the answer shows what the template declares.
    fn from_declaration(declared: Value) -> Component {
        let mut other = match declared {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        // Shifted out, not swapped, so the other fields keep the template's order.
        let mut text = |key: &str| match other.get(key) {
            Some(Value::String(_)) => match other.shift_remove(key) {
                Some(Value::String(text)) => Some(text),
                _ => None,
            },
            _ => None,
        };
        let id = text("@id");
        // A stored template's contents are named: the template check requires it.
        let name = text("name").unwrap_or_default();
        let schema = text("schema");
        let types = other.shift_remove("@type").unwrap_or(Value::Null);
        Component {
            id,
            types,
            name,
            schema,
            other,
        }
    }
}

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
    let value = template.map_or_else(Vec::new, |t| {
        components(&t.body["capabilityModel"])
            .into_iter()
            .map(Component::from_declaration)
            .collect()
    });
    Ok(Json(ComponentCollection {
        value,
        next_link: None,
    }))
}
