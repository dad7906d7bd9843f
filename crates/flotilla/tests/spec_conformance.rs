//! Our real HTTP responses, validated against the official IoT Central data-plane spec
//! (`fixtures/iotcentral-2022-07-31.json`, Swagger 2.0).
//!
//! Every request here is made by operation id: the method and the path template come from the
//! spec, and the response is checked against what the spec declares for that operation: the
//! success status code, the schema of the success response (or no body when it declares none),
//! and for failures the `default` response (the `Error` schema and its `x-ms-error-code` header).
//!
//! The spec's schemas are Swagger 2.0; they are turned into draft-7 JSON Schema: `$ref`s to
//! `#/definitions/X` resolve within a root document that carries every definition, and a
//! reference to a polymorphic base (one with a `discriminator`) becomes a dispatch on the
//! discriminator to the subtype whose `x-ms-discriminator-value` (or definition name) matches.
//! The validator is strict where the spec is: required fields, types, enums, `date-time` and
//! `date-time-rfc1123` formats; it allows extra properties, as the spec does.
//!
//! Each scenario collects every nonconformity it sees and fails at the end with all of them.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use jsonschema::{Draft, Validator};
use reqwest::Method;
use serde_json::{Map, Value, json};

const SPEC_FILE: &str = "iotcentral-2022-07-31.json";

/// The suffix of the definition made for each polymorphic base: the dispatch to its subtypes.
const POLYMORPHIC: &str = "__polymorphic";

// ---------------------------------------------------------------------------------------------
// The spec, and the validator built from it.
// ---------------------------------------------------------------------------------------------

/// One operation of the spec.
struct Operation {
    method: Method,
    /// The path template, relative to the spec's `basePath` (`/api`).
    path: String,
    /// `responses` as the spec declares them, by status code (and `default`).
    responses: Map<String, Value>,
}

impl Operation {
    /// The one success status the spec declares, and its response object.
    fn success(&self) -> (u16, &Value) {
        let mut codes = self
            .responses
            .iter()
            .filter(|(code, _)| code.as_str() != "default");
        let (code, response) = codes.next().expect("a success response");
        assert!(codes.next().is_none(), "{} declares one success", self.path);
        (code.parse().expect("a numeric status"), response)
    }

    fn default_response(&self) -> &Value {
        self.responses.get("default").expect("a default response")
    }
}

struct Spec {
    operations: HashMap<String, Operation>,
    /// Every definition converted to JSON Schema, plus one `X__polymorphic` per polymorphic base.
    definitions: Map<String, Value>,
    /// The polymorphic bases, by name.
    bases: BTreeSet<String>,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load(&fixture(SPEC_FILE)))
}

impl Spec {
    fn load(doc: &Value) -> Spec {
        assert_eq!(doc["swagger"], "2.0");
        // The harness puts `/api` before every path, as the spec's basePath does.
        assert_eq!(doc["basePath"], "/api");
        let mut operations = HashMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().unwrap() {
                let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                    continue;
                };
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let previous = operations.insert(
                    id.to_string(),
                    Operation {
                        method,
                        path: path.clone(),
                        responses: op["responses"].as_object().unwrap().clone(),
                    },
                );
                assert!(previous.is_none(), "operationId {id} is unique");
            }
        }
        let swagger = doc["definitions"].as_object().expect("definitions");
        let (definitions, bases) = convert_definitions(swagger);
        Spec {
            operations,
            definitions,
            bases,
            validators: Mutex::new(HashMap::new()),
        }
    }

    fn operation(&self, id: &str) -> &Operation {
        self.operations
            .get(id)
            .unwrap_or_else(|| panic!("the spec has no operation {id}"))
    }

    /// A validator of a Swagger schema (as it appears in the spec, e.g. a response's `schema`).
    fn validator(&self, swagger_schema: &Value) -> Arc<Validator> {
        let key = swagger_schema.to_string();
        let mut cache = self.validators.lock().unwrap();
        if let Some(validator) = cache.get(&key) {
            return validator.clone();
        }
        let root = json!({
            "definitions": self.definitions,
            "allOf": [convert(swagger_schema, &self.bases)],
        });
        let validator = Arc::new(
            jsonschema::options()
                .with_draft(Draft::Draft7)
                .should_validate_formats(true)
                .should_ignore_unknown_formats(true)
                .with_format("date-time-rfc1123", is_rfc1123)
                .build(&root)
                .unwrap_or_else(|e| panic!("the converted schema compiles: {e}")),
        );
        cache.insert(key, validator.clone());
        validator
    }

    /// Every way `body` fails `swagger_schema`, as `"<instance path>: <error>"`.
    fn violations(&self, swagger_schema: &Value, body: &Value) -> Vec<String> {
        self.validator(swagger_schema)
            .iter_errors(body)
            .map(|e| {
                let at = e.instance_path().as_str();
                format!("{}: {e}", if at.is_empty() { "/" } else { at })
            })
            .collect()
    }
}

