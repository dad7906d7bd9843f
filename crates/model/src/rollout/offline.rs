//! `offline`: what a job does with a device that is not connected when its turn comes: wait
//! for it (up to `waitSeconds`; without `offline`, the job's device timeout as before), skip it
//! (a `skipped` device counts neither as completed nor as failed), or fail it at once.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::validate::Fields;

const FIELDS: &[&str] = &["policy", "waitSeconds"];
/// The longest wait (one day).
const MAX_WAIT_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Policy {
    Wait,
    Skip,
    Fail,
}

/// A job's offline policy.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offline {
    pub policy: Policy,
    /// With `wait`: how long to wait for the device to connect (at most 86400); without it, the
    /// job's device timeout. Only with `wait`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, maximum = 86400)]
    pub wait_seconds: Option<u64>,
}

impl Offline {
    /// Parses the job body's `offline`.
    pub fn from_json(value: &Value) -> Result<Offline, Invalid> {
        let fields = Fields::nested(value, "offline")?;
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Invalid::field(
                &fields.name(unknown),
                "is not an offline setting; they are policy, waitSeconds",
            ));
        }
        let policy = match fields.required_string("policy")? {
            "wait" => Policy::Wait,
            "skip" => Policy::Skip,
            "fail" => Policy::Fail,
            other => {
                return Err(Invalid::field(
                    "offline.policy",
                    format_args!("is \"{other}\"; it must be wait, skip or fail"),
                ));
            }
        };
        let wait_seconds = match fields.number("waitSeconds")? {
            None => None,
            Some(_) if policy != Policy::Wait => {
                return Err(Invalid::field(
                    "offline.waitSeconds",
                    "applies only to the wait policy",
                ));
            }
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_WAIT_SECONDS as f64).contains(&n) => {
                Some(n as u64)
            }
            Some(_) => {
                return Err(Invalid::field(
                    "offline.waitSeconds",
                    format_args!("must be a whole number from 0 to {MAX_WAIT_SECONDS}"),
                ));
            }
        };
        Ok(Offline {
            policy,
            wait_seconds,
        })
    }

    /// How long a device not connected at its start is waited for, when the policy says
    /// (`None`: as without a policy, up to the device's deadline).
    pub fn wait(&self) -> Option<Duration> {
        self.wait_seconds.map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_and_their_fields() {
        let parse = |v: Value| Offline::from_json(&v);
        assert_eq!(
            parse(json!({"policy": "wait", "waitSeconds": 30})).unwrap(),
            Offline {
                policy: Policy::Wait,
                wait_seconds: Some(30)
            }
        );
        assert_eq!(
            parse(json!({"policy": "skip"})).unwrap().policy,
            Policy::Skip
        );
        let field = |v: Value| parse(v).unwrap_err().field;
        assert_eq!(field(json!({})), "offline.policy");
        assert_eq!(field(json!({"policy": "ignore"})), "offline.policy");
        assert_eq!(
            field(json!({"policy": "skip", "waitSeconds": 5})),
            "offline.waitSeconds"
        );
        assert_eq!(
            field(json!({"policy": "wait", "waitSeconds": -1})),
            "offline.waitSeconds"
        );
        assert_eq!(
            field(json!({"policy": "wait", "after": 1})),
            "offline.after"
        );
        assert_eq!(
            serde_json::to_value(parse(json!({"policy": "fail"})).unwrap()).unwrap(),
            json!({"policy": "fail"})
        );
    }
}
