//! One simulated device: register with DPS, connect to the hub (again after any drop, token
//! renewal or offline spell), read the twin and acknowledge what it asks for, acknowledge every
//! desired patch, and answer every direct method.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_iothub::sas::{percent_encode, sign};
use flotilla_iothub::topics;
use rumqttc::{ConnectReturnCode, Packet, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Credential, pick};
use crate::fleet::Fleet;
use crate::mqtt::{self, ConnectError, ConnectOptions, Connection};
use crate::pnp;
use crate::provision::{self, RegisterOptions, now_secs};
use crate::stats::Stats;

const API_VERSION: &str = "2021-04-12";
const SUBSCRIPTIONS: [&str; 3] = [
    topics::TWIN_RESPONSES,
    topics::DESIRED_PATCHES,
    topics::METHODS,
];

/// Why a hub session ended.
enum End {
    Shutdown,
    /// The SAS token is about to expire: reconnect with a fresh one.
    Renew,
    /// Time for this device's offline spell.
    Offline,
    Lost(String),
}

/// What the device sends back, possibly after `--delay-ms`.
struct Reply {
    topic: String,
    payload: Bytes,
    kind: ReplyKind,
}

enum ReplyKind {
    /// A reported patch acknowledging this many properties.
    Acks(usize),
    Method {
        failed: bool,
    },
}

struct Device<'a> {
    fleet: &'a Fleet,
    credential: &'a Credential,
    source: Option<IpAddr>,
    fails: bool,
    offline: bool,
    /// The host name in the username and the SAS resource.
    hub_host: String,
    ever_connected: bool,
    /// Registered with DPS (at least once).
    registered: bool,
    /// Hub sessions so far.
    sessions: u32,
    next_rid: u32,
}

/// Runs device `index` until shutdown.
pub(crate) async fn run(fleet: Arc<Fleet>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let config = &fleet.config;
    let credential = &config.devices[index];
    let id = credential.device_id.as_str();
    let mut device = Device {
        fleet: &fleet,
        credential,
        source: (!config.source_addrs.is_empty())
            .then(|| config.source_addrs[index % config.source_addrs.len()]),
        fails: pick(id, "fail") < config.behaviour.fail_fraction,
        offline: pick(id, "offline") < config.behaviour.offline_fraction,
        hub_host: config
            .hub_host
            .clone()
            .unwrap_or_else(|| config.server.clone()),
        ever_connected: false,
        registered: false,
        sessions: 0,
        next_rid: 0,
    };
    // `None` means shutdown.
    let _: Option<()> = device.live(&mut shutdown).await;
}

/// Resolves when the fleet stops (or the fleet is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs `future` unless shutdown comes first.
async fn or_shutdown<F: Future>(
    shutdown: &mut watch::Receiver<bool>,
    future: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stopped(shutdown) => None,
        output = future => Some(output),
    }
}

