//! One device connection: CONNECT and authentication, then a read loop that dispatches each
//! packet, and a writer task that serializes everything sent to the device. The stream is any
//! byte stream (TLS over TCP, or a WebSocket's binary messages).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, QoS, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use crate::auth::{Identity, authenticate};
use crate::device::DeviceSession;
use crate::device_log::Untrusted;
use crate::hub::{Hub, Live, Outgoing};
use crate::meters::{self, Refusal};
use crate::topics::{Subscription, parse_filter};

/// Largest packet accepted: IoT Hub's 256 KiB message limit plus room for topic and header.
pub const MAX_PACKET: usize = 256 * 1024 + 4096;
/// Read buffer bytes a connection keeps while it waits for its next packet.
const IDLE_READ_BUFFER: usize = 512;
/// A client that sends no CONNECT in this time is cut off.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// IoT Hub's keep-alive cap; 0 (no keep-alive) is treated as this.
const MAX_KEEP_ALIVE: u16 = 1767;

/// Why a connection ended, for the log.
enum End {
    Closed,
    Io(std::io::Error),
    Malformed(CodecError),
    Protocol(&'static str),
    KeepAliveExpired,
    TakenOver,
    SlowConsumer,
    TokenExpired,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed => write!(f, "closed by the client"),
            End::Io(e) => write!(f, "I/O error: {e}"),
            End::Malformed(e) => write!(f, "malformed packet: {e}"),
            End::Protocol(what) => write!(f, "protocol violation: {what}"),
            End::KeepAliveExpired => write!(f, "silent for longer than 1.5 keep-alive periods"),
            End::TakenOver => write!(f, "another connection took over"),
            End::SlowConsumer => write!(f, "the client stopped reading what it was sent"),
            End::TokenExpired => write!(f, "the SAS token expired (IoT Hub severs the connection)"),
        }
    }
}

