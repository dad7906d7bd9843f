//! Issue 14's pace extensions against the real server, over HTTP: `rollout` (the start rate
//! with simulated devices, and the ramp's steps), `batchGate` (a gate that stops the job, a
//! resume that goes on, a soak), `deviceTimeoutSeconds` and `deadline` (devices failing with
//! the reason code `deadline`, the job ending), and `windows` in a `timeZone` (on a file clock,
//! across a daylight-saving change), and scheduled jobs' runs inheriting each of them. Bodies with
//! only IoT Central's fields are tests/jobs.rs'.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sse::SseStream;

/// A server whose default device timeout (300 s) is far longer than any test here.
async fn server(env: &[(&str, &str)]) -> (Server, Api) {
    let server = Server::start_with_env(env).await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    (server, api)
}

async fn controllers(api: &Api, prefix: &str, count: usize) {
    for i in 0..count {
        api.put(
            &format!("/devices/{prefix}{i:02}"),
            json!({"template": CONTROLLER}),
        )
        .await
        .ok(200);
    }
    api.put(
        &format!("/deviceGroups/{prefix}group"),
        json!({"displayName": prefix, "filter": format!("SELECT * FROM devices WHERE $template = \"{CONTROLLER}\"")}),
    )
    .await
    .ok(200);
}

fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// A property job on the controllers (offline here: they never acknowledge).
fn property_job(group: &str, extra: Value) -> Value {
    with(
        json!({"group": group, "data": [{"type": "property", "target": CONTROLLER,
               "path": "thermostat1.targetTemperature", "value": 55}]}),
        extra,
    )
}

/// A cloud-property job: each device completes as soon as it starts.
fn cloud_job(group: &str, extra: Value) -> Value {
    with(
        json!({"group": group, "data": [{"type": "cloudProperty", "target": CONTROLLER,
               "path": "customerName", "value": "Contoso"}]}),
        extra,
    )
}

async fn job_devices(api: &Api, job: &str) -> Vec<Value> {
    api.list_all(&format!("/jobs/{job}/devices")).await.0
}

