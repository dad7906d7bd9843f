//! `flotilla sim`: the fleet simulator's flags, mapped onto `flotilla_sim::Config`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_sim::{Behaviour, Config, config};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// How many devices (with --credentials: at most this many of the file's).
    #[arg(long)]
    pub devices: Option<usize>,

    /// Device ids are this prefix and a five-digit number: sim-00000, sim-00001, ...
    #[arg(long, default_value = "sim-")]
    pub prefix: String,

    /// Number of the first device, so several simulator processes can share one fleet
    /// (e.g. --first 10000 --devices 10000 for the second ten thousand).
    #[arg(long, default_value_t = 0)]
    pub first: usize,

    /// The server's MQTT host (name or address; the server certificate must cover it).
    #[arg(long, default_value = "127.0.0.1")]
    pub server: String,

    /// The server's MQTT port. Default: the port in <data-dir>/mqtt.addr, else 8883.
    #[arg(long)]
    pub port: Option<u16>,

    /// The host name devices put in their usernames and SAS tokens. Default: the hub DPS
    /// assigns, else --server.
    #[arg(long)]
    pub hub_host: Option<String>,

    /// The server's data dir, for defaults: <data-dir>/ca.pem and <data-dir>/mqtt.addr.
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The CA certificate (PEM) devices trust. Default: <data-dir>/ca.pem.
    #[arg(long)]
    pub ca: Option<PathBuf>,

    /// Register through DPS with this ID scope (see GET /api/enrollmentGroups/{id}).
    #[arg(long, requires = "group_key")]
    pub id_scope: Option<String>,

    /// The enrollment group's primary key; each device's key is derived from it.
    #[arg(
        long,
        env = "FLOTILLA_SIM_GROUP_KEY",
        hide_env_values = true,
        requires = "id_scope"
    )]
    pub group_key: Option<String>,

    /// JSON lines {"deviceId": ..., "key": ...}: devices that exist already; skips DPS.
    #[arg(long, conflicts_with_all = ["id_scope", "group_key"])]
    pub credentials: Option<PathBuf>,

    /// The model id (dtmi:...) devices announce, in DPS and in the CONNECT username.
    #[arg(long)]
    pub model: Option<String>,

    /// Fraction of devices (fixed by a hash of the id) that answer methods with 500 and
    /// acknowledge properties with ac 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_fraction: f64,

    /// Answer methods and acknowledge properties this many milliseconds late.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,

    /// Fraction of devices (fixed by a hash of the id) that go offline for --offline-secs:
    /// right after provisioning, or, with --offline-every, periodically.
    #[arg(long, default_value_t = 0.0)]
    pub offline_fraction: f64,

    /// How long an offline spell lasts.
    #[arg(long, default_value_t = 30)]
    pub offline_secs: u64,

    /// Instead of once at start, go offline after every this many seconds online.
    #[arg(long)]
    pub offline_every: Option<u64>,

    /// TLS handshakes started per second across the fleet (DPS and hub connections).
    #[arg(long, default_value_t = 1000)]
    pub connect_rate: u32,

    /// Connections being set up at once (handshake to CONNACK, or a DPS registration).
    #[arg(long, default_value_t = 256)]
    pub max_pending: usize,

    /// Local addresses to connect from, round-robin over devices (e.g. 127.0.0.1,127.0.0.2),
    /// when one address runs out of ephemeral ports.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,

    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub duration: Option<u64>,

    /// Print progress every this many seconds (0: only the summary).
    #[arg(long, default_value_t = 5)]
    pub progress_secs: u64,

    /// MQTT keep-alive in seconds.
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u64,

    /// SAS token lifetime in seconds; devices reconnect with a new token 2 minutes before.
    #[arg(long, default_value_t = 86_400)]
    pub sas_ttl: u64,

    /// QoS of the devices' own publishes (twin GET, acknowledgements, method responses).
    #[arg(long, default_value_t = 1)]
    pub qos: u8,

    /// Write the final summary as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = to_config(args)?;
    flotilla_sim::run(config).await?;
    Ok(())
}

fn to_config(args: SimArgs) -> anyhow::Result<Config> {
    let (devices, id_scope) = match (&args.credentials, &args.id_scope, &args.group_key) {
        (Some(path), _, _) => {
            let mut devices = config::read_credentials(path)?;
            if let Some(n) = args.devices {
                devices.truncate(n);
            }
            (devices, None)
        }
        (None, Some(scope), Some(key)) => {
            let Some(n) = args.devices else {
                bail!("--devices is required with --id-scope");
            };
            let devices = config::group_devices(&args.prefix, args.first, n, key)?;
            (devices, Some(scope.clone()))
        }
        _ => bail!(
            "say who the devices are: --id-scope and --group-key (register through DPS), or \
             --credentials FILE"
        ),
    };
    let ca_pem = match (&args.ca, &args.data_dir) {
        (Some(ca), _) => ca.clone(),
        (None, Some(dir)) => dir.join("ca.pem"),
        (None, None) => bail!("give --ca (the server's CA certificate) or --data-dir"),
    };
    let port = match (args.port, &args.data_dir) {
        (Some(port), _) => port,
        (None, Some(dir)) => match std::fs::read_to_string(dir.join("mqtt.addr")) {
            Ok(addr) => addr
                .trim()
                .parse::<std::net::SocketAddr>()
                .with_context(|| format!("reading {}", dir.join("mqtt.addr").display()))?
                .port(),
            Err(_) => 8883,
        },
        (None, None) => 8883,
    };
    let mut config = Config::new(args.server, port, ca_pem, devices);
    config.hub_host = args.hub_host;
    config.id_scope = id_scope;
    config.behaviour = Behaviour {
        model: args.model,
        fail_fraction: args.fail_fraction,
        delay: Duration::from_millis(args.delay_ms),
        offline_fraction: args.offline_fraction,
        offline_for: Duration::from_secs(args.offline_secs),
        offline_every: args.offline_every.map(Duration::from_secs),
        qos: args.qos,
    };
    config.connect_rate = args.connect_rate;
    config.max_pending = args.max_pending;
    config.source_addrs = args.source_addrs;
    config.duration = args.duration.map(Duration::from_secs);
    config.progress_every = Duration::from_secs(args.progress_secs);
    config.keep_alive = Duration::from_secs(args.keep_alive);
    config.sas_ttl = Duration::from_secs(args.sas_ttl);
    config.summary_file = args.summary;
    Ok(config)
}
