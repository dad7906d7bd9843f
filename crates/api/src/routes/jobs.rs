//! `/jobs`: create (the job engine runs it), list newest first, get, the devices' states, stop,
//! resume and rerun on the failed devices.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use flotilla_jobs::JobError;
use flotilla_jobs::service::new_job;
use flotilla_jobs::templates::Templates;
use flotilla_model::Invalid;
use flotilla_model::api_token::format_time;
use flotilla_model::ids::check_entity_id;
use flotilla_model::job::{JobDefinition, JobSpec};
use flotilla_model::job_state::{DeviceStatus, JobStatus};
use flotilla_model::roles::{Access, Area};
use flotilla_model::rollout::device_fields::DeviceFields;
use flotilla_model::rollout::plan::JobPlan;
use flotilla_model::rollout::reason_code::ReasonCode;
use flotilla_model::rollout::revert;
use flotilla_model::validate::Fields;
use flotilla_store::{JobDevice, JobPageRequest, JobRecord, Page};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::collections::{JobCollection, JobDeviceStatusCollection};
use crate::error::{ApiError, ApiResult};
use crate::job_export::{self, ExportedDevice, Format};
use crate::openapi::{self, ListParams};
use crate::origin::Origin;
use crate::paging::{ListQuery, list_body};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, create))
        .routes(routes!(devices))
        .routes(routes!(stop))
        .routes(routes!(resume))
        .routes(routes!(rerun))
        .routes(routes!(plan))
        .routes(routes!(revert))
}

fn not_found(id: &str) -> ApiError {
    ApiError::missing(flotilla_store::Entity::Job, id)
}

/// A job as the API shows it: its definition, id, status, progress and times (this type is also
/// its OpenAPI schema).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The definition as stored when the job was created (built from a [`JobDefinition`]).
    #[serde(flatten)]
    #[schema(value_type = JobDefinition)]
    pub definition: Value,
    /// Unique ID of the job (the path's `jobId`).
    #[schema(read_only)]
    pub id: String,
    /// The scheduled job whose occurrence created this job.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false)]
    pub scheduled_job_id: Option<String>,
    /// Set by the server. (Not required, as a client may leave it out; a reference to a schema
    /// cannot carry `readOnly`.)
    #[schema(required = false)]
    pub status: JobStatus,
    /// Beside the spec: why a `failed` or `cancelled` job ended (a job fails when it cannot
    /// start, e.g. its group no longer exists or cannot be evaluated).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false)]
    pub reason: Option<String>,
    /// Set by the server, like `status`.
    #[schema(required = false)]
    pub progress: JobProgress,
    /// When the job started running.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false, format = DateTime)]
    pub start: Option<String>,
    /// When the job finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, nullable = false, format = DateTime)]
    pub end: Option<String>,
}

/// Counts of a job's devices.
#[derive(Serialize, ToSchema)]
pub struct JobProgress {
    pub total: i64,
    pub pending: i64,
    pub completed: i64,
    pub failed: i64,
    /// Beside the spec: devices the job's `offline` policy skipped (only when there are some).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub skipped: Option<i64>,
}

/// A job as the API shows it.
pub fn render(job: &JobRecord) -> Job {
    let time = |ms: i64| format_time(jiff::Timestamp::from_millisecond(ms).unwrap_or_default());
    Job {
        definition: job.definition.clone(),
        id: job.id.clone(),
        scheduled_job_id: job.scheduled_job_id.clone(),
        status: job.status,
        reason: job.reason.clone(),
        progress: JobProgress {
            total: job.total,
            pending: (job.total - job.completed - job.failed - job.skipped).max(0),
            completed: job.completed,
            failed: job.failed,
            skipped: (job.skipped > 0).then_some(job.skipped),
        },
        start: job.start_ms.map(time),
        end: job.end_ms.map(time),
    }
}

/// Validates a job definition against the templates and the groups; the spec, as stored.
pub async fn validate_definition(state: &AppState, body: &Value) -> ApiResult<JobSpec> {
    let templates = Templates::load(&state.store).await?;
    let spec = JobSpec::from_json(body, &templates)?;
    if spec.revert_of.is_some() {
        return Err(Invalid::field(
            revert::FIELD,
            "is set by the server on the jobs PUT /jobs/{id}/revert/{revertId} creates",
        )
        .into());
    }
    if state.store.device_group(&spec.group).await?.is_none() {
        return Err(ApiError::bad_request(format!(
            "The field 'group' names the device group '{}', which does not exist.",
            spec.group
        )));
    }
    Ok(spec)
}

