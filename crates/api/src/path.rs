//! Path parameters, refused in IoT Central's error shape: axum's own `Path` answers a segment it
//! cannot decode (invalid UTF-8 once percent-decoded, say) with plain text.

use axum::extract::FromRequestParts;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The route's path parameters, as axum's `Path` reads them.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(refusal(rejection)),
        }
    }
}

fn refusal(rejection: PathRejection) -> ApiError {
    if let PathRejection::FailedToDeserializePathParams(failure) = &rejection
        && let ErrorKind::InvalidUtf8InPathParam { key } = failure.kind()
    {
        return ApiError::bad_request(format!(
            "The path parameter '{key}' is not valid UTF-8 once percent-decoded."
        ));
    }
    if rejection.status().is_client_error() {
        ApiError::bad_request(format!(
            "The request path cannot be read: {}",
            rejection.body_text()
        ))
    } else {
        // A route whose parameters do not fit its handler: the server's fault.
        tracing::error!(%rejection, "path parameters");
        ApiError::internal()
    }
}
