//! Scheduled jobs over HTTP, end to end. The server runs with `FLOTILLA_CLOCK_FILE`: its
//! scheduler (and the API, where it computes "now") read the time from a file that these tests
//! rewrite, so schedules days or months apart run without waiting for them.
//!
//! To know that the scheduler has seen the current time, a test `settle`s: it creates a one-time
//! "probe" schedule at the current time, whose id sorts after every other schedule, and waits for
//! its job. The scheduler reads the time once per pass and goes through the schedules in id order,
//! so once the probe's job exists, every other schedule has been looked at with a time at least
//! the current one, and anything that was due has been written. Negative checks ("nothing ran")
//! therefore need no sleeping, and never depend on timing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use jiff::{Timestamp, ToSpan};
use reqwest::Method;
use serde_json::{Value, json};

/// How long anything may take before a test gives up.
const DEADLINE: Duration = Duration::from_secs(30);

/// The article's template and device group.
const ARTICLE_TEMPLATE: &str = "dtmi:azurertos:devkit:hlby5jgib2o";
const ARTICLE_GROUP: &str = "6fecf96f-a26c-49ed-8076-6960f8efba31";

/// The time the server goes by: a file outside the data dir, rewritten atomically (write a
/// sibling, then rename) so that the server never reads a half-written file (it would fall back
/// to the system clock).
struct TestClock {
    path: PathBuf,
    now: Mutex<Timestamp>,
}

impl TestClock {
    fn new(start: &str) -> TestClock {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "flotilla-clock-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let clock = TestClock {
            path,
            now: Mutex::new(Timestamp::UNIX_EPOCH),
        };
        clock.set(start);
        clock
    }

    fn set(&self, at: &str) {
        self.set_to(at.parse().expect("an RFC 3339 time"));
    }

    fn set_to(&self, at: Timestamp) {
        let sibling = self.path.with_extension("next");
        std::fs::write(&sibling, format!("{at}\n")).unwrap();
        std::fs::rename(&sibling, &self.path).unwrap();
        *self.now.lock().unwrap() = at;
    }

    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }

    fn advance_days(&self, days: i64) {
        self.set_to(self.now() + (days * 24).hours());
    }
}

impl Drop for TestClock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("next"));
    }
}

/// A server on a file clock, with the temperature controller template, one device of it
/// (`dev-1`), a group of every device (`all`) and a group of none (`nobody`, for probes).
struct Env {
    server: Server,
    clock: TestClock,
    probes: AtomicUsize,
}

impl Env {
    async fn start(at: &str) -> Env {
        let clock = TestClock::new(at);
        let server =
            Server::start_with_env(&[("FLOTILLA_CLOCK_FILE", clock.path.to_str().unwrap())]).await;
        let env = Env {
            server,
            clock,
            probes: AtomicUsize::new(0),
        };
        let api = env.api();
        one_controller_in_group_all(&api).await;
        api.put(
            "/deviceGroups/nobody",
            json!({"displayName": "Nobody", "filter": "SELECT * FROM devices WHERE $id = \"nobody\""}),
        )
        .await
        .ok(200);
        env
    }

    /// The admin client (a new one after a restart: the port changes).
    fn api(&self) -> Api {
        self.server.admin()
    }