/// Serves one connection to its end.
pub async fn serve<S>(stream: S, hub: Hub, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buffer = BytesMut::new();

    // CONNECT first, within the time allowed.
    let connect =
        match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut reader, &mut buffer)).await {
            Ok(Ok(Packet::Connect(connect))) => connect,
            Ok(Ok(_)) => {
                meters::refused(Refusal::NoConnect);
                return tracing::info!(%peer, "refused: the first packet was not CONNECT");
            }
            Ok(Err(end)) => {
                meters::refused(Refusal::NoConnect);
                return tracing::info!(%peer, %end, "closed before CONNECT");
            }
            Err(_) => {
                meters::refused(Refusal::NoConnect);
                return tracing::info!(%peer, "cut off: no CONNECT in time");
            }
        };
    // Boxed, as the other calls made once or rarely: inline, each would add its state to the
    // connection's task, which lives (and takes memory) as long as the device stays connected.
    let identity = match Box::pin(authenticate(hub.store(), hub.id_scope(), &connect)).await {
        Ok(identity) => identity,
        Err(code) => {
            meters::refused(Refusal::of(code));
            tracing::info!(%peer, client = ?Untrusted(&connect.client_id), ?code, "refused CONNECT");
            let _ = write_packets(&mut writer, &[Packet::ConnAck(ConnAck::new(code, false))]).await;
            return;
        }
    };
    meters::accepted();
    let client_id = identity.client_id().to_string();
    let keep_alive = match connect.keep_alive {
        0 => MAX_KEEP_ALIVE,
        k => k.min(MAX_KEEP_ALIVE),
    };
    // Read timeout: one and a half keep-alive periods, as IoT Hub does.
    let idle_limit = Duration::from_millis(u64::from(keep_alive) * 1500);

    // Persistent session: subscriptions survive reconnects unless CleanSession is set.
    let subscriptions = Arc::new(Mutex::new(HashMap::new()));
    let mut session_present = false;
    let persistent = !connect.clean_session && matches!(identity, Identity::Device { .. });
    if persistent {
        match Box::pin(hub.store().session_subscriptions(&client_id)).await {
            Ok(saved) => {
                session_present = !saved.is_empty();
                let mut subs = subscriptions.lock().unwrap();
                for (filter, qos) in saved {
                    if let Some(sub) = parse_filter(&filter, &client_id) {
                        subs.insert(sub, qos);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "loading a session failed"),
        }
    } else if matches!(identity, Identity::Device { .. })
        && let Err(e) = Box::pin(hub.store().save_session(&client_id, &[])).await
    {
        tracing::error!(error = %e, "clearing a session failed");
    }

    let (tx, rx) = mpsc::channel::<Outgoing>(256);
    let closed = Arc::new(Notify::new());
    let connection_id = hub.next_id();
    let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, session_present));
    if write_packets(&mut writer, &[ack]).await.is_err() {
        return;
    }
    let writer_task = tokio::spawn(write_loop(writer, rx));
    let is_device = matches!(identity, Identity::Device { .. });
    if is_device {
        hub.attach(
            &client_id,
            Live {
                id: connection_id,
                tx: tx.clone(),
                subscriptions: subscriptions.clone(),
                closed: closed.clone(),
                desired_version: Default::default(),
            },
        );
        hub.claim_presence(&client_id, connection_id);
    }
    tracing::info!(%peer, client = ?Untrusted(&client_id), keep_alive, session_present, "connected");

    let mut session = DeviceSession::new(hub.clone(), identity, tx.clone());
    let token_expiry = connect
        .login
        .as_ref()
        .and_then(|login| crate::sas::SasToken::parse(&login.password).ok())
        .map(|token| token.expiry)
        .unwrap_or(i64::MAX);
    let expires_in =
        Duration::from_secs((token_expiry - jiff::Timestamp::now().as_second()).max(0) as u64);
    let expired = tokio::time::sleep(expires_in);
    tokio::pin!(expired);
    let end = loop {
        let next = tokio::select! {
            packet = tokio::time::timeout(idle_limit, read_packet(&mut reader, &mut buffer)) => packet,
            _ = closed.notified() => break End::TakenOver,
            _ = &mut expired => break End::TokenExpired,
        };
        let packet = match next {
            Err(_) => break End::KeepAliveExpired,
            Ok(Err(end)) => break end,
            Ok(Ok(packet)) => packet,
        };
        match packet {
            Packet::Publish(publish) => {
                if publish.qos == QoS::ExactlyOnce {
                    break End::Protocol("QoS 2 publish (IoT Hub closes the connection)");
                }
                let (qos, pkid) = (publish.qos, publish.pkid);
                // Boxed: this future is large (DPS registration, twin writes) and lives only
                // while a publish is handled, not for the connection's whole life.
                if !Box::pin(session.handle_publish(publish)).await {
                    break End::Protocol("publish to a topic the device may not use");
                }
                if qos == QoS::AtLeastOnce && !reply(&tx, Packet::PubAck(PubAck::new(pkid))) {
                    break End::SlowConsumer;
                }
            }
            Packet::Subscribe(subscribe) => {
                let mut codes = Vec::new();
                let mut refused = Vec::new();
                {
                    let mut subs = subscriptions.lock().unwrap();
                    for filter in &subscribe.filters {
                        match parse_filter(&filter.path, &client_id) {
                            Some(sub) => {
                                let qos = (filter.qos as u8).min(1);
                                subs.insert(sub, qos);
                                codes.push(SubscribeReasonCode::Success(if qos == 1 {
                                    QoS::AtLeastOnce
                                } else {
                                    QoS::AtMostOnce
                                }));
                            }
                            None => {
                                refused.push(filter.path.as_str());
                                codes.push(SubscribeReasonCode::Failure);
                            }
                        }
                    }
                }
                // One line for the packet, however many filters it refused.
                if let Some(first) = refused.first()
                    && session.warnings.allow(&client_id)
                {
                    tracing::warn!(client = ?Untrusted(&client_id), refused = refused.len(), first = ?Untrusted(first), "refused subscriptions to topics the device may not use");
                }
                if persistent {
                    Box::pin(save_session(&hub, &client_id, &subscriptions)).await;
                }
                if !reply(&tx, Packet::SubAck(SubAck::new(subscribe.pkid, codes))) {
                    break End::SlowConsumer;
                }
            }
            Packet::Unsubscribe(unsubscribe) => {
                {
                    let mut subs = subscriptions.lock().unwrap();
                    for filter in &unsubscribe.topics {
                        if let Some(sub) = parse_filter(filter, &client_id) {
                            subs.remove(&sub);
                        }
                    }
                }
                if persistent {
                    Box::pin(save_session(&hub, &client_id, &subscriptions)).await;
                }
                if !reply(&tx, Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))) {
                    break End::SlowConsumer;
                }
            }
            Packet::PingReq => {
                if !reply(&tx, Packet::PingResp) {
                    break End::SlowConsumer;
                }
            }
            Packet::PubAck(_) => {}
            Packet::Disconnect => break End::Closed,
            Packet::Connect(_) => break End::Protocol("a second CONNECT"),
            _ => break End::Protocol("a packet a client may not send"),
        }
    };
    match &end {
        End::Closed | End::TakenOver => {
            tracing::info!(%peer, client = ?Untrusted(&client_id), %end, "disconnected")
        }
        _ => tracing::warn!(%peer, client = ?Untrusted(&client_id), %end, "connection cut"),
    }
    session.warnings.report(&client_id);
    if is_device {
        hub.detach(&client_id, connection_id);
        hub.release_presence(&client_id, connection_id);
    }
    let _ = tx.try_send(Outgoing::Close);
    drop(tx);
    drop(session);
    let _ = writer_task.await;
}

