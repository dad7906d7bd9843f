//! The server's own OpenAPI document, served at `GET /api/openapi.json`.
//!
//! The operations come from the `#[utoipa::path]` attribute on each handler in [`crate::routes`],
//! collected by the same `OpenApiRouter` that routes the requests, so an operation is in the
//! document exactly when the server serves it. What every `/api` route shares because of the
//! authentication middleware (the `api-version` parameter, the token, the error response) is
//! added by [`describe_authenticated`] to every operation of the router the middleware wraps.
//!
//! The entities' shapes are the types the handlers return: the model's entities and response
//! types, the response types of jobs, scheduled jobs, commands, components and modules (in
//! their routes), [`crate::collections`] and [`crate::error::Error`] derive their schema. The
//! types below document what is still free-form JSON (merge patches, properties by name) or
//! rendered by hand (device properties and telemetry), and are never used to build a response.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, Required, Type};
use utoipa::{IntoParams, OpenApi as _, ToSchema};

pub use crate::error::{Error, ErrorDetails};
use crate::version::ApiVersion;

/// The name of the security scheme for the `Authorization` header.
pub const SECURITY_SCHEME: &str = "apiToken";

/// The document's fixed parts: info, server, tags, and the schemas no operation names directly.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Flotilla",
        description = "Flotilla's implementation of the Azure IoT Central data-plane REST API. \
            Every path is relative to the server URL `/api`; every operation takes the \
            `api-version` query parameter and an API token in the `Authorization` header.",
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((url = "/api", description = "This server's IoT Central API")),
    tags(
        (name = "ApiTokens", description = "API tokens: what a client authenticates with."),
        (name = "Roles", description = "The built-in roles."),
        (name = "DeviceTemplates", description = "Device templates (DTDL v2 capability models)."),
        (name = "Devices", description = "Devices, their cloud properties, credentials and attestation."),
        (name = "DeviceGroups", description = "Device groups: a named filter over the devices."),
        (name = "EnrollmentGroups", description = "Enrollment groups that devices provision through."),
        (name = "Events", description = "Flotilla extension: live job events (Server-Sent Events)."),
        (name = "Webhooks", description = "Flotilla extension: job events POSTed to a URL, signed."),
    ),
    components(schemas(Error, ErrorDetails)),
)]
struct Base;

/// The document before the routes add their operations.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// Adds to every operation in `doc` what the authentication middleware in front of them implies:
/// the required `api-version` query parameter (checked first), the API token in the
/// `Authorization` header, and the error response every refusal uses.
pub fn describe_authenticated(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SECURITY_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "An API token: `SharedAccessSignature sr=...&sig=...&skn=<tokenId>&se=...` as the \
             token's create call returned it, optionally prefixed with `Bearer `.",
        ))),
    );
    let error = ResponseBuilder::new()
        .description("An error, in IoT Central's shape; its code is repeated in `x-ms-error-code`.")
        .header(
            "x-ms-error-code",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("The error's code, as in the body's `error.code`."))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    let requirement = SecurityRequirement::new(SECURITY_SCHEME, Vec::<String>::new());
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .insert(0, api_version_parameter());
            operation
                .responses
                .responses
                .insert("default".to_string(), error.clone().into());
            operation.security = Some(vec![requirement.clone()]);
        }
    }
}

fn api_version_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("api-version")
        .parameter_in(ParameterIn::Query)
        .required(Required::True)
        .description(Some(
            "The version of the API being called. `2022-10-31-preview` adds `maxpagesize` and \
             `If-Match`; `2022-06-30-preview` (what the Azure CLI sends) is the stable API with \
             OData's `$top` as the page size (its `$filter` and `$orderby` are ignored).",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(ApiVersion::ALL.map(ApiVersion::as_str))),
        ))
        .build()
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// The paging parameters of every list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The most items a page holds (default 25). Only the `2022-10-31-preview` version reads
    /// it; the stable version ignores it.
    #[param(minimum = 1, maximum = 100)]
    pub maxpagesize: Option<i32>,
    /// The same for `2022-06-30-preview`, which names it OData's way; other versions ignore it.
    #[param(rename = "$top", minimum = 1, maximum = 100)]
    pub top: Option<i32>,
}

/// A component's name in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ComponentPath {
    /// Name of the device component.
    #[param(rename = "componentName")]
    pub component_name: String,
}

/// A command's name in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CommandPath {
    /// Name of this device command.
    #[param(rename = "commandName")]
    pub command_name: String,
}

