//! The REST side of single devices without a connected device: property writes and command runs
//! are checked against the template, stored as desired properties and command history, and
//! refused clearly when they cannot be done. (Connected devices: tests/sdk, with the real SDK.)

mod common;

use common::*;
use serde_json::json;

async fn setup() -> (Server, Api) {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.put("/devices/tc-1", json!({"template": CONTROLLER}))
        .await
        .ok(200);
    api.put("/devices/bare", json!({})).await.ok(200);
    (server, api)
}

#[tokio::test]
async fn desired_properties_are_stored_for_an_offline_device() {
    let (_server, api) = setup().await;
    let written = api
        .patch(
            "/devices/tc-1/components/thermostat1/properties",
            json!({"targetTemperature": 21.5}),
        )
        .await;
    assert_eq!(written.ok(202), &json!({"targetTemperature": 21.5}));
    api.patch(
        "/devices/tc-1/properties",
        json!({"thermostat2": {"targetTemperature": 19}}),
    )
    .await
    .ok(202);
    let view = api.get("/devices/tc-1/properties").await;
    let view = view.ok(200);
    assert_eq!(
        view["thermostat1"]["$metadata"]["targetTemperature"]["desiredValue"],
        21.5
    );
    assert_eq!(
        view["thermostat2"]["$metadata"]["targetTemperature"]["desiredValue"],
        19
    );
    assert!(
        view["thermostat1"]["$metadata"]["targetTemperature"]
            .get("ackCode")
            .is_none(),
        "not acknowledged yet: {view}"
    );
    let component = api
        .get("/devices/tc-1/components/thermostat2/properties")
        .await;
    assert_eq!(
        component.ok(200)["$metadata"]["targetTemperature"]["desiredVersion"],
        3
    );
}

#[tokio::test]
async fn property_writes_are_refused_with_the_field_named_and_nothing_changes() {
    let (_server, api) = setup().await;
    let before = api.get("/devices/tc-1/properties").await.body;
    let cases = [
        (
            "/devices/tc-1/properties",
            json!({"serialNumber": "x"}),
            "serialNumber",
        ),
        (
            "/devices/tc-1/properties",
            json!({"noSuchProperty": 1}),
            "noSuchProperty",
        ),
        (
            "/devices/tc-1/components/thermostat1/properties",
            json!({"targetTemperature": "hot"}),
            "thermostat1.targetTemperature",
        ),
        (
            "/devices/tc-1/components/thermostat1/properties",
            json!({"maxTempSinceLastReboot": 3}),
            "thermostat1.maxTempSinceLastReboot",
        ),
        (
            "/devices/tc-1/properties",
            json!({"customerName": "cloud properties are not device properties"}),
            "customerName",
        ),
        ("/devices/bare/properties", json!({"x": 1}), "template"),
    ];
    for (path, body, named) in cases {
        let message = api.patch(path, body).await.error(400, "BadRequest");
        assert!(message.contains(named), "{message} should name {named}");
    }
    api.patch("/devices/ghost/properties", json!({"a": 1}))
        .await
        .error(404, "NotFound");
    api.get("/devices/tc-1/components/nope/properties")
        .await
        .error(404, "NotFound");
    assert_eq!(api.get("/devices/tc-1/properties").await.body, before);
}

#[tokio::test]
async fn commands_to_an_offline_device_fail_clearly_and_are_kept_in_history() {
    let (_server, api) = setup().await;
    let refused = api
        .post("/devices/tc-1/commands/reboot", json!({"request": 5}))
        .await;
    let message = refused.error(404, "DeviceNotOnline");
    assert!(message.contains("tc-1"), "{message}");
    // With a connection timeout, the call waits that long for the device before giving up.
    let started = std::time::Instant::now();
    api.post(
        "/devices/tc-1/components/thermostat1/commands/getMaxMinReport",
        json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 1}),
    )
    .await
    .error(404, "DeviceNotOnline");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    let history = api.get("/devices/tc-1/commands/reboot").await;
    let history = history.ok(200)["value"].as_array().unwrap().clone();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["request"], 5);
    assert_eq!(history[0]["connectionTimeout"], 0);
    assert_eq!(history[0]["responseTimeout"], 30);
    assert!(history[0].get("responseCode").is_none());
    let component_history = api
        .get("/devices/tc-1/components/thermostat1/commands/getMaxMinReport")
        .await;
    assert_eq!(
        component_history.ok(200)["value"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn bad_commands_are_refused_before_reaching_the_device() {
    let (_server, api) = setup().await;
    let cases = [
        (json!({"request": "five"}), "request", 400, "BadRequest"),
        (
            json!({"responseTimeout": 2}),
            "responseTimeout",
            400,
            "BadRequest",
        ),
        (
            json!({"responseTimeout": 31}),
            "responseTimeout",
            400,
            "BadRequest",
        ),
        (
            json!({"connectionTimeout": -1}),
            "connectionTimeout",
            400,
            "BadRequest",
        ),
        (
            json!({"connectionTimeout": "1"}),
            "connectionTimeout",
            400,
            "BadRequest",
        ),
    ];
    for (body, named, status, code) in cases {
        let message = api
            .post("/devices/tc-1/commands/reboot", body)
            .await
            .error(status, code);
        assert!(message.contains(named), "{message} should name {named}");
    }
    api.post("/devices/tc-1/commands/selfDestruct", json!({}))
        .await
        .error(404, "NotFound");
    api.post("/devices/bare/commands/reboot", json!({}))
        .await
        .error(400, "BadRequest");
    api.post("/devices/ghost/commands/reboot", json!({}))
        .await
        .error(404, "NotFound");
    let history = api.get("/devices/tc-1/commands/reboot").await;
    assert_eq!(history.ok(200)["value"], json!([]), "nothing was run");
}

#[tokio::test]
async fn telemetry_before_the_first_value_is_empty_and_unknown_names_are_404() {
    let (_server, api) = setup().await;
    assert_eq!(
        api.get("/devices/tc-1/telemetry/workingSet").await.ok(200),
        &json!({})
    );
    assert_eq!(
        api.get("/devices/tc-1/components/thermostat1/telemetry/temperature")
            .await
            .ok(200),
        &json!({})
    );
    api.get("/devices/tc-1/telemetry/temperature")
        .await
        .error(404, "NotFound");
    api.get("/devices/ghost/telemetry/workingSet")
        .await
        .error(404, "NotFound");
}
