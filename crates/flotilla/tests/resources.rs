//! Happy paths of every REST route, against the real server over HTTP.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn first_start_makes_an_admin_token_file_only_its_owner_reads() {
    let server = Server::start().await;
    let path = server.data_dir().join("admin-token");
    let token = std::fs::read_to_string(&path).unwrap();
    assert!(token.starts_with("SharedAccessSignature sr="), "{token}");
    assert!(token.contains("&skn=admin&se="), "{token}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // `Bearer <token>` works as well as the token as sent.
    let api = server.admin();
    api.get("/roles").await.ok(200);
    api.with_token(Some(&format!("Bearer {token}")))
        .get("/roles")
        .await
        .ok(200);
}

/// An operator's own administrator token, long enough to be accepted.
const OWN_TOKEN: &str = "my-own-administrator-token-at-least-32-chars";

#[tokio::test]
async fn an_operator_supplied_admin_token_is_accepted_and_no_file_is_written() {
    let server = Server::start_with_env(&[("FLOTILLA_ADMIN_TOKEN", OWN_TOKEN)]).await;
    assert!(!server.data_dir().join("admin-token").exists());
    let api = server.client(OWN_TOKEN);
    let tokens = api.get("/apiTokens").await;
    assert_eq!(tokens.ok(200)["value"][0]["id"], "admin");
    server
        .client(&format!("Bearer {OWN_TOKEN}"))
        .get("/roles")
        .await
        .ok(200);
}

#[tokio::test]
async fn roles_are_the_three_built_in_ones() {
    let server = Server::start().await;
    let api = server.admin();
    let (roles, _) = api.list_all("/roles").await;
    let mut names: Vec<(String, String)> = roles
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["displayName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            (BUILDER.to_string(), "Builder".to_string()),
            (OPERATOR.to_string(), "Operator".to_string()),
            (ADMINISTRATOR.to_string(), "Administrator".to_string()),
        ]
    );
    let one = api.get(&format!("/roles/{OPERATOR}")).await;
    assert_eq!(
        one.ok(200),
        &json!({"id": OPERATOR, "displayName": "Operator"})
    );
}

