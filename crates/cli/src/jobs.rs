//! `flotilla jobs ...`: list, show, create, watch, devices, export, stop, resume, rerun, copy.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::client::{Client, segment};
use crate::connection::Connection;
use crate::error::{CliError, Exit, Result};
use crate::job_body::JobBodyArgs;
use crate::output::{self, Format, Table, text};
use crate::watch;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// The jobs, newest first.
    List {
        /// Only jobs with this status (pending, running, stopped, complete, cancelled, failed).
        #[arg(long)]
        status: Option<String>,
    },
    /// One job: its definition, status and progress.
    Show { id: String },
    /// Creates (runs) a job, from --file and/or flags; an id is generated when none is given.
    Create {
        /// The new job's id (default: the `id` in --file, else a random one).
        id: Option<String>,
        #[command(flatten)]
        body: JobBodyArgs,
        /// Then watch it as `jobs watch` does (and exit with its codes).
        #[arg(long)]
        watch: bool,
    },
    /// Follows a job until it ends: a progress bar per batch, each failed device as it fails.
    /// Exits 0 when the job completes, 3 failed, 4 cancelled, 5 stopped.
    Watch {
        id: String,
        #[command(flatten)]
        options: watch::WatchOptions,
    },
    /// The job's devices and their status.
    Devices {
        id: String,
        /// Only devices with this status (pending, running, completed, failed).
        #[arg(long)]
        status: Option<String>,
    },
    /// Every device of the job as CSV (id, status, batch, reasonCode, reason, responseCode,
    /// response): the results log.
    Export {
        id: String,
        /// Write to this file instead of stdout.
        #[arg(long = "out")]
        out: Option<PathBuf>,
    },
    /// Stops a running job: no further device starts.
    Stop { id: String },
    /// Resumes a stopped job.
    Resume { id: String },
    /// A new job with the original's definition, on the devices that failed in it.
    Rerun {
        id: String,
        /// The new job's id (default: a random one).
        #[arg(long = "new-id")]
        new_id: Option<String>,
        #[arg(long)]
        watch: bool,
    },
    /// A new job from an existing one's definition (IoT Central's "Copy"), on its group as it is now.
    Copy {
        id: String,
        /// The new job's id (default: a random one).
        #[arg(long = "new-id")]
        new_id: Option<String>,
        /// Another group.
        #[arg(long)]
        group: Option<String>,
        /// Another display name (default: the original's with " - Copy").
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        watch: bool,
    },
}

pub async fn run(connection: &Connection, command: JobsCommand) -> Result<Exit> {
    let client = connection.stable_client()?;
    let format = connection.output;
    match command {
        JobsCommand::List { status } => {
            let mut jobs = client.list("/jobs").await?;
            if let Some(status) = &status {
                jobs.retain(|j| j["status"].as_str() == Some(status.as_str()));
            }
            match format {
                Format::Json => output::json_list(jobs),
                Format::Table => jobs_table(&jobs).print(),
            }
        }
        JobsCommand::Show { id } => {
            let job = client.get(&job_path(&id)).await?;
            match format {
                Format::Json => output::json(&job),
                Format::Table => show(&job),
            }
        }
        JobsCommand::Create { id, body, watch } => {
            let body = body.body(true)?;
            // The argument, else the file's own `id`, else a new one.
            let id = id
                .or_else(|| body.get("id").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(new_id);
            let job = create(&client, &id, body, format).await?;
            if watch {
                return watch::watch(&client, &text(&job["id"]), format, &Default::default()).await;
            }
        }
        JobsCommand::Watch { id, options } => {
            return watch::watch(&client, &id, format, &options).await;
        }
        JobsCommand::Devices { id, status } => {
            let mut devices = client.list(&format!("{}/devices", job_path(&id))).await?;
            if let Some(status) = &status {
                devices.retain(|d| d["status"].as_str() == Some(status.as_str()));
            }
            match format {
                Format::Json => output::json_list(devices),
                Format::Table => {
                    let mut table = Table::new(&["DEVICE", "STATUS", "REASON"]);
                    for device in &devices {
                        table.row(vec![
                            text(&device["id"]),
                            text(&device["status"]),
                            text(&device["reason"]),
                        ]);
                    }
                    table.print();
                }
            }
        }
        JobsCommand::Export { id, out } => export(&client, &id, out).await?,
        JobsCommand::Stop { id } => lifecycle(&client, &id, "stop", "stopped", format).await?,
        JobsCommand::Resume { id } => lifecycle(&client, &id, "resume", "resumed", format).await?,
        JobsCommand::Rerun { id, new_id, watch } => {
            let rerun_id = new_id.unwrap_or_else(self::new_id);
            let path = format!("{}/rerun/{}", job_path(&id), segment(&rerun_id));
            let job = client.put(&path, &json!({})).await?;
            created(&job, format);
            if watch {
                return watch::watch(&client, &rerun_id, format, &Default::default()).await;
            }
        }
        JobsCommand::Copy {
            id,
            new_id,
            group,
            name,
            watch,
        } => {
            let original = client.get(&job_path(&id)).await?;
            let mut body = definition(&original);
            let name = name.unwrap_or_else(|| {
                let base = original["displayName"].as_str().unwrap_or(&id);
                format!("{base} - Copy")
            });
            body.insert("displayName".into(), Value::String(name));
            if let Some(group) = group {
                body.insert("group".into(), Value::String(group));
            }
            let copy_id = new_id.unwrap_or_else(self::new_id);
            let job = create(&client, &copy_id, body, format).await?;
            if watch {
                return watch::watch(&client, &text(&job["id"]), format, &Default::default()).await;
            }
        }
    }
    Ok(Exit::Ok)
}

pub fn job_path(id: &str) -> String {
    format!("/jobs/{}", segment(id))
}

/// A fresh job id: IoT Central's UI makes UUIDs too.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The fields of a job that define it (what a copy keeps): not its id, status, progress, times.
pub fn definition(job: &Value) -> Map<String, Value> {
    const DEFINING: [&str; 7] = [
        "displayName",
        "description",
        "group",
        "batch",
        "cancellationThreshold",
        "data",
        "organizations",
    ];
    let mut body = Map::new();
    for key in DEFINING {
        if let Some(value) = job.get(key) {
            body.insert(key.to_string(), value.clone());
        }
    }
    body
}

async fn create(
    client: &Client,
    id: &str,
    body: Map<String, Value>,
    format: Format,
) -> Result<Value> {
    let job = client.put(&job_path(id), &Value::Object(body)).await?;
    created(&job, format);
    Ok(job)
}

fn created(job: &Value, format: Format) {
    match format {
        Format::Json => output::json(job),
        Format::Table => println!(
            "job {} created ({})",
            text(&job["id"]),
            text(&job["status"])
        ),
    }
}

/// Stop or resume; then the job as it is.
async fn lifecycle(
    client: &Client,
    id: &str,
    action: &str,
    done: &str,
    format: Format,
) -> Result<()> {
    client
        .post(&format!("{}/{action}", job_path(id)), None)
        .await?;
    let job = client.get(&job_path(id)).await?;
    match format {
        Format::Json => output::json(&job),
        Format::Table => println!("job {id} {done} (now {})", text(&job["status"])),
    }
    Ok(())
}

pub fn jobs_table(jobs: &[Value]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "GROUP",
        "TOTAL",
        "COMPLETED",
        "FAILED",
        "NAME",
    ]);
    for job in jobs {
        let progress = &job["progress"];
        table.row(vec![
            text(&job["id"]),
            text(&job["status"]),
            text(&job["group"]),
            text(&progress["total"]),
            text(&progress["completed"]),
            text(&progress["failed"]),
            text(&job["displayName"]),
        ]);
    }
    table
}

