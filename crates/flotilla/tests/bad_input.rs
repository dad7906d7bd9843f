//! Bad input, resource by resource: every refusal has the right status and IoT Central error
//! code, names the field or parameter at fault, and leaves everything exactly as it was.
//!
//! Each test watches a few paths (lists and entities, read with the administrator token) and
//! checks after every bad request that they read back the same, etags included. A check that
//! fails is recorded and the test goes on, so one run lists every mishandled input; the test
//! fails at the end if any was.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The state of the watched paths, and the checks made so far.
struct Watch {
    api: Api,
    paths: Vec<String>,
    baseline: Vec<(u16, Value)>,
    checked: usize,
    failures: Vec<String>,
}

impl Watch {
    async fn new(api: &Api, paths: &[&str]) -> Watch {
        let mut watch = Watch {
            api: api.clone(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            baseline: Vec::new(),
            checked: 0,
            failures: Vec::new(),
        };
        watch.rebase().await;
        watch
    }

    /// What each watched path reads as: the body when found, else the status and error code
    /// (an error's requestId and time differ on every request).
    async fn read(&self) -> Vec<(u16, Value)> {
        let mut state = Vec::new();
        for path in &self.paths {
            let response = self.api.get(path).await;
            let status = response.status.as_u16();
            let body = if status == 200 {
                response.body
            } else {
                response.body["error"]["code"].clone()
            };
            state.push((status, body));
        }
        state
    }

    /// Takes the current state as the one to compare with (after a deliberate change).
    async fn rebase(&mut self) {
        self.baseline = self.read().await;
    }

    /// Checks one refusal: status and code, the error shape (through `Resp::error`), that the
    /// message contains each of `needles`, and that the watched paths did not change.
    async fn refused(
        &mut self,
        what: &str,
        response: Resp,
        status: u16,
        code: &str,
        needles: &[&str],
    ) {
        self.checked += 1;
        if response.status.as_u16() != status || response.body["error"]["code"] != code {
            self.failures.push(format!(
                "{what}: expected {status} {code}, got {}: {}",
                response.status, response.text
            ));
        } else {
            let message = response.error(status, code);
            for needle in needles {
                if !message.contains(needle) {
                    self.failures.push(format!(
                        "{what}: the message {message:?} does not contain {needle:?}"
                    ));
                }
            }
        }
        let after = self.read().await;
        if after != self.baseline {
            for ((path, before), now) in self.paths.iter().zip(&self.baseline).zip(&after) {
                if before != now {
                    self.failures
                        .push(format!("{what}: {path} changed from {before:?} to {now:?}"));
                }
            }
            // Compare later checks with what is there now, so one change is reported once.
            self.baseline = after;
        }
    }

    /// Fails the test if any check failed, listing them all.
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n")
        );
    }
}

/// A request with a body given as raw bytes and an explicit Content-Type (or none).
async fn raw(
    api: &Api,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Resp {
    let mut builder = api.request(method, path).body(body);
    if let Some(content_type) = content_type {
        builder = builder.header("Content-Type", content_type);
    }
    Api::send(builder).await
}

/// A JSON request with an `If-Match` header (a preview feature, so sent with the preview version).
async fn with_if_match(api: &Api, method: Method, path: &str, etag: &str, body: Value) -> Resp {
    Api::send(
        api.preview()
            .request(method, path)
            .header("If-Match", etag)
            .json(&body),
    )
    .await
}

fn etag_of(body: &Value) -> String {
    body["etag"].as_str().expect("an etag").to_string()
}

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn the_version_and_the_token_are_checked_before_anything_else() {
    let server = Server::start().await;
    let admin = server.admin();

    // A token that expires two seconds from now, made first so that the wait overlaps the
    // other checks; it works until then.
    let expiry = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(2))
        .unwrap();
    let created = admin
        .put(
            "/apiTokens/short-lived",
            json!({"roles": [{"role": OPERATOR}], "expiry": expiry.to_string()}),
        )
        .await;
    let short_lived = created.ok(200)["token"].as_str().unwrap().to_string();
    server.client(&short_lived).get("/devices").await.ok(200);

    let doomed = admin.create_token("doomed", OPERATOR).await;
    server.client(&doomed).get("/devices").await.ok(200);
    admin.delete("/apiTokens/doomed").await.ok(204);

    let mut w = Watch::new(
        &admin,
        &[
            "/devices",
            "/devices/sneaky",
            "/apiTokens",
            &format!("/roles/{OPERATOR}"),
        ],
    )
    .await;
    let create = json!({"displayName": "Sneaky"});

    let r = admin
        .with_version(None)
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky without api-version",
        r,
        404,
        "NotFound",
        &["\"undefined\" is not a valid API version"],
    )
    .await;

    let r = admin
        .with_version(Some("2022-01-01"))
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky?api-version=2022-01-01",
        r,
        404,
        "NotFound",
        &["\"2022-01-01\" is not a valid API version"],
    )
    .await;

    let r = admin
        .with_version(Some(""))
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky?api-version= (empty)",
        r,
        404,
        "NotFound",
        &["is not a valid API version"],
    )
    .await;

    let r = admin
        .with_token(None)
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky without Authorization",
        r,
        401,
        "Unauthorized",
        &["Authorization"],
    )
    .await;

    let r = admin
        .with_token(Some(
            "SharedAccessSignature sr=app&sig=forged&skn=admin&se=4070908800000",
        ))
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky with a forged SAS token",
        r,
        401,
        "Unauthorized",
        &["API token"],
    )
    .await;

    let r = admin
        .with_token(Some("Bearer not-a-token"))
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky with a garbage Bearer token",
        r,
        401,
        "Unauthorized",
        &["API token"],
    )
    .await;

    let r = admin
        .with_token(Some(""))
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky with an empty Authorization header",
        r,
        401,
        "Unauthorized",
        &["API token"],
    )
    .await;

    let r = server
        .client(&doomed)
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky with a deleted token",
        r,
        401,
        "Unauthorized",
        &["API token"],
    )
    .await;

    let r = admin.get("/widgets").await;
    w.refused("GET /widgets (no such route)", r, 404, "NotFound", &[])
        .await;

    let r = admin.put("/devices/sneaky/widgets", create.clone()).await;
    w.refused(
        "PUT /devices/sneaky/widgets (no such route)",
        r,
        404,
        "NotFound",
        &[],
    )
    .await;

    let r = admin.post("/devices", create.clone()).await;
    w.refused(
        "POST /devices (no such method)",
        r,
        405,
        "MethodNotAllowed",
        &[],
    )
    .await;

    let r = admin
        .put(
            &format!("/roles/{OPERATOR}"),
            json!({"displayName": "Overlord"}),
        )
        .await;
    w.refused(
        "PUT /roles/{operator} (roles are read-only)",
        r,
        405,
        "MethodNotAllowed",
        &[],
    )
    .await;

    let r = admin.delete("/devices").await;
    w.refused(
        "DELETE /devices (no such method)",
        r,
        405,
        "MethodNotAllowed",
        &[],
    )
    .await;

    // Now past the expiry of the short-lived token.
    while jiff::Timestamp::now() <= expiry {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = server
        .client(&short_lived)
        .put("/devices/sneaky", create.clone())
        .await;
    w.refused(
        "PUT /devices/sneaky with an expired token",
        r,
        401,
        "Unauthorized",
        &["short-lived", "expired"],
    )
    .await;

    w.finish();
}