#[tokio::test]
async fn api_tokens_are_created_listed_used_and_deleted() {
    let server = Server::start().await;
    let api = server.admin();
    let created = api
        .put(
            "/apiTokens/ops-token",
            json!({"roles": [{"role": OPERATOR}], "expiry": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let body = created.ok(200).clone();
    assert_eq!(body["id"], "ops-token");
    assert_eq!(body["roles"], json!([{"role": OPERATOR}]));
    assert_eq!(body["expiry"], "2099-01-01T00:00:00.000Z");
    let value = body["token"].as_str().unwrap();
    assert!(value.starts_with("SharedAccessSignature sr="));
    assert!(value.contains("&skn=ops-token&se=4070908800000"), "{value}");

    // The value is never shown again.
    let got = api.get("/apiTokens/ops-token").await;
    assert!(got.ok(200).get("token").is_none());
    let (all, _) = api.list_all("/apiTokens").await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|t| t.get("token").is_none()));

    // The new token works, with its role.
    let ops = server.client(value);
    ops.get("/devices").await.ok(200);

    api.delete("/apiTokens/ops-token").await.ok(204);
    api.get("/apiTokens/ops-token").await.error(404, "NotFound");
    ops.get("/devices").await.error(401, "Unauthorized");
}

#[tokio::test]
async fn device_templates_are_published_read_patched_and_deleted() {
    let server = Server::start().await;
    let api = server.admin();
    let published = api
        .publish_template(CONTROLLER, controller_template())
        .await;
    let body = published.body.clone();
    assert_eq!(body["@id"], CONTROLLER);
    assert_eq!(
        body["capabilityModel"],
        controller_template()["capabilityModel"]
    );
    let etag = body["etag"].as_str().unwrap().to_string();

    let path = format!("/deviceTemplates/{}", encode(CONTROLLER));
    let got = api.get(&path).await;
    assert_eq!(got.ok(200), &body);

    let patched = api
        .patch(&path, json!({"displayName": "Controller v1"}))
        .await;
    let patched = patched.ok(200);
    assert_eq!(patched["displayName"], "Controller v1");
    assert_ne!(patched["etag"], etag.as_str());
    assert_eq!(patched["capabilityModel"], body["capabilityModel"]);

    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    let (all, _) = api.list_all("/deviceTemplates").await;
    let ids: Vec<&str> = all.iter().map(|t| t["@id"].as_str().unwrap()).collect();
    // Lists are ordered by id, bytewise.
    assert_eq!(ids, vec![THERMOSTAT, CONTROLLER]);

    api.delete(&path).await.ok(204);
    api.get(&path).await.error(404, "NotFound");
}

#[tokio::test]
async fn devices_are_created_updated_and_deleted() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;

    let created = api
        .put(
            "/devices/thermostat-01",
            json!({"displayName": "Thermostat 1", "template": THERMOSTAT, "simulated": true}),
        )
        .await;
    let device = created.ok(200).clone();
    assert_eq!(device["id"], "thermostat-01");
    assert_eq!(device["displayName"], "Thermostat 1");
    assert_eq!(device["template"], THERMOSTAT);
    assert_eq!(device["enabled"], true);
    assert_eq!(device["provisioned"], false);
    assert_eq!(device["simulated"], true);
    assert!(device["etag"].as_str().is_some());

    // Defaults: display name is the id, enabled, not simulated, no template.
    let bare = api.put("/devices/bare", json!({})).await;
    assert_eq!(
        bare.ok(200)["displayName"],
        "bare",
        "display name defaults to the id"
    );
    assert!(bare.body.get("template").is_none());

    let patched = api
        .patch("/devices/thermostat-01", json!({"enabled": false}))
        .await;
    let patched = patched.ok(200).clone();
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["displayName"], "Thermostat 1");
    assert_ne!(patched["etag"], device["etag"]);

    // PUT on an existing id replaces the settable fields.
    let replaced = api
        .put("/devices/thermostat-01", json!({"displayName": "Renamed"}))
        .await;
    assert_eq!(replaced.ok(200)["displayName"], "Renamed");
    assert!(replaced.body.get("template").is_none());
    assert_eq!(replaced.body["enabled"], true);

    let got = api.get("/devices/thermostat-01").await;
    assert_eq!(got.ok(200), &replaced.body);

    api.delete("/devices/thermostat-01").await.ok(204);
    api.get("/devices/thermostat-01")
        .await
        .error(404, "NotFound");
    api.delete("/devices/thermostat-01")
        .await
        .error(404, "NotFound");
}

#[tokio::test]
async fn cloud_properties_are_validated_against_the_template() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.put("/devices/tc-1", json!({"template": CONTROLLER}))
        .await
        .ok(200);
    let path = "/devices/tc-1/cloudProperties";
    assert_eq!(api.get(path).await.ok(200), &json!({}));
    let put = api.put(path, json!({"customerName": "Contoso"})).await;
    assert_eq!(put.ok(200), &json!({"customerName": "Contoso"}));
    let cloud_names: Vec<String> = controller_template()["capabilityModel"]["contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["@type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("Cloud")))
        })
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(cloud_names.len() >= 2, "{cloud_names:?}");
    let other = &cloud_names[1];
    let schema = controller_template()["capabilityModel"]["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == other.as_str())
        .unwrap()["schema"]
        .clone();
    let value = match schema.as_str() {
        Some("string") => json!("x"),
        Some("boolean") => json!(true),
        Some("date") => json!("2024-02-29"),
        Some("integer") | Some("long") => json!(3),
        _ => json!(1.5),
    };
    let patched = api.patch(path, json!({other: value})).await;
    assert_eq!(
        patched.ok(200),
        &json!({"customerName": "Contoso", other: value})
    );
    let removed = api.patch(path, json!({"customerName": null})).await;
    assert_eq!(removed.ok(200), &json!({other: value}));
    assert_eq!(api.get(path).await.ok(200), &json!({other: value}));
}

