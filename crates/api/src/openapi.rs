//! The server's own OpenAPI document, served at `GET /api/openapi.json`.
//!
//! The operations come from the `#[utoipa::path]` attribute on each handler in [`crate::routes`],
//! collected by the same `OpenApiRouter` that routes the requests, so an operation is in the
//! document exactly when the server serves it. What every `/api` route shares because of the
//! authentication middleware (the `api-version` parameter, the token, the error response) is
//! added by [`describe_authenticated`] to every operation of the router the middleware wraps.
//!
//! The types below are schema-only: they document the JSON shapes that the model's `to_json`
//! functions (and the handlers that return them) produce, and are never used to build a response.
//! The unit tests at the bottom check each shape against the JSON the model really renders.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, Required, Type};
use utoipa::{IntoParams, OpenApi as _, ToSchema};

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
// Errors

/// The response error definition.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Error {
    pub error: ErrorDetails,
}

/// The detail information of the error.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// Error code, e.g. `NotFound`, `BadRequest`, `Forbidden`.
    pub code: String,
    /// Error message details.
    pub message: String,
    /// Correlation id for the request.
    pub request_id: String,
    /// The time the request failed, RFC 1123 (e.g. `Fri, 09 Oct 2020 00:08:44 GMT`).
    pub time: String,
}

// ---------------------------------------------------------------------------------------------
// Request bodies without an entity shape

/// A JSON merge patch (RFC 7396) of the resource: fields to set, `null` to remove a field.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MergePatch(pub Map<String, Value>);

/// A device's cloud properties: each a cloud property of the device's template, by name, with a
/// value that fits the property's schema.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CloudProperties(pub Map<String, Value>);

// ---------------------------------------------------------------------------------------------
// Devices

/// A device.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Unique ID of the device (the path's `deviceId`).
    #[schema(read_only)]
    pub id: String,
    /// ETag used to prevent conflict in device updates.
    #[serde(default)]
    pub etag: String,
    /// Display name of the device (at most 200 characters); the id when not given.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub display_name: String,
    /// The device template (DTMI) of the device; absent when the device has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub template: Option<String>,
    /// Whether the device connection to IoT Central has been enabled.
    #[serde(default)]
    #[schema(default = true)]
    pub enabled: bool,
    /// Whether resources have been allocated for the device.
    #[schema(read_only)]
    pub provisioned: bool,
    /// Whether the device is simulated.
    #[serde(default)]
    #[schema(default = false)]
    pub simulated: bool,
    /// The organizations the device belongs to; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
}

/// A device's credentials: its individual attestation where it has one, else symmetric keys
/// derived from the default enrollment group.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCredentials {
    /// The DPS ID scope the device provisions through.
    pub id_scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub symmetric_key: Option<SymmetricKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tpm: Option<Tpm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub x509: Option<X509>,
}

/// A pair of symmetric keys, each base64 of 16 to 64 bytes.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    pub primary_key: String,
    pub secondary_key: String,
}

/// A TPM attestation's endorsement key.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tpm {
    pub endorsement_key: String,
}

/// X.509 client certificates.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct X509 {
    pub client_certificates: X509Certificates,
}

/// The primary and (optional) secondary certificate.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct X509Certificates {
    pub primary: X509Certificate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub secondary: Option<X509Certificate>,
}

/// A certificate, PEM or base64.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct X509Certificate {
    pub certificate: String,
}

/// A component of a device's template, as the template declares it.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    #[serde(rename = "@id", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    /// `"Component"`, or an array that holds it.
    #[serde(rename = "@type")]
    pub types: Value,
    /// The component's name, as in `/components/{componentName}`.
    pub name: String,
    /// The component's interface, by its `@id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub schema: Option<String>,
    /// `displayName`, `description` and any other field, as the template declares them.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An IoT Edge module of a device (Flotilla's devices have none).
#[derive(Serialize, Deserialize, ToSchema)]
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

/// A device's individual attestation, by its `type`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum Attestation {
    #[serde(rename = "symmetricKey")]
    SymmetricKey(SymmetricKeyAttestation),
    #[serde(rename = "tpm")]
    Tpm(TpmAttestation),
    #[serde(rename = "x509")]
    X509(X509Attestation),
}

/// Symmetric-key attestation (`"type": "symmetricKey"`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    pub symmetric_key: SymmetricKey,
}

/// TPM attestation (`"type": "tpm"`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TpmAttestation {
    pub tpm: Tpm,
}

/// X.509 attestation (`"type": "x509"`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct X509Attestation {
    pub x509: X509,
}

// ---------------------------------------------------------------------------------------------
// Device groups

