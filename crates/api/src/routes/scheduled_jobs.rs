//! `/scheduledJobs`: jobs that run at a future time and recur (once, daily, weekly, monthly),
//! with ETags, enable and disable, and the jobs their occurrences created.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use flotilla_model::ids::check_entity_id;
use flotilla_model::job::{JobDefinition, Operation};
use flotilla_model::new_etag;
use flotilla_model::roles::{Access, Area};
use flotilla_model::schedule::{JobSchedule, Schedule};
use flotilla_model::validate::Fields;
use flotilla_store::Result as StoreResult;
use flotilla_store::{Entity, JobPageRequest, ScheduledJobRecord};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::conditional::{Creatable, Resource, patch_resource, put_resource};
use super::expected_etag;
use super::jobs::{render as render_job, validate_definition};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::{JobCollection, ScheduledJobCollection};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, IfMatch, ListParams};
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, create, update, remove))
        .routes(routes!(jobs))
}

fn not_found(id: &str) -> ApiError {
    super::conditional::not_found::<ScheduledJobRecord>(id)
}

/// Fields the server sets.
const READ_ONLY: &[&str] = &["id", "completed"];

/// A scheduled job as the API shows it: a job definition plus its schedule (this type is also
/// its OpenAPI schema).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledJob {
    /// The definition as stored (built from a [`JobDefinition`]).
    #[serde(flatten)]
    #[schema(value_type = JobDefinition)]
    pub definition: Value,
    /// Unique ID of the scheduled job (the path's `scheduledJobId`).
    #[schema(read_only)]
    pub id: String,
    /// The schedule as stored (built from a [`JobSchedule`], its start as the client wrote it).
    #[schema(value_type = JobSchedule)]
    pub schedule: Value,
    /// Whether occurrences run (false unless the client enables it).
    #[schema(required = false)]
    pub enabled: bool,
    /// Whether the schedule has run its last occurrence.
    #[schema(read_only)]
    pub completed: bool,
    /// ETag used to prevent conflicting updates.
    #[schema(required = false)]
    pub etag: String,
}

pub fn render(job: &ScheduledJobRecord) -> ScheduledJob {
    ScheduledJob {
        definition: job.definition.clone(),
        id: job.id.clone(),
        schedule: job.schedule.clone(),
        enabled: job.enabled,
        completed: job.completed,
        etag: job.etag.clone(),
    }
}

/// Validates a whole scheduled-job body: the job definition (as a job's), the schedule, and that
/// all data entries have one type. Returns (definition, schedule, its JSON as stored, enabled).
async fn validate(
    state: &AppState,
    id: &str,
    body: &Value,
) -> ApiResult<(Value, Schedule, Value, bool)> {
    let fields = Fields::of(body)?;
    fields.check_path_id("id", id)?;
    let schedule_value = fields
        .object("schedule")?
        .ok_or_else(|| flotilla_model::Invalid::field("schedule", "is required"))?;
    let schedule = Schedule::from_json(schedule_value)?;
    // The start is echoed as the client wrote it (IoT Central does), not re-formatted.
    let mut schedule_body = schedule.to_body();
    if let Some(start) = schedule_value["start"].as_str() {
        schedule_body.start = start.to_string();
    }
    let enabled = fields.bool("enabled")?.unwrap_or(false);
    let mut job_body: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    for key in ["schedule", "enabled", "completed", "etag", "id"] {
        job_body.remove(key);
    }
    let spec = validate_definition(state, &Value::Object(job_body)).await?;
    let kinds: Vec<&str> = spec.operations().map(Operation::kind).collect();
    if kinds.windows(2).any(|w| w[0] != w[1]) {
        return Err(ApiError::bad_request(
            "The field 'data' must hold entries of one type in a scheduled job.",
        ));
    }
    let mut definition = spec.definition();
    // IoT Central answers a missing description as "".
    definition.description.get_or_insert_with(String::new);
    Ok((json!(definition), schedule, json!(schedule_body), enabled))
}

impl Resource for ScheduledJobRecord {
    const COLLECTION: &'static str = "scheduledJobs";
    const ENTITY: Entity = Entity::ScheduledJob;
    const READ_ONLY: &'static [&'static str] = READ_ONLY;
    type Changed = Self;

    async fn load(state: &AppState, id: &str) -> StoreResult<Option<Self>> {
        state.store.scheduled_job(id).await
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    fn document(&self, _: &AppState) -> Value {
        json!(render(self))
    }

    async fn from_document(
        state: &AppState,
        id: &str,
        document: &Value,
        current: &Self,
    ) -> ApiResult<Self> {
        let (definition, schedule, schedule_json, enabled) = validate(state, id, document).await?;
        // A changed schedule, or one switched back on, starts from now: the past is not replayed.
        let restart = schedule_json != current.schedule || (enabled && !current.enabled);
        let next_occurrence = if restart {
            schedule.first_upcoming(state.clock.now())?.into()
        } else {
            current.next_occurrence
        };
        Ok(ScheduledJobRecord {
            id: id.to_string(),
            etag: new_etag(),
            definition,
            completed: if restart { false } else { current.completed },
            schedule: schedule_json,
            enabled,
            next_occurrence,
        })
    }

    async fn replace(state: &AppState, job: &Self, expected: &str) -> StoreResult<bool> {
        state.store.replace_scheduled_job(job, expected).await
    }
}

