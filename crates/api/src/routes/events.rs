//! Live job events (Flotilla extensions): `GET /jobs/{jobId}/events` and `GET /events`, as
//! Server-Sent Events (see `crate::job_events`).

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use flotilla_model::roles::{Access, Area};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::job_events::{all_jobs_stream, job_stream, respond};
use crate::path::Path;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(job_events))
        .routes(routes!(all_events))
}

/// The `Last-Event-ID` a reconnecting client sends: the last device event's id it got.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "The Last-Event-ID header is not an event id this server sent (a whole number).",
        )
    })
}

#[utoipa::path(
    get,
    path = "/jobs/{jobId}/events",
    operation_id = "Jobs_GetEvents",
    tag = "Events",
    summary = "Follow a job live (Flotilla extension, not in IoT Central's API)",
    description = "Server-Sent Events: `status` and `progress` first, then `device` for each device that finished (in finish order, `id` its finish sequence), `status` on changes, `progress` at most 4 times a second, and `end` once the job has ended; then the stream closes. `Last-Event-ID` resumes after that device. See docs/api-behaviour.md for the data of each event.",
    params(
        ("jobId" = String, Path, description = "Unique ID of the job."),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after the device event with this id."),
    ),
    responses((status = 200, description = "The job's events, as `text/event-stream`", content_type = "text/event-stream", body = String)),
)]
async fn job_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    caller.require(Area::Jobs, Access::Read)?;
    let after = last_event_id(&headers)?;
    if state.store.job_event_state(&id).await?.is_none() {
        return Err(ApiError::missing(flotilla_store::Entity::Job, &id));
    }
    let store = state.store.clone();
    Ok(respond(state.live.clone(), move |tx| {
        job_stream(store, id, after, tx)
    }))
}

#[utoipa::path(
    get,
    path = "/events",
    operation_id = "Events_Get",
    tag = "Events",
    summary = "Follow every job's status live (Flotilla extension, not in IoT Central's API)",
    description = "Server-Sent Events: a `status` event for each job that has not ended, then one whenever a job's status changes. The stream does not end by itself.",
    responses((status = 200, description = "Every job's status changes, as `text/event-stream`", content_type = "text/event-stream", body = String)),
)]
async fn all_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Area::Jobs, Access::Read)?;
    let store = state.store.clone();
    Ok(respond(state.live.clone(), move |tx| {
        all_jobs_stream(store, tx)
    }))
}