/// A definition name, from a `$ref` to `#/definitions/<name>`.
fn definition_name(reference: &Value) -> Option<&str> {
    reference.as_str()?.strip_prefix("#/definitions/")
}

/// Converts the spec's definitions: each one as JSON Schema, and for each polymorphic base `B`
/// (a definition with a `discriminator`) a definition `B__polymorphic` that checks the base, that
/// the discriminator names one of its subtypes, and the matching subtype. A subtype is a
/// definition whose `allOf` references the base; its value is its `x-ms-discriminator-value`, or
/// else its name.
fn convert_definitions(swagger: &Map<String, Value>) -> (Map<String, Value>, BTreeSet<String>) {
    let bases: BTreeSet<String> = swagger
        .iter()
        .filter(|(_, schema)| schema.get("discriminator").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    let mut definitions = Map::new();
    for (name, schema) in swagger {
        let mut converted = convert(schema, &bases);
        // In a definition's `allOf`, a `$ref` names its parent type itself (inheritance), not
        // "any subtype of the parent": keep it pointing at the plain definition.
        if let Some(all_of) = schema.get("allOf").and_then(Value::as_array) {
            converted["allOf"] = all_of
                .iter()
                .map(|item| {
                    if item.get("$ref").is_some() {
                        item.clone()
                    } else {
                        convert(item, &bases)
                    }
                })
                .collect();
        }
        definitions.insert(name.clone(), converted);
    }
    for base in &bases {
        let property = swagger[base]["discriminator"]
            .as_str()
            .expect("a discriminator names a property");
        let subtypes: Vec<(String, String)> = swagger
            .iter()
            .filter(|(_, schema)| {
                schema
                    .get("allOf")
                    .and_then(Value::as_array)
                    .is_some_and(|all_of| {
                        all_of
                            .iter()
                            .any(|item| definition_name(&item["$ref"]) == Some(base.as_str()))
                    })
            })
            .map(|(name, schema)| {
                let value = schema
                    .get("x-ms-discriminator-value")
                    .and_then(Value::as_str)
                    .unwrap_or(name);
                (value.to_string(), name.clone())
            })
            .collect();
        assert!(!subtypes.is_empty(), "{base} has subtypes");
        let values: Vec<&str> = subtypes.iter().map(|(v, _)| v.as_str()).collect();
        let mut all_of = vec![
            json!({"$ref": format!("#/definitions/{base}")}),
            json!({"properties": {property: {"enum": values}}}),
        ];
        for (value, subtype) in &subtypes {
            all_of.push(json!({
                "if": {"properties": {property: {"const": value}}, "required": [property]},
                "then": {"$ref": format!("#/definitions/{subtype}")},
            }));
        }
        definitions.insert(format!("{base}{POLYMORPHIC}"), json!({"allOf": all_of}));
    }
    (definitions, bases)
}

/// A Swagger schema as JSON Schema: references to polymorphic bases go to their dispatch, and
/// the Swagger-only keywords handled elsewhere are dropped. Everything else (`type`, `required`,
/// `enum`, `format`, `items`, `allOf`, ...) means the same in draft 7; unknown keywords (`readOnly`
/// is known, `x-ms-*` are not) are annotations there.
fn convert(schema: &Value, bases: &BTreeSet<String>) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                match key.as_str() {
                    "$ref" => {
                        let target = match definition_name(value) {
                            Some(name) if bases.contains(name) => {
                                json!(format!("#/definitions/{name}{POLYMORPHIC}"))
                            }
                            _ => value.clone(),
                        };
                        out.insert(key.clone(), target);
                    }
                    "discriminator" | "x-ms-discriminator-value" => {}
                    // Values, not schemas.
                    "enum" | "default" | "example" | "x-ms-enum" | "x-ms-examples" => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {
                        out.insert(key.clone(), convert(value, bases));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => items.iter().map(|item| convert(item, bases)).collect(),
        other => other.clone(),
    }
}

/// `date-time-rfc1123`: the IMF-fixdate of RFC 1123 / RFC 9110, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`: a real instant, with the right weekday, written exactly
/// in the canonical form.
fn is_rfc1123(s: &str) -> bool {
    let Ok(instant) = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(s) else {
        return false;
    };
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&instant)
        .is_ok_and(|canonical| canonical == s)
}

// ---------------------------------------------------------------------------------------------
// Calling the server by operation id, and checking what it answers.
// ---------------------------------------------------------------------------------------------

/// Makes requests by operation id and records every way the responses depart from the spec.
struct Conformance {
    api: Api,
    exercised: BTreeSet<String>,
    violations: Vec<Violation>,
}

/// One way a response departs from the spec: the operation and what is wrong, the first body
/// that showed it, and how many more responses showed the same.
struct Violation {
    key: String,
    body: String,
    again: usize,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n    body: {}", self.key, self.body)?;
        if self.again > 0 {
            write!(f, "\n    (and {} more response(s) like it)", self.again)?;
        }
        Ok(())
    }
}

