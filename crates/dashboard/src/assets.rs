//! The dashboard's static files, compiled into the binary. Their names carry their version, so
//! they are cached for a year: a new version is a new name.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// htmx and its SSE extension, pinned (see `assets/vendor/`); the templates name these.
pub const HTMX: &str = "htmx-2.0.11.min.js";
pub const HTMX_SSE: &str = "htmx-ext-sse-2.2.4.min.js";
pub const CSS: &str = "flotilla-1.css";

const FILES: &[(&str, &str, &[u8])] = &[
    (
        HTMX,
        "text/javascript",
        include_bytes!("../assets/vendor/htmx-2.0.11.min.js"),
    ),
    (
        HTMX_SSE,
        "text/javascript",
        include_bytes!("../assets/vendor/htmx-ext-sse-2.2.4.min.js"),
    ),
    (CSS, "text/css", include_bytes!("../assets/flotilla-1.css")),
];

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => (
            [
                (CONTENT_TYPE, *kind),
                (CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
