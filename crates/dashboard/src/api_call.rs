//! The dashboard's changes are the REST API's: each is a request to the API's own router, in
//! process, with the session's token in `Authorization`. Roles, validation, the jobs service
//! and the error messages are therefore exactly the API's; the dashboard only words forms as
//! JSON bodies and shows the answer.

use axum::body::{Body, to_bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::Dash;
use crate::page::PageError;
use crate::session::Session;

/// The API version the dashboard speaks.
const VERSION: &str = "2022-07-31";

/// Answers are small JSON documents; more is not read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

impl Dash {
    /// `method path` on the REST API (path under `/api`, segments already encoded) as the
    /// session's token: the answer's JSON (`Null` for an empty answer), or its error message.
    pub async fn api(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, PageError> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api{path}{separator}api-version={VERSION}"))
            .header(AUTHORIZATION, &session.value);
        let body = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let response = self
            .api
            .clone()
            .oneshot(request)
            .await
            .expect("the router never fails");
        let status = response.status();
        let bytes = to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|_| {
                PageError::new(StatusCode::BAD_GATEWAY, "The API's answer was too large.")
            })?;
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(json);
        }
        let message = json["error"]["message"]
            .as_str()
            .map_or_else(|| format!("The API answered {status}."), str::to_string);
        Err(PageError::new(status, message))
    }
}