#[tokio::test]
async fn credentials_derive_from_the_default_group_and_attestation_overrides_them() {
    let server = Server::start().await;
    let api = server.admin();
    api.put("/devices/dev-1", json!({})).await.ok(200);
    let credentials = api.get("/devices/dev-1/credentials").await;
    let credentials = credentials.ok(200).clone();
    let scope = credentials["idScope"].as_str().unwrap();
    assert!(scope.starts_with("0ne"), "{scope}");
    let group = api.get("/enrollmentGroups/sas-iot-devices").await;
    let group = group.ok(200);
    assert_eq!(group["displayName"], "SAS-IoT-Devices");
    assert_eq!(group["idScope"], scope);
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    assert_eq!(
        credentials["symmetricKey"]["primaryKey"],
        derive(group_key, "dev-1")
    );

    api.get("/devices/dev-1/attestation")
        .await
        .error(404, "NotFound");
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let attestation =
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}});
    let put = api
        .put("/devices/dev-1/attestation", attestation.clone())
        .await;
    assert_eq!(put.ok(200), &attestation);
    assert_eq!(
        api.get("/devices/dev-1/attestation").await.ok(200),
        &attestation
    );
    let credentials = api.get("/devices/dev-1/credentials").await;
    assert_eq!(credentials.ok(200)["symmetricKey"]["primaryKey"], key);

    let tpm = json!({"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAg"}});
    let patched = api
        .patch(
            "/devices/dev-1/attestation",
            json!({"type": "tpm", "symmetricKey": null, "tpm": {"endorsementKey": "AToAAQALAAMAsgAg"}}),
        )
        .await;
    assert_eq!(patched.ok(200), &tpm);
    api.delete("/devices/dev-1/attestation").await.ok(204);
    api.get("/devices/dev-1/attestation")
        .await
        .error(404, "NotFound");
}

/// base64(HMAC-SHA256(base64decode(group key), device id)), computed independently with Python
/// would be ideal; here with the same formula through `openssl`-free pure Rust is not available
/// in tests, so we shell out to python3, which every machine here has.
fn derive(group_key: &str, device_id: &str) -> String {
    let script = "import base64,hashlib,hmac,sys; print(base64.b64encode(hmac.new(base64.b64decode(sys.argv[1]), sys.argv[2].encode(), hashlib.sha256).digest()).decode())";
    let output = std::process::Command::new("python3")
        .args(["-c", script, group_key, device_id])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn enrollment_groups_are_created_with_generated_keys_patched_and_deleted() {
    let server = Server::start().await;
    let api = server.admin();
    let created = api
        .put(
            "/enrollmentGroups/factory-line-2",
            json!({"displayName": "Line 2", "type": "iot", "attestation": {"type": "symmetricKey"}}),
        )
        .await;
    let group = created.ok(200).clone();
    assert_eq!(group["enabled"], true);
    assert_eq!(group["type"], "iot");
    let key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    assert_eq!(key.len(), 88, "64-byte keys, base64");
    let patched = api
        .patch(
            "/enrollmentGroups/factory-line-2",
            json!({"enabled": false}),
        )
        .await;
    let patched = patched.ok(200);
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["attestation"], group["attestation"]);
    let (all, _) = api.list_all("/enrollmentGroups").await;
    assert_eq!(all.len(), 2);
    api.delete("/enrollmentGroups/factory-line-2").await.ok(204);
    api.get("/enrollmentGroups/factory-line-2")
        .await
        .error(404, "NotFound");
}

