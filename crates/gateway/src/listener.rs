//! The MQTT-over-TLS listener: accept, TLS handshake, then one task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::connection::{self, CONNECT_TIMEOUT};
use crate::hub::Hub;

/// Binds the listener (so the caller learns the address, or the error, at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until the task is dropped.
pub async fn run(listener: TcpListener, tls: Arc<ServerConfig>, hub: Hub) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            handshake_and_serve(acceptor, socket, peer, hub).await;
        });
    }
}

async fn handshake_and_serve(
    acceptor: TlsAcceptor,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    hub: Hub,
) {
    match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => connection::serve(stream, hub, peer.to_string()).await,
        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
    }
}
