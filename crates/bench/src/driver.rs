//! The driver of the raw-broker baseline: one MQTT connection over TLS that publishes a
//! request to each responder (`req/<id>`, QoS 1) and counts their answers (`res/#`, QoS 1),
//! round after round. A reader task (answers, PUBACKs) and a writer task (requests, PUBACKs)
//! share the connection, so neither waits on the other.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{ConnectReturnCode, Packet, PubAck, Publish, QoS, Subscribe, SubscribeFilter};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

const MAX_PACKET: usize = 1024 * 1024;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    server: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    ca: PathBuf,
    /// Responders r00000 … to ask, one request each per round.
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Payload bytes per request.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Give up on a round after this long.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Write the result as JSON here (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Default)]
struct Progress {
    answers: AtomicU64,
    acks: AtomicU64,
    done: Notify,
    target: AtomicU64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let endpoint = crate::endpoint(&args.server, args.port, &args.ca).await?;
    let socket = TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    let tcp = socket.connect(endpoint.addr).await?;
    let mut stream = endpoint
        .tls
        .connect(endpoint.server_name.clone(), tcp)
        .await?;

    // CONNECT and SUBSCRIBE before the reader and writer part.
    let mut out = BytesMut::new();
    let mut connect = rumqttc::Connect::new("bench-driver");
    connect.keep_alive = 1200;
    connect.clean_session = true;
    connect.set_login("bench", "bench");
    Packet::Connect(connect).write(&mut out, MAX_PACKET)?;
    let mut subscribe =
        Subscribe::new_many([SubscribeFilter::new("res/#".into(), QoS::AtLeastOnce)]);
    subscribe.pkid = 1;
    Packet::Subscribe(subscribe).write(&mut out, MAX_PACKET)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    match read_one(&mut stream, &mut buffer).await? {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => {}
        other => anyhow::bail!("expected a successful CONNACK, got {other:?}"),
    }
    match read_one(&mut stream, &mut buffer).await? {
        Packet::SubAck(_) => {}
        other => anyhow::bail!("expected SUBACK, got {other:?}"),
    }

    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Packet>>();
    let writer_task = tokio::spawn(async move {
        let mut out = BytesMut::with_capacity(256 * 1024);
        while let Some(packets) = rx.recv().await {
            for packet in packets {
                packet.write(&mut out, MAX_PACKET)?;
            }
            while let Ok(more) = rx.try_recv() {
                for packet in more {
                    packet.write(&mut out, MAX_PACKET)?;
                }
                if out.len() > 128 * 1024 {
                    break;
                }
            }
            writer.write_all(&out).await?;
            writer.flush().await?;
            out.clear();
        }
        anyhow::Ok(())
    });
    let progress = Arc::new(Progress::default());
    let reader_progress = progress.clone();
    let acks_tx = tx.clone();
    tokio::spawn(async move {
        let progress = reader_progress;
        loop {
            let mut acks = Vec::new();
            loop {
                match Packet::read(&mut buffer, MAX_PACKET) {
                    Ok(Packet::Publish(publish)) => {
                        if publish.qos == QoS::AtLeastOnce {
                            acks.push(Packet::PubAck(PubAck::new(publish.pkid)));
                        }
                        let n = progress.answers.fetch_add(1, Ordering::Relaxed) + 1;
                        if n == progress.target.load(Ordering::Relaxed) {
                            progress.done.notify_one();
                        }
                    }
                    Ok(Packet::PubAck(_)) => {
                        progress.acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(CodecError::InsufficientBytes(_)) => break,
                    Err(e) => {
                        eprintln!("malformed packet from the broker: {e}");
                        return;
                    }
                }
            }
            if !acks.is_empty() && acks_tx.send(acks).is_err() {
                return;
            }
            buffer.reserve(64 * 1024);
            match reader.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => {
                    eprintln!("the broker closed the connection");
                    return;
                }
                Ok(_) => {}
            }
        }
    });

    let payload = Bytes::from(vec![b'x'; args.payload]);
    let topics: Vec<String> = (0..args.count).map(|i| format!("req/r{i:05}")).collect();
    let cpu_before = crate::cpu_time();
    let started = Instant::now();
    let mut pkid: u16 = 1;
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let base = progress.answers.load(Ordering::Relaxed);
        progress
            .target
            .store(base + args.count as u64, Ordering::Relaxed);
        let cpu = crate::cpu_time();
        let t0 = Instant::now();
        for chunk in topics.chunks(256) {
            let packets = chunk
                .iter()
                .map(|topic| {
                    pkid = pkid.checked_add(1).unwrap_or(1);
                    let mut publish =
                        Publish::from_bytes(topic.clone(), QoS::AtLeastOnce, payload.clone());
                    publish.pkid = pkid;
                    Packet::Publish(publish)
                })
                .collect();
            tx.send(packets)
                .map_err(|_| anyhow::anyhow!("the writer stopped"))?;
        }
        let notified = progress.done.notified();
        let finished = progress.answers.load(Ordering::Relaxed) >= base + args.count as u64
            || tokio::time::timeout(Duration::from_secs(args.timeout_secs), notified)
                .await
                .is_ok();
        let secs = t0.elapsed().as_secs_f64();
        let answered = progress.answers.load(Ordering::Relaxed) - base;
        let rate = answered as f64 / secs;
        println!(
            "round {}: {answered}/{} answers in {secs:.3} s: {rate:.0} round trips/s{}",
            round + 1,
            args.count,
            if finished { "" } else { " (timed out)" }
        );
        rounds.push(json!({
            "answered": answered,
            "complete": finished,
            "secs": secs,
            "rate": rate,
            "driverCpuSecs": (crate::cpu_time() - cpu).as_secs_f64(),
        }));
        // Let the last PUBACKs settle between rounds.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut rates: Vec<f64> = rounds.iter().filter_map(|r| r["rate"].as_f64()).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    let result = json!({
        "count": args.count,
        "rounds": rounds,
        "medianRate": median,
        "allComplete": rounds.iter().all(|r| r["complete"] == true),
        "driverCpuSecs": (crate::cpu_time() - cpu_before).as_secs_f64(),
        "wallSecs": started.elapsed().as_secs_f64(),
    });
    println!("{result}");
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    drop(tx);
    writer_task.abort();
    Ok(())
}

async fn read_one(
    stream: &mut TlsStream<TcpStream>,
    buffer: &mut BytesMut,
) -> anyhow::Result<Packet> {
    loop {
        match Packet::read(buffer, MAX_PACKET) {
            Ok(packet) => return Ok(packet),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => anyhow::bail!("malformed packet: {e}"),
        }
        if stream.read_buf(buffer).await? == 0 {
            anyhow::bail!("closed by the broker");
        }
    }
}
