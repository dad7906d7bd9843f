//! What each built-in role may do, route family by route family.
//!
//! For each role a token is made, and every route of every family is called with it, in an
//! order where each call can succeed (reads first, then creates, updates and deletes of
//! fixtures made for the purpose). A call the role allows must not be refused with 403 and must
//! succeed; a call it does not allow must be refused with 403 `Forbidden` and change nothing
//! (every list and fixture reads back the same with the administrator token).
//!
//! The rules, restated here rather than taken from the server (crates/model/src/roles.rs):
//! Administrators do everything; Builders everything but API tokens; Operators read roles and
//! device templates, read and write devices and device groups, and touch neither API tokens
//! nor enrollment groups.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    ApiTokens,
    Roles,
    DeviceTemplates,
    Devices,
    DeviceGroups,
    EnrollmentGroups,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Administrator,
    Builder,
    Operator,
}

impl Role {
    fn id(self) -> &'static str {
        match self {
            Role::Administrator => ADMINISTRATOR,
            Role::Builder => BUILDER,
            Role::Operator => OPERATOR,
        }
    }

    fn allows(self, family: Family, write: bool) -> bool {
        use Family::*;
        match self {
            Role::Administrator => true,
            Role::Builder => family != ApiTokens,
            Role::Operator => match family {
                Roles | DeviceTemplates => !write,
                Devices | DeviceGroups => true,
                ApiTokens | EnrollmentGroups => false,
            },
        }
    }
}

/// One call of the table.
struct Call {
    family: Family,
    method: Method,
    path: String,
    body: Option<Value>,
}

impl Call {
    fn write(&self) -> bool {
        self.method != Method::GET
    }

    fn success(&self) -> u16 {
        if self.method == Method::DELETE {
            204
        } else {
            200
        }
    }
}

fn call(family: Family, method: Method, path: &str, body: Option<Value>) -> Call {
    Call {
        family,
        method,
        path: path.to_string(),
        body,
    }
}

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const DOOMED_TEMPLATE: &str = "dtmi:test:doomed;1";
const NEW_TEMPLATE: &str = "dtmi:test:fresh;1";

fn template_path(id: &str) -> String {
    format!("/deviceTemplates/{}", encode(id))
}

/// The thermostat fixture, re-identified as `id`.
fn template_as(id: &str) -> Value {
    let mut body = thermostat_template();
    body["@id"] = json!(id);
    body
}