impl Creatable for ScheduledJobRecord {
    async fn insert(&self, state: &AppState) -> StoreResult<()> {
        state.store.insert_scheduled_job(self).await
    }
}

#[utoipa::path(
    get,
    path = "/scheduledJobs",
    operation_id = "ScheduledJobs_List",
    tag = "ScheduledJobs",
    summary = "Get the list of scheduled job definitions in an application",
    params(ListParams),
    responses((status = 200, description = "Success", body = ScheduledJobCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<ScheduledJobCollection>> {
    caller.require(Area::Jobs, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = state.store.list_scheduled_jobs(query.page()).await?;
    Ok(Json(list_body(page, |j| &j.id, render, &uri, &origin)))
}

#[utoipa::path(
    get,
    path = "/scheduledJobs/{scheduledJobId}",
    operation_id = "ScheduledJobs_Get",
    tag = "ScheduledJobs",
    summary = "Get details about a scheduled job by ID",
    params(("scheduledJobId" = String, Path, description = "Unique ID of the scheduled job.")),
    responses((status = 200, description = "Success", body = ScheduledJob)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduledJob>> {
    caller.require(Area::Jobs, Access::Read)?;
    let job = state
        .store
        .scheduled_job(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(render(&job)))
}

#[utoipa::path(
    put,
    path = "/scheduledJobs/{scheduledJobId}",
    operation_id = "ScheduledJobs_Create",
    tag = "ScheduledJobs",
    summary = "Create or update a scheduled job by ID",
    description = "`enabled` defaults to false, as in IoT Central. An existing id is replaced (with If-Match or the body's etag checked).",
    params(("scheduledJobId" = String, Path, description = "Unique ID of the scheduled job."), IfMatch),
    request_body(content = ScheduledJob, description = "The scheduled job."),
    responses((status = 200, description = "Success", body = ScheduledJob)),
)]
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Json<ScheduledJob>> {
    caller.require(Area::Jobs, Access::Write)?;
    let body = body.into_json()?;
    check_entity_id("scheduledJobId", &id)?;
    let expected = expected_etag(&headers, Some(&body))?;
    let (definition, schedule, schedule_json, enabled) = validate(&state, &id, &body).await?;
    let next_occurrence = schedule.first_upcoming(state.clock.now())?;
    let record = put_resource(&state, &id, expected.as_deref(), &body, |_| {
        Ok(ScheduledJobRecord {
            id: id.clone(),
            etag: new_etag(),
            definition: definition.clone(),
            schedule: schedule_json.clone(),
            enabled,
            completed: false,
            next_occurrence: next_occurrence.into(),
        })
    })
    .await?;
    Ok(Json(render(&record)))
}

#[utoipa::path(
    patch,
    path = "/scheduledJobs/{scheduledJobId}",
    operation_id = "ScheduledJobs_Update",
    tag = "ScheduledJobs",
    summary = "Update a scheduled job by ID",
    description = "A JSON merge patch. A stale If-Match (or body etag) is 412. Enabling a schedule, or changing it, does not replay past occurrences.",
    params(("scheduledJobId" = String, Path, description = "Unique ID of the scheduled job."), IfMatch),
    request_body(description = "A JSON merge patch of the scheduled job.", content((openapi::MergePatch = "application/merge-patch+json"), (openapi::MergePatch = "application/json"))),
    responses((status = 200, description = "Success", body = ScheduledJob)),
)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody,
) -> ApiResult<Json<ScheduledJob>> {
    caller.require(Area::Jobs, Access::Write)?;
    let patch = patch.into_json()?;
    let expected = expected_etag(&headers, Some(&patch))?;
    let record =
        patch_resource::<ScheduledJobRecord>(&state, &id, expected.as_deref(), &patch).await?;
    Ok(Json(render(&record)))
}

#[utoipa::path(
    delete,
    path = "/scheduledJobs/{scheduledJobId}",
    operation_id = "ScheduledJobs_Remove",
    tag = "ScheduledJobs",
    summary = "Delete a scheduled job by ID",
    description = "Future occurrences no longer run; the jobs of past ones stay.",
    params(("scheduledJobId" = String, Path, description = "Unique ID of the scheduled job.")),
    responses((status = 204, description = "Success")),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Jobs, Access::Write)?;
    state.store.delete_scheduled_job(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/scheduledJobs/{scheduledJobId}/jobs",
    operation_id = "ScheduledJobs_ListJobs",
    tag = "ScheduledJobs",
    summary = "Get the list of jobs for a scheduled job definition",
    description = "Newest first. Also after the scheduled job is deleted.",
    params(("scheduledJobId" = String, Path, description = "Unique ID of the scheduled job."), ListParams),
    responses((status = 200, description = "Success", body = JobCollection)),
)]
async fn jobs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Json<JobCollection>> {
    caller.require(Area::Jobs, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let page = query.page();
    let jobs = state
        .store
        .list_jobs(JobPageRequest {
            before: page.after,
            size: page.size,
            scheduled_job_id: Some(&id),
        })
        .await?;
    Ok(Json(list_body(
        jobs,
        |j| &j.sort_key,
        render_job,
        &uri,
        &origin,
    )))
}
