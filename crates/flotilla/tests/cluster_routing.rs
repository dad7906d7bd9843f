//! Two `flotilla serve` processes on one PostgreSQL database (cluster mode): REST on either
//! server reaches a device connected to the other, a device keeps one connection in the whole
//! cluster, and what one server changes the other sees at once. Runs only with
//! `FLOTILLA_TEST_POSTGRES` set (SQLite is one server).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use flotilla_gateway::sas::{percent_encode, sign};
use flotilla_sim::mqtt::{self, ConnectError, ConnectOptions, Connection, Endpoint, ReadError};
use serde_json::{Value, json};

/// Two servers on one fresh database, and an administrator token for the second; `None`
/// without PostgreSQL.
async fn cluster() -> Option<(Server, Server, Api, Api)> {
    cluster_with(&[]).await
}

async fn cluster_with(env: &[(&str, &str)]) -> Option<(Server, Server, Api, Api)> {
    if std::env::var("FLOTILLA_TEST_POSTGRES").is_err() {
        eprintln!("skipped: cluster mode needs FLOTILLA_TEST_POSTGRES");
        return None;
    }
    let a = Server::start_with_env(env).await;
    let b = Server::start_sharing(&a.database_url(), env).await;
    let token = a.admin().create_token("admin-b", ADMINISTRATOR).await;
    let (api_a, api_b) = (a.admin(), b.client(&token));
    Some((a, b, api_a, api_b))
}

/// A server's device endpoint, trusting its development CA.
fn endpoint(data_dir: &std::path::Path) -> Endpoint {
    let addr = std::fs::read_to_string(data_dir.join("mqtt.addr")).unwrap();
    Endpoint {
        addr: addr.trim().parse().unwrap(),
        server_name: flotilla_sim::tls::server_name("127.0.0.1").unwrap(),
        tls: flotilla_sim::tls::connector(&data_dir.join("ca.pem")).unwrap(),
    }
}

/// Connects a device (created through the API) as the IoT SDK does.
async fn connect_device(
    endpoint: &Endpoint,
    api: &Api,
    id: &str,
) -> Result<Connection, ConnectError> {
    let credentials = api.get(&format!("/devices/{id}/credentials")).await;
    let key = credentials.ok(200)["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    connect_with_key(endpoint, id, &key).await
}

/// Connects device `id` with a SAS token signed with `key`.
async fn connect_with_key(
    endpoint: &Endpoint,
    id: &str,
    key: &str,
) -> Result<Connection, ConnectError> {
    let resource = percent_encode(&format!("localhost/devices/{id}"));
    let expiry = jiff::Timestamp::now().as_second() + 3600;
    let password = sign(&resource, key, expiry).unwrap();
    let username = format!("localhost/{id}/?api-version=2021-04-12");
    let options = ConnectOptions {
        client_id: id,
        username: &username,
        password: &password,
        clean_session: true,
        keep_alive: Duration::from_secs(60),
        source: None,
    };
    mqtt::connect(endpoint, &options).await.map(|(c, _)| c)
}

/// Whether the server closes the connection within `within` (reading whatever comes first).
async fn closed_within(connection: &mut Connection, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, connection.read()).await {
            Err(_) => return false,
            Ok(Err(ReadError::Closed | ReadError::Io(_))) => return true,
            Ok(_) => {}
        }
    }
}

/// Whether the connection still answers a ping.
async fn answers_ping(connection: &mut Connection) -> bool {
    if connection.send(rumqttc::Packet::PingReq).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connection.read()).await,
        Ok(Ok(rumqttc::Packet::PingResp))
    )
}