/// The API's answer to a lifecycle command the engine refused; `refused` words a status
/// conflict for this command.
fn job_error(id: &str, error: JobError, refused: impl FnOnce(&str) -> String) -> ApiError {
    match error {
        JobError::NotFound(_) => not_found(id),
        JobError::AlreadyExists(id) => {
            ApiError::conflict(format!("A job with the id '{id}' already exists."))
        }
        JobError::Illegal(illegal) => ApiError::conflict(refused(illegal.from.as_str())),
        JobError::NoFailedDevices => {
            ApiError::conflict(format!("The job '{id}' has no failed devices to rerun."))
        }
        JobError::Conflicting(message) => ApiError::conflict(message),
        JobError::Unrevertable(why) => {
            ApiError::bad_request(format!("The job '{id}' cannot be reverted: it {why}."))
        }
        JobError::NothingToRevert => ApiError::conflict(format!(
            "The job '{id}' changed no device (no value it replaced was recorded); there is nothing to revert."
        )),
        JobError::NoSortKey(_) => ApiError::internal(),
        JobError::Store(e) => e.into(),
    }
}

#[utoipa::path(
    get,
    path = "/jobs",
    operation_id = "Jobs_List",
    tag = "Jobs",
    summary = "Get the list of jobs in an application",
    description = "Newest first.",
    params(ListParams),
    responses((status = 200, description = "Success", body = JobCollection)),
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
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
            scheduled_job_id: None,
        })
        .await?;
    Ok(Json(list_body(
        jobs,
        |j| &j.sort_key,
        render,
        &uri,
        &origin,
    )))
}

#[utoipa::path(
    get,
    path = "/jobs/{jobId}",
    operation_id = "Jobs_Get",
    tag = "Jobs",
    summary = "Get a job by ID",
    params(("jobId" = String, Path, description = "Unique ID of the job.")),
    responses((status = 200, description = "Success", body = Job)),
)]
async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    caller.require(Area::Jobs, Access::Read)?;
    let job = state.store.job(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(render(&job)))
}

#[utoipa::path(
    put,
    path = "/jobs/{jobId}",
    operation_id = "Jobs_Create",
    tag = "Jobs",
    summary = "Execute a new job",
    description = "The job starts as `pending`; the job engine fixes its devices and runs it.",
    params(("jobId" = String, Path, description = "Unique ID of the job.")),
    request_body(content = Job, description = "The job's definition."),
    responses(
        (status = 200, description = "Success", body = Job),
        (status = 409, description = "The id is taken, or (with Flotilla's `\"conflicts\": \"refuse\"`) an active job holds the same capability on some of the devices (code `Conflict`)", body = openapi::Error),
    ),
)]
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Job>> {
    caller.require(Area::Jobs, Access::Write)?;
    let body = body.into_json()?;
    check_entity_id("jobId", &id)?;
    Fields::of(&body)?.check_path_id("id", &id)?;
    let spec = validate_definition(&state, &body).await?;
    let definition = json!(spec.definition());
    let job = state
        .jobs
        .create_job(new_job(&id, definition, None))
        .await
        .map_err(|e| job_error(&id, e, |_| String::new()))?;
    tracing::info!(job = %id, by = %caller.token.id, "job created");
    Ok(Json(render(&job)))
}

#[utoipa::path(
    post,
    path = "/jobs/{jobId}/plan",
    operation_id = "Jobs_Plan",
    tag = "Jobs",
    summary = "Plan a job without running it (a Flotilla extension)",
    description = "A dry run: takes the body `PUT /jobs/{jobId}` takes, validated the same way (the same 400 for a bad body), and answers what the job would do if it were created now: its devices and batches, the group's devices it would not change, how many are offline, the active jobs holding some of them, and an estimate of its duration. Stores nothing. Needs the permission to create jobs.",
    params(("jobId" = String, Path, description = "Unique ID of the job.")),
    request_body(content = Job, description = "The job's definition, as for `PUT /jobs/{jobId}`."),
    responses(
        (status = 200, description = "Success", body = JobPlan),
        (status = 400, description = "The body is not a valid job (the same answer as `PUT /jobs/{jobId}`)", body = openapi::Error),
    ),
)]
async fn plan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<JobPlan>> {
    // What a plan reveals (the group's devices and their states) is what creating the job
    // would act on: the same permission.
    caller.require(Area::Jobs, Access::Write)?;
    let body = body.into_json()?;
    check_entity_id("jobId", &id)?;
    Fields::of(&body)?.check_path_id("id", &id)?;
    let spec = validate_definition(&state, &body).await?;
    let planned =
        flotilla_jobs::plan::plan(&state.store, state.bus.as_ref(), state.jobs.config(), &spec)
            .await?
            .map_err(|reason| {
                ApiError::bad_request(format!("The job '{id}' could not start: {reason}."))
            })?;
    Ok(Json(planned))
}

