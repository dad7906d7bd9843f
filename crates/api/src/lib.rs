//! Flotilla's HTTP API: IoT Central's data-plane REST routes under `/api`, with IoT Central's
//! authentication, error shape and paging.
//!
//! A request flows: body limit and tracing layers → [`auth::authenticate`] (api-version, then
//! token) → the route's handler in [`routes`] (role check, validation, store call) → JSON, or an
//! [`error::ApiError`] rendered as `{"error": {...}}`.

pub mod auth;
pub mod body;
pub mod error;
pub mod paging;
mod routes;
pub mod state;
pub mod version;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{Router, middleware};
use tower_http::trace::TraceLayer;

pub use state::AppState;

use crate::error::ApiError;

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let api = routes::router().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
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
        .with_state(state)
}
