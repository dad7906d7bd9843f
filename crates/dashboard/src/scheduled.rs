//! Scheduled jobs: the list with each one's next runs, and a form (the job's fields plus the
//! schedule) to create or edit one, and enabling. Every change is the REST API's (`PUT` with the
//! etag the form was read at, so an edit made meanwhile elsewhere is refused, not overwritten;
//! `PATCH` for enabling).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect};
use flotilla_model::roles::{Access, Area};
use flotilla_model::schedule::Schedule;
use flotilla_store::{JobPageRequest, PageRequest, ScheduledJobRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Dash;
use crate::jobs::JobRow;
use crate::page::{Nav, PageError, PageResult, encode, render};
use crate::session::Session;
use crate::wizard::{
    CapabilityChoice, GroupChoice, JobFields, capability_choices, fresh_id, group_choices,
};

/// Upcoming runs shown per scheduled job.
const NEXT_RUNS: u32 = 5;

/// The next runs of a schedule, from its next occurrence, as UTC times.
fn next_runs(record: &ScheduledJobRecord) -> Vec<String> {
    let Ok(schedule) = Schedule::from_json(&record.schedule) else {
        return vec![];
    };
    if record.completed {
        return vec![];
    }
    let first = u32::try_from(record.next_occurrence).unwrap_or(0);
    (first..first.saturating_add(NEXT_RUNS))
        .take_while(|n| schedule.has_more(*n))
        .filter_map(|n| schedule.nth(n))
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .collect()
}

struct Row {
    id: String,
    name: String,
    group: String,
    enabled: bool,
    completed: bool,
    recurrence: String,
    next: Vec<String>,
}

#[derive(Template)]
#[template(path = "scheduled.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<Row>,
    may_write: bool,
    error: Option<String>,
}

