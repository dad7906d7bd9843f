//! What every dashboard response and every form post is held to.
//!
//! CSRF: the session cookie is `SameSite=Strict`, so a browser never sends it with a request
//! another site starts; besides, a POST whose `Origin` header names another origin is refused,
//! and a signed-in POST must carry the session's CSRF token (a hidden `csrf` form field, or the
//! `X-CSRF-Token` header htmx sends), which a page of another origin cannot read.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla_api::origin::Origin;

use crate::MAX_FORM_BYTES;
use crate::page::PageError;
use crate::session::{csrf_of, session_value};

/// The header htmx requests carry the CSRF token in (set on `<body hx-headers>`).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Refuses a POST from another origin, or a signed-in POST without the session's CSRF token.
pub async fn check_post(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let refused = |why: &str| {
        PageError::new(
            StatusCode::FORBIDDEN,
            format!("The form was refused: {why}."),
        )
        .into_response()
    };
    if let (Some(sent), Some(own)) = (
        request.headers().get(ORIGIN),
        request.extensions().get::<Origin>(),
    ) && sent.as_bytes() != format!("{}://{}", own.scheme, own.host).as_bytes()
    {
        return refused("it came from another site");
    }
    // Without a session cookie a post carries no authority (signing in is such a post).
    let Some(value) = session_value(request.headers()) else {
        return next.run(request).await;
    };
    let expected = csrf_of(&value);
    if request
        .headers()
        .get(CSRF_HEADER)
        .is_some_and(|sent| sent.as_bytes() == expected.as_bytes())
    {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
            .into_response();
    };
    // The token is base64url, so it appears in the form body as it is, never percent-encoded.
    let carries_token = bytes
        .split(|b| *b == b'&')
        .any(|pair| pair.strip_prefix(b"csrf=") == Some(expected.as_bytes()));
    if !carries_token {
        return refused(
            "it did not carry this session's CSRF token; reload the page and try again",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Security headers on every dashboard response: no framing, scripts and styles only from
/// this server, and pages never cached (they show live state and hold the CSRF token).
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
