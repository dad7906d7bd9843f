//! Device templates: the DTDL v2 capability model an IoT Central template carries, and the index
//! of its capabilities (writable, read-only and cloud properties, commands, telemetry), which
//! the server needs to validate property writes, commands and jobs.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::Invalid;
use crate::validate::Fields;

/// What a capability is, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityKind {
    WritableProperty,
    ReadOnlyProperty,
    CloudProperty,
    Command,
    Telemetry,
}

impl CapabilityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CapabilityKind::WritableProperty => "writableProperty",
            CapabilityKind::ReadOnlyProperty => "readOnlyProperty",
            CapabilityKind::CloudProperty => "cloudProperty",
            CapabilityKind::Command => "command",
            CapabilityKind::Telemetry => "telemetry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CapabilityKind::WritableProperty,
            CapabilityKind::ReadOnlyProperty,
            CapabilityKind::CloudProperty,
            CapabilityKind::Command,
            CapabilityKind::Telemetry,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One capability of a template. For commands `schema` is the request's schema (null when the
/// command takes no payload); for the others it is the value's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Capability {
    /// The component that holds it, `None` for the root interface.
    pub component: Option<String>,
    pub name: String,
    pub kind: CapabilityKind,
    pub schema: Value,
}

/// A validated device template, ready to store: the body as the client sent it (with `@id`
/// set from the path), and its capabilities.
#[derive(Debug, Clone)]
pub struct DeviceTemplate {
    pub id: String,
    pub display_name: String,
    pub body: Value,
    pub capabilities: Vec<Capability>,
}

/// A device template as the API returns it: the document as published, with `@id` set from the
/// path and the current `etag` (this type is also its OpenAPI schema). The fields are taken from
/// the document as they are (a `null` stays `null`, an absent field stays absent); fields other
/// than these (such as `@context`) are kept as sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeviceTemplate)]
pub struct PublishedTemplate {
    /// Unique ID (a DTMI) of the device template.
    #[serde(rename = "@id")]
    #[schema(read_only, value_type = String)]
    pub id: Value,
    /// The JSON-LD types; must include `ModelDefinition`.
    #[serde(rename = "@type")]
    #[schema(value_type = Vec<String>)]
    pub types: Value,
    /// ETag used to prevent conflict in device template updates; always in responses.
    #[schema(required = false)]
    pub etag: String,
    /// Display name of the device template.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false, max_length = 200)]
    pub display_name: Option<Value>,
    /// Detailed description of the device template.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false, max_length = 1000)]
    pub description: Option<Value>,
    /// The DTDL v2 capability model: an inline interface, its contents and components.
    #[schema(value_type = Object)]
    pub capability_model: Value,
    /// Any other field of the template, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PublishedTemplate {
    /// The template whose stored document (without etag) is `document`, at `etag`.
    pub fn new(document: Value, etag: String) -> Self {
        let mut other = match document {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        let mut take = |name: &str| other.remove(name);
        PublishedTemplate {
            id: take("@id").unwrap_or_default(),
            types: take("@type").unwrap_or_default(),
            etag,
            display_name: take("displayName"),
            description: take("description"),
            capability_model: take("capabilityModel").unwrap_or_default(),
            other,
        }
    }
}

/// Fields a client may not set: the server sets them.
pub const READ_ONLY: &[&str] = &["@id"];

impl DeviceTemplate {
    /// Validates a template body for the template `id` (already checked as a DTMI).
    pub fn from_json(id: &str, body: &Value) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        fields.check_path_id("@id", id)?;
        let types = fields
            .string_array("@type")?
            .ok_or_else(|| Invalid::field("@type", "is required"))?;
        if !types.iter().any(|t| t == "ModelDefinition") {
            return Err(Invalid::field(
                "@type",
                "must include \"ModelDefinition\" (IoT Central templates are typed [\"ModelDefinition\", \"DeviceModel\"])",
            ));
        }
        let display_name = fields.bounded_string("displayName", 200)?.unwrap_or(id);
        fields.bounded_string("description", 1000)?;
        let model = fields
            .object("capabilityModel")?
            .ok_or_else(|| Invalid::field("capabilityModel", "is required"))?;
        let capabilities = index(model)?;

        let mut stored = body.as_object().cloned().unwrap_or_default();
        stored.insert("@id".into(), Value::String(id.to_string()));
        stored.remove("etag");
        Ok(DeviceTemplate {
            id: id.to_string(),
            display_name: display_name.to_string(),
            body: Value::Object(stored),
            capabilities,
        })
    }

