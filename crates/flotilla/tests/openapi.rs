//! The server's own OpenAPI document (`GET /api/openapi.json`) describes what the server really
//! serves: every documented operation is routed and answers with a documented status and a body
//! that fits the documented schema, and every operation the server must serve is documented.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every operation the server serves: (operationId, method, path relative to `/api`). A route
/// added without docs, or docs without a route, fails one of the tests below.
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("ApiTokens_List", "get", "/apiTokens"),
    ("ApiTokens_Get", "get", "/apiTokens/{tokenId}"),
    ("ApiTokens_Create", "put", "/apiTokens/{tokenId}"),
    ("ApiTokens_Remove", "delete", "/apiTokens/{tokenId}"),
    ("Roles_List", "get", "/roles"),
    ("Roles_Get", "get", "/roles/{roleId}"),
    ("DeviceTemplates_List", "get", "/deviceTemplates"),
    (
        "DeviceTemplates_Get",
        "get",
        "/deviceTemplates/{deviceTemplateId}",
    ),
    (
        "DeviceTemplates_Create",
        "put",
        "/deviceTemplates/{deviceTemplateId}",
    ),
    (
        "DeviceTemplates_Update",
        "patch",
        "/deviceTemplates/{deviceTemplateId}",
    ),
    (
        "DeviceTemplates_Remove",
        "delete",
        "/deviceTemplates/{deviceTemplateId}",
    ),
    ("Devices_List", "get", "/devices"),
    ("Devices_Get", "get", "/devices/{deviceId}"),
    ("Devices_Create", "put", "/devices/{deviceId}"),
    ("Devices_Update", "patch", "/devices/{deviceId}"),
    ("Devices_Remove", "delete", "/devices/{deviceId}"),
    (
        "Devices_GetCloudProperties",
        "get",
        "/devices/{deviceId}/cloudProperties",
    ),
    (
        "Devices_ReplaceCloudProperties",
        "put",
        "/devices/{deviceId}/cloudProperties",
    ),
    (
        "Devices_UpdateCloudProperties",
        "patch",
        "/devices/{deviceId}/cloudProperties",
    ),
    (
        "Devices_GetCredentials",
        "get",
        "/devices/{deviceId}/credentials",
    ),
    (
        "Devices_GetAttestation",
        "get",
        "/devices/{deviceId}/attestation",
    ),
    (
        "Devices_CreateAttestation",
        "put",
        "/devices/{deviceId}/attestation",
    ),
    (
        "Devices_UpdateAttestation",
        "patch",
        "/devices/{deviceId}/attestation",
    ),
    (
        "Devices_RemoveAttestation",
        "delete",
        "/devices/{deviceId}/attestation",
    ),
    (
        "Devices_GetProperties",
        "get",
        "/devices/{deviceId}/properties",
    ),
    (
        "Devices_ReplaceProperties",
        "put",
        "/devices/{deviceId}/properties",
    ),
    (
        "Devices_UpdateProperties",
        "patch",
        "/devices/{deviceId}/properties",
    ),
    (
        "Devices_GetComponentProperties",
        "get",
        "/devices/{deviceId}/components/{componentName}/properties",
    ),
    (
        "Devices_ReplaceComponentProperties",
        "put",
        "/devices/{deviceId}/components/{componentName}/properties",
    ),
    (
        "Devices_UpdateComponentProperties",
        "patch",
        "/devices/{deviceId}/components/{componentName}/properties",
    ),
    (
        "Devices_RunCommand",
        "post",
        "/devices/{deviceId}/commands/{commandName}",
    ),
    (
        "Devices_GetCommandHistory",
        "get",
        "/devices/{deviceId}/commands/{commandName}",
    ),
    (
        "Devices_RunComponentCommand",
        "post",
        "/devices/{deviceId}/components/{componentName}/commands/{commandName}",
    ),
    (
        "Devices_GetComponentCommandHistory",
        "get",
        "/devices/{deviceId}/components/{componentName}/commands/{commandName}",
    ),
    (
        "Devices_GetTelemetryValue",
        "get",
        "/devices/{deviceId}/telemetry/{telemetryName}",
    ),
    (
        "Devices_GetComponentTelemetryValue",
        "get",
        "/devices/{deviceId}/components/{componentName}/telemetry/{telemetryName}",
    ),
    (
        "Devices_ListComponents",
        "get",
        "/devices/{deviceId}/components",
    ),
    ("Devices_ListModules", "get", "/devices/{deviceId}/modules"),
    (
        "Devices_ListModuleComponents",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/components",
    ),
    (
        "Devices_GetModuleProperties",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/properties",
    ),
    (
        "Devices_ReplaceModuleProperties",
        "put",
        "/devices/{deviceId}/modules/{moduleName}/properties",
    ),
    (
        "Devices_UpdateModuleProperties",
        "patch",
        "/devices/{deviceId}/modules/{moduleName}/properties",
    ),
    (
        "Devices_GetModuleTelemetryValue",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/telemetry/{telemetryName}",
    ),
    (
        "Devices_GetModuleCommandHistory",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/commands/{commandName}",
    ),
    (
        "Devices_RunModuleCommand",
        "post",
        "/devices/{deviceId}/modules/{moduleName}/commands/{commandName}",
    ),
    (
        "Devices_GetModuleComponentProperties",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/properties",
    ),
    (
        "Devices_ReplaceModuleComponentProperties",
        "put",
        "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/properties",
    ),
    (
        "Devices_UpdateModuleComponentProperties",
        "patch",
        "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/properties",
    ),
    (
        "Devices_GetModuleComponentTelemetryValue",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/telemetry/{telemetryName}",
    ),
    (
        "Devices_GetModuleComponentCommandHistory",
        "get",
        "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/commands/{commandName}",
    ),
    (
        "Devices_RunModuleComponentCommand",
        "post",
        "/devices/{deviceId}/modules/{moduleName}/components/{componentName}/commands/{commandName}",
    ),
    (
        "Devices_GetConnection",
        "get",
        "/devices/{deviceId}/connection",
    ),
    ("Jobs_List", "get", "/jobs"),
    ("Jobs_Get", "get", "/jobs/{jobId}"),
    ("Jobs_Create", "put", "/jobs/{jobId}"),
    ("Jobs_GetDevices", "get", "/jobs/{jobId}/devices"),
    ("Jobs_Stop", "post", "/jobs/{jobId}/stop"),
    ("Jobs_Resume", "post", "/jobs/{jobId}/resume"),
    ("Jobs_Rerun", "put", "/jobs/{jobId}/rerun/{rerunId}"),
    ("Jobs_Plan", "post", "/jobs/{jobId}/plan"),
    ("Jobs_Revert", "put", "/jobs/{jobId}/revert/{revertId}"),
    ("Jobs_GetEvents", "get", "/jobs/{jobId}/events"),
    ("Events_Get", "get", "/events"),
    ("Webhooks_List", "get", "/webhooks"),
    ("Webhooks_Get", "get", "/webhooks/{webhookId}"),
    ("Webhooks_Create", "put", "/webhooks/{webhookId}"),
    ("Webhooks_Remove", "delete", "/webhooks/{webhookId}"),
    (
        "Webhooks_ListDeliveries",
        "get",
        "/webhooks/{webhookId}/deliveries",
    ),
    ("ScheduledJobs_List", "get", "/scheduledJobs"),
    (
        "ScheduledJobs_Get",
        "get",
        "/scheduledJobs/{scheduledJobId}",
    ),
    (
        "ScheduledJobs_Create",
        "put",
        "/scheduledJobs/{scheduledJobId}",
    ),
    (
        "ScheduledJobs_Update",
        "patch",
        "/scheduledJobs/{scheduledJobId}",
    ),
    (
        "ScheduledJobs_Remove",
        "delete",
        "/scheduledJobs/{scheduledJobId}",
    ),
    (
        "ScheduledJobs_ListJobs",
        "get",
        "/scheduledJobs/{scheduledJobId}/jobs",
    ),
    ("DeviceGroups_List", "get", "/deviceGroups"),
    ("DeviceGroups_Get", "get", "/deviceGroups/{deviceGroupId}"),
    (
        "DeviceGroups_Create",
        "put",
        "/deviceGroups/{deviceGroupId}",
    ),
    (
        "DeviceGroups_Update",
        "patch",
        "/deviceGroups/{deviceGroupId}",
    ),
    (
        "DeviceGroups_Remove",
        "delete",
        "/deviceGroups/{deviceGroupId}",
    ),
    (
        "DeviceGroups_GetDevices",
        "get",
        "/deviceGroups/{deviceGroupId}/devices",
    ),
    ("EnrollmentGroups_List", "get", "/enrollmentGroups"),
    (
        "EnrollmentGroups_Get",
        "get",
        "/enrollmentGroups/{enrollmentGroupId}",
    ),
    (
        "EnrollmentGroups_Create",
        "put",
        "/enrollmentGroups/{enrollmentGroupId}",
    ),
    (
        "EnrollmentGroups_Update",
        "patch",
        "/enrollmentGroups/{enrollmentGroupId}",
    ),
    (
        "EnrollmentGroups_Remove",
        "delete",
        "/enrollmentGroups/{enrollmentGroupId}",
    ),
];

