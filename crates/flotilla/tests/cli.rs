//! The `flotilla` client commands, each run as the built binary against a running server:
//! their output (JSON parsed, tables read for their rows), their exit codes (`jobs watch`: 0
//! complete, 4 cancelled, 5 stopped), refusals (403 for an operator, the API's 404 for an unknown
//! job) and bad arguments (2).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// What a client command did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &Run {
        self.code(0)
    }

    #[track_caller]
    fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// The `value` of a list's JSON.
    #[track_caller]
    fn values(&self) -> Vec<Value> {
        self.json()["value"]
            .as_array()
            .expect("a value array")
            .clone()
    }

    /// The rows of a table (after its header), split into cells.
    fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }
}

/// `flotilla ARGS` against the server, with the server's URL from FLOTILLA_URL and no token,
/// data dir or version from the test's environment.
fn command(server: &Server, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(args)
        .env("FLOTILLA_URL", &server.base)
        .env("FLOTILLA_LOG", "warn")
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("FLOTILLA_DATA_DIR")
        .env_remove("FLOTILLA_API_VERSION")
        .env_remove("FLOTILLA_CA_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the command ends within 90 s")
        .unwrap();
    Run {
        code: out.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs with `token` in FLOTILLA_TOKEN.
async fn run_as(server: &Server, token: &str, args: &[&str]) -> Run {
    let mut command = command(server, args);
    command.env("FLOTILLA_TOKEN", token);
    finish(command.spawn().unwrap()).await
}

/// Runs with the administrator token, given as --token.
async fn cli(server: &Server, args: &[&str]) -> Run {
    let mut command = command(server, args);
    command.args(["--token", &server.admin_token]);
    finish(command.spawn().unwrap()).await
}

/// Waits until each device answers a command (connected through the simulator).
async fn wait_connected(api: &Api, ids: &[String]) {
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = api
                .post(
                    &format!("/devices/{id}/commands/getMaxMinReport"),
                    json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 5}),
                )
                .await;
            if run.status.as_u16() == 201 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never connected: {}",
                run.text
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:05}")).collect()
}

fn in_filter(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    format!("SELECT * FROM devices WHERE $id IN [{}]", quoted.join(", "))
}

