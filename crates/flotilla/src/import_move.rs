//! `flotilla import move`: the flags, the two applications' clients (the source's with its
//! import token, this server's with its API token), and the report (`flotilla_import::run_move`
//! does the work). Forward the source is the departure and this server the destination;
//! `--back` swaps them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_import::{Client, MoveOptions};

use crate::import::source_token;

#[derive(Args, Debug)]
pub struct MoveArgs {
    /// The source application's base URL (as `flotilla import --from`).
    #[arg(long = "from")]
    pub from: String,

    /// A file holding the source's API token (else `FLOTILLA_IMPORT_TOKEN`; never a flag value).
    #[arg(long)]
    pub token_file: Option<PathBuf>,

    /// This server's REST API base URL.
    #[arg(long, env = "FLOTILLA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// This server's API token (else the administrator token in --data-dir).
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// This server's data dir, whose `admin-token` is used when no token is given.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./flotilla-data")]
    pub data_dir: PathBuf,

    /// The device group (of the departure application) whose devices move.
    #[arg(long)]
    pub group: String,

    /// The devices' move command as a job names it: `DeviceMove`, or `migration.DeviceMove`
    /// for a component's.
    #[arg(long)]
    pub command: String,

    /// The command's request, JSON; `{idScope}` and `{host}` in its strings are filled with the
    /// destination's ID scope and device host, e.g. '{"idScope":"{idScope}","host":"{host}"}'.
    #[arg(long, default_value = r#"{"idScope":"{idScope}"}"#)]
    pub payload: String,

    /// This server's device host (DPS and MQTT), as devices are to dial it.
    #[arg(long, required_unless_present = "back")]
    pub host: Option<String>,

    /// The source's device host, where `--back` sends devices (IoT Central's global DPS host,
    /// `global.azure-devices-provisioning.net`, by default).
    #[arg(long, default_value = "global.azure-devices-provisioning.net")]
    pub source_host: String,

    /// Move the group's devices from this server back to the source (a rollback).
    #[arg(long)]
    pub back: bool,

    /// How long to wait for the devices to connect at the destination, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,

    /// The id of the command job created on the departure (default `move-<group>-<time>`).
    #[arg(long)]
    pub job_id: Option<String>,

    /// The most requests a second sent to the source (IoT Central allows about 20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
}

/// This server's requests are not throttled like IoT Central's; still, a watch of a large
/// group should not flood it.
const LOCAL_RATE: u32 = 200;

/// Runs the move; `Ok(false)` when some device did not move.
pub async fn run(args: MoveArgs) -> anyhow::Result<bool> {
    let payload: serde_json::Value =
        serde_json::from_str(&args.payload).context("--payload is not JSON")?;
    let source = Client::new(
        &args.from,
        source_token(args.token_file.as_deref())?,
        args.rate,
    )?;
    let local = Client::new(&args.url, local_token(&args)?, LOCAL_RATE)?;
    let job_id = args.job_id.clone().unwrap_or_else(|| {
        let group: String = args
            .group
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        format!("move-{group}-{}", jiff::Timestamp::now().as_second())
    });
    let options = MoveOptions {
        group: args.group.clone(),
        command: args.command.clone(),
        payload,
        host: match (&args.host, args.back) {
            (_, true) => args.source_host.clone(),
            (Some(host), false) => host.clone(),
            (None, false) => anyhow::bail!("--host is required"),
        },
        timeout: Duration::from_secs(args.timeout),
        poll: Duration::from_secs(1),
        job_id,
    };
    let (departure, destination) = if args.back {
        (&local, &source)
    } else {
        (&source, &local)
    };
    let report = flotilla_import::run_move(departure, destination, &options).await?;
    print!("{report}");
    Ok(report.all_moved())
}

fn local_token(args: &MoveArgs) -> anyhow::Result<String> {
    if let Some(token) = args.token.as_deref().filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_string());
    }
    let path = args.data_dir.join("admin-token");
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "this server's API token: pass --token, set FLOTILLA_TOKEN, or point --data-dir at \
             a data dir with an admin-token ({} cannot be read)",
            path.display()
        )
    })?;
    Ok(token.trim().to_string())
}
