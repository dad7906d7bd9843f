//! A minimal MQTT 3.1.1 client connection over TLS, on rumqttc's packet codec
//! (`rumqttc::mqttbytes::v4`, the one the gateway uses too).
//!
//! Why not rumqttc's `AsyncClient`/`EventLoop`: in 0.25.1 the event loop makes its TCP socket
//! itself (`socket_connect`) and offers no way to bind a local address (only `bind_device`, an
//! interface), and its `Network` type is private, so a socket made elsewhere cannot be handed
//! to it. Spreading connections over several loopback source addresses (`--source-addrs`)
//! needs exactly that. A device here also needs only CONNECT, SUBSCRIBE, PUBLISH at QoS 0/1,
//! PUBACK, PINGREQ and DISCONNECT, and one task that owns its connection keeps the memory per
//! device small (no request channel, no in-flight table, no event queue).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{ConnectReturnCode, Packet, PubAck, Publish, QoS, Subscribe, SubscribeFilter};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use flotilla_iothub::sas::percent_decode;

/// Largest packet accepted from the server (IoT Hub's 256 KiB plus headers).
const MAX_PACKET: usize = 256 * 1024 + 4096;
/// Connect, TLS handshake and CONNACK must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server is, shared by every device.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub tls: TlsConnector,
}

/// What a CONNECT says.
pub struct ConnectOptions<'a> {
    pub client_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub clean_session: bool,
    pub keep_alive: Duration,
    /// Local address to connect from (port chosen by the kernel at connect time).
    pub source: Option<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TCP connect: {0}")]
    Tcp(std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("CONNACK refused: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("{0}")]
    Protocol(String),
    #[error("no CONNACK within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("closed by the server")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Malformed(CodecError),
}

/// One open MQTT connection.
pub struct Connection {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    next_pkid: u16,
}

/// Opens TCP (bound to `source` if given, TCP_NODELAY on), TLS, and sends CONNECT; returns the
/// connection and CONNACK's session-present flag.
pub async fn connect(
    endpoint: &Endpoint,
    options: &ConnectOptions<'_>,
) -> Result<(Connection, bool), ConnectError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(endpoint, options)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(CONNECT_TIMEOUT)),
    }
}

async fn connect_inner(
    endpoint: &Endpoint,
    options: &ConnectOptions<'_>,
) -> Result<(Connection, bool), ConnectError> {
    let socket = match endpoint.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ConnectError::Tcp)?;
    socket.set_nodelay(true).map_err(ConnectError::Tcp)?;
    if let Some(source) = options.source {
        bind_address_no_port(&socket);
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(ConnectError::Tcp)?;
    }
    let tcp = socket
        .connect(endpoint.addr)
        .await
        .map_err(ConnectError::Tcp)?;
    let stream = endpoint
        .tls
        .connect(endpoint.server_name.clone(), tcp)
        .await
        .map_err(ConnectError::Tls)?;
    let mut connection = Connection {
        stream,
        buffer: BytesMut::new(),
        next_pkid: 0,
    };
    let mut connect = rumqttc::Connect::new(options.client_id);
    connect.keep_alive = options.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16;
    connect.clean_session = options.clean_session;
    connect.set_login(options.username, options.password);
    connection
        .send(Packet::Connect(connect))
        .await
        .map_err(ConnectError::Tls)?;
    match connection.read().await {
        Ok(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
            Ok((connection, ack.session_present))
        }
        Ok(Packet::ConnAck(ack)) => Err(ConnectError::Refused(ack.code)),
        Ok(other) => Err(ConnectError::Protocol(format!(
            "expected CONNACK, got {other:?}"
        ))),
        Err(e) => Err(ConnectError::Protocol(format!("waiting for CONNACK: {e}"))),
    }
}

/// With a source address bound before connect, Linux would reserve a port at bind time,
/// unique across all destinations; `IP_BIND_ADDRESS_NO_PORT` defers the choice to connect,
/// where only the full 4-tuple has to be unique. Best effort: without it bind still works.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the length given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &TcpSocket) {}

impl Connection {
    /// Writes packets in one TLS write and flushes.
    pub async fn send_all(&mut self, packets: &[Packet]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        for packet in packets {
            packet
                .write(&mut out, MAX_PACKET)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    pub async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        self.send_all(std::slice::from_ref(&packet)).await
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// A PUBLISH packet (numbered when QoS 1), for `send_all`.
    pub fn publish_packet(&mut self, topic: String, payload: Bytes, qos: u8) -> Packet {
        let mut publish = Publish::from_bytes(
            topic,
            if qos >= 1 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            },
            payload,
        );
        if qos >= 1 {
            publish.pkid = self.pkid();
        }
        Packet::Publish(publish)
    }

    /// A SUBSCRIBE for these filters, all at `qos`.
    pub fn subscribe_packet(&mut self, filters: &[&str], qos: QoS) -> Packet {
        let mut subscribe = Subscribe::new_many(
            filters
                .iter()
                .map(|f| SubscribeFilter::new(f.to_string(), qos)),
        );
        subscribe.pkid = self.pkid();
        Packet::Subscribe(subscribe)
    }

    /// The next packet from the server. Cancel-safe: bytes read before a cancellation stay in
    /// the buffer for the next call.
    pub async fn read(&mut self) -> Result<Packet, ReadError> {
        loop {
            if !self.buffer.is_empty() {
                match Packet::read(&mut self.buffer, MAX_PACKET) {
                    Ok(packet) => return Ok(packet),
                    Err(CodecError::InsufficientBytes(_)) => {}
                    Err(e) => return Err(ReadError::Malformed(e)),
                }
            } else if self.buffer.capacity() > 16 * 1024 {
                // Give back what a large message needed; idle devices hold little.
                self.buffer = BytesMut::new();
            }
            self.buffer.reserve(1024);
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Acknowledges a QoS 1 publish from the server.
    pub fn puback_for(publish: &Publish) -> Option<Packet> {
        (publish.qos == QoS::AtLeastOnce).then(|| Packet::PubAck(PubAck::new(publish.pkid)))
    }

    /// Sends DISCONNECT and closes TLS and TCP (errors ignored: the connection is going away).
    pub async fn disconnect(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.send(Packet::Disconnect).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// A query parameter of a topic (`...?$rid=3&$version=7`), percent-decoded.
pub fn topic_param(topic: &str, name: &str) -> Option<String> {
    let (_, query) = topic.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), v))
        .find(|(k, _)| k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Segment `index` of a topic's path (before `?`), percent-decoded.
pub fn topic_segment(topic: &str, index: usize) -> Option<String> {
    let path = topic.split_once('?').map_or(topic, |(path, _)| path);
    path.split('/').nth(index).map(percent_decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_topic_parts() {
        let topic = "$iothub/methods/POST/reboot%20now/?$rid=1f&x=%2F";
        assert_eq!(topic_segment(topic, 3).as_deref(), Some("reboot now"));
        assert_eq!(topic_param(topic, "$rid").as_deref(), Some("1f"));
        assert_eq!(topic_param(topic, "x").as_deref(), Some("/"));
        assert_eq!(topic_param(topic, "y"), None);
        assert_eq!(
            topic_param(
                "$dps/registrations/res/202/?$rid=2&retry-after=3",
                "retry-after"
            )
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            topic_segment("$iothub/twin/res/204/?$rid=2", 3).as_deref(),
            Some("204")
        );
    }
}