#[tokio::test]
async fn jobs_run_on_simulated_devices_from_create_to_watch_export_copy_and_rerun() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    let good = ids("ok-", 3);
    let bad = ids("bad-", 2);
    let _good_sim = sim_command(&server, &api, 3, "ok-")
        .await
        .args(["--duration", "300"])
        .spawn()
        .unwrap();
    let _bad_sim = sim_command(&server, &api, 2, "bad-")
        .await
        .args(["--duration", "300", "--fail-fraction", "1"])
        .spawn()
        .unwrap();
    wait_connected(&api, &good).await;
    wait_connected(&api, &bad).await;
    for (group, members) in [("good", &good), ("bad", &bad)] {
        api.put(
            &format!("/deviceGroups/{group}"),
            json!({"displayName": group, "filter": in_filter(members)}),
        )
        .await
        .ok(200);
    }

    // Groups: list, show, and a filter previewed before it is saved (and not left behind).
    let groups: Vec<Value> = cli(&server, &["groups", "list", "-o", "json"])
        .await
        .values();
    let names: Vec<&str> = groups.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["bad", "good"]);
    let shown = cli(&server, &["groups", "show", "good"]).await;
    assert!(shown.ok().stdout.ends_with("\ndevices  3\n"), "{shown:#?}");
    let filter = in_filter(&[good[0].clone(), bad[1].clone()]);
    let preview = cli(
        &server,
        &["groups", "preview", "--filter", &filter, "-o", "json"],
    )
    .await;
    let preview = preview.json();
    assert_eq!(preview["count"], 2);
    let previewed: Vec<&str> = preview["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(previewed, [bad[1].as_str(), good[0].as_str()]);
    let table = cli(&server, &["groups", "preview", "--filter", &filter]).await;
    assert!(table.ok().stdout.starts_with("2 devices\n"), "{table:#?}");
    assert!(table.stdout.contains(THERMOSTAT), "{table:#?}");
    let (left, _) = api.list_all("/deviceGroups").await;
    assert_eq!(left.len(), 2, "the preview's group is deleted: {left:?}");

    // A property job from flags, in batches of 2: it completes, and watch exits 0.
    let created = cli(
        &server,
        &[
            "jobs",
            "create",
            "set-temp",
            "--group",
            "good",
            "--type",
            "property",
            "--target",
            THERMOSTAT,
            "--path",
            "targetTemperature",
            "--value",
            "42",
            "--batch",
            "2",
        ],
    )
    .await;
    assert_eq!(created.ok().stdout, "job set-temp created (pending)\n");
    let watched = cli(
        &server,
        &[
            "jobs",
            "watch",
            "set-temp",
            "--poll",
            "--interval-ms",
            "200",
        ],
    )
    .await;
    assert!(
        watched
            .ok()
            .stdout
            .ends_with("job set-temp complete: 3 completed, 0 failed of 3\n"),
        "{watched:#?}"
    );
    // Without --poll: the server's event stream where it has one, else polling; the same end.
    let watched = cli(&server, &["jobs", "watch", "set-temp"]).await;
    assert!(
        watched
            .ok()
            .stdout
            .ends_with("job set-temp complete: 3 completed, 0 failed of 3\n"),
        "{watched:#?}"
    );
    let job = api.get("/jobs/set-temp").await;
    assert_eq!(job.ok(200)["batch"], json!({"type": "number", "value": 2}));
    let props = api.get(&format!("/devices/{}/properties", good[0])).await;
    assert_eq!(props.ok(200)["targetTemperature"], 42.0);

    // A command every device answers with 500, threshold 1: cancelled, each failure printed,
    // watch exits 4. The id is generated.
    let created = cli(
        &server,
        &[
            "jobs",
            "create",
            "--group",
            "bad",
            "--type",
            "command",
            "--target",
            THERMOSTAT,
            "--path",
            "getMaxMinReport",
            "--value",
            "\"2024-01-01T00:00:00Z\"",
            "--threshold",
            "1",
            "-o",
            "json",
        ],
    )
    .await;
    let failing = created.ok().json()["id"].as_str().unwrap().to_string();
    assert_eq!(failing.len(), 36, "a UUID: {failing}");
    let watched = cli(
        &server,
        &["jobs", "watch", &failing, "--poll", "--interval-ms", "200"],
    )
    .await;
    watched.code(4);
    assert!(
        watched
            .stdout
            .contains(&format!("job {failing}: cancelled")),
        "{watched:#?}"
    );
    let failures: Vec<&str> = watched
        .stdout
        .lines()
        .filter(|l| l.starts_with("failed "))
        .collect();
    assert!(!failures.is_empty(), "{watched:#?}");
    assert!(failures.iter().all(|l| l.contains("bad-")), "{failures:?}");
    let again = cli(&server, &["jobs", "watch", &failing]).await;
    again.code(4);
    let again: Vec<&str> = again
        .stdout
        .lines()
        .filter(|l| l.starts_with("failed "))
        .collect();
    assert!(
        !again.is_empty() && again.iter().all(|l| l.contains("bad-")),
        "{again:?}"
    );
    // JSON: one line per failed device, then the job.
    let json_watch = cli(
        &server,
        &["jobs", "watch", &failing, "--poll", "-o", "json"],
    )
    .await;
    json_watch.code(4);
    let lines: Vec<Value> = json_watch
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (job, devices) = lines.split_last().unwrap();
    assert_eq!(job["status"], "cancelled");
    // Each failed device once (a device in flight may still fail after the job's count was read).
    let mut failed_ids: Vec<&str> = devices
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    failed_ids.dedup();
    assert_eq!(failed_ids.len(), devices.len(), "{devices:?}");
    assert!(!devices.is_empty() && failed_ids.iter().all(|id| bad.iter().any(|b| b == id)));
    assert!(
        devices
            .iter()
            .all(|d| d["status"] == "failed" && d["jobId"] == failing.as_str())
    );

    // list, show, devices.
    let listed = cli(&server, &["jobs", "list", "-o", "json"]).await.values();
    let listed: Vec<&str> = listed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [failing.as_str(), "set-temp"], "newest first");
    let cancelled = cli(
        &server,
        &["jobs", "list", "--status", "cancelled", "-o", "json"],
    )
    .await;
    let cancelled = cancelled.values();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["id"], failing.as_str());
    let table = cli(&server, &["jobs", "list"]).await;
    let rows = table.ok().rows();
    assert_eq!(
        rows[1][..6],
        ["set-temp", "complete", "good", "3", "3", "0"],
        "{table:#?}"
    );
    let shown = cli(&server, &["jobs", "show", "set-temp"]).await;
    assert!(
        shown.ok().stdout.contains("\nstatus    complete\n"),
        "{shown:#?}"
    );
    assert!(shown.stdout.contains("targetTemperature"), "{shown:#?}");
    let failed = cli(
        &server,
        &[
            "jobs", "devices", &failing, "--status", "failed", "-o", "json",
        ],
    )
    .await;
    let failed = failed.values();
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|d| d["status"] == "failed" && d["reason"].is_string())
    );

    // export: the results log as CSV, one row per device.
    let export = cli(&server, &["jobs", "export", "set-temp"]).await;
    let mut reader = csv::Reader::from_reader(export.ok().stdout.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "status",
            "batch",
            "reasonCode",
            "reason",
            "responseCode",
            "response"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let rows: Vec<(&str, &str, &str)> = rows.iter().map(|r| (&r[0], &r[1], &r[2])).collect();
    assert_eq!(
        rows,
        [
            (good[0].as_str(), "completed", "1"),
            (good[1].as_str(), "completed", "1"),
            (good[2].as_str(), "completed", "2")
        ]
    );
    let out = server.data_dir().join("failing.csv");
    cli(
        &server,
        &["jobs", "export", &failing, "--out", out.to_str().unwrap()],
    )
    .await
    .ok();
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.lines().skip(1).any(|l| l.contains(",failed,")),
        "{written}"
    );

    // copy: a new job from the definition; rerun: a new job on the failed devices.
    let copy = cli(
        &server,
        &[
            "jobs",
            "copy",
            "set-temp",
            "--new-id",
            "set-temp-2",
            "--watch",
        ],
    )
    .await;
    copy.ok();
    assert!(
        copy.stdout.starts_with("job set-temp-2 created"),
        "{copy:#?}"
    );
    let copied = api.get("/jobs/set-temp-2").await.ok(200).clone();
    assert_eq!(copied["displayName"], "set-temp - Copy");
    assert_eq!(copied["data"], job_data(&api, "set-temp").await);
    assert_eq!(copied["status"], "complete");
    let rerun = cli(
        &server,
        &["jobs", "rerun", &failing, "--new-id", "again", "-o", "json"],
    )
    .await;
    let rerun = rerun.ok().json();
    assert_eq!(rerun["id"], "again");
    let again = wait_job(&api, "again", &["cancelled", "complete"]).await;
    assert_eq!(
        again["progress"]["total"],
        json!(failed.len()),
        "only the failed devices"
    );
}