    /// Returns once the scheduler has looked at every schedule with the current time (see the
    /// module's doc).
    async fn settle(&self) {
        let api = self.api();
        let n = self.probes.fetch_add(1, Ordering::SeqCst);
        let id = format!("zz-probe-{n:04}");
        let now = self.clock.now().to_string();
        let created = api
            .put(
                &format!("/scheduledJobs/{id}"),
                json!({"displayName": "Probe", "group": "nobody", "enabled": true,
                       "data": [cloud_property("probe")],
                       "schedule": {"start": now}}),
            )
            .await;
        created.ok(200);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if api.get(&format!("/jobs/{id}-1")).await.status == 200 {
                // Out of the way of the tests' lists of scheduled jobs (its job stays).
                api.delete(&format!("/scheduledJobs/{id}")).await.ok(204);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the probe schedule {id} at {now} never ran: the scheduler is not running schedules"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn cloud_property(value: &str) -> Value {
    json!({"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": value})
}

/// A scheduled job on group `all` that sets the device's customer name to `name`.
fn scheduled(name: &str, schedule: Value, enabled: bool) -> Value {
    json!({
        "displayName": name,
        "group": "all",
        "data": [cloud_property(name)],
        "schedule": schedule,
        "enabled": enabled,
    })
}

async fn create(api: &Api, id: &str, body: Value) -> Value {
    api.put(&format!("/scheduledJobs/{id}"), body)
        .await
        .ok(200)
        .clone()
}

async fn get_scheduled(api: &Api, id: &str) -> Value {
    api.get(&format!("/scheduledJobs/{id}"))
        .await
        .ok(200)
        .clone()
}

/// The jobs a scheduled job's occurrences created, as listed (newest first).
async fn runs(api: &Api, id: &str) -> Vec<Value> {
    api.list_all(&format!("/scheduledJobs/{id}/jobs")).await.0
}

async fn run_ids(api: &Api, id: &str) -> Vec<String> {
    runs(api, id)
        .await
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

fn ids(schedule: &str, numbers: &[u32]) -> Vec<String> {
    numbers.iter().map(|n| format!("{schedule}-{n}")).collect()
}

/// The number an occurrence's job carries in its id (`{schedule}-{n}`).
fn number_of(schedule: &str, job: &Value) -> u32 {
    let id = job["id"].as_str().unwrap();
    id.strip_prefix(&format!("{schedule}-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("job id {id} is not {schedule}-<n>"))
}

/// A PATCH with the given content type and, optionally, an If-Match header.
async fn patch_as(
    api: &Api,
    path: &str,
    content_type: &str,
    if_match: Option<&str>,
    body: &Value,
) -> Resp {
    let mut request = api
        .request(Method::PATCH, path)
        .header("Content-Type", content_type)
        .body(body.to_string());
    if let Some(etag) = if_match {
        request = request.header("If-Match", etag);
    }
    Api::send(request).await
}

/// Asserts that a JSON value is a date-time string at the same instant as `want`.
#[track_caller]
fn assert_same_instant(got: &Value, want: &str) {
    let parsed: Option<Timestamp> = got.as_str().and_then(|s| s.parse().ok());
    assert_eq!(
        parsed,
        Some(want.parse().unwrap()),
        "{got} is not the time {want}"
    );
}

/// The process id of a test server (found by its unique data dir on its command line).
fn server_pid(server: &Server) -> u32 {
    let dir = server.data_dir().to_str().unwrap().as_bytes().to_vec();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&dir.as_slice()) && args.contains(&b"serve".as_slice()) {
            return pid;
        }
    }
    panic!("no flotilla process with data dir {dir:?}");
}

/// Freezes the server (SIGSTOP), so that the time can move on while it is "down" without it
/// seeing the new time; `restart` then kills it (SIGKILL) and starts a new one.
fn freeze(server: &Server) {
    let pid = server_pid(server);
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -STOP {pid}");
}

/// 1. The article's requests, verbatim, in order: create, get, list, the weekly update, delete.
#[tokio::test]
async fn the_articles_scheduled_job_requests_work_as_printed() {
    // The article's schedule starts on 2022-10-24; the clock is a few days before it.
    let env = Env::start("2022-10-20T00:00:00Z").await;
    let api = env.api();
    api.publish_template(
        ARTICLE_TEMPLATE,
        json!({
            "@type": ["ModelDefinition", "DeviceModel"],
            "displayName": "MXChip devkit",
            "capabilityModel": {
                "@id": "dtmi:azurertos:devkit:hlby5jgib2o:model;1",
                "@type": "Interface",
                "contents": [{"@type": ["Property", "Cloud", "StringValue"],
                              "name": "Company", "schema": "string"}]
            }
        }),
    )
    .await;
    api.put(
        &format!("/deviceGroups/{ARTICLE_GROUP}"),
        json!({"displayName": "Devkits", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    api.put("/devices/devkit-1", json!({"template": ARTICLE_TEMPLATE}))
        .await
        .ok(200);

    let path = "/scheduledJobs/scheduled-Job-001";
    let request: Value = serde_json::from_str(
        r#"{
            "displayName": "New Scheduled Job",
            "group": "6fecf96f-a26c-49ed-8076-6960f8efba31",
            "data": [
                {
                    "type": "cloudProperty",
                    "target": "dtmi:azurertos:devkit:hlby5jgib2o",
                    "path": "Company",
                    "value": "Contoso"
                }
            ],
            "schedule": {
                "start": "2022-10-24T22:29:01Z",
                "recurrence": "daily",
                "end": {
                    "type": "date",
                    "date": "2022-12-30"
                }
            }
        }"#,
    )
    .unwrap();
    // What the article prints, as far as it is deterministic; differences are collected and
    // reported together at the end, so that one run shows all of them.
    let mut deviations: Vec<String> = Vec::new();
    let mut expect = |what: &str, got: &Value, want: Value| {
        if *got != want {
            deviations.push(format!("{what}: got {got}, the article prints {want}"));
        }
    };
    let created = api.put(path, request.clone()).await.ok(200).clone();
    expect("PUT id", &created["id"], json!("scheduled-Job-001"));
    expect(
        "PUT displayName",
        &created["displayName"],
        json!("New Scheduled Job"),
    );
    expect("PUT description", &created["description"], json!(""));
    expect("PUT group", &created["group"], json!(ARTICLE_GROUP));
    expect("PUT data", &created["data"], request["data"].clone());
    expect(
        "PUT schedule",
        &created["schedule"],
        request["schedule"].clone(),
    );
    expect("PUT enabled", &created["enabled"], json!(false));
    expect("PUT completed", &created["completed"], json!(false));
    let etag = created["etag"].as_str().expect("an etag").to_string();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "quoted like IoT Central's: {etag}"
    );
    // The article's create echoes what was sent; the shape is the spec's.
    assert_eq!(created["enabled"], false, "created disabled unless told");
    assert_eq!(created["completed"], false);
    assert_eq!(created["data"], request["data"]);
    assert_eq!(
        created["schedule"]["end"],
        json!({"type": "date", "date": "2022-12-30"})
    );
    assert_eq!(created["schedule"]["recurrence"], "daily");
    assert_same_instant(&created["schedule"]["start"], "2022-10-24T22:29:01Z");

    let got = api.get(path).await.ok(200).clone();
    assert_eq!(got, created, "GET answers what PUT answered");
    expect(
        "GET schedule.start",
        &got["schedule"]["start"],
        json!("2022-10-24T22:29:01Z"),
    );

    let (listed, _) = api.list_all("/scheduledJobs").await;
    assert_eq!(listed, vec![created.clone()]);

    // A disabled schedule does not run, even once its start has passed.
    env.clock.set("2022-10-26T00:00:00Z");
    env.settle().await;
    assert_eq!(
        run_ids(&api, "scheduled-Job-001").await,
        Vec::<String>::new()
    );

    // The article's update, exactly as printed.
    let patch: Value = serde_json::from_str(
        r#"{
  "schedule": {
    "start": "2022-10-24T22:29:01Z",
    "recurrence": "weekly"
  }
}"#,
    )
    .unwrap();
    let updated = api.patch(path, patch).await.ok(200).clone();
    expect("PATCH id", &updated["id"], json!("scheduled-Job-001"));
    expect(
        "PATCH displayName",
        &updated["displayName"],
        json!("New Scheduled Job"),
    );
    expect("PATCH description", &updated["description"], json!(""));
    expect("PATCH group", &updated["group"], json!(ARTICLE_GROUP));
    expect("PATCH data", &updated["data"], request["data"].clone());
    expect(
        "PATCH schedule.start",
        &updated["schedule"]["start"],
        json!("2022-10-24T22:29:01Z"),
    );
    expect(
        "PATCH schedule.recurrence",
        &updated["schedule"]["recurrence"],
        json!("weekly"),
    );
    expect("PATCH enabled", &updated["enabled"], json!(false));
    expect("PATCH completed", &updated["completed"], json!(false));
    assert_eq!(updated["schedule"]["recurrence"], "weekly");
    assert_same_instant(&updated["schedule"]["start"], "2022-10-24T22:29:01Z");
    // A JSON merge patch (RFC 7386) merges nested objects: the end date stays. (The article's
    // answer shows no end, but its GET answer, before any update, shows none either: its
    // examples do not come from one job.)
    assert_eq!(
        updated["schedule"]["end"],
        json!({"type": "date", "date": "2022-12-30"})
    );
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["completed"], false);
    let new_etag = updated["etag"].as_str().expect("an etag");
    assert_ne!(new_etag, etag, "a change gives a new etag");
    assert_eq!(api.get(path).await.ok(200), &updated);

    // The article prints GET for the delete; the route is DELETE.
    api.delete(path).await.ok(204);
    api.get(path).await.error(404, "NotFound");
    assert_eq!(api.list_all("/scheduledJobs").await.0, Vec::<Value>::new());

    assert!(
        deviations.is_empty(),
        "the answers differ from the article's:\n{}",
        deviations.join("\n")
    );
}

/// 2. A one-time schedule runs once, at its time, and then is completed.
#[tokio::test]
async fn a_one_time_schedule_runs_once_at_its_time() {
    let env = Env::start("2030-01-01T00:00:00Z").await;
    let api = env.api();
    let created = create(
        &api,
        "once",
        scheduled("One time", json!({"start": "2030-01-01T12:00:00Z"}), true),
    )
    .await;
    assert_eq!(created["enabled"], true);
    assert_eq!(created["completed"], false);
    assert_eq!(
        created["schedule"].as_object().unwrap().len(),
        1,
        "{created}"
    );
    assert_same_instant(&created["schedule"]["start"], "2030-01-01T12:00:00Z");

    env.settle().await;
    assert_eq!(run_ids(&api, "once").await, Vec::<String>::new());
    env.clock.set("2030-01-01T11:59:59Z");
    env.settle().await;
    assert_eq!(
        run_ids(&api, "once").await,
        Vec::<String>::new(),
        "a second early"
    );
    api.get("/jobs/once-1").await.error(404, "NotFound");

    env.clock.set("2030-01-01T12:00:00Z");
    env.settle().await;
    let listed = runs(&api, "once").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "once-1");
    assert_eq!(listed[0]["displayName"], "One time - 1");
    assert_eq!(listed[0]["scheduledJobId"], "once");
    assert_eq!(listed[0]["group"], "all");
    assert_eq!(listed[0]["data"], json!([cloud_property("One time")]));
    let done = wait_job(&api, "once-1", &["complete"]).await;
    assert_eq!(
        done["progress"],
        json!({"total": 1, "pending": 0, "completed": 1, "failed": 0})
    );
    assert_eq!(done["scheduledJobId"], "once");
    assert_eq!(
        api.get("/devices/dev-1/cloudProperties").await.ok(200)["customerName"],
        "One time"
    );
    assert_eq!(get_scheduled(&api, "once").await["completed"], true);

    for later in ["2030-01-02T12:00:00Z", "2030-02-01T12:00:00Z"] {
        env.clock.set(later);
        env.settle().await;
        assert_eq!(run_ids(&api, "once").await, ids("once", &[1]), "at {later}");
    }
    let listed = api.list_all("/scheduledJobs").await.0;
    let once = listed.iter().find(|s| s["id"] == "once").unwrap();
    assert_eq!(once["completed"], true);
}

/// 3. A daily schedule that ends after 3 occurrences.
#[tokio::test]
async fn a_daily_schedule_ends_after_its_occurrences() {
    let env = Env::start("2030-02-01T08:00:00Z").await;
    let api = env.api();
    // Starting now: the first occurrence is now (at or after now, inclusive).
    create(
        &api,
        "thrice",
        scheduled(
            "Thrice",
            json!({"start": "2030-02-01T08:00:00Z", "recurrence": "daily",
                   "end": {"type": "occurrences", "occurrences": 3}}),
            true,
        ),
    )
    .await;
    env.settle().await;
    assert_eq!(run_ids(&api, "thrice").await, ids("thrice", &[1]));
    let mut current = get_scheduled(&api, "thrice").await;
    assert_eq!(current["completed"], false);
    for day in 1..=5u32 {
        env.clock.advance_days(1);
        env.settle().await;
        let expected: Vec<u32> = (1..=(day + 1).min(3)).rev().collect();
        assert_eq!(
            run_ids(&api, "thrice").await,
            ids("thrice", &expected),
            "after day {day}"
        );
        let now = get_scheduled(&api, "thrice").await;
        assert_eq!(
            now["completed"],
            day >= 2,
            "completed after the 3rd occurrence only (day {day})"
        );
        // Each run changes the schedule (its progress), so its etag; a day without one does not.
        let ran = day <= 2;
        assert_eq!(
            now["etag"] != current["etag"],
            ran,
            "day {day}: etag {} then {}",
            current["etag"],
            now["etag"]
        );
        current = now;
    }
    for n in 1..=3 {
        let job = wait_job(&api, &format!("thrice-{n}"), &["complete"]).await;
        assert_eq!(job["displayName"], format!("Thrice - {n}"));
        assert_eq!(job["progress"]["completed"], 1);
    }
}

/// 4. A weekly schedule with an end date: occurrences up to and including that day.
#[tokio::test]
async fn a_weekly_schedule_runs_up_to_and_including_its_end_date() {
    let env = Env::start("2030-01-06T00:00:00Z").await;
    let api = env.api();
    let created = create(
        &api,
        "weekly",
        scheduled(
            "Weekly",
            json!({"start": "2030-01-07T09:00:00Z", "recurrence": "weekly",
                   "end": {"type": "date", "date": "2030-01-21"}}),
            true,
        ),
    )
    .await;
    assert_eq!(
        created["schedule"]["end"],
        json!({"type": "date", "date": "2030-01-21"})
    );
    let steps: [(&str, &[u32], bool); 8] = [
        ("2030-01-07T08:59:59Z", &[], false),
        ("2030-01-07T09:00:00Z", &[1], false),
        ("2030-01-13T09:00:00Z", &[1], false),
        ("2030-01-14T08:59:59Z", &[1], false),
        ("2030-01-14T09:00:00Z", &[2, 1], false),
        // The end date's day: its occurrence (at 09:00, after the day began) still runs.
        ("2030-01-21T09:00:00Z", &[3, 2, 1], true),
        ("2030-01-28T09:00:00Z", &[3, 2, 1], true),
        ("2030-02-04T09:00:00Z", &[3, 2, 1], true),
    ];
    for (at, expected, completed) in steps {
        env.clock.set(at);
        env.settle().await;
        assert_eq!(
            run_ids(&api, "weekly").await,
            ids("weekly", expected),
            "at {at}"
        );
        assert_eq!(
            get_scheduled(&api, "weekly").await["completed"],
            completed,
            "at {at}"
        );
    }
}

/// 5. Monthly from Jan 31: Feb 29 (2024 is a leap year), then Mar 31 again, never earlier.
#[tokio::test]
async fn a_monthly_schedule_from_the_31st_clamps_to_the_end_of_shorter_months() {
    let env = Env::start("2024-01-31T10:00:00Z").await;
    let api = env.api();
    create(
        &api,
        "monthly",
        scheduled(
            "Monthly",
            json!({"start": "2024-01-31T10:00:00Z", "recurrence": "monthly"}),
            true,
        ),
    )
    .await;
    let steps: [(&str, &[u32]); 9] = [
        ("2024-01-31T10:00:00Z", &[1]),
        ("2024-02-28T10:00:00Z", &[1]),
        ("2024-02-29T09:59:59Z", &[1]),
        ("2024-02-29T10:00:00Z", &[2, 1]),
        ("2024-03-29T10:00:00Z", &[2, 1]),
        ("2024-03-30T10:00:00Z", &[2, 1]),
        ("2024-03-31T09:59:59Z", &[2, 1]),
        ("2024-03-31T10:00:00Z", &[3, 2, 1]),
        ("2024-04-30T10:00:00Z", &[4, 3, 2, 1]),
    ];
    for (at, expected) in steps {
        env.clock.set(at);
        env.settle().await;
        assert_eq!(
            run_ids(&api, "monthly").await,
            ids("monthly", expected),
            "at {at}"
        );
    }
    let names: Vec<Value> = runs(&api, "monthly")
        .await
        .iter()
        .map(|j| j["displayName"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("Monthly - 4"),
            json!("Monthly - 3"),
            json!("Monthly - 2"),
            json!("Monthly - 1")
        ]
    );
}

/// 6. A disabled schedule does not fire; enabling it runs only the occurrences still to come.
#[tokio::test]
async fn a_disabled_schedule_does_not_fire_and_enabling_it_does_not_replay_the_past() {
    let env = Env::start("2030-03-01T00:00:00Z").await;
    let api = env.api();
    let mut body = scheduled(
        "Paused",
        json!({"start": "2030-03-01T06:00:00Z", "recurrence": "daily"}),
        false,
    );
    body.as_object_mut().unwrap().remove("enabled");
    let created = create(&api, "paused", body).await;
    assert_eq!(created["enabled"], false, "enabled defaults to false");

    env.clock.set("2030-03-01T06:00:00Z");
    env.settle().await;
    assert_eq!(run_ids(&api, "paused").await, Vec::<String>::new());
    // Three occurrences (Mar 1, 2, 3 at 06:00) pass while disabled.
    env.clock.set("2030-03-03T07:00:00Z");
    env.settle().await;
    assert_eq!(run_ids(&api, "paused").await, Vec::<String>::new());

    let enabled = api
        .patch("/scheduledJobs/paused", json!({"enabled": true}))
        .await
        .ok(200)
        .clone();
    assert_eq!(enabled["enabled"], true);
    env.settle().await;
    assert_eq!(
        run_ids(&api, "paused").await,
        Vec::<String>::new(),
        "enabling does not run the occurrences missed while disabled"
    );
    env.clock.set("2030-03-04T05:59:59Z");
    env.settle().await;
    assert_eq!(run_ids(&api, "paused").await, Vec::<String>::new());
    env.clock.set("2030-03-04T06:00:00Z");
    env.settle().await;
    let listed = runs(&api, "paused").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "paused-4", "occurrence 4 is Mar 4");
    assert_eq!(listed[0]["displayName"], "Paused - 4");

