//! Many jobs at once over simulated devices (`flotilla sim`): 50 property jobs on the same 20
//! devices run together, every device gets every job's operation, and in the order the jobs were
//! created (the last job's value is the one that stays).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const DEVICES: usize = 20;
const JOBS: usize = 50;

#[tokio::test]
async fn fifty_jobs_run_together_and_each_device_gets_them_in_creation_order() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    let mut sim = sim_command(&server, &api, DEVICES, "fleet-")
        .await
        .args(["--duration", "120"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");

    // Every device provisioned (DPS created it with the thermostat template) and reachable.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (devices, _) = api.list_all("/devices").await;
        let ready = devices
            .iter()
            .filter(|d| d["provisioned"] == true && d["template"] == THERMOSTAT)
            .count();
        if ready == DEVICES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready} devices provisioned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Connected: a command answers on every device.
    for i in 0..DEVICES {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = api
                .post(
                    &format!("/devices/fleet-{i:05}/commands/getMaxMinReport"),
                    json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 5}),
                )
                .await;
            if run.status.as_u16() == 201 {
                break;
            }
            assert!(Instant::now() < deadline, "fleet-{i:05}: {}", run.text);
        }
    }

    api.put(
        "/deviceGroups/fleet",
        json!({"displayName": "Fleet", "filter": "SELECT * FROM devices WHERE $id IN [\"x\"] OR $provisioned = true"}),
    )
    .await
    .ok(200);
    for n in 1..=JOBS {
        api.put(
            &format!("/jobs/many-{n:02}"),
            json!({
                "group": "fleet",
                "batch": {"type": "number", "value": 7},
                "data": [{"type": "property", "target": THERMOSTAT, "path": "targetTemperature", "value": n as f64 + 50.0}]
            }),
        )
        .await
        .ok(200);
    }
    // They run together: several are running at once before the first completes.
    let mut most_running = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (jobs, _) = api.list_all("/jobs").await;
        let running = jobs.iter().filter(|j| j["status"] == "running").count();
        most_running = most_running.max(running);
        if jobs.iter().all(|j| j["status"] == "complete") {
            for job in &jobs {
                assert_eq!(
                    job["progress"],
                    json!({"total": DEVICES, "pending": 0, "completed": DEVICES, "failed": 0}),
                    "{}",
                    job["id"]
                );
            }
            break;
        }
        assert!(
            jobs.iter().all(|j| j["status"] == "running"
                || j["status"] == "complete"
                || j["status"] == "pending"),
            "{jobs:?}"
        );
        assert!(Instant::now() < deadline, "jobs did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most_running >= 10, "only {most_running} jobs ran at once");

    // The last job created is the last applied on every device.
    for i in 0..DEVICES {
        let props = api.get(&format!("/devices/fleet-{i:05}/properties")).await;
        let props = props.ok(200);
        assert_eq!(
            props["targetTemperature"],
            JOBS as f64 + 50.0,
            "fleet-{i:05}: {props}"
        );
        let meta = &props["$metadata"]["targetTemperature"];
        assert_eq!(meta["ackVersion"], meta["desiredVersion"], "{props}");
        // One desired version per job (plus the twin's first): none skipped, none repeated.
        assert_eq!(meta["desiredVersion"], JOBS as i64 + 1, "{props}");
    }
    sim.kill().await.ok();
}
