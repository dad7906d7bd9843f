//! Live job events over Server-Sent Events, against the real server: a job's stream over
//! simulated devices to its end, resumed with `Last-Event-ID`, and every job's status changes.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sse::{SseEvent, SseStream};

const SIMULATED: usize = 5;
const OFFLINE: usize = 2;

/// Opens a stream on `path` (relative to `/api`), resuming after `last_event_id` if given.
async fn open(api: &Api, path: &str, last_event_id: Option<&str>) -> SseStream {
    let mut request = api.request(reqwest::Method::GET, path);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    SseStream::new(request.send().await.expect("the server answers"))
}

fn named<'a>(events: &'a [SseEvent], name: &str) -> Vec<&'a SseEvent> {
    events.iter().filter(|e| e.event == name).collect()
}

/// `SIMULATED` thermostats from `flotilla sim`, connected, and `OFFLINE` thermostats that never
/// connect, all in the group `fleet`.
async fn fleet(server: &Server, api: &Api) -> tokio::process::Child {
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    let sim = sim_command(server, api, SIMULATED, "sse-")
        .await
        .args(["--duration", "120"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..SIMULATED {
        loop {
            let run = api
                .post(
                    &format!("/devices/sse-{i:05}/commands/getMaxMinReport"),
                    json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 5}),
                )
                .await;
            if run.status.as_u16() == 201 {
                break;
            }
            assert!(Instant::now() < deadline, "sse-{i:05}: {}", run.text);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for i in 0..OFFLINE {
        api.put(
            &format!("/devices/away-{i}"),
            json!({"template": THERMOSTAT}),
        )
        .await
        .ok(200);
    }
    api.put(
        "/deviceGroups/fleet",
        json!({"displayName": "Fleet", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    sim
}

#[tokio::test]
async fn a_job_stream_follows_simulated_devices_to_the_end_and_resumes_after_an_event() {
    let server = Server::start_with_env(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "2")]).await;
    let api = server.admin();
    let mut sim = fleet(&server, &api).await;
    api.put(
        "/jobs/watched",
        json!({
            "group": "fleet",
            "batch": {"type": "number", "value": 3},
            "data": [{"type": "property", "target": THERMOSTAT, "path": "targetTemperature", "value": 42}]
        }),
    )
    .await
    .ok(200);
    let mut stream = open(&api, "/jobs/watched/events", None).await;
    let events = stream.until(|e| e.event == "end").await;
    assert!(stream.next().await.is_none(), "the stream closes after end");
    let total = SIMULATED + OFFLINE;

    // A snapshot first, then devices in finish order, the final status and counts, and the end.
    assert_eq!(events[0].event, "status", "{events:?}");
    assert_eq!(events[0].data["jobId"], "watched");
    assert_eq!(events[1].event, "progress", "{events:?}");
    let end = events.last().unwrap();
    assert_eq!(end.data, json!({"jobId": "watched", "status": "complete"}));
    let statuses: Vec<&Value> = named(&events, "status")
        .iter()
        .map(|e| &e.data["status"])
        .collect();
    assert_eq!(
        statuses.last().unwrap().as_str(),
        Some("complete"),
        "{statuses:?}"
    );
    let progress = named(&events, "progress");
    let last = &progress.last().unwrap().data;
    assert_eq!(last["total"], total);
    assert_eq!(last["completed"], SIMULATED);
    assert_eq!(last["failed"], OFFLINE);
    assert_eq!(
        (last["pending"].clone(), last["running"].clone()),
        (json!(0), json!(0))
    );
    let batches = last["batches"].as_array().unwrap();
    assert_eq!(batches.len(), total.div_ceil(3), "{last}");
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch["index"], i);
        let done = batch["completed"].as_i64().unwrap() + batch["failed"].as_i64().unwrap();
        assert_eq!(done, batch["total"].as_i64().unwrap(), "{batch}");
    }

    let devices = named(&events, "device");
    assert_eq!(devices.len(), total, "{events:?}");
    let ids: Vec<i64> = devices
        .iter()
        .map(|e| {
            e.id.as_deref()
                .expect("a device event has an id")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let names: BTreeSet<&str> = devices
        .iter()
        .map(|e| e.data["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), total);
    for device in &devices {
        let data = &device.data;
        assert_eq!(data["jobId"], "watched");
        assert_eq!(data["sequence"].to_string(), device.id.clone().unwrap());
        if data["deviceId"].as_str().unwrap().starts_with("away-") {
            assert_eq!(data["status"], "failed", "{data}");
            assert!(data["reasonCode"].is_string(), "{data}");
            assert!(data["reason"].is_string(), "{data}");
        } else {
            assert_eq!(data["status"], "completed", "{data}");
            assert!(
                data["reasonCode"].is_null() && data["reason"].is_null(),
                "{data}"
            );
        }
    }
    // Batches run in order: a device of a later batch never finishes before one of an earlier.
    let finish_batches: Vec<i64> = devices
        .iter()
        .map(|e| e.data["batch"].as_i64().unwrap())
        .collect();
    assert!(
        finish_batches.windows(2).all(|w| w[0] <= w[1]),
        "{finish_batches:?}"
    );

    // Resumed after the third device: a fresh snapshot, then only the devices after it.
    let resume_at = devices[2].id.clone().unwrap();
    let mut resumed = open(&api, "/jobs/watched/events", Some(&resume_at)).await;
    let again = resumed.until(|e| e.event == "end").await;
    assert_eq!(again[0].event, "status");
    assert_eq!(again[0].data["status"], "complete");
    assert_eq!(again[1].event, "progress");
    assert_eq!(again[1].data, last.clone());
    let later: Vec<(Option<String>, Value)> = named(&again, "device")
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect();
    let expected: Vec<(Option<String>, Value)> = devices[3..]
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect();
    assert_eq!(later, expected);
    assert_eq!(again.last().unwrap().event, "end");
    sim.kill().await.ok();
}

#[tokio::test]
async fn the_all_jobs_stream_starts_with_open_jobs_and_shows_status_changes() {
    let server = Server::start().await;
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let job = |name: &str| {
        json!({
            "displayName": name,
            "group": "all",
            "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": name}]
        })
    };
    // A job stopped before it ran stays open (stopped).
    api.put("/jobs/parked", job("parked")).await.ok(200);
    let parked = api.post("/jobs/parked/stop", json!({})).await;
    assert!(
        parked.status == 204 || parked.status == 409,
        "{}",
        parked.text
    );
    let parked_status = api.get("/jobs/parked").await.ok(200)["status"].clone();

    let mut stream = open(&api, "/events", None).await;
    api.put("/jobs/quick", job("quick")).await.ok(200);
    let events = stream
        .until(|e| e.data["jobId"] == "quick" && e.data["status"] == "complete")
        .await;
    assert!(events.iter().all(|e| e.event == "status"), "{events:?}");
    if parked_status != "complete" {
        assert_eq!(
            events[0].data,
            json!({"jobId": "parked", "status": parked_status})
        );
    }
    let quick: Vec<&str> = events
        .iter()
        .filter(|e| e.data["jobId"] == "quick")
        .map(|e| e.data["status"].as_str().unwrap())
        .collect();
    // In order, each once; a status held between two looks may be skipped.
    let order = ["pending", "running", "complete"];
    let positions: Vec<usize> = quick
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("a known status"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{quick:?}");
    assert_eq!(quick.last(), Some(&"complete"));
}

#[tokio::test]
async fn streams_refuse_as_the_rest_of_the_api_does() {
    let server = Server::start().await;
    let api = server.admin();
    api.get("/jobs/nope/events").await.error(404, "NotFound");
    api.with_token(None)
        .get("/jobs/nope/events")
        .await
        .error(401, "Unauthorized");
    api.with_token(None)
        .get("/events")
        .await
        .error(401, "Unauthorized");
    api.with_version(None)
        .get("/events")
        .await
        .error(404, "NotFound");
    one_controller_in_group_all(&api).await;
    api.put(
        "/jobs/j",
        json!({"group": "all", "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "x"}]}),
    )
    .await
    .ok(200);
    let bad = Api::send(
        api.request(reqwest::Method::GET, "/jobs/j/events")
            .header("Last-Event-ID", "yesterday"),
    )
    .await;
    bad.error(400, "BadRequest");
    // An operator reads jobs, so it may follow them.
    let operator = server.client(&api.create_token("op", OPERATOR).await);
    let mut stream = open(&operator, "/jobs/j/events", None).await;
    let events = stream.until(|e| e.event == "end").await;
    assert_eq!(events.last().unwrap().data["status"], "complete");
}
