//! `flotilla import`, run as the built binary: a second Flotilla on loopback stands in for the
//! IoT Central application (it serves the same REST API). The imported application equals the
//! source's through the target's REST API (ids, keys, filters, cloud properties, the schedule
//! imported disabled, with `--with-jobs` a finished job and its devices' outcomes), the report
//! counts what was done, a second run changes nothing and duplicates nothing, `--plan` writes
//! nothing, an import is refused while a server holds the data dir, a simulated device connects
//! to the target with its key from the source, and `--enable-schedules` takes the schedule over
//! (a later run leaves it enabled); `--group` imports one device group's devices at a time; an
//! import killed midway completes when run again, without duplicates; a source answering 429
//! with `Retry-After` is waited for, and a 503 retried (a counting proxy before the source); a
//! `nextLink` away from the source is not followed (the proxy changes it), its kind failed; a
//! template the target cannot take fails with its devices, the rest imported, exit 1.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

const DEVICES: usize = 56;

fn device_id(i: usize) -> String {
    format!("th-{i:05}")
}

/// The source: the thermostat template, 56 devices (half `north`, half `south`, each with a
/// cloud property), two device groups, an enrollment group of its own besides the default one,
/// an enabled daily schedule, an API token besides the administrator's, and a finished job
/// (`warmer`: a property job over `south`, whose devices, never connected, each failed
/// `offline`).
async fn source_application(api: &Api) {
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    // A template with components (the temperature controller's two thermostats and device
    // information), compared whole after the import like every other template.
    api.publish_template(CONTROLLER, controller_template())
        .await;
    for i in 0..DEVICES {
        let id = device_id(i);
        let side = if i < DEVICES / 2 { "north" } else { "south" };
        api.put(
            &format!("/devices/{id}"),
            json!({"displayName": format!("{side} thermostat"), "template": THERMOSTAT}),
        )
        .await
        .ok(200);
        api.put(
            &format!("/devices/{id}/cloudProperties"),
            json!({"customerName": format!("Customer {i}")}),
        )
        .await
        .ok(200);
    }
    for side in ["north", "south"] {
        api.put(
            &format!("/deviceGroups/{side}"),
            json!({"displayName": side,
                   "filter": format!("SELECT * FROM devices WHERE $displayName = \"{side} thermostat\""),
                   "description": format!("The {side} side")}),
        )
        .await
        .ok(200);
    }
    api.put(
        "/enrollmentGroups/factory",
        json!({"displayName": "Factory", "type": "iot", "attestation": {"type": "symmetricKey"}}),
    )
    .await
    .ok(200);
    api.preview()
        .put(
            "/scheduledJobs/nightly",
            json!({"displayName": "Nightly", "group": "north", "enabled": true,
                   "data": [{"type": "cloudProperty", "target": THERMOSTAT,
                             "path": "customerName", "value": "Night"}],
                   "schedule": {"start": "2030-01-01T00:00:00Z", "recurrence": "daily"}}),
        )
        .await
        .ok(200);
    api.create_token("reader", OPERATOR).await;
    api.put(
        "/jobs/warmer",
        json!({"displayName": "Warmer", "group": "south", "offline": {"policy": "fail"},
               "data": [{"type": "property", "target": THERMOSTAT,
                         "path": "targetTemperature", "value": 22}]}),
    )
    .await
    .ok(200);
    wait_job(api, "warmer", &["complete", "failed"]).await;
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `flotilla import --from <source>` into the target's database, with extra flags.
async fn import(source: &Server, target: &Server, flags: &[&str]) -> Run {
    import_from(&source.base, source, target, flags).await
}

/// `flotilla import --from <base>` with the source's token.
async fn import_from(base: &str, source: &Server, target: &Server, flags: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["import", "--from", base])
        .arg("--data-dir")
        .arg(target.data_dir())
        .args(flags)
        .env("FLOTILLA_IMPORT_TOKEN", source.admin_token.trim())
        .env("FLOTILLA_LOG", "warn")
        .env_remove("FLOTILLA_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var("FLOTILLA_TEST_POSTGRES").is_ok() {
        command.args(["--database-url", &target.database_url()]);
    }
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The report's line for `kind`, e.g. `devices: 56 created, 0 updated, 0 unchanged, ...`.
fn line<'a>(run: &'a Run, kind: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{kind}: ")))
        .unwrap_or_else(|| panic!("no {kind} line in {}\n{}", run.stdout, run.stderr))
}

