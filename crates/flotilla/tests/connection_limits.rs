//! Clients without credentials cannot exhaust the server's open files or memory: connection caps
//! (in total and per client address) with descriptors kept in reserve for devices, a timeout on
//! request heads and idle keep-alive connections, bounded WebSocket messages, and a memory
//! budget for request bodies. The servers here run at a lowered open-file limit, so a few
//! hundred sockets reach the caps.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use flotilla_sim::mqtt::{self, ConnectError, ConnectOptions, Endpoint};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// The servers' open-file limit (soft and hard).
const OPEN_FILES: u64 = 256;

/// Long enough for any answer on a loaded machine; only a hung server takes it.
const PATIENCE: Duration = Duration::from_secs(15);

/// A server at [`OPEN_FILES`], with request heads and idle connections given one second.
async fn limited_server() -> Server {
    Server::start_with_open_file_limit(OPEN_FILES, &[("FLOTILLA_HTTP_HEAD_TIMEOUT_SECS", "1")])
        .await
}

fn bound(server: &Server, listener: &str) -> SocketAddr {
    std::fs::read_to_string(server.data_dir().join(format!("{listener}.addr")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection from `source` to `addr`, or `None` if it cannot even be made.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    tokio::time::timeout(PATIENCE, socket.connect(addr))
        .await
        .ok()?
        .ok()
}

/// `count` idle connections from `source`, each opened and left without a byte sent.
async fn idle_connections(source: IpAddr, addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.extend(connect_from(source, addr).await);
    }
    held
}

/// A client of the REST API over plain HTTP whose connections come from `source`.
fn api_from(server: &Server, source: IpAddr) -> Api {
    Api {
        http: reqwest::Client::builder()
            .local_address(source)
            .timeout(PATIENCE)
            .build()
            .unwrap(),
        ..server.admin()
    }
}

/// TLS to the server, trusting its development CA.
async fn tls_from(server: &Server, source: IpAddr, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = connect_from(source, addr).await.expect("TCP connects");
    let connector = flotilla_sim::tls::connector(&server.data_dir().join("ca.pem")).unwrap();
    let name = flotilla_sim::tls::server_name("localhost").unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("the TLS handshake finishes")
        .expect("the TLS handshake succeeds")
}

/// Sends one HTTP/1.1 request (closing the connection after it) and reads the whole answer.
async fn raw_exchange(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The REST API over HTTPS, from `source`: the status line of `GET /api/devices`.
async fn https_status_line(server: &Server, source: IpAddr) -> String {
    let mut stream = tls_from(server, source, bound(server, "https")).await;
    let request = format!(
        "GET /api/devices?api-version={STABLE} HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: {}\r\nConnection: close\r\n\r\n",
        server.admin_token
    );
    let answer = raw_exchange(&mut stream, &request).await;
    answer.lines().next().unwrap_or("").to_string()
}

/// Connects to the device endpoint over MQTT/TLS from `source` with credentials it refuses:
/// a CONNACK (of refusal) proves the endpoint accepted, handshook and served the connection.
async fn device_gets_connack(server: &Server, source: IpAddr) {
    let endpoint = Endpoint {
        addr: bound(server, "mqtt"),
        server_name: flotilla_sim::tls::server_name("localhost").unwrap(),
        tls: flotilla_sim::tls::connector(&server.data_dir().join("ca.pem")).unwrap(),
    };
    let options = ConnectOptions {
        client_id: "nobody",
        username: "localhost/nobody/?api-version=2021-04-12",
        password: "SharedAccessSignature sr=x&sig=y&se=1",
        clean_session: true,
        keep_alive: Duration::from_secs(60),
        source: Some(source),
    };
    match tokio::time::timeout(PATIENCE, mqtt::connect(&endpoint, &options)).await {
        Ok(Err(ConnectError::Refused(_))) => {}
        Ok(Ok(_)) => panic!("a device with a forged signature was accepted"),
        Ok(Err(e)) => panic!("the device endpoint did not answer CONNECT: {e}"),
        Err(_) => panic!("the device endpoint did not answer CONNECT in {PATIENCE:?}"),
    }
}

#[tokio::test]
async fn idle_connections_from_one_address_leave_the_api_and_devices_reachable() {
    let server = limited_server().await;
    // More idle sockets than the process may open files, on both REST listeners.
    let attacker = loopback(1);
    let _http = idle_connections(attacker, bound(&server, "http"), OPEN_FILES as usize).await;
    let _https = idle_connections(attacker, bound(&server, "https"), OPEN_FILES as usize).await;

    let client = loopback(2);
    api_from(&server, client).get("/devices").await.ok(200);
    assert_eq!(
        https_status_line(&server, client).await,
        "HTTP/1.1 200 OK",
        "the REST API over HTTPS"
    );
    device_gets_connack(&server, client).await;
}

#[tokio::test]
async fn a_full_connection_table_still_lets_devices_connect() {
    let server = limited_server().await;
    // Idle sockets from many addresses, a few each: more than the process may open files, past
    // the total cap but not the per-address one.
    let mut held = Vec::new();
    for last in 10..60 {
        held.extend(idle_connections(loopback(last), bound(&server, "http"), 6).await);
    }
    device_gets_connack(&server, loopback(2)).await;
    // Once they are gone, the API serves again.
    drop(held);
    let api = api_from(&server, loopback(2));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = api
            .request(reqwest::Method::GET, "/devices")
            .send()
            .await
            .map(|response| response.status());
        if let Ok(StatusCode::OK) = answer {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not recover: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the server closes `stream` while a request head is written to it a byte at a time.
async fn closed_while_trickling(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> bool {
    let head = b"GET /api/devices?api-version=2022-07-31 HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    for byte in head.iter().chain(std::iter::repeat(&b'a')) {
        if stream.write_all(&[*byte]).await.is_err() {
            return true;
        }
        let _ = stream.flush().await;
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Whatever the server says (a 408, say), it must then close.
            Ok(Ok(_)) | Err(_) => {}
        }
        if started.elapsed() > PATIENCE {
            return false;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn a_request_head_trickled_byte_by_byte_is_cut_off() {
    let server = limited_server().await;
    let mut plain = connect_from(loopback(1), bound(&server, "http"))
        .await
        .unwrap();
    assert!(closed_while_trickling(&mut plain).await, "over HTTP");
    let mut secure = tls_from(&server, loopback(1), bound(&server, "https")).await;
    assert!(closed_while_trickling(&mut secure).await, "over HTTPS");
}

/// Sends one request on a kept-alive connection, then waits for the server to close it.
async fn closed_when_idle(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) {
    stream
        .write_all(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        read.is_ok(),
        "the idle connection is still open after {PATIENCE:?}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let server = limited_server().await;
    let mut plain = connect_from(loopback(1), bound(&server, "http"))
        .await
        .unwrap();
    closed_when_idle(&mut plain).await;
    let mut secure = tls_from(&server, loopback(1), bound(&server, "https")).await;
    closed_when_idle(&mut secure).await;
}

/// The head of a binary WebSocket frame from a client, `length` long, masked with a zero key
/// (which leaves the payload as it is).
fn client_frame_head(final_frame: bool, length: u64) -> Vec<u8> {
    let mut head = vec![if final_frame { 0x82 } else { 0x02 }, 0x80 | 127];
    head.extend_from_slice(&length.to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]);
    head
}

/// An MQTT 3.1.1 CONNECT with a clean session, a user name and a password.
fn mqtt_connect(client_id: &str, username: &str, password: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    for field in [client_id, username, password] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut remaining = body.len();
    loop {
        let digit = (remaining % 128) as u8;
        remaining /= 128;
        packet.push(if remaining > 0 { digit | 0x80 } else { digit });
        if remaining == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}

#[tokio::test]
async fn an_oversized_websocket_frame_closes_the_connection() {
    let server = Server::start().await;
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let admin = server.admin();
    admin.put("/devices/ws-1", json!({})).await.ok(200);
    let attestation =
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}});
    admin
        .put("/devices/ws-1/attestation", attestation)
        .await
        .ok(200);

    let mut stream = tls_from(&server, loopback(1), bound(&server, "https")).await;
    stream
        .write_all(
            b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // The device connects (with a long keep-alive, so that nothing but the frame below could
    // end the connection in the test's time).
    let expiry = jiff::Timestamp::now().as_second() + 3600;
    let password = flotilla_gateway::sas::sign("localhost%2Fdevices%2Fws-1", key, expiry).unwrap();
    let connect = mqtt_connect(
        "ws-1",
        "localhost/ws-1/?api-version=2021-04-12",
        &password,
        1000,
    );
    let mut message = client_frame_head(true, connect.len() as u64);
    message.extend_from_slice(&connect);
    stream.write_all(&message).await.unwrap();
    let mut connack = [0u8; 6];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(
        connack,
        [0x82, 4, 0x20, 2, 0, 0],
        "a binary message holding CONNACK 0"
    );

    // A frame that says it carries 1 MiB (far past any MQTT packet the gateway takes), of
    // which half is sent: a server that buffers frames of that size waits for the rest.
    let length: u64 = 1024 * 1024;
    let mut frame = client_frame_head(false, length);
    frame.resize(frame.len() + (length / 2) as usize, 0);
    let _ = stream.write_all(&frame).await;
    let _ = stream.flush().await;

    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the connection is still open after {PATIENCE:?}"
    );
}

#[tokio::test]
async fn https_listens_on_loopback_unless_told_otherwise() {
    // The server is started without --https-addr, on SQLite whatever the suite's database.
    let data_dir = std::env::temp_dir().join(format!(
        "flotilla-test-https-default-{}",
        std::process::id()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .env("FLOTILLA_HTTP_ADDR", "127.0.0.1:0")
        .env("FLOTILLA_MQTT_ADDR", "127.0.0.1:0")
        .env_remove("FLOTILLA_HTTPS_ADDR")
        .env_remove("FLOTILLA_DATABASE_URL")
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = wait_for_file(&data_dir.join("http.addr")).await;
    let https = std::fs::read_to_string(data_dir.join("https.addr"));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert!(started, "the server did not start");
    // Without privileges for port 443, or with it taken, there is no HTTPS listener at all.
    if let Ok(https) = https {
        let https: SocketAddr = https.trim().parse().unwrap();
        assert!(https.ip().is_loopback(), "HTTPS bound {https}");
    }
}

async fn wait_for_file(path: &Path) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|text| !text.is_empty()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The peak resident memory of a process, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Removes the `request` of every command named `name` in a template, so that the command takes
/// any request.
fn without_request(template: &mut Value, name: &str) {
    match template {
        Value::Object(fields) => {
            if fields.get("name").and_then(Value::as_str) == Some(name) {
                fields.remove("request");
            }
            fields.values_mut().for_each(|v| without_request(v, name));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| without_request(v, name)),
        _ => {}
    }
}

#[tokio::test]
async fn concurrent_large_bodies_stay_within_a_memory_budget() {
    let server = Server::start().await;
    let api = server.admin();
    let mut template = thermostat_template();
    without_request(&mut template, "getMaxMinReport");
    api.publish_template(THERMOSTAT, template).await;
    api.put(
        "/devices/offline-1",
        json!({"displayName": "offline", "template": THERMOSTAT}),
    )
    .await
    .ok(200);
    // Each request is held a second, waiting for the device to connect, with its body parsed:
    // an array of a quarter of a million zeros (512 KiB, the densest JSON there is in values
    // per byte).
    let mut body = String::from(r#"{"connectionTimeout": 1, "request": ["#);
    while body.len() < 512 * 1024 {
        body.push_str("0,");
    }
    body.push_str("0]}");
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let request = api
            .request(
                reqwest::Method::POST,
                "/devices/offline-1/commands/getMaxMinReport",
            )
            .header("Content-Type", "application/json")
            .body(body.clone());
        requests.spawn(Api::send(request));
    }
    for answer in requests.join_all().await {
        answer.error(404, "DeviceNotOnline");
    }
    let peak = peak_memory(server.pid());
    assert!(
        peak < 400 * 1024 * 1024,
        "the server's peak memory was {} MiB",
        peak / (1024 * 1024)
    );
}
