//! The REST API's listeners, plain HTTP and HTTPS: an accept loop of our own rather than
//! `axum::serve`, for what a server facing unauthenticated clients needs and that lacks: caps
//! on connections (`admission`), one deadline for a TLS handshake and for each request head
//! (which also closes idle keep-alive connections), and TLS itself.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use flotilla_api::origin::ServedOverTls;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{Admitted, ConnectionCaps, Held};

/// What every connection of a listener is held to.
#[derive(Clone)]
pub struct Limits {
    pub caps: ConnectionCaps,
    /// From accepting a connection, or from answering a request on it, until the next request's
    /// head has arrived (a TLS handshake included): a slow head and an idle connection alike
    /// are closed past it.
    pub head_timeout: Duration,
}

/// Serves `app` on the connections `listener` accepts (in TLS with `tls`) until `shutdown`
/// resolves; then stops accepting and waits for the requests in progress to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a cap, the socket is closed at once: the client learns it now, and holds
        // nothing of ours.
        let Some(admitted) = limits.caps.admit(peer.ip()) else {
            tracing::debug!(%peer, "API connection refused: too many connections");
            continue;
        };
        // TCP_NODELAY, as on the device listener: a response written in two pieces would
        // otherwise wait for the client's delayed ACK.
        let _ = socket.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            peer,
            head_timeout: limits.head_timeout,
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(socket, admitted, false).await,
                Some(tls) => connection.serve_tls(tls, socket, admitted).await,
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection, and what serving it needs.
struct Connection {
    app: Router,
    peer: SocketAddr,
    head_timeout: Duration,
    watcher: Watcher,
}

impl Connection {
    async fn serve_tls(self, tls: TlsAcceptor, socket: TcpStream, admitted: Admitted) {
        match tokio::time::timeout(self.head_timeout, tls.accept(socket)).await {
            Ok(Ok(stream)) => self.serve(stream, admitted, true).await,
            _ => tracing::debug!(peer = %self.peer, "HTTPS handshake failed or timed out"),
        }
    }

    /// HTTP/1.1 only: no client is offered HTTP/2 (TLS advertises no ALPN), and HTTP/2 spoken
    /// unasked would escape the head timeout, which only HTTP/1 has.
    async fn serve<T>(self, io: T, admitted: Admitted, over_tls: bool)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.head_timeout);
        // The peer's address tells `origin` whether to believe its X-Forwarded-* headers; the
        // TLS mark makes its links https.
        let peer = self.peer;
        let app = self.app.map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if over_tls {
                request.extensions_mut().insert(ServedOverTls);
            }
            request
        });
        let connection = builder.serve_connection_with_upgrades(
            TokioIo::new(Held::new(io, admitted)),
            TowerToHyperService::new(app),
        );
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!(peer = %self.peer, error = %e, "API connection ended with an error");
        }
    }
}
