//! Whether a JSON value fits a DTDL v2 schema: used to refuse a cloud property, a writable
//! property or a command payload of the wrong type before anything is stored or sent.

use serde_json::Value;

/// Checks `value` against a DTDL schema (a primitive name like `"double"` or a complex schema
/// object). The error says what was expected, for the caller to prefix with the field's name.
pub fn check_value(schema: &Value, value: &Value) -> Result<(), String> {
    match schema {
        Value::String(name) => check_primitive(name, value),
        Value::Object(complex) => {
            let kind = complex.get("@type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "Object" => check_object(complex.get("fields"), value),
                "Enum" => check_enum(complex, value),
                "Array" => {
                    let items = value.as_array().ok_or("must be an array")?;
                    let element = complex.get("elementSchema").unwrap_or(&Value::Null);
                    for (i, item) in items.iter().enumerate() {
                        check_value(element, item).map_err(|e| format!("item {i} {e}"))?;
                    }
                    Ok(())
                }
                "Map" => {
                    let entries = value.as_object().ok_or("must be an object")?;
                    let values = complex
                        .get("mapValue")
                        .and_then(|v| v.get("schema"))
                        .unwrap_or(&Value::Null);
                    for (key, item) in entries {
                        check_value(values, item).map_err(|e| format!("entry '{key}' {e}"))?;
                    }
                    Ok(())
                }
                // Schemas we cannot interpret accept any value rather than refuse valid data.
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn check_primitive(name: &str, value: &Value) -> Result<(), String> {
    let ok = match name {
        "boolean" => value.is_boolean(),
        "double" | "float" => value.is_number(),
        "integer" | "long" => value.is_i64() || value.is_u64(),
        "string" => value.is_string(),
        "date" => value
            .as_str()
            .is_some_and(|s| s.parse::<jiff::civil::Date>().is_ok()),
        "dateTime" => value
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        "time" => value
            .as_str()
            .is_some_and(|s| s.parse::<jiff::civil::Time>().is_ok()),
        "duration" => value
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Span>().is_ok()),
        // IoT Central's geopoint and other semantic schemas: accept what we cannot check.
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("must be of schema '{name}'"))
    }
}

fn check_object(fields: Option<&Value>, value: &Value) -> Result<(), String> {
    let object = value.as_object().ok_or("must be an object")?;
    let fields = fields
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (key, item) in object {
        let field = fields
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(key.as_str()))
            .ok_or_else(|| format!("has no field '{key}'"))?;
        let schema = field.get("schema").unwrap_or(&Value::Null);
        check_value(schema, item).map_err(|e| format!("field '{key}' {e}"))?;
    }
    Ok(())
}

fn check_enum(complex: &serde_json::Map<String, Value>, value: &Value) -> Result<(), String> {
    let allowed: Vec<&Value> = complex
        .get("enumValues")
        .and_then(Value::as_array)
        .map(|values| values.iter().filter_map(|v| v.get("enumValue")).collect())
        .unwrap_or_default();
    if allowed.is_empty() || allowed.contains(&value) {
        Ok(())
    } else {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        Err(format!("must be one of {}", names.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn primitives() {
        assert!(check_value(&json!("double"), &json!(1.5)).is_ok());
        assert!(check_value(&json!("double"), &json!("56")).is_err());
        assert!(check_value(&json!("integer"), &json!(2)).is_ok());
        assert!(check_value(&json!("integer"), &json!(2.5)).is_err());
        assert!(check_value(&json!("boolean"), &json!(true)).is_ok());
        assert!(check_value(&json!("string"), &json!(true)).is_err());
        assert!(check_value(&json!("dateTime"), &json!("2021-06-15T05:00:00.000Z")).is_ok());
        assert!(check_value(&json!("dateTime"), &json!("yesterday")).is_err());
        assert!(check_value(&json!("date"), &json!("2021-06-15")).is_ok());
    }

    #[test]
    fn complex_schemas() {
        let object = json!({"@type": "Object", "fields": [{"name": "a", "schema": "integer"}]});
        assert!(check_value(&object, &json!({"a": 1})).is_ok());
        assert!(check_value(&object, &json!({"a": "x"})).is_err());
        assert!(check_value(&object, &json!({"b": 1})).is_err());
        let enumeration = json!({"@type": "Enum", "valueSchema": "integer",
            "enumValues": [{"name": "on", "enumValue": 1}, {"name": "off", "enumValue": 0}]});
        assert!(check_value(&enumeration, &json!(1)).is_ok());
        assert!(check_value(&enumeration, &json!(2)).is_err());
        let array = json!({"@type": "Array", "elementSchema": "string"});
        assert!(check_value(&array, &json!(["a"])).is_ok());
        assert!(check_value(&array, &json!([1])).is_err());
    }
}