async fn list_page(dash: &Dash, session: &Session, error: Option<PageError>) -> PageResult {
    session.require(Area::Jobs, Access::Read)?;
    let page = dash
        .app
        .store
        .list_scheduled_jobs(PageRequest {
            after: None,
            size: 200,
        })
        .await?;
    let rows = page
        .items
        .iter()
        .map(|r| Row {
            id: r.id.clone(),
            name: r.definition["displayName"]
                .as_str()
                .unwrap_or(&r.id)
                .to_string(),
            group: r.definition["group"].as_str().unwrap_or("").to_string(),
            enabled: r.enabled,
            completed: r.completed,
            recurrence: r.schedule["recurrence"]
                .as_str()
                .unwrap_or("once")
                .to_string(),
            next: next_runs(r),
        })
        .collect();
    let status = error.as_ref().map(|e| e.status);
    let mut response = render(&ListPage {
        nav: Nav::new(session, "scheduled"),
        rows,
        may_write: session.may(Area::Jobs, Access::Write),
        error: error.map(|e| e.message),
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

pub async fn list(State(dash): State<Dash>, session: Session) -> PageResult {
    list_page(&dash, &session, None).await
}

/// The form: the job's fields, the schedule and whether it runs.
#[derive(Deserialize, Default, Clone)]
pub struct ScheduleForm {
    #[serde(flatten)]
    job: JobFields,
    #[serde(default)]
    start: String,
    #[serde(default)]
    recurrence: String,
    #[serde(default)]
    end_type: String,
    #[serde(default)]
    end_value: String,
    #[serde(default)]
    enabled: Option<String>,
    /// The etag the edit form was read at (empty when creating).
    #[serde(default)]
    etag: String,
}

impl ScheduleForm {
    fn body(&self) -> Value {
        let mut body = self.job.definition();
        let mut schedule = json!({"start": self.start.trim()});
        if !self.recurrence.is_empty() {
            schedule["recurrence"] = json!(self.recurrence);
        }
        match self.end_type.as_str() {
            "date" => schedule["end"] = json!({"type": "date", "date": self.end_value.trim()}),
            "occurrences" => {
                let n = self
                    .end_value
                    .trim()
                    .parse::<i64>()
                    .map_or_else(|_| json!(self.end_value.trim()), |n| json!(n));
                schedule["end"] = json!({"type": "occurrences", "occurrences": n});
            }
            _ => {}
        }
        body["schedule"] = schedule;
        body["enabled"] = json!(self.enabled.is_some());
        if !self.etag.is_empty() {
            body["etag"] = json!(self.etag);
        }
        body
    }

    fn of_record(record: &ScheduledJobRecord) -> ScheduleForm {
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let end = &record.schedule["end"];
        ScheduleForm {
            job: JobFields {
                job_id: record.id.clone(),
                ..JobFields::of_definition(&record.definition)
            },
            start: text(&record.schedule["start"]),
            recurrence: text(&record.schedule["recurrence"]),
            end_type: text(&end["type"]),
            end_value: if end["type"] == "date" {
                text(&end["date"])
            } else {
                text(&end["occurrences"])
            },
            enabled: record.enabled.then(|| "on".into()),
            etag: record.etag.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "scheduled_edit.html")]
struct EditPage {
    nav: Nav,
    error: Option<String>,
    editing: bool,
    form: JobFields,
    schedule: ScheduleForm,
    groups: Vec<GroupChoice>,
    capabilities: Vec<CapabilityChoice>,
    next: Vec<String>,
    runs: Vec<JobRow>,
}

async fn editor(
    dash: &Dash,
    session: &Session,
    schedule: ScheduleForm,
    editing: bool,
    error: Option<PageError>,
) -> PageResult {
    let (next, runs) = if editing {
        match dash.app.store.scheduled_job(&schedule.job.job_id).await? {
            Some(record) => {
                let runs = dash
                    .app
                    .store
                    .list_jobs(JobPageRequest {
                        before: None,
                        size: 20,
                        scheduled_job_id: Some(&record.id),
                    })
                    .await?;
                (
                    next_runs(&record),
                    runs.items.iter().map(JobRow::of).collect(),
                )
            }
            None => (vec![], vec![]),
        }
    } else {
        (vec![], vec![])
    };
    let status = error.as_ref().map(|e| e.status);
    let mut response = render(&EditPage {
        nav: Nav::new(session, "scheduled"),
        error: error.map(|e| e.message),
        editing,
        form: schedule.job.clone(),
        schedule,
        groups: group_choices(dash).await?,
        capabilities: capability_choices(dash).await?,
        next,
        runs,
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

pub async fn new_page(State(dash): State<Dash>, session: Session) -> PageResult {
    session.require(Area::Jobs, Access::Write)?;
    let start = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1))
        .strftime("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let form = ScheduleForm {
        job: JobFields {
            job_id: fresh_id("scheduled"),
            ..Default::default()
        },
        start,
        ..Default::default()
    };
    editor(&dash, &session, form, false, None).await
}

pub async fn edit_page(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    session.require(Area::Jobs, Access::Read)?;
    let record = dash
        .app
        .store
        .scheduled_job(&id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no scheduled job '{id}'.")))?;
    editor(
        &dash,
        &session,
        ScheduleForm::of_record(&record),
        true,
        None,
    )
    .await
}

async fn put(dash: &Dash, session: &Session, form: ScheduleForm, editing: bool) -> PageResult {
    let path = format!("/scheduledJobs/{}", encode(form.job.job_id.trim()));
    match dash
        .api(session, Method::PUT, &path, Some(form.body()))
        .await
    {
        Ok(_) => Ok(Redirect::to("/scheduled-jobs").into_response()),
        Err(e) => editor(dash, session, form, editing, Some(e)).await,
    }
}

pub async fn create(
    State(dash): State<Dash>,
    session: Session,
    Form(form): Form<ScheduleForm>,
) -> PageResult {
    put(&dash, &session, form, false).await
}

pub async fn update(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
    Form(mut form): Form<ScheduleForm>,
) -> PageResult {
    form.job.job_id = id;
    put(&dash, &session, form, true).await
}

/// Enables a disabled scheduled job, or disables an enabled one.
pub async fn toggle(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let Some(record) = dash.app.store.scheduled_job(&id).await? else {
        return Err(PageError::not_found(format!(
            "There is no scheduled job '{id}'."
        )));
    };
    let body = json!({"enabled": !record.enabled, "etag": record.etag});
    let path = format!("/scheduledJobs/{}", encode(&id));
    match dash.api(&session, Method::PATCH, &path, Some(body)).await {
        Ok(_) => Ok(Redirect::to("/scheduled-jobs").into_response()),
        Err(e) => list_page(&dash, &session, Some(e)).await,
    }
}