/// Watches a job until it is `complete`: when each of its devices was first seen started (no
/// longer `pending`), polling every 20 ms, in seconds from the first.
async fn start_times(api: &Api, job: &str) -> Vec<f64> {
    let began = Instant::now();
    let mut seen: HashMap<String, f64> = HashMap::new();
    loop {
        let now = began.elapsed().as_secs_f64();
        for device in job_devices(api, job).await {
            if device["status"] != "pending" {
                seen.entry(device["id"].as_str().unwrap().to_string())
                    .or_insert(now);
            }
        }
        let status = api.get(&format!("/jobs/{job}")).await.ok(200)["status"].clone();
        if status == "complete" {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "{job} is {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times: Vec<f64> = seen.into_values().collect();
    times.sort_by(f64::total_cmp);
    let first = times[0];
    times.iter().map(|t| t - first).collect()
}

#[tokio::test]
async fn pace_extensions_are_echoed_when_set_and_refused_by_field() {
    let (_server, api) = server(&[]).await;
    controllers(&api, "e-", 1).await;
    let extensions = json!({
        "rollout": {"maxPerMinute": 600, "ramp": {"startPerMinute": 60, "factor": 1.5, "every": {"succeeded": 10}}},
        "batchGate": {"minSuccessPercentage": 90},
        "deviceTimeoutSeconds": 120,
        "deadline": "2099-12-24T18:00:00+01:00",
        "windows": [{"days": ["sat", "sun"], "start": "02:30", "durationMinutes": 90}],
        "timeZone": "Europe/Paris"
    });
    let created = api
        .put("/jobs/paced", cloud_job("e-group", extensions.clone()))
        .await;
    let created = created.ok(200).clone();
    for (field, value) in extensions.as_object().unwrap() {
        assert_eq!(&created[field], value, "{field} in {created}");
    }
    let read = api.get("/jobs/paced").await.ok(200).clone();
    for (field, value) in extensions.as_object().unwrap() {
        assert_eq!(&read[field], value, "{field} in {read}");
    }
    // A job with only IoT Central's fields carries none of them.
    let plain = api
        .put("/jobs/plain", cloud_job("e-group", json!({})))
        .await;
    let plain = plain.ok(200).clone();
    for field in extensions.as_object().unwrap().keys() {
        assert!(plain.get(field).is_none(), "{field} in {plain}");
    }
    // A scheduled job keeps them, for each run.
    let scheduled = api
        .put(
            "/scheduledJobs/nightly",
            with(
                cloud_job("e-group", extensions.clone()),
                json!({"displayName": "Nightly", "schedule": {"start": "2099-01-01T00:00:00Z", "recurrence": "daily"}}),
            ),
        )
        .await;
    let scheduled = scheduled.ok(200).clone();
    for (field, value) in extensions.as_object().unwrap() {
        assert_eq!(&scheduled[field], value, "{field} in {scheduled}");
    }

    // The OpenAPI document describes each.
    let doc = api.get("/openapi.json").await.ok(200).clone();
    let schemas = &doc["components"]["schemas"];
    let definition = &schemas["JobDefinition"]["properties"];
    for field in extensions.as_object().unwrap().keys() {
        assert!(definition.get(field).is_some(), "{field} in {definition}");
    }
    for schema in ["JobRollout", "JobRamp", "JobBatchGate", "JobWindow"] {
        assert!(schemas.get(schema).is_some(), "{schema}");
    }

    let refused = [
        (
            json!({"rollout": {"maxPerMinute": 0}}),
            "rollout.maxPerMinute",
        ),
        (
            json!({"rollout": {"maxPerMinute": 10, "ramp": {"startPerMinute": 5, "factor": 9, "every": {"succeeded": 1}}}}),
            "rollout.ramp.factor",
        ),
        (
            json!({"rollout": {"maxPerMinute": 10, "ramp": {"startPerMinute": 50, "factor": 2, "every": {"succeeded": 1}}}}),
            "rollout.ramp.startPerMinute",
        ),
        (
            json!({"batchGate": {"minSuccessPercentage": 120}}),
            "batchGate.minSuccessPercentage",
        ),
        (
            json!({"batchGate": {"soakSeconds": 1.5}}),
            "batchGate.soakSeconds",
        ),
        (json!({"deviceTimeoutSeconds": 0}), "deviceTimeoutSeconds"),
        (json!({"deadline": "soon"}), "deadline"),
        (
            json!({"windows": [{"days": ["mon"], "start": "25:00", "durationMinutes": 5}]}),
            "windows[0].start",
        ),
        (
            json!({"windows": [{"days": ["mon"], "start": "01:00", "durationMinutes": 5}], "timeZone": "Nowhere/Town"}),
            "timeZone",
        ),
    ];
    for (i, (extra, field)) in refused.into_iter().enumerate() {
        let id = format!("bad-{i}");
        let message = api
            .put(&format!("/jobs/{id}"), cloud_job("e-group", extra))
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains(&format!("'{field}'")),
            "{field}: {message}"
        );
        api.get(&format!("/jobs/{id}")).await.error(404, "NotFound");
    }
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused_by_field_and_stores_nothing() {
    let (_server, api) = server(&[]).await;
    controllers(&api, "tz-", 1).await;
    let windows = json!([{"days": ["mon"], "start": "01:00", "durationMinutes": 5}]);
    let scheduled = |schedule_zone: Value, job_zone: Value| {
        let mut schedule = json!({"start": "2099-01-01T00:00:00Z", "recurrence": "daily"});
        let mut body = cloud_job("tz-group", json!({"displayName": "Nightly"}));
        if !schedule_zone.is_null() {
            schedule["timeZone"] = schedule_zone;
        }
        if !job_zone.is_null() {
            body["windows"] = windows.clone();
            body["timeZone"] = job_zone;
        }
        body["schedule"] = schedule;
        body
    };
    for zone in [json!("Mars/Olympus"), json!(42), json!("")] {
        let message = api
            .put(
                "/jobs/mars",
                cloud_job("tz-group", json!({"windows": windows, "timeZone": zone})),
            )
            .await
            .error(400, "BadRequest");
        assert!(message.contains("'timeZone'"), "{zone}: {message}");
        api.get("/jobs/mars").await.error(404, "NotFound");

        for (body, field) in [
            (scheduled(zone.clone(), Value::Null), "schedule.timeZone"),
            (scheduled(Value::Null, zone.clone()), "timeZone"),
        ] {
            let message = api
                .put("/scheduledJobs/mars", body.clone())
                .await
                .error(400, "BadRequest");
            assert!(message.contains(&format!("'{field}'")), "{body}: {message}");
            api.get("/scheduledJobs/mars").await.error(404, "NotFound");
        }
    }
    assert_eq!(api.list_all("/jobs").await.0.len(), 0);
    assert_eq!(api.list_all("/scheduledJobs").await.0.len(), 0);

    // A patch that names an unknown zone changes nothing either.
    let created = api
        .put(
            "/scheduledJobs/earth",
            scheduled(json!("Europe/Paris"), json!("Europe/Paris")),
        )
        .await;
    let created = created.ok(200).clone();
    for (patch, field) in [
        (
            json!({"schedule": {"timeZone": "Mars/Olympus"}}),
            "schedule.timeZone",
        ),
        (json!({"timeZone": "Mars/Olympus"}), "timeZone"),
    ] {
        let message = api
            .patch("/scheduledJobs/earth", patch.clone())
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains(&format!("'{field}'")),
            "{patch}: {message}"
        );
        assert_eq!(api.get("/scheduledJobs/earth").await.ok(200), &created);
    }
}

#[tokio::test]
async fn the_device_timeout_overrides_the_servers_default() {
    let (_server, api) = server(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "300")]).await;
    controllers(&api, "t-", 2).await;
    let began = Instant::now();
    api.put(
        "/jobs/quick",
        property_job("t-group", json!({"deviceTimeoutSeconds": 1})),
    )
    .await
    .ok(200);
    let done = wait_for(&api, "quick", &["complete"]).await;
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "not the 300 s default"
    );
    assert_eq!(done["progress"]["failed"], 2, "{done}");
    for device in job_devices(&api, "quick").await {
        let reason = device["reason"].as_str().unwrap();
        assert!(reason.contains("within 1 s"), "{reason}");
    }
}