fn without(value: &Value, fields: &[&str]) -> Value {
    let mut value = value.clone();
    for field in fields {
        value.as_object_mut().unwrap().remove(*field);
    }
    value
}

/// Every item of a list, without the fields that differ between applications.
async fn listed(api: &Api, path: &str, ignore: &[&str]) -> Vec<Value> {
    let (items, _) = api.list_all(path).await;
    items.iter().map(|item| without(item, ignore)).collect()
}

async fn wait_connected(api: &Api, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = api
            .post(
                &format!("/devices/{id}/commands/getMaxMinReport"),
                json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 5}),
            )
            .await;
        if run.status.as_u16() == 201 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never connected: {}",
            run.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_application_is_imported_whole_and_a_second_run_changes_nothing() {
    let source = Server::start().await;
    let api = source.admin();
    source_application(&api).await;

    // A target server made its own first start (its own scope and default group's keys); an
    // import is refused while it runs, and takes the source over once it is stopped.
    let mut target = Server::start().await;
    let refused = import(&source, &target, &[]).await;
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    assert!(refused.stderr.contains("lock"), "{}", refused.stderr);
    target.kill();

    let first = import(&source, &target, &["--with-jobs"]).await;
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    // Not a terminal: progress as plain lines on standard error, one per kind when it is done.
    for kind in [
        "device templates: 2",
        &format!("devices: {DEVICES}"),
        "API tokens: 2",
    ] {
        assert!(
            first.stderr.contains(&format!("imported {kind}\n")),
            "{kind}: {}",
            first.stderr
        );
    }
    assert_eq!(
        line(&first, "device templates"),
        "device templates: 2 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    // The default group (same id on both) takes the source's keys.
    assert_eq!(
        line(&first, "enrollment groups"),
        "enrollment groups: 1 created, 1 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    assert_eq!(
        line(&first, "device groups"),
        "device groups: 2 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    assert_eq!(
        line(&first, "devices"),
        format!("devices: {DEVICES} created, 0 updated, 0 unchanged, 0 skipped, 0 failed")
    );
    assert_eq!(
        line(&first, "scheduled jobs"),
        "scheduled jobs: 1 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    assert_eq!(
        line(&first, "jobs"),
        "jobs: 1 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    assert_eq!(
        line(&first, "API tokens"),
        "API tokens: 0 created, 0 updated, 0 unchanged, 2 skipped, 0 failed"
    );
    assert!(
        first
            .stdout
            .contains("skipped API token reader: IoT Central never returns an API token's secret"),
        "{}",
        first.stdout
    );

    target.restart().await;
    let imported = target.admin();
    assert_same(&api, &imported).await;
    assert_same_job(&api, &imported, "warmer").await;

    // The schedule is there, disabled: no occurrence fires on both sides.
    let nightly = api.preview().get("/scheduledJobs/nightly").await;
    let copy = imported.preview().get("/scheduledJobs/nightly").await;
    assert_eq!(copy.ok(200)["enabled"], false);
    assert_eq!(
        without(copy.ok(200), &["etag", "enabled"]),
        without(nightly.ok(200), &["etag", "enabled"])
    );

    // A device of the source connects to the target with its key and ID scope from the source.
    let _sim = sim_command(&target, &imported, 1, "th-")
        .await
        .args(["--duration", "120"])
        .spawn()
        .unwrap();
    wait_connected(&imported, &device_id(0)).await;
    drop(_sim);

    // A change on the source: `--plan` says what would be updated and writes nothing; the run
    // then updates that one device, and leaves everything else unchanged, with no duplicate.
    api.put(
        &format!("/devices/{}/cloudProperties", device_id(3)),
        json!({"customerName": "Renamed"}),
    )
    .await
    .ok(200);
    target.kill();
    let plan = import(&source, &target, &["--plan"]).await;
    assert_eq!(plan.code, Some(0), "{}\n{}", plan.stdout, plan.stderr);
    assert_eq!(
        line(&plan, "devices"),
        format!(
            "devices: 0 to create, 1 to update, {} unchanged, 0 skipped, 0 failed",
            DEVICES - 1
        )
    );
    let again = import(&source, &target, &["--with-jobs", "--rate", "50"]).await;
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    for (kind, unchanged) in [
        ("device templates", 2),
        ("enrollment groups", 2),
        ("device groups", 2),
        ("scheduled jobs", 1),
        ("jobs", 1),
    ] {
        assert_eq!(
            line(&again, kind),
            format!("{kind}: 0 created, 0 updated, {unchanged} unchanged, 0 skipped, 0 failed")
        );
    }
    assert_eq!(
        line(&again, "devices"),
        format!(
            "devices: 0 created, 1 updated, {} unchanged, 0 skipped, 0 failed",
            DEVICES - 1
        )
    );

    // Taking the schedules over: `--enable-schedules` enables here the schedule the source has
    // enabled. Then, as the README says, it is disabled on the source; a later run without the
    // flag leaves it enabled here (the import never disables a schedule enabled here) and
    // changes nothing.
    let enabling = import(&source, &target, &["--enable-schedules", "--rate", "200"]).await;
    assert_eq!(
        enabling.code,
        Some(0),
        "{}\n{}",
        enabling.stdout,
        enabling.stderr
    );
    assert_eq!(
        line(&enabling, "scheduled jobs"),
        "scheduled jobs: 0 created, 1 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    api.preview()
        .patch("/scheduledJobs/nightly", json!({"enabled": false}))
        .await
        .ok(200);
    let later = import(&source, &target, &["--rate", "200"]).await;
    assert_eq!(later.code, Some(0), "{}\n{}", later.stdout, later.stderr);
    assert_eq!(
        line(&later, "scheduled jobs"),
        "scheduled jobs: 0 created, 0 updated, 1 unchanged, 0 skipped, 0 failed"
    );
    target.restart().await;
    assert_same(&api, &target.admin()).await;
    let taken_over = target.admin().preview().get("/scheduledJobs/nightly").await;
    assert_eq!(taken_over.ok(200)["enabled"], true, "{}", taken_over.text);
}

/// The target's templates, groups, enrollment groups (with keys and scope), devices, their
/// credentials and cloud properties equal the source's.
async fn assert_same(source: &Api, target: &Api) {
    for (path, ignore) in [
        ("/deviceTemplates", &["etag"][..]),
        ("/deviceGroups", &["etag"][..]),
        ("/devices", &["etag", "provisioned"][..]),
    ] {
        assert_eq!(
            listed(target, path, ignore).await,
            listed(source, path, ignore).await,
            "{path}"
        );
    }
    let (devices, _) = source.list_all("/devices").await;
    assert_eq!(devices.len(), DEVICES);
    for group in ["sas-iot-devices", "factory"] {
        let path = format!("/enrollmentGroups/{group}");
        assert_eq!(
            without(target.get(&path).await.ok(200), &["etag"]),
            without(source.get(&path).await.ok(200), &["etag"]),
            "{path}"
        );
    }
    for device in devices {
        let id = device["id"].as_str().unwrap();
        for part in ["credentials", "cloudProperties"] {
            let path = format!("/devices/{id}/{part}");
            assert_eq!(
                target.get(&path).await.ok(200),
                source.get(&path).await.ok(200),
                "{path}"
            );
        }
    }
    for group in ["north", "south"] {
        let path = format!("/deviceGroups/{group}/devices");
        let (members, _) = target.list_all(&path).await;
        assert_eq!(members.len(), DEVICES / 2, "{path}");
    }
}

/// The target's job `id` and its devices' outcomes (status, reason, reasonCode) equal the
/// source's, through the REST API.
async fn assert_same_job(source: &Api, target: &Api, id: &str) {
    let path = format!("/jobs/{id}");
    let job = source.get(&path).await.ok(200).clone();
    assert!(
        ["complete", "failed"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    assert_eq!(target.get(&path).await.ok(200), &job, "{path}");
    let path = format!("/jobs/{id}/devices");
    let (devices, _) = source.list_all(&path).await;
    assert_eq!(devices.len(), DEVICES / 2, "{path}");
    assert!(
        devices
            .iter()
            .all(|d| d["status"] == "failed" && d["reasonCode"] == "offline"),
        "{devices:?}"
    );
    assert_eq!(target.list_all(&path).await.0, devices, "{path}");
}

/// A proxy before the source that answers the first request to each of `refuse` 429 with
/// `Retry-After: 1` (or 503 for the paths in `fail`), forwards everything else (its answers
/// changed by `edit`, if any), and records when each path was asked for.
#[derive(Clone)]
struct Throttle {
    source: String,
    own: String,
    refuse: Vec<String>,
    fail: Vec<String>,
    edit: Option<Edit>,
    seen: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

/// A change the proxy makes to the source's JSON answer to a path: what IoT Central could
/// answer and a Flotilla never does.
type Edit = fn(path: &str, body: &mut Value);

impl Throttle {
    async fn start(source: &str, refuse: Vec<String>, fail: Vec<String>) -> Throttle {
        Throttle::serve(source, refuse, fail, None).await
    }

    /// A proxy that forwards every request and changes the answers as `edit` does.
    async fn editing(source: &str, edit: Edit) -> Throttle {
        Throttle::serve(source, vec![], vec![], Some(edit)).await
    }

    async fn serve(
        source: &str,
        refuse: Vec<String>,
        fail: Vec<String>,
        edit: Option<Edit>,
    ) -> Throttle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let throttle = Throttle {
            source: source.to_string(),
            own: format!("http://{}", listener.local_addr().unwrap()),
            refuse,
            fail,
            edit,
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(throttle.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        throttle
    }

    /// How many devices' credentials were asked for.
    fn credentials_asked(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.keys().filter(|p| p.ends_with("/credentials")).count()
    }

    /// Asserts that the requests came no faster than `rate` a second, counted over the whole run
    /// with a generous margin (half as many again): the client spaces its requests at least
    /// 1/rate apart, so n of them span at least (n - 1)/rate.
    fn assert_within_rate(&self, rate: f64) {
        let seen = self.seen.lock().unwrap();
        let times: Vec<Instant> = seen.values().flatten().copied().collect();
        let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
            panic!("no request came");
        };
        let span = (*last - *first).as_secs_f64();
        let spaced = (times.len() - 1) as f64;
        assert!(
            spaced <= rate * 1.5 * span,
            "{} requests in {span:.2} s: {:.1} a second, over --rate {rate}",
            times.len(),
            spaced / span
        );
    }

    fn times(&self, path: &str) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

async fn forward(State(throttle): State<Throttle>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let first = {
        let mut seen = throttle.seen.lock().unwrap();
        let times = seen.entry(path.clone()).or_default();
        times.push(Instant::now());
        times.len() == 1
    };
    if first && throttle.refuse.contains(&path) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    if first && throttle.fail.contains(&path) {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
    }
    let url = format!("{}{}", throttle.source, request.uri());
    let mut outgoing = reqwest::Client::new().get(url);
    if let Some(token) = request.headers().get("authorization") {
        outgoing = outgoing.header("authorization", token.to_str().unwrap());
    }
    let answer = outgoing.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    // Next pages through the proxy too.
    let body = answer
        .text()
        .await
        .unwrap()
        .replace(&throttle.source, &throttle.own);
    let body = match (throttle.edit, serde_json::from_str::<Value>(&body)) {
        (Some(edit), Ok(mut json)) => {
            edit(&path, &mut json);
            json.to_string()
        }
        _ => body,
    };
    (status, [("content-type", "application/json")], body).into_response()
}

#[tokio::test]
async fn a_source_answering_429_is_waited_for_and_a_5xx_is_retried() {
    let source = Server::start().await;
    let api = source.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    for i in 0..3 {
        api.put(
            &format!("/devices/{}", device_id(i)),
            json!({"template": THERMOSTAT}),
        )
        .await
        .ok(200);
    }
    let refused = vec![
        "/api/devices".to_string(),
        "/api/deviceTemplates".to_string(),
        format!("/api/devices/{}/credentials", device_id(1)),
    ];
    let failing = vec!["/api/deviceGroups".to_string()];
    let throttle = Throttle::start(&source.base, refused.clone(), failing).await;
    let mut target = Server::start().await;
    target.kill();

    let run = import_from(&throttle.own, &source, &target, &[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        line(&run, "devices"),
        "devices: 3 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    for path in &refused {
        let times = throttle.times(path);
        assert_eq!(times.len(), 2, "{path}: asked once, refused, asked again");
        assert!(
            times[1] - times[0] >= Duration::from_millis(950),
            "{path}: asked again after {:?}, before its Retry-After",
            times[1] - times[0]
        );
    }
    assert_eq!(throttle.times("/api/deviceGroups").len(), 2);
    // Within the default rate (20 a second) over the whole run. The waits for the 429s and the
    // 503 space these few requests as well; the killed-midway test, without them, is where the
    // rate alone must.
    throttle.assert_within_rate(20.0);

    target.restart().await;
    let (devices, _) = target.admin().list_all("/devices").await;
    assert_eq!(devices.len(), 3);
}

#[tokio::test]
async fn a_next_link_away_from_the_source_is_not_followed() {
    let source = Server::start().await;
    let api = source.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    // More devices than a page holds (25): the list has a nextLink.
    for i in 0..30 {
        api.put(
            &format!("/devices/{}", device_id(i)),
            json!({"template": THERMOSTAT}),
        )
        .await
        .ok(200);
    }
    // The devices' nextLink names another host (the same proxy, called `localhost`): followed,
    // it would take the source's token there.
    fn elsewhere(path: &str, body: &mut Value) {
        if path == "/api/devices"
            && let Some(link) = body["nextLink"].as_str()
        {
            body["nextLink"] = link.replacen("127.0.0.1", "localhost", 1).into();
        }
    }
    let proxy = Throttle::editing(&source.base, elsewhere).await;
    let mut target = Server::start().await;
    target.kill();

    let run = import_from(&proxy.own, &source, &target, &["--rate", "100"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    // The first page's devices are imported, the list is counted failed with the reason, and the
    // import goes on with the other kinds.
    assert_eq!(
        line(&run, "devices"),
        "devices: 25 created, 0 updated, 0 unchanged, 0 skipped, 1 failed"
    );
    let origin = proxy.own.as_str();
    let foreign = origin.replacen("127.0.0.1", "localhost", 1);
    let failed = run
        .stdout
        .lines()
        .find(|l| l.starts_with("failed devices: "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        failed.starts_with(&format!("failed devices: {foreign}/api/devices?"))
            && failed.ends_with(&format!(
                ": a nextLink away from the source ({origin}, as --from names it); not \
                 followed, so that the source's API token is not sent there; the rest of the \
                 list is not imported"
            )),
        "{failed}"
    );
    assert_eq!(
        line(&run, "scheduled jobs"),
        "scheduled jobs: 0 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    line(&run, "API tokens");
    assert_eq!(
        proxy.times("/api/devices").len(),
        1,
        "the nextLink was followed"
    );

    target.restart().await;
    let (devices, _) = target.admin().list_all("/devices").await;
    assert_eq!(devices.len(), 25);
}

#[tokio::test]
async fn a_template_the_target_refuses_fails_with_its_devices_and_the_rest_is_imported() {
    let source = Server::start().await;
    let api = source.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    api.publish_template(CONTROLLER, controller_template())
        .await;
    for (id, template) in [
        ("th-1", THERMOSTAT),
        ("tc-1", CONTROLLER),
        ("th-2", THERMOSTAT),
        ("tc-2", CONTROLLER),
    ] {
        api.put(&format!("/devices/{id}"), json!({"template": template}))
            .await
            .ok(200);
    }
    // The source shows the controller with its components' interfaces named by id rather than
    // inline: DTDL allows it, this server does not take it (a Flotilla source never shows it).
    fn referenced_components(path: &str, body: &mut Value) {
        if path != "/api/deviceTemplates" {
            return;
        }
        for template in body["value"].as_array_mut().unwrap() {
            if template["@id"] != CONTROLLER {
                continue;
            }
            for item in template["capabilityModel"]["contents"]
                .as_array_mut()
                .unwrap()
            {
                if item["@type"] == "Component" {
                    item["schema"] = item["schema"]["@id"].clone();
                }
            }
        }
    }
    let proxy = Throttle::editing(&source.base, referenced_components).await;
    let mut target = Server::start().await;
    target.kill();

    // The plan says the same as the run: the controller and its devices fail, the rest does not.
    for flags in [&["--plan"][..], &[]] {
        let run = import_from(&proxy.own, &source, &target, flags).await;
        assert_eq!(
            run.code,
            Some(1),
            "{flags:?}: {}\n{}",
            run.stdout,
            run.stderr
        );
        let (create, update) = if flags.is_empty() {
            ("created", "updated")
        } else {
            ("to create", "to update")
        };
        assert_eq!(
            line(&run, "device templates"),
            format!("device templates: 1 {create}, 0 {update}, 0 unchanged, 0 skipped, 1 failed")
        );
        assert_eq!(
            line(&run, "devices"),
            format!("devices: 2 {create}, 0 {update}, 0 unchanged, 0 skipped, 2 failed")
        );
        let failed: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("failed "))
            .collect();
        assert_eq!(failed.len(), 3, "{}", run.stdout);
        assert!(
            failed[0].starts_with(&format!("failed device template {CONTROLLER}: "))
                && failed[0].contains("references to interfaces outside the template"),
            "{}",
            failed[0]
        );
        for (line, id) in failed[1..].iter().zip(["tc-1", "tc-2"]) {
            assert_eq!(
                *line,
                format!(
                    "failed device {id}: its template {CONTROLLER} is not on this server: it \
                     failed to import, or the source does not list it"
                )
            );
        }
    }

    target.restart().await;
    let imported = target.admin();
    let (devices, _) = imported.list_all("/devices").await;
    let ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["th-1", "th-2"]);
    let (templates, _) = imported.list_all("/deviceTemplates").await;
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0]["@id"], THERMOSTAT);
}

#[tokio::test]
async fn a_move_in_phases_imports_one_device_group_at_a_time() {
    let source = Server::start().await;
    let api = source.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    for (id, side) in [("n-1", "north"), ("n-2", "north"), ("s-1", "south")] {
        api.put(
            &format!("/devices/{id}"),
            json!({"displayName": side, "template": THERMOSTAT}),
        )
        .await
        .ok(200);
    }
    for side in ["north", "south"] {
        api.put(
            &format!("/deviceGroups/{side}"),
            json!({"displayName": side,
                   "filter": format!("SELECT * FROM devices WHERE $displayName = \"{side}\"")}),
        )
        .await
        .ok(200);
    }
    let mut target = Server::start().await;
    target.kill();

    let unknown = import(&source, &target, &["--group", "west"]).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stdout);
    assert!(
        unknown
            .stderr
            .contains("the source has no device group west"),
        "{}",
        unknown.stderr
    );
    let north = import(&source, &target, &["--group", "north"]).await;
    assert_eq!(north.code, Some(0), "{}\n{}", north.stdout, north.stderr);
    assert_eq!(
        line(&north, "devices"),
        "devices: 2 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    assert_eq!(
        line(&north, "device groups"),
        "device groups: 2 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    let south = import(&source, &target, &["--group", "south"]).await;
    assert_eq!(
        line(&south, "devices"),
        "devices: 1 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
    );
    assert_eq!(
        line(&south, "device templates"),
        "device templates: 0 created, 0 updated, 1 unchanged, 0 skipped, 0 failed"
    );
    target.restart().await;
    let (devices, _) = target.admin().list_all("/devices").await;
    let ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n-1", "n-2", "s-1"]);
}

#[tokio::test]
async fn an_import_killed_midway_completes_when_run_again_without_duplicates() {
    let source = Server::start().await;
    let api = source.admin();
    source_application(&api).await;
    let mut target = Server::start().await;
    target.kill();

    // Through a proxy that counts requests: killed once 20 devices' credentials were asked for
    // (at 20 requests a second the other 36 devices would take seconds more), the import has
    // written some devices and not others.
    let proxy = Throttle::start(&source.base, vec![], vec![]).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["import", "--from", &proxy.own, "--rate", "20"])
        .arg("--data-dir")
        .arg(target.data_dir())
        .env("FLOTILLA_IMPORT_TOKEN", source.admin_token.trim())
        .env_remove("FLOTILLA_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if std::env::var("FLOTILLA_TEST_POSTGRES").is_ok() {
        command.args(["--database-url", &target.database_url()]);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.credentials_asked() < 20 {
        assert!(
            Instant::now() < deadline,
            "the import never got to the devices"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    // Without a wait for the source (no 429 here), the rate is what spaces the requests: some 45
    // of them in over two seconds, not in a blink.
    proxy.assert_within_rate(20.0);

    let resumed = import(&source, &target, &[]).await;
    assert_eq!(
        resumed.code,
        Some(0),
        "{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    let devices = line(&resumed, "devices");
    let counts: Vec<usize> = devices
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [created, updated, unchanged, skipped, failed] = counts[..] else {
        panic!("{devices}")
    };
    assert!(unchanged > 0 && created > 0, "not killed midway: {devices}");
    assert_eq!(
        (created + unchanged, updated, skipped, failed),
        (DEVICES, 0, 0, 0)
    );

    target.restart().await;
    assert_same(&api, &target.admin()).await;
}

#[tokio::test]
async fn with_jobs_the_finished_jobs_are_carried_over_as_records_never_run() {
    let source = Server::start().await;
    let api = source.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    for i in 0..3 {
        api.put(
            &format!("/devices/{}", device_id(i)),
            json!({"displayName": "north", "template": THERMOSTAT}),
        )
        .await
        .ok(200);
    }
    api.put(
        "/deviceGroups/north",
        json!({"displayName": "north", "filter": "SELECT * FROM devices WHERE $displayName = \"north\""}),
    )
    .await
    .ok(200);
    // A finished job (cloud properties: no device involved), and one the source stopped
    // midway (its devices are offline, so it waits on them): only the first is history.
    api.put(
        "/jobs/renamed",
        json!({"displayName": "Renamed", "group": "north",
               "data": [{"type": "cloudProperty", "target": THERMOSTAT,
                         "path": "customerName", "value": "Contoso"}]}),
    )
    .await
    .ok(200);
    let finished = wait_job(&api, "renamed", &["complete"]).await;
    api.put(
        "/jobs/waiting",
        json!({"displayName": "Waiting", "group": "north",
               "data": [{"type": "property", "target": THERMOSTAT,
                         "path": "targetTemperature", "value": 21}]}),
    )
    .await
    .ok(200);
    wait_job(&api, "waiting", &["running"]).await;
    let stopped = api.post("/jobs/waiting/stop", json!({})).await;
    assert_eq!(stopped.status.as_u16(), 204, "{}", stopped.text);
    wait_job(&api, "waiting", &["stopped"]).await;

    let mut target = Server::start().await;
    target.kill();
    // Without the flag, no job is read.
    let plain = import(&source, &target, &[]).await;
    assert!(
        !plain.stdout.lines().any(|l| l.starts_with("jobs: ")),
        "{}",
        plain.stdout
    );
    let first = import(&source, &target, &["--with-jobs"]).await;
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        line(&first, "jobs"),
        "jobs: 1 created, 0 updated, 0 unchanged, 1 skipped, 0 failed"
    );
    assert!(
        first.stdout.contains(
            "skipped job waiting: stopped on the source: only finished jobs are carried over"
        ),
        "{}",
        first.stdout
    );
    let again = import(&source, &target, &["--with-jobs"]).await;
    assert_eq!(
        line(&again, "jobs"),
        "jobs: 0 created, 0 updated, 1 unchanged, 1 skipped, 0 failed"
    );

    // The job and its devices' outcomes equal the source's, and stay so: the target's engine
    // never runs it (its status is final).
    target.restart().await;
    let imported = target.admin();
    let source_devices = api.get("/jobs/renamed/devices").await.ok(200).clone();
    assert_eq!(source_devices["value"].as_array().unwrap().len(), 3);
    for _ in 0..2 {
        assert_eq!(imported.get("/jobs/renamed").await.ok(200), &finished);
        assert_eq!(
            imported.get("/jobs/renamed/devices").await.ok(200),
            &source_devices
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    imported.get("/jobs/waiting").await.error(404, "NotFound");
    let (listed, _) = imported.list_all("/jobs").await;
    assert_eq!(listed, [finished]);
}

/// `flotilla import move` from `source` to the running `target`, with extra flags.
async fn import_move(source: &Server, target: &Server, flags: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "import",
            "move",
            "--from",
            &source.base,
            "--url",
            &target.base,
        ])
        .args([
            "--token",
            target.admin_token.trim(),
            "--host",
            "flotilla.test",
        ])
        .args(flags)
        .env("FLOTILLA_IMPORT_TOKEN", source.admin_token.trim())
        .env("FLOTILLA_LOG", "warn")
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("FLOTILLA_URL")
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_move_names_each_device_that_cannot_move_and_why() {
    let source = Server::start().await;
    let api = source.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    for (id, template) in [("n-1", Some(THERMOSTAT)), ("n-2", None)] {
        api.put(
            &format!("/devices/{id}"),
            json!({"displayName": "north", "template": template}),
        )
        .await
        .ok(200);
    }
    api.put(
        "/deviceGroups/north",
        json!({"displayName": "north", "filter": "SELECT * FROM devices WHERE $displayName = \"north\""}),
    )
    .await
    .ok(200);
    let target = Server::start().await;

    let unknown = import_move(
        &source,
        &target,
        &["--group", "west", "--command", "DeviceMove"],
    )
    .await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stdout);
    assert!(
        unknown
            .stderr
            .contains("the departure application has no device group west"),
        "{}",
        unknown.stderr
    );
    let bad_payload = import_move(
        &source,
        &target,
        &[
            "--group",
            "north",
            "--command",
            "DeviceMove",
            "--payload",
            "{",
        ],
    )
    .await;
    assert_eq!(bad_payload.code, Some(1));
    assert!(
        bad_payload.stderr.contains("--payload is not JSON"),
        "{}",
        bad_payload.stderr
    );

    // The thermostat has no DeviceMove command: the source refuses the job, so its device is
    // not moved, with the source's words; a device without a template no job reaches.
    let run = import_move(
        &source,
        &target,
        &[
            "--group",
            "north",
            "--command",
            "DeviceMove",
            "--job-id",
            "move-north",
            "--timeout",
            "5",
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "not moved n-1: the departure refused the command job for its template {THERMOSTAT}: 400"
        )) && lines[0].contains("DeviceMove"),
        "{}",
        run.stdout
    );
    assert_eq!(
        lines[1..],
        [
            "not moved n-2: it has no template, so no command job reaches it",
            "0 of 2 devices moved (jobs on the departure: none)"
        ]
    );
    api.get("/jobs/move-north").await.error(404, "NotFound");
}
