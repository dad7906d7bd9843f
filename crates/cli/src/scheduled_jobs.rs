//! `flotilla scheduled-jobs ...`: list, show, create, update, delete, runs. IoT Central serves
//! scheduled jobs in its 2022-10-31-preview, so that is the version sent unless --api-version says.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, PREVIEW, segment};
use crate::connection::Connection;
use crate::error::{CliError, Exit, Result};
use crate::job_body::{JobBodyArgs, loose_json, read_json_file};
use crate::jobs::{data_table, jobs_table};
use crate::output::{self, Format, Table, text};

#[derive(Subcommand, Debug)]
pub enum ScheduledJobsCommand {
    /// The scheduled jobs.
    List,
    /// One scheduled job: its definition and schedule.
    Show { id: String },
    /// Creates a scheduled job: a job definition (--file and/or flags) and --schedule.
    Create {
        /// The new scheduled job's id (default: the `id` in --file, else a random one).
        id: Option<String>,
        #[command(flatten)]
        body: JobBodyArgs,
        /// The schedule: JSON (`{"start": "2026-12-24T08:00:00Z", "recurrence": "daily"}`) or
        /// @FILE. Replaces `schedule` in --file.
        #[arg(long)]
        schedule: Option<String>,
        /// Run its occurrences (a scheduled job is created disabled unless this or the body says).
        #[arg(long)]
        enabled: bool,
    },
    /// Changes a scheduled job: the fields given (a JSON merge patch).
    Update {
        id: String,
        #[command(flatten)]
        body: JobBodyArgs,
        /// A new schedule: JSON or @FILE.
        #[arg(long)]
        schedule: Option<String>,
        /// Run its occurrences.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop running its occurrences.
        #[arg(long)]
        disable: bool,
    },
    /// Deletes a scheduled job (the jobs its runs created stay).
    Delete { id: String },
    /// The jobs its occurrences created.
    Runs { id: String },
}

fn path(id: &str) -> String {
    format!("/scheduledJobs/{}", segment(id))
}

/// `--schedule`: inline JSON, or @FILE.
fn schedule(text: &str) -> Result<Value> {
    match text.strip_prefix('@') {
        Some(file) => read_json_file(std::path::Path::new(file)).map(Value::Object),
        None => match loose_json(text) {
            object @ Value::Object(_) => Ok(object),
            _ => Err(CliError::usage(
                "--schedule must be a JSON object, or @FILE holding one",
            )),
        },
    }
}

pub async fn run(connection: &Connection, command: ScheduledJobsCommand) -> Result<Exit> {
    let client: Client = connection.client(PREVIEW)?;
    let format = connection.output;
    match command {
        ScheduledJobsCommand::List => {
            let jobs = client.list("/scheduledJobs").await?;
            match format {
                Format::Json => output::json_list(jobs),
                Format::Table => {
                    let mut table = Table::new(&[
                        "ID",
                        "ENABLED",
                        "COMPLETED",
                        "GROUP",
                        "START",
                        "RECURRENCE",
                        "NAME",
                    ]);
                    for job in &jobs {
                        table.row(vec![
                            text(&job["id"]),
                            text(&job["enabled"]),
                            text(&job["completed"]),
                            text(&job["group"]),
                            text(&job["schedule"]["start"]),
                            text(&job["schedule"]["recurrence"]),
                            text(&job["displayName"]),
                        ]);
                    }
                    table.print();
                }
            }
        }
        ScheduledJobsCommand::Show { id } => {
            let job = client.get(&path(&id)).await?;
            match format {
                Format::Json => output::json(&job),
                Format::Table => {
                    let mut pairs = vec![
                        ("id", text(&job["id"])),
                        ("name", text(&job["displayName"])),
                        ("group", text(&job["group"])),
                        ("enabled", text(&job["enabled"])),
                        ("completed", text(&job["completed"])),
                        ("schedule", text(&job["schedule"])),
                    ];
                    pairs.retain(|(_, v)| !v.is_empty());
                    output::fields(&pairs);
                    println!();
                    data_table(&job["data"]).print();
                }
            }
        }
        ScheduledJobsCommand::Create {
            id,
            body,
            schedule: given,
            enabled,
        } => {
            let mut body = body.body(true)?;
            let id = id
                .or_else(|| body.get("id").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(crate::jobs::new_id);
            if let Some(given) = given {
                body.insert("schedule".into(), schedule(&given)?);
            }
            if !body.contains_key("schedule") {
                return Err(CliError::usage(
                    "a scheduled job needs --schedule (or `schedule` in --file)",
                ));
            }
            if enabled {
                body.insert("enabled".into(), json!(true));
            }
            let job = client.put(&path(&id), &Value::Object(body)).await?;
            changed(&job, "created", format);
        }
        ScheduledJobsCommand::Update {
            id,
            body,
            schedule: given,
            enable,
            disable,
        } => {
            let mut patch = body.body(false)?;
            if let Some(given) = given {
                patch.insert("schedule".into(), schedule(&given)?);
            }
            if enable || disable {
                patch.insert("enabled".into(), json!(enable));
            }
            if patch.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: give --file, a field flag, --schedule, --enable or --disable",
                ));
            }
            let job = client.patch(&path(&id), &Value::Object(patch)).await?;
            changed(&job, "updated", format);
        }
        ScheduledJobsCommand::Delete { id } => {
            client.delete(&path(&id)).await?;
            if format == Format::Table {
                println!("scheduled job {id} deleted");
            }
        }
        ScheduledJobsCommand::Runs { id } => {
            let jobs = client.list(&format!("{}/jobs", path(&id))).await?;
            match format {
                Format::Json => output::json_list(jobs),
                Format::Table => jobs_table(&jobs).print(),
            }
        }
    }
    Ok(Exit::Ok)
}

fn changed(job: &Value, what: &str, format: Format) {
    match format {
        Format::Json => output::json(job),
        Format::Table => println!(
            "scheduled job {} {what} (enabled: {})",
            text(&job["id"]),
            text(&job["enabled"])
        ),
    }
}