    pub fn find(&self, component: Option<&str>, name: &str) -> Option<&Capability> {
        find(&self.capabilities, component, name)
    }
}

pub fn find<'a>(
    capabilities: &'a [Capability],
    component: Option<&str>,
    name: &str,
) -> Option<&'a Capability> {
    capabilities
        .iter()
        .find(|c| c.component.as_deref() == component && c.name == name)
}

/// Indexes a capability model: the root interface's contents, the interfaces it extends, and
/// each component's interface (inline, as IoT Central stores them).
pub fn index(model: &Value) -> Result<Vec<Capability>, Invalid> {
    let mut found = Vec::new();
    collect(model, None, "capabilityModel", &mut found, 0)?;
    // Names are unique within an interface in DTDL; a duplicate would make paths ambiguous.
    for (i, a) in found.iter().enumerate() {
        if found[..i]
            .iter()
            .any(|b| b.component == a.component && b.name == a.name)
        {
            let path = match &a.component {
                Some(c) => format!("{c}.{}", a.name),
                None => a.name.clone(),
            };
            return Err(Invalid::field(
                "capabilityModel",
                format_args!("defines '{path}' more than once"),
            ));
        }
    }
    Ok(found)
}

/// The components a capability model declares, in its root interface and the interfaces it
/// extends, each as declared but with an inline interface (`schema`) named by its `@id`: the
/// interface itself is the template's to show.
pub fn components(model: &Value) -> Vec<Value> {
    let mut found = Vec::new();
    collect_components(model, &mut found);
    found
}

fn collect_components(interface: &Value, found: &mut Vec<Value>) {
    match interface.get("extends") {
        Some(Value::Array(parents)) => parents.iter().for_each(|p| collect_components(p, found)),
        Some(parent) => collect_components(parent, found),
        None => {}
    }
    let Some(Value::Array(contents)) = interface.get("contents") else {
        return;
    };
    for item in contents {
        let Value::Object(item) = item else { continue };
        if !types_of(item).contains(&"Component") {
            continue;
        }
        let mut component = item.clone();
        if let Some(Value::Object(schema)) = item.get("schema") {
            match schema.get("@id") {
                Some(id) => component.insert("schema".into(), id.clone()),
                None => component.remove("schema"),
            };
        }
        found.push(Value::Object(component));
    }
}

fn types_of(item: &Map<String, Value>) -> Vec<&str> {
    match item.get("@type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn collect(
    interface: &Value,
    component: Option<&str>,
    at: &str,
    found: &mut Vec<Capability>,
    depth: usize,
) -> Result<(), Invalid> {
    if depth > 8 {
        return Err(Invalid::field(at, "nests interfaces too deeply"));
    }
    let Value::Object(interface) = interface else {
        return Err(Invalid::field(
            at,
            "must be an inline interface object (references to interfaces outside the template are not supported)",
        ));
    };
    let extends = match interface.get("extends") {
        Some(Value::Array(items)) => items.clone(),
        Some(item) => vec![item.clone()],
        None => vec![],
    };
    for (i, parent) in extends.iter().enumerate() {
        collect(
            parent,
            component,
            &format!("{at}.extends[{i}]"),
            found,
            depth + 1,
        )?;
    }
    let contents = match interface.get("contents") {
        None => return Ok(()),
        Some(Value::Array(contents)) => contents,
        Some(_) => {
            return Err(Invalid::field(
                &format!("{at}.contents"),
                "must be an array",
            ));
        }
    };
    for (i, item) in contents.iter().enumerate() {
        let here = format!("{at}.contents[{i}]");
        let Value::Object(item) = item else {
            return Err(Invalid::field(&here, "must be an object"));
        };
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Invalid::field(&format!("{here}.name"), "is required"))?;
        check_name(&format!("{here}.name"), name)?;
        let types = types_of(item);
        let schema = item.get("schema").cloned().unwrap_or(Value::Null);
        let kind = if types.contains(&"Component") {
            if component.is_some() {
                return Err(Invalid::field(&here, "is a component inside a component"));
            }
            collect(
                &schema,
                Some(name),
                &format!("{here}.schema"),
                found,
                depth + 1,
            )?;
            continue;
        } else if types.contains(&"Command") {
            let request = item
                .get("request")
                .and_then(|r| r.get("schema"))
                .cloned()
                .unwrap_or(Value::Null);
            found.push(Capability {
                component: component.map(str::to_string),
                name: name.to_string(),
                kind: CapabilityKind::Command,
                schema: request,
            });
            continue;
        } else if types.contains(&"Property") {
            if types.contains(&"Cloud") {
                CapabilityKind::CloudProperty
            } else if item.get("writable") == Some(&Value::Bool(true)) {
                CapabilityKind::WritableProperty
            } else {
                CapabilityKind::ReadOnlyProperty
            }
        } else if types.contains(&"Telemetry") {
            CapabilityKind::Telemetry
        } else {
            // Relationships and other DTDL content carry nothing the server acts on.
            continue;
        };
        found.push(Capability {
            component: component.map(str::to_string),
            name: name.to_string(),
            kind,
            schema,
        });
    }
    Ok(())
}

