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

/// Accepts connections until the task is dropped. The listener and every connection run on
/// the device runtime (`runtime::devices`), whichever runtime calls this.
pub async fn run(listener: TcpListener, tls: Arc<ServerConfig>, hub: Hub) {
    // A socket belongs to the runtime it was registered with: register it with the device
    // runtime's, so readiness comes from that runtime's own reactor.
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(e) => return tracing::error!(error = %e, "the device listener failed"),
    };
    let accepting = crate::runtime::devices().spawn(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => accept(listener, tls, hub).await,
            Err(e) => tracing::error!(error = %e, "the device listener failed"),
        }
    });
    let mut accepting = crate::runtime::AbortOnDrop(accepting);
    let _ = (&mut accepting.0).await;
}

async fn accept(listener: TcpListener, tls: Arc<ServerConfig>, hub: Hub) {
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
        Ok(Err(e)) => return tracing::info!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => return tracing::info!(%peer, "TLS handshake timed out"),
    };
    connection::serve(stream, hub, peer.to_string()).await
}
