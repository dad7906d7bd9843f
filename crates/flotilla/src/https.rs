//! The HTTPS listener's application: the REST API over TLS, and MQTT over WebSockets at
//! `/$iothub/websocket` (IoT Hub's port 443 endpoint, which the SDKs use with `websockets=True`).
//! `http_server` serves it.

use axum::Router;
use axum::extract::WebSocketUpgrade;
use axum::routing::get;

use flotilla_gateway::{Hub, websocket};

/// The REST application plus the WebSocket endpoint for devices.
pub fn app(rest: Router, hub: Hub) -> Router {
    rest.route(
        "/$iothub/websocket",
        get(move |upgrade: WebSocketUpgrade| async move { websocket::accept(upgrade, hub) }),
    )
}
