//! `flotilla devices ...`: list, show, import and export IoT Central's device CSV.

use std::path::PathBuf;

use clap::Subcommand;
use futures_util::{StreamExt, stream};
use serde_json::{Map, Value, json};

use crate::client::{Client, segment};
use crate::connection::Connection;
use crate::device_csv::{self, BadRow, EXPORT_COLUMNS, ImportRow};
use crate::error::{CliError, Exit, Result};
use crate::output::{self, Format, Table, text};

/// Requests in flight at once during an import or an export.
const CONCURRENCY: usize = 8;

#[derive(Subcommand, Debug)]
pub enum DevicesCommand {
    /// The devices.
    List,
    /// One device.
    Show { id: String },
    /// Creates the devices of an IoT Central device CSV (IOTC_DEVICEID, IOTC_DEVICENAME); a
    /// device that exists gets the name (and --template) the file gives, if they differ.
    Import {
        /// The CSV file (`-` for stdin).
        file: PathBuf,
        /// The device template of every device imported.
        #[arg(long)]
        template: Option<String>,
    },
    /// The devices as IoT Central's export CSV: id, name, SAS keys, X.509 thumbprints.
    Export {
        /// Only the devices of this group.
        #[arg(long)]
        group: Option<String>,
        /// Leave the key columns empty (no request per device for its credentials).
        #[arg(long)]
        without_keys: bool,
        /// Write to this file instead of stdout.
        #[arg(long = "out")]
        out: Option<PathBuf>,
    },
}

fn path(id: &str) -> String {
    format!("/devices/{}", segment(id))
}

pub fn devices_table(devices: &[Value]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "TEMPLATE", "PROVISIONED", "ENABLED"]);
    for device in devices {
        table.row(vec![
            text(&device["id"]),
            text(&device["displayName"]),
            text(&device["template"]),
            text(&device["provisioned"]),
            text(&device["enabled"]),
        ]);
    }
    table
}

pub async fn run(connection: &Connection, command: DevicesCommand) -> Result<Exit> {
    let client = connection.stable_client()?;
    let format = connection.output;
    match command {
        DevicesCommand::List => {
            let devices = client.list("/devices").await?;
            match format {
                Format::Json => output::json_list(devices),
                Format::Table => devices_table(&devices).print(),
            }
        }
        DevicesCommand::Show { id } => {
            let device = client.get(&path(&id)).await?;
            match format {
                Format::Json => output::json(&device),
                Format::Table => {
                    let mut pairs: Vec<(&str, String)> = Vec::new();
                    if let Some(fields) = device.as_object() {
                        for (key, value) in fields {
                            pairs.push((key.as_str(), text(value)));
                        }
                    }
                    output::fields(&pairs);
                }
            }
        }
        DevicesCommand::Import { file, template } => {
            return import(&client, &file, template.as_deref(), format).await;
        }
        DevicesCommand::Export {
            group,
            without_keys,
            out,
        } => export(&client, group.as_deref(), without_keys, out).await?,
    }
    Ok(Exit::Ok)
}

/// What became of one row.
struct Outcome {
    line: u64,
    id: String,
    result: &'static str,
    error: Option<String>,
}