impl Conformance {
    fn new(api: Api) -> Conformance {
        Conformance {
            api,
            exercised: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    /// The request for an operation: the spec's method, its path with the parameters filled in.
    fn request(
        &self,
        op_id: &str,
        params: &[(&str, &str)],
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let op = spec().operation(op_id);
        let mut path = op.path.clone();
        for (name, value) in params {
            let placeholder = format!("{{{name}}}");
            assert!(
                path.contains(&placeholder),
                "{op_id} has no parameter {name}"
            );
            path = path.replace(&placeholder, &encode(value));
        }
        assert!(
            !path.contains('{'),
            "{op_id}: unfilled parameters in {path}"
        );
        let builder = self.api.request(op.method.clone(), &path);
        match body {
            Some(body) => builder.json(body),
            None => builder,
        }
    }

    /// Calls an operation expecting success, and checks the answer against the spec.
    async fn call(&mut self, op_id: &str, params: &[(&str, &str)], body: Option<Value>) -> Resp {
        let response = Api::send(self.request(op_id, params, body.as_ref())).await;
        self.check_success(op_id, &response);
        response
    }

    /// Calls an operation expecting the given error status, and checks the answer against the
    /// spec's `default` response.
    async fn call_error(
        &mut self,
        op_id: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
        status: u16,
    ) -> Resp {
        let response = Api::send(self.request(op_id, params, body.as_ref())).await;
        self.check_error(op_id, &response, status);
        response
    }

    /// Every page of a list operation, following `nextLink`s, each page checked. Returns the
    /// items and how many pages there were.
    async fn list_all(&mut self, op_id: &str, params: &[(&str, &str)]) -> (Vec<Value>, usize) {
        let mut response = self.call(op_id, params, None).await;
        let mut items = Vec::new();
        let mut pages = 1;
        loop {
            if let Some(page) = response.body.get("value").and_then(Value::as_array) {
                items.extend(page.iter().cloned());
            }
            let Some(next) = response.body.get("nextLink").and_then(Value::as_str) else {
                break;
            };
            let next = next.to_string();
            response = self.api.get_url(&next).await;
            self.check_success(op_id, &response);
            pages += 1;
            assert!(pages < 1000, "{op_id}: nextLink loops");
        }
        (items, pages)
    }

    /// Records a nonconformity; the same one again (another body) is only counted.
    fn violation(&mut self, op_id: &str, response: &Resp, what: String) {
        let op = spec().operation(op_id);
        let key = format!(
            "{op_id} ({} {}) answered {}: {what}",
            op.method, op.path, response.status
        );
        match self.violations.iter_mut().find(|v| v.key == key) {
            Some(seen) => seen.again += 1,
            None => self.violations.push(Violation {
                key,
                body: response.text.clone(),
                again: 0,
            }),
        }
    }

    fn check_success(&mut self, op_id: &str, response: &Resp) {
        self.exercised.insert(op_id.to_string());
        let op = spec().operation(op_id);
        let (status, declared) = op.success();
        if response.status.as_u16() != status {
            let what = format!("the spec declares {status}");
            self.violation(op_id, response, what);
            return;
        }
        self.check_declared(op_id, response, declared);
    }

    fn check_error(&mut self, op_id: &str, response: &Resp, status: u16) {
        self.exercised.insert(format!("{op_id} (error {status})"));
        if response.status.as_u16() != status {
            // Not a conformance question: the scenario expected another answer.
            self.violation(op_id, response, format!("the test expected {status}"));
            return;
        }
        let declared = spec().operation(op_id).default_response();
        self.check_declared(op_id, response, declared);
    }

    /// The body (against the declared schema, or none when none is declared) and the declared
    /// headers of a response.
    fn check_declared(&mut self, op_id: &str, response: &Resp, declared: &Value) {
        if let Some(headers) = declared.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                if response.headers.get(name.as_str()).is_none() {
                    self.violation(
                        op_id,
                        response,
                        format!("the declared header {name} is missing"),
                    );
                }
            }
        }
        match declared.get("schema") {
            None => {
                if !response.text.is_empty() {
                    let what = "the spec declares no body".to_string();
                    self.violation(op_id, response, what);
                }
            }
            Some(schema) => {
                let content_type = response
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !content_type.starts_with("application/json") {
                    let what = format!("content-type is '{content_type}', not application/json");
                    self.violation(op_id, response, what);
                }
                let body: Value = match serde_json::from_str(&response.text) {
                    Ok(body) => body,
                    Err(e) => {
                        self.violation(op_id, response, format!("the body is not JSON: {e}"));
                        return;
                    }
                };
                let errors = spec().violations(schema, &body);
                if !errors.is_empty() {
                    let what = format!(
                        "does not match its schema {schema}:\n      {}",
                        errors.join("\n      ")
                    );
                    self.violation(op_id, response, what);
                }
            }
        }
    }

