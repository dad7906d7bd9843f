//! Request bodies: JSON only, size-limited, and every refusal in IoT Central's error shape
//! (axum's own rejections are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde_json::Value;

use crate::error::ApiError;

/// The largest body accepted; device templates are the biggest documents, well under this.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request body, read but not yet parsed: handlers check the caller's role first and only
/// then parse it with [`JsonBody::into_json`], so a caller without the role gets 403 whatever it
/// sent.
pub struct JsonBody {
    content_type: Option<String>,
    bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLarge",
                        format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
                    )
                } else {
                    ApiError::bad_request(format!(
                        "The request body could not be read: {rejection}"
                    ))
                }
            })?;
        Ok(JsonBody {
            content_type,
            bytes,
        })
    }
}

impl JsonBody {
    /// The body as a JSON object, refusing other media types, empty bodies and malformed JSON.
    pub fn into_json(self) -> Result<Value, ApiError> {
        if let Some(content_type) = &self.content_type {
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            if media_type != "application/json" && media_type != "application/merge-patch+json" {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "The Content-Type '{media_type}' is not supported; send application/json."
                    ),
                ));
            }
        }
        let bytes = self.bytes;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "The request body is empty; send a JSON object.",
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("The request body is not valid JSON: {e}."))
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object.",
            ));
        }
        Ok(value)
    }
}
