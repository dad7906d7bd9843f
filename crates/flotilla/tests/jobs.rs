//! The job engine over HTTP, with devices that need no connection (cloud properties, template
//! migration) or that are offline (property jobs whose deadline passes): batches, thresholds at
//! their exact edges, stop and resume, rerun, and every validation failure. Jobs on connected
//! devices are in tests/sdk (the real Python SDK) and tests/sim_jobs.rs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A server whose jobs give up on a device after `timeout` seconds.
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

/// Waits until no device of the job is running.
async fn wait_until_settled(api: &Api, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_devices(api, job)
        .await
        .iter()
        .any(|d| d["status"] == "running")
    {
        assert!(Instant::now() < deadline, "job {job} never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn job_devices(api: &Api, job: &str) -> Vec<Value> {
    api.list_all(&format!("/jobs/{job}/devices")).await.0
}

fn property_job(group: &str, extra: Value) -> Value {
    let mut body = json!({
        "displayName": "Set target temperature",
        "group": group,
        "data": [{"type": "PropertyJobData", "target": CONTROLLER,
                  "path": "thermostat1.targetTemperature", "value": "55"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn a_cloud_property_job_completes_on_every_device_of_the_target_template() {
    let (_server, api) = server("5").await;
    devices(&api, "tc-", 5, CONTROLLER).await;
    devices(&api, "th-", 2, THERMOSTAT).await;
    group(&api, "everything", "SELECT * FROM devices").await;
    let created = api
        .put(
            "/jobs/set-customer",
            json!({"displayName": "Set customer", "group": "everything",
                   "data": [{"type": "CloudPropertyJobData", "target": CONTROLLER,
                             "path": "customerName", "value": "Contoso"}]}),
        )
        .await;
    let body = created.ok(200);
    assert_eq!(body["status"], "pending");
    assert_eq!(
        body["data"][0]["type"], "CloudPropertyJobData",
        "answers echo the spelling sent"
    );
    let done = wait_for(&api, "set-customer", &["complete"]).await;
    assert_eq!(
        done["progress"],
        json!({"total": 5, "pending": 0, "completed": 5, "failed": 0})
    );
    assert!(done["start"].as_str().is_some() && done["end"].as_str().is_some());
    let states = job_devices(&api, "set-customer").await;
    assert_eq!(states.len(), 5, "only the target template's devices");
    assert!(states.iter().all(|d| d["status"] == "completed"));
    for i in 0..5 {
        let props = api
            .get(&format!("/devices/tc-{i:02}/cloudProperties"))
            .await;
        assert_eq!(props.ok(200)["customerName"], "Contoso");
    }
}

#[tokio::test]
async fn a_template_migration_job_moves_the_group() {
    let (_server, api) = server("5").await;
    devices(&api, "th-", 3, THERMOSTAT).await;
    group(
        &api,
        "thermostats",
        &format!("SELECT * FROM devices WHERE $template = \"{THERMOSTAT}\""),
    )
    .await;
    api.put(
        "/jobs/migrate",
        json!({"group": "thermostats", "data": [{"type": "deviceTemplateMigration", "template": CONTROLLER}]}),
    )
    .await
    .ok(200);
    let done = wait_for(&api, "migrate", &["complete"]).await;
    assert_eq!(done["progress"]["completed"], 3);
    for i in 0..3 {
        let device = api.get(&format!("/devices/th-{i:02}")).await;
        assert_eq!(device.ok(200)["template"], CONTROLLER);
    }
}

#[tokio::test]
async fn offline_devices_fail_at_their_deadline_with_the_reason_and_rerun_targets_them() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 3, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    api.put("/jobs/offline", property_job("controllers", json!({})))
        .await
        .ok(200);
    let done = wait_for(&api, "offline", &["complete"]).await;
    assert_eq!(done["progress"]["failed"], 3, "{done}");
    for device in job_devices(&api, "offline").await {
        assert_eq!(device["status"], "failed");
        let reason = device["reason"].as_str().unwrap();
        assert!(reason.contains("offline"), "{reason}");
    }
    // The desired property is set, for the device's next connection.
    let props = api.get("/devices/tc-00/properties").await;
    assert_eq!(
        props.ok(200)["thermostat1"]["$metadata"]["targetTemperature"]["desiredValue"],
        55.0
    );

    let rerun = api
        .put("/jobs/offline/rerun/offline-again", json!({}))
        .await;
    let rerun = rerun.ok(200).clone();
    assert_eq!(rerun["id"], "offline-again");
    assert_eq!(rerun["status"], "pending");
    assert_eq!(rerun["data"], done["data"]);
    let again = wait_for(&api, "offline-again", &["complete"]).await;
    assert_eq!(again["progress"]["total"], 3);

    // A job with no failures cannot be rerun.
    api.put(
        "/jobs/fine",
        json!({"group": "controllers", "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "x"}]}),
    )
    .await
    .ok(200);
    wait_for(&api, "fine", &["complete"]).await;
    let message = api
        .put("/jobs/fine/rerun/fine-again", json!({}))
        .await
        .error(409, "Conflict");
    assert!(message.contains("no failed devices"), "{message}");
    api.put("/jobs/ghost/rerun/x", json!({}))
        .await
        .error(404, "NotFound");
}

/// Batches run in order: no device of a batch starts before every device of the batch before
/// it has finished.
#[tokio::test]
async fn batches_run_one_after_another() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 5, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    api.put(
        "/jobs/batched",
        property_job(
            "controllers",
            json!({"batch": {"type": "number", "value": 2}}),
        ),
    )
    .await
    .ok(200);
    let started = Instant::now();
    let mut seen_states = Vec::new();
    loop {
        let states = job_devices(&api, "batched").await;
        let status: Vec<String> = states
            .iter()
            .map(|d| d["status"].as_str().unwrap().to_string())
            .collect();
        if !status.is_empty() {
            // Batches are [0,1], [2,3], [4]: a later batch is untouched while an earlier one
            // is unfinished.
            let batch_of = |i: usize| i / 2;
            for (i, s) in status.iter().enumerate() {
                if s != "pending" {
                    for (j, earlier) in status.iter().enumerate() {
                        if batch_of(j) < batch_of(i) {
                            assert!(
                                earlier == "completed" || earlier == "failed",
                                "device {i} started while device {j} of an earlier batch is {earlier}: {status:?}"
                            );
                        }
                    }
                }
            }
            seen_states.push(status.clone());
        }
        let job = api.get("/jobs/batched").await.body;
        if job["status"] == "complete" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three batches of a 1 s deadline each: about 3 s, not 1 s.
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        seen_states
            .iter()
            .any(|s| s[0] == "failed" && s[2] == "running" && s[4] == "pending"),
        "saw the second batch running while the third waited: {seen_states:?}"
    );
}

#[tokio::test]
async fn batch_sizes_by_percentage_round_up() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 5, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    // 25% of 5 devices is 1.25: batches of 2 ([0,1], [2,3], [4]), never more at once.
    api.put(
        "/jobs/quarter",
        property_job(
            "controllers",
            json!({"batch": {"type": "percentage", "value": 25}}),
        ),
    )
    .await
    .ok(200);
    let mut largest = 0;
    loop {
        let states = job_devices(&api, "quarter").await;
        let running: Vec<usize> = states
            .iter()
            .enumerate()
            .filter(|(_, d)| d["status"] == "running")
            .map(|(i, _)| i)
            .collect();
        assert!(
            running.iter().all(|i| i / 2 == running[0] / 2),
            "devices of two batches ran at once: {running:?}"
        );
        largest = largest.max(running.len());
        if api.get("/jobs/quarter").await.body["status"] == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(largest, 2, "a batch is two devices, rounded up from 1.25");
}

/// Per-job percentage threshold: 10 offline devices in batches of 2. 20% is reached by the 2nd
/// failure (2 × 100 ≥ 20 × 10), in the first batch; 21% only by the 3rd (300 ≥ 210), in the
/// second batch, whose other device was already in flight and still finishes: 4 failed.
#[tokio::test]
async fn a_job_threshold_cancels_at_its_exact_edge() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 10, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    for (id, percent, failed) in [("at-20", 20.0, 2), ("at-21", 21.0, 4)] {
        api.put(
            &format!("/jobs/{id}"),
            property_job(
                "controllers",
                json!({"batch": {"type": "number", "value": 2},
                       "cancellationThreshold": {"type": "percentage", "value": percent, "batch": false}}),
            ),
        )
        .await
        .ok(200);
        wait_for(&api, id, &["cancelled", "complete"]).await;
        // Devices in flight when the threshold is reached finish; then the counts settle.
        wait_until_settled(&api, id).await;
        let done = api.get(&format!("/jobs/{id}")).await.ok(200).clone();
        assert_eq!(done["status"], "cancelled", "{done}");
        assert_eq!(
            done["progress"],
            json!({"total": 10, "pending": 10 - failed, "completed": 0, "failed": failed}),
            "{id}"
        );
        let pending = job_devices(&api, id)
            .await
            .iter()
            .filter(|d| d["status"] == "pending")
            .count();
        assert_eq!(
            pending,
            10 - failed as usize,
            "no device started after the cancel"
        );
    }
}

/// Per-batch number threshold: batches of 3; a threshold of 3 per batch is reached by the first
/// batch; a threshold of 4 per batch is never reached, so every device runs.
#[tokio::test]
async fn a_batch_threshold_counts_each_batch_on_its_own() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 6, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    for (id, value, status, failed) in [
        ("per-batch-3", 3, "cancelled", 3),
        ("per-batch-4", 4, "complete", 6),
    ] {
        api.put(
            &format!("/jobs/{id}"),
            property_job(
                "controllers",
                json!({"batch": {"type": "number", "value": 3},
                       "cancellationThreshold": {"type": "number", "value": value, "batch": true}}),
            ),
        )
        .await
        .ok(200);
        wait_for(&api, id, &["cancelled", "complete"]).await;
        wait_until_settled(&api, id).await;
        let done = api.get(&format!("/jobs/{id}")).await.ok(200).clone();
        assert_eq!(done["status"], status, "{done}");
        assert_eq!(done["progress"]["failed"], failed, "{done}");
    }
}

#[tokio::test]
async fn stop_and_resume_in_the_middle_of_a_job() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 6, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    api.put(
        "/jobs/stoppable",
        property_job(
            "controllers",
            json!({"batch": {"type": "number", "value": 2}}),
        ),
    )
    .await
    .ok(200);
    wait_for(&api, "stoppable", &["running"]).await;
    // Stop while the first batch is in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job_devices(&api, "stoppable")
        .await
        .iter()
        .any(|d| d["status"] == "running")
    {
        assert!(Instant::now() < deadline, "no device started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.post("/jobs/stoppable/stop", json!({})).await.ok(204);
    api.post("/jobs/stoppable/stop", json!({}))
        .await
        .error(409, "Conflict");
    // The batch in flight finishes; nothing else starts while the job is stopped.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stopped = api.get("/jobs/stoppable").await.ok(200).clone();
    assert_eq!(stopped["status"], "stopped");
    let states = job_devices(&api, "stoppable").await;
    let pending = states.iter().filter(|d| d["status"] == "pending").count();
    assert_eq!(pending, 4, "{states:?}");
    api.post("/jobs/stoppable/resume", json!({})).await.ok(204);
    api.post("/jobs/stoppable/resume", json!({}))
        .await
        .error(409, "Conflict");
    let done = wait_for(&api, "stoppable", &["complete"]).await;
    assert_eq!(
        done["progress"]["failed"], 6,
        "every device ran exactly once: {done}"
    );
    api.post("/jobs/stoppable/stop", json!({}))
        .await
        .error(409, "Conflict");
    api.post("/jobs/ghost/stop", json!({}))
        .await
        .error(404, "NotFound");
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_page() {
    let (_server, api) = server("5").await;
    devices(&api, "tc-", 1, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = format!("job-{i:02}");
        api.put(
            &format!("/jobs/{id}"),
            json!({"group": "controllers", "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": format!("c{i}")}]}),
        )
        .await
        .ok(200);
        ids.push(id);
    }
    ids.reverse();
    let (all, pages) = api.list_all("/jobs").await;
    let listed: Vec<&str> = all.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids);
    assert_eq!(pages, 2);
    let (_, pages) = api.preview().list_all("/jobs?maxpagesize=10").await;
    assert_eq!(pages, 3);
    // Both jobs on the device ran, in the order they were created: the last value stays.
    wait_for(&api, "job-29", &["complete"]).await;
    for id in &ids {
        wait_for(&api, id, &["complete"]).await;
    }
    let props = api.get("/devices/tc-00/cloudProperties").await;
    assert_eq!(props.ok(200)["customerName"], "c29");
}

#[tokio::test]
async fn bad_jobs_are_refused_and_nothing_is_created() {
    let (_server, api) = server("5").await;
    devices(&api, "tc-", 1, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    let good = property_job("controllers", json!({}));
    let with = |patch: Value| {
        let mut body = good.clone();
        flotilla_patch(&mut body, &patch);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"group": "no-such-group"})), "group"),
        (with(json!({"group": null})), "group"),
        (with(json!({"data": []})), "data"),
        (with(json!({"data": null})), "data"),
        (
            with(
                json!({"data": [{"type": "property", "target": "dtmi:no:such;1", "path": "x", "value": 1}]}),
            ),
            "data[0].target",
        ),
        (
            with(
                json!({"data": [{"type": "property", "target": CONTROLLER, "path": "thermostat1.nope", "value": 1}]}),
            ),
            "data[0].path",
        ),
        (
            with(
                json!({"data": [{"type": "property", "target": CONTROLLER, "path": "serialNumber", "value": "x"}]}),
            ),
            "read-only",
        ),
        (
            with(
                json!({"data": [{"type": "property", "target": CONTROLLER, "path": "reboot", "value": 1}]}),
            ),
            "command",
        ),
        (
            with(
                json!({"data": [{"type": "command", "target": CONTROLLER, "path": "thermostat1.targetTemperature"}]}),
            ),
            "data[0].path",
        ),
        (
            with(
                json!({"data": [{"type": "property", "target": CONTROLLER, "path": "thermostat1.targetTemperature", "value": "hot"}]}),
            ),
            "data[0].value",
        ),
        (
            with(
                json!({"data": [{"type": "property", "target": CONTROLLER, "path": "thermostat1.targetTemperature"}]}),
            ),
            "data[0].value",
        ),
        (
            with(
                json!({"data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": 5}]}),
            ),
            "data[0].value",
        ),
        (
            with(json!({"data": [{"type": "teleport", "target": CONTROLLER, "path": "x"}]})),
            "data[0].type",
        ),
        (
            with(
                json!({"data": [{"type": "deviceTemplateMigration", "template": "dtmi:no:such;1"}]}),
            ),
            "data[0].template",
        ),
        (
            with(json!({"data": [{"type": "deviceManifestMigration", "manifest": "m"}]})),
            "data[0].type",
        ),
        (
            with(json!({"batch": {"type": "number", "value": 0}})),
            "batch.value",
        ),
        (
            with(json!({"batch": {"type": "number", "value": 1.5}})),
            "batch.value",
        ),
        (
            with(json!({"batch": {"type": "percentage", "value": 0}})),
            "batch.value",
        ),
        (
            with(json!({"batch": {"type": "percentage", "value": 100.5}})),
            "batch.value",
        ),
        (
            with(json!({"batch": {"type": "devices", "value": 2}})),
            "batch.type",
        ),
        (
            with(
                json!({"cancellationThreshold": {"type": "percentage", "value": 0, "batch": false}}),
            ),
            "cancellationThreshold.value",
        ),
        (
            with(
                json!({"cancellationThreshold": {"type": "percentage", "value": 101, "batch": false}}),
            ),
            "cancellationThreshold.value",
        ),
        (
            with(json!({"cancellationThreshold": {"type": "number", "value": 0, "batch": true}})),
            "cancellationThreshold.value",
        ),
        (
            with(json!({"cancellationThreshold": {"type": "number", "value": 2, "batch": "yes"}})),
            "cancellationThreshold.batch",
        ),
        (with(json!({"status": "complete"})), "status"),
    ];
    for (body, named) in cases {
        let message = api.put("/jobs/bad", body).await.error(400, "BadRequest");
        assert!(message.contains(named), "{message} should name {named}");
    }
    api.put("/jobs/bad%20id", good.clone())
        .await
        .error(400, "BadRequest");
    api.get("/jobs/bad").await.error(404, "NotFound");
    assert_eq!(api.get("/jobs").await.ok(200)["value"], json!([]));

    api.put("/jobs/taken", good.clone()).await.ok(200);
    api.put("/jobs/taken", good.clone())
        .await
        .error(409, "Conflict");
    let (all, _) = api.list_all("/jobs").await;
    assert_eq!(all.len(), 1);
}

