//! `rollout`: how fast a job's devices start. `maxPerMinute` caps the device operations started
//! per minute; `ramp` starts slower (`startPerMinute`) and multiplies the rate by `factor` each
//! time `every.succeeded` more devices succeed, up to `maxPerMinute`. The engine's decision on
//! it is `flotilla_jobs::rollout`.

use serde::Serialize;
use serde_json::{Number, Value};
use utoipa::ToSchema;

use crate::Invalid;
use crate::validate::Fields;

/// The highest rate accepted: far beyond what one server starts.
pub const MAX_PER_MINUTE: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub max_per_minute: u64,
    pub ramp: Option<Ramp>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub start_per_minute: u64,
    pub factor: f64,
    /// The rate steps up each time this many more devices succeeded.
    pub every_succeeded: u64,
}

/// `rollout` as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRollout {
    /// At most this many device operations start per minute (1 to 1,000,000).
    pub max_per_minute: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ramp: Option<JobRamp>,
}

/// A rate that starts low and grows as devices succeed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRamp {
    /// The rate at first (1 to `maxPerMinute`).
    pub start_per_minute: u64,
    /// The rate is multiplied by this at each step (1.1 to 5).
    #[schema(value_type = f64)]
    pub factor: Number,
    pub every: JobRampStep,
}

/// When the ramp steps up.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobRampStep {
    /// Each time this many more devices of the job succeeded.
    pub succeeded: u64,
}

impl Pacing {
    /// Parses `rollout` (the object).
    pub fn from_json(value: &Value) -> Result<Pacing, Invalid> {
        let fields = Fields::nested(value, "rollout")?;
        refuse_unknown(&fields, &["maxPerMinute", "ramp"])?;
        let max = fields
            .number("maxPerMinute")?
            .ok_or_else(|| Invalid::field("rollout.maxPerMinute", "is required"))?;
        let max_per_minute = whole_number(max, "rollout.maxPerMinute", 1..=MAX_PER_MINUTE)?;
        let ramp = match fields.object("ramp")? {
            None => None,
            Some(ramp) => Some(parse_ramp(ramp, max_per_minute)?),
        };
        Ok(Pacing {
            max_per_minute,
            ramp,
        })
    }

    /// The rate (devices per minute) once `succeeded` devices of the job succeeded.
    pub fn rate(&self, succeeded: u64) -> f64 {
        let max = self.max_per_minute as f64;
        match self.ramp {
            None => max,
            Some(ramp) => {
                let steps = (succeeded / ramp.every_succeeded.max(1)).min(1000) as i32;
                (ramp.start_per_minute as f64 * ramp.factor.powi(steps)).min(max)
            }
        }
    }

    pub fn body(&self) -> JobRollout {
        JobRollout {
            max_per_minute: self.max_per_minute,
            ramp: self.ramp.map(|ramp| JobRamp {
                start_per_minute: ramp.start_per_minute,
                factor: number_json(ramp.factor),
                every: JobRampStep {
                    succeeded: ramp.every_succeeded,
                },
            }),
        }
    }
}

fn parse_ramp(value: &Value, max_per_minute: u64) -> Result<Ramp, Invalid> {
    let fields = Fields::nested(value, "rollout.ramp")?;
    refuse_unknown(&fields, &["startPerMinute", "factor", "every"])?;
    let start = fields
        .number("startPerMinute")?
        .ok_or_else(|| Invalid::field("rollout.ramp.startPerMinute", "is required"))?;
    let start_per_minute = whole_number(start, "rollout.ramp.startPerMinute", 1..=MAX_PER_MINUTE)?;
    if start_per_minute > max_per_minute {
        return Err(Invalid::field(
            "rollout.ramp.startPerMinute",
            format_args!("is {start_per_minute}, above rollout.maxPerMinute ({max_per_minute})"),
        ));
    }
    let factor = fields
        .number("factor")?
        .ok_or_else(|| Invalid::field("rollout.ramp.factor", "is required"))?;
    if !(1.1 - 1e-9..=5.0).contains(&factor) {
        return Err(Invalid::field(
            "rollout.ramp.factor",
            "must be a number from 1.1 to 5",
        ));
    }
    let every = fields
        .object("every")?
        .ok_or_else(|| Invalid::field("rollout.ramp.every", "is required"))?;
    let every = Fields::nested(every, "rollout.ramp.every")?;
    refuse_unknown(&every, &["succeeded"])?;
    let succeeded = every
        .number("succeeded")?
        .ok_or_else(|| Invalid::field("rollout.ramp.every.succeeded", "is required"))?;
    let every_succeeded =
        whole_number(succeeded, "rollout.ramp.every.succeeded", 1..=1_000_000_000)?;
    Ok(Ramp {
        start_per_minute,
        factor,
        every_succeeded,
    })
}

