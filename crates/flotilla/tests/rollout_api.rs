//! Flotilla's rollout extensions of the job API over HTTP (issue 14): `"conflicts"` on a job
//! body (refuse a job an active job conflicts with), the dry-run plan
//! (`POST /jobs/{id}/plan`) and revert (`PUT /jobs/{id}/revert/{revertId}`), against a running
//! server, with devices that are offline (a property job then waits for them) or simulated over
//! MQTT/TLS by `flotilla sim`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A server whose jobs wait `timeout` seconds for a device, with both templates published.
async fn server(timeout: &str) -> (Server, Api) {
    let server = Server::start_with_env(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", timeout)]).await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    (server, api)
}

async fn devices(api: &Api, prefix: &str, count: usize, template: &str) {
    for i in 0..count {
        api.put(
            &format!("/devices/{prefix}{i:02}"),
            json!({"template": template}),
        )
        .await
        .ok(200);
    }
}

async fn group(api: &Api, id: &str, filter: &str) {
    api.put(
        &format!("/deviceGroups/{id}"),
        json!({"displayName": id, "filter": filter}),
    )
    .await
    .ok(200);
}

/// A filter selecting the devices named `{prefix}00` to `{prefix}{count - 1}`.
fn named(prefix: &str, count: usize) -> String {
    let ids: Vec<String> = (0..count)
        .map(|i| format!("$id = \"{prefix}{i:02}\""))
        .collect();
    format!("SELECT * FROM devices WHERE {}", ids.join(" OR "))
}

fn property_job(group: &str, value: Value) -> Value {
    json!({
        "displayName": "Set target temperature",
        "group": group,
        "data": [{"type": "property", "target": CONTROLLER,
                  "path": "thermostat1.targetTemperature", "value": value}]
    })
}

fn cloud_property_job(group: &str, value: &str) -> Value {
    json!({
        "group": group,
        "data": [{"type": "cloudProperty", "target": CONTROLLER,
                  "path": "customerName", "value": value}]
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

async fn job_devices(api: &Api, job: &str) -> Vec<Value> {
    api.list_all(&format!("/jobs/{job}/devices")).await.0
}

// ---- conflicts (issue 14, point 11) ----

#[tokio::test]
async fn refuse_answers_409_naming_the_running_job_and_stores_nothing() {
    // Devices stay offline: the first job holds them until its 10 s deadline.
    let (_server, api) = server("10").await;
    devices(&api, "tc-", 3, CONTROLLER).await;
    devices(&api, "other-", 2, CONTROLLER).await;
    group(&api, "tcs", &named("tc-", 3)).await;
    group(
        &api,
        "two-tcs",
        "SELECT * FROM devices WHERE $id = \"tc-01\" OR $id = \"tc-02\"",
    )
    .await;
    group(&api, "others", &named("other-", 2)).await;
    // Offline devices: the property job runs until they acknowledge, which they never do.
    let first = api.put("/jobs/first", property_job("tcs", json!(21))).await;
    assert!(
        first.ok(200).get("conflicts").is_none(),
        "no extension field unless sent: {}",
        first.text
    );
    wait_job(&api, "first", &["running"]).await;

    let refused = api
        .put(
            "/jobs/second",
            with(
                property_job("two-tcs", json!(25)),
                "conflicts",
                json!("refuse"),
            ),
        )
        .await;
    let message = refused.error(409, "Conflict");
    assert!(message.contains("'first'"), "{message}");
    assert!(message.contains("running"), "{message}");
    assert!(
        message.contains("thermostat1.targetTemperature"),
        "{message}"
    );
    assert!(message.contains("on 2 of its devices"), "{message}");
    api.get("/jobs/second").await.error(404, "NotFound");

    // The same capability on devices no active job holds: created.
    let apart = api
        .put(
            "/jobs/apart",
            with(
                property_job("others", json!(25)),
                "conflicts",
                json!("refuse"),
            ),
        )
        .await;
    assert_eq!(apart.ok(200)["conflicts"], "refuse", "echoed when sent");
    // Another capability on the same devices: created (it waits its turn on them).
    api.put(
        "/jobs/cloud",
        with(
            cloud_property_job("tcs", "Contoso"),
            "conflicts",
            json!("refuse"),
        ),
    )
    .await
    .ok(200);
    // "queue" (and leaving it out) is IoT Central's behaviour: created, and it waits.
    let queued = api
        .put(
            "/jobs/queued",
            with(property_job("tcs", json!(30)), "conflicts", json!("queue")),
        )
        .await;
    assert_eq!(queued.ok(200)["conflicts"], "queue");
    // A stopped job's pending devices hold nothing; once the first job's devices fail at their
    // deadline, the same refuse job is created.
    api.post("/jobs/queued/stop", json!({})).await.ok(204);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let again = api
            .put(
                "/jobs/second",
                with(
                    property_job("two-tcs", json!(25)),
                    "conflicts",
                    json!("refuse"),
                ),
            )
            .await;
        if again.status == 200 {
            break;
        }
        again.error(409, "Conflict");
        assert!(Instant::now() < deadline, "the first job kept its devices");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_bad_conflicts_value_is_refused_naming_the_field() {
    let (_server, api) = server("5").await;
    devices(&api, "tc-", 1, CONTROLLER).await;
    group(&api, "tcs", &named("tc-", 3)).await;
    for bad in [json!("wait"), json!(true), json!("Refuse")] {
        let refused = api
            .put(
                "/jobs/bad",
                with(property_job("tcs", json!(21)), "conflicts", bad),
            )
            .await;
        let message = refused.error(400, "BadRequest");
        assert!(message.contains("'conflicts'"), "{message}");
    }
    api.get("/jobs/bad").await.error(404, "NotFound");
}

// ---- the dry-run plan (issue 14, point 1) ----

#[tokio::test]
async fn a_plan_lists_batches_skipped_offline_devices_and_an_estimate_and_stores_nothing() {
    let (_server, api) = server("30").await;
    devices(&api, "tc-", 5, CONTROLLER).await;
    devices(&api, "th-", 2, THERMOSTAT).await;
    api.patch("/devices/tc-04", json!({"enabled": false}))
        .await
        .ok(200);
    group(&api, "everything", "SELECT * FROM devices").await;

    let body = with(
        property_job("everything", json!("21")),
        "batch",
        json!({"type": "number", "value": 2}),
    );
    let planned = api.post("/jobs/planned/plan", body.clone()).await;
    let plan = planned.ok(200);
    assert_eq!(plan["total"], 5, "{plan}");
    assert_eq!(plan["batchCount"], 3);
    assert_eq!(
        plan["batches"],
        json!([
            {"index": 0, "size": 2, "firstDeviceIds": ["tc-00", "tc-01"]},
            {"index": 1, "size": 2, "firstDeviceIds": ["tc-02", "tc-03"]},
            {"index": 2, "size": 1, "firstDeviceIds": ["tc-04"]},
        ])
    );
    assert_eq!(plan["skippedCount"], 3);
    assert_eq!(
        plan["skipped"],
        json!([
            {"id": "tc-04", "reason": "disabled"},
            {"id": "th-00", "reason": "wrongTemplate"},
            {"id": "th-01", "reason": "wrongTemplate"},
        ])
    );
    assert_eq!(plan["offline"], 5);
    assert_eq!(plan["conflicts"], json!([]));
    assert!(plan.get("refusedBy").is_none());
    // Every batch holds an offline device, which a property job waits for (30 s) each.
    assert_eq!(plan["estimatedSeconds"], 90.0);
    // Nothing stored: no job, and a PUT of the same body creates it.
    api.get("/jobs/planned").await.error(404, "NotFound");
    assert_eq!(api.list_all("/jobs").await.0.len(), 0);

    // A cloud property already at the value: skipped as such (a cloud property needs no
    // connection, so the disabled device is written too).
    api.put("/jobs/set", cloud_property_job("everything", "Contoso"))
        .await
        .ok(200);
    wait_job(&api, "set", &["complete"]).await;
    let same = api
        .post(
            "/jobs/again/plan",
            cloud_property_job("everything", "Contoso"),
        )
        .await;
    let same = same.ok(200);
    assert_eq!(same["total"], 5);
    assert_eq!(same["skippedCount"], 7, "{same}");
    let at_value: Vec<&Value> = same["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "alreadyAtValue")
        .collect();
    assert_eq!(at_value.len(), 5, "{same}");
    // One batch of 5, worked at once by the server alone.
    assert_eq!(same["estimatedSeconds"], 0.01);
    let other = api
        .post(
            "/jobs/again/plan",
            cloud_property_job("everything", "Fabrikam"),
        )
        .await;
    assert_eq!(other.ok(200)["skippedCount"], 2);
    api.put("/jobs/planned", body).await.ok(200);
}

#[tokio::test]
async fn a_plan_names_the_active_jobs_holding_its_devices() {
    let (_server, api) = server("30").await;
    devices(&api, "tc-", 3, CONTROLLER).await;
    group(&api, "tcs", &named("tc-", 3)).await;
    group(&api, "one", &named("tc-", 1)).await;
    api.put("/jobs/holder", property_job("one", json!(20)))
        .await
        .ok(200);
    wait_job(&api, "holder", &["running"]).await;

    let body = with(property_job("tcs", json!(22)), "conflicts", json!("refuse"));
    let plan = api.post("/jobs/next/plan", body.clone()).await;
    let plan = plan.ok(200);
    assert_eq!(
        plan["conflicts"],
        json!([{"jobId": "holder", "status": "running", "devices": 1,
                "sharedCapabilities": ["property 'thermostat1.targetTemperature'"]}]),
        "{plan}"
    );
    assert_eq!(plan["refusedBy"], "holder");
    // As the plan says: the PUT is refused.
    api.put("/jobs/next", body).await.error(409, "Conflict");
    // Another capability: the devices only wait their turn.
    let cloud = api
        .post("/jobs/next/plan", cloud_property_job("tcs", "Contoso"))
        .await;
    let cloud = cloud.ok(200);
    assert_eq!(cloud["conflicts"][0]["sharedCapabilities"], json!([]));
    assert_eq!(cloud["conflicts"][0]["devices"], 1);
    assert!(cloud.get("refusedBy").is_none());
}

#[tokio::test]
async fn a_bad_plan_body_gets_the_same_400_as_the_put() {
    let (_server, api) = server("5").await;
    devices(&api, "tc-", 1, CONTROLLER).await;
    group(&api, "tcs", &named("tc-", 1)).await;
    let bad_bodies = [
        json!({"data": property_job("tcs", json!(1))["data"]}),
        json!({"group": "nowhere", "data": property_job("tcs", json!(1))["data"]}),
        with(
            property_job("tcs", json!(1)),
            "batch",
            json!({"type": "number", "value": 0}),
        ),
        with(
            property_job("tcs", json!(1)),
            "conflicts",
            json!("sometimes"),
        ),
        with(property_job("tcs", json!("hot")), "id", json!("elsewhere")),
        json!({"group": "tcs", "data": [{"type": "property", "target": CONTROLLER,
               "path": "thermostat1.targetTemperature", "value": "hot"}]}),
        json!([]),
    ];
    for body in bad_bodies {
        let put = api.put("/jobs/bad", body.clone()).await;
        let plan = api.post("/jobs/bad/plan", body.clone()).await;
        let put_message = put.error(400, "BadRequest");
        let plan_message = plan.error(400, "BadRequest");
        assert_eq!(plan_message, put_message, "{body}");
    }
    // The path's id is checked as the PUT checks it.
    let put = api
        .put("/jobs/bad%20id", property_job("tcs", json!(1)))
        .await;
    let plan = api
        .post("/jobs/bad%20id/plan", property_job("tcs", json!(1)))
        .await;
    assert_eq!(plan.error(400, "BadRequest"), put.error(400, "BadRequest"));
    assert_eq!(api.list_all("/jobs").await.0.len(), 0);
}

// ---- revert (issue 14, point 9) ----

fn thermostat_job(group: &str, temperature: f64, customer: &str) -> Value {
    json!({
        "displayName": "Tune",
        "group": group,
        "data": [
            {"type": "property", "target": THERMOSTAT, "path": "targetTemperature", "value": temperature},
            {"type": "cloudProperty", "target": THERMOSTAT, "path": "customerName", "value": customer}
        ]
    })
}

/// The device's reported target temperature and its customer name.
async fn thermostat_state(api: &Api, id: &str) -> (Value, Value) {
    let properties = api.get(&format!("/devices/{id}/properties")).await;
    let cloud = api.get(&format!("/devices/{id}/cloudProperties")).await;
    (
        properties.ok(200)["targetTemperature"].clone(),
        cloud.ok(200)["customerName"].clone(),
    )
}

#[tokio::test]
async fn a_revert_restores_earlier_values_on_simulated_devices_it_changed() {
    let (server, api) = server("20").await;
    let _sim = sim_command(&server, &api, 3, "rv-").await.spawn().unwrap();
    let ids = ["rv-00000", "rv-00001", "rv-00002"];
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in ids {
        while api.get(&format!("/devices/{id}")).await.status != 200 {
            assert!(Instant::now() < deadline, "{id} was never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    group(
        &api,
        "thermostats",
        &format!("SELECT * FROM devices WHERE $template = \"{THERMOSTAT}\""),
    )
    .await;
    api.put(
        "/jobs/first",
        thermostat_job("thermostats", 20.0, "Contoso"),
    )
    .await
    .ok(200);
    let first = wait_job(&api, "first", &["complete"]).await;
    assert_eq!(first["progress"]["completed"], 3, "{first}");
    // One device already has what the second job sets: the second job changes nothing there.
    api.patch(
        "/devices/rv-00002/properties",
        json!({"targetTemperature": 30.0}),
    )
    .await
    .ok(202);
    api.patch(
        "/devices/rv-00002/cloudProperties",
        json!({"customerName": "Fabrikam"}),
    )
    .await
    .ok(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while thermostat_state(&api, "rv-00002").await.0 != json!(30.0) {
        assert!(Instant::now() < deadline, "rv-00002 never took 30");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.put(
        "/jobs/second",
        thermostat_job("thermostats", 30.0, "Fabrikam"),
    )
    .await
    .ok(200);
    let second = wait_job(&api, "second", &["complete"]).await;
    assert_eq!(second["progress"]["completed"], 3, "{second}");
    for id in ids {
        assert_eq!(
            thermostat_state(&api, id).await,
            (json!(30.0), json!("Fabrikam"))
        );
    }

    // The plan of the same job again: connected devices that are all at the value already.
    let plan = api
        .post(
            "/jobs/third/plan",
            thermostat_job("thermostats", 30.0, "Fabrikam"),
        )
        .await;
    let plan = plan.ok(200);
    assert_eq!(plan["total"], 3, "{plan}");
    assert_eq!(plan["offline"], 0, "{plan}");
    assert_eq!(
        plan["skipped"],
        json!(ids.map(|id| json!({"id": id, "reason": "alreadyAtValue"}))),
        "{plan}"
    );

    let created = api.put("/jobs/second/revert/undo", json!({})).await;
    let created = created.ok(200);
    assert_eq!(created["revertOf"], "second", "{created}");
    assert_eq!(created["displayName"], "Revert of Tune");
    assert!(
        created["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d.get("value").is_none()),
        "{created}"
    );
    let undone = wait_job(&api, "undo", &["complete"]).await;
    assert_eq!(
        undone["progress"],
        json!({"total": 2, "pending": 0, "completed": 2, "failed": 0}),
        "only the devices the job changed: {undone}"
    );
    let reverted: Vec<Value> = job_devices(&api, "undo")
        .await
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(
        reverted,
        json!(["rv-00000", "rv-00001"]).as_array().unwrap().clone()
    );
    for id in ["rv-00000", "rv-00001"] {
        assert_eq!(
            thermostat_state(&api, id).await,
            (json!(20.0), json!("Contoso")),
            "{id} is back to its values from before the job"
        );
    }
    assert_eq!(
        thermostat_state(&api, "rv-00002").await,
        (json!(30.0), json!("Fabrikam")),
        "left alone"
    );
    // A revert is itself a job that changed devices: reverting it redoes the original.
    api.put("/jobs/undo/revert/redo", json!({})).await.ok(200);
    wait_job(&api, "redo", &["complete"]).await;
    assert_eq!(
        thermostat_state(&api, "rv-00000").await,
        (json!(30.0), json!("Fabrikam"))
    );
}

#[tokio::test]
async fn what_cannot_be_reverted_is_refused() {
    let (_server, api) = server("5").await;
    devices(&api, "tc-", 2, CONTROLLER).await;
    group(&api, "tcs", &named("tc-", 2)).await;
    // A command cannot be undone: 400, whatever the job's state.
    api.put(
        "/jobs/reboot",
        json!({"group": "tcs", "data": [{"type": "command", "target": CONTROLLER, "path": "reboot"}]}),
    )
    .await
    .ok(200);
    let message = api
        .put("/jobs/reboot/revert/unreboot", json!({}))
        .await
        .error(400, "BadRequest");
    assert!(message.contains("command"), "{message}");
    api.get("/jobs/unreboot").await.error(404, "NotFound");
    // A template migration records nothing to restore: 400 too.
    devices(&api, "th-", 2, THERMOSTAT).await;
    group(&api, "ths", &named("th-", 2)).await;
    api.put(
        "/jobs/migrate",
        json!({"group": "ths", "data": [{"type": "deviceTemplateMigration", "template": CONTROLLER}]}),
    )
    .await
    .ok(200);
    let migrated = wait_job(&api, "migrate", &["complete"]).await;
    assert_eq!(migrated["progress"]["completed"], 2, "{migrated}");
    let message = api
        .put("/jobs/migrate/revert/unmigrate", json!({}))
        .await
        .error(400, "BadRequest");
    assert!(message.contains("migrates templates"), "{message}");
    api.get("/jobs/unmigrate").await.error(404, "NotFound");
    // Not finished: 409, as for a rerun (offline devices hold a property job for 5 s).
    devices(&api, "tp-", 2, CONTROLLER).await;
    group(&api, "tps", &named("tp-", 2)).await;
    api.put("/jobs/unfinished", property_job("tps", json!(21)))
        .await
        .ok(200);
    wait_job(&api, "unfinished", &["running"]).await;
    let message = api
        .put("/jobs/unfinished/revert/early", json!({}))
        .await
        .error(409, "Conflict");
    assert!(
        message.contains("'unfinished' is running") && message.contains("when it has finished"),
        "{message}"
    );
    api.get("/jobs/early").await.error(404, "NotFound");
    api.put("/jobs/set", cloud_property_job("tcs", "Contoso"))
        .await
        .ok(200);
    wait_job(&api, "set", &["complete"]).await;
    // A job that changed nothing (every device already had the value): 409.
    api.put("/jobs/same", cloud_property_job("tcs", "Contoso"))
        .await
        .ok(200);
    wait_job(&api, "same", &["complete"]).await;
    let message = api
        .put("/jobs/same/revert/nothing", json!({}))
        .await
        .error(409, "Conflict");
    assert!(message.contains("changed no device"), "{message}");
    api.get("/jobs/nothing").await.error(404, "NotFound");
    // A cloud property never set before is removed again by the revert.
    let undo = api.put("/jobs/set/revert/unset", json!({})).await;
    undo.ok(200);
    wait_job(&api, "unset", &["complete"]).await;
    let cloud = api.get("/devices/tc-00/cloudProperties").await;
    assert!(
        cloud.ok(200).get("customerName").is_none(),
        "{}",
        cloud.text
    );
    // Only the server sets revertOf.
    let refused = api
        .put(
            "/jobs/forged",
            with(cloud_property_job("tcs", "X"), "revertOf", json!("set")),
        )
        .await;
    assert!(refused.error(400, "BadRequest").contains("'revertOf'"));
    // A missing job: 404.
    api.put("/jobs/missing/revert/x", json!({}))
        .await
        .error(404, "NotFound");
}

#[tokio::test]
async fn a_scheduled_run_inherits_refuse_and_fails_when_a_job_conflicts() {
    // The scheduler goes by a file clock; the schedule's start is its time, so it runs at once.
    let clock = TestClock::at("2030-01-01T12:00:00Z");
    let server =
        Server::start_with_env(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "30"), clock.env()]).await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    devices(&api, "tc-", 2, CONTROLLER).await;
    group(&api, "tcs", &named("tc-", 2)).await;
    api.put("/jobs/holder", property_job("tcs", json!(20)))
        .await
        .ok(200);
    wait_job(&api, "holder", &["running"]).await;

    let mut scheduled = with(property_job("tcs", json!(25)), "conflicts", json!("refuse"));
    scheduled["enabled"] = json!(true);
    scheduled["schedule"] = json!({"start": "2030-01-01T12:00:00Z"});
    let created = api.put("/scheduledJobs/nightly", scheduled).await;
    assert_eq!(created.ok(200)["conflicts"], "refuse", "{}", created.text);
    let run = wait_job(&api, "nightly-1", &["failed"]).await;
    assert_eq!(run["conflicts"], "refuse", "the run inherits it: {run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("'holder'"), "{run}");
    assert!(reason.contains("thermostat1.targetTemperature"), "{run}");
}