    /// Fails with every nonconformity seen; and checks the scenario exercised `expected`.
    fn finish(self, expected: &[&str]) {
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|op| !self.exercised.contains(**op))
            .collect();
        assert!(missing.is_empty(), "operations not exercised: {missing:?}");
        assert!(
            self.violations.is_empty(),
            "{} response(s) do not conform to {SPEC_FILE}:\n\n{}",
            self.violations.len(),
            self.violations
                .iter()
                .map(Violation::to_string)
                .collect::<Vec<_>>()
                .join("\n\n")
        );
    }
}

/// More than a page (25 in the stable version), so lists have a `nextLink`.
const MANY: usize = 27;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZmxvdGlsbGEtY29uZm9ybWFuY2UwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";

/// The thermostat fixture as a template of another id.
fn thermostat_as(id: &str) -> Value {
    let mut body = thermostat_template();
    body["@id"] = json!(id);
    body["displayName"] = json!(format!("Thermostat {id}"));
    body
}

// ---------------------------------------------------------------------------------------------
// Scenarios against the running server.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_tokens_conform() {
    let server = Server::start().await;
    let mut c = Conformance::new(server.admin());
    c.call("ApiTokens_List", &[], None).await;
    for i in 0..MANY {
        let id = format!("token-{i:02}");
        let body = match i % 3 {
            0 => json!({"roles": [{"role": OPERATOR}]}),
            1 => json!({"roles": [{"role": BUILDER}], "expiry": "2099-01-01T00:00:00Z"}),
            _ => json!({"roles": [{"role": ADMINISTRATOR}], "expiry": "2030-06-15T12:30:00.000Z"}),
        };
        c.call("ApiTokens_Create", &[("tokenId", &id)], Some(body))
            .await;
    }
    c.call("ApiTokens_Get", &[("tokenId", "token-01")], None)
        .await;
    c.call("ApiTokens_Get", &[("tokenId", "admin")], None).await;
    let (tokens, pages) = c.list_all("ApiTokens_List", &[]).await;
    assert_eq!(tokens.len(), MANY + 1);
    assert!(pages >= 2, "the list has a nextLink");
    c.call("ApiTokens_Remove", &[("tokenId", "token-00")], None)
        .await;
    c.call_error("ApiTokens_Get", &[("tokenId", "token-00")], None, 404)
        .await;
    c.call_error("ApiTokens_Remove", &[("tokenId", "token-00")], None, 404)
        .await;
    c.call_error(
        "ApiTokens_Create",
        &[("tokenId", "no-roles")],
        Some(json!({"roles": []})),
        400,
    )
    .await;
    c.finish(&[
        "ApiTokens_List",
        "ApiTokens_Get",
        "ApiTokens_Create",
        "ApiTokens_Remove",
    ]);
}

#[tokio::test]
async fn roles_conform() {
    let server = Server::start().await;
    let mut c = Conformance::new(server.admin());
    let (roles, _) = c.list_all("Roles_List", &[]).await;
    assert_eq!(roles.len(), 3, "the built-in roles (no more can be made)");
    for role in [ADMINISTRATOR, BUILDER, OPERATOR] {
        c.call("Roles_Get", &[("roleId", role)], None).await;
    }
    c.call_error(
        "Roles_Get",
        &[("roleId", "00000000-0000-0000-0000-000000000000")],
        None,
        404,
    )
    .await;
    c.finish(&["Roles_List", "Roles_Get"]);
}

#[tokio::test]
async fn device_templates_conform() {
    let server = Server::start().await;
    let mut c = Conformance::new(server.admin());
    c.call("DeviceTemplates_List", &[], None).await;
    c.call(
        "DeviceTemplates_Create",
        &[("deviceTemplateId", CONTROLLER)],
        Some(controller_template()),
    )
    .await;
    c.call(
        "DeviceTemplates_Create",
        &[("deviceTemplateId", THERMOSTAT)],
        Some(thermostat_template()),
    )
    .await;
    for i in 0..MANY {
        let id = format!("dtmi:conformance:thermostat{i:02};1");
        c.call(
            "DeviceTemplates_Create",
            &[("deviceTemplateId", &id)],
            Some(thermostat_as(&id)),
        )
        .await;
    }
    c.call(
        "DeviceTemplates_Get",
        &[("deviceTemplateId", CONTROLLER)],
        None,
    )
    .await;
    c.call(
        "DeviceTemplates_Update",
        &[("deviceTemplateId", CONTROLLER)],
        Some(json!({"displayName": "Controller v1", "description": "The temperature controller."})),
    )
    .await;
    let (templates, pages) = c.list_all("DeviceTemplates_List", &[]).await;
    assert_eq!(templates.len(), MANY + 2);
    assert!(pages >= 2, "the list has a nextLink");
    c.call(
        "DeviceTemplates_Remove",
        &[("deviceTemplateId", CONTROLLER)],
        None,
    )
    .await;
    c.call_error(
        "DeviceTemplates_Get",
        &[("deviceTemplateId", CONTROLLER)],
        None,
        404,
    )
    .await;
    let mut no_types = thermostat_template();
    no_types.as_object_mut().unwrap().remove("@type");
    c.call_error(
        "DeviceTemplates_Create",
        &[("deviceTemplateId", THERMOSTAT)],
        Some(no_types),
        400,
    )
    .await;
    c.finish(&[
        "DeviceTemplates_List",
        "DeviceTemplates_Get",
        "DeviceTemplates_Create",
        "DeviceTemplates_Update",
        "DeviceTemplates_Remove",
    ]);
}

