//! How a job's devices end, over HTTP with simulated devices: each reason code from a real
//! cause (devices that reject, that answer too late, that never connect, that are deleted, a
//! server restarted mid-command), and the export of every device as CSV or NDJSON.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A server whose jobs give up on a device after `timeout` seconds, with both templates.
async fn server(timeout: &str) -> (Server, Api) {
    let server = Server::start_with_env(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", timeout)]).await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    (server, api)
}

/// Creates `ids` with `template`, eight at a time.
async fn create_devices(api: &Api, ids: Vec<String>, template: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(8).max(1)) {
        let api = api.clone();
        let chunk = chunk.to_vec();
        let template = template.to_string();
        tasks.spawn(async move {
            for id in chunk {
                api.put(&format!("/devices/{id}"), json!({"template": template}))
                    .await
                    .ok(200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
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

/// `flotilla sim` running one thermostat `{prefix}00000` with these flags, connected when this
/// returns (it answered a command, or was too slow to within 5 s).
async fn simulated(
    server: &Server,
    api: &Api,
    prefix: &str,
    flags: &[&str],
) -> tokio::process::Child {
    let sim = sim_command(server, api, 1, prefix)
        .await
        .args(["--duration", "120"])
        .args(flags)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");
    let id = format!("{prefix}00000");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = api
            .post(
                &format!("/devices/{id}/commands/getMaxMinReport"),
                json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 5, "responseTimeout": 5}),
            )
            .await;
        if run.status.as_u16() != 404 {
            return sim;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never connected: {}",
            run.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn command_job(group: &str, extra: Value) -> Value {
    let mut body = json!({
        "group": group,
        "data": [{"type": "command", "target": THERMOSTAT, "path": "getMaxMinReport",
                  "value": "2024-01-01T00:00:00Z"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The job's devices exported with `Accept: accept`: the response's content type and body.
async fn export(api: &Api, job: &str, accept: &str) -> (String, String) {
    let response = api
        .request(reqwest::Method::GET, &format!("/jobs/{job}/devices"))
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.text().await.unwrap())
}

/// Every device of the job as the NDJSON export gives it, by id.
async fn exported(api: &Api, job: &str) -> std::collections::BTreeMap<String, Value> {
    let (_, body) = export(api, job, "application/x-ndjson").await;
    body.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            (row["id"].as_str().unwrap().to_string(), row)
        })
        .collect()
}

#[tokio::test]
async fn every_device_of_a_job_exports_as_csv_and_ndjson_past_a_page() {
    let (_server, api) = server("5").await;
    // More than one page of the store's reads (1,000).
    let ids: Vec<String> = (0..1001).map(|i| format!("ex-{i:04}")).collect();
    create_devices(&api, ids.clone(), CONTROLLER).await;
    group(&api, "all", "SELECT * FROM devices").await;
    api.put(
        "/jobs/export",
        json!({"group": "all", "data": [{"type": "cloudProperty", "target": CONTROLLER,
               "path": "customerName", "value": "Contoso"}]}),
    )
    .await
    .ok(200);
    wait_job(&api, "export", &["complete"]).await;

    let (content_type, csv_body) = export(&api, "export", "text/csv").await;
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let mut reader = csv::Reader::from_reader(csv_body.as_bytes());
    assert_eq!(reader.headers().unwrap(), common::EXPORT_COLUMNS.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), ids.len());
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(&row[0], id.as_str(), "in the job's order");
        assert_eq!(&row[1], "completed");
        assert_eq!((&row[2], &row[3], &row[4]), ("", "", ""));
        assert_eq!(&row[5], "1");
        assert!(row[6].ends_with('Z') && row[7].ends_with('Z'), "{row:?}");
        assert!(row[6] <= row[7], "{row:?}");
    }

    let (content_type, ndjson) = export(&api, "export", "application/x-ndjson").await;
    assert_eq!(content_type, "application/x-ndjson");
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), ids.len());
    for (line, id) in lines.iter().zip(&ids) {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = common::EXPORT_COLUMNS.to_vec();
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(line["id"], id.as_str());
        assert_eq!(line["status"], "completed");
        assert_eq!(line["reasonCode"], Value::Null);
        assert_eq!(line["attempts"], 1);
    }

    // Without those media types, the JSON pages as before: IoT Central's shape.
    let page = api.get("/jobs/export/devices").await;
    let page = page.ok(200);
    assert!(page["nextLink"].is_string(), "{page}");
    let first = &page["value"][0];
    assert_eq!(first, &json!({"id": "ex-0000", "status": "completed"}));
    let explicit = api
        .request(reqwest::Method::GET, "/jobs/export/devices")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(explicit.status(), 200);
    let explicit: Value = explicit.json().await.unwrap();
    assert_eq!(explicit["value"], page["value"]);

    // An unknown job is IoT Central's 404, whatever the format asked for.
    let missing = api
        .request(reqwest::Method::GET, "/jobs/nope/devices")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert!(error["error"]["code"].is_string(), "{error}");
}

#[tokio::test]
async fn a_running_job_exports_its_devices_as_they_stand() {
    let (_server, api) = server("3").await;
    create_devices(&api, vec!["away-0".into(), "away-1".into()], THERMOSTAT).await;
    group(&api, "away", "SELECT * FROM devices").await;
    api.put("/jobs/waiting", command_job("away", json!({})))
        .await
        .ok(200);
    wait_job(&api, "waiting", &["running"]).await;
    let during = exported(&api, "waiting").await;
    assert_eq!(during.len(), 2);
    for row in during.values() {
        assert_eq!(row["status"], "running", "{row}");
        assert_eq!(row["attempts"], 1, "{row}");
        assert!(row["start"].is_string() && row["end"].is_null(), "{row}");
    }
    wait_job(&api, "waiting", &["complete"]).await;
    for row in exported(&api, "waiting").await.values() {
        assert_eq!(row["status"], "failed", "{row}");
        assert_eq!(row["reasonCode"], "offline", "{row}");
        assert!(row["end"].is_string(), "{row}");
    }
}

#[tokio::test]
async fn rejected_timed_out_and_offline_come_from_devices_that_refuse_are_slow_or_away() {
    let (server, api) = server("2").await;
    let (_refusing, _slow) = tokio::join!(
        simulated(&server, &api, "rej-", &["--fail-fraction", "1"]),
        simulated(&server, &api, "slow-", &["--delay-ms", "4000"]),
    );
    create_devices(&api, vec!["away-0".into()], THERMOSTAT).await;
    group(&api, "fleet", "SELECT * FROM devices").await;
    api.put("/jobs/causes", command_job("fleet", json!({})))
        .await
        .ok(200);
    let done = wait_job(&api, "causes", &["complete"]).await;
    assert_eq!(done["progress"]["failed"], 3, "{done}");

    let rows = exported(&api, "causes").await;
    let code = |id: &str| rows[id]["reasonCode"].as_str().unwrap().to_string();
    assert_eq!(code("rej-00000"), "rejected", "{rows:?}");
    assert_eq!(rows["rej-00000"]["responseCode"], 500);
    assert_eq!(code("slow-00000"), "timedOut", "{rows:?}");
    assert_eq!(code("away-0"), "offline", "{rows:?}");

    // A job with IoT Central's fields alone: its device entries keep IoT Central's shape
    // (and Flotilla's `reason`), without the codes.
    for device in api.list_all("/jobs/causes/devices").await.0 {
        assert!(device["reason"].is_string(), "{device}");
        assert!(device.get("reasonCode").is_none(), "{device}");
        assert!(device.get("attempts").is_none(), "{device}");
    }
}

#[tokio::test]
async fn a_device_deleted_while_its_job_runs_fails_with_error() {
    let (_server, api) = server("2").await;
    create_devices(&api, vec!["del-0".into(), "del-1".into()], CONTROLLER).await;
    group(&api, "pair", "SELECT * FROM devices").await;
    // One device per batch: the first waits for an acknowledgement that never comes (it is
    // offline) while the second, still to do, is deleted.
    api.put(
        "/jobs/deleted",
        json!({"group": "pair", "batch": {"type": "number", "value": 1},
               "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "x"},
                        {"type": "property", "target": CONTROLLER,
                         "path": "thermostat1.targetTemperature", "value": 21}]}),
    )
    .await
    .ok(200);
    wait_job(&api, "deleted", &["running"]).await;
    api.delete("/devices/del-1").await.ok(204);
    wait_job(&api, "deleted", &["complete"]).await;
    let rows = exported(&api, "deleted").await;
    assert_eq!(rows["del-0"]["reasonCode"], "offline", "{rows:?}");
    assert_eq!(rows["del-1"]["reasonCode"], "error", "{rows:?}");
    assert!(
        rows["del-1"]["reason"]
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_command_cut_short_by_a_restart_is_interrupted() {
    let (mut server, api) = server("20").await;
    let _slow = simulated(&server, &api, "cut-", &["--delay-ms", "4000"]).await;
    group(&api, "one", "SELECT * FROM devices").await;
    api.put("/jobs/cut", command_job("one", json!({})))
        .await
        .ok(200);
    // The command is out (the device takes 4 s to answer): restart the server under it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while exported(&api, "cut")
        .await
        .get("cut-00000")
        .map(|d| d["status"].clone())
        != Some(json!("running"))
    {
        assert!(Instant::now() < deadline, "the device never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.restart().await;
    let api = server.admin();
    wait_job(&api, "cut", &["complete"]).await;
    let rows = exported(&api, "cut").await;
    assert_eq!(rows["cut-00000"]["reasonCode"], "interrupted", "{rows:?}");
}

fn property_job(group: &str, extra: Value) -> Value {
    let mut body = json!({
        "group": group,
        "data": [{"type": "property", "target": THERMOSTAT, "path": "targetTemperature",
                  "value": 42}]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The job's devices as `GET /jobs/{id}/devices` lists them, by id.
async fn listed(api: &Api, job: &str) -> std::collections::BTreeMap<String, Value> {
    api.list_all(&format!("/jobs/{job}/devices"))
        .await
        .0
        .into_iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d))
        .collect()
}

#[tokio::test]
async fn an_offline_device_is_retried_after_its_backoff_and_completes_when_it_is_back() {
    let (server, api) = server("10").await;
    let mut sim = simulated(&server, &api, "late-", &[]).await;
    sim.kill().await.unwrap();
    sim.wait().await.unwrap();
    group(&api, "late", "SELECT * FROM devices").await;
    let created = api
        .put(
            "/jobs/late",
            command_job(
                "late",
                json!({"offline": {"policy": "fail"},
                       "retry": {"attempts": 5, "backoffSeconds": 2, "factor": 1, "on": ["offline"]}}),
            ),
        )
        .await;
    let created = created.ok(200);
    assert_eq!(
        created["retry"],
        json!({"attempts": 5, "backoffSeconds": 2, "factor": 1, "maxBackoffSeconds": 3600, "on": ["offline"]})
    );
    assert_eq!(created["offline"], json!({"policy": "fail"}));

    // Its first try fails at once (it is away); it waits for its retry, pending, not counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let device = listed(&api, "late")
            .await
            .get("late-00000")
            .cloned()
            .unwrap_or_default();
        if device["status"] == "pending" && device["attempts"] == 1 {
            break device;
        }
        assert!(
            Instant::now() < deadline,
            "never waited for a retry: {device}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(waiting["reasonCode"], "offline", "{waiting}");
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap()
            .contains("offline policy fail"),
        "{waiting}"
    );
    let job = api.get("/jobs/late").await.ok(200).clone();
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(job["progress"]["failed"], 0, "{job}");

    let _back = simulated(&server, &api, "late-", &[]).await;
    let done = wait_job(&api, "late", &["complete"]).await;
    assert_eq!(done["progress"]["completed"], 1, "{done}");
    assert_eq!(done["progress"]["failed"], 0, "{done}");
    let device = listed(&api, "late").await["late-00000"].clone();
    assert_eq!(device["status"], "completed", "{device}");
    let attempts = device["attempts"].as_i64().unwrap();
    assert!((2..=6).contains(&attempts), "{device}");
    assert!(device.get("reasonCode").is_none(), "{device}");
}

#[tokio::test]
async fn a_refused_property_is_retried_until_its_attempts_are_spent_and_counts_once() {
    let (server, api) = server("10").await;
    let _refusing = simulated(&server, &api, "rej-", &["--fail-fraction", "1"]).await;
    group(&api, "refusing", "SELECT * FROM devices").await;
    let started = Instant::now();
    // A threshold of one failure: reached only by the final outcome, after every retry.
    api.put(
        "/jobs/refused",
        property_job(
            "refusing",
            json!({"cancellationThreshold": {"type": "number", "value": 1},
                   "retry": {"attempts": 2, "backoffSeconds": 1, "factor": 2, "on": ["rejected"]}}),
        ),
    )
    .await
    .ok(200);
    let done = wait_job(&api, "refused", &["cancelled", "complete"]).await;
    // Backoffs of 1 s, then 2 s.
    assert!(started.elapsed() >= Duration::from_secs(3), "{done}");
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["progress"]["failed"], 1, "{done}");
    let device = listed(&api, "refused").await["rej-00000"].clone();
    assert_eq!(device["status"], "failed", "{device}");
    assert_eq!(device["attempts"], 3, "{device}");
    assert_eq!(device["reasonCode"], "rejected", "{device}");

    // A command the device answered is never sent again, whatever `on` says.
    api.put(
        "/jobs/answered",
        command_job(
            "refusing",
            json!({"retry": {"attempts": 3, "backoffSeconds": 0, "on": ["rejected", "timedOut"]}}),
        ),
    )
    .await
    .ok(200);
    wait_job(&api, "answered", &["complete"]).await;
    let device = listed(&api, "answered").await["rej-00000"].clone();
    assert_eq!(
        (
            device["status"].clone(),
            device["attempts"].clone(),
            device["reasonCode"].clone()
        ),
        (json!("failed"), json!(1), json!("rejected")),
        "{device}"
    );
}

#[tokio::test]
async fn skipped_devices_count_neither_way_and_trip_no_threshold() {
    let (server, api) = server("30").await;
    let _on = simulated(&server, &api, "on-", &[]).await;
    create_devices(&api, vec!["away-0".into(), "away-1".into()], THERMOSTAT).await;
    group(&api, "mixed", "SELECT * FROM devices").await;
    let started = Instant::now();
    api.put(
        "/jobs/skipping",
        property_job(
            "mixed",
            json!({"cancellationThreshold": {"type": "number", "value": 1},
                   "offline": {"policy": "skip"}}),
        ),
    )
    .await
    .ok(200);
    let done = wait_job(&api, "skipping", &["complete", "cancelled"]).await;
    // The away devices were not waited for (the device timeout is 30 s).
    assert!(started.elapsed() < Duration::from_secs(20), "{done}");
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(
        done["progress"],
        json!({"total": 3, "pending": 0, "completed": 1, "failed": 0, "skipped": 2})
    );
    let devices = listed(&api, "skipping").await;
    assert_eq!(devices["on-00000"]["status"], "completed");
    for id in ["away-0", "away-1"] {
        assert_eq!(devices[id]["status"], "skipped", "{devices:?}");
        assert_eq!(devices[id]["reasonCode"], "skipped", "{devices:?}");
        assert!(
            devices[id].get("attempts").is_none(),
            "no retry: {devices:?}"
        );
    }
    let rows = exported(&api, "skipping").await;
    assert_eq!(rows["away-0"]["status"], "skipped");
    assert_eq!(rows["away-0"]["reasonCode"], "skipped");
    // The live events count them apart too.
    let response = api
        .request(reqwest::Method::GET, "/jobs/skipping/events")
        .send()
        .await
        .unwrap();
    let events = sse::SseStream::new(response)
        .until(|e| e.event == "end")
        .await;
    let progress = &events.iter().rfind(|e| e.event == "progress").unwrap().data;
    assert_eq!(
        (progress["pending"].clone(), progress["skipped"].clone()),
        (json!(0), json!(2)),
        "{progress}"
    );
    // Nothing failed, so there is nothing to rerun.
    api.put("/jobs/skipping/rerun/again", json!({}))
        .await
        .error(409, "Conflict");
}

#[tokio::test]
async fn offline_devices_fail_at_once_or_after_the_wait_the_policy_sets() {
    let (_server, api) = server("30").await;
    create_devices(&api, vec!["away-0".into()], THERMOSTAT).await;
    group(&api, "away", "SELECT * FROM devices").await;
    let started = Instant::now();
    api.put(
        "/jobs/failing",
        property_job("away", json!({"offline": {"policy": "fail"}})),
    )
    .await
    .ok(200);
    let done = wait_job(&api, "failing", &["complete"]).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{done}");
    assert_eq!(done["progress"]["failed"], 1, "{done}");
    let device = listed(&api, "failing").await["away-0"].clone();
    assert_eq!(device["reasonCode"], "offline", "{device}");
    assert!(device.get("attempts").is_none(), "{device}");

    let started = Instant::now();
    api.put(
        "/jobs/waiting",
        command_job(
            "away",
            json!({"offline": {"policy": "wait", "waitSeconds": 2}}),
        ),
    )
    .await
    .ok(200);
    wait_job(&api, "waiting", &["complete"]).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let device = listed(&api, "waiting").await["away-0"].clone();
    assert_eq!(device["reasonCode"], "offline", "{device}");
    assert!(
        device["reason"].as_str().unwrap().contains("within 2 s"),
        "{device}"
    );
}

#[tokio::test]
async fn a_device_that_connects_while_the_job_waits_for_it_completes_on_its_first_attempt() {
    let (server, api) = server("30").await;
    // Registered through DPS, then away.
    let mut sim = simulated(&server, &api, "back-", &[]).await;
    sim.kill().await.unwrap();
    sim.wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.get("/devices/back-00000/connection").await.ok(200)["connected"] != false {
        assert!(Instant::now() < deadline, "the server never saw it leave");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    group(&api, "back", "SELECT * FROM devices").await;
    let created = Instant::now();
    api.put(
        "/jobs/patient",
        command_job(
            "back",
            json!({"offline": {"policy": "wait", "waitSeconds": 10}}),
        ),
    )
    .await
    .ok(200);
    // Its operation starts while it is away, and waits for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // (No row until the job has fixed its devices.)
        let row = exported(&api, "patient")
            .await
            .get("back-00000")
            .cloned()
            .unwrap_or_default();
        if row["status"] == "running" {
            assert_eq!(row["attempts"], 1, "{row}");
            break;
        }
        assert!(row.is_null() || row["status"] == "pending", "{row}");
        assert!(Instant::now() < deadline, "never started: {row}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // About a second into the job (well inside its 10 s), the device comes back.
    tokio::time::sleep_until((created + Duration::from_secs(1)).into()).await;
    let _back = sim_command(&server, &api, 1, "back-")
        .await
        .args(["--duration", "120"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");

    let done = wait_job(&api, "patient", &["complete"]).await;
    assert_eq!(
        (
            done["progress"]["completed"].clone(),
            done["progress"]["failed"].clone()
        ),
        (json!(1), json!(0)),
        "{done}"
    );
    assert_eq!(
        done["offline"],
        json!({"policy": "wait", "waitSeconds": 10})
    );
    let device = listed(&api, "patient").await["back-00000"].clone();
    assert_eq!(device["status"], "completed", "{device}");
    assert_eq!(device["responseCode"], 200, "{device}");
    assert!(device.get("reasonCode").is_none(), "{device}");
    // Waiting is not retrying: one attempt (`attempts` is listed only on jobs with `retry`;
    // the export always has it).
    let row = exported(&api, "patient").await["back-00000"].clone();
    assert_eq!(
        (
            row["status"].clone(),
            row["attempts"].clone(),
            row["reasonCode"].clone()
        ),
        (json!("completed"), json!(1), Value::Null),
        "{row}"
    );
}

#[tokio::test]
async fn bad_retry_and_offline_fields_are_refused_by_name_and_store_nothing() {
    let (_server, api) = server("5").await;
    group(&api, "all", "SELECT * FROM devices").await;
    for (extra, field) in [
        (json!({"retry": {"attempts": 11}}), "retry.attempts"),
        (json!({"retry": {}}), "retry.attempts"),
        (
            json!({"retry": {"attempts": 1, "factor": 0}}),
            "retry.factor",
        ),
        (
            json!({"retry": {"attempts": 1, "on": ["deadline"]}}),
            "retry.on[0]",
        ),
        (
            json!({"retry": {"attempts": 1, "backoffSeconds": 9, "maxBackoffSeconds": 3}}),
            "retry.maxBackoffSeconds",
        ),
        (json!({"retry": 3}), "retry"),
        (json!({"offline": {"policy": "later"}}), "offline.policy"),
        (
            json!({"offline": {"policy": "skip", "waitSeconds": 3}}),
            "offline.waitSeconds",
        ),
        (
            json!({"offline": {"policy": "wait", "waitSeconds": 1.5}}),
            "offline.waitSeconds",
        ),
    ] {
        let message = api
            .put("/jobs/bad", command_job("all", extra.clone()))
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains(&format!("'{field}'")),
            "{extra}: {message}"
        );
        api.get("/jobs/bad").await.error(404, "NotFound");
    }
    // A job without them echoes neither.
    let plain = api.put("/jobs/plain", command_job("all", json!({}))).await;
    let plain = plain.ok(200);
    assert!(
        plain.get("retry").is_none() && plain.get("offline").is_none(),
        "{plain}"
    );

    // Scheduled jobs take them, refuse them by name, and echo them.
    let scheduled = |extra: Value| {
        let mut body = command_job("all", extra);
        body["displayName"] = json!("Nightly");
        body["schedule"] = json!({"start": "2099-01-01T00:00:00Z"});
        body
    };
    let message = api
        .put(
            "/scheduledJobs/nightly",
            scheduled(json!({"retry": {"attempts": -1}})),
        )
        .await
        .error(400, "BadRequest");
    assert!(message.contains("'retry.attempts'"), "{message}");
    let created = api
        .put(
            "/scheduledJobs/nightly",
            scheduled(json!({"retry": {"attempts": 1}, "offline": {"policy": "skip"}})),
        )
        .await;
    let created = created.ok(200);
    assert_eq!(created["retry"]["attempts"], 1, "{created}");
    assert_eq!(created["offline"], json!({"policy": "skip"}), "{created}");
}

#[tokio::test]
async fn a_scheduled_jobs_occurrence_carries_its_offline_policy_and_retry() {
    let clock = TestClock::at("2030-01-01T00:00:00Z");
    let server =
        Server::start_with_env(&[clock.env(), ("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "30")]).await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    create_devices(&api, vec!["away-0".into()], THERMOSTAT).await;
    group(&api, "away", "SELECT * FROM devices").await;
    let mut body = property_job(
        "away",
        json!({"offline": {"policy": "skip"}, "retry": {"attempts": 1}}),
    );
    body["displayName"] = json!("Once");
    body["schedule"] = json!({"start": "2030-01-01T01:00:00Z"});
    body["enabled"] = json!(true);
    api.put("/scheduledJobs/once", body).await.ok(200);
    clock.set("2030-01-01T01:00:01Z");
    let done = wait_job(&api, "once-1", &["complete"]).await;
    assert_eq!(done["offline"], json!({"policy": "skip"}), "{done}");
    assert_eq!(done["retry"]["attempts"], 1, "{done}");
    assert_eq!(done["progress"]["skipped"], 1, "{done}");
    let device = listed(&api, "once-1").await["away-0"].clone();
    assert_eq!(
        (
            device["status"].clone(),
            device["reasonCode"].clone(),
            device["attempts"].clone()
        ),
        (json!("skipped"), json!("skipped"), json!(1)),
        "{device}"
    );
    drop(server);
}