/// A device group: a named filter over the devices.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceGroup {
    /// Unique ID of the device group (the path's `deviceGroupId`).
    #[schema(read_only)]
    pub id: String,
    /// ETag used to prevent conflict in device group updates.
    #[serde(default)]
    pub etag: String,
    /// Display name of the device group.
    #[schema(max_length = 200)]
    pub display_name: String,
    /// The query that selects the group's devices, e.g.
    /// `SELECT * FROM devices WHERE $template = "dtmi:..." AND $simulated = false`.
    #[schema(max_length = 4096)]
    pub filter: String,
    /// Short summary of the device group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 1000)]
    pub description: Option<String>,
    /// The organizations the group belongs to; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Device templates

/// A device template: the document as published, with `@id` set from the path and the current
/// `etag`. Fields other than these (such as `@context`) are kept as sent.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTemplate {
    /// Unique ID (a DTMI) of the device template.
    #[serde(rename = "@id")]
    #[schema(read_only)]
    pub id: String,
    /// The JSON-LD types; must include `ModelDefinition`.
    #[serde(rename = "@type")]
    pub types: Vec<String>,
    /// ETag used to prevent conflict in device template updates; always in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub etag: Option<String>,
    /// Display name of the device template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 200)]
    pub display_name: Option<String>,
    /// Detailed description of the device template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 1000)]
    pub description: Option<String>,
    /// The DTDL v2 capability model: an inline interface, its contents and components.
    #[schema(value_type = Object)]
    pub capability_model: Value,
    /// Any other field of the template, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// Enrollment groups

/// An enrollment group: how devices the server has never seen provision themselves.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    /// Unique ID of the enrollment group (the path's `enrollmentGroupId`).
    #[schema(read_only)]
    pub id: String,
    /// ETag used to prevent conflict in enrollment group updates.
    #[serde(default)]
    pub etag: String,
    /// Display name of the enrollment group.
    #[schema(max_length = 200)]
    pub display_name: String,
    /// Whether the devices using the group are allowed to connect to IoT Central.
    #[serde(default)]
    #[schema(default = true)]
    pub enabled: bool,
    /// The type of devices that connect through the group.
    #[serde(rename = "type")]
    pub kind: EnrollmentGroupType,
    /// The attestation mechanism of the group.
    pub attestation: GroupAttestation,
    /// The DPS ID scope of the application.
    #[schema(read_only)]
    pub id_scope: String,
}

/// The type of devices that connect through an enrollment group.
#[derive(Serialize, Deserialize, ToSchema)]
pub enum EnrollmentGroupType {
    #[serde(rename = "iot")]
    Iot,
    #[serde(rename = "iotEdge")]
    IotEdge,
}

/// An enrollment group's attestation. Only symmetric keys are supported; keys left out of a
/// create are generated, and responses always carry them.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupAttestation {
    #[serde(rename = "type")]
    pub kind: GroupAttestationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub symmetric_key: Option<SymmetricKey>,
}

/// The attestation type of an enrollment group.
#[derive(Serialize, Deserialize, ToSchema)]
pub enum GroupAttestationType {
    #[serde(rename = "symmetricKey")]
    SymmetricKey,
}

// ---------------------------------------------------------------------------------------------
// Access control

/// An API token. Its value (`token`) is returned only by the call that creates it.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// Unique ID of the API token (the path's `tokenId`).
    #[schema(read_only)]
    pub id: String,
    /// The roles the token holds; at least one.
    #[schema(min_items = 1)]
    pub roles: Vec<RoleAssignment>,
    /// When the token expires (UTC, with milliseconds); a year after its creation by default.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expiry: String,
    /// The token's value, to send in the `Authorization` header; only in the create response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false)]
    pub token: Option<String>,
}

/// A role held, optionally within an organization.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RoleAssignment {
    /// The role's ID (one of the built-in roles).
    pub role: String,
    /// The organization the role applies in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub organization: Option<String>,
}

/// A built-in role.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Unique ID of the role.
    #[schema(read_only)]
    pub id: String,
    /// Display name of the role.
    pub display_name: String,
}

// ---------------------------------------------------------------------------------------------
// The device side: properties, commands, telemetry

/// A device's properties (or one component's): reported values by name, and `$metadata` with,
/// per writable property, `desiredValue`, `desiredVersion` and the device's acknowledgement
/// (`ackVersion`, `ackCode`, `ackDescription`). Components appear as nested objects.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeviceProperties(pub Map<String, Value>);

/// A command run on a device, and the device's answer.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommand {
    /// The id of this execution.
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    /// Seconds (0 to 30) to wait for a disconnected device to connect. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, maximum = 30)]
    pub connection_timeout: Option<i64>,
    /// Seconds (5 to 30) to wait for the device's answer. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 5, maximum = 30)]
    pub response_timeout: Option<i64>,
    /// The command's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The device's answer.
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// The status code the device answered with.
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub response_code: Option<i64>,
}