#[tokio::test]
async fn device_groups_hold_the_devices_their_filter_selects() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    api.publish_template(CONTROLLER, controller_template())
        .await;
    for (id, template, simulated) in [
        ("t-1", THERMOSTAT, false),
        ("t-2", THERMOSTAT, true),
        ("c-1", CONTROLLER, false),
    ] {
        api.put(
            &format!("/devices/{id}"),
            json!({"template": template, "simulated": simulated}),
        )
        .await
        .ok(200);
    }
    api.put(
        "/devices/c-1/cloudProperties",
        json!({"customerName": "Contoso"}),
    )
    .await
    .ok(200);
    // The article's request, verbatim.
    let filter =
        format!("SELECT * FROM devices WHERE $template = \"{THERMOSTAT}\" AND $simulated = false");
    let created = api
        .put(
            "/deviceGroups/group1",
            json!({"displayName": "Device group 1", "description": "Custom device group.", "filter": filter}),
        )
        .await;
    let group = created.ok(200).clone();
    assert_eq!(group["id"], "group1");
    assert_eq!(group["filter"], filter.as_str());
    let members = |body: &Value| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let devices = api.get("/deviceGroups/group1/devices").await;
    assert_eq!(members(devices.ok(200)), vec!["t-1"]);

    let patched = api
        .patch(
            "/deviceGroups/group1",
            json!({"filter": "SELECT * FROM devices WHERE customerName = \"Contoso\" OR $simulated = true"}),
        )
        .await;
    assert_eq!(patched.ok(200)["displayName"], "Device group 1");
    let devices = api.get("/deviceGroups/group1/devices").await;
    assert_eq!(members(devices.ok(200)), vec!["c-1", "t-2"]);

    // Membership follows the devices: a device that changes leaves or joins.
    api.patch("/devices/t-2", json!({"simulated": false}))
        .await
        .ok(200);
    let devices = api.get("/deviceGroups/group1/devices").await;
    assert_eq!(members(devices.ok(200)), vec!["c-1"]);

    let (groups, _) = api.list_all("/deviceGroups").await;
    assert_eq!(groups.len(), 1);
    api.delete("/deviceGroups/group1").await.ok(204);
    api.get("/deviceGroups/group1").await.error(404, "NotFound");
}

#[tokio::test]
async fn lists_page_with_working_absolute_next_links() {
    let server = Server::start().await;
    let api = server.admin();
    api.put(
        "/deviceGroups/everything",
        json!({"displayName": "All", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    let mut expected = Vec::new();
    for i in 0..60 {
        let id = format!("dev-{i:03}");
        api.put(&format!("/devices/{id}"), json!({})).await.ok(200);
        expected.push(id);
    }
    // Stable version: the default page size of 25 gives three pages.
    let first = api.get("/devices").await;
    let first = first.ok(200);
    assert_eq!(first["value"].as_array().unwrap().len(), 25);
    let next = first["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/api/devices?", server.base)),
        "{next}"
    );
    assert!(next.contains("api-version=2022-07-31"), "{next}");
    let (all, pages) = api.list_all("/devices").await;
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected);
    assert_eq!(pages, 3);

    // Preview: maxpagesize, carried into the nextLink.
    let preview = api.preview();
    let (all, pages) = preview.list_all("/devices?maxpagesize=7").await;
    assert_eq!(all.len(), 60);
    assert_eq!(pages, 9);
    let (members, pages) = preview
        .list_all("/deviceGroups/everything/devices?maxpagesize=20")
        .await;
    assert_eq!(members.len(), 60);
    assert_eq!(pages, 3);
    // A page that ends exactly at the end has no nextLink.
    let (_, pages) = preview.list_all("/devices?maxpagesize=30").await;
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let mut server = Server::start().await;
    let api = server.admin();
    api.put("/devices/keep-me", json!({"displayName": "Kept"}))
        .await
        .ok(200);
    let token = api.create_token("kept-token", OPERATOR).await;
    let scope = api.get("/devices/keep-me/credentials").await.body["idScope"].clone();
    server.restart().await;
    let api = server.admin();
    assert_eq!(
        api.get("/devices/keep-me").await.ok(200)["displayName"],
        "Kept"
    );
    server.client(&token).get("/devices").await.ok(200);
    assert_eq!(
        api.get("/devices/keep-me/credentials").await.body["idScope"],
        scope
    );
    let (groups, _) = api.list_all("/enrollmentGroups").await;
    assert_eq!(groups.len(), 1, "the default group is made once");
}

#[tokio::test]
async fn query_parameters_are_percent_decoded() {
    let server = Server::start().await;
    let api = server.admin().with_version(None);
    api.get("/roles?api-version=2022-10-31%2Dpreview")
        .await
        .ok(200);
    let page = api
        .get("/roles?api-version=2022-10-31-preview&%6Daxpagesize=1")
        .await;
    assert_eq!(page.ok(200)["value"].as_array().unwrap().len(), 1);
}
