//! Field-level validation of request bodies.
//!
//! Request bodies are read as JSON values and checked field by field (rather than deserialized
//! straight into structs) so that every refusal names the field at fault, as the API promises.

use serde_json::{Map, Value};

/// A request body or parameter that breaks the contract, with the field it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Invalid { field, message }
    }

    /// "The field 'x' ..." messages, the usual shape.
    pub fn field(field: &str, problem: impl std::fmt::Display) -> Self {
        Invalid::new(field, format!("The field '{field}' {problem}."))
    }
}

/// A JSON object being validated: typed getters that name the field when they refuse.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    /// The request body must be a JSON object.
    pub fn of(body: &'a Value) -> Result<Self, Invalid> {
        Self::nested(body, "")
    }

    /// A nested object, whose fields are named `prefix.field` in messages.
    pub fn nested(value: &'a Value, prefix: &str) -> Result<Self, Invalid> {
        match value {
            Value::Object(object) => Ok(Fields {
                object,
                prefix: prefix.to_string(),
            }),
            _ if prefix.is_empty() => {
                Err(Invalid::new("", "The request body must be a JSON object."))
            }
            _ => Err(Invalid::field(prefix, "must be an object")),
        }
    }

    pub fn name(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.prefix)
        }
    }

    /// The raw value, treating JSON null as absent.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    pub fn contains(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    /// A body may repeat the id the path names (clients PUT back what they GET), but not another.
    pub fn check_path_id(&self, field: &str, id: &str) -> Result<(), Invalid> {
        match self.string(field)? {
            Some(sent) if sent != id => Err(Invalid::field(
                field,
                format_args!("is '{sent}' but the request path names '{id}'"),
            )),
            _ => Ok(()),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &'a String> {
        self.object.keys()
    }

    pub fn string(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Invalid::field(&self.name(field), "must be a string")),
        }
    }

    pub fn required_string(&self, field: &str) -> Result<&'a str, Invalid> {
        self.string(field)?
            .ok_or_else(|| Invalid::field(&self.name(field), "is required"))
    }

    /// A string with a length limit; `max_len` counts characters.
    pub fn bounded_string(&self, field: &str, max_len: usize) -> Result<Option<&'a str>, Invalid> {
        let value = self.string(field)?;
        if let Some(s) = value
            && s.chars().count() > max_len
        {
            return Err(Invalid::field(
                &self.name(field),
                format_args!("must be at most {max_len} characters long"),
            ));
        }
        Ok(value)
    }

    pub fn bool(&self, field: &str) -> Result<Option<bool>, Invalid> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Invalid::field(&self.name(field), "must be a boolean")),
        }
    }

    pub fn number(&self, field: &str) -> Result<Option<f64>, Invalid> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(Invalid::field(&self.name(field), "must be a number")),
        }
    }

    pub fn array(&self, field: &str) -> Result<Option<&'a Vec<Value>>, Invalid> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(Invalid::field(&self.name(field), "must be an array")),
        }
    }

    pub fn object(&self, field: &str) -> Result<Option<&'a Value>, Invalid> {
        match self.get(field) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(_) => Err(Invalid::field(&self.name(field), "must be an object")),
        }
    }

    /// An array of strings (e.g. `organizations`, `@type`).
    pub fn string_array(&self, field: &str) -> Result<Option<Vec<String>>, Invalid> {
        let Some(items) = self.array(field)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Invalid::field(
                    &self.name(field),
                    "must be an array of strings",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// IoT Central supports one organization per entity ("only one organization is supported
    /// today"), so the array holds at most one id.
    pub fn organizations(&self) -> Result<Vec<String>, Invalid> {
        let orgs = self.string_array("organizations")?.unwrap_or_default();
        if orgs.len() > 1 {
            return Err(Invalid::field(
                &self.name("organizations"),
                "may hold at most one organization id",
            ));
        }
        Ok(orgs)
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_fields) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch_fields {
        if value.is_null() {
            target_fields.remove(key);
        } else {
            merge_patch(
                target_fields.entry(key.clone()).or_insert(Value::Null),
                value,
            );
        }
    }
}

/// Refuses a PATCH or PUT that tries to change a read-only field. Sending a read-only field back
/// unchanged (as clients that PUT what they GET do) is fine.
pub fn check_read_only(
    current: &Value,
    requested: &Value,
    read_only: &[&str],
) -> Result<(), Invalid> {
    for field in read_only {
        if let Some(new) = requested.get(*field)
            && current.get(*field) != Some(new)
        {
            return Err(Invalid::field(field, "is read-only"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": 1}, "n": null}));
        assert_eq!(doc, json!({"a": {"b": 1}}));
    }

    #[test]
    fn getters_name_the_field() {
        let body = json!({"enabled": "yes", "name": 3});
        let fields = Fields::of(&body).unwrap();
        assert_eq!(fields.bool("enabled").unwrap_err().field, "enabled");
        assert_eq!(
            fields.string("name").unwrap_err().message,
            "The field 'name' must be a string."
        );
        assert!(Fields::of(&json!([1])).is_err());
    }

    #[test]
    fn read_only_fields_may_be_echoed_but_not_changed() {
        let current = json!({"provisioned": false});
        assert!(
            check_read_only(&current, &json!({"provisioned": false}), &["provisioned"]).is_ok()
        );
        assert!(
            check_read_only(&current, &json!({"provisioned": true}), &["provisioned"]).is_err()
        );
    }
}