/// The last value of a telemetry, and when it arrived (absent before the first).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeviceTelemetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub timestamp: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// How a job's devices are split into batches.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobBatch {
    /// `number` (devices per batch) or `percentage` (of the job's devices, rounded up).
    #[serde(rename = "type")]
    pub kind: String,
    pub value: f64,
}

/// When failures cancel a job.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobCancellationThreshold {
    /// `number` or `percentage`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: f64,
    /// Per batch (true) or over the whole job (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub batch: Option<bool>,
}

/// One thing a job does to each device: `property`, `command` or `cloudProperty` (with
/// `target`, `path` and `value`), or `deviceTemplateMigration` (with `template`). The docs'
/// spellings (`PropertyJobData`, ...) are accepted; answers use the spec's.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobData(pub Map<String, Value>);

/// Counts of a job's devices.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    pub total: i64,
    pub pending: i64,
    pub completed: i64,
    pub failed: i64,
}

/// A job.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub scheduled_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub batch: Option<JobBatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cancellation_threshold: Option<JobCancellationThreshold>,
    pub data: Vec<JobData>,
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub start: Option<String>,
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end: Option<String>,
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub progress: Option<JobProgress>,
    /// pending, running, stopped, complete, cancelled or failed.
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status: Option<String>,
    /// Beside the spec: why a `failed` or `cancelled` job ended (a job fails when it cannot
    /// start, e.g. its group no longer exists or cannot be evaluated).
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub organizations: Option<Vec<String>>,
}

/// A scheduled job: a job definition plus its schedule.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledJob {
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub batch: Option<JobBatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cancellation_threshold: Option<JobCancellationThreshold>,
    pub data: Vec<JobData>,
    pub schedule: JobSchedule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    #[schema(read_only)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub completed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub organizations: Option<Vec<String>>,
}

/// When a scheduled job runs: at `start`, then daily, weekly or monthly until `end`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobSchedule {
    pub start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub recurrence: Option<String>,
    /// `{"type": "date", "date": "2022-12-30"}` or `{"type": "occurrences", "occurrences": 5}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end: Option<Map<String, Value>>,
}

/// One device of a job: `id`, `status` (pending, running, completed, failed), and beside the
/// spec's fields, `reason` for a failure and, for commands, `responseCode` and `response`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobDeviceStatus(pub Map<String, Value>);

// ---------------------------------------------------------------------------------------------
// Collections

macro_rules! collection {
    ($(#[$doc:meta])* $name:ident of $item:ident) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// The page's items.
            pub value: Vec<$item>,
            /// The absolute URL of the next page, to GET as it is; absent on the last page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schema(nullable = false)]
            pub next_link: Option<String>,
        }
    };
}

