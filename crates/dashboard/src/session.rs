//! Signing in with an API token, and the session it makes.
//!
//! The token's value is kept in the `flotilla_session` cookie (base64url, so it is one cookie
//! token): HttpOnly (no script reads it), SameSite=Strict (no other site's request carries it),
//! Secure when the dashboard is reached over HTTPS, and expiring with the token. Each request
//! checks it as the REST API checks an `Authorization` header, so a deleted or expired token
//! ends the session at once, on every server.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Query};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, extract::State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_api::auth::{Caller, token_of_value};
use flotilla_api::origin::Origin;
use flotilla_api::version::ApiVersion;
use flotilla_model::api_token::{ApiToken, token_from_header};
use flotilla_model::roles::{self, Access, Area};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Dash;
use crate::page::{PageError, render};

const COOKIE_NAME: &str = "flotilla_session";

/// The signed-in caller of a dashboard request.
#[derive(Clone)]
pub struct Session {
    pub token: ApiToken,
    /// The token's value, for the API calls made on the caller's behalf.
    pub value: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Whether one of the token's roles allows `access` to `area` (the REST API's rule).
    pub fn may(&self, area: Area, access: Access) -> bool {
        self.token
            .roles
            .iter()
            .any(|r| roles::allows(&r.role, area, access))
    }

    /// Refuses as the REST API does (403, worded by it) unless the roles allow it.
    pub fn require(&self, area: Area, access: Access) -> Result<(), PageError> {
        let caller = Caller {
            token: self.token.clone(),
            version: ApiVersion::V2022_07_31,
        };
        caller.require(area, access).map_err(PageError::from)
    }

    /// The names of the token's roles, for the header.
    pub fn role_names(&self) -> String {
        self.token
            .roles
            .iter()
            .map(|r| roles::find(&r.role).map_or(r.role.as_str(), |role| role.display_name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The CSRF token of a session: a hash of its token's value, so it needs no storage and is the
/// same on every server, yet tells nothing of the value.
pub fn csrf_of(value: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"flotilla-dashboard-csrf\0")
        .chain_update(value.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// The token value in the request's session cookie, if any.
pub fn session_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .and_then(|(_, value)| URL_SAFE_NO_PAD.decode(value).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Where a request without a session goes: the sign-in page, then back (htmx follows
/// `HX-Redirect` with a full page load).
fn to_sign_in(parts: &Parts, message: Option<&str>) -> Response {
    let back = parts
        .uri
        .path_and_query()
        .map_or("/jobs", |p| p.as_str())
        .to_string();
    let mut target = format!("/sign-in?next={}", crate::page::encode(&back));
    if let Some(message) = message {
        target.push_str(&format!("&message={}", crate::page::encode(message)));
    }
    if parts.headers.contains_key("hx-request") {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Ok(value) = HeaderValue::from_str(&target) {
            response.headers_mut().insert("hx-redirect", value);
        }
        return response;
    }
    Redirect::to(&target).into_response()
}

impl FromRequestParts<Dash> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, Response> {
        let Some(value) = session_value(&parts.headers) else {
            return Err(to_sign_in(parts, None));
        };
        match token_of_value(&dash.app, &value).await {
            Ok(Some(token)) => Ok(Session {
                token,
                csrf: csrf_of(&value),
                value,
            }),
            Ok(None) => Err(to_sign_in(
                parts,
                Some("The API token of this session is no longer valid; sign in again."),
            )),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                Err(to_sign_in(parts, Some(&e.message)))
            }
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    next: String,
    message: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    message: Option<String>,
}

pub async fn sign_in_page(Query(query): Query<SignInQuery>) -> Response {
    render(&SignInPage {
        next: safe_next(query.next.as_deref()),
        message: query.message,
    })
}

/// Only a path on this server (never `//other.example`), so the sign-in form cannot be used to
/// send someone elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_string()
        }
        _ => "/jobs".to_string(),
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

pub async fn sign_in(
    State(dash): State<Dash>,
    Extension(origin): Extension<Origin>,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let refuse = |message: String| {
        let mut response = render(&SignInPage {
            next: next.clone(),
            message: Some(message),
        });
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
    };
    let Some(value) = token_from_header(&form.token) else {
        return refuse("Paste an API token to sign in.".into());
    };
    let token = match token_of_value(&dash.app, &value).await {
        Ok(Some(token)) => token,
        Ok(None) => return refuse("That is not an API token this server issued.".into()),
        Err(e) => return refuse(e.message),
    };
    tracing::info!(token = %token.id, "signed in to the dashboard");
    let max_age = (token.expiry.as_second() - jiff::Timestamp::now().as_second()).max(0);
    let secure = if origin.scheme == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        URL_SAFE_NO_PAD.encode(value.as_bytes())
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

pub async fn sign_out(Extension(origin): Extension<Origin>) -> Response {
    let secure = if origin.scheme == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    let mut response = Redirect::to("/sign-in").into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_server_are_followed_back_after_sign_in() {
        assert_eq!(
            safe_next(Some("/jobs/a?status=failed")),
            "/jobs/a?status=failed"
        );
        for elsewhere in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil.example",
            "jobs",
        ] {
            assert_eq!(safe_next(Some(elsewhere)), "/jobs", "{elsewhere}");
        }
        assert_eq!(safe_next(None), "/jobs");
    }

    #[test]
    fn the_csrf_token_is_per_token_and_cookie_safe() {
        let a = csrf_of("SharedAccessSignature sr=a&sig=1&skn=x&se=2");
        let b = csrf_of("SharedAccessSignature sr=a&sig=2&skn=x&se=2");
        assert_ne!(a, b);
        assert_eq!(a, csrf_of("SharedAccessSignature sr=a&sig=1&skn=x&se=2"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        let value = URL_SAFE_NO_PAD.encode("SharedAccessSignature sr=a");
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE_NAME}={value}; x=y")).unwrap(),
        );
        assert_eq!(
            session_value(&headers).as_deref(),
            Some("SharedAccessSignature sr=a")
        );
        headers.insert(COOKIE, HeaderValue::from_static("flotilla_session=%%%"));
        assert_eq!(session_value(&headers), None);
    }
}
