//! The responders of the raw-broker baseline: each a connection that answers `req/<id>` on
//! `res/<id>`, at QoS 1, with the simulator's MQTT client.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_sim::mqtt::{self, ConnectOptions, Connection, Endpoint};
use rumqttc::{Packet, QoS};
use tokio::sync::Semaphore;
use tokio::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    server: String,
    #[arg(long)]
    port: u16,
    /// The CA certificate (PEM) the broker's certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    count: usize,
    /// Number of the first responder: ids are r00000, r00001, ...
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Local addresses to connect from, round-robin.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// TLS handshakes started per second.
    #[arg(long, default_value_t = 1000)]
    connect_rate: u32,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    max_pending: usize,
    /// Exit after this many seconds at most (or on SIGTERM).
    #[arg(long)]
    duration: u64,
    #[arg(long, default_value_t = 1)]
    progress_secs: u64,
}

#[derive(Default)]
struct Counters {
    ready: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let endpoint = Arc::new(crate::endpoint(&args.server, args.port, &args.ca).await?);
    let counters = Arc::new(Counters::default());
    let pending = Arc::new(Semaphore::new(args.max_pending));
    let interval = Duration::from_secs(1) / args.connect_rate.max(1);
    let started = Instant::now();
    for i in 0..args.count {
        let id = format!("r{:05}", args.first + i);
        let source =
            (!args.source_addrs.is_empty()).then(|| args.source_addrs[i % args.source_addrs.len()]);
        let (endpoint, counters, pending) = (endpoint.clone(), counters.clone(), pending.clone());
        let at = started + interval * i as u32;
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Err(e) = respond(&endpoint, &id, source, &counters, &pending).await {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("{id}: {e}");
            }
        });
    }
    let deadline = tokio::time::sleep(Duration::from_secs(args.duration));
    tokio::pin!(deadline);
    let stop = crate::terminated();
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(Duration::from_secs(args.progress_secs.max(1)));
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut stop => break,
            _ = ticks.tick() => {
                println!(
                    "[{:>6.1}s] ready {} answered {} failed {}",
                    started.elapsed().as_secs_f64(),
                    counters.ready.load(Ordering::Relaxed),
                    counters.answered.load(Ordering::Relaxed),
                    counters.failed.load(Ordering::Relaxed),
                );
            }
        }
    }
    println!(
        "stopping: ready {} answered {} cpu {:.2}s",
        counters.ready.load(Ordering::Relaxed),
        counters.answered.load(Ordering::Relaxed),
        crate::cpu_time().as_secs_f64()
    );
    // The broker sees the connections close with the process.
    std::process::exit(0);
}

async fn respond(
    endpoint: &Endpoint,
    id: &str,
    source: Option<IpAddr>,
    counters: &Counters,
    pending: &Semaphore,
) -> anyhow::Result<()> {
    let options = ConnectOptions {
        client_id: id,
        username: "bench",
        password: "bench",
        clean_session: true,
        keep_alive: Duration::from_secs(1200),
        source,
    };
    let mut connection = {
        let _permit = pending.acquire().await?;
        let (mut connection, _) = mqtt::connect(endpoint, &options).await?;
        let subscribe = connection.subscribe_packet(&[&format!("req/{id}")], QoS::AtLeastOnce);
        connection.send(subscribe).await?;
        match connection.read().await? {
            Packet::SubAck(_) => {}
            other => anyhow::bail!("expected SUBACK, got {other:?}"),
        }
        connection
    };
    counters.ready.fetch_add(1, Ordering::Relaxed);
    let answer_topic = format!("res/{id}");
    loop {
        match connection.read().await? {
            Packet::Publish(publish) => {
                let mut packets = Vec::with_capacity(2);
                packets.extend(Connection::puback_for(&publish));
                packets.push(connection.publish_packet(
                    answer_topic.clone(),
                    publish.payload.clone(),
                    1,
                ));
                connection.send_all(&packets).await?;
                counters.answered.fetch_add(1, Ordering::Relaxed);
            }
            Packet::PubAck(_) | Packet::PingResp => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
}