#[tokio::test]
async fn devices_and_their_attestations_conform() {
    let server = Server::start().await;
    let mut c = Conformance::new(server.admin());
    c.call(
        "DeviceTemplates_Create",
        &[("deviceTemplateId", THERMOSTAT)],
        Some(thermostat_template()),
    )
    .await;
    c.call("Devices_List", &[], None).await;
    for i in 0..MANY {
        let id = format!("device-{i:02}");
        let body = match i % 3 {
            0 => json!({}),
            1 => json!({"displayName": format!("Thermostat {i}"), "template": THERMOSTAT}),
            _ => {
                json!({"displayName": format!("Simulated {i}"), "template": THERMOSTAT, "simulated": true, "enabled": false})
            }
        };
        c.call("Devices_Create", &[("deviceId", &id)], Some(body))
            .await;
    }
    c.call("Devices_Get", &[("deviceId", "device-00")], None)
        .await;
    c.call("Devices_Get", &[("deviceId", "device-01")], None)
        .await;
    c.call(
        "Devices_Update",
        &[("deviceId", "device-01")],
        Some(json!({"enabled": false, "displayName": "Renamed"})),
    )
    .await;
    let (devices, pages) = c.list_all("Devices_List", &[]).await;
    assert_eq!(devices.len(), MANY);
    assert!(pages >= 2, "the list has a nextLink");

    // Credentials derived from the default group, then from each kind of attestation.
    let device = [("deviceId", "device-02")];
    c.call("Devices_GetCredentials", &device, None).await;
    c.call_error("Devices_GetAttestation", &device, None, 404)
        .await;
    let symmetric = json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": OTHER_KEY}});
    c.call("Devices_CreateAttestation", &device, Some(symmetric))
        .await;
    c.call("Devices_GetAttestation", &device, None).await;
    c.call("Devices_GetCredentials", &device, None).await;
    c.call(
        "Devices_UpdateAttestation",
        &device,
        Some(json!({"type": "tpm", "symmetricKey": null, "tpm": {"endorsementKey": "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAxsj2gUScTk1UjuioeTlfGYZrrimExB+bScH75adUMRIi2UOMxG1kw4y+9RW/IVoMl4e620VxZad0ARX2gUqVjYO7KPVt3dyKhZS3dkcvfBisBhP1XH9B33VqHG9SHnbnQXdBUaCgKAfxome8UmBKfe+naTsE5fkvjb/do3/dD6l4sGBwFCnKRdln4XpM03zLpoHFao8zOwt8l/uP3qUIxmCYv9A7m69Ms+5/pCkTu/rK4mRDsfhZ0QLfbzVI6zQFOKF/rwsfBtFeWlWtcuJMKlXdD8TXWElTzgh7JS4qhFzreL0c1mI0GCj+Aws0usZh7dLIVPnlgZcBhgy1SSDQMQ=="}})),
    )
    .await;
    c.call("Devices_GetAttestation", &device, None).await;
    c.call("Devices_GetCredentials", &device, None).await;
    let x509 = json!({"type": "x509", "x509": {"clientCertificates": {
        "primary": {"certificate": PEM},
        "secondary": {"certificate": PEM},
    }}});
    c.call("Devices_CreateAttestation", &device, Some(x509))
        .await;
    c.call("Devices_GetAttestation", &device, None).await;
    c.call("Devices_GetCredentials", &device, None).await;
    c.call("Devices_RemoveAttestation", &device, None).await;
    c.call_error("Devices_GetAttestation", &device, None, 404)
        .await;
    c.call_error(
        "Devices_CreateAttestation",
        &device,
        Some(json!({"type": "magic"})),
        400,
    )
    .await;

    c.call("Devices_Remove", &[("deviceId", "device-00")], None)
        .await;
    c.call_error("Devices_Get", &[("deviceId", "device-00")], None, 404)
        .await;
    c.call_error(
        "Devices_GetCredentials",
        &[("deviceId", "device-00")],
        None,
        404,
    )
    .await;
    c.call_error(
        "Devices_Create",
        &[("deviceId", "bad-template")],
        Some(json!({"template": "dtmi:conformance:nosuchtemplate;1"})),
        400,
    )
    .await;
    c.finish(&[
        "Devices_List",
        "Devices_Get",
        "Devices_Create",
        "Devices_Update",
        "Devices_Remove",
        "Devices_GetCredentials",
        "Devices_GetAttestation",
        "Devices_CreateAttestation",
        "Devices_UpdateAttestation",
        "Devices_RemoveAttestation",
    ]);
}

