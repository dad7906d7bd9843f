//! `flotilla groups ...`: list, show, and preview a filter before saving it as a group.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, segment};
use crate::connection::Connection;
use crate::devices::devices_table;
use crate::error::{Exit, Result};
use crate::output::{self, Format, Table, text};

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// The device groups.
    List,
    /// One group, with how many devices it holds now (and which, with --devices).
    Show {
        id: String,
        /// List its devices.
        #[arg(long)]
        devices: bool,
    },
    /// The devices a filter selects now: their count, templates and a sample. The filter is
    /// evaluated by the server as a temporary group, deleted at once (so it needs the right to
    /// write device groups).
    Preview {
        /// IoT Central's group filter: `SELECT * FROM devices WHERE ...`.
        #[arg(long)]
        filter: String,
        /// How many devices to list (table output).
        #[arg(long, default_value_t = 10)]
        sample: usize,
    },
}

fn path(id: &str) -> String {
    format!("/deviceGroups/{}", segment(id))
}

pub async fn run(connection: &Connection, command: GroupsCommand) -> Result<Exit> {
    let client = connection.stable_client()?;
    let format = connection.output;
    match command {
        GroupsCommand::List => {
            let groups = client.list("/deviceGroups").await?;
            match format {
                Format::Json => output::json_list(groups),
                Format::Table => {
                    let mut table = Table::new(&["ID", "NAME", "FILTER"]);
                    for group in &groups {
                        table.row(vec![
                            text(&group["id"]),
                            text(&group["displayName"]),
                            text(&group["filter"]),
                        ]);
                    }
                    table.print();
                }
            }
        }
        GroupsCommand::Show { id, devices } => {
            let group = client.get(&path(&id)).await?;
            let members = client.list(&format!("{}/devices", path(&id))).await?;
            match format {
                Format::Json if devices => output::json_list(members),
                Format::Json => output::json(&group),
                Format::Table => {
                    let mut pairs = vec![
                        ("id", text(&group["id"])),
                        ("name", text(&group["displayName"])),
                        ("description", text(&group["description"])),
                        ("filter", text(&group["filter"])),
                        ("devices", members.len().to_string()),
                    ];
                    pairs.retain(|(_, v)| !v.is_empty());
                    output::fields(&pairs);
                    if devices {
                        devices_table(&members).print();
                    }
                }
            }
        }
        GroupsCommand::Preview { filter, sample } => {
            let members = preview(&client, &filter).await?;
            match format {
                Format::Json => output::json(&json!({
                    "filter": filter,
                    "count": members.len(),
                    "value": members,
                })),
                Format::Table => {
                    println!("{} devices", members.len());
                    let mut templates: BTreeMap<String, usize> = BTreeMap::new();
                    for device in &members {
                        *templates.entry(text(&device["template"])).or_default() += 1;
                    }
                    if !templates.is_empty() {
                        let mut table = Table::new(&["TEMPLATE", "DEVICES"]);
                        for (template, count) in templates {
                            let template = if template.is_empty() {
                                "(none)".to_string()
                            } else {
                                template
                            };
                            table.row(vec![template, count.to_string()]);
                        }
                        table.print();
                    }
                    if sample > 0 && !members.is_empty() {
                        println!();
                        let shown: Vec<Value> = members.into_iter().take(sample).collect();
                        devices_table(&shown).print();
                    }
                }
            }
        }
    }
    Ok(Exit::Ok)
}

/// The filter's devices: a temporary group the server evaluates, deleted whatever happens.
async fn preview(client: &Client, filter: &str) -> Result<Vec<Value>> {
    let id = format!("flotilla-preview-{}", uuid::Uuid::new_v4().simple());
    let group = path(&id);
    client
        .put(
            &group,
            &json!({
                "displayName": "flotilla groups preview (temporary)",
                "filter": filter,
            }),
        )
        .await?;
    let members = client.list(&format!("{group}/devices")).await;
    let deleted = client.delete(&group).await;
    let members = members?;
    deleted?;
    Ok(members)
}
