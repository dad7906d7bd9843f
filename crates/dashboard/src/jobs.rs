//! The jobs list: newest first, paged by the job's sort key, its rows polled so statuses and
//! counts move without a reload.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use flotilla_model::roles::{Access, Area};
use flotilla_store::{JobPageRequest, JobRecord};
use serde::Deserialize;

use crate::Dash;
use crate::page::{Nav, PageResult, render, time};
use crate::session::Session;

const PAGE: usize = 50;

/// A job as a row of a table (the list, a scheduled job's runs).
pub struct JobRow {
    pub id: String,
    pub name: String,
    pub group: String,
    pub kind: String,
    pub status: String,
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub done_pct: f64,
    pub failed_pct: f64,
    pub start: String,
    pub end: String,
}

impl JobRow {
    pub fn of(job: &JobRecord) -> JobRow {
        let pct = |n: i64| {
            if job.total > 0 {
                n as f64 * 100.0 / job.total as f64
            } else {
                0.0
            }
        };
        let definition = &job.definition;
        JobRow {
            id: job.id.clone(),
            name: definition["displayName"]
                .as_str()
                .unwrap_or(&job.id)
                .to_string(),
            group: definition["group"].as_str().unwrap_or("").to_string(),
            kind: definition["data"][0]["type"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            status: job.status.as_str().to_string(),
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            done_pct: pct(job.completed),
            failed_pct: pct(job.failed),
            start: time(job.start_ms),
            end: time(job.end_ms),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Nav,
    rows: JobRows,
    may_create: bool,
}

#[derive(Template)]
#[template(path = "job_rows.html")]
struct JobRows {
    jobs: Vec<JobRow>,
    /// The next page's keyset, when there is one.
    next: Option<String>,
    before: String,
}

async fn rows_of(
    dash: &Dash,
    session: &Session,
    before: Option<String>,
) -> Result<JobRows, crate::page::PageError> {
    session.require(Area::Jobs, Access::Read)?;
    let page = dash
        .app
        .store
        .list_jobs(JobPageRequest {
            before: before.as_deref(),
            size: PAGE,
            scheduled_job_id: None,
        })
        .await?;
    Ok(JobRows {
        next: page
            .more
            .then(|| page.items.last().map(|j| j.sort_key.clone()))
            .flatten(),
        jobs: page.items.iter().map(JobRow::of).collect(),
        before: before.unwrap_or_default(),
    })
}

pub async fn list(
    State(dash): State<Dash>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let rows = rows_of(&dash, &session, query.before).await?;
    Ok(render(&JobsPage {
        nav: Nav::new(&session, "jobs"),
        rows,
        may_create: session.may(Area::Jobs, Access::Write),
    }))
}

/// The table body alone, polled by the list page.
pub async fn rows(
    State(dash): State<Dash>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let rows: JobRows = rows_of(&dash, &session, query.before).await?;
    Ok::<Response, _>(render(&rows))
}
