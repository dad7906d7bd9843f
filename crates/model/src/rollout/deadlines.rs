//! `deviceTimeoutSeconds` (how long one device's operation may take, overriding the server's
//! default) and `deadline` (when the whole job must be done: devices not finished by then fail
//! with the reason code `deadline`, and the job ends).

use jiff::Timestamp;
use serde_json::Value;

use crate::Invalid;
use crate::rollout::pacing::whole_number;
use crate::validate::Fields;

/// A week: a device operation that needs longer is better a job of its own.
pub const MAX_DEVICE_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;

/// `deviceTimeoutSeconds`, when the body sets it.
pub fn device_timeout_seconds(fields: &Fields) -> Result<Option<u64>, Invalid> {
    let Some(seconds) = fields.get("deviceTimeoutSeconds") else {
        return Ok(None);
    };
    let field = fields.name("deviceTimeoutSeconds");
    let Value::Number(number) = seconds else {
        return Err(Invalid::field(&field, "must be a number"));
    };
    let value = number.as_f64().unwrap_or(-1.0);
    whole_number(value, &field, 1..=MAX_DEVICE_TIMEOUT_SECONDS).map(Some)
}

/// A job's deadline: the instant, and the text the client sent (echoed as sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Deadline {
    pub at: Timestamp,
    pub text: String,
}

impl Deadline {
    pub fn passed(&self, now: Timestamp) -> bool {
        now >= self.at
    }
}

/// `deadline`, when the body sets it: an RFC 3339 date-time with an offset. A deadline already
/// past is accepted (a stored job is parsed again later, when it always may be): such a job
/// fails its devices with `deadline` as soon as it starts.
pub fn deadline(fields: &Fields) -> Result<Option<Deadline>, Invalid> {
    let Some(text) = fields.string("deadline")? else {
        return Ok(None);
    };
    let at: Timestamp = text.parse().map_err(|_| {
        Invalid::field(
            &fields.name("deadline"),
            "must be a date-time with a time zone, such as 2026-12-24T18:00:00Z",
        )
    })?;
    Ok(Some(Deadline {
        at,
        text: text.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timeouts_and_deadlines_are_checked_by_name() {
        let body = |v: Value| v;
        let timeout = |v: Value| device_timeout_seconds(&Fields::of(&body(v)).unwrap());
        assert_eq!(timeout(json!({})), Ok(None));
        assert_eq!(timeout(json!({"deviceTimeoutSeconds": 30})), Ok(Some(30)));
        for bad in [
            json!(0),
            json!(1.5),
            json!("30"),
            json!(MAX_DEVICE_TIMEOUT_SECONDS + 1),
        ] {
            assert_eq!(
                timeout(json!({"deviceTimeoutSeconds": bad}))
                    .unwrap_err()
                    .field,
                "deviceTimeoutSeconds"
            );
        }
        let deadline_of = |v: Value| deadline(&Fields::of(&body(v)).unwrap());
        let at = deadline_of(json!({"deadline": "2026-12-24T18:00:00+01:00"}))
            .unwrap()
            .unwrap();
        assert_eq!(at.at.to_string(), "2026-12-24T17:00:00Z");
        assert_eq!(at.text, "2026-12-24T18:00:00+01:00");
        for bad in [json!("tomorrow"), json!("2026-12-24T18:00:00"), json!(5)] {
            assert_eq!(
                deadline_of(json!({"deadline": bad})).unwrap_err().field,
                "deadline"
            );
        }
    }
}