/// DTDL names: a letter, then letters, digits and '_', not ending in '_', at most 64 long.
fn check_name(field: &str, name: &str) -> Result<(), Invalid> {
    let ok = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.ends_with('_');
    if ok {
        Ok(())
    } else {
        Err(Invalid::field(
            field,
            "must be a DTDL name: a letter, then letters, digits and '_'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/temperature-controller.template.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn lists_components_with_their_interfaces_named() {
        let model = json!({
            "@type": "Interface",
            "extends": {"@type": "Interface", "contents": [
                {"@type": ["Component"], "name": "inherited", "schema": "dtmi:a:b;1"}
            ]},
            "contents": [
                {"@type": "Telemetry", "name": "t", "schema": "double"},
                {"@type": "Component", "name": "inline", "displayName": "Inline",
                 "schema": {"@id": "dtmi:a:c;1", "@type": "Interface", "contents": []}},
                {"@type": "Component", "name": "anonymous", "schema": {"@type": "Interface"}}
            ]
        });
        assert_eq!(
            components(&model),
            vec![
                json!({"@type": ["Component"], "name": "inherited", "schema": "dtmi:a:b;1"}),
                json!({"@type": "Component", "name": "inline", "displayName": "Inline", "schema": "dtmi:a:c;1"}),
                json!({"@type": "Component", "name": "anonymous"}),
            ]
        );
        assert_eq!(components(&fixture()["capabilityModel"]).len(), 2);
    }

    #[test]
    fn indexes_the_temperature_controller() {
        let body = fixture();
        let template =
            DeviceTemplate::from_json("dtmi:contoso:temperaturecontroller;1", &body).unwrap();
        let kind = |c: Option<&str>, n: &str| template.find(c, n).map(|c| c.kind);
        assert_eq!(
            kind(None, "serialNumber"),
            Some(CapabilityKind::ReadOnlyProperty)
        );
        assert_eq!(kind(None, "reboot"), Some(CapabilityKind::Command));
        assert_eq!(
            kind(None, "customerName"),
            Some(CapabilityKind::CloudProperty)
        );
        assert_eq!(kind(None, "workingSet"), Some(CapabilityKind::Telemetry));
        assert_eq!(
            kind(Some("thermostat1"), "targetTemperature"),
            Some(CapabilityKind::WritableProperty)
        );
        assert_eq!(
            kind(Some("thermostat2"), "getMaxMinReport"),
            Some(CapabilityKind::Command)
        );
        assert_eq!(kind(None, "targetTemperature"), None);
        assert_eq!(
            template.find(None, "reboot").unwrap().schema,
            json!("integer")
        );
    }

    #[test]
    fn refuses_bad_templates() {
        let id = "dtmi:a:b;1";
        let err = DeviceTemplate::from_json(id, &json!({"capabilityModel": {}})).unwrap_err();
        assert_eq!(err.field, "@type");
        let err =
            DeviceTemplate::from_json(id, &json!({"@type": ["ModelDefinition"]})).unwrap_err();
        assert_eq!(err.field, "capabilityModel");
        let dup = json!({"@type": ["ModelDefinition"], "capabilityModel": {"contents": [
            {"@type": "Property", "name": "a", "schema": "string"},
            {"@type": "Telemetry", "name": "a", "schema": "double"}]}});
        assert!(DeviceTemplate::from_json(id, &dup).is_err());
        let other_id =
            json!({"@id": "dtmi:x:y;1", "@type": ["ModelDefinition"], "capabilityModel": {}});
        assert_eq!(
            DeviceTemplate::from_json(id, &other_id).unwrap_err().field,
            "@id"
        );
    }
}
