//! IoT Central's error shape: `{"error": {"code", "message", "requestId", "time"}}` with the
//! code repeated in the `x-ms-error-code` header. Every refusal the API makes goes through here.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_model::Invalid;
use flotilla_store::{ConflictKind, Entity, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            message,
        )
    }

    /// `NotFound` for an entity that does not exist.
    pub fn missing(entity: Entity, id: &str) -> Self {
        Self::not_found(format!("The {} '{id}' was not found.", noun(entity)))
    }

    /// `Conflict` for a change the stored entity refuses.
    fn conflicting(entity: Entity, id: &str, kind: ConflictKind) -> Self {
        let noun = noun(entity);
        Self::conflict(match (kind, entity) {
            (ConflictKind::Exists, Entity::DeviceTemplate) => format!(
                "A {noun} with the id '{id}' already exists; change it with PATCH or publish a new version."
            ),
            (ConflictKind::Exists, _) => format!("A {noun} with the id '{id}' already exists."),
            (ConflictKind::InUse { users }, _) => format!(
                "The {noun} '{id}' is used by {users} device(s); move or delete them first."
            ),
            (ConflictKind::Contended, Entity::Twin) => {
                format!("The twin of device '{id}' kept changing; retry.")
            }
            (ConflictKind::Contended, _) => format!("The {noun} '{id}' kept changing; retry."),
        })
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Something went wrong on our end; the server log has the details.",
        )
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        ApiError::bad_request(invalid.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { entity, id } => ApiError::missing(entity, &id),
            StoreError::Conflict { entity, id, kind } => ApiError::conflicting(entity, &id, kind),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

/// The response error definition: every refusal's body (this type is also its OpenAPI schema).
#[derive(Serialize, ToSchema)]
pub struct Error {
    pub error: ErrorDetails,
}

/// The detail information of the error.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// Error code, e.g. `NotFound`, `BadRequest`, `Forbidden`.
    pub code: String,
    /// Error message details.
    pub message: String,
    /// Correlation id for the request.
    pub request_id: String,
    /// The time the request failed, RFC 1123 (e.g. `Fri, 09 Oct 2020 00:08:44 GMT`).
    pub time: String,
}

/// How messages name each kind of entity.
fn noun(entity: Entity) -> &'static str {
    match entity {
        Entity::Device => "device",
        Entity::Twin => "twin",
        Entity::DeviceGroup => "device group",
        Entity::DeviceTemplate => "device template",
        Entity::EnrollmentGroup => "enrollment group",
        Entity::ApiToken => "API token",
        Entity::Job => "job",
        Entity::ScheduledJob => "scheduled job",
        Entity::Webhook => "webhook",
    }
}

/// The `time` field: RFC 1123, the same format as the `Date` header.
pub fn rfc1123_now() -> String {
    jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The request's own id (see `observe`), so the body names the request's log lines.
        let request_id = match crate::observe::RequestId::current() {
            Some(id) => id.as_str().to_string(),
            None => flotilla_model::keys::random_hex::<8>(),
        };
        if self.status.is_server_error() {
            tracing::error!(request_id, code = self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(request_id, status = self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let body = Error {
            error: ErrorDetails {
                code: self.code.to_string(),
                message: self.message,
                request_id,
                time: rfc1123_now(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-ms-error-code", HeaderValue::from_static(self.code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_worded_by_entity_and_kind() {
        let message = |e: StoreError| ApiError::from(e).message;
        assert_eq!(
            message(StoreError::not_found(Entity::DeviceGroup, "g")),
            "The device group 'g' was not found."
        );
        assert_eq!(
            message(StoreError::conflict(Entity::Job, "j", ConflictKind::Exists)),
            "A job with the id 'j' already exists."
        );
        assert_eq!(
            message(StoreError::conflict(
                Entity::Twin,
                "d",
                ConflictKind::Contended
            )),
            "The twin of device 'd' kept changing; retry."
        );
        let conflict = ApiError::from(StoreError::conflict(
            Entity::DeviceTemplate,
            "t",
            ConflictKind::InUse { users: 2 },
        ));
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(
            conflict.message,
            "The device template 't' is used by 2 device(s); move or delete them first."
        );
    }
}
