//! The device endpoint's metrics: MQTT packets and bytes each way, and connections refused by
//! cause. Every series is registered once and recorded through its handle (an index and an
//! atomic add per packet); labels are packet types and causes, never a device.

use std::sync::LazyLock;

use rumqttc::{ConnectReturnCode, Packet};

/// The MQTT 3.1.1 packet types, as the `type` label names them.
const PACKET_TYPES: [&str; 14] = [
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
];

fn packet_type(packet: &Packet) -> usize {
    match packet {
        Packet::Connect(..) => 0,
        Packet::ConnAck(_) => 1,
        Packet::Publish(_) => 2,
        Packet::PubAck(_) => 3,
        Packet::PubRec(_) => 4,
        Packet::PubRel(_) => 5,
        Packet::PubComp(_) => 6,
        Packet::Subscribe(_) => 7,
        Packet::SubAck(_) => 8,
        Packet::Unsubscribe(_) => 9,
        Packet::UnsubAck(_) => 10,
        Packet::PingReq => 11,
        Packet::PingResp => 12,
        Packet::Disconnect => 13,
    }
}

/// Why the device endpoint refused or dropped a connection before it was a device's (or a DPS
/// registration's).
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// The listener's cap on open connections.
    ConnectionCap,
    /// The TLS handshake failed or timed out.
    TlsHandshake,
    /// No CONNECT in time, or another packet first, or the client went away before it.
    NoConnect,
    /// CONNACK refused the credentials: a malformed, expired or wrongly signed SAS token.
    BadCredentials,
    /// CONNACK refused the client id (not the one the username names).
    BadClientId,
    /// CONNACK refused the client: unknown or disabled device, or a foreign ID scope.
    NotAuthorized,
    /// CONNACK refused for want of the database.
    Unavailable,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::ConnectionCap,
        Refusal::TlsHandshake,
        Refusal::NoConnect,
        Refusal::BadCredentials,
        Refusal::BadClientId,
        Refusal::NotAuthorized,
        Refusal::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionCap => "connection_cap",
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::NoConnect => "no_connect",
            Refusal::BadCredentials => "bad_credentials",
            Refusal::BadClientId => "bad_client_id",
            Refusal::NotAuthorized => "not_authorized",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// The cause of a refused CONNECT, by the CONNACK code it got.
    pub fn of(code: ConnectReturnCode) -> Refusal {
        match code {
            ConnectReturnCode::BadUserNamePassword => Refusal::BadCredentials,
            ConnectReturnCode::BadClientId => Refusal::BadClientId,
            ConnectReturnCode::ServiceUnavailable => Refusal::Unavailable,
            _ => Refusal::NotAuthorized,
        }
    }
}

struct Meters {
    received_packets: Vec<metrics::Counter>,
    sent_packets: Vec<metrics::Counter>,
    received_bytes: metrics::Counter,
    sent_bytes: metrics::Counter,
    refused: Vec<metrics::Counter>,
    accepted: metrics::Counter,
}

static METERS: LazyLock<Meters> = LazyLock::new(|| {
    Meters {
    received_packets: PACKET_TYPES
        .iter()
        .map(|t| metrics::counter!("flotilla_mqtt_received_packets_total", "type" => *t))
        .collect(),
    sent_packets: PACKET_TYPES
        .iter()
        .map(|t| metrics::counter!("flotilla_mqtt_sent_packets_total", "type" => *t))
        .collect(),
    received_bytes: metrics::counter!("flotilla_mqtt_received_bytes_total"),
    sent_bytes: metrics::counter!("flotilla_mqtt_sent_bytes_total"),
    refused: Refusal::ALL
        .iter()
        .map(|r| {
            metrics::counter!("flotilla_connections_refused_total", "listener" => "mqtt", "cause" => r.label())
        })
        .collect(),
    accepted: metrics::counter!("flotilla_mqtt_connections_accepted_total"),
}
});

pub(crate) fn received(packet: &Packet) {
    METERS.received_packets[packet_type(packet)].increment(1);
}

pub(crate) fn sent(packet: &Packet) {
    METERS.sent_packets[packet_type(packet)].increment(1);
}

/// A PUBLISH sent (the writer builds those from `Outgoing::Publish`).
pub(crate) fn sent_publish() {
    METERS.sent_packets[2].increment(1);
}

pub(crate) fn received_bytes(n: usize) {
    METERS.received_bytes.increment(n as u64);
}

pub(crate) fn sent_bytes(n: usize) {
    METERS.sent_bytes.increment(n as u64);
}

pub(crate) fn refused(refusal: Refusal) {
    METERS.refused[refusal as usize].increment(1);
}

/// A CONNECT accepted (a device, or a DPS registration).
pub(crate) fn accepted() {
    METERS.accepted.increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_index_their_own_label() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.label());
        }
        assert_eq!(packet_type(&Packet::PingReq), 11);
        assert_eq!(PACKET_TYPES[packet_type(&Packet::Disconnect)], "disconnect");
    }
}
