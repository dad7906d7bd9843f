//! The fleet: one tokio task per device, a pacer that spreads TLS handshakes out, a cap on
//! connections in progress, progress lines, and the stop (after `duration`, or on Ctrl-C or
//! SIGTERM) with every device sending DISCONNECT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::mqtt::Endpoint;
use crate::stats::{Stats, Summary};
use crate::{Error, device, tls};

/// Sockets kept free for everything but device connections (stdio, epoll, DNS, the runtime).
const SPARE_FILES: u64 = 1000;
/// How long devices get to say DISCONNECT at the end.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What every device shares.
pub(crate) struct Fleet {
    pub config: Config,
    pub endpoint: Endpoint,
    pub stats: Stats,
    pub pacer: Pacer,
    /// Connections being set up (TLS to CONNACK, or a whole DPS registration).
    pub pending: Semaphore,
    pub started: Instant,
}

/// Hands out start times `1/rate` apart, so handshakes arrive at a steady rate.
pub(crate) struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Pacer {
        Pacer {
            interval: Duration::from_secs(1) / per_second,
            next: Mutex::new(Instant::now()),
        }
    }

    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap();
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Runs the fleet until `duration` passes or the process is told to stop; returns the summary.
pub async fn run(config: Config) -> Result<Summary, Error> {
    config.check()?;
    check_open_files(config.devices.len())?;
    let endpoint = Endpoint {
        addr: resolve(&config.server, config.port).await?,
        server_name: tls::server_name(&config.server)?,
        tls: tls::connector(&config.ca_pem)?,
    };
    let with_dps = config.id_scope.is_some();
    let devices = config.devices.len();
    println!(
        "simulating {devices} devices against {} ({}), {} connections/s at most{}",
        endpoint.addr,
        config.server,
        config.connect_rate,
        if with_dps {
            ", registering through DPS first"
        } else {
            ""
        }
    );
    let fleet = Arc::new(Fleet {
        pacer: Pacer::new(config.connect_rate),
        pending: Semaphore::new(config.max_pending),
        endpoint,
        stats: Stats::default(),
        started: Instant::now(),
        config,
    });

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for index in 0..devices {
        tasks.spawn(device::run(fleet.clone(), index, stopped.clone()));
    }

    let until = stop_signal(fleet.config.duration);
    tokio::pin!(until);
    let every = fleet.config.progress_every;
    // Zero: no progress lines (the timer still needs a period).
    let period = if every.is_zero() {
        Duration::from_secs(86_400)
    } else {
        every
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    let mut last_error = None;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = ticks.tick() => {
                if every.is_zero() {
                    continue;
                }
                let now = fleet.stats.snapshot(devices, fleet.started.elapsed());
                println!("{}", now.line(with_dps));
                if now.last_error.is_some() && now.last_error != last_error {
                    println!("           last error: {}", now.last_error.as_deref().unwrap_or(""));
                    last_error = now.last_error;
                }
            }
        }
    }

    println!("stopping: devices disconnect");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        println!("{} devices did not stop in time", tasks.len());
        tasks.abort_all();
    }
    let summary = fleet
        .stats
        .snapshot(devices, fleet.started.elapsed())
        .with_method_calls(&fleet.stats);
    print!("{}", summary.report(with_dps));
    if let Some(path) = &fleet.config.summary_file {
        let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
        std::fs::write(path, json).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}

/// The server's address, resolved once (IPv4 preferred, as `localhost` usually means).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::Config(format!("resolving {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| Error::Config(format!("{host} resolves to no address")))
}

/// Each device holds one socket at a time; refuse a fleet the open-files limit can't hold.
fn check_open_files(devices: usize) -> Result<(), Error> {
    let Some(limit) = open_files_limit() else {
        return Ok(());
    };
    let room = limit.saturating_sub(SPARE_FILES);
    if devices as u64 > room {
        return Err(Error::Config(format!(
            "{devices} devices need {devices} sockets, but this process may open only {limit} \
             files ({room} after a reserve of {SPARE_FILES}): run several simulators, each with \
             its own --first and --devices"
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    // `rlim_t` is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(current)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

/// Resolves after `duration`, or on Ctrl-C or SIGTERM.
async fn stop_signal(duration: Option<Duration>) {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = timer => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
