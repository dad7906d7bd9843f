//! `flotilla serve`: open the database, make what a first start needs, and serve HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::admission::ConnectionCaps;
use crate::open_files::ConnectionBudget;
use crate::{command_line_secrets, http_server, server_files, shutdown};
use flotilla::{bootstrap, wiring};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the server keeps its files: the SQLite database, the admin token, certificates.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./flotilla-data")]
    pub data_dir: PathBuf,

    /// The HTTP listener for the REST API. Port 0 picks a free port; the address bound is
    /// written to `<data-dir>/http.addr`.
    #[arg(long, env = "FLOTILLA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// The MQTT-over-TLS listener for devices (IoT Hub and DPS). The Python SDK always dials
    /// port 8883. The address bound is written to `<data-dir>/mqtt.addr`.
    #[arg(long, env = "FLOTILLA_MQTT_ADDR", default_value = "0.0.0.0:8883")]
    pub mqtt_addr: SocketAddr,

    /// The HTTPS listener: the REST API over TLS, and MQTT over WebSockets at
    /// `/$iothub/websocket` (the SDKs' `websockets=True` always dials port 443). The address
    /// bound is written to `<data-dir>/https.addr`. Without this flag the server tries
    /// `127.0.0.1:443` (loopback, like the plain HTTP listener: this one serves the whole REST
    /// API too; devices on other hosts need an address given) and, if that port is taken or
    /// needs privileges it lacks, runs without HTTPS.
    #[arg(long, env = "FLOTILLA_HTTPS_ADDR")]
    pub https_addr: Option<SocketAddr>,

    /// A host name or address devices use to reach this server: the development certificate
    /// covers it (besides localhost and 127.0.0.1), and DPS assigns devices to the first one
    /// given (default `localhost`). Repeat for several.
    #[arg(long = "hostname", env = "FLOTILLA_HOSTNAMES", value_delimiter = ',')]
    pub hostnames: Vec<String>,

    /// The server certificate (PEM chain) to use instead of the development one.
    #[arg(long, env = "FLOTILLA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "FLOTILLA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// `sqlite://...` or `postgres://...`; by default a SQLite file in the data dir.
    #[arg(long, env = "FLOTILLA_DATABASE_URL")]
    pub database_url: Option<String>,

    /// How long a job waits for one device: a property job for its acknowledgement, a command
    /// job for it to connect (an offline device included). Past it, the device fails.
    #[arg(long, env = "FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", default_value_t = 300)]
    pub job_device_timeout_secs: u64,

    /// How many devices of one job this server works on at once (per replica: each server on
    /// a shared database works up to this many).
    #[arg(long, env = "FLOTILLA_JOB_MAX_IN_FLIGHT", default_value_t = 1000)]
    pub job_max_in_flight: usize,

    /// Milliseconds between this server's heartbeats (the renewal of its lease among the
    /// servers sharing the database, and the sweep of those whose lease ran out).
    #[arg(long, env = "FLOTILLA_REPLICA_HEARTBEAT_MS", default_value_t = 2000)]
    pub replica_heartbeat_ms: u64,

    /// Milliseconds a server's lease lasts without a heartbeat: past it, the others take its job
    /// devices over, and the server itself stops writing and exits. The same on every server of
    /// a database.
    #[arg(long, env = "FLOTILLA_REPLICA_LEASE_MS", default_value_t = 10_000)]
    pub replica_lease_ms: u64,

    /// For tests only: read the scheduler's current time from this file (an RFC 3339 time) instead
    /// of the system clock, so that schedules can be driven without waiting.
    #[arg(long, env = "FLOTILLA_CLOCK_FILE", hide = true)]
    pub clock_file: Option<PathBuf>,

    /// A reverse proxy (an address or a CIDR block) whose `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` the absolute links in answers (`nextLink`) are built on; those headers
    /// from anyone else are ignored. Repeat for several.
    #[arg(
        long = "trusted-proxy",
        env = "FLOTILLA_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<flotilla_api::origin::TrustedProxy>,

    /// The most connections the REST API's listeners (HTTP and HTTPS, MQTT over WebSockets
    /// included) hold at once; past it a new one is closed at once. By default half the open
    /// files the process may hold beyond a reserve for itself; the device endpoint gets the rest.
    #[arg(long, env = "FLOTILLA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Of `--max-connections`, the most from one client address (an IPv6 client's /64). By
    /// default a quarter of them, at most 256.
    #[arg(long, env = "FLOTILLA_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// Seconds a REST client has to send a request's head, from connecting (TLS handshake
    /// included) or from its previous answer: slow heads and idle connections are closed.
    #[arg(
        long,
        env = "FLOTILLA_HTTP_HEAD_TIMEOUT_SECS",
        default_value_t = 30,
        hide = true
    )]
    pub http_head_timeout_secs: u64,

    /// An administrator API token to accept instead of generating one at first start: 32
    /// characters or more. Give it in the environment, not as a flag, which other local users
    /// can read.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// A token `GET /metrics` requires (`Authorization: Bearer <token>`); without one, the
    /// metrics are open to whoever reaches the REST API's listeners.
    #[arg(long, env = "FLOTILLA_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// Where HTTPS listens unless told otherwise: IoT Hub's WebSocket port, on loopback only.
