//! `flotilla serve`: open the database, make what a first start needs, and serve HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use flotilla_api::AppState;
use flotilla_store::Store;

use crate::bootstrap;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the server keeps its files: the SQLite database, the admin token, certificates.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./flotilla-data")]
    pub data_dir: PathBuf,

    /// The HTTP listener for the REST API. Port 0 picks a free port; the address bound is
    /// written to `<data-dir>/http.addr`.
    #[arg(long, env = "FLOTILLA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// `sqlite://...` or `postgres://...`; by default a SQLite file in the data dir.
    #[arg(long, env = "FLOTILLA_DATABASE_URL")]
    pub database_url: Option<String>,

    /// An administrator API token to accept instead of generating one at first start.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let database_url = args.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            args.data_dir.join("flotilla.db").display()
        )
    });
    let store = Store::connect(&database_url)
        .await
        .with_context(|| format!("opening the database {}", redact(&database_url)))?;
    let app = bootstrap::run(&store, &args.data_dir, args.admin_token.as_deref()).await?;

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener to {}", args.http_addr))?;
    let bound = listener.local_addr()?;
    std::fs::write(args.data_dir.join("http.addr"), bound.to_string())?;
    tracing::info!(%bound, "REST API listening: http://{bound}/api");

    let state = AppState {
        store: store.clone(),
        id_scope: app.id_scope,
        app_id: app.app_id,
    };
    axum::serve(listener, flotilla_api::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
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
