//! What every request gets before anything else: a request id, a span, and a place in the REST
//! latency histogram.
//!
//! The id is made once per request, here: it is in the request's extensions, in its span (so
//! every log line of the request carries it), in the `x-ms-request-id` response header, and in
//! the `requestId` of an error body (`error::ApiError` reads it from this task's
//! [`RequestId::current`]). The histogram is labelled by the matched route template (never the
//! raw path, which holds device ids), the method and the status class; a request no route
//! matches counts under `route="unmatched"`, and an unusual method as `other`, so the series
//! stay bounded whatever clients send.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// A request's id, as error bodies and the log show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    fn new() -> RequestId {
        RequestId(flotilla_model::keys::random_hex::<8>().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request this task serves, if it serves one.
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

/// The route template a request matched, as the inner router saw it (the outer one only sees
/// `/api` and the rest): set by [`route`], read by [`request`]; and the request's span, to
/// record it in.
#[derive(Clone)]
struct Route {
    matched: Arc<OnceLock<MatchedPath>>,
    span: tracing::Span,
}

/// The outermost middleware: the id, the span, the header and the histogram.
pub async fn request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::new();
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = tracing::field::Empty,
        request_id = %id.as_str(),
    );
    // A route of a nested router is only known inside it: `route` records it.
    let outer_match = request
        .extensions()
        .get::<MatchedPath>()
        .filter(|matched| !matched.as_str().contains(NEST_TAIL))
        .cloned();
    if let Some(matched) = &outer_match {
        span.record("route", tracing::field::display(matched.as_str()));
    }
    let route = Route {
        matched: Default::default(),
        // Recorded once: the outer router's template, when it has one, is the whole one.
        span: match outer_match {
            Some(_) => tracing::Span::none(),
            None => span.clone(),
        },
    };
    request.extensions_mut().insert(id.clone());
    request.extensions_mut().insert(route.clone());
    let mut response = CURRENT
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert("x-ms-request-id", value);
    }
    let route = match route.matched.get().or(outer_match.as_ref()) {
        Some(matched) => matched.as_str().to_string(),
        None => "unmatched".to_string(),
    };
    metrics::histogram!(
        "flotilla_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status_class" => status_class(response.status().as_u16()),
    )
    .record(started.elapsed());
    response
}

/// On the routes of a nested router: tells [`request`] (and the span) which template matched.
pub async fn route(request: Request, next: Next) -> Response {
    if let (Some(matched), Some(route)) = (
        request.extensions().get::<MatchedPath>(),
        request.extensions().get::<Route>(),
    ) {
        route
            .span
            .record("route", tracing::field::display(matched.as_str()));
        let _ = route.matched.set(matched.clone());
    }
    next.run(request).await
}

/// What axum's template of a nested router's catch-all holds: not a route of ours.
const NEST_TAIL: &str = "__private__";

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(201), "2xx");
    }

    #[tokio::test]
    async fn the_current_id_is_the_request_s_own() {
        assert_eq!(RequestId::current(), None);
        let id = RequestId::new();
        let seen = CURRENT
            .scope(id.clone(), async { RequestId::current() })
            .await;
        assert_eq!(seen, Some(id));
    }
}