#[tokio::test]
async fn devices_not_finished_by_the_deadline_fail_with_deadline_and_the_job_ends() {
    let (_server, api) = server(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "300")]).await;
    controllers(&api, "d-", 5).await;
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let began = Instant::now();
    api.put(
        "/jobs/late",
        property_job(
            "d-group",
            json!({"batch": {"type": "number", "value": 2}, "deadline": deadline.to_string()}),
        ),
    )
    .await
    .ok(200);
    let mut stream = SseStream::new(
        api.request(reqwest::Method::GET, "/jobs/late/events")
            .send()
            .await
            .unwrap(),
    );
    let events = stream.until(|e| e.event == "end").await;
    assert!(
        began.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        began.elapsed()
    );
    let job = api.get("/jobs/late").await.ok(200).clone();
    assert_eq!(job["status"], "failed", "{job}");
    let reason = job["reason"].as_str().unwrap();
    assert!(reason.contains("deadline"), "{reason}");
    assert_eq!(job["progress"]["failed"], 5, "{job}");
    // The batch in flight and the batches never started alike.
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "device")
        .map(|e| &e.data)
        .collect();
    assert_eq!(finished.len(), 5, "{events:?}");
    for device in finished {
        assert_eq!(device["status"], "failed", "{device}");
        assert_eq!(device["reasonCode"], "deadline", "{device}");
    }
    for device in job_devices(&api, "late").await {
        let reason = device["reason"].as_str().unwrap();
        assert!(reason.contains("deadline"), "{reason}");
        assert_eq!(device["reasonCode"], "deadline", "{device}");
    }
}