/// Lists the spec does not page (no `x-ms-pageable`): a device's components and modules.
const UNPAGED_LISTS: &[&str] = &[
    "Devices_ListComponents",
    "Devices_ListModules",
    "Devices_ListModuleComponents",
];

/// Our operations that IoT Central does not have.
const EXTENSIONS: &[&str] = &[
    "Devices_GetCloudProperties",
    "Devices_ReplaceCloudProperties",
    "Devices_UpdateCloudProperties",
    "Devices_GetConnection",
    "Jobs_GetEvents",
    "Jobs_Plan",
    "Jobs_Revert",
    "Events_Get",
    "Webhooks_List",
    "Webhooks_Get",
    "Webhooks_Create",
    "Webhooks_Remove",
    "Webhooks_ListDeliveries",
];

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// The ids the walk over the document fills path parameters with. The PUTs create them.
fn path_value(name: &str, in_component: bool) -> String {
    match name {
        "componentName" => "thermostat1".into(),
        "jobId" => "openapi-job".into(),
        "scheduledJobId" => "openapi-schedule".into(),
        "rerunId" => "openapi-rerun".into(),
        "revertId" => "openapi-revert".into(),
        "commandName" if in_component => "getMaxMinReport".into(),
        "commandName" => "reboot".into(),
        "telemetryName" if in_component => "temperature".into(),
        "telemetryName" => "workingSet".into(),
        "tokenId" => "openapi-token".into(),
        "webhookId" => "openapi-webhook".into(),
        "roleId" => OPERATOR.into(),
        "deviceTemplateId" => encode(THERMOSTAT),
        "deviceId" => "openapi-device".into(),
        // Devices have no modules: the module routes answer their documented 404.
        "moduleName" => "openapi-module".into(),
        "deviceGroupId" => "openapi-group".into(),
        "enrollmentGroupId" => "openapi-enrollment".into(),
        other => panic!("no value for the path parameter {other}: add one to path_value"),
    }
}

