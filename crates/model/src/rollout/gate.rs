//! `batchGate`: the next batch of a job starts only when `minSuccessPercentage` of the previous
//! batch succeeded and `soakSeconds` passed since its last device finished. A gate not met stops
//! the job, with a reason; resuming it lets that batch through.

use serde::Serialize;
use serde_json::{Number, Value};
use utoipa::ToSchema;

use crate::Invalid;
use crate::rollout::pacing::{number_json, refuse_unknown, whole_number};
use crate::validate::Fields;

/// A day: a longer soak is better a job of its own.
pub const MAX_SOAK_SECONDS: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchGate {
    /// 0 to 100; 0 when left out.
    pub min_success_percentage: f64,
    /// 0 when left out.
    pub soak_seconds: u64,
    /// Which fields the client sent (the answer echoes only those).
    sent: (bool, bool),
}

/// `batchGate` as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobBatchGate {
    /// The share of the previous batch's devices that must have succeeded (0 to 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, nullable = false)]
    pub min_success_percentage: Option<Number>,
    /// How long after the previous batch's last device finished the next batch may start
    /// (0 to 86,400).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub soak_seconds: Option<u64>,
}

impl BatchGate {
    pub fn from_json(value: &Value) -> Result<BatchGate, Invalid> {
        let fields = Fields::nested(value, "batchGate")?;
        refuse_unknown(&fields, &["minSuccessPercentage", "soakSeconds"])?;
        let percentage = fields.number("minSuccessPercentage")?;
        if let Some(p) = percentage
            && !(0.0..=100.0).contains(&p)
        {
            return Err(Invalid::field(
                "batchGate.minSuccessPercentage",
                "must be a percentage from 0 to 100",
            ));
        }
        let soak = fields
            .number("soakSeconds")?
            .map(|s| whole_number(s, "batchGate.soakSeconds", 0..=MAX_SOAK_SECONDS))
            .transpose()?;
        if percentage.is_none() && soak.is_none() {
            return Err(Invalid::field(
                "batchGate",
                "must set minSuccessPercentage, soakSeconds or both",
            ));
        }
        Ok(BatchGate {
            min_success_percentage: percentage.unwrap_or(0.0),
            soak_seconds: soak.unwrap_or(0),
            sent: (percentage.is_some(), soak.is_some()),
        })
    }

    pub fn body(&self) -> JobBatchGate {
        JobBatchGate {
            min_success_percentage: self
                .sent
                .0
                .then(|| number_json(self.min_success_percentage)),
            soak_seconds: self.sent.1.then_some(self.soak_seconds),
        }
    }

    /// Whether `succeeded` of `size` devices meet the percentage (exactly: 80% of 5 is 4).
    pub fn met_by(&self, succeeded: u64, size: u64) -> bool {
        succeeded as f64 * 100.0 + 1e-6 * size as f64 >= self.min_success_percentage * size as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gates_parse_check_and_echo_what_was_sent() {
        let gate = BatchGate::from_json(&json!({"minSuccessPercentage": 80})).unwrap();
        assert!(gate.met_by(4, 5));
        assert!(!gate.met_by(3, 5));
        assert_eq!(
            serde_json::to_value(gate.body()).unwrap(),
            json!({"minSuccessPercentage": 80})
        );
        let field = |v: Value| BatchGate::from_json(&v).unwrap_err().field;
        assert_eq!(field(json!({})), "batchGate");
        assert_eq!(
            field(json!({"minSuccessPercentage": 101})),
            "batchGate.minSuccessPercentage"
        );
        assert_eq!(field(json!({"soakSeconds": -1})), "batchGate.soakSeconds");
        assert_eq!(
            field(json!({"soakSeconds": 1, "soak": 2})),
            "batchGate.soak"
        );
    }
}
