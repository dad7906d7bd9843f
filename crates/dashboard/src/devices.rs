//! Devices: the list (all, or those a filter in the device-group language selects; keyset pages
//! by id), and a device's page: its properties with their acknowledgements, last telemetry and
//! connection (polled every 500 ms), a form to run a command and each command's history.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::{Capability, CapabilityKind};
use flotilla_store::PageRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Dash;
use crate::page::{Nav, PageError, PageResult, encode, render, time};
use crate::session::Session;

const PAGE: usize = 50;
/// Commands of each name shown in the history.
const HISTORY: usize = 10;

struct DeviceRow {
    id: String,
    name: String,
    template: String,
    provisioned: bool,
    enabled: bool,
    connected: bool,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    nav: Nav,
    filter: String,
    error: Option<String>,
    devices: Vec<DeviceRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    filter: String,
    after: Option<String>,
}

pub async fn list(
    State(dash): State<Dash>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> PageResult {
    session.require(Area::Devices, Access::Read)?;
    let store = &dash.app.store;
    let page = PageRequest {
        after: query.after.as_deref(),
        size: PAGE,
    };
    let mut error = None;
    let devices = if query.filter.trim().is_empty() {
        store.list_devices(page).await?
    } else {
        match flotilla_filter::parse(&query.filter) {
            Ok(filter) => store.devices_matching(&filter, page).await?,
            Err(e) => {
                error = Some(format!("The filter is an {e}."));
                flotilla_store::Page {
                    items: vec![],
                    more: false,
                }
            }
        }
    };
    let next = devices
        .more
        .then(|| devices.items.last().map(|d| d.id.clone()))
        .flatten();
    let mut rows = Vec::with_capacity(devices.items.len());
    for d in devices.items {
        rows.push(DeviceRow {
            connected: dash.app.bus.is_connected(&d.id).await,
            id: d.id,
            name: d.display_name,
            template: d.template.unwrap_or_default(),
            provisioned: d.provisioned,
            enabled: d.enabled,
        });
    }
    Ok(render(&DevicesPage {
        nav: Nav::new(&session, "devices"),
        filter: query.filter,
        error,
        devices: rows,
        next,
    }))
}

/// A property as the device page shows it.
struct PropertyRow {
    name: String,
    value: String,
    desired: String,
    ack: String,
}

struct TelemetryRow {
    name: String,
    value: String,
    time: String,
}

#[derive(Template)]
#[template(path = "device_live.html")]
struct Live {
    id: String,
    connected: bool,
    properties: Vec<PropertyRow>,
    telemetry: Vec<TelemetryRow>,
}

struct CommandRow {
    name: String,
    request: String,
    response: String,
    code: String,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    nav: Nav,
    error: Option<String>,
    notice: Option<String>,
    id: String,
    name: String,
    template: String,
    enabled: bool,
    provisioned: bool,
    live: Live,
    commands: Vec<String>,
    history: Vec<CommandRow>,
    may_write: bool,
}

fn path_of(capability: &Capability) -> String {
    match &capability.component {
        Some(component) => format!("{component}.{}", capability.name),
        None => capability.name.clone(),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn capabilities(dash: &Dash, template: Option<&str>) -> Result<Vec<Capability>, PageError> {
    Ok(match template {
        Some(t) => dash.app.store.template_capabilities(t).await?,
        None => vec![],
    })
}

async fn live_of(dash: &Dash, session: &Session, id: &str) -> Result<Live, PageError> {
    let device = dash
        .app
        .store
        .device(id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no device '{id}'.")))?;
    let capabilities = capabilities(dash, device.template.as_deref()).await?;
    // The REST API's view: reported values, and each writable property's desired value and
    // acknowledgement under `$metadata`.
    let view = dash
        .api(
            session,
            Method::GET,
            &format!("/devices/{}/properties", encode(id)),
            None,
        )
        .await?;
    let mut properties = Vec::new();
    let mut add = |name: String, value: &Value, meta: &Value| {
        let ack = match meta.get("ackCode") {
            Some(code) => format!(
                "{} (version {}{})",
                text(code),
                text(&meta["ackVersion"]),
                meta.get("ackDescription")
                    .map(|d| format!(": {}", text(d)))
                    .unwrap_or_default()
            ),
            None if meta.get("desiredValue").is_some() => "waiting for the device".into(),
            None => String::new(),
        };
        properties.push(PropertyRow {
            name,
            value: text(value),
            desired: meta.get("desiredValue").map(text).unwrap_or_default(),
            ack,
        });
    };
    if let Some(object) = view.as_object() {
        for (key, value) in object {
            if key == "$metadata" {
                continue;
            }
            if let Some(component) = value.as_object().filter(|o| o.contains_key("__t")) {
                for (name, inner) in component {
                    if name == "__t" || name == "$metadata" {
                        continue;
                    }
                    add(format!("{key}.{name}"), inner, &value["$metadata"][name]);
                }
            } else {
                add(key.clone(), value, &view["$metadata"][key]);
            }
        }
        // Desired but never reported: listed too, with their state.
        if let Some(meta) = view["$metadata"].as_object() {
            for (name, m) in meta {
                if !object.contains_key(name) {
                    add(name.clone(), &Value::Null, m);
                }
            }
        }
    }
    let mut telemetry = Vec::new();
    for c in capabilities
        .iter()
        .filter(|c| c.kind == CapabilityKind::Telemetry)
    {
        let last = dash
            .app
            .store
            .telemetry(id, c.component.as_deref(), &c.name)
            .await?;
        telemetry.push(TelemetryRow {
            name: path_of(c),
            value: last.as_ref().map(|(v, _)| text(v)).unwrap_or_default(),
            time: time(last.map(|(_, t)| t)),
        });
    }
    Ok(Live {
        id: id.to_string(),
        connected: dash.app.bus.is_connected(id).await,
        properties,
        telemetry,
    })
}

async fn device_page(
    dash: &Dash,
    session: &Session,
    id: &str,
    error: Option<PageError>,
    notice: Option<String>,
) -> PageResult {
    session.require(Area::Devices, Access::Read)?;
    let device = dash
        .app
        .store
        .device(id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no device '{id}'.")))?;
    let capabilities = capabilities(dash, device.template.as_deref()).await?;
    let mut history = Vec::new();
    let mut commands = Vec::new();
    for c in capabilities
        .iter()
        .filter(|c| c.kind == CapabilityKind::Command)
    {
        commands.push(path_of(c));
        let page = dash
            .app
            .store
            .command_history(
                id,
                c.component.as_deref(),
                &c.name,
                PageRequest {
                    after: None,
                    size: 1000,
                },
            )
            .await?;
        for record in page.items.iter().rev().take(HISTORY) {
            history.push(CommandRow {
                name: path_of(c),
                request: record.request.as_ref().map(text).unwrap_or_default(),
                response: record.response.as_ref().map(text).unwrap_or_default(),
                code: record
                    .response_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "no answer".into()),
            });
        }
    }
    let status = error.as_ref().map(|e| e.status);
    let mut response = render(&DevicePage {
        nav: Nav::new(session, "devices"),
        error: error.map(|e| e.message),
        notice,
        id: device.id.clone(),
        name: device.display_name.clone(),
        template: device.template.clone().unwrap_or_default(),
        enabled: device.enabled,
        provisioned: device.provisioned,
        live: live_of(dash, session, id).await?,
        commands,
        history,
        may_write: session.may(Area::Devices, Access::Write),
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

pub async fn page(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    device_page(&dash, &session, &id, None, None).await
}

pub async fn live(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    session.require(Area::Devices, Access::Read)?;
    Ok(render(&live_of(&dash, &session, &id).await?))
}

#[derive(Deserialize)]
pub struct CommandForm {
    command: String,
    #[serde(default)]
    request: String,
}

/// Runs a command through the REST API and shows its answer (or the refusal) on the page.
pub async fn command(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> PageResult {
    let path = match form.command.split_once('.') {
        Some((component, name)) => format!(
            "/devices/{}/components/{}/commands/{}",
            encode(&id),
            encode(component),
            encode(name)
        ),
        None => format!(
            "/devices/{}/commands/{}",
            encode(&id),
            encode(&form.command)
        ),
    };
    let mut body = json!({"connectionTimeout": 5, "responseTimeout": 10});
    let request = form.request.trim();
    if !request.is_empty() {
        body["request"] = serde_json::from_str(request).unwrap_or_else(|_| json!(request));
    }
    match dash.api(&session, Method::POST, &path, Some(body)).await {
        Ok(answer) => {
            let notice = format!(
                "{} answered {}: {}",
                form.command,
                text(&answer["responseCode"]),
                text(&answer["response"])
            );
            device_page(&dash, &session, &id, None, Some(notice)).await
        }
        Err(e) => device_page(&dash, &session, &id, Some(e), None).await,
    }
}