    // Disabled again: Mar 5 and 6 pass without a run; enabled on Mar 6 at 12:00, the next run
    // is Mar 7.
    api.patch("/scheduledJobs/paused", json!({"enabled": false}))
        .await
        .ok(200);
    env.clock.set("2030-03-05T06:00:00Z");
    env.settle().await;
    env.clock.set("2030-03-06T12:00:00Z");
    env.settle().await;
    assert_eq!(run_ids(&api, "paused").await, ids("paused", &[4]));
    api.patch("/scheduledJobs/paused", json!({"enabled": true}))
        .await
        .ok(200);
    env.settle().await;
    assert_eq!(run_ids(&api, "paused").await, ids("paused", &[4]));
    env.clock.set("2030-03-07T06:00:00Z");
    env.settle().await;
    assert_eq!(run_ids(&api, "paused").await, ids("paused", &[7, 4]));
}

/// 7. After the server was down through three occurrences, only the latest runs.
#[tokio::test]
async fn after_downtime_only_the_latest_missed_occurrence_runs() {
    let mut env = Env::start("2030-04-01T09:00:00Z").await;
    let api = env.api();
    create(
        &api,
        "nightly",
        scheduled(
            "Nightly",
            json!({"start": "2030-04-01T09:00:00Z", "recurrence": "daily"}),
            true,
        ),
    )
    .await;
    env.settle().await;
    assert_eq!(run_ids(&api, "nightly").await, ids("nightly", &[1]));
    wait_job(&api, "nightly-1", &["complete"]).await;

    // Down (frozen, then killed) while Apr 2, 3 and 4 pass.
    freeze(&env.server);
    env.clock.set("2030-04-04T10:00:00Z");
    env.server.restart().await;
    let api = env.api();
    env.settle().await;
    assert_eq!(
        run_ids(&api, "nightly").await,
        ids("nightly", &[4, 1]),
        "one run for the latest missed occurrence (Apr 4), not one per missed day"
    );
    let latest = wait_job(&api, "nightly-4", &["complete"]).await;
    assert_eq!(latest["displayName"], "Nightly - 4");
    assert_eq!(latest["scheduledJobId"], "nightly");
    for skipped in [2, 3] {
        api.get(&format!("/jobs/nightly-{skipped}"))
            .await
            .error(404, "NotFound");
    }
    // The schedule goes on as usual.
    env.clock.set("2030-04-05T09:00:00Z");
    env.settle().await;
    assert_eq!(run_ids(&api, "nightly").await, ids("nightly", &[5, 4, 1]));
}

