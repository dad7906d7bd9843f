//! `retry`: a device whose operation fails for a listed cause is tried again, after a backoff,
//! inside the same job; it counts as failed (for progress and thresholds) only when its attempts
//! are spent.

use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::rollout::reason_code::ReasonCode;
use crate::validate::Fields;

/// The most retries a device gets.
pub const MAX_ATTEMPTS: u64 = 10;
/// The longest backoff (one day).
const MAX_BACKOFF_SECONDS: u64 = 86_400;
const DEFAULT_BACKOFF_SECONDS: u64 = 10;
const DEFAULT_FACTOR: f64 = 2.0;
const DEFAULT_MAX_BACKOFF_SECONDS: u64 = 3600;
const FIELDS: &[&str] = &[
    "attempts",
    "backoffSeconds",
    "factor",
    "maxBackoffSeconds",
    "on",
];

/// The causes a retry may be asked for (the reason codes of failures that may not have reached
/// the device, or that it may take differently next time).
pub const CAUSES: &[ReasonCode] = &[
    ReasonCode::Rejected,
    ReasonCode::TimedOut,
    ReasonCode::Offline,
];

/// A job's retry policy. A body needs only `attempts`: the other fields have defaults, filled
/// in when it is stored, so an answer carries every field (this type is also its OpenAPI
/// schema, where only `attempts` is required).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Retries after the first try (0 to 10).
    #[schema(minimum = 0, maximum = 10)]
    pub attempts: u64,
    /// The wait before the first retry (default 10, at most 86400).
    #[schema(required = false, minimum = 0, maximum = 86400)]
    pub backoff_seconds: u64,
    /// Each further wait is the previous one times this (1 to 10, default 2).
    #[serde(serialize_with = "whole_when_whole")]
    #[schema(value_type = f64, required = false, minimum = 1, maximum = 10)]
    pub factor: f64,
    /// No wait is longer (default 3600; at least `backoffSeconds`).
    #[schema(required = false, minimum = 0, maximum = 86400)]
    pub max_backoff_seconds: u64,
    /// The failures retried: any of `rejected`, `timedOut`, `offline` (default all three). A
    /// command is retried only when it was not sent to the device: never after it may have run.
    #[schema(required = false)]
    pub on: Vec<ReasonCode>,
}

/// `2` rather than `2.0` for a whole factor, as the client most likely wrote it.
fn whole_when_whole<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && *value <= u32::MAX as f64 {
        serializer.serialize_u64(*value as u64)
    } else {
        serializer.serialize_f64(*value)
    }
}

