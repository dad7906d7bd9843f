//! Admission of the REST API's client connections: at most so many in total and so many from
//! one client address, so that no client can hold every socket the process may open. A
//! connection admitted carries its [`Admitted`] in its I/O ([`Held`]), so that it counts for as
//! long as the socket lives, through an upgrade to a WebSocket too.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The counts of open connections, shared by the listeners it is given to.
#[derive(Clone)]
pub struct ConnectionCaps(Arc<Caps>);

struct Caps {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<Client, usize>,
}

/// Connections refused by cap, as `/metrics` counts them (registered once: see `prometheus`).
struct Refused {
    total: metrics::Counter,
    per_address: metrics::Counter,
}

static REFUSED: std::sync::LazyLock<Refused> = std::sync::LazyLock::new(|| Refused {
    total: metrics::counter!("flotilla_connections_refused_total", "listener" => "http", "cause" => "connection_cap"),
    per_address: metrics::counter!("flotilla_connections_refused_total", "listener" => "http", "cause" => "per_address_cap"),
});

/// Who a client is, for the per-address cap: its IPv4 address, or the /64 prefix of its IPv6
/// address (one host commonly holds a whole /64).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Client {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Client::V4(v4.to_bits()),
            IpAddr::V6(v6) => Client::V6Prefix((v6.to_bits() >> 64) as u64),
        }
    }
}

/// An admitted connection's place in the counts, given back when dropped.
pub struct Admitted {
    caps: ConnectionCaps,
    client: Client,
}

impl ConnectionCaps {
    pub fn new(total: usize, per_address: usize) -> ConnectionCaps {
        ConnectionCaps(Arc::new(Caps {
            total,
            per_address,
            open: Mutex::new(Open::default()),
        }))
    }

    /// Counts a new connection from `peer`, or `None` if either cap is reached.
    pub fn admit(&self, peer: IpAddr) -> Option<Admitted> {
        let client = Client::from(peer);
        let mut open = self.0.open.lock().unwrap();
        if open.total >= self.0.total {
            REFUSED.total.increment(1);
            return None;
        }
        let from_client = open.by_address.entry(client).or_default();
        if *from_client >= self.0.per_address {
            REFUSED.per_address.increment(1);
            return None;
        }
        *from_client += 1;
        open.total += 1;
        Some(Admitted {
            caps: self.clone(),
            client,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.caps.0.open.lock().unwrap();
        open.total -= 1;
        if let Some(count) = open.by_address.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.client);
            }
        }
    }
}

/// A connection's I/O holding its admission: reads and writes go to `io`.
pub struct Held<T> {
    io: T,
    _admitted: Admitted,
}

impl<T> Held<T> {
    pub fn new(io: T, admitted: Admitted) -> Held<T> {
        Held {
            io,
            _admitted: admitted,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share() {
        let caps = ConnectionCaps::new(10, 2);
        let _first = caps.admit(ip("10.0.0.1")).unwrap();
        let second = caps.admit(ip("10.0.0.1")).unwrap();
        assert!(caps.admit(ip("10.0.0.1")).is_none());
        assert!(caps.admit(ip("10.0.0.2")).is_some());
        drop(second);
        assert!(caps.admit(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn all_addresses_share_the_total() {
        let caps = ConnectionCaps::new(2, 2);
        let first = caps.admit(ip("10.0.0.1")).unwrap();
        let _second = caps.admit(ip("10.0.0.2")).unwrap();
        assert!(caps.admit(ip("10.0.0.3")).is_none());
        drop(first);
        assert!(caps.admit(ip("10.0.0.3")).is_some());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_a_mapped_ipv4_its_address() {
        let caps = ConnectionCaps::new(10, 1);
        let _v6 = caps.admit(ip("2001:db8::1")).unwrap();
        assert!(caps.admit(ip("2001:db8::ffff")).is_none());
        assert!(caps.admit(ip("2001:db8:0:1::1")).is_some());
        let _v4 = caps.admit(ip("10.0.0.1")).unwrap();
        assert!(caps.admit(ip("::ffff:10.0.0.1")).is_none());
    }
}