fn measure(value: &Value) -> String {
    match value["type"].as_str() {
        Some("percentage") => format!("{}%", text(&value["value"])),
        Some(_) => format!("{} devices", text(&value["value"])),
        None => String::new(),
    }
}

fn show(job: &Value) {
    let progress = &job["progress"];
    let mut threshold = measure(&job["cancellationThreshold"]);
    if job["cancellationThreshold"]["batch"] == true {
        threshold.push_str(" per batch");
    }
    let mut pairs = vec![
        ("id", text(&job["id"])),
        ("name", text(&job["displayName"])),
        ("status", text(&job["status"])),
        ("group", text(&job["group"])),
        ("batch", measure(&job["batch"])),
        ("threshold", threshold),
        (
            "progress",
            format!(
                "{} completed, {} failed, {} pending of {}",
                text(&progress["completed"]),
                text(&progress["failed"]),
                text(&progress["pending"]),
                text(&progress["total"])
            ),
        ),
        ("start", text(&job["start"])),
        ("end", text(&job["end"])),
    ];
    if let Some(reason) = job.get("reason") {
        pairs.push(("reason", text(reason)));
    }
    if let Some(scheduled) = job.get("scheduledJobId") {
        pairs.push(("scheduled job", text(scheduled)));
    }
    pairs.retain(|(_, v)| !v.is_empty());
    output::fields(&pairs);
    println!();
    data_table(&job["data"]).print();
}

/// A job's `data` entries.
pub fn data_table(data: &Value) -> Table {
    let mut table = Table::new(&["TYPE", "TARGET", "PATH", "VALUE"]);
    for entry in data.as_array().into_iter().flatten() {
        let target = entry
            .get("target")
            .or_else(|| entry.get("template"))
            .unwrap_or(&Value::Null);
        table.row(vec![
            text(&entry["type"]),
            text(target),
            text(&entry["path"]),
            text(&entry["value"]),
        ]);
    }
    table
}

/// The results log: one CSV row per device, in the job's order.
async fn export(client: &Client, id: &str, out: Option<PathBuf>) -> Result<()> {
    let job = client.get(&job_path(id)).await?;
    let devices = client.list(&format!("{}/devices", job_path(id))).await?;
    let batches = watch::Batches::of(&job, devices.len());
    let sink: Box<dyn std::io::Write> = match &out {
        Some(path) => {
            Box::new(std::fs::File::create(path).map_err(|e| CliError::file(path.display(), e))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let name = out
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdout".into());
    let mut writer = csv::Writer::from_writer(sink);
    let write_error = |e: csv::Error| CliError::file(&name, e);
    writer
        .write_record([
            "id",
            "status",
            "batch",
            "reasonCode",
            "reason",
            "responseCode",
            "response",
        ])
        .map_err(write_error)?;
    for (position, device) in devices.iter().enumerate() {
        // Batches counted from 1, as `jobs watch` shows them.
        let batch = (batches.of_position(position) + 1).to_string();
        writer
            .write_record([
                text(&device["id"]),
                text(&device["status"]),
                batch,
                text(&device["reasonCode"]),
                text(&device["reason"]),
                text(&device["responseCode"]),
                text(&device["response"]),
            ])
            .map_err(write_error)?;
    }
    writer.flush().map_err(|e| CliError::file(&name, e))?;
    Ok(())
}
