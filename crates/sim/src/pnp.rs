//! Plug and Play writable-property acknowledgements: which desired values a device answers,
//! and the reported patch that answers them (`{"prop": {"value", "ac", "av", "ad"}}`, nested
//! in `{"comp": {"__t": "c", ...}}` for a component's property).

use serde_json::{Map, Value, json};

const MARKER: &str = "__t";

/// The reported patch acknowledging every property in a desired patch message (the change
/// plus `$version`), and how many properties it acknowledges. Deletions (`null`) are not
/// acknowledged. `None` when there is nothing to acknowledge.
pub fn acks_for_patch(message: &Value, code: i64) -> Option<(Value, usize)> {
    let version = message.get("$version").and_then(Value::as_i64).unwrap_or(0);
    let desired = message.as_object()?;
    let mut patch = Map::new();
    let mut count = 0;
    for (name, value) in desired {
        if name.starts_with('$') || value.is_null() {
            continue;
        }
        if is_component(value) {
            let inner = component_acks(value, None, code, version, &mut count);
            if inner.len() > 1 {
                patch.insert(name.clone(), Value::Object(inner));
            }
        } else {
            patch.insert(name.clone(), ack(value, code, version));
            count += 1;
        }
    }
    (count > 0).then(|| (Value::Object(patch), count))
}

/// The reported patch a device sends after reading its twin: an acknowledgement for every
/// desired value whose current acknowledgement does not already say this value, this code and
/// this desired version. A desired object is a component when it, or the reported object of the
/// same name, carries `"__t": "c"`.
pub fn acks_for_twin(twin: &Value, code: i64) -> Option<(Value, usize)> {
    let desired = twin.get("desired")?.as_object()?;
    let empty = json!({});
    let reported = twin.get("reported").unwrap_or(&empty);
    let version = desired.get("$version").and_then(Value::as_i64).unwrap_or(0);
    let mut patch = Map::new();
    let mut count = 0;
    for (name, value) in desired {
        if name.starts_with('$') || value.is_null() {
            continue;
        }
        let reported_value = reported.get(name);
        if value.is_object() && (is_component(value) || reported_value.is_some_and(is_component)) {
            let inner = component_acks(value, reported_value, code, version, &mut count);
            if inner.len() > 1 {
                patch.insert(name.clone(), Value::Object(inner));
            }
        } else if !acknowledged(reported_value, value, code, version) {
            patch.insert(name.clone(), ack(value, code, version));
            count += 1;
        }
    }
    (count > 0).then(|| (Value::Object(patch), count))
}

/// A component's acknowledgements, with the marker; holds only the marker when none is due.
fn component_acks(
    desired: &Value,
    reported: Option<&Value>,
    code: i64,
    version: i64,
    count: &mut usize,
) -> Map<String, Value> {
    let mut inner = Map::new();
    inner.insert(MARKER.into(), json!("c"));
    for (name, value) in desired.as_object().into_iter().flatten() {
        if name == MARKER || name.starts_with('$') || value.is_null() {
            continue;
        }
        let current = reported.and_then(|r| r.get(name));
        if acknowledged(current, value, code, version) {
            continue;
        }
        inner.insert(name.clone(), ack(value, code, version));
        *count += 1;
    }
    inner
}

fn is_component(value: &Value) -> bool {
    value.get(MARKER) == Some(&json!("c"))
}

fn acknowledged(current: Option<&Value>, value: &Value, code: i64, version: i64) -> bool {
    current.is_some_and(|ack| {
        ack.get("value") == Some(value)
            && ack.get("ac").and_then(Value::as_i64) == Some(code)
            && ack.get("av").and_then(Value::as_i64) == Some(version)
    })
}

fn ack(value: &Value, code: i64, version: i64) -> Value {
    let description = if code < 300 {
        "completed"
    } else {
        "simulated failure"
    };
    json!({"value": value, "ac": code, "av": version, "ad": description})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledges_a_patch_with_components() {
        let message = json!({
            "fanSpeed": 3,
            "thermostat1": {"__t": "c", "targetTemperature": 21.5},
            "gone": null,
            "$version": 7
        });
        let (patch, count) = acks_for_patch(&message, 200).unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            patch,
            json!({
                "fanSpeed": {"value": 3, "ac": 200, "av": 7, "ad": "completed"},
                "thermostat1": {"__t": "c", "targetTemperature":
                    {"value": 21.5, "ac": 200, "av": 7, "ad": "completed"}}
            })
        );
        let (failed, _) = acks_for_patch(&json!({"a": {"x": 1}, "$version": 2}), 500).unwrap();
        assert_eq!(
            failed,
            json!({"a": {"value": {"x": 1}, "ac": 500, "av": 2, "ad": "simulated failure"}})
        );
        assert!(acks_for_patch(&json!({"gone": null, "$version": 3}), 200).is_none());
    }

    #[test]
    fn acknowledges_only_what_the_twin_has_not() {
        let twin = json!({
            "desired": {
                "fanSpeed": 3,
                "mode": "eco",
                "thermostat1": {"targetTemperature": 21.5},
                "$version": 4
            },
            "reported": {
                "fanSpeed": {"value": 3, "ac": 200, "av": 4, "ad": "completed"},
                "mode": {"value": "eco", "ac": 200, "av": 3},
                "thermostat1": {"__t": "c", "targetTemperature": {"value": 20, "ac": 200, "av": 2}},
                "$version": 9
            }
        });
        let (patch, count) = acks_for_twin(&twin, 200).unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            patch,
            json!({
                "mode": {"value": "eco", "ac": 200, "av": 4, "ad": "completed"},
                "thermostat1": {"__t": "c", "targetTemperature":
                    {"value": 21.5, "ac": 200, "av": 4, "ad": "completed"}}
            })
        );
        let settled = json!({
            "desired": {"fanSpeed": 3, "$version": 4},
            "reported": {"fanSpeed": {"value": 3, "ac": 200, "av": 4}, "$version": 9}
        });
        assert!(acks_for_twin(&settled, 200).is_none());
        // A failing device re-acknowledges with its own code.
        assert!(acks_for_twin(&settled, 500).is_some());
        let empty = json!({"desired": {"$version": 1}, "reported": {"$version": 1}});
        assert!(acks_for_twin(&empty, 200).is_none());
    }
}
