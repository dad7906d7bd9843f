//! Device templates: the list, and one template's capabilities (read-only).

use askama::Template;
use axum::extract::{Path, State};
use flotilla_model::roles::{Access, Area};
use flotilla_store::PageRequest;

use crate::Dash;
use crate::page::{Nav, PageError, PageResult, render};
use crate::session::Session;

struct TemplateRow {
    id: String,
    name: String,
    capabilities: usize,
}

#[derive(Template)]
#[template(path = "templates.html")]
struct ListPage {
    nav: Nav,
    templates: Vec<TemplateRow>,
}

pub async fn list(State(dash): State<Dash>, session: Session) -> PageResult {
    session.require(Area::DeviceTemplates, Access::Read)?;
    let store = &dash.app.store;
    let page = store
        .list_templates(PageRequest {
            after: None,
            size: 500,
        })
        .await?;
    let mut templates = Vec::new();
    for t in page.items {
        templates.push(TemplateRow {
            capabilities: store.template_capabilities(&t.id).await?.len(),
            name: t.body["displayName"].as_str().unwrap_or(&t.id).to_string(),
            id: t.id,
        });
    }
    Ok(render(&ListPage {
        nav: Nav::new(&session, "templates"),
        templates,
    }))
}

struct CapabilityRow {
    component: String,
    name: String,
    kind: &'static str,
    schema: String,
}

#[derive(Template)]
#[template(path = "template.html")]
struct TemplatePage {
    nav: Nav,
    id: String,
    name: String,
    capabilities: Vec<CapabilityRow>,
}

pub async fn page(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    session.require(Area::DeviceTemplates, Access::Read)?;
    let store = &dash.app.store;
    let template = store
        .template(&id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no device template '{id}'.")))?;
    let capabilities = store
        .template_capabilities(&id)
        .await?
        .into_iter()
        .map(|c| CapabilityRow {
            component: c.component.unwrap_or_default(),
            name: c.name,
            kind: c.kind.as_str(),
            schema: if c.schema.is_null() {
                String::new()
            } else {
                c.schema.to_string()
            },
        })
        .collect();
    Ok(render(&TemplatePage {
        nav: Nav::new(&session, "templates"),
        name: template.body["displayName"]
            .as_str()
            .unwrap_or(&id)
            .to_string(),
        id,
        capabilities,
    }))
}