/// One device of a job as the API shows it (this type is also its OpenAPI schema).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDeviceStatus {
    /// The device's ID.
    pub id: String,
    pub status: DeviceStatus,
    /// Beside the spec: why the device failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// Beside the spec, on jobs that use a Flotilla extension: `reason` as a code, on the
    /// devices that have a reason (a failed or skipped device, or one waiting for a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason_code: Option<ReasonCode>,
    /// Beside the spec, on jobs with `retry`: how many times the device's operation started.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0)]
    pub attempts: Option<i64>,
    /// Beside the spec, for a command job: the status code the device answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, nullable = false)]
    pub response_code: Option<Value>,
    /// Beside the spec, for a command job: the device's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

fn render_device(device: &JobDevice, shown: DeviceFields) -> JobDeviceStatus {
    // A command's answer, kept with the device's outcome (a `null` answer is shown as such).
    let answer = |key: &str| device.detail.as_ref().and_then(|d| d.get(key)).cloned();
    JobDeviceStatus {
        id: device.device_id.clone(),
        status: device.status,
        reason: device.reason.clone(),
        reason_code: ReasonCode::of_device(device.status, device.reason_code)
            .filter(|_| shown.reason_code),
        attempts: shown.attempts.then_some(device.attempts),
        response_code: answer("responseCode"),
        response: answer("response"),
    }
}

#[utoipa::path(
    get,
    path = "/jobs/{jobId}/devices",
    operation_id = "Jobs_GetDevices",
    tag = "Jobs",
    summary = "Get device statuses",
    description = "In the job's order. Beside the spec's `id` and `status`: `reason` for a failed device (and `reasonCode` on jobs that use an extension), `attempts` on jobs with `retry`, and for command jobs the device's `responseCode` and `response`.",
    params(("jobId" = String, Path, description = "Unique ID of the job."), ListParams),
    responses((status = 200, description = "Success. With `Accept: text/csv` or `Accept: application/x-ndjson` (a Flotilla extension): every device of the job in one streamed body, whatever the job's size and at any time, with the columns `id,status,reasonCode,reason,responseCode,attempts,start,end` (CSV, with a header line) or one `ExportedDevice` object per line (NDJSON); paging parameters are then ignored.", content(
        (JobDeviceStatusCollection = "application/json"),
        (String = "text/csv"),
        (ExportedDevice = "application/x-ndjson"),
    ))),
)]
async fn devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    Extension(origin): Extension<Origin>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Area::Jobs, Access::Read)?;
    let query = ListQuery::parse(&uri, &caller)?;
    let job = state.store.job(&id).await?.ok_or_else(|| not_found(&id))?;
    if let Some(format) = Format::requested(&headers) {
        return Ok(job_export::stream(state.store.clone(), job.id, format));
    }
    let shown = DeviceFields::of(&job.definition);
    let page = query.page();
    let after =
        match page.after {
            Some(token) => Some(token.parse::<i64>().map_err(|_| {
                ApiError::bad_request("The $skiptoken is not one this server issued.")
            })?),
            None => None,
        };
    let devices: Page<JobDevice> = state.store.job_devices(&id, after, page.size).await?;
    let positions: Vec<String> = devices
        .items
        .iter()
        .map(|d| d.position.to_string())
        .collect();
    let page = Page {
        items: devices.items.into_iter().zip(positions).collect::<Vec<_>>(),
        more: devices.more,
    };
    let body: JobDeviceStatusCollection = list_body(
        page,
        |(_, position)| position,
        |(device, _)| render_device(device, shown),
        &uri,
        &origin,
    );
    Ok(Json(body).into_response())
}

