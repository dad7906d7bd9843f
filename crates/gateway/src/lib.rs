//! Flotilla's device gateway: an IoT Hub-compatible MQTT 3.1.1 endpoint over TLS, with DPS
//! provisioning on the same listener, so devices built on the unmodified Azure IoT device SDKs
//! connect by changing a host name and trusting the server's CA.
//!
//! `listener` accepts connections; `connection` runs one (CONNECT, then its packets);
//! `auth` checks SAS tokens; `device` acts on a client's publishes; `hub` holds who is
//! connected and is how the rest of the server reaches devices (it implements
//! `flotilla_bus::DeviceBus`); SAS tokens and topics are `flotilla_iothub`'s;
//! `runtime` is where device work runs; `device_log` keeps what devices send from forging or
//! flooding the log.

pub mod auth;
pub mod connection;
mod device;
mod device_log;
pub mod hub;
pub mod listener;
mod meters;
mod presence;
pub mod runtime;
pub mod tls;
pub mod websocket;

// The protocol, under the paths the gateway always had.
pub use flotilla_iothub::{sas, topics};

pub use hub::Hub;