#[tokio::test]
async fn the_start_rate_follows_max_per_minute_with_simulated_devices() {
    const DEVICES: usize = 100;
    let (server, api) = server(&[]).await;
    let _sim = sim_command(&server, &api, DEVICES, "pace-")
        .await
        .args(["--duration", "120"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");
    // Every device registered (through DPS), so the group holds them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.list_all("/devices").await.0.len() < DEVICES {
        assert!(
            Instant::now() < deadline,
            "the simulated devices did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.put(
        "/deviceGroups/fleet",
        json!({"displayName": "Fleet", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    let body = json!({"group": "fleet", "rollout": {"maxPerMinute": 600}, "deviceTimeoutSeconds": 60,
           "data": [{"type": "property", "target": THERMOSTAT, "path": "targetTemperature", "value": 21}]});
    // The dry-run plan's estimate counts the pace (asked once every device is connected: an
    // offline one would add its timeout).
    let deadline = Instant::now() + Duration::from_secs(60);
    let estimate = loop {
        let plan = api
            .post("/jobs/paced/plan", body.clone())
            .await
            .ok(200)
            .clone();
        if plan["offline"] == 0 {
            break plan["estimatedSeconds"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "devices still offline: {plan}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let began = Instant::now();
    api.put("/jobs/paced", body).await.ok(200);
    let starts = start_times(&api, "paced").await;
    let wall = began.elapsed().as_secs_f64();
    eprintln!("pacing: the plan estimated {estimate:.1} s; the job took {wall:.1} s");
    assert!(
        (estimate - wall).abs() <= 0.2 * wall,
        "estimated {estimate} s, took {wall:.1} s"
    );
    assert_eq!(starts.len(), DEVICES);
    let span = starts[DEVICES - 1];
    let rate = (DEVICES - 1) as f64 / span * 60.0;
    eprintln!("pacing: {DEVICES} starts over {span:.2} s: {rate:.0} a minute (maxPerMinute 600)");
    assert!(
        (rate - 600.0).abs() <= 60.0,
        "{rate:.0} starts a minute over {span:.1} s: {starts:?}"
    );
    let job = api.get("/jobs/paced").await.ok(200).clone();
    assert_eq!(job["progress"]["completed"], DEVICES as u64, "{job}");
}

#[tokio::test]
async fn the_ramp_steps_up_the_rate_as_devices_succeed() {
    let (_server, api) = server(&[]).await;
    controllers(&api, "r-", 24).await;
    api.put(
        "/jobs/ramped",
        cloud_job(
            "r-group",
            json!({"rollout": {"maxPerMinute": 960,
                   "ramp": {"startPerMinute": 120, "factor": 2, "every": {"succeeded": 6}}}}),
        ),
    )
    .await
    .ok(200);
    let starts = start_times(&api, "ramped").await;
    assert_eq!(starts.len(), 24);
    // Six devices at each step: 120 a minute (0.5 s apart: 3 s), then 240 (1.5 s), 480
    // (0.75 s): each step about half the one before.
    let step = |k: usize| starts[6 * (k + 1)] - starts[6 * k];
    let (first, second, third) = (step(0), step(1), step(2));
    eprintln!("ramp: steps of {first:.2}, {second:.2}, {third:.2} s (ideal 3, 1.5, 0.75)");
    assert!((2.4..=3.6).contains(&first), "{first:.2} s: {starts:?}");
    assert!(
        (1.4..=2.9).contains(&(first / second)) && (1.3..=3.0).contains(&(second / third)),
        "steps of {first:.2}, {second:.2}, {third:.2} s: {starts:?}"
    );
}

#[tokio::test]
async fn a_batch_gate_not_met_stops_the_job_and_a_resume_goes_on() {
    let (_server, api) = server(&[]).await;
    controllers(&api, "g-", 4).await;
    api.put(
        "/jobs/gated",
        property_job(
            "g-group",
            json!({"batch": {"type": "number", "value": 2}, "deviceTimeoutSeconds": 1,
                   "batchGate": {"minSuccessPercentage": 50}}),
        ),
    )
    .await
    .ok(200);
    let stopped = wait_for(&api, "gated", &["stopped", "complete"]).await;
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    let reason = stopped["reason"].as_str().unwrap();
    assert!(
        reason.contains("batch gate") && reason.contains("0 of batch 1's 2 devices succeeded"),
        "{reason}"
    );
    let statuses: Vec<Value> = job_devices(&api, "gated")
        .await
        .iter()
        .map(|d| d["status"].clone())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "pending", "pending"]);
    // It stays stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.get("/jobs/gated").await.ok(200)["status"], "stopped");

    api.post("/jobs/gated/resume", json!({})).await.ok(204);
    let done = wait_for(&api, "gated", &["complete"]).await;
    assert_eq!(done["progress"]["failed"], 4, "{done}");
    assert!(done.get("reason").is_none(), "{done}");
}

#[tokio::test]
async fn the_next_batch_waits_for_the_soak() {
    let (_server, api) = server(&[]).await;
    controllers(&api, "s-", 4).await;
    let began = Instant::now();
    api.put(
        "/jobs/soaked",
        cloud_job(
            "s-group",
            json!({"batch": {"type": "number", "value": 2},
                   "batchGate": {"minSuccessPercentage": 100, "soakSeconds": 2}}),
        ),
    )
    .await
    .ok(200);
    // The first batch completes at once; the second waits out the soak.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses: Vec<Value> = job_devices(&api, "soaked")
            .await
            .iter()
            .map(|d| d["status"].clone())
            .collect();
        if statuses.len() == 4 && statuses[0] == "completed" && statuses[1] == "completed" {
            assert_eq!(statuses[2], "pending", "{statuses:?}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&api, "soaked", &["complete"]).await;
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// The time the server's scheduler and maintenance windows go by: a file the test rewrites
/// (atomically: a sibling, then a rename).
#[tokio::test]
async fn outside_its_windows_a_job_waits_and_says_so_across_a_daylight_saving_change() {
    // Sunday 2026-03-29, 03:15 in Paris: the clocks skipped 02:00-03:00 tonight, so the window
    // that opens at 02:30 local opens at 03:30 (01:30Z).
    let clock = TestClock::at("2026-03-29T01:15:00Z");
    let (_server, api) = server(&[clock.env()]).await;
    controllers(&api, "w-", 3).await;
    api.put(
        "/jobs/windowed",
        cloud_job(
            "w-group",
            json!({"windows": [{"days": ["sun"], "start": "02:30", "durationMinutes": 60}],
                   "timeZone": "Europe/Paris"}),
        ),
    )
    .await
    .ok(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let job = api.get("/jobs/windowed").await.ok(200).clone();
        if job["reason"].is_string() {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(waiting["status"], "running", "{waiting}");
    assert_eq!(
        waiting["reason"],
        "waiting: outside its maintenance windows until 2026-03-29T01:30:00Z"
    );
    // Nothing starts while it waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let devices = job_devices(&api, "windowed").await;
    assert!(
        devices.iter().all(|d| d["status"] == "pending"),
        "{devices:?}"
    );

    clock.set("2026-03-29T01:31:00Z");
    let done = wait_for(&api, "windowed", &["complete"]).await;
    assert_eq!(done["progress"]["completed"], 3, "{done}");
    assert!(done.get("reason").is_none(), "{done}");
}

#[tokio::test]
async fn a_schedule_in_a_time_zone_recurs_at_its_local_time_across_daylight_saving() {
    let clock = TestClock::at("2026-03-28T01:00:00Z");
    let (_server, api) = server(&[clock.env()]).await;
    controllers(&api, "z-", 1).await;
    let schedule = json!({"start": "2026-03-28T02:30:00+01:00", "recurrence": "daily",
                          "timeZone": "Europe/Paris"});
    let created = api
        .put(
            "/scheduledJobs/nightly",
            with(
                cloud_job(
                    "z-group",
                    json!({"rollout": {"maxPerMinute": 60}, "deviceTimeoutSeconds": 30}),
                ),
                json!({"displayName": "Nightly", "enabled": true, "schedule": schedule}),
            ),
        )
        .await;
    assert_eq!(created.ok(200)["schedule"], schedule);
    let runs = |expected: usize| {
        let api = api.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let jobs = api.list_all("/scheduledJobs/nightly/jobs").await.0;
                if jobs.len() >= expected {
                    assert_eq!(jobs.len(), expected, "{jobs:?}");
                    return jobs;
                }
                assert!(Instant::now() < deadline, "{expected} runs: {jobs:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // 02:30 in Paris, winter time: 01:30Z. Each run inherits the extensions.
    clock.set("2026-03-28T01:30:00Z");
    let first = runs(1).await;
    assert_eq!(
        first[0]["rollout"],
        json!({"maxPerMinute": 60}),
        "{first:?}"
    );
    assert_eq!(first[0]["deviceTimeoutSeconds"], 30, "{first:?}");
    // Tonight 02:30 does not exist: the run is at 03:30 summer time, 01:30Z again.
    clock.set("2026-03-29T01:29:00Z");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    runs(1).await;
    clock.set("2026-03-29T01:30:00Z");
    runs(2).await;
    // From now on 02:30 summer time is 00:30Z (in UTC terms the schedule would wait until 01:30Z).
    clock.set("2026-03-30T00:30:00Z");
    runs(3).await;
}

#[tokio::test]
async fn a_scheduled_run_inherits_its_window_gate_and_deadline_and_each_takes_effect() {
    // Saturday 2030-01-05, 07:00 in New York (12:00Z): the window opens at 09:00 there, 14:00Z
    // (read as UTC, it would have closed at 10:00Z, and the run would wait a week).
    let clock = TestClock::at("2030-01-05T12:00:00Z");
    let (_server, api) = server(&[clock.env()]).await;
    controllers(&api, "sg-", 4).await;
    // The deadline goes by the system clock: far enough off for the window and the gate to
    // act first.
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20);
    let extensions = json!({
        "deviceTimeoutSeconds": 1,
        "batchGate": {"minSuccessPercentage": 50},
        "deadline": deadline.to_string(),
        "windows": [{"days": ["sat"], "start": "09:00", "durationMinutes": 60}],
        "timeZone": "America/New_York"
    });
    let body = with(
        property_job("sg-group", extensions.clone()),
        json!({"displayName": "Gated", "enabled": true, "batch": {"type": "number", "value": 2},
               "schedule": {"start": "2030-01-05T12:00:00Z"}}),
    );
    api.put("/scheduledJobs/gated", body).await.ok(200);

    // The run carries each extension, and waits outside its window, saying until when.
    let until = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let run = api.get("/jobs/gated-1").await;
        if run.status == 200 && run.body["reason"].is_string() {
            break run.body;
        }
        assert!(Instant::now() < until, "{}", run.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(waiting["scheduledJobId"], "gated", "{waiting}");
    for (field, value) in extensions.as_object().unwrap() {
        assert_eq!(&waiting[field], value, "{field} in {waiting}");
    }
    assert_eq!(waiting["status"], "running", "{waiting}");
    assert_eq!(
        waiting["reason"],
        "waiting: outside its maintenance windows until 2030-01-05T14:00:00Z"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let devices = job_devices(&api, "gated-1").await;
    assert_eq!(devices.len(), 4, "{devices:?}");
    assert!(
        devices.iter().all(|d| d["status"] == "pending"),
        "nothing starts outside the window: {devices:?}"
    );

    // In the window: the first batch starts; its devices (offline) fail after 1 s, so the gate
    // is not met and the run stops before the second batch.
    clock.set("2030-01-05T14:00:30Z");
    let stopped = wait_for(&api, "gated-1", &["stopped", "complete", "failed"]).await;
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    let reason = stopped["reason"].as_str().unwrap();
    assert!(
        reason.contains("batch gate") && reason.contains("0 of batch 1's 2 devices succeeded"),
        "{reason}"
    );
    let statuses: Vec<Value> = job_devices(&api, "gated-1")
        .await
        .iter()
        .map(|d| d["status"].clone())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "pending", "pending"]);

    // Resumed after its deadline, it ends at once: the devices left fail with `deadline`.
    let left = deadline.duration_since(jiff::Timestamp::now());
    if left.is_positive() {
        tokio::time::sleep(Duration::try_from(left).unwrap() + Duration::from_millis(200)).await;
    }
    api.post("/jobs/gated-1/resume", json!({})).await.ok(204);
    let ended = wait_for(&api, "gated-1", &["failed", "complete"]).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert!(
        ended["reason"].as_str().unwrap().contains("deadline"),
        "{ended}"
    );
    let devices = job_devices(&api, "gated-1").await;
    for device in &devices[2..] {
        assert_eq!(device["status"], "failed", "{device}");
        assert_eq!(device["reasonCode"], "deadline", "{device}");
    }
}