#[utoipa::path(
    post,
    path = "/jobs/{jobId}/stop",
    operation_id = "Jobs_Stop",
    tag = "Jobs",
    summary = "Stop a running job",
    description = "No further device starts; devices in flight finish. 409 unless the job is pending or running.",
    params(("jobId" = String, Path, description = "Unique ID of the job.")),
    responses(
        (status = 204, description = "Success"),
        (status = 409, description = "The job is not pending or running (code `Conflict`)", body = openapi::Error),
    ),
)]
async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Jobs, Access::Write)?;
    state.jobs.stop_job(&id).await.map_err(|e| {
        job_error(&id, e, |status| {
            format!("The job '{id}' is {status}; only a pending or running job can be stopped.")
        })
    })?;
    tracing::info!(job = %id, by = %caller.token.id, "job stopped");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/jobs/{jobId}/resume",
    operation_id = "Jobs_Resume",
    tag = "Jobs",
    summary = "Resume execution of an existing stopped job",
    description = "409 unless the job is stopped.",
    params(("jobId" = String, Path, description = "Unique ID of the job.")),
    responses(
        (status = 204, description = "Success"),
        (status = 409, description = "The job is not stopped (code `Conflict`)", body = openapi::Error),
    ),
)]
async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Jobs, Access::Write)?;
    state.jobs.resume_job(&id).await.map_err(|e| {
        job_error(&id, e, |status| {
            format!("The job '{id}' is {status}; only a stopped job can be resumed.")
        })
    })?;
    tracing::info!(job = %id, by = %caller.token.id, "job resumed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/jobs/{jobId}/rerun/{rerunId}",
    operation_id = "Jobs_Rerun",
    tag = "Jobs",
    summary = "Rerun a job on failed devices",
    description = "A new job (id `rerunId`) with the original's data, batch and threshold, over the devices that failed in the original. 409 when the original has no failed device or has not finished.",
    params(
        ("jobId" = String, Path, description = "Unique ID of the job."),
        ("rerunId" = String, Path, description = "Unique ID of the job rerun."),
    ),
    responses(
        (status = 200, description = "Success", body = Job),
        (status = 409, description = "The job has not finished or has no failed device (code `Conflict`)", body = openapi::Error),
    ),
)]
async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, rerun_id)): Path<(String, String)>,
) -> ApiResult<Json<Job>> {
    caller.require(Area::Jobs, Access::Write)?;
    let original = state.store.job(&id).await?.ok_or_else(|| not_found(&id))?;
    check_entity_id("rerunId", &rerun_id)?;
    let job = state
        .jobs
        .rerun_job(&original, &rerun_id)
        .await
        .map_err(|e| {
            job_error(&id, e, |status| {
                format!("The job '{id}' is {status}; rerun it when it has finished.")
            })
        })?;
    tracing::info!(job = %rerun_id, original = %id, by = %caller.token.id, "job rerun created");
    Ok(Json(render(&job)))
}

#[utoipa::path(
    put,
    path = "/jobs/{jobId}/revert/{revertId}",
    operation_id = "Jobs_Revert",
    tag = "Jobs",
    summary = "Revert a job (a Flotilla extension)",
    description = "A new job (id `revertId`, with `revertOf` naming the original) that restores, on each device the original changed, the value each of its properties or cloud properties had before it, as recorded when the original wrote it. Devices the original did not change are left out. 400 for a job that ran a command or migrated templates; 409 when the original has not finished or changed no device.",
    params(
        ("jobId" = String, Path, description = "Unique ID of the job to revert."),
        ("revertId" = String, Path, description = "Unique ID of the revert job."),
    ),
    responses(
        (status = 200, description = "Success", body = Job),
        (status = 400, description = "The job ran a command or migrated templates (code `BadRequest`)", body = openapi::Error),
        (status = 409, description = "The job has not finished or changed no device (code `Conflict`)", body = openapi::Error),
    ),
)]
async fn revert(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, revert_id)): Path<(String, String)>,
) -> ApiResult<Json<Job>> {
    caller.require(Area::Jobs, Access::Write)?;
    let original = state.store.job(&id).await?.ok_or_else(|| not_found(&id))?;
    check_entity_id("revertId", &revert_id)?;
    let job = state
        .jobs
        .revert_job(&original, &revert_id)
        .await
        .map_err(|e| {
            job_error(&id, e, |status| {
                format!("The job '{id}' is {status}; revert it when it has finished.")
            })
        })?;
    tracing::info!(job = %revert_id, original = %id, by = %caller.token.id, "job revert created");
    Ok(Json(render(&job)))
}
