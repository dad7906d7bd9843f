//! Flotilla's HTTP API: IoT Central's data-plane REST routes under `/api`, with IoT Central's
//! authentication, error shape and paging.
//!
//! A request flows: body limit and tracing layers → [`auth::authenticate`] (api-version, then
//! token) → the route's handler in [`routes`] (role check, validation, store call) → JSON, or an
//! [`error::ApiError`] rendered as `{"error": {...}}`.
//!
//! `GET /api/openapi.json` (no token, no api-version) serves the OpenAPI document of those
//! routes, collected from the router that serves them (see [`openapi`]).

pub mod auth;
pub mod body;
pub mod collections;
pub mod error;
pub mod job_events;
pub mod job_export;
pub mod live;
pub mod observe;
pub mod openapi;
pub mod origin;
pub mod paging;
mod path;
mod query;
mod routes;
pub mod state;
mod turns;
pub mod version;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, middleware};
use tower_http::trace::TraceLayer;

pub use state::AppState;

use crate::error::ApiError;

/// The OpenAPI document of the `/api` routes, as `GET /api/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().1
}

/// The `/api` routes behind the authentication middleware, and their OpenAPI document.
fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = routes::router().split_for_parts();
    // The middleware wraps every route in `routes`; the document says so of every operation.
    openapi::describe_authenticated(&mut doc);
    (routes, doc)
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (routes, doc) = api_router();
    let doc = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    // Layers added later run first: authentication, then the body's budget.
    let api = routes
        .route_layer(middleware::from_fn(body::within_budget))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            origin::resolve,
        ))
        // Added after `route_layer`, so neither a token nor an api-version is needed.
        .route("/openapi.json", get(move || async move { Json(doc) }))
        // Last, so it runs first: the span and the histogram get the matched route.
        .route_layer(middleware::from_fn(observe::route));
    Router::new()
        .nest("/api", api)
        .fallback(|| async { ApiError::not_found("There is no such route.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The route does not support this method.",
            )
        })
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(observe::request))
        .with_state(state)
}
