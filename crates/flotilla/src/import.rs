//! `flotilla import`: the flags, the source's token, the database opened as `serve` opens it,
//! and the report (`flotilla_import` does the work).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::server_files;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The source application's base URL: `https://<app>.azureiotcentral.com`, or any server
    /// speaking IoT Central's REST API.
    #[arg(long = "from")]
    pub from: String,

    /// A file holding the source's API token (else `FLOTILLA_IMPORT_TOKEN`; never a flag value).
    #[arg(long)]
    pub token_file: Option<PathBuf>,

    /// The data dir of the server to import into (as `serve`'s; it must not be running on it).
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./flotilla-data")]
    pub data_dir: PathBuf,

    /// `sqlite://...` or `postgres://...`; by default the SQLite file in the data dir.
    #[arg(long, env = "FLOTILLA_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Write nothing: print what a run would create, update, leave unchanged and skip.
    #[arg(long)]
    pub plan: bool,

    /// Import only the devices of this device group (templates and groups are all imported).
    #[arg(long)]
    pub group: Option<String>,

    /// Keep the source's enabled scheduled jobs enabled here (by default they are imported
    /// disabled, so no occurrence fires on both sides).
    #[arg(long)]
    pub enable_schedules: bool,

    /// The most requests a second sent to the source (IoT Central allows about 20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
}

/// Runs the import; `Ok(false)` when some resource failed (the report names it).
pub async fn run(args: ImportArgs) -> anyhow::Result<bool> {
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the token file {}", file.display()))?,
        None => std::env::var("FLOTILLA_IMPORT_TOKEN")
            .context("the source's API token: set FLOTILLA_IMPORT_TOKEN or pass --token-file")?,
    };
    let token = token.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "the source's API token is empty");
    let client = flotilla_import::Client::new(&args.from, token, args.rate)?;
    let (store, _locks) =
        server_files::open_store(&args.data_dir, args.database_url.as_deref()).await?;
    let options = flotilla_import::Options {
        plan: args.plan,
        group: args.group,
        enable_schedules: args.enable_schedules,
    };
    let report = flotilla_import::run(&client, &store, &options).await;
    store.close().await;
    let report = report?;
    print!("{report}");
    Ok(!report.has_failures())
}
