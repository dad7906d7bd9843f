//! Device twins as IoT Hub devices see them, and the Plug and Play conventions layered on top:
//! components marked `"__t": "c"`, and writable-property acknowledgements
//! `{"value", "ac", "av", "ad"}` reported by the device.

use serde_json::{Map, Value, json};

use crate::validate::merge_patch;

/// A device's twin: the desired and reported documents (without `$version`) and their versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    pub desired: Value,
    pub desired_version: i64,
    pub reported: Value,
    pub reported_version: i64,
}

/// The Plug and Play marker of a component's object in a twin.
pub const COMPONENT_MARKER: &str = "__t";

impl Twin {
    /// The body of a twin GET response: `{"desired": {..., "$version"}, "reported": {...}}`.
    pub fn document(&self) -> Value {
        json!({
            "desired": with_version(&self.desired, self.desired_version),
            "reported": with_version(&self.reported, self.reported_version),
        })
    }
}

fn with_version(doc: &Value, version: i64) -> Value {
    let mut doc = match doc {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    doc.insert("$version".into(), json!(version));
    Value::Object(doc)
}

/// Applies a device's reported-property patch (a JSON merge patch: `null` deletes). Keys that
/// start with `$` are the hub's own and are dropped.
pub fn apply_reported_patch(reported: &mut Value, patch: &Value) {
    let mut patch = patch.clone();
    if let Value::Object(map) = &mut patch {
        map.retain(|key, _| !key.starts_with('$'));
    }
    merge_patch(reported, &patch);
}

/// Marks the components' objects in a desired change (`"__t": "c"`), so the stored desired
/// document, which devices read with a twin GET, carries the marker as a live patch does.
pub fn mark_components(change: &mut Value, components: &[String]) {
    if let Value::Object(map) = change {
        for component in components {
            if let Some(Value::Object(inner)) = map.get_mut(component) {
                inner.insert(COMPONENT_MARKER.into(), json!("c"));
            }
        }
    }
}

/// The desired patch a device receives: the change plus `$version`, with component objects
/// marked `"__t": "c"`.
pub fn desired_patch_message(change: &Value, version: i64, components: &[String]) -> Value {
    let mut message = match change {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for component in components {
        if let Some(Value::Object(inner)) = message.get_mut(component) {
            inner.insert(COMPONENT_MARKER.into(), json!("c"));
        }
    }
    message.insert("$version".into(), json!(version));
    Value::Object(message)
}

/// Whether a reported value is a writable-property acknowledgement (`{"value", "ac", ...}`).
pub fn is_ack(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.contains_key("value") && (o.contains_key("ac") || o.contains_key("av")))
}

/// The reported document with acknowledgements unwrapped to their values and component markers
/// dropped: what device-group filters and the properties API compare against.
pub fn plain_values(reported: &Value) -> Value {
    let Value::Object(map) = reported else {
        return json!({});
    };
    let mut out = Map::new();
    for (key, value) in map {
        if key.starts_with('$') || key == COMPONENT_MARKER {
            continue;
        }
        let plain = if is_component(value) {
            plain_values(value)
        } else if is_ack(value) {
            value["value"].clone()
        } else {
            value.clone()
        };
        out.insert(key.clone(), plain);
    }
    Value::Object(out)
}

/// Whether a twin value is a component's object (`"__t": "c"`).
pub fn is_component(value: &Value) -> bool {
    value.get(COMPONENT_MARKER) == Some(&json!("c"))
}

/// An acknowledgement as the device reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub value: Value,
    pub code: Option<i64>,
    pub version: Option<i64>,
    pub description: Option<String>,
}

/// The acknowledgement a reported document holds for a writable property, if any.
pub fn ack_of(reported: &Value, component: Option<&str>, name: &str) -> Option<Ack> {
    let holder = match component {
        Some(c) => reported.get(c)?,
        None => reported,
    };
    let value = holder.get(name)?;
    if !is_ack(value) {
        return None;
    }
    Some(Ack {
        value: value["value"].clone(),
        code: value.get("ac").and_then(Value::as_i64),
        version: value.get("av").and_then(Value::as_i64),
        description: value.get("ad").and_then(Value::as_str).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_document_carries_versions() {
        let twin = Twin {
            desired: json!({"a": 1}),
            desired_version: 3,
            reported: json!({}),
            reported_version: 1,
        };
        assert_eq!(
            twin.document(),
            json!({"desired": {"a": 1, "$version": 3}, "reported": {"$version": 1}})
        );
    }

    #[test]
    fn reported_patches_merge_and_drop_hub_keys() {
        let mut reported = json!({"a": 1, "b": 2});
        apply_reported_patch(
            &mut reported,
            &json!({"b": null, "c": {"x": 1}, "$version": 9}),
        );
        assert_eq!(reported, json!({"a": 1, "c": {"x": 1}}));
    }

    #[test]
    fn plain_values_unwrap_acks_and_components() {
        let reported = json!({
            "serialNumber": "sn-1",
            "targetTemperature": {"value": 21.5, "ac": 200, "av": 3, "ad": "ok"},
            "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 38.7,
                            "targetTemperature": {"value": 20, "ac": 200, "av": 2}},
        });
        assert_eq!(
            plain_values(&reported),
            json!({"serialNumber": "sn-1", "targetTemperature": 21.5,
                   "thermostat1": {"maxTempSinceLastReboot": 38.7, "targetTemperature": 20}})
        );
        let ack = ack_of(&reported, Some("thermostat1"), "targetTemperature").unwrap();
        assert_eq!((ack.code, ack.version), (Some(200), Some(2)));
        assert!(ack_of(&reported, None, "serialNumber").is_none());
    }

    #[test]
    fn desired_patches_mark_components() {
        let message = desired_patch_message(
            &json!({"thermostat1": {"targetTemperature": 21}, "fanSpeed": 2}),
            7,
            &["thermostat1".to_string()],
        );
        assert_eq!(
            message,
            json!({"thermostat1": {"__t": "c", "targetTemperature": 21}, "fanSpeed": 2, "$version": 7})
        );
    }
}