async fn save_session(
    hub: &Hub,
    client_id: &str,
    subscriptions: &Mutex<HashMap<Subscription, u8>>,
) {
    let list: Vec<(String, u8)> = subscriptions
        .lock()
        .unwrap()
        .iter()
        .map(|(sub, qos)| (sub.filter(client_id), *qos))
        .collect();
    if let Err(e) = hub.store().save_session(client_id, &list).await {
        tracing::error!(error = %e, "saving a session failed");
    }
}

/// Queues a control packet for the writer without waiting: a full queue means the client has
/// stopped reading, and waiting would stall this connection's reader for good.
fn reply(tx: &mpsc::Sender<Outgoing>, packet: Packet) -> bool {
    tx.try_send(Outgoing::Packet(Box::new(packet))).is_ok()
}

/// Checks what the codec does not: the fixed header's flag bits (MQTT-2.2.2-1: SUBSCRIBE,
/// UNSUBSCRIBE and PUBREL carry 0b0010, the other non-PUBLISH packets 0) and CONNECT's reserved
/// flag bit (MQTT-3.1.2-3). Either wrong makes the packet malformed, and the connection closes.
fn check_reserved_bits(buffer: &[u8]) -> Result<(), End> {
    let Some(&first) = buffer.first() else {
        return Ok(());
    };
    let (kind, flags) = (first >> 4, first & 0x0F);
    let expected = match kind {
        3 => return Ok(()), // PUBLISH: DUP, QoS and RETAIN; the codec checks the QoS.
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(End::Protocol("reserved fixed-header flags are wrong"));
    }
    if kind == 1 {
        // Skip the remaining-length varint, then "MQTT" (2 + 4 bytes) and the level byte.
        let length_bytes = buffer[1..].iter().take(4).position(|b| b & 0x80 == 0);
        if let Some(n) = length_bytes {
            let flags_at = 1 + n + 1 + 7;
            if let Some(connect_flags) = buffer.get(flags_at)
                && connect_flags & 0x01 != 0
            {
                return Err(End::Protocol("CONNECT's reserved flag is set"));
            }
        }
    }
    Ok(())
}

/// Reads the next whole packet, reading from the stream as needed.
async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
) -> Result<Packet, End> {
    loop {
        check_reserved_bits(buffer)?;
        let needed = match Packet::read(buffer, MAX_PACKET) {
            Ok(packet) => {
                meters::received(&packet);
                return Ok(packet);
            }
            Err(CodecError::InsufficientBytes(needed)) => needed,
            Err(e) => return Err(End::Malformed(e)),
        };
        // An idle connection waits with a small buffer (a large one goes back once it is
        // empty); a packet that needs more gets room for all of it.
        if buffer.is_empty() && buffer.capacity() > IDLE_READ_BUFFER {
            *buffer = BytesMut::new();
        }
        buffer.reserve(needed.max(IDLE_READ_BUFFER));
        match reader.read_buf(buffer).await {
            Ok(0) => return Err(End::Closed),
            Ok(n) => meters::received_bytes(n),
            Err(e) => return Err(End::Io(e)),
        }
    }
}

