//! An HTTP/1.1 load generator on hyper's client connections (keep-alive, TCP_NODELAY).
//!
//! Open loop (`--rate`): request k is due at start + k/rate, spread over the connections; its
//! latency is counted from when it was due, so when the server falls behind, the queueing shows
//! in the percentiles instead of slowing the generator down (no coordinated omission). The
//! time from sending to the answer is reported too ("service"). Closed loop (`--rate 0`): every
//! connection sends its next request as soon as the last is answered.
//!
//! `{n}` in the URL or body becomes a request number, five digits, from `--first` up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// http://host:port/path?query; `{n}` becomes the request's number.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// A JSON body (with `{n}` substituted), sent as application/json.
    #[arg(long)]
    body: Option<String>,
    /// Extra headers, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second across all connections; 0 for closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop sending after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// The first request number.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Open loop: requests still unsent this many seconds after `--duration` are given up
    /// (counted as unsent), so a server that cannot keep up does not make the run endless.
    #[arg(long, default_value_t = 10.0)]
    max_overrun: f64,
    /// Write the result as JSON here (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

struct Shared {
    args: Args,
    authority: String,
    path_template: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    next: AtomicU64,
    start: Instant,
    stop_at: Option<Instant>,
}

#[derive(Default)]
struct Tally {
    /// Microseconds from due (open loop) or sent (closed loop) to the whole answer.
    latency_us: Vec<u64>,
    service_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    last_error: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("a header is `Name: value`, not {header}"))?;
        headers.push((
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        ));
    }
    let start = Instant::now() + Duration::from_millis(100);
    let shared = Arc::new(Shared {
        stop_at: args.duration.map(|d| start + Duration::from_secs_f64(d)),
        next: AtomicU64::new(0),
        authority,
        path_template: path,
        headers,
        start,
        args,
    });
    let cpu_before = crate::cpu_time();
    let mut tasks = Vec::new();
    for _ in 0..shared.args.connections {
        tasks.push(tokio::spawn(connection(shared.clone())));
    }
    let mut tally = Tally::default();
    for task in tasks {
        let part = task.await?;
        tally.latency_us.extend(part.latency_us);
        tally.service_us.extend(part.service_us);
        for (status, n) in part.statuses {
            *tally.statuses.entry(status).or_default() += n;
        }
        tally.errors += part.errors;
        tally.last_error = tally.last_error.or(part.last_error);
    }
    let secs = shared.start.elapsed().as_secs_f64();
    tally.latency_us.sort_unstable();
    tally.service_us.sort_unstable();
    let ms = |v: &[u64], q: f64| crate::quantile(v, q) as f64 / 1000.0;
    let answered = tally.latency_us.len() as u64;
    // Open loop: the requests that were due within the duration but never went out.
    let unsent = match (shared.args.rate > 0.0, shared.args.duration) {
        (true, Some(duration)) => {
            ((shared.args.rate * duration) as u64).saturating_sub(answered + tally.errors)
        }
        _ => 0,
    };
    let ok: u64 = tally
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let result = json!({
        "url": shared.args.url,
        "method": shared.args.method,
        "connections": shared.args.connections,
        "targetRate": shared.args.rate,
        "answered": answered,
        "unsent": unsent,
        "ok": ok,
        "errors": tally.errors,
        "lastError": tally.last_error,
        "statuses": tally.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "secs": secs,
        "rate": answered as f64 / secs,
        "p50Ms": ms(&tally.latency_us, 0.50),
        "p90Ms": ms(&tally.latency_us, 0.90),
        "p99Ms": ms(&tally.latency_us, 0.99),
        "maxMs": ms(&tally.latency_us, 1.0),
        "serviceP50Ms": ms(&tally.service_us, 0.50),
        "serviceP99Ms": ms(&tally.service_us, 0.99),
        "cpuSecs": (crate::cpu_time() - cpu_before).as_secs_f64(),
    });
    println!("{result}");
    if let Some(path) = &shared.args.out {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}

/// One keep-alive connection's share of the load; reconnects after an error.
async fn connection(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let args = &shared.args;
    let mut sender = None;
    loop {
        // Claim the next request number; its due time follows from it at a fixed rate.
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if args.requests.is_some_and(|max| n >= max) {
            break;
        }
        let due = if args.rate > 0.0 {
            shared.start + Duration::from_secs_f64(n as f64 / args.rate)
        } else {
            Instant::now().max(shared.start)
        };
        if shared.stop_at.is_some_and(|stop| {
            due >= stop || Instant::now() > stop + Duration::from_secs_f64(args.max_overrun)
        }) {
            break;
        }
        tokio::time::sleep_until(due).await;
        if sender.is_none() {
            match open(&shared.authority).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.errors += 1;
                    tally.last_error = Some(format!("connecting: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let number = format!("{:05}", args.first + n);
        let path = shared.path_template.replace("{n}", &number);
        let body = args
            .body
            .as_ref()
            .map(|b| Bytes::from(b.replace("{n}", &number)))
            .unwrap_or_default();
        let mut request = Request::builder()
            .method(args.method.as_str())
            .uri(path)
            .header(HOST, shared.authority.as_str());
        if args.body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in &shared.headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).expect("a valid request");
        let sent = Instant::now();
        let s = sender.as_mut().expect("connected");
        let outcome = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        }
        .await;
        let done = Instant::now();
        match outcome {
            Ok(status) => {
                *tally.statuses.entry(status).or_default() += 1;
                tally
                    .latency_us
                    .push((done - due.min(sent)).as_micros() as u64);
                tally.service_us.push((done - sent).as_micros() as u64);
            }
            Err(e) => {
                tally.errors += 1;
                tally.last_error = Some(e.to_string());
                sender = None;
            }
        }
    }
    tally
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open(authority: &str) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