impl Retry {
    /// Parses the job body's `retry`.
    pub fn from_json(value: &Value) -> Result<Retry, Invalid> {
        let fields = Fields::nested(value, "retry")?;
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Invalid::field(
                &fields.name(unknown),
                format_args!("is not a retry setting; they are {}", FIELDS.join(", ")),
            ));
        }
        let whole = |field: &str, max: u64| -> Result<Option<u64>, Invalid> {
            match fields.number(field)? {
                None => Ok(None),
                Some(n) if n.fract() == 0.0 && (0.0..=max as f64).contains(&n) => {
                    Ok(Some(n as u64))
                }
                Some(_) => Err(Invalid::field(
                    &fields.name(field),
                    format_args!("must be a whole number from 0 to {max}"),
                )),
            }
        };
        let attempts = whole("attempts", MAX_ATTEMPTS)?
            .ok_or_else(|| Invalid::field("retry.attempts", "is required"))?;
        let backoff_seconds =
            whole("backoffSeconds", MAX_BACKOFF_SECONDS)?.unwrap_or(DEFAULT_BACKOFF_SECONDS);
        let factor = match fields.number("factor")? {
            None => DEFAULT_FACTOR,
            Some(f) if (1.0..=10.0).contains(&f) => f,
            Some(_) => {
                return Err(Invalid::field(
                    "retry.factor",
                    "must be a number from 1 to 10",
                ));
            }
        };
        let max_backoff_seconds = whole("maxBackoffSeconds", MAX_BACKOFF_SECONDS)?
            .unwrap_or(DEFAULT_MAX_BACKOFF_SECONDS.max(backoff_seconds));
        if max_backoff_seconds < backoff_seconds {
            return Err(Invalid::field(
                "retry.maxBackoffSeconds",
                format_args!("must be at least retry.backoffSeconds ({backoff_seconds})"),
            ));
        }
        let on = match fields.array("on")? {
            None => CAUSES.to_vec(),
            Some(items) => {
                let mut on = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let cause = item
                        .as_str()
                        .and_then(|text| CAUSES.iter().find(|c| c.as_str() == text));
                    let Some(cause) = cause else {
                        return Err(Invalid::field(
                            &format!("retry.on[{i}]"),
                            "must be one of rejected, timedOut, offline",
                        ));
                    };
                    if !on.contains(cause) {
                        on.push(*cause);
                    }
                }
                on
            }
        };
        Ok(Retry {
            attempts,
            backoff_seconds,
            factor,
            max_backoff_seconds,
            on,
        })
    }

    /// Whether a device that failed with `code` after `tries` tries is tried again.
    pub fn retries(&self, code: ReasonCode, tries: i64) -> bool {
        self.on.contains(&code) && tries >= 1 && (tries as u64) <= self.attempts
    }

    /// The wait before the next try of a device that has had `tries` tries: `backoffSeconds`
    /// times `factor` to the power of the retries made so far, at most `maxBackoffSeconds`.
    pub fn backoff(&self, tries: i64) -> Duration {
        let made = (tries.max(1) - 1).min(64) as i32;
        let seconds = self.backoff_seconds as f64 * self.factor.powi(made);
        Duration::from_secs_f64(seconds.min(self.max_backoff_seconds as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Retry, Invalid> {
        Retry::from_json(&value)
    }

    #[test]
    fn defaults_and_echo() {
        let retry = parse(json!({"attempts": 2})).unwrap();
        assert_eq!(
            serde_json::to_value(&retry).unwrap(),
            json!({"attempts": 2, "backoffSeconds": 10, "factor": 2, "maxBackoffSeconds": 3600,
                   "on": ["rejected", "timedOut", "offline"]})
        );
        let retry = parse(json!({"attempts": 1, "factor": 1.5, "on": ["offline"]})).unwrap();
        assert_eq!(serde_json::to_value(&retry).unwrap()["factor"], json!(1.5));
    }

    #[test]
    fn each_field_is_checked_by_name() {
        let field = |v: Value| parse(v).unwrap_err().field;
        assert_eq!(field(json!({})), "retry.attempts");
        assert_eq!(field(json!({"attempts": 11})), "retry.attempts");
        assert_eq!(field(json!({"attempts": 1.5})), "retry.attempts");
        assert_eq!(field(json!({"attempts": -1})), "retry.attempts");
        assert_eq!(
            field(json!({"attempts": 1, "backoffSeconds": "5"})),
            "retry.backoffSeconds"
        );
        assert_eq!(field(json!({"attempts": 1, "factor": 0.5})), "retry.factor");
        assert_eq!(
            field(json!({"attempts": 1, "backoffSeconds": 60, "maxBackoffSeconds": 30})),
            "retry.maxBackoffSeconds"
        );
        assert_eq!(
            field(json!({"attempts": 1, "on": ["deadline"]})),
            "retry.on[0]"
        );
        assert_eq!(field(json!({"attempts": 1, "on": "offline"})), "retry.on");
        assert_eq!(field(json!({"attempts": 1, "tries": 3})), "retry.tries");
        assert_eq!(field(json!(3)), "retry");
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap() {
        let retry = parse(json!({"attempts": 5, "backoffSeconds": 2, "factor": 3,
                                 "maxBackoffSeconds": 10}))
        .unwrap();
        let waits: Vec<u64> = (1..=4).map(|t| retry.backoff(t).as_secs()).collect();
        assert_eq!(waits, [2, 6, 10, 10]);
    }

    #[test]
    fn retries_only_listed_causes_while_attempts_last() {
        let retry = parse(json!({"attempts": 2, "on": ["offline"]})).unwrap();
        assert!(retry.retries(ReasonCode::Offline, 1));
        assert!(retry.retries(ReasonCode::Offline, 2));
        assert!(!retry.retries(ReasonCode::Offline, 3));
        assert!(!retry.retries(ReasonCode::Rejected, 1));
        assert!(!retry.retries(ReasonCode::Error, 1));
        let none = parse(json!({"attempts": 0})).unwrap();
        assert!(!none.retries(ReasonCode::Offline, 1));
    }
}
