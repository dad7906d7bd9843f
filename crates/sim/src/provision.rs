//! DPS registration over MQTT, as the device SDKs do it: CONNECT as
//! `{idScope}/registrations/{id}/api-version=2019-03-31`, subscribe `$dps/registrations/res/#`,
//! PUT `iotdps-register`, poll `iotdps-get-operationstatus` while the answer is 202
//! `assigning`, and DISCONNECT once `assigned`.

use std::time::Duration;

use bytes::Bytes;
use flotilla_iothub::sas::{percent_encode, sign};
use flotilla_iothub::topics;
use rumqttc::{Packet, QoS};
use serde_json::{Value, json};

use crate::config::Credential;
use crate::mqtt::{self, ConnectError, ConnectOptions, Connection, Endpoint, ReadError};

/// The answer to a registration, as the device uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub assigned_hub: String,
    pub device_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("connection lost: {0}")]
    Read(#[from] ReadError),
    #[error("sending: {0}")]
    Write(#[from] std::io::Error),
    #[error("registration {status}: {message}")]
    Failed { status: u16, message: String },
    #[error("no answer from DPS within {0:?}")]
    Timeout(Duration),
    #[error("the device key is not valid base64")]
    BadKey,
}

/// A whole registration must finish within this.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Polls and 429 retries before giving up.
const MAX_ROUNDS: u32 = 30;

pub async fn register(
    endpoint: &Endpoint,
    device: &Credential,
    id_scope: &str,
    model: Option<&str>,
    options: &RegisterOptions,
) -> Result<Assignment, ProvisionError> {
    let id = &device.device_id;
    let expiry = now_secs() + options.sas_ttl.as_secs() as i64;
    let resource = format!("{id_scope}/registrations/{id}");
    let password =
        sign(&percent_encode(&resource), &device.key, expiry).ok_or(ProvisionError::BadKey)?;
    let username = format!("{id_scope}/registrations/{id}/api-version=2019-03-31");
    let connect = ConnectOptions {
        client_id: id,
        username: &username,
        password: &password,
        // Python sends 0, Node 1; DPS ignores it.
        clean_session: false,
        keep_alive: options.keep_alive,
        source: options.source,
    };
    let (mut connection, _) = mqtt::connect(endpoint, &connect).await?;
    let result = tokio::time::timeout(REGISTRATION_TIMEOUT, converse(&mut connection, id, model))
        .await
        .unwrap_or(Err(ProvisionError::Timeout(REGISTRATION_TIMEOUT)));
    connection.disconnect().await;
    result
}

/// Connection details a registration shares with the hub connection that follows.
pub struct RegisterOptions {
    pub keep_alive: Duration,
    pub sas_ttl: Duration,
    pub source: Option<std::net::IpAddr>,
}

async fn converse(
    connection: &mut Connection,
    registration_id: &str,
    model: Option<&str>,
) -> Result<Assignment, ProvisionError> {
    let body = json!({
        "registrationId": registration_id,
        "payload": model.map(|m| json!({"modelId": m})),
    });
    let mut rid = 1u32;
    // Subscribe and register in one write: the server handles a connection's packets in order.
    let subscribe = connection.subscribe_packet(&[topics::DPS_RESPONSES], QoS::AtLeastOnce);
    let publish = connection.publish_packet(
        topics::device::dps_register(rid),
        Bytes::from(body.to_string()),
        1,
    );
    connection.send_all(&[subscribe, publish]).await?;
    for _ in 0..MAX_ROUNDS {
        let (status, retry_after, answer) = loop {
            let Packet::Publish(publish) = connection.read().await? else {
                continue;
            };
            if let Some(ack) = Connection::puback_for(&publish) {
                connection.send(ack).await?;
            }
            if mqtt::topic_param(&publish.topic, "$rid") != Some(rid.to_string()) {
                continue;
            }
            let status: u16 = mqtt::topic_segment(&publish.topic, 3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let retry_after = mqtt::topic_param(&publish.topic, "retry-after")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs);
            let answer: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
            break (status, retry_after, answer);
        };
        let state = answer.get("status").and_then(Value::as_str).unwrap_or("");
        rid += 1;
        if status < 300 && state == "assigned" {
            let registration = &answer["registrationState"];
            let text = |key: &str| registration.get(key).and_then(Value::as_str);
            return Ok(Assignment {
                assigned_hub: text("assignedHub").unwrap_or_default().to_string(),
                device_id: text("deviceId").unwrap_or(registration_id).to_string(),
            });
        }
        if status == 202 || (status < 300 && state == "assigning") {
            // Still assigning: poll the operation after the time the server asked for.
            let Some(operation) = answer.get("operationId").and_then(Value::as_str) else {
                return Err(failed(status, "an 'assigning' answer without operationId"));
            };
            tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(2))).await;
            let topic = topics::device::dps_poll(rid, operation);
            let poll = connection.publish_packet(topic, Bytes::from_static(b" "), 1);
            connection.send(poll).await?;
        } else if status >= 429 {
            // Throttled or a server error: register again later, as the SDKs do.
            tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(2))).await;
            let again = connection.publish_packet(
                topics::device::dps_register(rid),
                Bytes::from(body.to_string()),
                1,
            );
            connection.send(again).await?;
        } else {
            let message = answer
                .pointer("/registrationState/errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("status '{state}': {answer}"));
            return Err(ProvisionError::Failed { status, message });
        }
    }
    Err(failed(0, "still not assigned after many polls"))
}

fn failed(status: u16, message: &str) -> ProvisionError {
    ProvisionError::Failed {
        status,
        message: message.to_string(),
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
