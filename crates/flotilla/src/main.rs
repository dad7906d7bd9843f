//! The `flotilla` binary: `flotilla serve` runs the server; `flotilla sim` simulates a fleet of
//! devices against one; `flotilla import` takes an IoT Central application over.

mod admission;
mod command_line_secrets;
mod http_server;
mod https;
mod import;
mod import_move;
mod import_progress;
mod open_files;
mod serve;
mod server_files;
mod shutdown;
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
    /// Import an IoT Central application (through its REST API) into this server's database.
    Import(import::ImportArgs),
    /// Simulate a fleet of devices (DPS, MQTT over TLS, twin acknowledgements, direct methods).
    Sim(sim::SimArgs),
    /// The client: jobs, scheduled-jobs, groups, devices, tokens (docs/cli.md).
    #[command(flatten)]
    Client(flotilla_cli::Command),
}

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    open_files::raise_to_hard_limit();
    let cli = Cli::parse();
    // The client's commands run on a runtime of their own and exit with their own codes.
    let cli = Cli {
        command: match cli.command {
            Command::Client(command) => std::process::exit(flotilla_cli::main(command).into()),
            command => command,
        },
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if matches!(cli.command, Command::Serve(_)) {
        // Before anything records: a metric's handle taken earlier would record nowhere.
        flotilla::prometheus::install();
        // The REST API runs on this runtime; device work has its own (gateway::runtime).
        runtime.on_thread_start(short_time_slices);
    }
    runtime.build()?.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Import(args) => {
                if import::run(args).await? {
                    Ok(())
                } else {
                    std::process::exit(1)
                }
            }
            Command::Client(_) => unreachable!("the client's commands exit above"),
        }
    })
}

/// Asks the scheduler for short time slices on this thread (0.1 ms instead of the default 3 ms;
/// Linux 6.6+ EEVDF, no privilege needed): a thread with a short slice has an earlier deadline,
/// so when it wakes for a request while job work keeps both cores busy, it runs at once
/// instead of waiting for the running thread's slice to end. Its share of the CPU is the same.
fn short_time_slices() {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` of sched_setattr(2), up to the fields used here.
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: 0, // SCHED_OTHER
            flags: 0,
            nice: 0,
            priority: 0,
            runtime: 100_000, // ns: the slice
            deadline: 0,
            period: 0,
        };
        // SAFETY: sched_setattr on this thread (pid 0) with a valid, sized attribute struct; a
        // kernel without custom slices refuses it and nothing changes.
        unsafe {
            libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
        }
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