#[tokio::test]
async fn device_groups_conform() {
    let server = Server::start().await;
    let mut c = Conformance::new(server.admin());
    c.call(
        "DeviceTemplates_Create",
        &[("deviceTemplateId", THERMOSTAT)],
        Some(thermostat_template()),
    )
    .await;
    for i in 0..MANY {
        let id = format!("device-{i:02}");
        let body = json!({"template": THERMOSTAT, "simulated": i % 2 == 0});
        c.call("Devices_Create", &[("deviceId", &id)], Some(body))
            .await;
    }
    c.call("DeviceGroups_List", &[], None).await;
    c.call(
        "DeviceGroups_Create",
        &[("deviceGroupId", "everything")],
        Some(json!({"displayName": "All devices", "filter": "SELECT * FROM devices"})),
    )
    .await;
    c.call(
        "DeviceGroups_Create",
        &[("deviceGroupId", "simulated")],
        Some(json!({
            "displayName": "Simulated thermostats",
            "description": "Thermostats that are simulated.",
            "filter": format!("SELECT * FROM devices WHERE $template = \"{THERMOSTAT}\" AND $simulated = true"),
        })),
    )
    .await;
    c.call(
        "DeviceGroups_Create",
        &[("deviceGroupId", "nobody")],
        Some(json!({"displayName": "Nobody", "filter": "SELECT * FROM devices WHERE $id = \"nobody\""})),
    )
    .await;
    for i in 0..MANY {
        let id = format!("group-{i:02}");
        c.call(
            "DeviceGroups_Create",
            &[("deviceGroupId", &id)],
            Some(json!({"displayName": format!("Group {i}"), "filter": "SELECT * FROM devices WHERE $simulated = false"})),
        )
        .await;
    }
    c.call("DeviceGroups_Get", &[("deviceGroupId", "simulated")], None)
        .await;
    c.call(
        "DeviceGroups_Update",
        &[("deviceGroupId", "simulated")],
        Some(json!({"displayName": "Simulated ones", "description": "Renamed."})),
    )
    .await;
    let (groups, pages) = c.list_all("DeviceGroups_List", &[]).await;
    assert_eq!(groups.len(), MANY + 3);
    assert!(pages >= 2, "the list has a nextLink");
    let (members, pages) = c
        .list_all(
            "DeviceGroups_GetDevices",
            &[("deviceGroupId", "everything")],
        )
        .await;
    assert_eq!(members.len(), MANY);
    assert!(pages >= 2, "the members list has a nextLink");
    let (members, _) = c
        .list_all("DeviceGroups_GetDevices", &[("deviceGroupId", "simulated")])
        .await;
    assert_eq!(members.len(), MANY.div_ceil(2));
    let (members, _) = c
        .list_all("DeviceGroups_GetDevices", &[("deviceGroupId", "nobody")])
        .await;
    assert!(members.is_empty());
    c.call("DeviceGroups_Remove", &[("deviceGroupId", "nobody")], None)
        .await;
    c.call_error(
        "DeviceGroups_Get",
        &[("deviceGroupId", "nobody")],
        None,
        404,
    )
    .await;
    c.call_error(
        "DeviceGroups_GetDevices",
        &[("deviceGroupId", "nobody")],
        None,
        404,
    )
    .await;
    c.call_error(
        "DeviceGroups_Create",
        &[("deviceGroupId", "no-filter")],
        Some(json!({"displayName": "No filter"})),
        400,
    )
    .await;
    c.finish(&[
        "DeviceGroups_List",
        "DeviceGroups_Get",
        "DeviceGroups_Create",
        "DeviceGroups_Update",
        "DeviceGroups_Remove",
        "DeviceGroups_GetDevices",
    ]);
}

