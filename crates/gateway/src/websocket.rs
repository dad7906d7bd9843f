//! MQTT over WebSockets (`/$iothub/websocket`, subprotocol `mqtt`), as IoT Hub serves it on 443:
//! the WebSocket's binary messages carry the MQTT byte stream, which is bridged into the same
//! connection handling as MQTT over TLS.

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, WebSocket};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connection;
use crate::hub::Hub;

/// The subprotocol MQTT clients ask for.
const SUBPROTOCOL: &str = "mqtt";

/// The largest WebSocket message or frame taken from a client: the largest MQTT packet the
/// gateway takes, as a client sends one packet per message. Without it, tungstenite would buffer
/// up to 64 MiB from a client that has not yet even sent CONNECT.
pub const MAX_MESSAGE_BYTES: usize = connection::MAX_PACKET;

/// Accepts a WebSocket upgrade for MQTT, served as one MQTT connection.
pub fn accept(upgrade: WebSocketUpgrade, hub: Hub) -> Response {
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, hub, "websocket".into()))
}

/// Serves an upgraded WebSocket as one MQTT connection.
async fn serve(socket: WebSocket, hub: Hub, peer: String) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let connection = tokio::spawn(connection::serve(theirs, hub, peer));
    let (mut from_mqtt, mut to_mqtt) = tokio::io::split(ours);
    let (mut sink, mut stream) = socket.split();
    let inbound = async move {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) if to_mqtt.write_all(&bytes).await.is_err() => break,
                Message::Close(_) => break,
                // Pings are answered by the WebSocket layer; MQTT never travels as text.
                _ => {}
            }
        }
        let _ = to_mqtt.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match from_mqtt.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = Message::Binary(buffer[..n].to_vec().into());
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    // Either side ending ends the bridge (a vanished client must not hold it open).
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
    let _ = connection.await;
}
