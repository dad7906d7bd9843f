//! The device endpoint byte by byte: MQTT 3.1.1 packets written by hand to the gateway's
//! connection handler (served in-process over an in-memory stream, as it serves a connection
//! after TLS), and its answers checked to the byte.

use std::time::Duration;

use flotilla_testkit::TestServer;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How long an answer may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: [u8; 2] = [0xD0, 0x00];

/// A device created through the API, and its primary key.
async fn device(server: &TestServer, id: &str) -> String {
    let (status, _) = server
        .api
        .request(Method::PUT, &format!("/devices/{id}"), Some(&json!({})))
        .await;
    assert_eq!(status, 200);
    let (status, credentials) = server
        .api
        .request(Method::GET, &format!("/devices/{id}/credentials"), None)
        .await;
    assert_eq!(status, 200);
    credentials["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A SAS token for the device, signed with `key`, valid for an hour.
fn sas(device_id: &str, key: &str) -> String {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    flotilla_iothub::sas::sign(&format!("localhost/devices/{device_id}"), key, expiry).unwrap()
}

/// A UTF-8 string as MQTT encodes it: two length bytes, then the bytes.
fn mqtt_string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// A packet: the first byte, the remaining length (one byte: the packets here are short), the rest.
fn packet(first: u8, rest: &[u8]) -> Vec<u8> {
    assert!(rest.len() < 128);
    let mut out = vec![first, rest.len() as u8];
    out.extend_from_slice(rest);
    out
}

/// CONNECT with clean session, a 60 s keep-alive, a username and a password (flags 0xC2).
fn connect(client_id: &str, password: &str) -> Vec<u8> {
    let mut rest = mqtt_string("MQTT");
    rest.extend_from_slice(&[4, 0xC2, 0x00, 60]);
    rest.extend(mqtt_string(client_id));
    rest.extend(mqtt_string(&format!(
        "localhost/{client_id}/?api-version=2021-04-12"
    )));
    rest.extend(mqtt_string(password));
    // A SAS token is longer than one length byte allows: encode the remaining length in full.
    let mut out = vec![0x10];
    let mut length = rest.len();
    loop {
        let byte = (length % 128) as u8;
        length /= 128;
        out.push(if length > 0 { byte | 0x80 } else { byte });
        if length == 0 {
            break;
        }
    }
    out.extend(rest);
    out
}

/// Reads exactly `n` bytes.
async fn read(stream: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    tokio::time::timeout(WAIT, stream.read_exact(&mut out))
        .await
        .expect("an answer in time")
        .expect("the answer's bytes");
    out
}

/// Whether the server closed the connection (and sent nothing more).
async fn closed(stream: &mut DuplexStream) -> bool {
    let mut byte = [0; 1];
    matches!(
        tokio::time::timeout(WAIT, stream.read(&mut byte)).await,
        Ok(Ok(0))
    )
}

/// A device connected with a valid token, its CONNACK read.
async fn connected(server: &TestServer, id: &str) -> DuplexStream {
    let key = device(server, id).await;
    let mut stream = server.connect_device();
    stream
        .write_all(&connect(id, &sas(id, &key)))
        .await
        .unwrap();
    assert_eq!(read(&mut stream, 4).await, [0x20, 0x02, 0x00, 0x00]);
    stream
}

#[tokio::test]
async fn a_valid_sas_gets_connack_0_and_pingreq_gets_pingresp() {
    let server = TestServer::start().await;
    let mut stream = connected(&server, "raw-ok").await;
    stream.write_all(&PINGREQ).await.unwrap();
    assert_eq!(read(&mut stream, 2).await, PINGRESP);
    // DISCONNECT ends the connection.
    stream.write_all(&[0xE0, 0x00]).await.unwrap();
    assert!(closed(&mut stream).await);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_signature_gets_connack_4_and_an_unknown_device_connack_5() {
    let server = TestServer::start().await;
    device(&server, "raw-bad").await;
    let other_key = device(&server, "raw-other").await;
    let mut stream = server.connect_device();
    stream
        .write_all(&connect("raw-bad", &sas("raw-bad", &other_key)))
        .await
        .unwrap();
    // Bad user name or password, and the connection closes.
    assert_eq!(read(&mut stream, 4).await, [0x20, 0x02, 0x00, 0x04]);
    assert!(closed(&mut stream).await);

    let mut stream = server.connect_device();
    stream
        .write_all(&connect("raw-nobody", &sas("raw-nobody", &other_key)))
        .await
        .unwrap();
    // Not authorized: no such device.
    assert_eq!(read(&mut stream, 4).await, [0x20, 0x02, 0x00, 0x05]);
    assert!(closed(&mut stream).await);
    server.stop().await;
}

#[tokio::test]
async fn wrong_reserved_bits_close_the_connection() {
    let server = TestServer::start().await;
    let mut stream = connected(&server, "raw-reserved").await;
    // PINGREQ's flags must be 0.
    stream.write_all(&[0xC1, 0x00]).await.unwrap();
    assert!(closed(&mut stream).await);

    // SUBSCRIBE's must be 0b0010.
    let mut stream = connected(&server, "raw-reserved-2").await;
    let mut rest = vec![0x00, 0x01];
    rest.extend(mqtt_string("$iothub/twin/res/#"));
    rest.push(0);
    stream.write_all(&packet(0x80, &rest)).await.unwrap();
    assert!(closed(&mut stream).await);
    server.stop().await;
}

#[tokio::test]
async fn subscribe_answers_each_filter_and_refuses_topics_the_device_may_not_use() {
    let server = TestServer::start().await;
    let mut stream = connected(&server, "raw-sub").await;
    let mut rest = vec![0x00, 0x07];
    for (filter, qos) in [
        ("$iothub/twin/res/#", 0),
        ("devices/someone-else/messages/devicebound/#", 1),
        ("$iothub/methods/POST/#", 1),
    ] {
        rest.extend(mqtt_string(filter));
        rest.push(qos);
    }
    stream.write_all(&packet(0x82, &rest)).await.unwrap();
    // SUBACK for packet 7: QoS 0 granted, 0x80 refused, QoS 1 granted.
    assert_eq!(
        read(&mut stream, 7).await,
        [0x90, 0x05, 0x00, 0x07, 0x00, 0x80, 0x01]
    );
    // The connection stays open.
    stream.write_all(&PINGREQ).await.unwrap();
    assert_eq!(read(&mut stream, 2).await, PINGRESP);
    server.stop().await;
}
