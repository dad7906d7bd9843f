//! Which of Flotilla's job device fields (`reasonCode`, `attempts`) a job's device entries
//! show. A job with IoT Central's fields alone keeps IoT Central's shapes: they appear only on
//! jobs that use an extension (exports, a format of Flotilla's own, always carry them).

use serde_json::Value;

/// The fields of IoT Central's job body (2022-07-31), as a job's stored definition holds them
/// (with a scheduled job's own, should a definition carry them).
const IOT_CENTRAL_FIELDS: &[&str] = &[
    "id",
    "schedule",
    "enabled",
    "completed",
    "displayName",
    "description",
    "group",
    "batch",
    "cancellationThreshold",
    "data",
    "organizations",
];

/// What a job's device entries show beside IoT Central's fields and `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceFields {
    /// `reasonCode`: the job uses any extension of IoT Central's job body.
    pub reason_code: bool,
    /// `attempts`: the job has `retry`.
    pub attempts: bool,
}

impl DeviceFields {
    /// The fields shown on the devices of a job with this stored definition.
    pub fn of(definition: &Value) -> DeviceFields {
        let Some(fields) = definition.as_object() else {
            return DeviceFields::default();
        };
        DeviceFields {
            reason_code: fields
                .keys()
                .any(|k| !IOT_CENTRAL_FIELDS.contains(&k.as_str())),
            attempts: fields.contains_key("retry"),
        }
    }

    /// Every field (exports).
    pub fn all() -> DeviceFields {
        DeviceFields {
            reason_code: true,
            attempts: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_jobs_with_extensions_show_them() {
        let plain = json!({"group": "g", "batch": {"type": "number", "value": 2}, "data": []});
        assert_eq!(DeviceFields::of(&plain), DeviceFields::default());
        let retry = json!({"group": "g", "data": [], "retry": {"attempts": 2}});
        assert_eq!(DeviceFields::of(&retry), DeviceFields::all());
        let other = json!({"group": "g", "data": [], "offline": {"policy": "skip"}});
        assert_eq!(
            DeviceFields::of(&other),
            DeviceFields {
                reason_code: true,
                attempts: false
            }
        );
    }
}
