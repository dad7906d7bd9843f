//! `flotilla-bench`: the load tools of the benchmarks (`bench/run.sh` drives them).
//!
//! - `responders`: N MQTT clients over TLS, each subscribed to `req/<id>` and answering every
//!   request with the same payload on `res/<id>`, both at QoS 1: the simulated devices' part in
//!   the raw-broker baseline. They use the simulator's own MQTT client (`flotilla_sim::mqtt`:
//!   rumqttc's codec, rustls, TCP_NODELAY), so the client side costs what the simulator costs.
//! - `driver`: one MQTT connection that sends a request to each of N responders through the
//!   broker and counts the answers (QoS 1 both ways): round trips per second.
//! - `http`: an HTTP/1.1 load generator, open loop at a fixed rate (latency counted from when
//!   each request was due, so a slow server cannot hide its queueing) or closed loop.

mod driver;
mod http;
mod responders;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flotilla_sim::mqtt::Endpoint;

#[derive(Parser)]
#[command(name = "flotilla-bench", about = "Flotilla's benchmark load tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// MQTT clients that answer requests (the devices of the raw-broker baseline).
    Responders(responders::Args),
    /// Sends one request to each responder through the broker, round after round.
    Driver(driver::Args),
    /// An HTTP load generator.
    Http(http::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Responders(args) => responders::run(args).await,
            Command::Driver(args) => driver::run(args).await,
            Command::Http(args) => http::run(args).await,
        }
    })
}

/// The broker's address and the TLS setup trusting `ca`.
pub(crate) async fn endpoint(server: &str, port: u16, ca: &Path) -> anyhow::Result<Endpoint> {
    let addr: SocketAddr = tokio::net::lookup_host((server, port))
        .await?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| anyhow::anyhow!("{server} resolves to no IPv4 address"))?;
    Ok(Endpoint {
        addr,
        server_name: flotilla_sim::tls::server_name(server)?,
        tls: flotilla_sim::tls::connector(ca)?,
    })
}

/// CPU time (user + system) this process has used so far.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we own; all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 51);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
