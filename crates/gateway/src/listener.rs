//! The MQTT-over-TLS listener: accept, TLS handshake, then one task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::connection::{self, CONNECT_TIMEOUT};
use crate::hub::Hub;

/// Binds the listener (so the caller learns the address, or the error, at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until the task is dropped, at most `max_connections` open at once (past
/// it, a new connection is closed at once, so the open files it would take stay free). The
/// listener and every connection run on the device runtime (`runtime::devices`), whichever
/// runtime calls this.
pub async fn run(listener: TcpListener, tls: Arc<ServerConfig>, hub: Hub, max_connections: usize) {
    // A socket belongs to the runtime it was registered with: register it with the device
    // runtime's, so readiness comes from that runtime's own reactor.
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(e) => return tracing::error!(error = %e, "the device listener failed"),
    };
    let accepting = crate::runtime::devices().spawn(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => accept(listener, tls, hub, max_connections).await,
            Err(e) => tracing::error!(error = %e, "the device listener failed"),
        }
    });
    let mut accepting = crate::runtime::AbortOnDrop(accepting);
    let _ = (&mut accepting.0).await;
}

async fn accept(listener: TcpListener, tls: Arc<ServerConfig>, hub: Hub, max_connections: usize) {
    let acceptor = TlsAcceptor::from(tls);
    let open = Arc::new(Semaphore::new(max_connections));
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
        let Ok(place) = open.clone().try_acquire_owned() else {
            crate::meters::refused(crate::meters::Refusal::ConnectionCap);
            tracing::debug!(%peer, "device connection refused: too many connections");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            handshake_and_serve(acceptor, socket, peer, hub).await;
            drop(place);
        });
    }
}

pub(crate) async fn handshake_and_serve(
    acceptor: TlsAcceptor,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    hub: Hub,
) {
    // The handshake's state, and then the TLS stream, live on the heap: held inline, they
    // would make this task (memory per idle device) as large as the largest of them for the
    // connection's whole life.
    let handshake = Box::pin(tokio::time::timeout(
        CONNECT_TIMEOUT,
        acceptor.accept(socket),
    ));
    let stream = match handshake.await {
        Ok(Ok(stream)) => Box::new(stream),
        Ok(Err(e)) => {
            crate::meters::refused(crate::meters::Refusal::TlsHandshake);
            return tracing::info!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            crate::meters::refused(crate::meters::Refusal::TlsHandshake);
            return tracing::info!(%peer, "TLS handshake timed out");
        }
    };
    connection::serve(stream, hub, peer.to_string()).await
}