/// 8. ETags on PATCH (header and body), both content types, and PUT-replace.
#[tokio::test]
async fn updates_check_the_etag_and_accept_both_patch_content_types() {
    let env = Env::start("2030-05-01T00:00:00Z").await;
    let api = env.api();
    let path = "/scheduledJobs/guarded";
    let created = create(
        &api,
        "guarded",
        scheduled(
            "Guarded",
            json!({"start": "2030-06-01T00:00:00Z", "recurrence": "daily"}),
            false,
        ),
    )
    .await;
    let e1 = created["etag"].as_str().unwrap().to_string();
    let merge = "application/merge-patch+json";
    let plain = "application/json";

    let stale = "\"00000000-0000-0000-0000-000000000000\"";
    patch_as(
        &api,
        path,
        merge,
        Some(stale),
        &json!({"displayName": "Changed"}),
    )
    .await
    .error(412, "PreconditionFailed");
    assert_eq!(
        get_scheduled(&api, "guarded").await,
        created,
        "nothing changed"
    );

    let r = patch_as(
        &api,
        path,
        merge,
        Some(&e1),
        &json!({"displayName": "Renamed"}),
    )
    .await;
    let renamed = r.ok(200).clone();
    let e2 = renamed["etag"].as_str().unwrap().to_string();
    assert_ne!(e2, e1);
    assert_eq!(renamed["displayName"], "Renamed");
    assert_eq!(get_scheduled(&api, "guarded").await, renamed);

    // e1 is stale now, as a header and as the body's etag, with either content type.
    patch_as(&api, path, plain, Some(&e1), &json!({"enabled": true}))
        .await
        .error(412, "PreconditionFailed");
    patch_as(
        &api,
        path,
        plain,
        None,
        &json!({"etag": e1, "enabled": true}),
    )
    .await
    .error(412, "PreconditionFailed");
    patch_as(
        &api,
        path,
        merge,
        None,
        &json!({"etag": e1, "enabled": true}),
    )
    .await
    .error(412, "PreconditionFailed");
    assert_eq!(
        get_scheduled(&api, "guarded").await,
        renamed,
        "nothing changed"
    );

    let r = patch_as(
        &api,
        path,
        plain,
        None,
        &json!({"etag": e2, "enabled": true}),
    )
    .await;
    let enabled = r.ok(200).clone();
    let e3 = enabled["etag"].as_str().unwrap().to_string();
    assert_ne!(e3, e2);
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["displayName"], "Renamed");

    let r = patch_as(
        &api,
        path,
        plain,
        Some(&e3),
        &json!({"schedule": {"recurrence": "weekly"}}),
    )
    .await;
    let weekly = r.ok(200).clone();
    assert_eq!(weekly["schedule"]["recurrence"], "weekly");
    assert_eq!(weekly["schedule"].as_object().unwrap().len(), 2, "{weekly}");
    assert_same_instant(&weekly["schedule"]["start"], "2030-06-01T00:00:00Z");
    let e4 = weekly["etag"].as_str().unwrap().to_string();
    assert_ne!(e4, e3);

    // If-Match: * matches whatever the etag is; no etag at all is unconditional.
    let r = patch_as(&api, path, merge, Some("*"), &json!({"description": "Any"})).await;
    let e5 = r.ok(200)["etag"].as_str().unwrap().to_string();
    assert_ne!(e5, e4);
    let r = patch_as(&api, path, merge, None, &json!({"displayName": "Free"})).await;
    let e6 = r.ok(200)["etag"].as_str().unwrap().to_string();
    assert_ne!(e6, e5);

    // Another content type is refused.
    patch_as(
        &api,
        path,
        "text/plain",
        Some(&e6),
        &json!({"displayName": "Text"}),
    )
    .await
    .error(415, "UnsupportedMediaType");

    // PUT on the existing id replaces it, with the same check.
    let mut replacement = scheduled(
        "Replaced",
        json!({"start": "2030-07-01T00:00:00Z", "recurrence": "monthly"}),
        false,
    );
    let replace = |etag: &str| {
        api.request(Method::PUT, path)
            .header("If-Match", etag.to_string())
            .json(&replacement)
    };
    Api::send(replace(&e1))
        .await
        .error(412, "PreconditionFailed");
    let current = get_scheduled(&api, "guarded").await;
    assert_eq!(current["displayName"], "Free");
    assert_eq!(current["etag"], e6.as_str());
    let replaced = Api::send(replace(&e6)).await.ok(200).clone();
    assert_eq!(replaced["displayName"], "Replaced");
    assert_eq!(replaced["enabled"], false);
    assert_ne!(replaced["etag"], e6.as_str());
    replacement["etag"] = json!(e6);
    api.put(path, replacement.clone())
        .await
        .error(412, "PreconditionFailed");

    api.patch("/scheduledJobs/ghost", json!({"enabled": true}))
        .await
        .error(404, "NotFound");
}

