//! The HTTPS listener: the REST API over TLS, and MQTT over WebSockets at `/$iothub/websocket`
//! (IoT Hub's port 443 endpoint, which the SDKs use with `websockets=True`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, WebSocketUpgrade};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt;

use flotilla_api::origin::ServedOverTls;
use flotilla_gateway::{Hub, websocket};

/// The REST application plus the WebSocket endpoint for devices.
pub fn app(rest: Router, hub: Hub) -> Router {
    rest.route(
        "/$iothub/websocket",
        get(move |upgrade: WebSocketUpgrade| async move {
            upgrade
                .protocols([websocket::SUBPROTOCOL])
                .on_upgrade(move |socket| websocket::serve(socket, hub, "websocket".into()))
        }),
    )
}

/// Accepts TLS connections and serves `app` on each (HTTP/1.1 and HTTP/2, with upgrades).
pub async fn run(listener: TcpListener, tls: Arc<ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (socket, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        // What the plain listener's connect info gives, plus the mark that makes links https.
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(ServedOverTls);
                request
            },
        ));
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(
                Duration::from_secs(10),
                acceptor.accept(socket),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                _ => return tracing::info!(%peer, "HTTPS handshake failed or timed out"),
            };
            let served = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
}
