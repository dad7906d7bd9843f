//! IoT Hub's device protocol, shared by the server's gateway and the fleet simulator (its
//! client): `sas` signs and checks shared access signatures and parses CONNECT usernames;
//! `topics` names every topic a device publishes or subscribes to, and the server's replies.
//! No I/O, so a client builds without the server.

pub mod sas;
pub mod topics;