collection!(
    /// A page of API tokens (never with their values).
    ApiTokenCollection of ApiToken
);
collection!(
    /// A page of roles.
    RoleCollection of Role
);
collection!(
    /// A page of device templates.
    DeviceTemplateCollection of DeviceTemplate
);
collection!(
    /// A page of devices.
    DeviceCollection of Device
);
collection!(
    /// The components of a device's template (one page).
    ComponentCollection of Component
);
collection!(
    /// The modules of a device (one page).
    ModuleCollection of Module
);
collection!(
    /// A page of device groups.
    DeviceGroupCollection of DeviceGroup
);
collection!(
    /// A page of the devices a device group's filter selects now.
    DeviceGroupDeviceCollection of Device
);
collection!(
    /// A page of enrollment groups.
    EnrollmentGroupCollection of EnrollmentGroup
);
collection!(
    /// A page of scheduled jobs.
    ScheduledJobCollection of ScheduledJob
);
collection!(
    /// A page of jobs, newest first.
    JobCollection of Job
);
collection!(
    /// A page of a job's devices, in the job's order.
    JobDeviceStatusCollection of JobDeviceStatus
);
collection!(
    /// A page of a command's history on a device, oldest first.
    DeviceCommandCollection of DeviceCommand
);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::Uri;
    use axum::response::IntoResponse;
    use flotilla_model::api_token::{ApiToken as ModelToken, RoleAssignment as ModelAssignment};
    use flotilla_model::attestation::{attestation_from_json, credentials};
    use flotilla_model::device::Device as ModelDevice;
    use flotilla_model::device_group::DeviceGroup as ModelGroup;
    use flotilla_model::enrollment_group::EnrollmentGroup as ModelEnrollmentGroup;
    use flotilla_model::template::DeviceTemplate as ModelTemplate;
    use flotilla_store::Page;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;
    use crate::error::ApiError;
    use crate::origin::Origin;
    use crate::paging::list_body;

    /// `json` fits the schema type `T` exactly: it deserializes, and serializes back unchanged
    /// (so no field is unknown to `T`, missing from it, or of another type).
    #[track_caller]
    fn fits<T: Serialize + DeserializeOwned>(json: Value) {
        let parsed: T = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{json} does not fit: {e}"));
        assert_eq!(serde_json::to_value(parsed).unwrap(), json);
    }

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn device(template: Option<&str>, organizations: &[&str]) -> ModelDevice {
        ModelDevice {
            id: "d1".into(),
            etag: "\"e\"".into(),
            display_name: "D1".into(),
            template: template.map(str::to_string),
            enabled: true,
            provisioned: false,
            simulated: true,
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn the_shapes_are_those_the_model_renders() {
        fits::<Device>(device(None, &[]).to_json());
        fits::<Device>(device(Some("dtmi:a:b;1"), &["org-1"]).to_json());

        let mut group = ModelGroup {
            id: "g1".into(),
            etag: "\"e\"".into(),
            display_name: "G1".into(),
            filter: "SELECT * FROM devices".into(),
            description: None,
            organizations: vec![],
        };
        fits::<DeviceGroup>(group.to_json());
        group.description = Some("about".into());
        group.organizations = vec!["org-1".into()];
        fits::<DeviceGroup>(group.to_json());

        let enrollment = ModelEnrollmentGroup {
            id: "eg".into(),
            etag: "\"e\"".into(),
            display_name: "EG".into(),
            enabled: false,
            kind: "iotEdge".into(),
            primary_key: KEY.into(),
            secondary_key: KEY.into(),
        };
        fits::<EnrollmentGroup>(enrollment.to_json("0ne00000001"));

        let token = ModelToken {
            id: "t1".into(),
            roles: vec![
                ModelAssignment {
                    role: flotilla_model::roles::OPERATOR.into(),
                    organization: None,
                },
                ModelAssignment {
                    role: flotilla_model::roles::BUILDER.into(),
                    organization: Some("org-1".into()),
                },
            ],
            expiry: "2030-01-01T00:00:00Z".parse().unwrap(),
        };
        fits::<ApiToken>(token.to_json(None));
        fits::<ApiToken>(token.to_json(Some("SharedAccessSignature sr=a&sig=b&skn=t1&se=1")));

        let attestations = [
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}),
            json!({"type": "tpm", "tpm": {"endorsementKey": "ek"}}),
            json!({"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": "p"}}}}),
            json!({"type": "x509", "x509": {"clientCertificates": {
                "primary": {"certificate": "p"}, "secondary": {"certificate": "s"}}}}),
        ];
        for attestation in &attestations {
            let normalized = attestation_from_json(attestation).unwrap();
            fits::<Attestation>(normalized.clone());
            fits::<DeviceCredentials>(credentials("0ne1", Some(&normalized), Default::default()));
        }
        fits::<DeviceCredentials>(credentials("0ne1", None, (KEY.into(), KEY.into())));

        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/temperature-controller.template.json"
        );
        let body: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let mut template = ModelTemplate::from_json("dtmi:contoso:temperaturecontroller;1", &body)
            .unwrap()
            .body;
        template["etag"] = json!("\"e\"");
        for component in flotilla_model::template::components(&body["capabilityModel"]) {
            fits::<Component>(component);
        }
        fits::<DeviceTemplate>(template);
    }

    #[test]
    fn lists_render_collections() {
        let uri: Uri = "/api/devices?api-version=2022-07-31".parse().unwrap();
        let render = |more| {
            let page = Page {
                items: vec![device(None, &[]), device(Some("dtmi:a:b;1"), &[])],
                more,
            };
            list_body(
                page,
                |d| &d.id,
                ModelDevice::to_json,
                &uri,
                &Origin {
                    scheme: "https",
                    host: "flotilla.example".into(),
                },
            )
        };
        fits::<DeviceCollection>(render(false));
        let with_next = render(true);
        let next = with_next["nextLink"].as_str().unwrap();
        assert!(
            next.starts_with(
                "https://flotilla.example/api/devices?api-version=2022-07-31&$skiptoken="
            ),
            "{next}"
        );
        fits::<DeviceCollection>(with_next);
    }

    #[tokio::test]
    async fn errors_render_the_error_shape() {
        let response = ApiError::not_found("nothing here").into_response();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        fits::<Error>(serde_json::from_slice(&bytes).unwrap());
    }

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
                    (_, "Jobs_Rerun") => false,
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
        // 6 for scheduled jobs, 1 for a device's components and 14 for its modules.
        assert_eq!(operation_ids.len(), 75);
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