#[tokio::test]
async fn device_bodies_and_ids_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    admin
        .publish_template(THERMOSTAT, thermostat_template())
        .await;
    let created = admin
        .put(
            "/devices/dev-1",
            json!({"displayName": "Device 1", "template": THERMOSTAT}),
        )
        .await;
    let first_etag = etag_of(created.ok(200));
    // A change, so that the first etag is stale.
    let patched = admin
        .patch("/devices/dev-1", json!({"displayName": "Device one"}))
        .await;
    assert_ne!(etag_of(patched.ok(200)), first_etag);

    let mut w = Watch::new(
        &admin,
        &[
            "/devices",
            "/devices/dev-1",
            "/devices/new-dev",
            "/devices/ghost",
        ],
    )
    .await;
    let json_type = Some("application/json");

    let r = raw(
        &admin,
        Method::PUT,
        "/devices/new-dev",
        json_type,
        "{\"displayName\": ",
    )
    .await;
    w.refused(
        "PUT /devices/new-dev with malformed JSON",
        r,
        400,
        "BadRequest",
        &["JSON"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PATCH,
        "/devices/dev-1",
        json_type,
        "{\"enabled\": false,}",
    )
    .await;
    w.refused(
        "PATCH /devices/dev-1 with a trailing comma",
        r,
        400,
        "BadRequest",
        &["JSON"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!([{"displayName": "In an array"}]))
        .await;
    w.refused(
        "PUT /devices/new-dev with a JSON array",
        r,
        400,
        "BadRequest",
        &["object"],
    )
    .await;

    let r = raw(&admin, Method::PATCH, "/devices/dev-1", json_type, "null").await;
    w.refused(
        "PATCH /devices/dev-1 with the JSON null (a merge patch that would erase the device)",
        r,
        400,
        "BadRequest",
        &["object"],
    )
    .await;

    let deep = format!(
        "{{\"displayName\": {}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let r = raw(&admin, Method::PUT, "/devices/new-dev", json_type, deep).await;
    w.refused(
        "PUT /devices/new-dev with arrays nested 5000 deep",
        r,
        400,
        "BadRequest",
        &["JSON"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PUT,
        "/devices/new-dev",
        json_type,
        b"{\"displayName\": \"\xff\xfe\"}".to_vec(),
    )
    .await;
    w.refused(
        "PUT /devices/new-dev with bytes that are not UTF-8",
        r,
        400,
        "BadRequest",
        &["JSON"],
    )
    .await;

    let r = raw(&admin, Method::PUT, "/devices/new-dev", json_type, "").await;
    w.refused(
        "PUT /devices/new-dev with an empty body",
        r,
        400,
        "BadRequest",
        &["empty"],
    )
    .await;

    let r = raw(&admin, Method::PATCH, "/devices/dev-1", json_type, "  \n ").await;
    w.refused(
        "PATCH /devices/dev-1 with a whitespace body",
        r,
        400,
        "BadRequest",
        &["empty"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PUT,
        "/devices/new-dev",
        Some("text/plain"),
        "{\"displayName\": \"Plain\"}",
    )
    .await;
    w.refused(
        "PUT /devices/new-dev as text/plain",
        r,
        415,
        "UnsupportedMediaType",
        &["Content-Type", "text/plain"],
    )
    .await;

    let big = json!({"displayName": "x".repeat(1024 * 1024 + 16)});
    let r = admin.put("/devices/new-dev", big).await;
    w.refused(
        "PUT /devices/new-dev with a body over 1 MiB",
        r,
        413,
        "PayloadTooLarge",
        &[],
    )
    .await;

    let r = admin
        .patch("/devices/dev-1", json!({"enabled": "yes"}))
        .await;
    w.refused(
        "PATCH /devices/dev-1 enabled: \"yes\"",
        r,
        400,
        "BadRequest",
        &["'enabled'"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!({"displayName": 5}))
        .await;
    w.refused(
        "PUT /devices/new-dev displayName: 5",
        r,
        400,
        "BadRequest",
        &["'displayName'"],
    )
    .await;

    let r = admin.patch("/devices/dev-1", json!({"simulated": 1})).await;
    w.refused(
        "PATCH /devices/dev-1 simulated: 1",
        r,
        400,
        "BadRequest",
        &["'simulated'"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!({"displayName": "d".repeat(201)}))
        .await;
    w.refused(
        "PUT /devices/new-dev with a 201-character displayName",
        r,
        400,
        "BadRequest",
        &["'displayName'"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!({"organizations": ["a", "b"]}))
        .await;
    w.refused(
        "PUT /devices/new-dev with two organizations",
        r,
        400,
        "BadRequest",
        &["'organizations'"],
    )
    .await;

    let long_id = "d".repeat(129);
    let r = admin.put(&format!("/devices/{long_id}"), json!({})).await;
    w.refused(
        "PUT /devices/<129 characters>",
        r,
        400,
        "BadRequest",
        &["deviceId", "128"],
    )
    .await;

    let r = admin.put("/devices/bad%23id", json!({})).await;
    w.refused(
        "PUT /devices/bad%23id ('#')",
        r,
        400,
        "BadRequest",
        &["deviceId", "'#'"],
    )
    .await;

    let r = admin.put("/devices/bad%20id", json!({})).await;
    w.refused(
        "PUT /devices/bad%20id (space)",
        r,
        400,
        "BadRequest",
        &["deviceId", "' '"],
    )
    .await;

    let r = admin
        .put(
            "/devices/new-dev",
            json!({"template": "dtmi:contoso:nosuchtemplate;1"}),
        )
        .await;
    w.refused(
        "PUT /devices/new-dev with a template that does not exist",
        r,
        400,
        "BadRequest",
        &["'template'", "dtmi:contoso:nosuchtemplate;1"],
    )
    .await;

    let r = admin
        .patch(
            "/devices/dev-1",
            json!({"template": "dtmi:contoso:nosuchtemplate;1"}),
        )
        .await;
    w.refused(
        "PATCH /devices/dev-1 to a template that does not exist",
        r,
        400,
        "BadRequest",
        &["'template'", "dtmi:contoso:nosuchtemplate;1"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!({"template": "thermostat"}))
        .await;
    w.refused(
        "PUT /devices/new-dev with a template that is not a DTMI",
        r,
        400,
        "BadRequest",
        &["'template'", "DTMI"],
    )
    .await;

    let r = admin
        .patch("/devices/dev-1", json!({"provisioned": true}))
        .await;
    w.refused(
        "PATCH /devices/dev-1 provisioned: true",
        r,
        400,
        "BadRequest",
        &["'provisioned'", "read-only"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!({"provisioned": true}))
        .await;
    w.refused(
        "PUT /devices/new-dev provisioned: true",
        r,
        400,
        "BadRequest",
        &["'provisioned'"],
    )
    .await;

    let r = admin.patch("/devices/dev-1", json!({"id": "dev-2"})).await;
    w.refused(
        "PATCH /devices/dev-1 id: \"dev-2\"",
        r,
        400,
        "BadRequest",
        &["'id'"],
    )
    .await;

    let r = admin
        .put("/devices/new-dev", json!({"id": "other-dev"}))
        .await;
    w.refused(
        "PUT /devices/new-dev id: \"other-dev\"",
        r,
        400,
        "BadRequest",
        &["'id'"],
    )
    .await;

    let r = with_if_match(
        &admin,
        Method::PATCH,
        "/devices/dev-1",
        &first_etag,
        json!({"displayName": "Stale"}),
    )
    .await;
    w.refused(
        "PATCH /devices/dev-1 with a stale If-Match",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin
        .patch(
            "/devices/dev-1",
            json!({"etag": first_etag, "displayName": "Stale"}),
        )
        .await;
    w.refused(
        "PATCH /devices/dev-1 with a stale etag in the body",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin
        .put(
            "/devices/dev-1",
            json!({"etag": first_etag, "displayName": "Stale"}),
        )
        .await;
    w.refused(
        "PUT /devices/dev-1 with a stale etag in the body",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin
        .patch("/devices/dev-1", json!({"etag": 5, "displayName": "Odd"}))
        .await;
    w.refused(
        "PATCH /devices/dev-1 etag: 5",
        r,
        400,
        "BadRequest",
        &["'etag'"],
    )
    .await;

    let r = admin.get("/devices/ghost").await;
    w.refused("GET /devices/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    let r = admin
        .patch("/devices/ghost", json!({"displayName": "Boo"}))
        .await;
    w.refused("PATCH /devices/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    let r = admin.delete("/devices/ghost").await;
    w.refused("DELETE /devices/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    w.finish();
}

#[tokio::test]
async fn cloud_properties_and_attestations_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    admin
        .publish_template(CONTROLLER, controller_template())
        .await;
    admin
        .put("/devices/tc-1", json!({"template": CONTROLLER}))
        .await
        .ok(200);
    admin
        .put(
            "/devices/tc-1/cloudProperties",
            json!({"customerName": "Contoso"}),
        )
        .await
        .ok(200);
    admin.put("/devices/bare-1", json!({})).await.ok(200);
    admin.put("/devices/att-1", json!({})).await.ok(200);
    let attestation =
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}});
    admin
        .put("/devices/att-1/attestation", attestation)
        .await
        .ok(200);

    let mut w = Watch::new(
        &admin,
        &[
            "/devices",
            "/devices/tc-1",
            "/devices/tc-1/cloudProperties",
            "/devices/bare-1",
            "/devices/bare-1/cloudProperties",
            "/devices/bare-1/attestation",
            "/devices/bare-1/credentials",
            "/devices/att-1/attestation",
            "/devices/ghost",
        ],
    )
    .await;
    let props = "/devices/tc-1/cloudProperties";

    let r = admin.patch(props, json!({"notAProperty": "x"})).await;
    w.refused(
        "PATCH cloudProperties with a name not in the template",
        r,
        400,
        "BadRequest",
        &["'notAProperty'"],
    )
    .await;

    let r = admin.put(props, json!({"customerName": 5})).await;
    w.refused(
        "PUT cloudProperties customerName: 5 (a string property)",
        r,
        400,
        "BadRequest",
        &["'customerName'", "string"],
    )
    .await;

    let r = admin.patch(props, json!({"serialNumber": "SN-1"})).await;
    w.refused(
        "PATCH cloudProperties with a device (not cloud) property",
        r,
        400,
        "BadRequest",
        &["'serialNumber'"],
    )
    .await;

    let r = admin
        .put(
            "/devices/bare-1/cloudProperties",
            json!({"customerName": "Contoso"}),
        )
        .await;
    w.refused(
        "PUT cloudProperties on a device without a template",
        r,
        400,
        "BadRequest",
        &["bare-1", "template"],
    )
    .await;

    let r = raw(&admin, Method::PUT, props, Some("application/json"), "[]").await;
    w.refused(
        "PUT cloudProperties with a JSON array",
        r,
        400,
        "BadRequest",
        &["object"],
    )
    .await;

    let r = admin.put("/devices/ghost/cloudProperties", json!({})).await;
    w.refused(
        "PUT /devices/ghost/cloudProperties",
        r,
        404,
        "NotFound",
        &["ghost"],
    )
    .await;

    let r = admin
        .put("/devices/bare-1/attestation", json!({"type": "magic"}))
        .await;
    w.refused(
        "PUT attestation type: \"magic\"",
        r,
        400,
        "BadRequest",
        &["'type'", "magic"],
    )
    .await;

    let r = admin
        .put(
            "/devices/bare-1/attestation",
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": "not base64!", "secondaryKey": KEY}}),
        )
        .await;
    w.refused(
        "PUT attestation with a primary key that is not base64",
        r,
        400,
        "BadRequest",
        &["'symmetricKey.primaryKey'"],
    )
    .await;

    let r = admin
        .put(
            "/devices/bare-1/attestation",
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": "AAAAAA=="}}),
        )
        .await;
    w.refused(
        "PUT attestation with a 4-byte secondary key",
        r,
        400,
        "BadRequest",
        &["'symmetricKey.secondaryKey'"],
    )
    .await;

    let r = admin
        .put("/devices/bare-1/attestation", json!({"type": "tpm"}))
        .await;
    w.refused(
        "PUT attestation type tpm without the tpm object",
        r,
        400,
        "BadRequest",
        &["'tpm'"],
    )
    .await;

    let r = admin
        .put("/devices/bare-1/attestation", json!({"symmetricKey": {}}))
        .await;
    w.refused(
        "PUT attestation without a type",
        r,
        400,
        "BadRequest",
        &["'type'"],
    )
    .await;

    let r = admin
        .patch(
            "/devices/att-1/attestation",
            json!({"symmetricKey": {"primaryKey": "###"}}),
        )
        .await;
    w.refused(
        "PATCH attestation to a key that is not base64",
        r,
        400,
        "BadRequest",
        &["'symmetricKey.primaryKey'"],
    )
    .await;

    let r = admin
        .patch("/devices/bare-1/attestation", json!({"type": "tpm"}))
        .await;
    w.refused(
        "PATCH attestation of a device that has none",
        r,
        404,
        "NotFound",
        &["bare-1"],
    )
    .await;

    let r = admin.delete("/devices/bare-1/attestation").await;
    w.refused(
        "DELETE attestation of a device that has none",
        r,
        404,
        "NotFound",
        &["bare-1"],
    )
    .await;

    let r = admin
        .put(
            "/devices/ghost/attestation",
            json!({"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAg"}}),
        )
        .await;
    w.refused(
        "PUT /devices/ghost/attestation",
        r,
        404,
        "NotFound",
        &["ghost"],
    )
    .await;

    let r = admin.get("/devices/ghost/credentials").await;
    w.refused(
        "GET /devices/ghost/credentials",
        r,
        404,
        "NotFound",
        &["ghost"],
    )
    .await;

    w.finish();
}

/// A small valid template body for the id `dtmi:test:fresh;1`.
fn fresh_template() -> Value {
    json!({
        "@type": ["ModelDefinition", "DeviceModel"],
        "displayName": "Fresh",
        "capabilityModel": {
            "@id": "dtmi:test:freshmodel;1",
            "@type": "Interface",
            "contents": [
                {"@type": "Property", "name": "level", "schema": "double"},
                {"@type": ["Property", "Cloud"], "name": "owner", "schema": "string"}
            ]
        }
    })
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

#[tokio::test]
async fn device_templates_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    admin
        .publish_template(CONTROLLER, controller_template())
        .await;
    let first_etag = etag_of(
        &admin
            .publish_template(THERMOSTAT, thermostat_template())
            .await
            .body,
    );
    let thermostat = format!("/deviceTemplates/{}", encode(THERMOSTAT));
    let controller = format!("/deviceTemplates/{}", encode(CONTROLLER));
    let patched = admin
        .patch(&thermostat, json!({"displayName": "Thermostat v1"}))
        .await;
    assert_ne!(etag_of(patched.ok(200)), first_etag);
    admin
        .put("/devices/th-1", json!({"template": THERMOSTAT}))
        .await
        .ok(200);

    const FRESH: &str = "dtmi:test:fresh;1";
    const GHOST: &str = "dtmi:test:ghost;1";
    let fresh = format!("/deviceTemplates/{}", encode(FRESH));
    let ghost = format!("/deviceTemplates/{}", encode(GHOST));
    // The body is valid as it is.
    assert!(fresh_template().is_object());

    let mut w = Watch::new(
        &admin,
        &[
            "/deviceTemplates",
            &controller,
            &thermostat,
            &fresh,
            "/devices",
        ],
    )
    .await;

    let r = admin
        .put("/deviceTemplates/thermostat-v1", fresh_template())
        .await;
    w.refused(
        "PUT /deviceTemplates/thermostat-v1 (not a DTMI)",
        r,
        400,
        "BadRequest",
        &["deviceTemplateId", "DTMI"],
    )
    .await;

    let r = admin
        .put("/deviceTemplates/dtmi:test:fresh;0", fresh_template())
        .await;
    w.refused(
        "PUT /deviceTemplates/dtmi:test:fresh;0 (version 0)",
        r,
        400,
        "BadRequest",
        &["deviceTemplateId"],
    )
    .await;

    let r = admin.put(&fresh, without(fresh_template(), "@type")).await;
    w.refused(
        "PUT a template without @type",
        r,
        400,
        "BadRequest",
        &["'@type'"],
    )
    .await;

    let mut interface_only = fresh_template();
    interface_only["@type"] = json!(["Interface"]);
    let r = admin.put(&fresh, interface_only).await;
    w.refused(
        "PUT a template whose @type lacks ModelDefinition",
        r,
        400,
        "BadRequest",
        &["'@type'", "ModelDefinition"],
    )
    .await;

    let r = admin
        .put(&fresh, without(fresh_template(), "capabilityModel"))
        .await;
    w.refused(
        "PUT a template without capabilityModel",
        r,
        400,
        "BadRequest",
        &["'capabilityModel'"],
    )
    .await;

    let mut not_object = fresh_template();
    not_object["capabilityModel"] = json!("dtmi:test:freshmodel;1");
    let r = admin.put(&fresh, not_object).await;
    w.refused(
        "PUT a template whose capabilityModel is a string",
        r,
        400,
        "BadRequest",
        &["'capabilityModel'"],
    )
    .await;

    let mut other_id = fresh_template();
    other_id["@id"] = json!("dtmi:test:other;1");
    let r = admin.put(&fresh, other_id).await;
    w.refused(
        "PUT a template whose @id differs from the path",
        r,
        400,
        "BadRequest",
        &["'@id'"],
    )
    .await;

    let mut twice = fresh_template();
    twice["capabilityModel"]["contents"][1]["name"] = json!("level");
    let r = admin.put(&fresh, twice).await;
    w.refused(
        "PUT a template that defines 'level' twice",
        r,
        400,
        "BadRequest",
        &["'capabilityModel'", "level"],
    )
    .await;

    let mut bad_name = fresh_template();
    bad_name["capabilityModel"]["contents"][0]["name"] = json!("1level");
    let r = admin.put(&fresh, bad_name).await;
    w.refused(
        "PUT a template with the capability name '1level'",
        r,
        400,
        "BadRequest",
        &["'capabilityModel.contents[0].name'"],
    )
    .await;

    let mut odd_name = fresh_template();
    odd_name["displayName"] = json!(7);
    let r = admin.put(&fresh, odd_name).await;
    w.refused(
        "PUT a template with displayName: 7",
        r,
        400,
        "BadRequest",
        &["'displayName'"],
    )
    .await;

    let r = admin.put(&controller, controller_template()).await;
    w.refused(
        "PUT a template whose id exists",
        r,
        409,
        "Conflict",
        &[CONTROLLER],
    )
    .await;

    let r = admin
        .patch(&controller, json!({"@id": "dtmi:contoso:other;1"}))
        .await;
    w.refused(
        "PATCH a template's @id",
        r,
        400,
        "BadRequest",
        &["'@id'", "read-only"],
    )
    .await;

    let r = admin
        .patch(&controller, json!({"capabilityModel": "gone"}))
        .await;
    w.refused(
        "PATCH a template's capabilityModel to a string",
        r,
        400,
        "BadRequest",
        &["'capabilityModel'"],
    )
    .await;

    let r = admin.patch(&controller, json!({"@type": null})).await;
    w.refused(
        "PATCH a template's @type away (null)",
        r,
        400,
        "BadRequest",
        &["'@type'"],
    )
    .await;

    let r = admin.delete(&thermostat).await;
    w.refused(
        "DELETE a template that a device uses",
        r,
        409,
        "Conflict",
        &[THERMOSTAT, "device"],
    )
    .await;

    let r = with_if_match(
        &admin,
        Method::PATCH,
        &thermostat,
        &first_etag,
        json!({"displayName": "Stale"}),
    )
    .await;
    w.refused(
        "PATCH a template with a stale If-Match",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin
        .patch(
            &thermostat,
            json!({"etag": first_etag, "displayName": "Stale"}),
        )
        .await;
    w.refused(
        "PATCH a template with a stale etag in the body",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin.get(&ghost).await;
    w.refused(
        "GET a template that does not exist",
        r,
        404,
        "NotFound",
        &[GHOST],
    )
    .await;

    let r = admin.patch(&ghost, json!({"displayName": "Boo"})).await;
    w.refused(
        "PATCH a template that does not exist",
        r,
        404,
        "NotFound",
        &[GHOST],
    )
    .await;

    let r = admin.delete(&ghost).await;
    w.refused(
        "DELETE a template that does not exist",
        r,
        404,
        "NotFound",
        &[GHOST],
    )
    .await;

    w.finish();

    // And the body used above really is a valid template.
    admin.put(&fresh, fresh_template()).await.ok(200);
}

#[tokio::test]
async fn device_groups_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    admin.put("/devices/dev-1", json!({})).await.ok(200);
    let created = admin
        .put(
            "/deviceGroups/grp-1",
            json!({"displayName": "Group 1", "filter": "SELECT * FROM devices"}),
        )
        .await;
    let first_etag = etag_of(created.ok(200));
    let patched = admin
        .patch(
            "/deviceGroups/grp-1",
            json!({"description": "All of them."}),
        )
        .await;
    assert_ne!(etag_of(patched.ok(200)), first_etag);

    let mut w = Watch::new(
        &admin,
        &[
            "/deviceGroups",
            "/deviceGroups/grp-1",
            "/deviceGroups/grp-1/devices",
            "/deviceGroups/new-grp",
            "/deviceGroups/ghost",
        ],
    )
    .await;
    let valid =
        json!({"displayName": "New", "filter": "SELECT * FROM devices WHERE $simulated = true"});

    let r = admin
        .put(
            "/deviceGroups/new-grp",
            without(valid.clone(), "displayName"),
        )
        .await;
    w.refused(
        "PUT a device group without displayName",
        r,
        400,
        "BadRequest",
        &["'displayName'"],
    )
    .await;

    let r = admin
        .put("/deviceGroups/new-grp", without(valid.clone(), "filter"))
        .await;
    w.refused(
        "PUT a device group without filter",
        r,
        400,
        "BadRequest",
        &["'filter'"],
    )
    .await;

    let r = admin
        .put(
            "/deviceGroups/new-grp",
            json!({"displayName": "New", "filter": "SELECT * FROM devices WHERE $simulated ="}),
        )
        .await;
    w.refused(
        "PUT a device group with a filter that ends early",
        r,
        400,
        "BadRequest",
        &["'filter'", "position"],
    )
    .await;

    let r = admin
        .put(
            "/deviceGroups/new-grp",
            json!({"displayName": "New", "filter": 42}),
        )
        .await;
    w.refused(
        "PUT a device group with filter: 42",
        r,
        400,
        "BadRequest",
        &["'filter'"],
    )
    .await;

    let r = admin.put("/deviceGroups/new%20grp", valid.clone()).await;
    w.refused(
        "PUT /deviceGroups/new%20grp (space)",
        r,
        400,
        "BadRequest",
        &["deviceGroupId", "' '"],
    )
    .await;

    let r = admin.put("/deviceGroups/new.grp", valid.clone()).await;
    w.refused(
        "PUT /deviceGroups/new.grp ('.')",
        r,
        400,
        "BadRequest",
        &["deviceGroupId", "'.'"],
    )
    .await;

    let long_id = "g".repeat(256);
    let r = admin
        .put(&format!("/deviceGroups/{long_id}"), valid.clone())
        .await;
    w.refused(
        "PUT /deviceGroups/<256 characters>",
        r,
        400,
        "BadRequest",
        &["deviceGroupId", "255"],
    )
    .await;

    let r = admin
        .patch(
            "/deviceGroups/grp-1",
            json!({"filter": "SELECT * FROM devices WHERE"}),
        )
        .await;
    w.refused(
        "PATCH a device group to an invalid filter",
        r,
        400,
        "BadRequest",
        &["'filter'", "position"],
    )
    .await;

    let r = admin
        .patch("/deviceGroups/grp-1", json!({"displayName": null}))
        .await;
    w.refused(
        "PATCH a device group's displayName away (null)",
        r,
        400,
        "BadRequest",
        &["'displayName'"],
    )
    .await;

    let r = admin
        .patch("/deviceGroups/grp-1", json!({"id": "grp-2"}))
        .await;
    w.refused("PATCH a device group's id", r, 400, "BadRequest", &["'id'"])
        .await;

    let r = with_if_match(
        &admin,
        Method::PATCH,
        "/deviceGroups/grp-1",
        &first_etag,
        json!({"displayName": "Stale"}),
    )
    .await;
    w.refused(
        "PATCH a device group with a stale If-Match",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin
        .patch(
            "/deviceGroups/grp-1",
            json!({"etag": first_etag, "displayName": "Stale"}),
        )
        .await;
    w.refused(
        "PATCH a device group with a stale etag in the body",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = admin
        .put(
            "/deviceGroups/grp-1",
            json!({"etag": first_etag, "displayName": "Stale", "filter": "SELECT * FROM devices"}),
        )
        .await;
    w.refused(
        "PUT over a device group with a stale etag in the body",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let long_filter = format!(
        "SELECT * FROM devices WHERE $simulated = true{}",
        " OR $simulated = true".repeat(250)
    );
    assert!(long_filter.len() > 4096);
    let r = admin
        .put(
            "/deviceGroups/new-grp",
            json!({"displayName": "New", "filter": long_filter}),
        )
        .await;
    w.refused(
        "PUT a device group with a filter over 4096 characters",
        r,
        400,
        "BadRequest",
        &["'filter'"],
    )
    .await;

    let r = admin.get("/deviceGroups/ghost/devices").await;
    w.refused(
        "GET /deviceGroups/ghost/devices",
        r,
        404,
        "NotFound",
        &["ghost"],
    )
    .await;

    let r = admin
        .patch("/deviceGroups/ghost", json!({"displayName": "Boo"}))
        .await;
    w.refused("PATCH /deviceGroups/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    let r = admin.delete("/deviceGroups/ghost").await;
    w.refused("DELETE /deviceGroups/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    w.finish();
}

#[tokio::test]
async fn api_tokens_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    let ops = admin.create_token("ops", OPERATOR).await;

    let mut w = Watch::new(
        &admin,
        &["/apiTokens", "/apiTokens/ops", "/apiTokens/new-token"],
    )
    .await;
    let path = "/apiTokens/new-token";

    let r = admin.put(path, json!({})).await;
    w.refused(
        "PUT an API token without roles",
        r,
        400,
        "BadRequest",
        &["'roles'"],
    )
    .await;

    let r = admin.put(path, json!({"roles": []})).await;
    w.refused(
        "PUT an API token with roles: []",
        r,
        400,
        "BadRequest",
        &["'roles'"],
    )
    .await;

    let r = admin.put(path, json!({"roles": OPERATOR})).await;
    w.refused(
        "PUT an API token whose roles is a string",
        r,
        400,
        "BadRequest",
        &["'roles'"],
    )
    .await;

    let r = admin
        .put(
            path,
            json!({"roles": [{"role": "00000000-0000-0000-0000-000000000000"}]}),
        )
        .await;
    w.refused(
        "PUT an API token with an unknown role id",
        r,
        400,
        "BadRequest",
        &["'roles[0].role'", "00000000-0000-0000-0000-000000000000"],
    )
    .await;

    let r = admin
        .put(path, json!({"roles": [{"organization": "org-1"}]}))
        .await;
    w.refused(
        "PUT an API token with a role assignment without role",
        r,
        400,
        "BadRequest",
        &["'roles[0].role'"],
    )
    .await;

    let r = admin
        .put(
            path,
            json!({"roles": [{"role": OPERATOR}], "expiry": "2020-01-01T00:00:00Z"}),
        )
        .await;
    w.refused(
        "PUT an API token with an expiry in the past",
        r,
        400,
        "BadRequest",
        &["'expiry'"],
    )
    .await;

    let r = admin
        .put(
            path,
            json!({"roles": [{"role": OPERATOR}], "expiry": "next tuesday"}),
        )
        .await;
    w.refused(
        "PUT an API token with expiry: \"next tuesday\"",
        r,
        400,
        "BadRequest",
        &["'expiry'"],
    )
    .await;

    let r = admin
        .put(
            path,
            json!({"roles": [{"role": OPERATOR}], "token": "SharedAccessSignature sr=mine"}),
        )
        .await;
    w.refused(
        "PUT an API token with a chosen token value",
        r,
        400,
        "BadRequest",
        &["'token'"],
    )
    .await;

    let r = admin
        .put(
            "/apiTokens/new%20token",
            json!({"roles": [{"role": OPERATOR}]}),
        )
        .await;
    w.refused(
        "PUT /apiTokens/new%20token (space)",
        r,
        400,
        "BadRequest",
        &["tokenId"],
    )
    .await;

    let r = admin
        .put(
            "/apiTokens/ops",
            json!({"roles": [{"role": ADMINISTRATOR}]}),
        )
        .await;
    w.refused(
        "PUT an API token whose id exists",
        r,
        409,
        "Conflict",
        &["ops"],
    )
    .await;
    // The existing token still works, with its own role.
    server.client(&ops).get("/devices").await.ok(200);
    server
        .client(&ops)
        .get("/apiTokens")
        .await
        .error(403, "Forbidden");

    let r = admin.get("/apiTokens/ghost").await;
    w.refused("GET /apiTokens/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    let r = admin.delete("/apiTokens/ghost").await;
    w.refused("DELETE /apiTokens/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    let r = admin.get("/roles/ghost").await;
    w.refused("GET /roles/ghost", r, 404, "NotFound", &["ghost"])
        .await;

    w.finish();
}

#[tokio::test]
async fn enrollment_groups_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    let created = admin
        .put(
            "/enrollmentGroups/eg-1",
            json!({"displayName": "Line 1", "type": "iot", "attestation": {"type": "symmetricKey"}}),
        )
        .await;
    let first_etag = etag_of(created.ok(200));
    let scope = created.body["idScope"].as_str().unwrap().to_string();
    // The spec lists only application/merge-patch+json for this PATCH.
    let merge = Some("application/merge-patch+json");
    let patched = raw(
        &admin,
        Method::PATCH,
        "/enrollmentGroups/eg-1",
        merge,
        json!({"displayName": "Line one"}).to_string(),
    )
    .await;
    assert_ne!(etag_of(patched.ok(200)), first_etag);

    let mut w = Watch::new(
        &admin,
        &[
            "/enrollmentGroups",
            "/enrollmentGroups/eg-1",
            "/enrollmentGroups/sas-iot-devices",
            "/enrollmentGroups/new-eg",
        ],
    )
    .await;
    let path = "/enrollmentGroups/new-eg";
    let valid =
        json!({"displayName": "New", "type": "iot", "attestation": {"type": "symmetricKey"}});

    let r = admin.put("/enrollmentGroups/new_eg", valid.clone()).await;
    w.refused(
        "PUT /enrollmentGroups/new_eg ('_')",
        r,
        400,
        "BadRequest",
        &["enrollmentGroupId", "'_'"],
    )
    .await;

    let long_id = "e".repeat(256);
    let r = admin
        .put(&format!("/enrollmentGroups/{long_id}"), valid.clone())
        .await;
    w.refused(
        "PUT /enrollmentGroups/<256 characters>",
        r,
        400,
        "BadRequest",
        &["enrollmentGroupId", "255"],
    )
    .await;

    let mut edge = valid.clone();
    edge["type"] = json!("edge");
    let r = admin.put(path, edge).await;
    w.refused(
        "PUT an enrollment group with type: \"edge\"",
        r,
        400,
        "BadRequest",
        &["'type'", "iotEdge"],
    )
    .await;

    let r = admin.put(path, without(valid.clone(), "type")).await;
    w.refused(
        "PUT an enrollment group without type",
        r,
        400,
        "BadRequest",
        &["'type'"],
    )
    .await;

    let r = admin.put(path, without(valid.clone(), "displayName")).await;
    w.refused(
        "PUT an enrollment group without displayName",
        r,
        400,
        "BadRequest",
        &["'displayName'"],
    )
    .await;

    let r = admin.put(path, without(valid.clone(), "attestation")).await;
    w.refused(
        "PUT an enrollment group without attestation",
        r,
        400,
        "BadRequest",
        &["'attestation'"],
    )
    .await;

    let mut tpm = valid.clone();
    tpm["attestation"] = json!({"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAg"}});
    let r = admin.put(path, tpm).await;
    w.refused(
        "PUT an enrollment group with TPM attestation (groups have none)",
        r,
        400,
        "BadRequest",
        &["'attestation.type'"],
    )
    .await;

    let mut bad_key = valid.clone();
    bad_key["attestation"] =
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": "%%%", "secondaryKey": KEY}});
    let r = admin.put(path, bad_key).await;
    w.refused(
        "PUT an enrollment group with a key that is not base64",
        r,
        400,
        "BadRequest",
        &["'attestation.symmetricKey.primaryKey'"],
    )
    .await;

    let mut yes = valid.clone();
    yes["enabled"] = json!("yes");
    let r = admin.put(path, yes).await;
    w.refused(
        "PUT an enrollment group with enabled: \"yes\"",
        r,
        400,
        "BadRequest",
        &["'enabled'"],
    )
    .await;

    let r = admin.put("/enrollmentGroups/eg-1", valid.clone()).await;
    w.refused(
        "PUT an enrollment group whose id exists",
        r,
        409,
        "Conflict",
        &["eg-1"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PATCH,
        "/enrollmentGroups/eg-1",
        merge,
        json!({"idScope": format!("{scope}x")}).to_string(),
    )
    .await;
    w.refused(
        "PATCH an enrollment group's idScope",
        r,
        400,
        "BadRequest",
        &["'idScope'"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PATCH,
        "/enrollmentGroups/eg-1",
        merge,
        json!({"type": "gateway"}).to_string(),
    )
    .await;
    w.refused(
        "PATCH an enrollment group to type: \"gateway\"",
        r,
        400,
        "BadRequest",
        &["'type'"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PATCH,
        "/enrollmentGroups/eg-1",
        merge,
        json!({"attestation": {"symmetricKey": {"secondaryKey": "short"}}}).to_string(),
    )
    .await;
    w.refused(
        "PATCH an enrollment group's secondary key to one that is not base64",
        r,
        400,
        "BadRequest",
        &["'attestation.symmetricKey.secondaryKey'"],
    )
    .await;

    let r = Api::send(
        admin
            .preview()
            .request(Method::PATCH, "/enrollmentGroups/eg-1")
            .header("If-Match", &first_etag)
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({"enabled": false}).to_string()),
    )
    .await;
    w.refused(
        "PATCH an enrollment group with a stale If-Match",
        r,
        412,
        "PreconditionFailed",
        &["etag"],
    )
    .await;

    let r = raw(
        &admin,
        Method::PATCH,
        "/enrollmentGroups/ghost",
        merge,
        json!({"enabled": false}).to_string(),
    )
    .await;
    w.refused(
        "PATCH /enrollmentGroups/ghost",
        r,
        404,
        "NotFound",
        &["ghost"],
    )
    .await;

    let r = admin.delete("/enrollmentGroups/ghost").await;
    w.refused(
        "DELETE /enrollmentGroups/ghost",
        r,
        404,
        "NotFound",
        &["ghost"],
    )
    .await;

    w.finish();
}

#[tokio::test]
async fn paging_parameters_are_checked() {
    let server = Server::start().await;
    let admin = server.admin();
    for id in ["dev-a", "dev-b", "dev-c"] {
        admin
            .put(&format!("/devices/{id}"), json!({}))
            .await
            .ok(200);
    }
    admin
        .put(
            "/deviceGroups/all",
            json!({"displayName": "All", "filter": "SELECT * FROM devices"}),
        )
        .await
        .ok(200);
    let preview = admin.preview();
    // The parameters work when valid.
    let page = preview.get("/devices?maxpagesize=2").await;
    assert_eq!(page.ok(200)["value"].as_array().unwrap().len(), 2);

    let mut w = Watch::new(&admin, &["/devices", "/deviceGroups"]).await;

    for (what, path) in [
        ("maxpagesize=0", "/devices?maxpagesize=0"),
        ("maxpagesize=101", "/devices?maxpagesize=101"),
        ("maxpagesize=abc", "/devices?maxpagesize=abc"),
        ("maxpagesize=2.5", "/devices?maxpagesize=2.5"),
        ("maxpagesize=-1", "/devices?maxpagesize=-1"),
        ("maxpagesize= (empty)", "/devices?maxpagesize="),
        (
            "maxpagesize=0 on a group's devices",
            "/deviceGroups/all/devices?maxpagesize=0",
        ),
        (
            "maxpagesize=101 on templates",
            "/deviceTemplates?maxpagesize=101",
        ),
    ] {
        let r = preview.get(path).await;
        w.refused(
            &format!("GET {path} ({what})"),
            r,
            400,
            "BadRequest",
            &["maxpagesize"],
        )
        .await;
    }

    let r = preview.get("/devices?$skiptoken=@@@").await;
    w.refused(
        "GET /devices?$skiptoken=@@@ (not base64)",
        r,
        400,
        "BadRequest",
        &["$skiptoken"],
    )
    .await;

    let r = admin.get("/deviceGroups?$skiptoken=__8").await;
    w.refused(
        "GET /deviceGroups?$skiptoken=__8 (not UTF-8 once decoded)",
        r,
        400,
        "BadRequest",
        &["$skiptoken"],
    )
    .await;

    w.finish();
}
