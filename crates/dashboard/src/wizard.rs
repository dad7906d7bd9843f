//! The new-job form: the group picker with each group's live device count, what to do (a
//! writable property, command or cloud property from the templates' capabilities), the value,
//! batches and the cancellation threshold. It posts the job to the REST API (`PUT /jobs/{id}`),
//! which validates it; a refusal comes back on the form with the values kept. Scheduled jobs
//! use the same fields ([`JobFields`]).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect};
use flotilla_model::roles::{Access, Area};
use flotilla_model::template::CapabilityKind;
use flotilla_store::PageRequest;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Dash;
use crate::page::{Nav, PageError, PageResult, encode, render};
use crate::session::Session;

/// Groups and templates read for the pickers, at most.
const PICKER_LIMIT: usize = 500;

/// A device group in the picker.
pub struct GroupChoice {
    pub id: String,
    pub name: String,
    pub filter: String,
    /// Its devices now (`None` when its filter no longer parses).
    pub count: Option<i64>,
}

/// One capability a job can act on: `kind|template|path` as the option's value.
pub struct CapabilityChoice {
    pub value: String,
    pub label: String,
}

/// The job fields of a form, as posted (and shown again after a refusal).
#[derive(Deserialize, Default, Clone)]
pub struct JobFields {
    #[serde(default)]
    pub job_id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub group: String,
    /// `kind|template|path`.
    #[serde(default)]
    pub capability: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub batch_type: String,
    #[serde(default)]
    pub batch_value: String,
    #[serde(default)]
    pub threshold_type: String,
    #[serde(default)]
    pub threshold_value: String,
    #[serde(default)]
    pub threshold_batch: Option<String>,
}

/// A number field as JSON (a number when it reads as one; the API words the refusal otherwise).
fn number(text: &str) -> Value {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                Some(json!(n as i64))
            } else {
                serde_json::Number::from_f64(n).map(Value::Number)
            }
        })
        .unwrap_or_else(|| json!(text.trim()))
}

impl JobFields {
    /// The job definition as the REST API takes it.
    pub fn definition(&self) -> Value {
        let mut body = Map::new();
        if !self.display_name.trim().is_empty() {
            body.insert("displayName".into(), json!(self.display_name.trim()));
        }
        if !self.description.trim().is_empty() {
            body.insert("description".into(), json!(self.description.trim()));
        }
        body.insert("group".into(), json!(self.group));
        if !self.batch_type.is_empty() {
            body.insert(
                "batch".into(),
                json!({"type": self.batch_type, "value": number(&self.batch_value)}),
            );
        }
        if !self.threshold_type.is_empty() {
            body.insert(
                "cancellationThreshold".into(),
                json!({
                    "type": self.threshold_type,
                    "value": number(&self.threshold_value),
                    "batch": self.threshold_batch.is_some(),
                }),
            );
        }
        let mut parts = self.capability.splitn(3, '|');
        let (kind, target, path) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let mut entry = json!({"type": kind, "target": target, "path": path});
        let value = self.value.trim();
        if !value.is_empty() {
            // JSON when it reads as JSON (21.5, true, {"a": 1}); else the text as a string.
            entry["value"] = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        }
        body.insert("data".into(), json!([entry]));
        Value::Object(body)
    }

    /// The fields of a stored job definition (to copy a job, or edit a scheduled job).
    pub fn of_definition(definition: &Value) -> JobFields {
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let entry = &definition["data"][0];
        JobFields {
            job_id: String::new(),
            display_name: text(&definition["displayName"]),
            description: text(&definition["description"]),
            group: text(&definition["group"]),
            capability: format!(
                "{}|{}|{}",
                text(&entry["type"]),
                text(&entry["target"]),
                text(&entry["path"])
            ),
            value: text(&entry["value"]),
            batch_type: text(&definition["batch"]["type"]),
            batch_value: text(&definition["batch"]["value"]),
            threshold_type: text(&definition["cancellationThreshold"]["type"]),
            threshold_value: text(&definition["cancellationThreshold"]["value"]),
            threshold_batch: (definition["cancellationThreshold"]["batch"] == true)
                .then(|| "on".to_string()),
        }
    }
}

/// The groups, each with its live device count.
pub async fn group_choices(dash: &Dash) -> Result<Vec<GroupChoice>, PageError> {
    let store = &dash.app.store;
    let groups = store
        .list_device_groups(PageRequest {
            after: None,
            size: PICKER_LIMIT,
        })
        .await?;
    let mut choices = Vec::new();
    for group in groups.items {
        let count = match flotilla_filter::parse(&group.filter) {
            Ok(filter) => Some(store.count_devices_matching(&filter).await?),
            Err(_) => None,
        };
        choices.push(GroupChoice {
            id: group.id.clone(),
            name: group.display_name.clone(),
            filter: group.filter.clone(),
            count,
        });
    }
    Ok(choices)
}

/// What a job can do, from every template's capabilities.
pub async fn capability_choices(dash: &Dash) -> Result<Vec<CapabilityChoice>, PageError> {
    let store = &dash.app.store;
    let templates = store
        .list_templates(PageRequest {
            after: None,
            size: PICKER_LIMIT,
        })
        .await?;
    let mut choices = Vec::new();
    for template in templates.items {
        let name = template.body["displayName"]
            .as_str()
            .unwrap_or(&template.id)
            .to_string();
        for capability in store.template_capabilities(&template.id).await? {
            let (kind, label) = match capability.kind {
                CapabilityKind::WritableProperty => ("property", "Property"),
                CapabilityKind::Command => ("command", "Command"),
                CapabilityKind::CloudProperty => ("cloudProperty", "Cloud property"),
                _ => continue,
            };
            let path = match &capability.component {
                Some(component) => format!("{component}.{}", capability.name),
                None => capability.name.clone(),
            };
            choices.push(CapabilityChoice {
                value: format!("{kind}|{}|{path}", template.id),
                label: format!("{label}: {path} ({name})"),
            });
        }
    }
    Ok(choices)
}