#[tokio::test]
async fn enrollment_groups_conform() {
    let server = Server::start().await;
    let mut c = Conformance::new(server.admin());
    c.call("EnrollmentGroups_List", &[], None).await;
    c.call(
        "EnrollmentGroups_Get",
        &[("enrollmentGroupId", "sas-iot-devices")],
        None,
    )
    .await;
    for i in 0..MANY {
        let id = format!("group-{i:02}");
        let body = match i % 3 {
            0 => {
                json!({"displayName": format!("Line {i}"), "type": "iot", "attestation": {"type": "symmetricKey"}})
            }
            1 => json!({
                "displayName": format!("Edge {i}"),
                "type": "iotEdge",
                "enabled": false,
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": OTHER_KEY}},
            }),
            _ => {
                json!({"displayName": format!("Line {i}"), "type": "iot", "enabled": true, "attestation": {"type": "symmetricKey"}})
            }
        };
        c.call(
            "EnrollmentGroups_Create",
            &[("enrollmentGroupId", &id)],
            Some(body),
        )
        .await;
    }
    c.call(
        "EnrollmentGroups_Get",
        &[("enrollmentGroupId", "group-01")],
        None,
    )
    .await;
    c.call(
        "EnrollmentGroups_Update",
        &[("enrollmentGroupId", "group-01")],
        Some(json!({"enabled": true, "displayName": "Edge, enabled"})),
    )
    .await;
    let (groups, pages) = c.list_all("EnrollmentGroups_List", &[]).await;
    assert_eq!(groups.len(), MANY + 1);
    assert!(pages >= 2, "the list has a nextLink");
    c.call(
        "EnrollmentGroups_Remove",
        &[("enrollmentGroupId", "group-00")],
        None,
    )
    .await;
    c.call_error(
        "EnrollmentGroups_Get",
        &[("enrollmentGroupId", "group-00")],
        None,
        404,
    )
    .await;
    c.call_error(
        "EnrollmentGroups_Create",
        &[("enrollmentGroupId", "bad-type")],
        Some(
            json!({"displayName": "Bad", "type": "edge", "attestation": {"type": "symmetricKey"}}),
        ),
        400,
    )
    .await;
    c.finish(&[
        "EnrollmentGroups_List",
        "EnrollmentGroups_Get",
        "EnrollmentGroups_Create",
        "EnrollmentGroups_Update",
        "EnrollmentGroups_Remove",
    ]);
}

#[tokio::test]
async fn errors_conform_to_the_default_response() {
    let server = Server::start().await;
    let admin = server.admin();
    let operator = admin.create_token("operator", OPERATOR).await;

    let mut c = Conformance::new(admin.clone());
    c.call_error("Devices_Get", &[("deviceId", "nobody")], None, 404)
        .await;
    c.call_error(
        "Devices_Update",
        &[("deviceId", "nobody")],
        Some(json!({"enabled": false})),
        404,
    )
    .await;
    c.call_error("Devices_Remove", &[("deviceId", "nobody")], None, 404)
        .await;
    c.call_error(
        "Devices_Create",
        &[("deviceId", "bad-enabled")],
        Some(json!({"enabled": "yes"})),
        400,
    )
    .await;

    // No token at all, and a token whose role does not allow the operation.
    let mut anonymous = Conformance::new(admin.with_token(None));
    anonymous.call_error("Devices_List", &[], None, 401).await;
    let mut as_operator = Conformance::new(server.client(&operator));
    as_operator
        .call_error("ApiTokens_List", &[], None, 403)
        .await;

    for checker in [anonymous, as_operator] {
        c.violations.extend(checker.violations);
        c.exercised.extend(checker.exercised);
    }
    c.finish(&[
        "Devices_Get (error 404)",
        "Devices_Create (error 400)",
        "Devices_List (error 401)",
        "ApiTokens_List (error 403)",
    ]);
}

// ---------------------------------------------------------------------------------------------
// The validator itself: it accepts what the spec allows and rejects what it does not.
// ---------------------------------------------------------------------------------------------

/// The success schema the spec declares for an operation.
fn success_schema(op_id: &str) -> Value {
    spec().operation(op_id).success().1["schema"].clone()
}

fn errors_of(op_id: &str, body: Value) -> Vec<String> {
    spec().violations(&success_schema(op_id), &body)
}

#[track_caller]
fn accepts(op_id: &str, body: Value) {
    let errors = errors_of(op_id, body.clone());
    assert!(
        errors.is_empty(),
        "{op_id} should accept {body}: {errors:?}"
    );
}

#[track_caller]
fn rejects(op_id: &str, body: Value, at: &str) {
    let errors = errors_of(op_id, body.clone());
    assert!(
        errors.iter().any(|e| e.starts_with(&format!("{at}: "))),
        "{op_id} should reject {body} at {at}, got {errors:?}"
    );
}

#[test]
fn the_validator_looks_schemas_up_from_the_spec() {
    assert_eq!(
        success_schema("Devices_Get"),
        json!({"$ref": "#/definitions/Device"})
    );
    assert_eq!(spec().operation("Devices_Remove").success().0, 204);
    assert!(
        spec()
            .operation("Devices_Remove")
            .success()
            .1
            .get("schema")
            .is_none()
    );
    assert_eq!(
        spec().operation("Devices_Get").default_response()["schema"],
        json!({"$ref": "#/definitions/Error"})
    );
    assert!(spec().bases.contains("Attestation"));
    assert!(spec().bases.contains("GroupAttestation"));
}

#[test]
fn the_validator_rejects_wrong_devices() {
    accepts(
        "Devices_Get",
        json!({"id": "d", "etag": "e", "displayName": "D", "enabled": true, "provisioned": false, "simulated": false}),
    );
    rejects(
        "Devices_Get",
        json!({"id": "d", "enabled": "yes"}),
        "/enabled",
    );
    rejects("Devices_Get", json!({"id": 7}), "/id");
    rejects(
        "Devices_Get",
        json!({"organizations": "org"}),
        "/organizations",
    );
    rejects("Devices_Get", json!([]), "/");
    rejects(
        "Devices_List",
        json!({"value": [{"id": "a"}, {"id": "b", "simulated": "no"}]}),
        "/value/1/simulated",
    );
    rejects("Devices_List", json!({"nextLink": "x"}), "/");
    rejects(
        "Devices_List",
        json!({"value": [], "nextLink": 3}),
        "/nextLink",
    );
}

