//! What every page shares: the header (who is signed in, the sections they may open), rendering,
//! and errors shown as a page (or as a fragment, to htmx).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use flotilla_api::error::ApiError;
use flotilla_model::roles::{Access, Area};
use flotilla_store::StoreError;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::session::Session;

/// The header of every signed-in page.
#[derive(Clone)]
pub struct Nav {
    /// The section the page belongs to (`jobs`, `groups`, ...), highlighted.
    pub section: &'static str,
    pub token_id: String,
    pub roles: String,
    pub csrf: String,
    /// Whether the token may read API tokens (administrators), so the section is listed.
    pub tokens: bool,
}

impl Nav {
    pub fn new(session: &Session, section: &'static str) -> Nav {
        Nav {
            section,
            token_id: session.token.id.clone(),
            roles: session.role_names(),
            csrf: session.csrf.clone(),
            tokens: session.may(Area::ApiTokens, Access::Read),
        }
    }
}

/// A page's HTML, or a plain error when a template fails (a bug: logged).
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered.",
            )
                .into_response()
        }
    }
}

/// Characters left as they are in a path segment or query value.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment or query value, percent-encoded.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, KEEP).to_string()
}

/// A refusal or failure, shown to the user in words (the REST API's, where it came from).
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, what)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::new(e.status, e.message)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        ApiError::from(e).into()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = render(&ErrorPage {
            status: self.status.as_u16(),
            message: &self.message,
        });
        *response.status_mut() = self.status;
        response
    }
}

pub type PageResult = Result<Response, PageError>;

/// Time in ms since the epoch as RFC 3339 (UTC, seconds), for tables.
pub fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Text for HTML written by hand (outside a template).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
