//! `flotilla sim` against a real server: devices register through DPS and connect over
//! MQTT/TLS, then answer commands and acknowledge writable properties as the REST API sees it.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use flotilla_sim::config::pick;
use serde_json::{Value, json};

/// The MQTT port the server bound, the ID scope and the default enrollment group's key.
async fn device_endpoint(server: &Server) -> (u16, String, String) {
    let addr = std::fs::read_to_string(server.data_dir().join("mqtt.addr")).unwrap();
    let port = addr.trim().parse::<SocketAddr>().unwrap().port();
    let group = server
        .admin()
        .get("/enrollmentGroups/sas-iot-devices")
        .await;
    let group = group.ok(200);
    (
        port,
        group["idScope"].as_str().unwrap().to_string(),
        group["attestation"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// `flotilla sim` with DPS against the server, plus `extra` flags.
async fn sim(
    server: &Server,
    devices: usize,
    prefix: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let (port, scope, key) = device_endpoint(server).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["sim", "--server", "127.0.0.1", "--progress-secs", "0"])
        .args(["--devices", &devices.to_string(), "--prefix", prefix])
        .args(["--port", &port.to_string(), "--id-scope", &scope])
        .args(["--group-key", &key])
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(extra)
        .env("FLOTILLA_LOG", "warn")
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the summary is written")).unwrap()
}

#[tokio::test]
async fn fifty_devices_register_through_dps_and_connect() {
    let server = Server::start().await;
    let summary_path = server.data_dir().join("sim-summary.json");
    let started = Instant::now();
    let output = sim(
        &server,
        50,
        "simtest-",
        &[
            "--duration",
            "5",
            "--summary",
            summary_path.to_str().unwrap(),
        ],
    )
    .await
    .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the simulator stops after its duration")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sim failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{stdout}");

    let summary = summary(&summary_path);
    assert_eq!(summary["provisioned"], 50, "{stdout}");
    assert_eq!(summary["everConnected"], 50, "{stdout}");
    assert_eq!(summary["provisionFailures"], 0, "{stdout}");
    assert_eq!(summary["connectFailures"], 0, "{stdout}");
    assert_eq!(summary["dropped"], 0, "{stdout}");

    let (devices, _) = server.admin().list_all("/devices").await;
    let mut simulated: Vec<&Value> = devices
        .iter()
        .filter(|d| d["id"].as_str().unwrap().starts_with("simtest-"))
        .collect();
    simulated.sort_by_key(|d| d["id"].as_str().unwrap().to_string());
    assert_eq!(simulated.len(), 50);
    for (i, device) in simulated.iter().enumerate() {
        assert_eq!(device["id"], format!("simtest-{i:05}"));
        assert_eq!(device["provisioned"], true, "{device}");
        assert_eq!(device["enabled"], true, "{device}");
    }
}

#[tokio::test]
async fn devices_answer_commands_and_acknowledge_properties() {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    // With --fail-fraction 0.5 the id hash decides which devices fail; take two of each kind.
    let ids: Vec<String> = (0..40).map(|i| format!("pnp-{i:05}")).collect();
    let failing = |id: &str| pick(id, "fail") < 0.5;
    let chosen: Vec<&String> = ids
        .iter()
        .filter(|id| failing(id))
        .take(2)
        .chain(ids.iter().filter(|id| !failing(id)).take(2))
        .collect();
    assert_eq!(chosen.len(), 4);

    let summary_path = server.data_dir().join("sim-summary.json");
    let child = sim(
        &server,
        ids.len(),
        "pnp-",
        &[
            "--model",
            THERMOSTAT,
            "--fail-fraction",
            "0.5",
            "--delay-ms",
            "100",
            "--duration",
            "30",
            "--summary",
            summary_path.to_str().unwrap(),
        ],
    )
    .await
    .spawn()
    .unwrap();

    for id in &chosen {
        let expected = if failing(id) { 500 } else { 200 };
        // DPS creates the device; the command then waits (connectionTimeout) for it to connect.
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.get(&format!("/devices/{id}")).await.status != 200 {
            assert!(Instant::now() < deadline, "{id} was never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (command, ack) = thermostat_round_trip(&api, id).await;
        assert_eq!(command, expected, "{id}");
        assert_eq!(ack, expected, "{id}");
    }
    // SIGTERM: the devices disconnect cleanly and the simulator prints its summary.
    let pid = child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the simulator stops on SIGTERM")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("methods          4 answered (2 with 500 on purpose)"),
        "{stdout}"
    );
    // Each device that was asked counts its requests: here one each.
    let calls = summary(&summary_path)["methodCallsByDevice"].clone();
    let expected: serde_json::Map<String, Value> =
        chosen.iter().map(|id| (id.to_string(), json!(1))).collect();
    assert_eq!(calls, Value::Object(expected), "{stdout}");
}
