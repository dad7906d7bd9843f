//! Device properties as the REST API shows and takes them: reported values with `$metadata` for
//! writable properties (desired value and version, the device's acknowledgement), and the checks
//! a desired-property write passes before it reaches the twin.

use serde_json::{Map, Value, json};

use crate::schema::check_value;
use crate::template::{Capability, CapabilityKind, find};
use crate::twin::{Twin, ack_of, is_component, plain_values};

/// Checks a property write against the template and returns the desired-twin change it makes:
/// `{"prop": v}` for the root interface, `{"component": {"prop": v}}` for a component. At the root,
/// a component's properties may also be written as `{"component": {"prop": v}}`.
pub fn desired_change(
    capabilities: &[Capability],
    component: Option<&str>,
    body: &Value,
) -> Result<Value, String> {
    let Value::Object(fields) = body else {
        return Err("The request body must be a JSON object.".into());
    };
    let mut change = Map::new();
    for (name, value) in fields {
        if name.starts_with('$') {
            continue;
        }
        let is_component_name = component.is_none()
            && capabilities
                .iter()
                .any(|c| c.component.as_deref() == Some(name.as_str()));
        if is_component_name {
            let inner = desired_change(capabilities, Some(name), value)?;
            if let Value::Object(inner) = inner
                && let Some(v) = inner.get(name)
            {
                change.insert(name.clone(), v.clone());
            }
            continue;
        }
        let capability = find(capabilities, component, name).ok_or_else(|| {
            format!(
                "The field '{}' is not a property of the device's template.",
                path(component, name)
            )
        })?;
        match capability.kind {
            CapabilityKind::WritableProperty => {}
            CapabilityKind::ReadOnlyProperty => {
                return Err(format!(
                    "The field '{}' is a read-only property; only the device sets it.",
                    path(component, name)
                ));
            }
            _ => {
                return Err(format!(
                    "The field '{}' is not a writable property of the device's template.",
                    path(component, name)
                ));
            }
        }
        if value.is_null() {
            return Err(format!(
                "The field '{}' must not be null.",
                path(component, name)
            ));
        }
        check_value(&capability.schema, value)
            .map_err(|problem| format!("The field '{}' {problem}.", path(component, name)))?;
        change.insert(name.clone(), value.clone());
    }
    Ok(match component {
        Some(c) => json!({ c: change }),
        None => Value::Object(change),
    })
}

fn path(component: Option<&str>, name: &str) -> String {
    match component {
        Some(c) => format!("{c}.{name}"),
        None => name.to_string(),
    }
}

/// The properties view of a twin (or of one component of it): reported values, and for each
/// writable property with a desired value, `$metadata.{name}` with `desiredValue`,
/// `desiredVersion` and, once the device acknowledged, `ackVersion`, `ackCode`,
/// `ackDescription`.
pub fn view(twin: &Twin, component: Option<&str>, capabilities: &[Capability]) -> Value {
    let reported_all = plain_values(&twin.reported);
    let (reported, raw_reported, desired) = match component {
        Some(c) => (
            reported_all.get(c).cloned().unwrap_or(json!({})),
            twin.reported.get(c).cloned().unwrap_or(json!({})),
            twin.desired.get(c).cloned().unwrap_or(json!({})),
        ),
        None => (reported_all, twin.reported.clone(), twin.desired.clone()),
    };
    let mut out = reported.as_object().cloned().unwrap_or_default();
    let mut metadata = Map::new();
    for capability in capabilities.iter().filter(|c| {
        c.kind == CapabilityKind::WritableProperty && c.component.as_deref() == component
    }) {
        let Some(desired_value) = desired.get(&capability.name) else {
            continue;
        };
        let mut meta = json!({
            "desiredValue": desired_value,
            "desiredVersion": twin.desired_version,
        });
        if let Some(ack) = ack_of(&raw_reported, None, &capability.name) {
            if let Some(v) = ack.version {
                meta["ackVersion"] = json!(v);
            }
            if let Some(code) = ack.code {
                meta["ackCode"] = json!(code);
            }
            if let Some(d) = ack.description {
                meta["ackDescription"] = json!(d);
            }
        }
        metadata.insert(capability.name.clone(), meta);
    }
    if component.is_none() {
        // Each component's object carries its own view.
        for (key, value) in twin.reported.as_object().into_iter().flatten() {
            if is_component(value) {
                out.insert(key.clone(), view(twin, Some(key), capabilities));
            }
        }
        for c in capabilities.iter().filter_map(|c| c.component.clone()) {
            if !out.contains_key(&c) && twin.desired.get(&c).is_some() {
                out.insert(c.clone(), view(twin, Some(&c), capabilities));
            }
        }
    }
    if !metadata.is_empty() {
        out.insert("$metadata".into(), Value::Object(metadata));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::DeviceTemplate;

    fn capabilities() -> Vec<Capability> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/temperature-controller.template.json"
        );
        let body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        DeviceTemplate::from_json("dtmi:contoso:temperaturecontroller;1", &body)
            .unwrap()
            .capabilities
    }

    #[test]
    fn writes_are_checked_against_the_template() {
        let caps = capabilities();
        assert_eq!(
            desired_change(
                &caps,
                Some("thermostat1"),
                &json!({"targetTemperature": 21})
            )
            .unwrap(),
            json!({"thermostat1": {"targetTemperature": 21}})
        );
        assert_eq!(
            desired_change(
                &caps,
                None,
                &json!({"thermostat2": {"targetTemperature": 22.5}})
            )
            .unwrap(),
            json!({"thermostat2": {"targetTemperature": 22.5}})
        );
        let err = desired_change(&caps, None, &json!({"serialNumber": "x"})).unwrap_err();
        assert!(err.contains("read-only"), "{err}");
        let err = desired_change(
            &caps,
            Some("thermostat1"),
            &json!({"targetTemperature": "hot"}),
        )
        .unwrap_err();
        assert!(err.contains("thermostat1.targetTemperature"), "{err}");
        assert!(desired_change(&caps, None, &json!({"nope": 1})).is_err());
    }

    #[test]
    fn the_view_shows_desired_values_and_acknowledgements() {
        let caps = capabilities();
        let twin = Twin {
            desired: json!({"thermostat1": {"__t": "c", "targetTemperature": 21}}),
            desired_version: 4,
            reported: json!({
                "serialNumber": "sn-1",
                "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 30,
                    "targetTemperature": {"value": 21, "ac": 200, "av": 4, "ad": "done"}}
            }),
            reported_version: 3,
        };
        let view = view(&twin, None, &caps);
        assert_eq!(view["serialNumber"], "sn-1");
        assert_eq!(view["thermostat1"]["targetTemperature"], 21);
        assert_eq!(
            view["thermostat1"]["$metadata"]["targetTemperature"],
            json!({"desiredValue": 21, "desiredVersion": 4, "ackVersion": 4, "ackCode": 200, "ackDescription": "done"})
        );
    }
}