/// Every route family, in an order where each call can succeed on the fixtures of [`prepare`].
fn table() -> Vec<Call> {
    use Family::*;
    let get = |family, path: &str| call(family, Method::GET, path, None);
    let put = |family, path: &str, body| call(family, Method::PUT, path, Some(body));
    let patch = |family, path: &str, body| call(family, Method::PATCH, path, Some(body));
    let delete = |family, path: &str| call(family, Method::DELETE, path, None);
    let symmetric =
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}});
    vec![
        get(ApiTokens, "/apiTokens"),
        get(ApiTokens, "/apiTokens/other-token"),
        put(
            ApiTokens,
            "/apiTokens/new-token",
            json!({"roles": [{"role": OPERATOR}]}),
        ),
        delete(ApiTokens, "/apiTokens/doomed-token"),
        get(Roles, "/roles"),
        get(Roles, &format!("/roles/{OPERATOR}")),
        get(DeviceTemplates, "/deviceTemplates"),
        get(DeviceTemplates, &template_path(CONTROLLER)),
        put(
            DeviceTemplates,
            &template_path(NEW_TEMPLATE),
            template_as(NEW_TEMPLATE),
        ),
        patch(
            DeviceTemplates,
            &template_path(THERMOSTAT),
            json!({"displayName": "Thermostat v1"}),
        ),
        delete(DeviceTemplates, &template_path(DOOMED_TEMPLATE)),
        get(Devices, "/devices"),
        get(Devices, "/devices/dev-1"),
        put(
            Devices,
            "/devices/new-dev",
            json!({"displayName": "New", "template": THERMOSTAT}),
        ),
        patch(Devices, "/devices/dev-1", json!({"displayName": "Renamed"})),
        delete(Devices, "/devices/doomed-dev"),
        get(Devices, "/devices/dev-1/cloudProperties"),
        put(
            Devices,
            "/devices/dev-1/cloudProperties",
            json!({"customerName": "Fabrikam"}),
        ),
        patch(
            Devices,
            "/devices/dev-1/cloudProperties",
            json!({"customerName": "Northwind"}),
        ),
        get(Devices, "/devices/dev-1/credentials"),
        get(Devices, "/devices/att-dev/attestation"),
        put(Devices, "/devices/dev-1/attestation", symmetric),
        patch(
            Devices,
            "/devices/att-dev/attestation",
            json!({"type": "tpm", "symmetricKey": null, "tpm": {"endorsementKey": "AToAAQALAAMAsgAg"}}),
        ),
        delete(Devices, "/devices/att-dev/attestation"),
        get(DeviceGroups, "/deviceGroups"),
        get(DeviceGroups, "/deviceGroups/grp-1"),
        get(DeviceGroups, "/deviceGroups/grp-1/devices"),
        put(
            DeviceGroups,
            "/deviceGroups/new-grp",
            json!({"displayName": "New", "filter": "SELECT * FROM devices WHERE $simulated = true"}),
        ),
        patch(
            DeviceGroups,
            "/deviceGroups/grp-1",
            json!({"description": "Every device."}),
        ),
        delete(DeviceGroups, "/deviceGroups/doomed-grp"),
        get(EnrollmentGroups, "/enrollmentGroups"),
        get(EnrollmentGroups, "/enrollmentGroups/eg-1"),
        put(
            EnrollmentGroups,
            "/enrollmentGroups/new-eg",
            json!({"displayName": "New", "type": "iotEdge", "attestation": {"type": "symmetricKey"}}),
        ),
        patch(
            EnrollmentGroups,
            "/enrollmentGroups/eg-1",
            json!({"enabled": false}),
        ),
        delete(EnrollmentGroups, "/enrollmentGroups/doomed-eg"),
    ]
}

/// What the administrator sees: every list and every fixture, new or doomed.
const WATCHED: &[&str] = &[
    "/apiTokens",
    "/apiTokens/other-token",
    "/apiTokens/new-token",
    "/apiTokens/doomed-token",
    "/deviceTemplates",
    "/devices",
    "/devices/dev-1",
    "/devices/new-dev",
    "/devices/doomed-dev",
    "/devices/dev-1/cloudProperties",
    "/devices/dev-1/attestation",
    "/devices/att-dev/attestation",
    "/deviceGroups",
    "/deviceGroups/grp-1",
    "/deviceGroups/new-grp",
    "/deviceGroups/doomed-grp",
    "/enrollmentGroups",
    "/enrollmentGroups/eg-1",
    "/enrollmentGroups/new-eg",
    "/enrollmentGroups/doomed-eg",
];

async fn snapshot(admin: &Api) -> Vec<(String, u16, Value)> {
    let mut paths: Vec<String> = WATCHED.iter().map(|p| p.to_string()).collect();
    for id in [CONTROLLER, THERMOSTAT, DOOMED_TEMPLATE, NEW_TEMPLATE] {
        paths.push(template_path(id));
    }
    let mut state = Vec::new();
    for path in paths {
        let response = admin.get(&path).await;
        let status = response.status.as_u16();
        let body = if status == 200 {
            response.body
        } else {
            response.body["error"]["code"].clone()
        };
        state.push((path, status, body));
    }
    state
}

/// The fixtures every call of the table needs, made with the administrator token.
async fn prepare(admin: &Api) {
    admin
        .publish_template(CONTROLLER, controller_template())
        .await;
    admin
        .publish_template(THERMOSTAT, thermostat_template())
        .await;
    admin
        .publish_template(DOOMED_TEMPLATE, template_as(DOOMED_TEMPLATE))
        .await;
    admin.create_token("other-token", OPERATOR).await;
    admin.create_token("doomed-token", OPERATOR).await;
    for (id, body) in [
        ("dev-1", json!({"template": CONTROLLER})),
        ("doomed-dev", json!({})),
        ("att-dev", json!({})),
    ] {
        admin.put(&format!("/devices/{id}"), body).await.ok(200);
    }
    admin
        .put(
            "/devices/dev-1/cloudProperties",
            json!({"customerName": "Contoso"}),
        )
        .await
        .ok(200);
    admin
        .put(
            "/devices/att-dev/attestation",
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}),
        )
        .await
        .ok(200);
    for id in ["grp-1", "doomed-grp"] {
        admin
            .put(
                &format!("/deviceGroups/{id}"),
                json!({"displayName": id, "filter": "SELECT * FROM devices"}),
            )
            .await
            .ok(200);
    }
    for id in ["eg-1", "doomed-eg"] {
        admin
            .put(
                &format!("/enrollmentGroups/{id}"),
                json!({"displayName": id, "type": "iot", "attestation": {"type": "symmetricKey"}}),
            )
            .await
            .ok(200);
    }
}