/// 9. Deleting stops future runs; the jobs of past runs stay, and stay listed.
#[tokio::test]
async fn deleting_stops_future_runs_and_keeps_past_jobs() {
    let env = Env::start("2030-06-01T08:00:00Z").await;
    let api = env.api();
    create(
        &api,
        "doomed",
        scheduled(
            "Doomed",
            json!({"start": "2030-06-01T08:00:00Z", "recurrence": "daily"}),
            true,
        ),
    )
    .await;
    env.settle().await;
    env.clock.advance_days(1);
    env.settle().await;
    assert_eq!(run_ids(&api, "doomed").await, ids("doomed", &[2, 1]));
    wait_job(&api, "doomed-2", &["complete"]).await;

    api.delete("/scheduledJobs/doomed").await.ok(204);
    api.get("/scheduledJobs/doomed")
        .await
        .error(404, "NotFound");
    api.delete("/scheduledJobs/doomed")
        .await
        .error(404, "NotFound");
    for _ in 0..2 {
        env.clock.advance_days(1);
        env.settle().await;
    }
    api.get("/jobs/doomed-3").await.error(404, "NotFound");
    api.get("/jobs/doomed-4").await.error(404, "NotFound");
    for n in [1, 2] {
        let job = api.get(&format!("/jobs/doomed-{n}")).await.ok(200).clone();
        assert_eq!(job["scheduledJobId"], "doomed");
        assert_eq!(job["status"], "complete");
    }
    assert_eq!(
        run_ids(&api, "doomed").await,
        ids("doomed", &[2, 1]),
        "GET /scheduledJobs/doomed/jobs still lists the past runs after the delete"
    );
    let (all, _) = api.list_all("/scheduledJobs").await;
    assert!(all.iter().all(|s| s["id"] != "doomed"), "{all:?}");
}

