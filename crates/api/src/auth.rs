//! Who is calling: every `/api` request passes through [`authenticate`], which checks the
//! `api-version` and the `Authorization` header before any handler runs. Handlers then ask the
//! [`Caller`] whether its roles allow what the route does.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla_model::api_token::{ApiToken, token_from_header, token_hash};
use flotilla_model::roles::{self, Access, Area};

use crate::error::ApiError;
use crate::state::AppState;
use crate::version::ApiVersion;

/// The authenticated caller of a request, and the API version it speaks.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: ApiToken,
    pub version: ApiVersion,
}

impl Caller {
    /// Refuses with 403 unless one of the caller's roles allows `access` to `area`.
    pub fn require(&self, area: Area, access: Access) -> Result<(), ApiError> {
        if self
            .token
            .roles
            .iter()
            .any(|assignment| roles::allows(&assignment.role, area, access))
        {
            return Ok(());
        }
        let verb = match access {
            Access::Read => "read",
            Access::Write => "change",
        };
        Err(ApiError::forbidden(format!(
            "The API token '{}' does not have a role that may {verb} {}.",
            self.token.id,
            area_name(area)
        )))
    }
}

fn area_name(area: Area) -> &'static str {
    match area {
        Area::Roles => "roles",
        Area::ApiTokens => "API tokens",
        Area::DeviceTemplates => "device templates",
        Area::EnrollmentGroups => "enrollment groups",
        Area::Devices => "devices",
        Area::DeviceGroups => "device groups",
        Area::Jobs => "jobs",
    }
}

/// Middleware for every `/api` route: version first (as IoT Central does), then the token.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let query = request.uri().query().map(str::to_string);
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    match caller_of(&state, query.as_deref(), authorization).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            if error.status == axum::http::StatusCode::UNAUTHORIZED {
                AUTH_FAILURES.increment(1);
            }
            error.into_response()
        }
    }
}

/// Requests refused for their token (missing, not ours, expired), for `/metrics`.
static AUTH_FAILURES: std::sync::LazyLock<metrics::Counter> =
    std::sync::LazyLock::new(|| metrics::counter!("flotilla_http_auth_failures_total"));

async fn caller_of(
    state: &AppState,
    query: Option<&str>,
    authorization: Option<HeaderValue>,
) -> Result<Caller, ApiError> {
    let version = ApiVersion::from_query(query)?;
    let authorization = authorization.ok_or_else(|| {
        ApiError::unauthorized("The request has no Authorization header; send an API token.")
    })?;
    let header = authorization
        .to_str()
        .map_err(|_| ApiError::unauthorized("The Authorization header is not valid text."))?;
    let invalid =
        || ApiError::unauthorized("The API token in the Authorization header is not valid.");
    let value = token_from_header(header).ok_or_else(invalid)?;
    let token = token_of_value(state, &value).await?.ok_or_else(invalid)?;
    Ok(Caller { token, version })
}

/// The unexpired token whose value this is (`None` for a value this server never issued), as
/// the REST API checks it; the dashboard signs in with it too.
pub async fn token_of_value(state: &AppState, value: &str) -> Result<Option<ApiToken>, ApiError> {
    let Some(token) = state.store.api_token_by_hash(&token_hash(value)).await? else {
        return Ok(None);
    };
    if token.expiry <= jiff::Timestamp::now() {
        return Err(ApiError::unauthorized(format!(
            "The API token '{}' expired at {}.",
            token.id, token.expiry
        )));
    }
    Ok(Some(token))
}