async fn job_data(api: &Api, id: &str) -> Value {
    api.get(&format!("/jobs/{id}")).await.ok(200)["data"].clone()
}

#[tokio::test]
async fn watch_exits_5_when_the_job_is_stopped_and_stop_resume_say_what_they_did() {
    // The device never connects, so the job waits on it (for the default 300 s).
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    api.put("/devices/asleep", json!({"template": THERMOSTAT}))
        .await
        .ok(200);
    api.put(
        "/deviceGroups/all",
        json!({"displayName": "All", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    let body = server.data_dir().join("job.json");
    std::fs::write(
        &body,
        json!({"id": "held", "displayName": "Held", "group": "all", "data": [{"type": "property", "target": THERMOSTAT, "path": "targetTemperature", "value": 30}]}).to_string(),
    )
    .unwrap();
    // The id in the file is the job's.
    let created = cli(
        &server,
        &["jobs", "create", "--file", body.to_str().unwrap()],
    )
    .await;
    assert_eq!(created.ok().stdout, "job held created (pending)\n");
    wait_job(&api, "held", &["running"]).await;

    // Watching (the server has no event stream for it: watch falls back to polling) while
    // the job is stopped.
    let mut watch = command(&server, &["jobs", "watch", "held", "--interval-ms", "200"]);
    watch.args(["--token", &server.admin_token]);
    let watch = watch.spawn().unwrap();
    let stopped = cli(&server, &["jobs", "stop", "held"]).await;
    assert_eq!(stopped.ok().stdout, "job held stopped (now stopped)\n");
    let watched = finish(watch).await;
    watched.code(5);
    assert!(
        watched
            .stdout
            .ends_with("job held stopped: 0 completed, 0 failed of 1\n"),
        "{watched:#?}"
    );
    // A job that is stopped already: at once.
    cli(&server, &["jobs", "watch", "held", "--poll"])
        .await
        .code(5);

    let resumed = cli(&server, &["jobs", "resume", "held", "-o", "json"]).await;
    assert_eq!(resumed.ok().json()["status"], "running");
    // Stopping twice: the API's conflict, printed, exit 1.
    cli(&server, &["jobs", "stop", "held"]).await.ok();
    let again = cli(&server, &["jobs", "stop", "held"]).await;
    again.code(1);
    assert!(
        again
            .stderr
            .starts_with("error: 409 Conflict: The job 'held' is stopped"),
        "{again:#?}"
    );
}

#[tokio::test]
async fn devices_import_and_export_iot_centrals_csv() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    // 30 devices (two pages of the list) and a row without an id.
    let mut csv = String::from("IOTC_DEVICENAME,IOTC_DEVICEID\n");
    for i in 0..30 {
        csv.push_str(&format!("Sensor {i},imp-{i:02}\n"));
    }
    csv.push_str("Nameless,\n");
    let file = server.data_dir().join("devices.csv");
    std::fs::write(&file, &csv).unwrap();
    let file = file.to_str().unwrap();
    let imported = cli(
        &server,
        &["devices", "import", file, "--template", THERMOSTAT],
    )
    .await;
    imported.code(1);
    assert!(
        imported
            .stdout
            .ends_with("30 created, 0 updated, 0 unchanged, 1 failed\n"),
        "{imported:#?}"
    );
    let refused = imported.stdout.lines().find(|l| l.starts_with("32 "));
    let refused = refused.expect("line 32 reported");
    assert!(
        refused.contains("failed") && refused.ends_with("no IOTC_DEVICEID"),
        "{imported:#?}"
    );
    assert_eq!(imported.stderr, "error: 1 of 31 rows were not imported\n");

    // Again, one name changed: one update, the rest unchanged, exit 0.
    std::fs::write(
        server.data_dir().join("again.csv"),
        csv.replace("Sensor 7,", "Renamed,")
            .replace("Nameless,\n", ""),
    )
    .unwrap();
    let again_path = server.data_dir().join("again.csv");
    let again = cli(
        &server,
        &[
            "devices",
            "import",
            again_path.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await;
    let results = again.ok().values();
    let updated: Vec<&str> = results
        .iter()
        .filter(|r| r["result"] == "updated")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(updated, ["imp-07"]);
    assert_eq!(
        results
            .iter()
            .filter(|r| r["result"] == "unchanged")
            .count(),
        29
    );

    // list follows nextLink; show.
    let devices = cli(&server, &["devices", "list", "-o", "json"])
        .await
        .values();
    assert_eq!(devices.len(), 30);
    assert!(devices.iter().all(|d| d["template"] == THERMOSTAT));
    let shown = cli(&server, &["devices", "show", "imp-07"]).await;
    assert!(
        shown.ok().stdout.contains("displayName  Renamed"),
        "{shown:#?}"
    );
    let table = cli(&server, &["devices", "list"]).await;
    assert_eq!(table.ok().rows().len(), 30);

    // export: IoT Central's columns, the SAS keys the API gives.
    let export = cli(&server, &["devices", "export"]).await;
    let mut reader = csv::Reader::from_reader(export.ok().stdout.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "IOTC_DEVICEID",
            "IOTC_DEVICENAME",
            "IOTC_SASKEY_PRIMARY",
            "IOTC_SASKEY_SECONDARY",
            "IOTC_X509THUMBPRINT_PRIMARY",
            "IOTC_X509THUMBPRINT_SECONDARY"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 30);
    let credentials = api.get("/devices/imp-07/credentials").await;
    let credentials = credentials.ok(200);
    assert_eq!(&rows[7][0], "imp-07");
    assert_eq!(&rows[7][1], "Renamed");
    assert_eq!(
        &rows[7][2],
        credentials["symmetricKey"]["primaryKey"].as_str().unwrap()
    );
    assert_eq!(
        &rows[7][3],
        credentials["symmetricKey"]["secondaryKey"]
            .as_str()
            .unwrap()
    );

    // Of a group, without keys; the file imports back unchanged.
    api.put(
        "/deviceGroups/few",
        json!({"displayName": "few", "filter": "SELECT * FROM devices WHERE $id IN [\"imp-01\", \"imp-02\"]"}),
    )
    .await
    .ok(200);
    let out = server.data_dir().join("few.csv");
    let out = out.to_str().unwrap();
    cli(
        &server,
        &[
            "devices",
            "export",
            "--group",
            "few",
            "--without-keys",
            "--out",
            out,
        ],
    )
    .await
    .ok();
    assert_eq!(
        std::fs::read_to_string(out).unwrap(),
        "IOTC_DEVICEID,IOTC_DEVICENAME,IOTC_SASKEY_PRIMARY,IOTC_SASKEY_SECONDARY,IOTC_X509THUMBPRINT_PRIMARY,IOTC_X509THUMBPRINT_SECONDARY\n\
         imp-01,Sensor 1,,,,\nimp-02,Sensor 2,,,,\n"
    );
    let back = cli(&server, &["devices", "import", out, "-o", "json"]).await;
    assert!(
        back.ok()
            .values()
            .iter()
            .all(|r| r["result"] == "unchanged")
    );
}

#[tokio::test]
async fn scheduled_jobs_are_created_listed_updated_and_deleted() {
    let server = Server::start().await;
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let body = server.data_dir().join("nightly.json");
    std::fs::write(
        &body,
        json!({"displayName": "Nightly", "group": "all",
               "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "Contoso"}]})
        .to_string(),
    )
    .unwrap();
    let schedule = json!({"start": "2030-01-01T00:00:00Z", "recurrence": "daily"}).to_string();
    let created = cli(
        &server,
        &[
            "scheduled-jobs",
            "create",
            "nightly",
            "--file",
            body.to_str().unwrap(),
            "--schedule",
            &schedule,
        ],
    )
    .await;
    assert_eq!(
        created.ok().stdout,
        "scheduled job nightly created (enabled: false)\n"
    );

    let listed = cli(&server, &["scheduled-jobs", "list"]).await;
    let rows = listed.ok().rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][..6],
        [
            "nightly",
            "false",
            "false",
            "all",
            "2030-01-01T00:00:00Z",
            "daily"
        ]
    );
    let shown = cli(
        &server,
        &["scheduled-jobs", "show", "nightly", "-o", "json"],
    )
    .await;
    let shown = shown.json();
    assert_eq!(shown["schedule"]["recurrence"], "daily");
    assert_eq!(shown["data"][0]["path"], "customerName");

    let updated = cli(
        &server,
        &[
            "scheduled-jobs",
            "update",
            "nightly",
            "--enable",
            "--name",
            "Every night",
            "-o",
            "json",
        ],
    )
    .await;
    let updated = updated.ok().json();
    assert_eq!(
        (updated["enabled"].clone(), updated["displayName"].clone()),
        (json!(true), json!("Every night"))
    );
    let runs = cli(
        &server,
        &["scheduled-jobs", "runs", "nightly", "-o", "json"],
    )
    .await;
    assert_eq!(runs.values(), Vec::<Value>::new());
    cli(&server, &["scheduled-jobs", "update", "nightly"])
        .await
        .code(2);

    let deleted = cli(&server, &["scheduled-jobs", "delete", "nightly"]).await;
    assert_eq!(deleted.ok().stdout, "scheduled job nightly deleted\n");
    let gone = cli(&server, &["scheduled-jobs", "show", "nightly"]).await;
    gone.code(1);
    assert!(
        gone.stderr.starts_with("error: 404 NotFound: "),
        "{gone:#?}"
    );
}

#[tokio::test]
async fn tokens_are_managed_by_administrators_and_refused_to_operators() {
    let server = Server::start().await;
    // Over the HTTPS listener, trusting the server's development CA; without it, refused.
    let addr = std::fs::read_to_string(server.data_dir().join("https.addr")).unwrap();
    let https = format!("https://{}", addr.trim());
    let ca = server.data_dir().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let tls = cli(
        &server,
        &[
            "tokens",
            "list",
            "--url",
            &https,
            "--ca-cert",
            ca,
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(tls.values()[0]["id"], "admin");
    let untrusted = cli(&server, &["tokens", "list", "--url", &https]).await;
    untrusted.code(1);
    assert!(
        untrusted
            .stderr
            .starts_with(&format!("error: cannot reach {https}/api/apiTokens: ")),
        "{untrusted:#?}"
    );

    let created = cli(
        &server,
        &[
            "tokens", "create", "ops", "--role", "operator", "-o", "json",
        ],
    )
    .await;
    let created = created.ok().json();
    let value = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["roles"][0]["role"], OPERATOR);
    let table = cli(&server, &["tokens", "list"]).await;
    let rows = table.ok().rows();
    let ids: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(ids, [("admin", "Administrator"), ("ops", "Operator")]);
    let shown = cli(&server, &["tokens", "show", "ops", "-o", "json"]).await;
    assert!(
        shown.ok().json().get("token").is_none(),
        "the value is shown once"
    );

    // The operator reads jobs, and is refused the tokens (an administrator's area).
    run_as(&server, &value, &["jobs", "list"]).await.ok();
    let refused = run_as(&server, &value, &["tokens", "list"]).await;
    refused.code(1);
    assert!(
        refused.stderr.starts_with("error: 403 Forbidden: "),
        "{refused:#?}"
    );
    assert!(refused.stdout.is_empty());
    let refused = run_as(
        &server,
        &value,
        &["tokens", "create", "mine", "--role", "administrator"],
    )
    .await;
    refused.code(1);
    assert!(refused.stderr.contains("403 Forbidden"), "{refused:#?}");

    cli(&server, &["tokens", "delete", "ops"]).await.ok();
    let revoked = run_as(&server, &value, &["jobs", "list"]).await;
    revoked.code(1);
    assert!(
        revoked.stderr.starts_with("error: 401 Unauthorized: "),
        "{revoked:#?}"
    );
}

#[tokio::test]
async fn bad_input_gets_the_apis_error_or_a_usage_error() {
    let server = Server::start().await;
    let api = server.admin();
    one_controller_in_group_all(&api).await;

    // An unknown job: the API's 404, printed, exit 1; for watch too.
    for args in [
        &["jobs", "show", "ghost"][..],
        &["jobs", "watch", "ghost"],
        &["jobs", "devices", "ghost"],
        &["jobs", "rerun", "ghost"],
    ] {
        let run = cli(&server, args).await;
        run.code(1);
        assert!(
            run.stderr
                .starts_with("error: 404 NotFound: The job 'ghost' was not found."),
            "{args:?}: {run:#?}"
        );
        assert!(run.stderr.contains("(requestId "), "{run:#?}");
    }
    // The server's validation, as it words it.
    let invalid = cli(
        &server,
        &[
            "jobs",
            "create",
            "--group",
            "nowhere",
            "--type",
            "cloudProperty",
            "--target",
            CONTROLLER,
            "--path",
            "customerName",
            "--value",
            "x",
        ],
    )
    .await;
    invalid.code(1);
    assert!(
        invalid.stderr.starts_with("error: 400 BadRequest: "),
        "{invalid:#?}"
    );
    assert!(invalid.stderr.contains("nowhere"), "{invalid:#?}");

    // Usage: 2, before any request.
    for args in [
        &["jobs", "create", "--group", "all"][..],
        &["jobs", "create", "--group", "all", "--type", "property"],
        &["jobs", "create", "--batch", "ten"],
        &["jobs", "frobnicate"],
        &["tokens", "create", "x"],
    ] {
        let run = cli(&server, args).await;
        run.code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
    }

    // The token: else the admin token of --data-dir; else a usage error.
    let data_dir = server.data_dir().to_str().unwrap().to_string();
    let mut command = command(
        &server,
        &["jobs", "list", "-o", "json", "--data-dir", &data_dir],
    );
    let from_dir = finish(command.spawn().unwrap()).await;
    assert_eq!(from_dir.values(), Vec::<Value>::new());
    let empty = fresh_dir();
    let mut command = command_in(&server, &empty, &["jobs", "list"]);
    let none = finish(command.spawn().unwrap()).await;
    none.code(2);
    assert!(none.stderr.contains("no API token"), "{none:#?}");
    let _ = std::fs::remove_dir_all(&empty);

    // No server there: exit 1, saying so.
    let unreachable = cli(&server, &["jobs", "list", "--url", "http://127.0.0.1:9"]).await;
    unreachable.code(1);
    assert!(
        unreachable
            .stderr
            .starts_with("error: cannot reach http://127.0.0.1:9/api/jobs"),
        "{unreachable:#?}"
    );
}

/// `command`, run in `dir` (where `./flotilla-data` is the default data dir).
fn command_in(server: &Server, dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut command = command(server, args);
    command.current_dir(dir);
    command
}
