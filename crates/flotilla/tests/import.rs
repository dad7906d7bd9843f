//! `flotilla import`, run as the built binary: a second Flotilla on loopback stands in for the
//! IoT Central application (it serves the same REST API). The imported application equals the
//! source's through the target's REST API (ids, keys, filters, cloud properties, the schedule
//! imported disabled), the report counts what was done, a second run changes nothing and
//! duplicates nothing, `--plan` writes nothing, an import is refused while a server holds the
//! data dir, and a simulated device connects to the target with its key from the source.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const DEVICES: usize = 56;

fn device_id(i: usize) -> String {
    format!("th-{i:05}")
}

/// The source: the thermostat template, 56 devices (half `north`, half `south`, each with a
/// cloud property), two device groups, an enrollment group of its own besides the default one,
/// an enabled daily schedule, and an API token besides the administrator's.
async fn source_application(api: &Api) {
    api.publish_template(THERMOSTAT, thermostat_template())
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
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `flotilla import --from <source>` into the target's database, with extra flags.
async fn import(source: &Server, target: &Server, flags: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["import", "--from", &source.base])
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

    let first = import(&source, &target, &[]).await;
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        line(&first, "device templates"),
        "device templates: 1 created, 0 updated, 0 unchanged, 0 skipped, 0 failed"
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
    let again = import(&source, &target, &["--rate", "50"]).await;
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    for (kind, unchanged) in [
        ("device templates", 1),
        ("enrollment groups", 2),
        ("device groups", 2),
        ("scheduled jobs", 1),
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
    target.restart().await;
    assert_same(&api, &target.admin()).await;
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