#[test]
fn the_validator_rejects_wrong_api_tokens() {
    accepts(
        "ApiTokens_Get",
        json!({"id": "t", "roles": [{"role": OPERATOR}], "expiry": "2099-01-01T00:00:00.000Z"}),
    );
    // `roles` comes from `allOf: [Permission]`, which requires it, with at least one item.
    rejects("ApiTokens_Get", json!({"id": "t"}), "/");
    rejects("ApiTokens_Get", json!({"id": "t", "roles": []}), "/roles");
    rejects(
        "ApiTokens_Get",
        json!({"id": "t", "roles": [{"organization": "o"}]}),
        "/roles/0",
    );
    // `date-time` is checked.
    rejects(
        "ApiTokens_Get",
        json!({"id": "t", "roles": [{"role": OPERATOR}], "expiry": "next year"}),
        "/expiry",
    );
}

#[test]
fn the_validator_dispatches_on_the_discriminator() {
    accepts(
        "Devices_GetAttestation",
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}),
    );
    accepts(
        "Devices_GetAttestation",
        json!({"type": "tpm", "tpm": {"endorsementKey": "ek"}}),
    );
    accepts(
        "Devices_GetAttestation",
        json!({"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": PEM}}}}),
    );
    // The subtype's own required fields, and its nested definitions.
    rejects(
        "Devices_GetAttestation",
        json!({"type": "tpm", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}),
        "/",
    );
    rejects(
        "Devices_GetAttestation",
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}),
        "/symmetricKey",
    );
    rejects(
        "Devices_GetAttestation",
        json!({"type": "x509", "x509": {"clientCertificates": {"secondary": {"certificate": PEM}}}}),
        "/x509/clientCertificates",
    );
    // The base's: the discriminator is required and names a subtype.
    rejects(
        "Devices_GetAttestation",
        json!({"tpm": {"endorsementKey": "ek"}}),
        "/",
    );
    rejects("Devices_GetAttestation", json!({"type": "magic"}), "/type");

    // GroupAttestation, nested in an enrollment group in a list.
    let group = |attestation: Value| json!({"value": [{"id": "g", "displayName": "G", "type": "iot", "attestation": attestation}]});
    accepts(
        "EnrollmentGroups_List",
        group(
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}),
        ),
    );
    accepts(
        "EnrollmentGroups_List",
        group(
            json!({"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": PEM, "verified": false}}}}),
        ),
    );
    rejects(
        "EnrollmentGroups_List",
        group(
            json!({"type": "x509", "x509": {"signingCertificates": {"primary": {"verified": "no"}}}}),
        ),
        "/value/0/attestation/x509/signingCertificates/primary/verified",
    );
    rejects(
        "EnrollmentGroups_List",
        group(json!({"type": "tpm", "tpm": {"endorsementKey": "ek"}})),
        "/value/0/attestation/type",
    );
}

#[test]
fn the_validator_rejects_wrong_enrollment_groups() {
    let ok = json!({"id": "g", "displayName": "G", "type": "iotEdge", "enabled": true,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}});
    accepts("EnrollmentGroups_Get", ok.clone());
    let mut edge = ok.clone();
    edge["type"] = json!("edge");
    rejects("EnrollmentGroups_Get", edge, "/type");
    let mut no_attestation = ok.clone();
    no_attestation
        .as_object_mut()
        .unwrap()
        .remove("attestation");
    rejects("EnrollmentGroups_Get", no_attestation, "/");
}

#[test]
fn the_validator_rejects_wrong_errors() {
    let error_schema = spec().operation("Devices_Get").default_response()["schema"].clone();
    let check = |body: Value| spec().violations(&error_schema, &body);
    let ok = json!({"error": {"code": "NotFound", "message": "No such device.",
        "requestId": "r", "time": "Sun, 06 Nov 1994 08:49:37 GMT"}});
    assert_eq!(check(ok), Vec::<String>::new());
    assert!(!check(json!({"code": "NotFound", "message": "m"})).is_empty());
    assert!(!check(json!({"error": {"code": "NotFound"}})).is_empty());
    // date-time-rfc1123: the canonical form of a real instant, with the right weekday.
    for time in [
        "1994-11-06T08:49:37Z",
        "Mon, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 25:49:37 GMT",
    ] {
        let body = json!({"error": {"code": "c", "message": "m", "time": time}});
        assert!(
            check(body).iter().any(|e| e.starts_with("/error/time: ")),
            "{time} is rejected"
        );
    }
}