impl Device<'_> {
    fn id(&self) -> &str {
        &self.credential.device_id
    }

    fn stats(&self) -> &Stats {
        &self.fleet.stats
    }

    async fn live(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<()> {
        let behaviour = &self.fleet.config.behaviour;
        if self.fleet.config.id_scope.is_some() {
            self.register(shutdown).await?;
        }
        if self.offline && behaviour.offline_every.is_none() {
            self.stay_offline(shutdown).await?;
        }
        let mut attempt = 0;
        loop {
            match self.connect(shutdown).await? {
                Ok((connection, session_present)) => {
                    attempt = 0;
                    self.stats().connected();
                    let end = Box::pin(self.session(connection, session_present, shutdown)).await;
                    self.stats().disconnected();
                    match end {
                        End::Shutdown => return None,
                        End::Renew => {}
                        End::Offline => self.stay_offline(shutdown).await?,
                        End::Lost(why) => {
                            Stats::add(&self.stats().dropped);
                            self.stats().error(self.id(), "connection lost", &why);
                            self.back_off(attempt, shutdown).await?;
                            attempt += 1;
                        }
                    }
                }
                Err(e) => {
                    Stats::add(&self.stats().connect_failures);
                    self.stats().error(self.id(), "connecting to the hub", &e);
                    self.back_off(attempt, shutdown).await?;
                    attempt += 1;
                    // A device the hub does not know (deleted?) registers again, as devices of
                    // IoT Central do.
                    if matches!(e, ConnectError::Refused(ConnectReturnCode::NotAuthorized))
                        && self.fleet.config.id_scope.is_some()
                    {
                        self.register(shutdown).await?;
                    }
                }
            }
        }
    }

    /// Registers with DPS, retrying until it works.
    async fn register(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<()> {
        let fleet = self.fleet;
        let config = &fleet.config;
        let id_scope = config.id_scope.as_deref()?;
        let options = RegisterOptions {
            keep_alive: config.keep_alive,
            sas_ttl: config.sas_ttl,
            source: self.source,
        };
        let mut attempt = 0;
        loop {
            let result = or_shutdown(shutdown, async {
                let _permit = fleet.pending.acquire().await;
                fleet.pacer.wait().await;
                // Boxed: the registration's state lives only while it runs, not in every
                // device's task for the whole run.
                Box::pin(provision::register(
                    &fleet.endpoint,
                    self.credential,
                    id_scope,
                    config.behaviour.model.as_deref(),
                    &options,
                ))
                .await
            })
            .await?;
            match result {
                Ok(assignment) => {
                    if config.hub_host.is_none() && !assignment.assigned_hub.is_empty() {
                        self.hub_host = assignment.assigned_hub;
                    }
                    if !std::mem::replace(&mut self.registered, true)
                        && Stats::add(&fleet.stats.provisioned) == config.devices.len() as u64
                    {
                        let _ = fleet
                            .stats
                            .all_provisioned_after
                            .set(fleet.started.elapsed());
                    }
                    return Some(());
                }
                Err(e) => {
                    Stats::add(&fleet.stats.provision_failures);
                    fleet.stats.error(self.id(), "registering with DPS", &e);
                    self.back_off(attempt, shutdown).await?;
                    attempt += 1;
                }
            }
        }
    }

    async fn stay_offline(&self, shutdown: &mut watch::Receiver<bool>) -> Option<()> {
        self.stats()
            .offline
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slept = or_shutdown(
            shutdown,
            tokio::time::sleep(self.fleet.config.behaviour.offline_for),
        )
        .await;
        self.stats()
            .offline
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        slept
    }

    /// Waits 1, 2, 4 … 30 s (less a random part) after the `attempt`-th failure in a row.
    async fn back_off(&self, attempt: u32, shutdown: &mut watch::Receiver<bool>) -> Option<()> {
        let base = Duration::from_secs(1 << attempt.min(5)).min(Duration::from_secs(30));
        let jitter = 0.5 + 0.5 * pick(self.id(), &format!("backoff{attempt}"));
        or_shutdown(shutdown, tokio::time::sleep(base.mul_f64(jitter))).await
    }

    /// Connects to the hub, paced with the rest of the fleet.
    async fn connect(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Result<(Connection, bool), ConnectError>> {
        let fleet = self.fleet;
        let config = &fleet.config;
        let id = self.id();
        let mut username = format!("{}/{id}/?api-version={API_VERSION}", self.hub_host);
        if let Some(model) = &config.behaviour.model {
            username.push_str("&model-id=");
            username.push_str(&percent_encode(model));
        }
        let expiry = now_secs() + config.sas_ttl.as_secs() as i64;
        let resource = percent_encode(&format!("{}/devices/{id}", self.hub_host));
        let Some(password) = sign(&resource, &self.credential.key, expiry) else {
            return Some(Err(ConnectError::Protocol(
                "the device key is not valid base64".into(),
            )));
        };
        let options = ConnectOptions {
            client_id: id,
            username: &username,
            password: &password,
            clean_session: false,
            keep_alive: config.keep_alive,
            source: self.source,
        };
        let result = or_shutdown(shutdown, async {
            let _permit = fleet.pending.acquire().await;
            fleet.pacer.wait().await;
            let started = Instant::now();
            let result = Box::pin(mqtt::connect(&fleet.endpoint, &options)).await;
            if result.is_ok() {
                fleet.stats.connect_time(started.elapsed());
            }
            result
        })
        .await?;
        if result.is_ok() {
            Stats::add(&fleet.stats.connects);
            if !self.ever_connected {
                self.ever_connected = true;
                if Stats::add(&fleet.stats.ever_connected) == config.devices.len() as u64 {
                    let _ = fleet.stats.all_connected_after.set(fleet.started.elapsed());
                }
            }
        }
        Some(result)
    }

    fn rid(&mut self) -> u32 {
        self.next_rid = self.next_rid.wrapping_add(1);
        self.next_rid
    }

    /// One hub connection, until shutdown, token renewal, an offline spell, or a failure.
    async fn session(
        &mut self,
        mut connection: Connection,
        session_present: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let config = &self.fleet.config;
        let behaviour = &config.behaviour;
        let started = Instant::now();
        let renew_margin = Duration::from_secs(120).min(config.sas_ttl / 2);
        let mut deadline = (started + (config.sas_ttl - renew_margin), End::Renew);
        if self.offline
            && let Some(every) = behaviour.offline_every
        {
            // The first spell comes at a different moment for each device.
            let online = if self.sessions == 0 {
                every.mul_f64(0.5 + 0.5 * pick(self.id(), "phase"))
            } else {
                every
            };
            if started + online < deadline.0 {
                deadline = (started + online, End::Offline);
            }
        }
        let (deadline, deadline_end) = deadline;
        self.sessions += 1;

        // Subscriptions persist (CleanSession 0), so a resumed session needs none.
        let mut first = Vec::with_capacity(2);
        if !session_present {
            first.push(connection.subscribe_packet(&SUBSCRIPTIONS, QoS::AtLeastOnce));
        }
        let twin_rid = self.rid();
        first.push(connection.publish_packet(
            topics::device::twin_get(twin_rid),
            Bytes::from_static(b" "),
            behaviour.qos,
        ));
        if let Err(e) = connection.send_all(&first).await {
            return End::Lost(format!("sending: {e}"));
        }
        drop(first);

        let code = if self.fails { 500 } else { 200 };
        let mut queue: VecDeque<(Instant, Reply)> = VecDeque::new();
        let mut last_sent = Instant::now();
        let mut awaiting_pingresp = false;
        loop {
            let due = queue.front().map(|(at, _)| *at);
            let ping_at = last_sent + config.keep_alive;
            let event = tokio::select! {
                biased;
                _ = stopped(shutdown) => {
                    connection.disconnect().await;
                    return End::Shutdown;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    connection.disconnect().await;
                    return deadline_end;
                }
                _ = tokio::time::sleep_until(due.unwrap_or(ping_at)), if due.is_some() => {
                    Event::Due
                }
                _ = tokio::time::sleep_until(ping_at) => Event::Ping,
                packet = connection.read() => match packet {
                    Ok(packet) => Event::Packet(packet),
                    Err(e) => return End::Lost(e.to_string()),
                },
            };
            let mut replies = Vec::new();
            match event {
                Event::Due => {
                    let now = Instant::now();
                    while queue.front().is_some_and(|(at, _)| *at <= now) {
                        replies.extend(queue.pop_front().map(|(_, reply)| reply));
                    }
                }
                Event::Ping => {
                    if awaiting_pingresp {
                        return End::Lost("no PINGRESP within the keep-alive period".into());
                    }
                    awaiting_pingresp = true;
                    last_sent = Instant::now();
                    if let Err(e) = connection.send(Packet::PingReq).await {
                        return End::Lost(format!("sending: {e}"));
                    }
                }
                Event::Packet(Packet::PingResp) => awaiting_pingresp = false,
                Event::Packet(Packet::Publish(publish)) => {
                    if let Some(ack) = Connection::puback_for(&publish)
                        && let Err(e) = connection.send(ack).await
                    {
                        return End::Lost(format!("sending: {e}"));
                    }
                    if let Some(reply) = self.handle(&publish, twin_rid, code) {
                        if behaviour.delay.is_zero() {
                            replies.push(reply);
                        } else {
                            queue.push_back((Instant::now() + behaviour.delay, reply));
                        }
                    }
                }
                Event::Packet(_) => {}
            }
            if replies.is_empty() {
                continue;
            }
            let mut packets = Vec::with_capacity(replies.len());
            for reply in replies {
                match reply.kind {
                    ReplyKind::Acks(n) => {
                        self.stats()
                            .acks
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    ReplyKind::Method { failed } => {
                        Stats::add(&self.stats().methods_answered);
                        if failed {
                            Stats::add(&self.stats().methods_failed);
                        }
                    }
                }
                packets.push(connection.publish_packet(reply.topic, reply.payload, behaviour.qos));
            }
            last_sent = Instant::now();
            if let Err(e) = connection.send_all(&packets).await {
                return End::Lost(format!("sending: {e}"));
            }
        }
    }

    /// What a publish from the hub calls for.
    fn handle(&mut self, publish: &Publish, twin_rid: u32, code: i64) -> Option<Reply> {
        let topic = publish.topic.as_str();
        if topic.starts_with("$iothub/twin/res/") {
            let status: u16 = mqtt::topic_segment(topic, 3)?.parse().ok()?;
            let rid = mqtt::topic_param(topic, "$rid")?;
            if rid == twin_rid.to_string() {
                if status != 200 {
                    self.stats()
                        .error(self.id(), "twin GET", &format!("status {status}"));
                    return None;
                }
                let twin: Value = serde_json::from_slice(&publish.payload).ok()?;
                let (patch, count) = pnp::acks_for_twin(&twin, code)?;
                return Some(self.reported(patch, count));
            }
            if !(200..300).contains(&status) {
                Stats::add(&self.stats().ack_errors);
                self.stats()
                    .error(self.id(), "reported patch", &format!("status {status}"));
            }
            return None;
        }
        if topic.starts_with("$iothub/twin/PATCH/properties/desired/") {
            Stats::add(&self.stats().desired_patches);
            let message: Value = serde_json::from_slice(&publish.payload).ok()?;
            let (patch, count) = pnp::acks_for_patch(&message, code)?;
            return Some(self.reported(patch, count));
        }
        if topic.starts_with("$iothub/methods/POST/") {
            let name = mqtt::topic_segment(topic, 3)?;
            let rid = mqtt::topic_param(topic, "$rid")?;
            self.stats().method_called(self.id());
            let request: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
            let (status, body) = if self.fails {
                (
                    500,
                    json!({"error": "simulated failure", "method": name, "request": request}),
                )
            } else {
                (200, json!({"method": name, "request": request}))
            };
            return Some(Reply {
                topic: topics::device::method_response(status, &rid),
                payload: Bytes::from(body.to_string()),
                kind: ReplyKind::Method { failed: self.fails },
            });
        }
        None
    }

    fn reported(&mut self, patch: Value, count: usize) -> Reply {
        let rid = self.rid();
        Reply {
            topic: topics::device::reported_patch(rid),
            payload: Bytes::from(patch.to_string()),
            kind: ReplyKind::Acks(count),
        }
    }
}

enum Event {
    Due,
    Ping,
    Packet(Packet),
}