async fn import(
    client: &Client,
    file: &std::path::Path,
    template: Option<&str>,
    format: Format,
) -> Result<Exit> {
    let name = file.display().to_string();
    let (rows, bad) = if file.as_os_str() == "-" {
        device_csv::read_import(std::io::stdin().lock(), "stdin")?
    } else {
        let source = std::fs::File::open(file).map_err(|e| CliError::file(&name, e))?;
        device_csv::read_import(source, &name)?
    };
    let mut outcomes: Vec<Outcome> = stream::iter(rows)
        .map(|row| import_row(client, row, template))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    outcomes.extend(bad.into_iter().map(|BadRow { line, id, message }| Outcome {
        line,
        id,
        result: "failed",
        error: Some(message),
    }));
    outcomes.sort_by_key(|o| o.line);
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    match format {
        Format::Json => output::json_list(
            outcomes
                .iter()
                .map(|o| {
                    let mut row = json!({"line": o.line, "id": o.id, "result": o.result});
                    if let Some(error) = &o.error {
                        row["error"] = json!(error);
                    }
                    row
                })
                .collect(),
        ),
        Format::Table => {
            let mut table = Table::new(&["LINE", "DEVICE", "RESULT", "ERROR"]);
            for o in &outcomes {
                table.row(vec![
                    o.line.to_string(),
                    o.id.clone(),
                    o.result.to_string(),
                    o.error.clone().unwrap_or_default(),
                ]);
            }
            table.print();
            let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
            println!(
                "{} created, {} updated, {} unchanged, {failed} failed",
                count("created"),
                count("updated"),
                count("unchanged")
            );
        }
    }
    if failed > 0 {
        return Err(CliError::Reported(format!(
            "{failed} of {} rows were not imported",
            outcomes.len()
        )));
    }
    Ok(Exit::Ok)
}

/// Creates the row's device, or brings an existing one's name and template to the file's.
async fn import_row(client: &Client, row: ImportRow, template: Option<&str>) -> Outcome {
    let outcome = |result, error: Option<String>| Outcome {
        line: row.line,
        id: row.id.clone(),
        result,
        error,
    };
    let device_path = path(&row.id);
    let mut wanted = Map::new();
    if let Some(name) = &row.name {
        wanted.insert("displayName".into(), json!(name));
    }
    if let Some(template) = template {
        wanted.insert("template".into(), json!(template));
    }
    match client.get(&device_path).await {
        Ok(existing) => {
            wanted.retain(|key, value| existing.get(key) != Some(value));
            if wanted.is_empty() {
                return outcome("unchanged", None);
            }
            match client.patch(&device_path, &Value::Object(wanted)).await {
                Ok(_) => outcome("updated", None),
                Err(e) => outcome("failed", Some(e.to_string())),
            }
        }
        Err(e) if e.api().is_some_and(|f| f.status == 404) => {
            wanted.insert("enabled".into(), json!(true));
            match client.put(&device_path, &Value::Object(wanted)).await {
                Ok(_) => outcome("created", None),
                Err(e) => outcome("failed", Some(e.to_string())),
            }
        }
        Err(e) => outcome("failed", Some(e.to_string())),
    }
}

async fn export(
    client: &Client,
    group: Option<&str>,
    without_keys: bool,
    out: Option<PathBuf>,
) -> Result<()> {
    let devices = match group {
        Some(group) => {
            client
                .list(&format!("/deviceGroups/{}/devices", segment(group)))
                .await?
        }
        None => client.list("/devices").await?,
    };
    let credentials: Vec<Result<Value>> = stream::iter(&devices)
        .map(|device| async move {
            if without_keys {
                return Ok(Value::Null);
            }
            let id = device["id"].as_str().unwrap_or_default();
            client.get(&format!("{}/credentials", path(id))).await
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let name = out
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdout".into());
    let sink: Box<dyn std::io::Write> = match &out {
        Some(path) => {
            Box::new(std::fs::File::create(path).map_err(|e| CliError::file(path.display(), e))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = csv::Writer::from_writer(sink);
    writer
        .write_record(EXPORT_COLUMNS)
        .map_err(|e| CliError::file(&name, e))?;
    for (device, credentials) in devices.iter().zip(credentials) {
        let credentials = credentials?;
        let key = |which: &str| text(&credentials["symmetricKey"][which]);
        let thumbprint = |which: &str| {
            text(&credentials["x509"]["clientCertificates"][which]["info"]["sha1Thumbprint"])
        };
        writer
            .write_record([
                text(&device["id"]),
                text(&device["displayName"]),
                key("primaryKey"),
                key("secondaryKey"),
                thumbprint("primary"),
                thumbprint("secondary"),
            ])
            .map_err(|e| CliError::file(&name, e))?;
    }
    writer.flush().map_err(|e| CliError::file(&name, e))?;
    Ok(())
}