/// `flotilla sim` devices (thermostats, registering through DPS) connected to `replica`.
async fn sim_on(
    replica: &Server,
    api: &Api,
    devices: usize,
    prefix: &str,
) -> tokio::process::Child {
    let addr = std::fs::read_to_string(replica.data_dir.join("mqtt.addr")).unwrap();
    let port = addr.trim().parse::<std::net::SocketAddr>().unwrap().port();
    let group = api.get("/enrollmentGroups/sas-iot-devices").await;
    let group = group.ok(200);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["sim", "--server", "127.0.0.1", "--progress-secs", "0"])
        .args(["--devices", &devices.to_string(), "--prefix", prefix])
        .args(["--port", &port.to_string()])
        .args(["--id-scope", group["idScope"].as_str().unwrap()])
        .args(["--group-key"])
        .arg(
            group["attestation"]["symmetricKey"]["primaryKey"]
                .as_str()
                .unwrap(),
        )
        .args(["--model", THERMOSTAT, "--duration", "60"])
        .arg("--data-dir")
        .arg(&replica.data_dir)
        .env("FLOTILLA_LOG", "warn")
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn rest_on_one_server_reaches_devices_connected_to_the_other() {
    let Some((_a, b, api_a, _api_b)) = cluster().await else {
        return;
    };
    api_a
        .publish_template(THERMOSTAT, thermostat_template())
        .await;
    let _sim = sim_on(&b, &api_a, 2, "far-").await;
    for id in ["far-00000", "far-00001"] {
        // DPS creates the device; the command waits (connectionTimeout) for it to connect.
        let deadline = Instant::now() + Duration::from_secs(15);
        while api_a.get(&format!("/devices/{id}")).await.status != 200 {
            assert!(Instant::now() < deadline, "{id} was never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Through A: the command's answer and the write's acknowledgement come from B.
        let (command, ack) = thermostat_round_trip(&api_a, id).await;
        assert_eq!((command, ack), (json!(200), json!(200)), "{id}");
    }
    // A device connected nowhere is still offline after its connection timeout.
    api_a
        .put("/devices/nowhere", json!({"template": THERMOSTAT}))
        .await
        .ok(200);
    let started = Instant::now();
    api_a
        .post(
            "/devices/nowhere/commands/getMaxMinReport",
            json!({"connectionTimeout": 1}),
        )
        .await
        .error(404, "DeviceNotOnline");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn disabling_a_device_on_one_server_closes_its_connection_on_the_other() {
    let Some((a, b, api_a, _api_b)) = cluster().await else {
        return;
    };
    api_a.put("/devices/door-1", json!({})).await.ok(200);
    let endpoint_b = endpoint(&b.data_dir);
    let mut connection = connect_device(&endpoint_b, &api_a, "door-1").await.unwrap();
    assert!(answers_ping(&mut connection).await);
    api_a
        .patch("/devices/door-1", json!({"enabled": false}))
        .await
        .ok(200);
    assert!(
        closed_within(&mut connection, Duration::from_secs(1)).await,
        "the connection on the other server stayed open"
    );
    let again = connect_device(&endpoint_b, &api_a, "door-1").await;
    assert!(
        matches!(again, Err(ConnectError::Refused(_))),
        "{:?}",
        again.err()
    );
    drop(a);
}

#[tokio::test]
async fn new_credentials_set_on_one_server_close_the_connection_on_the_other() {
    let Some((a, b, api_a, _api_b)) = cluster().await else {
        return;
    };
    api_a.put("/devices/gate-1", json!({})).await.ok(200);
    let endpoint_b = endpoint(&b.data_dir);
    let mut connection = connect_device(&endpoint_b, &api_a, "gate-1").await.unwrap();
    assert!(answers_ping(&mut connection).await);
    // Setting the same keys again changes nothing: the connection stays.
    const KEYS_1: [&str; 2] = [
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
    ];
    const KEYS_7: [&str; 2] = [
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=",
    ];
    let keys = |[primary, secondary]: [&str; 2]| {
        json!({"type": "symmetricKey", "symmetricKey": {
            "primaryKey": primary, "secondaryKey": secondary,
        }})
    };
    api_a
        .put("/devices/gate-1/attestation", keys(KEYS_1))
        .await
        .ok(200);
    assert!(closed_within(&mut connection, Duration::from_secs(1)).await);
    let mut connection = connect_device(&endpoint_b, &api_a, "gate-1").await.unwrap();
    api_a
        .put("/devices/gate-1/attestation", keys(KEYS_1))
        .await
        .ok(200);
    assert!(
        !closed_within(&mut connection, Duration::from_millis(500)).await,
        "unchanged credentials closed the connection"
    );
    // New keys through A close the connection made on B with the old ones.
    api_a
        .put("/devices/gate-1/attestation", keys(KEYS_7))
        .await
        .ok(200);
    assert!(
        closed_within(&mut connection, Duration::from_secs(1)).await,
        "the connection made with revoked keys stayed open on the other server"
    );
    let refused = connect_with_key(&endpoint_b, "gate-1", KEYS_1[0]).await;
    assert!(
        matches!(refused, Err(ConnectError::Refused(_))),
        "{:?}",
        refused.err()
    );
    let mut connection = connect_device(&endpoint_b, &api_a, "gate-1").await.unwrap();
    assert!(answers_ping(&mut connection).await);
    // Removing the individual attestation is a change of credentials too.
    api_a.delete("/devices/gate-1/attestation").await.ok(204);
    assert!(closed_within(&mut connection, Duration::from_secs(1)).await);
    drop(a);
}

#[tokio::test]
async fn a_device_connecting_to_one_server_then_the_other_keeps_the_newest_connection() {
    let Some((a, b, api_a, _api_b)) = cluster().await else {
        return;
    };
    api_a.put("/devices/mover", json!({})).await.ok(200);
    let mut first = connect_device(&endpoint(a.data_dir()), &api_a, "mover")
        .await
        .unwrap();
    assert!(answers_ping(&mut first).await);
    let mut second = connect_device(&endpoint(&b.data_dir), &api_a, "mover")
        .await
        .unwrap();
    assert!(
        closed_within(&mut first, Duration::from_secs(1)).await,
        "the older connection stayed open"
    );
    assert!(
        answers_ping(&mut second).await,
        "the newest connection was closed"
    );
    // And back: the server the device left closes nothing it no longer holds.
    let mut third = connect_device(&endpoint(a.data_dir()), &api_a, "mover")
        .await
        .unwrap();
    assert!(closed_within(&mut second, Duration::from_secs(1)).await);
    assert!(answers_ping(&mut third).await);
}

#[tokio::test]
async fn a_token_deleted_on_one_server_is_refused_on_the_other_at_once() {
    let Some((_a, b, api_a, _api_b)) = cluster().await else {
        return;
    };
    let token = api_a.create_token("short-lived", OPERATOR).await;
    let on_b = b.client(&token);
    on_b.get("/devices").await.ok(200);
    api_a.delete("/apiTokens/short-lived").await;
    let refused = on_b.get("/devices").await;
    assert_eq!(refused.status, 401, "{}", refused.text);
}

/// Both servers run jobs; whichever finishes one, the other answers the same at once (each
/// read the job while it ran, so a cache on either would still hold the running job).
#[tokio::test]
async fn a_job_that_finishes_on_one_server_is_finished_on_the_other_at_once() {
    let Some((_a, _b, api_a, api_b)) =
        cluster_with(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "2")]).await
    else {
        return;
    };
    api_a
        .publish_template(CONTROLLER, controller_template())
        .await;
    for i in 0..3 {
        api_a
            .put(&format!("/devices/tc-{i}"), json!({"template": CONTROLLER}))
            .await
            .ok(200);
    }
    api_a
        .put(
            "/deviceGroups/all",
            json!({"displayName": "all", "filter": "SELECT * FROM devices"}),
        )
        .await
        .ok(200);
    // Offline devices: the job runs until their deadline (2 s), then finishes.
    api_a
        .put(
            "/jobs/temperature",
            json!({"displayName": "Set temperature", "group": "all",
                   "data": [{"type": "PropertyJobData", "target": CONTROLLER,
                             "path": "thermostat1.targetTemperature", "value": "55"}]}),
        )
        .await
        .ok(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = |job: &Value| matches!(job["status"].as_str(), Some("pending" | "running"));
    let finished = loop {
        let on_a = api_a.get("/jobs/temperature").await.ok(200).clone();
        let on_b = api_b.get("/jobs/temperature").await.ok(200).clone();
        if !running(&on_a) {
            break (on_a, api_b.get("/jobs/temperature").await);
        }
        if !running(&on_b) {
            break (on_b, api_a.get("/jobs/temperature").await);
        }
        assert!(Instant::now() < deadline, "the job never finished: {on_a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (first, other) = finished;
    assert_eq!(other.ok(200)["status"], first["status"], "{}", other.text);
    assert_eq!(other.body["progress"], first["progress"], "{}", other.text);
}

/// A command for a device whose server died is answered when that server's lease runs out
/// (10 s), not after the command's 30 s response timeout.
#[tokio::test]
async fn a_command_for_a_device_on_a_dead_server_is_answered_within_the_lease() {
    let Some((a, mut b, api_a, _api_b)) = cluster().await else {
        return;
    };
    api_a
        .publish_template(THERMOSTAT, thermostat_template())
        .await;
    api_a
        .put("/devices/stranded", json!({"template": THERMOSTAT}))
        .await
        .ok(200);
    let mut connection = connect_device(&endpoint(&b.data_dir), &api_a, "stranded")
        .await
        .unwrap();
    assert!(answers_ping(&mut connection).await);
    // Presence is written just after the connect: wait until B holds the device.
    let database = sqlx::PgPool::connect(&a.database_url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sqlx::query("SELECT 1 FROM device_connections WHERE device_id = 'stranded'")
        .fetch_optional(&database)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the connection was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill();
    let started = Instant::now();
    api_a
        .post(
            "/devices/stranded/commands/getMaxMinReport",
            json!({"connectionTimeout": 0, "responseTimeout": 30}),
        )
        .await
        .error(404, "DeviceNotOnline");
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_secs(1) && waited < Duration::from_secs(13),
        "answered after {waited:?}"
    );
    database.close().await;
}