const DEFAULT_HTTPS_ADDR: &str = "127.0.0.1:443";

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The device runtime starts here, on the main thread, so its threads inherit the default
    // scheduling: started from an API worker, they would inherit its short time slices (see
    // main.rs), and device work would preempt requests as readily as requests preempt it.
    let _ = flotilla_gateway::runtime::devices();
    let budget =
        ConnectionBudget::of_this_process(args.max_connections, args.max_connections_per_ip)?;
    command_line_secrets::warn_about(std::env::args());
    let admin_token = args
        .admin_token
        .as_deref()
        .map(bootstrap::SuppliedAdminToken::parse)
        .transpose()?;
    let (store, _locks) =
        server_files::open_store(&args.data_dir, args.database_url.as_deref()).await?;
    let app = bootstrap::run(&store, &args.data_dir, admin_token.as_ref()).await?;

    let tls =
        match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => flotilla_gateway::tls::server_config(
                flotilla_gateway::tls::CertificateSource::Files { cert, key },
            ),
            _ => {
                // Every server on the database signs with the one CA the database keeps.
                flotilla_gateway::tls::share_development_ca(&store, &args.data_dir)
                    .await
                    .context("setting up TLS")?;
                flotilla_gateway::tls::server_config(
                    flotilla_gateway::tls::CertificateSource::Development {
                        data_dir: &args.data_dir,
                        hostnames: &args.hostnames,
                    },
                )
            }
        }
        .context("setting up TLS")?;
    let assigned_hub = args
        .hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".to_string());
    let mqtt = flotilla_gateway::listener::bind(args.mqtt_addr)
        .await
        .with_context(|| format!("binding the MQTT listener to {}", args.mqtt_addr))?;
    let mqtt_bound = mqtt.local_addr()?;
    std::fs::write(args.data_dir.join("mqtt.addr"), mqtt_bound.to_string())?;
    tracing::info!(%mqtt_bound, "device endpoint (MQTT over TLS, IoT Hub and DPS) listening");

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener to {}", args.http_addr))?;
    let bound = listener.local_addr()?;
    std::fs::write(args.data_dir.join("http.addr"), bound.to_string())?;
    tracing::info!(%bound, "REST API listening: http://{bound}/api");

    let https = match args.https_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS listener to {addr}"))?,
        ),
        None => match tokio::net::TcpListener::bind(DEFAULT_HTTPS_ADDR).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "no HTTPS listener (REST over TLS, MQTT over WebSockets): {DEFAULT_HTTPS_ADDR} is unavailable; set --https-addr");
                None
            }
        },
    };
    if let Some(https) = &https {
        let https_bound = https.local_addr()?;
        std::fs::write(args.data_dir.join("https.addr"), https_bound.to_string())?;
        tracing::info!(%https_bound, "HTTPS listening: REST API and MQTT over WebSockets (/$iothub/websocket)");
    }

    let clock: std::sync::Arc<dyn flotilla_jobs::clock::Clock> = match &args.clock_file {
        Some(path) => {
            tracing::warn!(path = %path.display(), "schedules follow the time in this file, not the system clock");
            std::sync::Arc::new(flotilla_jobs::clock::FileClock(path.clone()))
        }
        None => std::sync::Arc::new(flotilla_jobs::clock::SystemClock),
    };
    let parts = wiring::start(
        &store,
        wiring::Settings {
            app,
            instance: server_files::instance_id(&args.data_dir)?,
            assigned_hub,
            engine: flotilla_jobs::EngineConfig {
                device_timeout: std::time::Duration::from_secs(args.job_device_timeout_secs),
                max_in_flight_per_job: args.job_max_in_flight.max(1),
                heartbeat: std::time::Duration::from_millis(args.replica_heartbeat_ms.max(1)),
                lease: std::time::Duration::from_millis(args.replica_lease_ms.max(1)),
                ..Default::default()
            },
            clock,
            trusted_proxies: flotilla_api::origin::TrustedProxies::new(
                args.trusted_proxies.clone(),
            ),
        },
    )
    .await
    .context("starting the server's parts")?;
    let gateway = tokio::spawn(flotilla_gateway::listener::run(
        mqtt,
        tls.clone(),
        parts.hub.clone(),
        budget.devices,
    ));
    let live = parts.state.live.clone();
    // The REST API under /api, the dashboard at / and the metrics at /metrics, on both listeners.
    let metrics = flotilla::prometheus::router(
        flotilla::prometheus::install(),
        store.clone(),
        parts.hub.clone(),
        args.metrics_token.clone(),
    );
    let rest = flotilla_dashboard::app(parts.state).merge(metrics);
    let limits = http_server::Limits {
        caps: ConnectionCaps::new(budget.web, budget.web_per_address),
        head_timeout: std::time::Duration::from_secs(args.http_head_timeout_secs),
    };
    let secure = https.map(|https| {
        tokio::spawn(http_server::serve(
            https,
            crate::https::app(rest.clone(), parts.hub),
            Some(tokio_rustls::TlsAcceptor::from(tls)),
            limits.clone(),
            std::future::pending(),
        ))
    });
    let fenced = parts.replica.fenced();
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = fenced => {}
        }
        // Event streams never end by themselves: end them, or the listener would wait on them.
        live.close();
    };
    http_server::serve(listener, rest, None, limits, stop).await;
    parts.replica.stop();
    shutdown::Running {
        scheduler: parts.scheduler,
        webhooks: parts.webhooks,
        engine: parts.engine,
        listeners: std::iter::once(gateway).chain(secure).collect(),
        store,
    }
    .stop()
    .await;
    if parts.replica.is_fenced() {
        // A zombie: the others may have taken its work over. Its supervisor restarts it, and
        // it registers again under a new id.
        anyhow::bail!(
            "this server's lease among the servers sharing its database lapsed (it paused, or \
             could not reach the database), or they declared it dead: it stopped; start it again"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