/// 10. Bad scheduled jobs: 400 naming the field, and nothing created.
#[tokio::test]
async fn bad_scheduled_jobs_are_refused_and_nothing_is_created() {
    let env = Env::start("2030-01-01T00:00:00Z").await;
    let api = env.api();
    let good = scheduled(
        "Good",
        json!({"start": "2030-01-10T00:00:00Z", "recurrence": "daily"}),
        true,
    );
    let with = |patch: Value| {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let schedule = |s: Value| with(json!({"schedule": s}));
    let daily_until = |end: Value| {
        schedule(json!({"start": "2030-01-10T00:00:00Z", "recurrence": "daily", "end": end}))
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "start not a date-time",
            schedule(json!({"start": "tomorrow"})),
            "'schedule.start'",
        ),
        (
            "start a date only",
            schedule(json!({"start": "2030-01-10"})),
            "'schedule.start'",
        ),
        (
            "start without a zone",
            schedule(json!({"start": "2030-01-10T00:00:00"})),
            "'schedule.start'",
        ),
        (
            "start a number",
            schedule(json!({"start": 1893456000})),
            "'schedule.start'",
        ),
        (
            "start missing",
            schedule(json!({"recurrence": "daily"})),
            "'schedule.start'",
        ),
        (
            "recurrence yearly",
            schedule(json!({"start": "2030-01-10T00:00:00Z", "recurrence": "yearly"})),
            "'schedule.recurrence'",
        ),
        (
            "end date before the start",
            daily_until(json!({"type": "date", "date": "2030-01-09"})),
            "'schedule.end.date'",
        ),
        (
            "end date not a date",
            daily_until(json!({"type": "date", "date": "soon"})),
            "'schedule.end.date'",
        ),
        (
            "0 occurrences",
            daily_until(json!({"type": "occurrences", "occurrences": 0})),
            "'schedule.end.occurrences'",
        ),
        (
            "1000 occurrences",
            daily_until(json!({"type": "occurrences", "occurrences": 1000})),
            "'schedule.end.occurrences'",
        ),
        (
            "2.5 occurrences",
            daily_until(json!({"type": "occurrences", "occurrences": 2.5})),
            "'schedule.end.occurrences'",
        ),
        (
            "occurrences missing",
            daily_until(json!({"type": "occurrences"})),
            "'schedule.end.occurrences'",
        ),
        (
            "end type never",
            daily_until(json!({"type": "never"})),
            "'schedule.end.type'",
        ),
        (
            "end without recurrence",
            schedule(
                json!({"start": "2030-01-10T00:00:00Z", "end": {"type": "occurrences", "occurrences": 2}}),
            ),
            "'schedule.end'",
        ),
        (
            "schedule missing",
            with(json!({"schedule": null})),
            "'schedule'",
        ),
        (
            "schedule a string",
            with(json!({"schedule": "daily"})),
            "'schedule'",
        ),
        (
            "unknown group",
            with(json!({"group": "no-such-group"})),
            "'group'",
        ),
        ("group missing", with(json!({"group": null})), "'group'"),
        (
            "a read-only property",
            with(
                json!({"data": [{"type": "property", "target": CONTROLLER, "path": "serialNumber", "value": "x"}]}),
            ),
            "read-only",
        ),
        (
            "an unknown template",
            with(
                json!({"data": [{"type": "cloudProperty", "target": "dtmi:no:such;1", "path": "customerName", "value": "x"}]}),
            ),
            "'data[0].target'",
        ),
        (
            "a value of the wrong type",
            with(
                json!({"data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": 5}]}),
            ),
            "'data[0].value'",
        ),
        ("no data", with(json!({"data": []})), "'data'"),
        (
            "mixed data types",
            with(json!({"data": [cloud_property("x"),
                                {"type": "property", "target": CONTROLLER,
                                 "path": "thermostat1.targetTemperature", "value": 20}]})),
            "'data'",
        ),
        (
            "enabled not a boolean",
            with(json!({"enabled": "yes"})),
            "'enabled'",
        ),
        ("another id", with(json!({"id": "other"})), "'id'"),
    ];
    for (what, body, named) in cases {
        let message = api
            .put("/scheduledJobs/bad", body)
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains(named),
            "{what}: \"{message}\" should name {named}"
        );
        api.get("/scheduledJobs/bad").await.error(404, "NotFound");
    }
    for bad_id in ["bad%20id", "bad.id", &"x".repeat(256)] {
        let message = api
            .put(&format!("/scheduledJobs/{bad_id}"), good.clone())
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains("scheduledJobId"),
            "{bad_id}: \"{message}\" should name scheduledJobId"
        );
    }
    assert_eq!(api.list_all("/scheduledJobs").await.0, Vec::<Value>::new());

    // A bad PATCH changes nothing either.
    let created = create(&api, "fine", good.clone()).await;
    let patches: Vec<(Value, &str)> = vec![
        (
            json!({"schedule": {"recurrence": "yearly"}}),
            "'schedule.recurrence'",
        ),
        (json!({"schedule": {"start": "noon"}}), "'schedule.start'"),
        (json!({"schedule": null}), "'schedule'"),
        (json!({"group": "no-such-group"}), "'group'"),
        (json!({"completed": true}), "'completed'"),
        (json!({"id": "other"}), "'id'"),
        (
            json!({"data": [cloud_property("x"), {"type": "deviceTemplateMigration", "template": CONTROLLER}]}),
            "'data'",
        ),
    ];
    for (patch, named) in patches {
        let message = api
            .patch("/scheduledJobs/fine", patch.clone())
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains(named),
            "PATCH {patch}: \"{message}\" should name {named}"
        );
    }
    assert_eq!(get_scheduled(&api, "fine").await, created);

    // Nothing ran for any of it.
    env.clock.set("2030-01-10T00:00:00Z");
    env.settle().await;
    let scheduled_runs: Vec<Value> = api
        .list_all("/jobs")
        .await
        .0
        .into_iter()
        .filter(|j| !j["id"].as_str().unwrap().starts_with("zz-probe-"))
        .collect();
    assert_eq!(
        scheduled_runs
            .iter()
            .map(|j| j["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!("fine-1")]
    );
}

/// 11. Rapid clock moves and restarts never make two jobs for one occurrence.
#[tokio::test]
async fn each_occurrence_runs_at_most_once_through_rapid_moves_and_restarts() {
    let mut env = Env::start("2030-08-01T00:00:00Z").await;
    create(
        &env.api(),
        "burst",
        scheduled(
            "Burst",
            json!({"start": "2030-08-01T00:00:00Z", "recurrence": "daily"}),
            true,
        ),
    )
    .await;
    let pauses = [0u64, 0, 30, 120, 0, 300, 10];
    let days = 24;
    for day in 1..=days {
        env.clock.advance_days(1);
        if day % 8 == 0 {
            // Killed at whatever point the scheduler was.
            env.server.restart().await;
        }
        tokio::time::sleep(Duration::from_millis(pauses[day as usize % pauses.len()])).await;
    }
    env.settle().await;
    let api = env.api();
    let listed = runs(&api, "burst").await;
    let mut per_occurrence: HashMap<u32, usize> = HashMap::new();
    let mut numbers = Vec::new();
    for job in &listed {
        let n = number_of("burst", job);
        *per_occurrence.entry(n).or_default() += 1;
        numbers.push(n);
        assert_eq!(job["displayName"], format!("Burst - {n}"), "{job}");
        assert_eq!(job["scheduledJobId"], "burst", "{job}");
    }
    assert!(
        per_occurrence.values().all(|&count| count == 1),
        "an occurrence ran twice: {numbers:?}"
    );
    assert!(
        numbers.windows(2).all(|w| w[0] > w[1]),
        "newest first, one per occurrence: {numbers:?}"
    );
    let last = days as u32 + 1;
    assert_eq!(
        numbers.first(),
        Some(&last),
        "the current occurrence ran: {numbers:?}"
    );
    assert!(
        numbers.iter().all(|&n| (1..=last).contains(&n)),
        "{numbers:?}"
    );
    // The global job list agrees: one job per listed occurrence, no other.
    let global: Vec<u32> = api
        .list_all("/jobs")
        .await
        .0
        .iter()
        .filter(|j| j["scheduledJobId"] == "burst")
        .map(|j| number_of("burst", j))
        .collect();
    assert_eq!(global, numbers);
    for n in &numbers {
        wait_job(&api, &format!("burst-{n}"), &["complete"]).await;
    }
    // Moving on still runs exactly the next one.
    env.clock.advance_days(1);
    env.settle().await;
    let after: Vec<u32> = runs(&api, "burst")
        .await
        .iter()
        .map(|j| number_of("burst", j))
        .collect();
    assert_eq!(after.first(), Some(&(last + 1)));
    assert_eq!(after.len(), numbers.len() + 1, "{after:?}");
}

/// A schedule that already ran, moved to a new start: it runs at the new time, and a moment that
/// already ran does not run again. (Occurrence numbers start again from the new start, so they
/// repeat numbers, and job ids, that already ran.)
#[tokio::test]
async fn a_rescheduled_schedule_runs_at_its_new_time() {
    let env = Env::start("2030-09-01T08:00:00Z").await;
    let api = env.api();
    create(
        &api,
        "moved",
        scheduled(
            "Moved",
            json!({"start": "2030-09-01T08:00:00Z", "recurrence": "daily"}),
            true,
        ),
    )
    .await;
    env.settle().await;
    env.clock.advance_days(1);
    env.settle().await;
    assert_eq!(run_ids(&api, "moved").await, ids("moved", &[2, 1]));

    // Rescheduled at the moment it just ran, to a start at that moment: that moment does not
    // run a second time.
    api.patch(
        "/scheduledJobs/moved",
        json!({"schedule": {"start": "2030-09-02T08:00:00Z", "recurrence": "weekly"}}),
    )
    .await
    .ok(200);
    env.settle().await;
    assert_eq!(
        run_ids(&api, "moved").await,
        ids("moved", &[2, 1]),
        "2030-09-02T08:00:00Z already ran"
    );

    let updated = api
        .patch(
            "/scheduledJobs/moved",
            json!({"schedule": {"start": "2030-09-10T08:00:00Z", "recurrence": "daily"}}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(updated["completed"], false);
    env.settle().await;
    assert_eq!(
        run_ids(&api, "moved").await.len(),
        2,
        "nothing new before the new start"
    );
    env.clock.set("2030-09-10T08:00:00Z");
    env.settle().await;
    let listed = runs(&api, "moved").await;
    assert_eq!(
        listed.len(),
        3,
        "PATCH .../moved {{schedule.start: 2030-09-10T08:00:00Z}}, then the clock at that start: \
         expected a third job, got {:?}",
        listed.iter().map(|j| &j["id"]).collect::<Vec<_>>()
    );
    assert_eq!(
        listed[0]["displayName"], "Moved - 1",
        "numbered from the new start"
    );
    assert_eq!(listed[0]["scheduledJobId"], "moved");
    env.clock.advance_days(1);
    env.settle().await;
    let listed = runs(&api, "moved").await;
    assert_eq!(listed.len(), 4, "and the day after: {listed:?}");
    assert_eq!(listed[0]["displayName"], "Moved - 2");
    // The first runs' jobs keep their ids; the new ones have their own.
    let ids: Vec<&str> = listed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(&ids[2..], ["moved-2", "moved-1"]);
    assert!(ids[0] != ids[1] && !ids[..2].contains(&"moved-1") && !ids[..2].contains(&"moved-2"));
}

/// A schedule deleted and created again under the same id: either refused, or it runs.
#[tokio::test]
async fn a_schedule_created_again_under_a_deleted_id_runs_or_is_refused() {
    let env = Env::start("2030-10-01T08:00:00Z").await;
    let api = env.api();
    let body = scheduled("Again", json!({"start": "2030-10-01T08:00:00Z"}), true);
    create(&api, "again", body).await;
    env.settle().await;
    assert_eq!(run_ids(&api, "again").await, ids("again", &[1]));
    api.delete("/scheduledJobs/again").await.ok(204);

    let second = scheduled("Again", json!({"start": "2030-10-02T08:00:00Z"}), true);
    let response = api.put("/scheduledJobs/again", second).await;
    if response.status == 200 {
        env.clock.set("2030-10-02T08:00:00Z");
        env.settle().await;
        let listed = runs(&api, "again").await;
        assert_eq!(
            listed.len(),
            2,
            "PUT /scheduledJobs/again answered 200 after the first 'again' was deleted, but its \
             occurrence at 2030-10-02T08:00:00Z made no job: {:?}",
            listed.iter().map(|j| &j["id"]).collect::<Vec<_>>()
        );
        assert_eq!(listed[0]["displayName"], "Again - 1", "{}", listed[0]);
        assert_eq!(listed[0]["scheduledJobId"], "again");
        assert_ne!(
            listed[0]["id"], "again-1",
            "the first run's job keeps its id"
        );
        let first = api.get("/jobs/again-1").await.ok(200).clone();
        assert_eq!(first["scheduledJobId"], "again");
        assert_eq!(first["data"], json!([cloud_property("Again")]));
    } else {
        response.error(409, "Conflict");
    }
}

/// A plain job that took the id an occurrence would use must not stop the scheduler: other
/// schedules still run, and the occurrence runs under its id with a suffix.
#[tokio::test]
async fn a_job_id_taken_by_a_plain_job_does_not_stop_other_schedules() {
    let env = Env::start("2030-11-01T00:00:00Z").await;
    let api = env.api();
    api.put(
        "/jobs/aaa-1",
        json!({"displayName": "Plain", "group": "all", "data": [cloud_property("plain")]}),
    )
    .await
    .ok(200);
    for id in ["aaa", "bbb"] {
        create(
            &api,
            id,
            scheduled(id, json!({"start": "2030-11-01T12:00:00Z"}), true),
        )
        .await;
    }
    env.clock.set("2030-11-01T12:00:00Z");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if api.get("/jobs/bbb-1").await.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "schedule 'bbb' never ran at its time: the occurrence of 'aaa' (whose job id aaa-1 \
             is taken by a plain job) stops the scheduler; /scheduledJobs/aaa/jobs = {:?}",
            run_ids(&api, "aaa").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.settle().await;
    assert_eq!(run_ids(&api, "bbb").await, ids("bbb", &[1]));
    let plain = api.get("/jobs/aaa-1").await.ok(200).clone();
    assert_eq!(plain["displayName"], "Plain", "the plain job is untouched");
    assert!(plain.get("scheduledJobId").is_none(), "{plain}");
    // The occurrence of 'aaa' ran too, under its id with a suffix.
    let listed = runs(&api, "aaa").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().unwrap();
    assert!(
        id.starts_with("aaa-1-") && id.len() > "aaa-1-".len(),
        "{id}"
    );
    assert_eq!(listed[0]["displayName"], "aaa - 1");
    assert_eq!(listed[0]["scheduledJobId"], "aaa");
    wait_job(&api, id, &["complete"]).await;
}

/// The scheduler completing a schedule changes it (`completed`), so its etag changes: a client
/// holding the old etag is told the resource changed.
#[tokio::test]
async fn the_etag_changes_when_the_scheduler_completes_a_schedule() {
    let env = Env::start("2030-12-01T00:00:00Z").await;
    let api = env.api();
    let created = create(
        &api,
        "finishing",
        scheduled("Finishing", json!({"start": "2030-12-01T06:00:00Z"}), true),
    )
    .await;
    env.clock.set("2030-12-01T06:00:00Z");
    env.settle().await;
    let done = get_scheduled(&api, "finishing").await;
    assert_eq!(done["completed"], true);
    assert_ne!(
        done["etag"], created["etag"],
        "completed turned true but the etag stayed: {done}"
    );
    patch_as(
        &api,
        "/scheduledJobs/finishing",
        "application/merge-patch+json",
        Some(created["etag"].as_str().unwrap()),
        &json!({"displayName": "Late"}),
    )
    .await
    .error(412, "PreconditionFailed");
}
