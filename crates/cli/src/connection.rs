//! The options every client command shares: which server, which token, which api-version,
//! which output; and the client they make.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::client::{Client, STABLE};
use crate::error::{CliError, Result};
use crate::output::Format;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The server's base URL (IoT Central's is https://<app>.azureiotcentral.com).
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// The API token, as issued (`SharedAccessSignature sr=...`). Without it, the administrator
    /// token of --data-dir.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The data dir of a local `flotilla serve`, whose `admin-token` is used when no token is given.
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_DATA_DIR",
        default_value = "./flotilla-data"
    )]
    pub data_dir: PathBuf,

    /// The api-version sent (scheduled jobs use 2022-10-31-preview unless this is given).
    #[arg(long, global = true, env = "FLOTILLA_API_VERSION")]
    pub api_version: Option<String>,

    /// A PEM file of a CA to trust besides the system's (a Flotilla server's <data-dir>/ca.pem
    /// for its HTTPS listener).
    #[arg(long, global = true, env = "FLOTILLA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// `table` for people, `json` for scripts (the REST bodies as they are).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

impl Connection {
    /// The client these options describe, speaking `default_version` unless --api-version says.
    pub fn client(&self, default_version: &str) -> Result<Client> {
        let token = match &self.token {
            Some(token) if !token.trim().is_empty() => token.trim().to_string(),
            _ => admin_token(&self.data_dir)?,
        };
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).map_err(|e| CliError::file(path.display(), e))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::file(path.display(), e))?;
            http = http.add_root_certificate(ca);
        }
        let http = http
            .build()
            .map_err(|e| CliError::usage(format!("cannot set up HTTP: {e}")))?;
        let version = self.api_version.as_deref().unwrap_or(default_version);
        Ok(Client::new(http, &self.url, token, version.to_string()))
    }

    pub fn stable_client(&self) -> Result<Client> {
        self.client(STABLE)
    }
}

/// The token `flotilla serve` wrote at first start.
fn admin_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        _ => Err(CliError::usage(format!(
            "no API token: pass --token or set FLOTILLA_TOKEN (or run where {} is readable)",
            path.display()
        ))),
    }
}