#[derive(Template)]
#[template(path = "wizard.html")]
struct WizardPage {
    nav: Nav,
    error: Option<String>,
    form: JobFields,
    groups: Vec<GroupChoice>,
    capabilities: Vec<CapabilityChoice>,
}

#[derive(Deserialize)]
pub struct NewQuery {
    copy: Option<String>,
    group: Option<String>,
}

/// A fresh job id: the time and a random tail, in the API's id alphabet.
pub fn fresh_id(prefix: &str) -> String {
    let now = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S");
    let tail = &uuid::Uuid::new_v4().simple().to_string()[..4];
    format!("{prefix}-{now}-{tail}")
}

async fn wizard(
    dash: &Dash,
    session: &Session,
    form: JobFields,
    error: Option<PageError>,
) -> PageResult {
    let status = error.as_ref().map(|e| e.status);
    let mut response = render(&WizardPage {
        nav: Nav::new(session, "jobs"),
        error: error.map(|e| e.message),
        form,
        groups: group_choices(dash).await?,
        capabilities: capability_choices(dash).await?,
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

pub async fn page(
    State(dash): State<Dash>,
    session: Session,
    Query(query): Query<NewQuery>,
) -> PageResult {
    session.require(Area::Jobs, Access::Write)?;
    let mut form = match &query.copy {
        Some(id) => {
            let job = dash
                .app
                .store
                .job(id)
                .await?
                .ok_or_else(|| PageError::not_found(format!("There is no job '{id}'.")))?;
            let mut form = JobFields::of_definition(&job.definition);
            form.display_name = format!(
                "{} (copy)",
                if form.display_name.is_empty() {
                    id
                } else {
                    &form.display_name
                }
            );
            form
        }
        None => JobFields::default(),
    };
    if let Some(group) = query.group {
        form.group = group;
    }
    form.job_id = fresh_id("job");
    wizard(&dash, &session, form, None).await
}

pub async fn create(
    State(dash): State<Dash>,
    session: Session,
    Form(form): Form<JobFields>,
) -> PageResult {
    let path = format!("/jobs/{}", encode(form.job_id.trim()));
    match dash
        .api(&session, Method::PUT, &path, Some(form.definition()))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/jobs/{}", encode(form.job_id.trim()))).into_response()),
        Err(e) => wizard(&dash, &session, form, Some(e)).await,
    }
}

#[derive(Deserialize)]
pub struct GroupQuery {
    #[serde(default)]
    group: String,
}

/// The chosen group's device count now (the picker asks on every change).
pub async fn group_count(
    State(dash): State<Dash>,
    session: Session,
    Query(query): Query<GroupQuery>,
) -> PageResult {
    session.require(Area::DeviceGroups, Access::Read)?;
    let text = match dash.app.store.device_group(&query.group).await? {
        None => String::new(),
        Some(group) => match flotilla_filter::parse(&group.filter) {
            Ok(filter) => {
                let n = dash.app.store.count_devices_matching(&filter).await?;
                format!(
                    "{n} device{} in this group now",
                    if n == 1 { "" } else { "s" }
                )
            }
            Err(e) => format!("The group's filter no longer parses: {e}"),
        },
    };
    Ok(axum::response::Html(format!(
        "<span id=\"group-count\">{}</span>",
        crate::page::escape(&text)
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_api_s_job_definition_and_back() {
        let form = JobFields {
            job_id: "j".into(),
            display_name: " Night update ".into(),
            group: "fleet".into(),
            capability: "property|dtmi:t;1|thermostat1.targetTemperature".into(),
            value: "21.5".into(),
            batch_type: "percentage".into(),
            batch_value: "12.5".into(),
            threshold_type: "number".into(),
            threshold_value: "3".into(),
            threshold_batch: Some("on".into()),
            ..Default::default()
        };
        let definition = form.definition();
        assert_eq!(
            definition,
            json!({
                "displayName": "Night update",
                "group": "fleet",
                "batch": {"type": "percentage", "value": 12.5},
                "cancellationThreshold": {"type": "number", "value": 3, "batch": true},
                "data": [{"type": "property", "target": "dtmi:t;1", "path": "thermostat1.targetTemperature", "value": 21.5}],
            })
        );
        let back = JobFields::of_definition(&definition);
        assert_eq!(back.capability, form.capability);
        assert_eq!(back.value, "21.5");
        assert_eq!(back.batch_value, "12.5");
        assert!(back.threshold_batch.is_some());
        // Text that is not JSON is sent as a string; an empty value is left out (a command's).
        let text = JobFields {
            value: "2026-01-01T00:00:00Z".into(),
            ..form.clone()
        };
        assert_eq!(
            text.definition()["data"][0]["value"],
            "2026-01-01T00:00:00Z"
        );
        let none = JobFields {
            value: " ".into(),
            ..form
        };
        assert!(none.definition()["data"][0].get("value").is_none());
    }
}
