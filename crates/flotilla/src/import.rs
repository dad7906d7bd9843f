//! `flotilla import`: the flags, the source's token, the database opened as `serve` opens it,
//! and the report (`flotilla_import` does the work).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::server_files;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub action: Option<ImportAction>,

    /// The source application's base URL: `https://<app>.azureiotcentral.com`, or any server
    /// speaking IoT Central's REST API.
    #[arg(long = "from", required = true)]
    pub from: Option<String>,

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

    /// Enable here the scheduled jobs the source has enabled (by default they are imported
    /// disabled, so no occurrence fires on both sides; one enabled here stays enabled).
    #[arg(long)]
    pub enable_schedules: bool,

    /// The most requests a second sent to the source (IoT Central allows about 20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,

    /// Also import the jobs history: each job finished on the source, with its devices'
    /// outcomes, stored finished here (a record; never run).
    #[arg(long)]
    pub with_jobs: bool,
}

#[derive(Subcommand, Debug)]
pub enum ImportAction {
    /// Move the devices of one device group: a command job on the source calls their move
    /// command (with this server's ID scope and host), then this server is watched until each
    /// device has connected here. `--back` moves them back to the source.
    Move(crate::import_move::MoveArgs),
}

/// Runs the import (or `import move`); `Ok(false)` when some resource failed or some device did
/// not move (the report names it).
pub async fn run(args: ImportArgs) -> anyhow::Result<bool> {
    if let Some(ImportAction::Move(move_args)) = args.action {
        return crate::import_move::run(move_args).await;
    }
    let from = args.from.context("--from is required")?;
    let token = source_token(args.token_file.as_deref())?;
    let client = flotilla_import::Client::new(&from, token, args.rate)?;
    let (store, _locks) =
        server_files::open_store(&args.data_dir, args.database_url.as_deref()).await?;
    let options = flotilla_import::Options {
        plan: args.plan,
        group: args.group,
        enable_schedules: args.enable_schedules,
        with_jobs: args.with_jobs,
        progress: Some(std::sync::Arc::new(
            crate::import_progress::ImportProgress::for_stderr(),
        )),
    };
    let report = flotilla_import::run(&client, &store, &options).await;
    store.close().await;
    let report = report?;
    print!("{report}");
    Ok(!report.has_failures())
}

/// The source's API token: from `--token-file`, else `FLOTILLA_IMPORT_TOKEN`.
pub fn source_token(token_file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let token = match token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the token file {}", file.display()))?,
        None => std::env::var("FLOTILLA_IMPORT_TOKEN")
            .context("the source's API token: set FLOTILLA_IMPORT_TOKEN or pass --token-file")?,
    };
    let token = token.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "the source's API token is empty");
    Ok(token)
}
