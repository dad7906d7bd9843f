//! Reverting a job (`PUT /jobs/{id}/revert/{revertId}`): a new job that restores, on each device
//! the original changed, the value each property or cloud property had before it (as the
//! original recorded it when it wrote). Its definition names the original in `revertOf` and
//! lists the original's capabilities without values: each device gets its own.

use serde_json::{Map, Value, json};

use crate::job::{JobSpec, Operation};

/// The definition field naming the job a revert restores (set by the server only).
pub const FIELD: &str = "revertOf";

/// Why a job cannot be reverted, if it cannot: a command cannot be undone, and a template
/// migration records nothing to restore.
pub fn unrevertable(spec: &JobSpec) -> Option<&'static str> {
    spec.operations().find_map(|op| match op {
        Operation::Command(_) => Some("runs a command, which cannot be undone"),
        Operation::TemplateMigration { .. } => {
            Some("migrates templates; only property and cloud property jobs can be reverted")
        }
        _ => None,
    })
}

/// The definition of the job that reverts `original` (its stored definition): its group,
/// batches and threshold, its data's capabilities without values, and `revertOf`.
pub fn revert_definition(original_id: &str, original: &Value) -> Value {
    let mut definition = Map::new();
    let name = original
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or(original_id);
    let name: String = format!("Revert of {name}").chars().take(200).collect();
    definition.insert("displayName".into(), json!(name));
    for field in ["group", "batch", "cancellationThreshold", "organizations"] {
        if let Some(value) = original.get(field) {
            definition.insert(field.into(), value.clone());
        }
    }
    let data: Vec<Value> = original
        .get("data")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let mut entry = entry.clone();
                    if let Some(fields) = entry.as_object_mut() {
                        fields.remove("value");
                    }
                    entry
                })
                .collect()
        })
        .unwrap_or_default();
    definition.insert("data".into(), Value::Array(data));
    definition.insert(FIELD.into(), json!(original_id));
    Value::Object(definition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revert_keeps_the_capabilities_and_drops_the_values() {
        let original = json!({
            "displayName": "Set", "group": "g", "batch": {"type": "number", "value": 2},
            "conflicts": "refuse",
            "data": [{"type": "cloudProperty", "target": "t", "path": "customerName", "value": "x"}]
        });
        assert_eq!(
            revert_definition("set", &original),
            json!({
                "displayName": "Revert of Set", "group": "g",
                "batch": {"type": "number", "value": 2},
                "data": [{"type": "cloudProperty", "target": "t", "path": "customerName"}],
                "revertOf": "set"
            })
        );
    }
}
