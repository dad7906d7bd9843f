//! Flotilla's web dashboard, served at `/` beside the REST API (which stays under `/api`).
//!
//! Pages are rendered on the server (askama templates in `templates/`, compiled into the
//! binary); htmx (vendored in `assets/vendor/`, pinned) swaps the fragments that update live.
//! Every page works as plain links and forms.
//!
//! A request flows: security headers and tracing → [`guard::check_post`] on every POST (the
//! `Origin` header and the session's CSRF token) → the handler, which takes a
//! [`session::Session`] (the signed-in API token, from an HttpOnly cookie). Reads go to the
//! store with the same role check the REST API makes; every change is the REST API's own
//! handler, called in-process with the session's token ([`api_call`]), so roles, validation and
//! error messages are the API's by construction.

mod api_call;
mod assets;
mod devices;
mod groups;
mod guard;
mod job_detail;
mod jobs;
mod page;
mod scheduled;
mod session;
mod templates;
mod tokens;
mod wizard;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{get, post};
use flotilla_api::AppState;
use tower_http::trace::TraceLayer;

/// What every dashboard handler shares: the API's state and the API itself (for changes).
#[derive(Clone)]
pub struct Dash {
    pub app: AppState,
    api: Router,
}

/// Forms are small; a larger body is refused before it is read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The whole HTTP application: the REST API under `/api` and the dashboard at `/`.
pub fn app(state: AppState) -> Router {
    let api = flotilla_api::app(state.clone());
    dashboard(Dash {
        app: state,
        api: api.clone(),
    })
    .merge(api)
}

/// The dashboard's routes (the API's fallback answers every other path).
fn dashboard(dash: Dash) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/jobs") }))
        .route("/static/{file}", get(assets::serve))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/jobs", get(jobs::list).post(wizard::create))
        .route("/jobs/rows", get(jobs::rows))
        .route("/jobs/new", get(wizard::page))
        .route("/jobs/new/group-count", get(wizard::group_count))
        .route("/jobs/{id}", get(job_detail::page))
        .route("/jobs/{id}/stream", get(job_detail::stream))
        .route("/jobs/{id}/export.csv", get(job_detail::export))
        .route("/jobs/{id}/stop", post(job_detail::stop))
        .route("/jobs/{id}/resume", post(job_detail::resume))
        .route("/jobs/{id}/rerun", post(job_detail::rerun))
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/new", get(groups::new_page))
        .route("/groups/preview", get(groups::preview))
        .route("/devices", get(devices::list))
        .route("/devices/{id}", get(devices::page))
        .route("/devices/{id}/live", get(devices::live))
        .route("/devices/{id}/command", post(devices::command))
        .route(
            "/scheduled-jobs",
            get(scheduled::list).post(scheduled::create),
        )
        .route("/scheduled-jobs/new", get(scheduled::new_page))
        .route(
            "/scheduled-jobs/{id}",
            get(scheduled::edit_page).post(scheduled::update),
        )
        .route("/scheduled-jobs/{id}/enable", post(scheduled::toggle))
        .route("/templates", get(templates::list))
        .route("/templates/{id}", get(templates::page))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}/delete", post(tokens::delete))
        // Layers added later run first.
        .route_layer(middleware::from_fn(guard::check_post))
        .route_layer(middleware::from_fn_with_state(
            dash.app.clone(),
            flotilla_api::origin::resolve,
        ))
        .route_layer(middleware::from_fn(guard::headers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(dash)
}
