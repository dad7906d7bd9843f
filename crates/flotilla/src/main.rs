//! The `flotilla` binary: `flotilla serve` runs the server; `flotilla sim` simulates a fleet of
//! devices against one.

mod bootstrap;
mod https;
mod serve;
mod sim;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a job's device tasks allocate and free small buffers by
/// the hundred thousand across threads, and the profile of a 19,000-device property job spent
/// 16% of the server's CPU in glibc's malloc and free (`_int_malloc`, `malloc_consolidate`,
/// `unlink_chunk`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A self-hosted server for managing fleets of IoT devices in bulk, speaking IoT Central's REST API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Simulate a fleet of devices (DPS, MQTT over TLS, twin acknowledgements, direct methods).
    Sim(sim::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await,
        Command::Sim(args) => sim::run(args).await,
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas, and
/// every fresh page then costs a 2 MiB zeroing fault: in a 10,000-device property job's profile,
/// `clear_page_erms` under `do_huge_pmd_anonymous_page` was 20% of the server's CPU.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process; a failure (an
    // old kernel) leaves it as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