/// An extension object takes only its own fields: a misspelt one would silently do nothing.
pub(crate) fn refuse_unknown(fields: &Fields, known: &[&str]) -> Result<(), Invalid> {
    match fields.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(Invalid::field(
            &fields.name(key),
            format_args!(
                "is not a field of this object (it takes {})",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A number as the client sent it: a whole number (`2`) stays one rather than becoming `2.0`.
pub(crate) fn number_json(value: f64) -> Number {
    match Number::from_f64(value) {
        Some(_) if value.fract() == 0.0 && value.abs() < 9e15 => Number::from(value as i64),
        Some(fraction) => fraction,
        None => Number::from(0),
    }
}

/// A whole number within `range`, or a 400 naming `field`.
pub(crate) fn whole_number(
    value: f64,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Invalid> {
    if value.fract() == 0.0 && value >= *range.start() as f64 && value <= *range.end() as f64 {
        Ok(value as u64)
    } else {
        Err(Invalid::field(
            field,
            format_args!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ramp_multiplies_the_rate_per_step_up_to_the_maximum() {
        let pacing = Pacing::from_json(&json!({"maxPerMinute": 100,
            "ramp": {"startPerMinute": 10, "factor": 2, "every": {"succeeded": 5}}}))
        .unwrap();
        assert_eq!(pacing.rate(0), 10.0);
        assert_eq!(pacing.rate(4), 10.0);
        assert_eq!(pacing.rate(5), 20.0);
        assert_eq!(pacing.rate(10), 40.0);
        assert_eq!(pacing.rate(15), 80.0);
        assert_eq!(pacing.rate(20), 100.0);
        assert_eq!(pacing.rate(u64::MAX), 100.0);
        assert_eq!(
            serde_json::to_value(pacing.body()).unwrap(),
            json!({"maxPerMinute": 100, "ramp": {"startPerMinute": 10, "factor": 2, "every": {"succeeded": 5}}})
        );
    }

    #[test]
    fn each_field_is_checked_by_name() {
        let field = |v: Value| Pacing::from_json(&v).unwrap_err().field;
        assert_eq!(field(json!({})), "rollout.maxPerMinute");
        assert_eq!(field(json!({"maxPerMinute": 0})), "rollout.maxPerMinute");
        assert_eq!(field(json!({"maxPerMinute": 1.5})), "rollout.maxPerMinute");
        assert_eq!(field(json!({"maxPerMinute": "9"})), "rollout.maxPerMinute");
        assert_eq!(field(json!({"maxPerMinute": 9, "rate": 1})), "rollout.rate");
        let ramp = |r: Value| field(json!({"maxPerMinute": 100, "ramp": r}));
        assert_eq!(
            ramp(json!({"startPerMinute": 200, "factor": 2, "every": {"succeeded": 1}})),
            "rollout.ramp.startPerMinute"
        );
        assert_eq!(
            ramp(json!({"startPerMinute": 10, "factor": 1.05, "every": {"succeeded": 1}})),
            "rollout.ramp.factor"
        );
        assert_eq!(
            ramp(json!({"startPerMinute": 10, "factor": 6, "every": {"succeeded": 1}})),
            "rollout.ramp.factor"
        );
        assert_eq!(
            ramp(json!({"startPerMinute": 10, "factor": 2})),
            "rollout.ramp.every"
        );
        assert_eq!(
            ramp(json!({"startPerMinute": 10, "factor": 2, "every": {"succeeded": 0}})),
            "rollout.ramp.every.succeeded"
        );
        assert_eq!(field(json!(5)), "rollout");
    }
}
