//! `flotilla tokens ...`: list, show, create, delete API tokens (administrators only).

use clap::Subcommand;
use flotilla_model::roles;
use serde_json::{Value, json};

use crate::client::segment;
use crate::connection::Connection;
use crate::error::{Exit, Result};
use crate::output::{self, Format, Table, text};

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// The API tokens (never their values).
    List,
    /// One token.
    Show { id: String },
    /// Creates a token and prints its value (shown this once).
    Create {
        id: String,
        /// A role: administrator, builder, operator, or a role id (repeatable).
        #[arg(long, required = true)]
        role: Vec<String>,
        /// The organization the roles apply in.
        #[arg(long)]
        organization: Option<String>,
        /// When it expires (RFC 3339, e.g. 2027-12-31T00:00:00Z); default: the server's.
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Deletes a token: requests with it are refused from then on.
    Delete { id: String },
}

fn path(id: &str) -> String {
    format!("/apiTokens/{}", segment(id))
}

/// A built-in role's id from its name; anything else is taken as an id.
fn role_id(role: &str) -> String {
    match role.to_ascii_lowercase().as_str() {
        "administrator" | "admin" => roles::ADMINISTRATOR.into(),
        "builder" => roles::BUILDER.into(),
        "operator" => roles::OPERATOR.into(),
        _ => role.to_string(),
    }
}

/// A role's name where it is a built-in one.
fn role_name(id: &str) -> String {
    roles::find(id)
        .map(|r| r.display_name.to_string())
        .unwrap_or_else(|| id.to_string())
}

fn roles_text(token: &Value) -> String {
    token["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let name = role_name(r["role"].as_str().unwrap_or_default());
            match r["organization"].as_str() {
                Some(org) => format!("{name} ({org})"),
                None => name,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(connection: &Connection, command: TokensCommand) -> Result<Exit> {
    let client = connection.stable_client()?;
    let format = connection.output;
    match command {
        TokensCommand::List => {
            let tokens = client.list("/apiTokens").await?;
            match format {
                Format::Json => output::json_list(tokens),
                Format::Table => {
                    let mut table = Table::new(&["ID", "ROLES", "EXPIRY"]);
                    for token in &tokens {
                        table.row(vec![
                            text(&token["id"]),
                            roles_text(token),
                            text(&token["expiry"]),
                        ]);
                    }
                    table.print();
                }
            }
        }
        TokensCommand::Show { id } => {
            let token = client.get(&path(&id)).await?;
            match format {
                Format::Json => output::json(&token),
                Format::Table => output::fields(&[
                    ("id", text(&token["id"])),
                    ("roles", roles_text(&token)),
                    ("expiry", text(&token["expiry"])),
                ]),
            }
        }
        TokensCommand::Create {
            id,
            role,
            organization,
            expiry,
        } => {
            let roles: Vec<Value> = role
                .iter()
                .map(|r| {
                    let mut assignment = json!({"role": role_id(r)});
                    if let Some(org) = &organization {
                        assignment["organization"] = json!(org);
                    }
                    assignment
                })
                .collect();
            let mut body = json!({"roles": roles});
            if let Some(expiry) = expiry {
                body["expiry"] = json!(expiry);
            }
            let token = client.put(&path(&id), &body).await?;
            match format {
                Format::Json => output::json(&token),
                Format::Table => {
                    eprintln!(
                        "token {} created ({}); its value, shown this once:",
                        text(&token["id"]),
                        roles_text(&token)
                    );
                    println!("{}", text(&token["token"]));
                }
            }
        }
        TokensCommand::Delete { id } => {
            client.delete(&path(&id)).await?;
            if format == Format::Table {
                println!("token {id} deleted");
            }
        }
    }
    Ok(Exit::Ok)
}