/// A telemetry's name in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TelemetryPath {
    /// Name of this device telemetry.
    #[param(rename = "telemetryName")]
    pub telemetry_name: String,
}

/// Optimistic concurrency on writes: the etag the client last saw.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// Only perform the operation if the entity's etag matches, or `*`. An `etag` field in the
    /// body is read the same way when this header is absent.
    #[param(rename = "If-Match", required = false)]
    pub if_match: String,
}

// ---------------------------------------------------------------------------------------------
// Request bodies without an entity shape

/// A JSON merge patch (RFC 7396) of the resource: fields to set, `null` to remove a field.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MergePatch(pub Map<String, Value>);

/// A webhook as `PUT` takes it: what `GET` shows, and its write-only secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRequest {
    /// Where deliveries are POSTed: an absolute `http` or `https` URL.
    pub url: String,
    /// The key each delivery's `X-Flotilla-Signature` is computed with: 16 to 256 characters.
    /// Never returned.
    #[schema(write_only, min_length = 16, max_length = 256)]
    pub secret: String,
    /// The events wanted: `job.status`, `job.progress`, `job.device`.
    pub events: Vec<flotilla_model::webhook::WebhookEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
}

/// A device's cloud properties: each a cloud property of the device's template, by name, with a
/// value that fits the property's schema.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CloudProperties(pub Map<String, Value>);

// ---------------------------------------------------------------------------------------------
// The device side: properties, commands, telemetry

/// A device's properties (or one component's): reported values by name, and `$metadata` with,
/// per writable property, `desiredValue`, `desiredVersion` and the device's acknowledgement
/// (`ackVersion`, `ackCode`, `ackDescription`). Components appear as nested objects.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeviceProperties(pub Map<String, Value>);

/// The last value of a telemetry, and when it arrived (absent before the first).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeviceTelemetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub timestamp: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    /// Every operation names itself, declares its path's parameters and a success response, and
    /// carries what the authentication middleware implies; every reference resolves.
    #[test]
    fn every_operation_is_fully_described() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut operation_ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_string();
                assert!(operation_ids.insert(id.clone()), "{id} is used twice");
                let parameters = operation["parameters"].as_array().unwrap();
                let declared = |name: &str, place: &str| {
                    parameters
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == place && p["required"] == true)
                };
                assert!(declared("api-version", "query"), "{id}");
                for segment in path.split('/') {
                    if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                    {
                        assert!(declared(name, "path"), "{id} does not declare {name}");
                    }
                }
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.contains_key("default"), "{id}");
                let success: Vec<&String> = responses
                    .keys()
                    .filter(|code| code.starts_with('2'))
                    .collect();
                assert_eq!(success.len(), 1, "{id}: {success:?}");
                // The spec's success codes: 204 for deletes, stop and resume; 201 for commands;
                // 202 for property writes; 200 otherwise.
                let expected = match (method.as_str(), id.as_str()) {
                    ("delete", _) | (_, "Jobs_Stop" | "Jobs_Resume") => "204",
                    (_, id) if id.starts_with("Devices_Run") && id.ends_with("Command") => "201",
                    ("put" | "patch", _) if id.contains("Properties") && !id.contains("Cloud") => {
                        "202"
                    }
                    _ => "200",
                };
                assert_eq!(success[0], expected, "{id}");
                let takes_body = match (method.as_str(), id.as_str()) {
                    (_, "Jobs_Rerun" | "Jobs_Revert") => false,
                    (_, "Jobs_Plan") => true,
                    ("put" | "patch", _) => true,
                    (_, id) if id.starts_with("Devices_Run") && id.ends_with("Command") => true,
                    _ => false,
                };
                assert_eq!(operation.get("requestBody").is_some(), takes_body, "{id}");
                assert_eq!(
                    operation["security"],
                    json!([{SECURITY_SCHEME: []}]),
                    "{id}"
                );
            }
        }
        // 35 resource operations, 12 for device properties, commands and telemetry, 7 for jobs,
        // 6 for scheduled jobs, 1 for a device's components and 14 for its modules; Flotilla's
        // own: 2 event streams, 5 for webhooks, a job's plan and its revert, a device's
        // connection.
        assert_eq!(operation_ids.len(), 85);
        let text = doc.to_string();
        let references: Vec<&str> = text.split("\"$ref\":\"").skip(1).collect();
        assert!(references.len() > 35);
        for reference in references {
            let name = reference.split('"').next().unwrap();
            let name = name.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but not defined"
            );
        }
    }
}