fn flotilla_patch(target: &mut Value, patch: &Value) {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            target.as_object_mut().unwrap().remove(k);
        } else {
            target[k] = v.clone();
        }
    }
}

/// The other combinations of scope and kind. A per-job number: 3 failures over batches of 2 is
/// reached by the second batch's first failure; its other device, already in flight, finishes
/// too: 4 failed, 4 never started. A per-batch percentage: 50% of a batch of 4 is reached at its
/// 2nd failure, 100% at its 4th; either way the first batch's 4 devices were all in flight.
#[tokio::test]
async fn job_number_and_batch_percentage_thresholds() {
    let (_server, api) = server("1").await;
    devices(&api, "tc-", 8, CONTROLLER).await;
    group(&api, "controllers", "SELECT * FROM devices").await;
    let cases = [
        (
            "job-number-3",
            json!({"batch": {"type": "number", "value": 2},
                   "cancellationThreshold": {"type": "number", "value": 3, "batch": false}}),
            4,
        ),
        (
            "batch-percent-50",
            json!({"batch": {"type": "number", "value": 4},
                   "cancellationThreshold": {"type": "percentage", "value": 50, "batch": true}}),
            4,
        ),
        (
            "batch-percent-100",
            json!({"batch": {"type": "number", "value": 4},
                   "cancellationThreshold": {"type": "percentage", "value": 100, "batch": true}}),
            4,
        ),
    ];
    for (id, extra, failed) in cases {
        api.put(&format!("/jobs/{id}"), property_job("controllers", extra))
            .await
            .ok(200);
        wait_for(&api, id, &["cancelled", "complete"]).await;
        wait_until_settled(&api, id).await;
        let done = api.get(&format!("/jobs/{id}")).await.ok(200).clone();
        assert_eq!(done["status"], "cancelled", "{id}: {done}");
        assert_eq!(done["progress"]["failed"], failed, "{id}: {done}");
        assert_eq!(done["progress"]["pending"], 8 - failed, "{id}: {done}");
    }
}