async fn write_packets<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packets: &[Packet],
) -> std::io::Result<()> {
    let mut buffer = BytesMut::new();
    for packet in packets {
        packet
            .write(&mut buffer, MAX_PACKET)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        meters::sent(packet);
    }
    meters::sent_bytes(buffer.len());
    writer.write_all(&buffer).await?;
    writer.flush().await
}

/// Writes what the connection sends, batching whatever is queued into one write.
async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut next_pkid: u16 = 0;
    // Allocated when there is something to write and given back after, so an idle device's
    // connection holds no buffer.
    let mut buffer = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut closing = false;
        let mut item = Some(first);
        while let Some(outgoing) = item.take() {
            match outgoing {
                Outgoing::Close => {
                    closing = true;
                    break;
                }
                Outgoing::Packet(packet) => {
                    if packet.write(&mut buffer, MAX_PACKET).is_err() {
                        closing = true;
                        break;
                    }
                    meters::sent(&packet);
                }
                Outgoing::Publish {
                    topic,
                    payload,
                    qos,
                } => {
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
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        publish.pkid = next_pkid;
                    }
                    if Packet::Publish(publish)
                        .write(&mut buffer, MAX_PACKET)
                        .is_err()
                    {
                        tracing::warn!("dropped an outgoing message over the size limit");
                    } else {
                        meters::sent_publish();
                    }
                }
            }
            item = rx.try_recv().ok();
        }
        if !buffer.is_empty() {
            meters::sent_bytes(buffer.len());
            if writer.write_all(&buffer).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            buffer = BytesMut::new();
        }
        if closing {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_bits_are_checked() {
        assert!(check_reserved_bits(&[0x82, 0x05]).is_ok());
        assert!(check_reserved_bits(&[0x80, 0x05]).is_err());
        assert!(check_reserved_bits(&[0xC0, 0x00]).is_ok());
        assert!(check_reserved_bits(&[0xC1, 0x00]).is_err());
        assert!(check_reserved_bits(&[0x3B, 0x05]).is_ok());
        // CONNECT: header, length 0x10, "\0\x04MQTT", level 4, flags.
        let connect = |flags: u8| [0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 4, flags];
        assert!(check_reserved_bits(&connect(0xC2)).is_ok());
        assert!(check_reserved_bits(&connect(0xC3)).is_err());
        assert!(check_reserved_bits(&[]).is_ok());
    }
}

#[cfg(test)]
mod memory_per_connection {
    //! What an idle device costs is mostly the sizes of its connection's two tasks and its
    //! queue's first block of 32 slots: keep them small (large, short-lived states are boxed).

    fn size_of_future<F: std::future::Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_connection_s_tasks_and_queue_stay_small() {
        assert!(std::mem::size_of::<crate::hub::Outgoing>() <= 64);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let (stream, _) = tokio::io::duplex(64);
        let (_, writer) = tokio::io::split(stream);
        let (_tx, rx) = tokio::sync::mpsc::channel::<crate::hub::Outgoing>(1);
        assert!(size_of_future(&super::write_loop(writer, rx)) <= 512);

        let store = runtime
            .block_on(flotilla_store::Store::connect("sqlite::memory:"))
            .unwrap();
        let hub = crate::Hub::new(store, "scope".into(), "hub".into());
        let dir = std::env::temp_dir().join(format!("flotilla-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tls = crate::tls::server_config(crate::tls::CertificateSource::Development {
            data_dir: &dir,
            hostnames: &[],
        })
        .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = runtime
            .block_on(tokio::net::TcpStream::connect(addr))
            .unwrap();
        let task = crate::listener::handshake_and_serve(
            tokio_rustls::TlsAcceptor::from(tls),
            socket,
            addr,
            hub,
        );
        let size = size_of_future(&task);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(size <= 2048, "a connection's task is {size} bytes");
    }
}
