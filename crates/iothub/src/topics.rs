//! The only topics a device may use (IoT Hub and DPS are not general brokers): what a device
//! publishes, what it may subscribe to, and the topics the server publishes to it.

use crate::sas::percent_decode;

/// A publish from a device, by what it means.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    TwinGet {
        rid: String,
    },
    ReportedPatch {
        rid: String,
    },
    MethodResponse {
        status: i64,
        rid: String,
    },
    /// Telemetry with its property bag (decoded `$.sub` names the component).
    Telemetry {
        properties: Vec<(String, String)>,
    },
    DpsRegister {
        rid: String,
    },
    DpsPoll {
        rid: String,
        operation_id: String,
    },
}

/// The query pairs after `?` in a topic, decoded.
fn query(topic: &str) -> Vec<(String, String)> {
    topic
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param(topic: &str, name: &str) -> Option<String> {
    query(topic)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// What a device's publish means; `None` for a topic it may not publish to.
pub fn parse_publish(topic: &str, device_id: &str) -> Option<Inbound> {
    if topic.starts_with("$iothub/twin/GET/") {
        return Some(Inbound::TwinGet {
            rid: param(topic, "$rid")?,
        });
    }
    if topic.starts_with("$iothub/twin/PATCH/properties/reported/") {
        return Some(Inbound::ReportedPatch {
            rid: param(topic, "$rid")?,
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
        let status = rest.split('/').next()?.parse().ok()?;
        return Some(Inbound::MethodResponse {
            status,
            rid: param(topic, "$rid")?,
        });
    }
    if topic.starts_with("$dps/registrations/PUT/iotdps-register/") {
        return Some(Inbound::DpsRegister {
            rid: param(topic, "$rid")?,
        });
    }
    if topic.starts_with("$dps/registrations/GET/iotdps-get-operationstatus/") {
        return Some(Inbound::DpsPoll {
            rid: param(topic, "$rid")?,
            operation_id: param(topic, "operationId")?,
        });
    }
    let events = format!("devices/{device_id}/messages/events/");
    if let Some(bag) = topic.strip_prefix(&events) {
        let properties = bag
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        return Some(Inbound::Telemetry { properties });
    }
    None
}

/// The subscriptions a device may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    TwinResponses,
    DesiredPatches,
    Methods,
    CloudToDevice,
    DpsResponses,
}

/// The filters of the subscriptions every device may hold (the cloud-to-device one names the
/// device: [`Subscription::filter`]).
pub const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
pub const DESIRED_PATCHES: &str = "$iothub/twin/PATCH/properties/desired/#";
pub const METHODS: &str = "$iothub/methods/POST/#";
pub const DPS_RESPONSES: &str = "$dps/registrations/res/#";

impl Subscription {
    /// The topic filter a device subscribes with (the inverse of [`parse_filter`]).
    pub fn filter(self, device_id: &str) -> String {
        match self {
            Subscription::TwinResponses => TWIN_RESPONSES.into(),
            Subscription::DesiredPatches => DESIRED_PATCHES.into(),
            Subscription::Methods => METHODS.into(),
            Subscription::DpsResponses => DPS_RESPONSES.into(),
            Subscription::CloudToDevice => format!("devices/{device_id}/messages/devicebound/#"),
        }
    }
}

/// Which subscription a filter is; `None` for one the device may not hold.
pub fn parse_filter(filter: &str, device_id: &str) -> Option<Subscription> {
    match filter {
        TWIN_RESPONSES => Some(Subscription::TwinResponses),
        DESIRED_PATCHES => Some(Subscription::DesiredPatches),
        METHODS => Some(Subscription::Methods),
        DPS_RESPONSES => Some(Subscription::DpsResponses),
        _ if filter == Subscription::CloudToDevice.filter(device_id) => {
            Some(Subscription::CloudToDevice)
        }
        _ => None,
    }
}

pub fn twin_response(status: u16, rid: &str, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

pub fn desired_patch(version: i64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

pub fn method_request(name: &str, rid: &str) -> String {
    format!("$iothub/methods/POST/{name}/?$rid={rid}")
}

/// The topics a device publishes to (what [`parse_publish`] reads), for clients.
pub mod device {
    use std::fmt::Display;

    pub fn twin_get(rid: impl Display) -> String {
        format!("$iothub/twin/GET/?$rid={rid}")
    }

    pub fn reported_patch(rid: impl Display) -> String {
        format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
    }

    /// `rid` as the request carried it, encoded again.
    pub fn method_response(status: i64, rid: &str) -> String {
        format!(
            "$iothub/methods/res/{status}/?$rid={}",
            crate::sas::percent_encode(rid)
        )
    }

    pub fn dps_register(rid: impl Display) -> String {
        format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}")
    }

    pub fn dps_poll(rid: impl Display, operation_id: &str) -> String {
        format!(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}",
            crate::sas::percent_encode(operation_id)
        )
    }
}

/// DPS responses put `$rid` first: the Python SDK splits the topic on `$`.
pub fn dps_response(status: u16, rid: &str, retry_after: Option<u32>) -> String {
    match retry_after {
        Some(seconds) => {
            format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={seconds}")
        }
        None => format!("$dps/registrations/res/{status}/?$rid={rid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_sdks_send() {
        assert_eq!(
            parse_publish("$iothub/twin/GET/?$rid=abc", "d"),
            Some(Inbound::TwinGet { rid: "abc".into() })
        );
        assert_eq!(
            parse_publish("$iothub/methods/res/200/?$rid=1", "d"),
            Some(Inbound::MethodResponse {
                status: 200,
                rid: "1".into()
            })
        );
        let telemetry = parse_publish(
            "devices/dev1/messages/events/%24.mid=m1&%24.ct=application%2Fjson&%24.sub=thermostat1",
            "dev1",
        );
        let Some(Inbound::Telemetry { properties }) = telemetry else {
            panic!("telemetry")
        };
        assert!(properties.contains(&("$.sub".into(), "thermostat1".into())));
        assert!(properties.contains(&("$.ct".into(), "application/json".into())));
        assert_eq!(
            parse_publish(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op",
                "d"
            ),
            Some(Inbound::DpsPoll {
                rid: "2".into(),
                operation_id: "op".into()
            })
        );
    }

    #[test]
    fn a_subscription_s_filter_parses_back_to_it() {
        for sub in [
            Subscription::TwinResponses,
            Subscription::DesiredPatches,
            Subscription::Methods,
            Subscription::CloudToDevice,
            Subscription::DpsResponses,
        ] {
            assert_eq!(parse_filter(&sub.filter("dev1"), "dev1"), Some(sub));
        }
    }

    #[test]
    fn what_a_client_publishes_parses_as_meant() {
        assert_eq!(
            parse_publish(&device::twin_get("7"), "d"),
            Some(Inbound::TwinGet { rid: "7".into() })
        );
        assert_eq!(
            parse_publish(&device::reported_patch("8"), "d"),
            Some(Inbound::ReportedPatch { rid: "8".into() })
        );
        assert_eq!(
            parse_publish(&device::method_response(500, "a&b"), "d"),
            Some(Inbound::MethodResponse {
                status: 500,
                rid: "a&b".into()
            })
        );
        assert_eq!(
            parse_publish(&device::dps_register("1"), "d"),
            Some(Inbound::DpsRegister { rid: "1".into() })
        );
        assert_eq!(
            parse_publish(&device::dps_poll("2", "o/p"), "d"),
            Some(Inbound::DpsPoll {
                rid: "2".into(),
                operation_id: "o/p".into()
            })
        );
    }

    #[test]
    fn refuses_other_devices_topics() {
        assert_eq!(parse_publish("devices/dev2/messages/events/", "dev1"), None);
        assert_eq!(parse_publish("some/topic", "dev1"), None);
        assert_eq!(
            parse_filter("devices/dev2/messages/devicebound/#", "dev1"),
            None
        );
        assert_eq!(parse_filter("#", "dev1"), None);
        assert_eq!(
            parse_filter("devices/dev1/messages/devicebound/#", "dev1"),
            Some(Subscription::CloudToDevice)
        );
    }
}
