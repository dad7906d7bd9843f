//! Device groups: the list with each group's live device count, and the editor whose filter
//! is previewed as it is typed (the count and a sample of the devices it selects, or where it
//! fails to parse). Creating posts to the REST API (`PUT /deviceGroups/{id}`).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect};
use flotilla_model::roles::{Access, Area};
use flotilla_store::PageRequest;
use serde::Deserialize;
use serde_json::json;

use crate::Dash;
use crate::page::{Nav, PageError, PageResult, encode, render};
use crate::session::Session;
use crate::wizard::{GroupChoice, group_choices};

/// Devices a preview shows.
const SAMPLE: usize = 10;

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    nav: Nav,
    groups: Vec<GroupChoice>,
    may_write: bool,
}

pub async fn list(State(dash): State<Dash>, session: Session) -> PageResult {
    session.require(Area::DeviceGroups, Access::Read)?;
    let groups = group_choices(&dash).await?;
    Ok(render(&GroupsPage {
        nav: Nav::new(&session, "groups"),
        groups,
        may_write: session.may(Area::DeviceGroups, Access::Write),
    }))
}

#[derive(Deserialize, Default)]
pub struct GroupForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    filter: String,
}

#[derive(Template)]
#[template(path = "group_new.html")]
struct NewGroupPage {
    nav: Nav,
    error: Option<String>,
    form: GroupForm,
    preview: Preview,
}

async fn editor(
    dash: &Dash,
    session: &Session,
    form: GroupForm,
    error: Option<PageError>,
) -> PageResult {
    let status = error.as_ref().map(|e| e.status);
    let preview = preview_of(dash, &form.filter).await?;
    let mut response = render(&NewGroupPage {
        nav: Nav::new(session, "groups"),
        error: error.map(|e| e.message),
        form,
        preview,
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

pub async fn new_page(State(dash): State<Dash>, session: Session) -> PageResult {
    session.require(Area::DeviceGroups, Access::Write)?;
    let form = GroupForm {
        filter: "SELECT * FROM devices".into(),
        ..Default::default()
    };
    editor(&dash, &session, form, None).await
}

pub async fn create(
    State(dash): State<Dash>,
    session: Session,
    Form(form): Form<GroupForm>,
) -> PageResult {
    let body = json!({"displayName": form.display_name.trim(), "filter": form.filter.trim()});
    let path = format!("/deviceGroups/{}", encode(form.id.trim()));
    match dash.api(&session, Method::PUT, &path, Some(body)).await {
        Ok(_) => Ok(Redirect::to("/groups").into_response()),
        Err(e) => editor(&dash, &session, form, Some(e)).await,
    }
}

/// What a filter selects now, or why it does not parse.
#[derive(Template)]
#[template(path = "group_preview.html")]
struct Preview {
    error: Option<String>,
    count: i64,
    sample: Vec<(String, String)>,
}

async fn preview_of(dash: &Dash, text: &str) -> Result<Preview, PageError> {
    let filter = match flotilla_filter::parse(text) {
        Ok(filter) => filter,
        Err(e) => {
            return Ok(Preview {
                error: Some(format!("The filter is an {e}.")),
                count: 0,
                sample: vec![],
            });
        }
    };
    let store = &dash.app.store;
    let count = store.count_devices_matching(&filter).await?;
    let sample = store
        .devices_matching(
            &filter,
            PageRequest {
                after: None,
                size: SAMPLE,
            },
        )
        .await?
        .items
        .into_iter()
        .map(|d| (d.id, d.template.unwrap_or_default()))
        .collect();
    Ok(Preview {
        error: None,
        count,
        sample,
    })
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    #[serde(default)]
    filter: String,
}

/// The preview alone, asked for as the filter is typed.
pub async fn preview(
    State(dash): State<Dash>,
    session: Session,
    Query(query): Query<PreviewQuery>,
) -> PageResult {
    session.require(Area::Devices, Access::Read)?;
    Ok(render(&preview_of(&dash, &query.filter).await?))
}
