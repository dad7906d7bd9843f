//! API tokens (administrators only, as on the REST API): the list, creating one (its value is
//! shown once) and deleting one. Every change is the REST API's.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect};
use flotilla_model::roles::{self, Access, Area};
use flotilla_store::PageRequest;
use serde::Deserialize;
use serde_json::json;

use crate::Dash;
use crate::page::{Nav, PageError, PageResult, encode, render};
use crate::session::Session;

struct TokenRow {
    id: String,
    roles: String,
    expiry: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Nav,
    error: Option<String>,
    /// A token just created: its id and value, shown this once.
    created: Option<(String, String)>,
    tokens: Vec<TokenRow>,
    roles: Vec<(&'static str, &'static str)>,
}

async fn tokens_page(
    dash: &Dash,
    session: &Session,
    created: Option<(String, String)>,
    error: Option<PageError>,
) -> PageResult {
    session.require(Area::ApiTokens, Access::Read)?;
    let page = dash
        .app
        .store
        .list_api_tokens(PageRequest {
            after: None,
            size: 500,
        })
        .await?;
    let tokens = page
        .items
        .iter()
        .map(|t| TokenRow {
            id: t.id.clone(),
            roles: t
                .roles
                .iter()
                .map(|r| roles::find(&r.role).map_or(r.role.as_str(), |role| role.display_name))
                .collect::<Vec<_>>()
                .join(", "),
            expiry: flotilla_model::api_token::format_time(t.expiry),
        })
        .collect();
    let status = error.as_ref().map(|e| e.status);
    let mut response = render(&TokensPage {
        nav: Nav::new(session, "tokens"),
        error: error.map(|e| e.message),
        created,
        tokens,
        roles: roles::BUILT_IN
            .iter()
            .map(|r| (r.id, r.display_name))
            .collect(),
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

pub async fn list(State(dash): State<Dash>, session: Session) -> PageResult {
    tokens_page(&dash, &session, None, None).await
}

#[derive(Deserialize)]
pub struct NewToken {
    id: String,
    role: String,
}

pub async fn create(
    State(dash): State<Dash>,
    session: Session,
    Form(form): Form<NewToken>,
) -> PageResult {
    let path = format!("/apiTokens/{}", encode(form.id.trim()));
    let body = json!({"roles": [{"role": form.role}]});
    match dash.api(&session, Method::PUT, &path, Some(body)).await {
        Ok(answer) => {
            let value = answer["token"].as_str().unwrap_or_default().to_string();
            tokens_page(
                &dash,
                &session,
                Some((form.id.trim().to_string(), value)),
                None,
            )
            .await
        }
        Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => Err(e),
        Err(e) => tokens_page(&dash, &session, None, Some(e)).await,
    }
}

pub async fn delete(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    match dash
        .api(
            &session,
            Method::DELETE,
            &format!("/apiTokens/{}", encode(&id)),
            None,
        )
        .await
    {
        Ok(_) => Ok(Redirect::to("/tokens").into_response()),
        Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => Err(e),
        Err(e) => tokens_page(&dash, &session, None, Some(e)).await,
    }
}