/// A valid request body for each operation that takes one.
fn sample_body(operation_id: &str) -> Option<Value> {
    Some(match operation_id {
        "ApiTokens_Create" => json!({"roles": [{"role": OPERATOR}]}),
        // Nothing listens there: its deliveries fail and wait for a retry.
        "Webhooks_Create" => json!({
            "url": "http://127.0.0.1:9/hook",
            "secret": "openapi-webhook-secret",
            "events": ["job.status"]
        }),
        "DeviceTemplates_Create" => thermostat_template(),
        "DeviceTemplates_Update" => json!({"displayName": "Patched thermostat"}),
        "Devices_Create" => json!({"displayName": "OpenAPI device", "template": CONTROLLER}),
        "Devices_Update" => json!({"simulated": true}),
        "Devices_ReplaceCloudProperties" => json!({"customerName": "Contoso"}),
        "Devices_UpdateCloudProperties" => json!({"customerName": "Fabrikam"}),
        "Devices_CreateAttestation" => json!({
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}
        }),
        "Devices_UpdateAttestation" => {
            json!({"symmetricKey": {"primaryKey": OTHER_KEY, "secondaryKey": OTHER_KEY}})
        }
        "DeviceGroups_Create" => {
            json!({"displayName": "OpenAPI group", "filter": "SELECT * FROM devices"})
        }
        "DeviceGroups_Update" => json!({"description": "Patched."}),
        "EnrollmentGroups_Create" => json!({
            "displayName": "OpenAPI enrollment",
            "type": "iot",
            "attestation": {"type": "symmetricKey"}
        }),
        "EnrollmentGroups_Update" => json!({"enabled": false}),
        "Devices_ReplaceProperties" | "Devices_UpdateProperties" => {
            json!({"thermostat1": {"targetTemperature": 21}})
        }
        "Devices_ReplaceModuleProperties" | "Devices_UpdateModuleProperties" => {
            json!({"targetTemperature": 23})
        }
        "Devices_ReplaceModuleComponentProperties" | "Devices_UpdateModuleComponentProperties" => {
            json!({"targetTemperature": 24})
        }
        "Devices_RunModuleCommand" | "Devices_RunModuleComponentCommand" => json!({"request": 1}),
        "Devices_ReplaceComponentProperties" | "Devices_UpdateComponentProperties" => {
            json!({"targetTemperature": 22})
        }
        "Devices_RunCommand" => json!({"request": 3}),
        "ScheduledJobs_Create" => json!({
            "displayName": "OpenAPI schedule",
            "group": "openapi-group",
            "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "Contoso"}],
            "schedule": {"start": "2030-01-01T00:00:00Z", "recurrence": "daily", "end": {"type": "occurrences", "occurrences": 3}}
        }),
        "ScheduledJobs_Update" => {
            json!({"schedule": {"start": "2030-01-01T00:00:00Z", "recurrence": "weekly"}})
        }
        "Jobs_Create" | "Jobs_Plan" => json!({
            "displayName": "OpenAPI job",
            "group": "openapi-group",
            "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "Contoso"}]
        }),
        "Devices_RunComponentCommand" => json!({"request": "2024-01-01T00:00:00Z"}),
        _ => return None,
    })
}

