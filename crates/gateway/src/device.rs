//! What a connected client's publishes do: twin reads and reported-property writes, method
//! responses and telemetry for a device; registration for a DPS client.

use bytes::Bytes;
use rumqttc::Publish;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::Identity;
use crate::device_log::{Untrusted, WarnBudget};
use crate::hub::{Hub, Outgoing};
use crate::topics::{self, Inbound, parse_publish};

/// The per-connection state a client's publishes act on.
pub struct DeviceSession {
    hub: Hub,
    identity: Identity,
    tx: mpsc::Sender<Outgoing>,
    /// The last DPS registration's result, for status polls.
    registration: Option<Value>,
    /// The warnings this connection's packets may still write.
    pub warnings: WarnBudget,
}

impl DeviceSession {
    pub fn new(hub: Hub, identity: Identity, tx: mpsc::Sender<Outgoing>) -> Self {
        DeviceSession {
            hub,
            identity,
            tx,
            registration: None,
            warnings: WarnBudget::new(),
        }
    }

    async fn send(&self, topic: String, payload: Value) {
        let payload = if payload.is_null() {
            Bytes::new()
        } else {
            Bytes::from(payload.to_string())
        };
        // Never wait on a client that stopped reading: the reader would stall with it (its next
        // acknowledgement finds the queue full and closes the connection).
        let _ = self.tx.try_send(Outgoing::Publish {
            topic,
            payload,
            qos: 0,
        });
    }

    /// Handles one publish; `false` when the topic is not one this client may publish to.
    pub async fn handle_publish(&mut self, publish: Publish) -> bool {
        let client_id = self.identity.client_id().to_string();
        let Some(inbound) = parse_publish(&publish.topic, &client_id) else {
            tracing::warn!(client = ?Untrusted(&client_id), topic = ?Untrusted(&publish.topic), "refused a publish to a topic the client may not use");
            return false;
        };
        let is_device = matches!(self.identity, Identity::Device { .. });
        match inbound {
            Inbound::TwinGet { rid } if is_device => self.twin_get(&client_id, &rid).await,
            Inbound::ReportedPatch { rid } if is_device => {
                self.reported_patch(&client_id, &rid, &publish.payload)
                    .await
            }
            Inbound::MethodResponse { status, rid } if is_device => {
                let payload = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                self.hub.method_response(&client_id, &rid, status, payload);
            }
            Inbound::Telemetry { properties } if is_device => {
                self.telemetry(&client_id, &properties, &publish.payload)
                    .await
            }
            Inbound::DpsRegister { rid } if !is_device => {
                self.register(&client_id, &rid, &publish.payload).await
            }
            Inbound::DpsPoll { rid, .. } if !is_device => {
                let result = self.registration.clone().unwrap_or(Value::Null);
                let status = if result.is_null() { 404 } else { 200 };
                self.send(topics::dps_response(status, &rid, None), result)
                    .await;
            }
            _ => {
                tracing::warn!(client = ?Untrusted(&client_id), topic = ?Untrusted(&publish.topic), "refused a publish of the other protocol");
                return false;
            }
        }
        true
    }

    async fn twin_get(&self, device_id: &str, rid: &str) {
        match self.hub.store().twin(device_id).await {
            Ok(Some(twin)) => {
                self.send(topics::twin_response(200, rid, None), twin.document())
                    .await
            }
            Ok(None) => {
                self.send(topics::twin_response(404, rid, None), json!({}))
                    .await
            }
            Err(e) => {
                tracing::error!(error = %e, "reading a twin failed");
                self.send(topics::twin_response(500, rid, None), json!({}))
                    .await
            }
        }
    }

    async fn reported_patch(&self, device_id: &str, rid: &str, payload: &[u8]) {
        let patch: Value = match serde_json::from_slice(payload) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return self
                    .send(topics::twin_response(400, rid, None), Value::Null)
                    .await;
            }
        };
        match self.hub.store().patch_reported(device_id, &patch).await {
            Ok((version, reported)) => {
                self.send(topics::twin_response(204, rid, Some(version)), Value::Null)
                    .await;
                self.hub.reported_changed(device_id, version, reported);
            }
            Err(e) => {
                tracing::error!(error = %e, "writing reported properties failed");
                self.send(topics::twin_response(500, rid, None), Value::Null)
                    .await
            }
        }
    }

    /// Keeps the last value of each telemetry; a component's telemetry carries `$.sub`.
    async fn telemetry(&self, device_id: &str, properties: &[(String, String)], payload: &[u8]) {
        let Ok(Value::Object(values)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let component = properties
            .iter()
            .find(|(k, _)| k == "$.sub")
            .map(|(_, v)| v.as_str());
        let now = jiff::Timestamp::now().as_millisecond();
        if let Err(e) = self
            .hub
            .store()
            .record_telemetry(device_id, component, &values, now)
            .await
        {
            tracing::error!(error = %e, "recording telemetry failed");
        }
    }

    /// DPS registration: an unknown device of an enrollment group is created (its template from
    /// the payload's `modelId` when that template exists), and the device is marked provisioned.
    async fn register(&mut self, registration_id: &str, rid: &str, payload: &[u8]) {
        let body: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let model_id = body
            .pointer("/payload/modelId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let store = self.hub.store();
        let template = match &model_id {
            Some(model) => match store.template_exists(model).await {
                Ok(true) => Some(model.clone()),
                _ => None,
            },
            None => None,
        };
        let now = jiff::Timestamp::now();
        let result = async {
            if let Identity::Registration { exists: false, .. } = self.identity {
                flotilla_model::ids::check_device_id(registration_id).map_err(|e| e.message)?;
                let device = flotilla_model::device::Device {
                    id: registration_id.to_string(),
                    etag: flotilla_model::new_etag(),
                    display_name: registration_id.to_string(),
                    template: template.clone(),
                    enabled: true,
                    provisioned: false,
                    simulated: false,
                    organizations: vec![],
                };
                match store.insert_device(&device).await {
                    Ok(()) | Err(flotilla_store::StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            store
                .set_provisioned(registration_id, template.as_deref())
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let operation_id = format!("{}.{}", self.hub.id_scope(), uuid::Uuid::new_v4());
        let time = flotilla_model::api_token::format_time(now);
        let (status, response) = match result {
            Ok(()) => (
                200,
                json!({
                    "operationId": operation_id,
                    "status": "assigned",
                    "registrationState": {
                        "registrationId": registration_id,
                        "createdDateTimeUtc": time,
                        "assignedHub": self.hub.assigned_hub(),
                        "deviceId": registration_id,
                        "status": "assigned",
                        "substatus": "initialAssignment",
                        "lastUpdatedDateTimeUtc": time,
                        "etag": flotilla_model::new_etag(),
                        "payload": Value::Null,
                    }
                }),
            ),
            Err(message) => {
                if self.warnings.allow(registration_id) {
                    tracing::warn!(registration = ?Untrusted(registration_id), message = ?Untrusted(&message), "registration failed");
                }
                (
                    400,
                    json!({
                        "operationId": operation_id,
                        "status": "failed",
                        "registrationState": {
                            "registrationId": registration_id,
                            "status": "failed",
                            "errorCode": 400,
                            "errorMessage": message,
                        }
                    }),
                )
            }
        };
        if status == 200 {
            tracing::info!(registration = ?Untrusted(registration_id), model = ?model_id.as_deref().map(Untrusted), "device provisioned");
        }
        self.registration = Some(response.clone());
        self.send(topics::dps_response(status, rid, None), response)
            .await;
    }
}
