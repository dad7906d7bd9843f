//! `flotilla <noun> <verb>`: the command-line client of the REST API (Flotilla's, or IoT
//! Central's own). The binary mounts [`Command`] beside `serve` and `sim` and exits with
//! [`run`]'s code. docs/cli.md is the reference.
//!
//! One module per noun (`jobs`, `scheduled_jobs`, `groups`, `devices`, `tokens`); `client`
//! speaks HTTP, `connection` holds the options every command shares, `output` prints, `watch`
//! follows a running job.

mod client;
mod connection;
mod device_csv;
mod devices;
mod error;
mod groups;
mod job_body;
mod jobs;
mod output;
mod scheduled_jobs;
mod tokens;
mod watch;

use clap::{Args, Subcommand};

pub use connection::Connection;
pub use error::Exit;

use error::CliError;

/// The exit codes, as every noun's help ends.
const EXIT_CODES: &str = "Exit codes: 0 done (jobs watch: the job completed), 1 refused by the \
server or not reached (its error on stderr), 2 bad arguments or no token; jobs watch: 3 the job \
failed, 4 it was cancelled, 5 it was stopped. Reference: docs/cli.md.";

/// The client's nouns, each with the connection options and its verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Jobs: list, show, create, watch, devices, export, stop, resume, rerun, copy.
    #[command(after_help = EXIT_CODES)]
    Jobs(Noun<jobs::JobsCommand>),
    /// Scheduled jobs: list, show, create, update, delete, runs.
    #[command(after_help = EXIT_CODES)]
    ScheduledJobs(Noun<scheduled_jobs::ScheduledJobsCommand>),
    /// Device groups: list, show, preview a filter.
    #[command(after_help = EXIT_CODES)]
    Groups(Noun<groups::GroupsCommand>),
    /// Devices: list, show, import and export IoT Central's device CSV.
    #[command(after_help = EXIT_CODES)]
    Devices(Noun<devices::DevicesCommand>),
    /// API tokens: list, show, create, delete.
    #[command(after_help = EXIT_CODES)]
    Tokens(Noun<tokens::TokensCommand>),
}

#[derive(Args, Debug)]
pub struct Noun<C: Subcommand> {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: C,
}

/// Runs a client command on a runtime of its own (one thread: a client waits on the network);
/// returns the process's exit code, stdout flushed.
pub fn main(command: Command) -> u8 {
    default_sigpipe();
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(command)),
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            Exit::Failure.code()
        }
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}

/// Runs a client command; prints what went wrong to stderr; returns the process's exit code.
pub async fn run(command: Command) -> u8 {
    let result = match command {
        Command::Jobs(noun) => jobs::run(&noun.connection, noun.command).await,
        Command::ScheduledJobs(noun) => scheduled_jobs::run(&noun.connection, noun.command).await,
        Command::Groups(noun) => groups::run(&noun.connection, noun.command).await,
        Command::Devices(noun) => devices::run(&noun.connection, noun.command).await,
        Command::Tokens(noun) => tokens::run(&noun.connection, noun.command).await,
    };
    match result {
        Ok(exit) => exit.code(),
        Err(error) => {
            report(&error);
            error.exit().code()
        }
    }
}

/// Ends the process quietly when stdout's reader goes away (`flotilla jobs export J | head`),
/// as other Unix tools do, instead of Rust's panic on the failed write.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn report(error: &CliError) {
    match error {
        CliError::Api(failure) => {
            eprintln!("error: {failure}");
        }
        CliError::Unreachable { source, .. } => {
            // reqwest's own message is short; its cause says why (refused, DNS, TLS).
            let mut message = error.to_string();
            let mut cause = std::error::Error::source(source);
            while let Some(inner) = cause {
                message.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            eprintln!("error: {message}");
        }
        other => eprintln!("error: {other}"),
    }
}