async fn fetch_document(server: &Server) -> Value {
    let response = reqwest::get(format!("{}/api/openapi.json", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    serde_json::from_str(&response.text().await.unwrap()).expect("the document is JSON")
}

/// One documented operation.
struct Operation {
    id: String,
    method: String,
    path: String,
    spec: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, spec) in item.as_object().unwrap() {
            let id = spec["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            found.push(Operation {
                id: id.to_string(),
                method: method.clone(),
                path: path.clone(),
                spec: spec.clone(),
            });
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_lists_every_operation() {
    let server = Server::start().await;
    let doc = fetch_document(&server).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], "/api");
    // The same document with an api-version, and the API itself still wants a token.
    let api = server.admin().with_token(None);
    assert_eq!(api.get("/openapi.json").await.ok(200), &doc);
    api.get("/devices").await.error(401, "Unauthorized");

    let documented: BTreeSet<(String, String, String)> = operations(&doc)
        .into_iter()
        .map(|op| (op.id, op.method, op.path))
        .collect();
    let expected: BTreeSet<(String, String, String)> = OPERATIONS
        .iter()
        .map(|(id, method, path)| (id.to_string(), method.to_string(), path.to_string()))
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let unexpected: Vec<_> = documented.difference(&expected).collect();
    assert!(missing.is_empty(), "not documented: {missing:?}");
    assert!(
        unexpected.is_empty(),
        "documented but not expected: {unexpected:?}"
    );

    // What every operation shares: the api-version, the token, the error response.
    let scheme = &doc["components"]["securitySchemes"]["apiToken"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");
    let details = resolve(
        &doc,
        &doc["components"]["schemas"]["Error"]["properties"]["error"],
    );
    for field in ["code", "message", "requestId", "time"] {
        assert!(
            details["properties"].get(field).is_some(),
            "ErrorDetails.{field}"
        );
    }
    for op in operations(&doc) {
        let version = op.spec["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "api-version")
            .unwrap_or_else(|| panic!("{} has no api-version", op.id));
        assert_eq!(version["in"], "query");
        assert_eq!(version["required"], true);
        assert_eq!(
            version["schema"]["enum"],
            json!([STABLE, "2022-06-30-preview", PREVIEW]),
            "{}",
            op.id
        );
        assert_eq!(
            op.spec["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{}",
            op.id
        );
        assert_eq!(op.spec["security"], json!([{"apiToken": []}]), "{}", op.id);
        let paged = op.spec["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("Collection"))
            && !UNPAGED_LISTS.contains(&op.id.as_str());
        let has_page_size = op.spec["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "maxpagesize" && p["in"] == "query");
        assert_eq!(paged, has_page_size, "{}: maxpagesize on lists", op.id);
    }
}

/// IoT Central's own operations keep their official ids, methods and paths.
#[tokio::test]
async fn official_operations_match_the_iot_central_spec() {
    let server = Server::start().await;
    let doc = fetch_document(&server).await;
    let official = fixture("iotcentral-2022-07-31.json");
    for op in operations(&doc) {
        if EXTENSIONS.contains(&op.id.as_str()) {
            assert!(official["paths"].get(&op.path).is_none(), "{}", op.path);
            continue;
        }
        assert_eq!(
            official["paths"][&op.path][&op.method]["operationId"], op.id,
            "{} {}",
            op.method, op.path
        );
    }
}

/// Sends every documented operation to the server, in an order where each finds what it needs
/// (creates first, deletes last, children before parents), and checks that the route exists,
/// answers with a documented status, and returns a body that fits the documented schema.
#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let server = Server::start().await;
    let api = server.admin();
    // The device's template, with cloud properties; the walk itself publishes the thermostat.
    api.publish_template(CONTROLLER, controller_template())
        .await;
    let doc = fetch_document(&server).await;

    let mut ops = operations(&doc);
    let depth = |op: &Operation| op.path.matches('/').count() as i64;
    ops.sort_by_key(|op| match op.method.as_str() {
        "put" => (0, depth(op)),
        "post" => (1, depth(op)),
        "get" => (2, depth(op)),
        "patch" => (3, depth(op)),
        "delete" => (4, -depth(op)),
        other => panic!(
            "{} uses the method {other}, which this test does not order",
            op.id
        ),
    });

    let mut checked = BTreeMap::new();
    for op in &ops {
        let path = fill(&op.path);
        let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
        let mut request = api.request(method.clone(), &path);
        let documented_body = op.spec.get("requestBody");
        match (sample_body(&op.id), documented_body) {
            (Some(body), Some(documented)) => {
                assert_eq!(documented["required"], true, "{}", op.id);
                let content = documented["content"].as_object().unwrap();
                let (content_type, media) = content.iter().next().unwrap();
                let problems = fits(&doc, &media["schema"], &body, Direction::Request);
                assert!(problems.is_empty(), "{}'s sample body: {problems:?}", op.id);
                request = request
                    .header("content-type", content_type)
                    .body(body.to_string());
            }
            (None, None) => {}
            (Some(_), None) => panic!("{} documents no request body but takes one", op.id),
            (None, Some(_)) => panic!("{} takes a body: add one to sample_body", op.id),
        }
        // An event stream may not end: its head is checked, and the stream dropped.
        if op.spec["responses"]["200"]["content"]
            .get("text/event-stream")
            .is_some()
        {
            let response = request.send().await.expect("the server answers");
            assert_eq!(response.status(), StatusCode::OK, "{}", op.id);
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert!(content_type.starts_with("text/event-stream"), "{}", op.id);
            checked.insert(op.id.clone(), 200);
            continue;
        }
        let response = Api::send(request).await;
        let status = response.status.as_u16();
        assert_route_exists(&op.id, &response);
        let documented = &op.spec["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{} {method} {path} answered {status}, which is not documented: {}",
            op.id,
            response.text
        );
        match documented["content"]["application/json"].get("schema") {
            Some(schema) => {
                let problems = fits(&doc, schema, &response.body, Direction::Response);
                assert!(
                    problems.is_empty(),
                    "{}: {problems:?} in {}",
                    op.id,
                    response.text
                );
            }
            None => assert!(response.text.is_empty(), "{}: {}", op.id, response.text),
        }
        checked.insert(op.id.clone(), status);

        // Lists: the preview's page size is honoured (by those that answered a list).
        if status == 200 && has_parameter(&op.spec, "maxpagesize") {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = api
                .preview()
                .get(&format!("{path}{sep}maxpagesize=1"))
                .await;
            let body = page.ok(200);
            assert!(body["value"].as_array().unwrap().len() <= 1, "{}", op.id);
            let schema = &op.spec["responses"]["200"]["content"]["application/json"]["schema"];
            let problems = fits(&doc, schema, body, Direction::Response);
            assert!(problems.is_empty(), "{}: {problems:?}", op.id);
        }
    }
    assert_eq!(checked.len(), OPERATIONS.len(), "{checked:?}");
}

/// Without a token every operation answers with the documented default (error) response.
#[tokio::test]
async fn every_documented_operation_answers_errors_as_documented() {
    let server = Server::start().await;
    let doc = fetch_document(&server).await;
    let anonymous = server.admin().with_token(None);
    for op in operations(&doc) {
        let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
        let mut request = anonymous.request(method, &fill(&op.path));
        if let Some(body) = sample_body(&op.id) {
            request = request.json(&body);
        }
        let response = Api::send(request).await;
        assert_route_exists(&op.id, &response);
        response.error(401, "Unauthorized");
        let default = &op.spec["responses"]["default"];
        assert!(
            default["headers"].get("x-ms-error-code").is_some(),
            "{}",
            op.id
        );
        let schema = &default["content"]["application/json"]["schema"];
        let problems = fits(&doc, schema, &response.body, Direction::Response);
        assert!(problems.is_empty(), "{}: {problems:?}", op.id);
    }
}

/// The fields of a job body that are Flotilla's rollout extensions (issue 14).
const JOB_EXTENSIONS: [&str; 9] = [
    "retry",
    "offline",
    "conflicts",
    "batchGate",
    "rollout",
    "deviceTimeoutSeconds",
    "deadline",
    "windows",
    "timeZone",
];

/// A job body that uses every extension, each with every field it has.
fn job_with_every_extension() -> Value {
    json!({
        "displayName": "Every extension",
        "group": "openapi-group",
        "data": [{"type": "property", "target": CONTROLLER,
                  "path": "thermostat1.targetTemperature", "value": 21}],
        "batch": {"type": "number", "value": 10},
        "cancellationThreshold": {"type": "percentage", "value": 20, "batch": true},
        "conflicts": "refuse",
        "retry": {"attempts": 2, "backoffSeconds": 5, "factor": 1.5, "maxBackoffSeconds": 60,
                  "on": ["rejected", "timedOut", "offline"]},
        "offline": {"policy": "wait", "waitSeconds": 30},
        "rollout": {"maxPerMinute": 600,
                    "ramp": {"startPerMinute": 60, "factor": 2, "every": {"succeeded": 10}}},
        "batchGate": {"minSuccessPercentage": 90, "soakSeconds": 60},
        "deviceTimeoutSeconds": 120,
        "deadline": "2099-12-24T18:00:00+01:00",
        "windows": [{"days": ["sat", "sun"], "start": "02:30", "durationMinutes": 90}],
        "timeZone": "Europe/Paris"
    })
}

/// The properties a schema lists, across the parts of an `allOf`.
fn properties(doc: &Value, schema: &Value) -> serde_json::Map<String, Value> {
    let schema = resolve(doc, schema);
    let parts = match schema.get("allOf").and_then(Value::as_array) {
        Some(parts) => parts.iter().map(|p| resolve(doc, p)).collect(),
        None => vec![schema],
    };
    parts
        .into_iter()
        .filter_map(|p| p.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.clone())
        .collect()
}

/// The document describes Flotilla's rollout extensions: each field of a job body, on jobs
/// and scheduled jobs (and `schedule.timeZone`), `reasonCode` and `attempts` on a job's
/// devices, the plan and revert routes, and the export's media types; a job body with every
/// extension fits `Jobs_Create`'s schema, and what the server answers to it fits too.
#[tokio::test]
async fn the_document_describes_every_rollout_extension() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.put(
        "/deviceGroups/openapi-group",
        json!({"displayName": "OpenAPI group", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    let doc = fetch_document(&server).await;
    let all = operations(&doc);
    let op = |id: &str| {
        all.iter()
            .find(|op| op.id == id)
            .unwrap_or_else(|| panic!("{id} is not documented"))
    };
    let request =
        |id: &str| op(id).spec["requestBody"]["content"]["application/json"]["schema"].clone();
    let answer = |id: &str, status: &str| {
        op(id).spec["responses"][status]["content"]["application/json"]["schema"].clone()
    };

    // Every extension field, on jobs and scheduled jobs, in bodies and answers.
    for (what, schema) in [
        ("Jobs_Create's body", request("Jobs_Create")),
        ("Jobs_Create's answer", answer("Jobs_Create", "200")),
        ("Jobs_Get's answer", answer("Jobs_Get", "200")),
        ("Jobs_Plan's body", request("Jobs_Plan")),
        (
            "ScheduledJobs_Create's body",
            request("ScheduledJobs_Create"),
        ),
        (
            "ScheduledJobs_Get's answer",
            answer("ScheduledJobs_Get", "200"),
        ),
    ] {
        let listed = properties(&doc, &schema);
        for field in JOB_EXTENSIONS {
            let property = listed
                .get(field)
                .unwrap_or_else(|| panic!("{field} is not in {what}"));
            let description = property["description"].as_str().unwrap_or_default();
            assert!(
                !description.is_empty(),
                "{field} in {what} is not described"
            );
        }
    }
    for (what, schema) in [
        (
            "ScheduledJobs_Create's body",
            request("ScheduledJobs_Create"),
        ),
        (
            "ScheduledJobs_Get's answer",
            answer("ScheduledJobs_Get", "200"),
        ),
    ] {
        let schedule = &properties(&doc, &schema)["schedule"];
        assert!(
            properties(&doc, schedule).contains_key("timeZone"),
            "schedule.timeZone in {what}"
        );
    }
    assert_eq!(
        resolve(
            &doc,
            &properties(&doc, &request("Jobs_Create"))["conflicts"]
        )["enum"],
        json!(["queue", "refuse"])
    );

    // A job's devices: `reasonCode` and `attempts`, and the export's two media types.
    let listing = &op("Jobs_GetDevices").spec["responses"]["200"]["content"];
    let page = properties(&doc, &listing["application/json"]["schema"]);
    let device = properties(&doc, &page["value"]["items"]);
    for field in ["reason", "reasonCode", "attempts"] {
        assert!(device.contains_key(field), "{field} on a job's device");
    }
    let codes = json!([
        "rejected",
        "timedOut",
        "offline",
        "skipped",
        "interrupted",
        "deadline",
        "error"
    ]);
    assert_eq!(resolve(&doc, &device["reasonCode"])["enum"], codes);
    assert_eq!(listing["text/csv"]["schema"]["type"], "string", "{listing}");
    let exported: BTreeSet<String> = properties(&doc, &listing["application/x-ndjson"]["schema"])
        .keys()
        .cloned()
        .collect();
    let columns: BTreeSet<String> = common::EXPORT_COLUMNS.map(String::from).into();
    assert_eq!(exported, columns);

    // The plan and revert routes, with their answers.
    let plan = op("Jobs_Plan");
    assert_eq!(
        (plan.method.as_str(), plan.path.as_str()),
        ("post", "/jobs/{jobId}/plan")
    );
    assert_eq!(request("Jobs_Plan"), request("Jobs_Create"));
    let planned = properties(&doc, &answer("Jobs_Plan", "200"));
    for field in [
        "total",
        "batches",
        "skipped",
        "offline",
        "conflicts",
        "estimatedSeconds",
    ] {
        assert!(planned.contains_key(field), "{field} in a plan");
    }
    assert!(plan.spec["responses"].get("400").is_some());
    let revert = op("Jobs_Revert");
    assert_eq!(
        (revert.method.as_str(), revert.path.as_str()),
        ("put", "/jobs/{jobId}/revert/{revertId}")
    );
    assert_eq!(answer("Jobs_Revert", "200"), answer("Jobs_Create", "200"));
    for status in ["400", "409"] {
        assert!(revert.spec["responses"].get(status).is_some(), "{status}");
    }
    assert!(properties(&doc, &answer("Jobs_Get", "200")).contains_key("revertOf"));

    // A body with every extension fits the schema (and one that leaves out what has a
    // default), the server takes it, and its answers fit theirs.
    let every = job_with_every_extension();
    let mut defaults = every.clone();
    defaults["retry"] = json!({"attempts": 1});
    defaults["offline"] = json!({"policy": "wait"});
    defaults["rollout"] = json!({"maxPerMinute": 60});
    defaults["batchGate"] = json!({"soakSeconds": 5});
    for body in [&every, &defaults] {
        let problems = fits(&doc, &request("Jobs_Create"), body, Direction::Request);
        assert!(problems.is_empty(), "{problems:?} in {body}");
    }
    for (id, body) in [("every", &every), ("defaults", &defaults)] {
        let created = api.put(&format!("/jobs/{id}"), body.clone()).await;
        let created = created.ok(200);
        let problems = fits(
            &doc,
            &answer("Jobs_Create", "200"),
            created,
            Direction::Response,
        );
        assert!(problems.is_empty(), "{problems:?} in {created}");
        for field in JOB_EXTENSIONS {
            assert!(created.get(field).is_some(), "{field} echoed in {created}");
        }
        let planned = api
            .post(&format!("/jobs/{id}-plan/plan"), body.clone())
            .await;
        let problems = fits(
            &doc,
            &answer("Jobs_Plan", "200"),
            planned.ok(200),
            Direction::Response,
        );
        assert!(problems.is_empty(), "{problems:?} in {}", planned.text);
    }
    let mut scheduled = every.clone();
    scheduled["schedule"] = json!({"start": "2099-01-01T00:00:00Z", "recurrence": "daily",
                                   "timeZone": "Europe/Paris"});
    let problems = fits(
        &doc,
        &request("ScheduledJobs_Create"),
        &scheduled,
        Direction::Request,
    );
    assert!(problems.is_empty(), "{problems:?} in {scheduled}");
    let created = api.put("/scheduledJobs/every", scheduled).await;
    let created = created.ok(200);
    let problems = fits(
        &doc,
        &answer("ScheduledJobs_Create", "200"),
        created,
        Direction::Response,
    );
    assert!(problems.is_empty(), "{problems:?} in {created}");
    assert_eq!(created["schedule"]["timeZone"], "Europe/Paris", "{created}");
}

fn fill(path: &str) -> String {
    let in_component = path.contains("/components/");
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => path_value(name, in_component),
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn has_parameter(spec: &Value, name: &str) -> bool {
    spec["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == name))
}

/// Not the router's fallbacks: the route exists and takes the method.
#[track_caller]
fn assert_route_exists(id: &str, response: &Resp) {
    assert_ne!(
        response.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{id}: {}",
        response.text
    );
    assert!(
        !(response.status == StatusCode::NOT_FOUND
            && response.body["error"]["message"] == "There is no such route."),
        "{id} is documented but not routed"
    );
}

// ---------------------------------------------------------------------------------------------
// A small checker of JSON values against the document's schemas: types, enums, required and
// unknown fields, arrays, oneOf and allOf, following $refs.

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("an unexpected $ref {reference}"));
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "{reference} is not defined");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Where a value goes: a request body may leave out read-only fields the schema requires.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Request,
    Response,
}

fn fits(doc: &Value, schema: &Value, value: &Value, direction: Direction) -> Vec<String> {
    let mut problems = Vec::new();
    Checker { doc, direction }.check(schema, value, "$", &mut problems);
    problems
}

struct Checker<'a> {
    doc: &'a Value,
    direction: Direction,
}

impl Checker<'_> {
    fn check(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        let schema = resolve(self.doc, schema);
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let fitting = branches
                .iter()
                .filter(|branch| {
                    let mut found = Vec::new();
                    self.check(branch, value, at, &mut found);
                    found.is_empty()
                })
                .count();
            if fitting != 1 {
                problems.push(format!("{at} fits {fitting} of the oneOf branches"));
            }
            return;
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            let mut known = BTreeSet::new();
            for part in parts {
                let part = resolve(self.doc, part);
                self.check_one(part, value, at, problems, false);
                if let Some(properties) = part.get("properties").and_then(Value::as_object) {
                    known.extend(properties.keys().cloned());
                }
            }
            if let Some(object) = value.as_object() {
                for key in object.keys().filter(|k| !known.contains(*k)) {
                    problems.push(format!("{at}.{key} is not documented"));
                }
            }
            return;
        }
        self.check_one(schema, value, at, problems, true);
    }

    /// One schema without composition; `closed` refuses fields it does not list (unless it
    /// allows additional properties).
    fn check_one(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        problems: &mut Vec<String>,
        closed: bool,
    ) {
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let type_fits = types.is_empty()
            || types.contains(&kind)
            || (kind == "integer" && types.contains(&"number"));
        if !type_fits {
            problems.push(format!("{at} is a {kind}, documented as {types:?}"));
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            problems.push(format!("{at} is {value}, not one of {allowed:?}"));
        }
        match value {
            Value::Object(object) => self.check_object(schema, object, at, problems, closed),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{at}[{i}]"), problems);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        object: &serde_json::Map<String, Value>,
        at: &str,
        problems: &mut Vec<String>,
        closed: bool,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let read_only = |name: &str| {
            properties
                .and_then(|p| p.get(name))
                .is_some_and(|p| resolve(self.doc, p)["readOnly"] == true || p["readOnly"] == true)
        };
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                let needed = self.direction == Direction::Response || !read_only(name);
                if needed && !object.contains_key(name) {
                    problems.push(format!("{at}.{name} is required but missing"));
                }
            }
        }
        for (key, item) in object {
            let here = format!("{at}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => self.check(property, item, &here, problems),
                (None, Some(Value::Bool(false))) => {
                    problems.push(format!("{here} is not documented"))
                }
                (None, Some(extra @ Value::Object(_))) => self.check(extra, item, &here, problems),
                (None, None) if closed && properties.is_some() => {
                    problems.push(format!("{here} is not documented"))
                }
                (None, _) => {}
            }
        }
    }
}