/// Runs the whole table as `role`, and fails listing every call that went wrong.
async fn check_role(role: Role) {
    let server = Server::start().await;
    let admin = server.admin();
    prepare(&admin).await;
    let token = admin
        .create_token(&format!("{role:?}-caller").to_lowercase(), role.id())
        .await;
    let caller = server.client(&token);

    let mut failures = Vec::new();
    let mut allowed = 0;
    let mut refused = 0;
    for call in table() {
        let what = format!("{role:?} {} {}", call.method, call.path);
        let before = snapshot(&admin).await;
        let mut request = caller.request(call.method.clone(), &call.path);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = Api::send(request).await;
        let status = response.status.as_u16();
        if role.allows(call.family, call.write()) {
            allowed += 1;
            if status != call.success() {
                failures.push(format!(
                    "{what}: allowed, so expected {}, got {status}: {}",
                    call.success(),
                    response.text
                ));
            }
        } else {
            refused += 1;
            if status != 403 || response.body["error"]["code"] != "Forbidden" {
                failures.push(format!(
                    "{what}: not allowed, so expected 403 Forbidden, got {status}: {}",
                    response.text
                ));
            } else {
                response.error(403, "Forbidden");
            }
            let after = snapshot(&admin).await;
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    failures.push(format!(
                        "{what}: refused, yet {} changed from {:?} to {:?}",
                        b.0,
                        (b.1, &b.2),
                        (a.1, &a.2)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls ({allowed} allowed, {refused} refused) went wrong:\n{}",
        failures.len(),
        allowed + refused,
        failures.join("\n")
    );
}

#[tokio::test]
async fn administrators_may_do_everything() {
    check_role(Role::Administrator).await;
}

#[tokio::test]
async fn builders_may_do_everything_but_api_tokens() {
    check_role(Role::Builder).await;
}

#[tokio::test]
async fn operators_manage_devices_and_groups_and_only_read_templates() {
    check_role(Role::Operator).await;
}

/// The table itself covers every route family, with reads and writes.
#[test]
fn the_table_covers_every_route() {
    let calls = table();
    for family in [
        Family::ApiTokens,
        Family::Roles,
        Family::DeviceTemplates,
        Family::Devices,
        Family::DeviceGroups,
        Family::EnrollmentGroups,
    ] {
        assert!(calls.iter().any(|c| c.family == family && !c.write()));
        if family != Family::Roles {
            assert!(calls.iter().any(|c| c.family == family && c.write()));
        }
    }
    assert_eq!(calls.len(), 35);
}

/// The role check comes before the body is read: a caller without the role gets 403 whatever it
/// sent, not a 400 or 415 that would tell it about the route's validation.
#[tokio::test]
async fn refusals_come_before_body_validation() {
    let server = Server::start().await;
    let admin = server.admin();
    let operator = server.client(&admin.create_token("op", OPERATOR).await);
    let malformed = operator
        .request(reqwest::Method::PUT, "/apiTokens/x")
        .header("Content-Type", "application/json")
        .body("{not json");
    Api::send(malformed).await.error(403, "Forbidden");
    let text = operator
        .request(reqwest::Method::PUT, "/enrollmentGroups/x")
        .header("Content-Type", "text/plain")
        .body("hello");
    Api::send(text).await.error(403, "Forbidden");
    let path = format!("/deviceTemplates/{}", encode(CONTROLLER));
    operator
        .put(&path, serde_json::json!({}))
        .await
        .error(403, "Forbidden");
}
