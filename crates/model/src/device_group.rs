//! Device groups: a named filter over the devices.

use serde_json::{Value, json};

use crate::Invalid;
use crate::validate::Fields;

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceGroup {
    pub id: String,
    pub etag: String,
    pub display_name: String,
    pub filter: String,
    pub description: Option<String>,
    pub organizations: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DeviceGroupSpec {
    pub display_name: String,
    pub filter: String,
    pub parsed: flotilla_filter::Filter,
    pub description: Option<String>,
    pub organizations: Vec<String>,
}

pub const READ_ONLY: &[&str] = &["id"];

impl DeviceGroup {
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "id": self.id,
            "etag": self.etag,
            "displayName": self.display_name,
            "filter": self.filter,
        });
        if let Some(description) = &self.description {
            body["description"] = json!(description);
        }
        if !self.organizations.is_empty() {
            body["organizations"] = json!(self.organizations);
        }
        body
    }
}

impl DeviceGroupSpec {
    pub fn from_json(id: &str, body: &Value) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        fields.check_path_id("id", id)?;
        let display_name = fields
            .bounded_string("displayName", 200)?
            .ok_or_else(|| Invalid::field("displayName", "is required"))?;
        let filter = fields
            .bounded_string("filter", 4096)?
            .ok_or_else(|| Invalid::field("filter", "is required"))?;
        let parsed = flotilla_filter::parse(filter)
            .map_err(|e| Invalid::new("filter", format!("The field 'filter' is an {e}.")))?;
        Ok(DeviceGroupSpec {
            display_name: display_name.to_string(),
            filter: filter.to_string(),
            parsed,
            description: fields
                .bounded_string("description", 1000)?
                .map(str::to_string),
            organizations: fields.organizations()?,
        })
    }
}
