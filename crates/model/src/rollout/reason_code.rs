//! A job device's outcome as one of a few codes clients can act on (`reasonCode`), beside the
//! human `reason`. The store keeps the finer `FailureReason`; this is its public grouping.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

use crate::job_state::{DeviceStatus, FailureReason};

/// Why a job device did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReasonCode {
    /// The device refused the property (its `ac`) or answered the command with an error.
    Rejected,
    /// The device was connected but did not acknowledge or answer in time.
    TimedOut,
    /// The device was not connected.
    Offline,
    /// The job's offline policy skipped it.
    Skipped,
    /// Its operation was cut short (a server stopped between a command and its answer, or the
    /// job failed first).
    Interrupted,
    /// The job's deadline passed before the device finished.
    Deadline,
    /// Anything else: the device was deleted, kept changing, or the server could not record.
    Error,
}

impl ReasonCode {
    pub const ALL: &[ReasonCode] = &[
        ReasonCode::Rejected,
        ReasonCode::TimedOut,
        ReasonCode::Offline,
        ReasonCode::Skipped,
        ReasonCode::Interrupted,
        ReasonCode::Deadline,
        ReasonCode::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Rejected => "rejected",
            ReasonCode::TimedOut => "timedOut",
            ReasonCode::Offline => "offline",
            ReasonCode::Skipped => "skipped",
            ReasonCode::Interrupted => "interrupted",
            ReasonCode::Deadline => "deadline",
            ReasonCode::Error => "error",
        }
    }

    /// The code of a stored failure reason.
    pub fn of_failure(reason: FailureReason) -> ReasonCode {
        match reason {
            FailureReason::Rejected => ReasonCode::Rejected,
            FailureReason::NoAcknowledgement | FailureReason::TimedOut => ReasonCode::TimedOut,
            FailureReason::Offline => ReasonCode::Offline,
            FailureReason::Interrupted => ReasonCode::Interrupted,
            FailureReason::Deadline => ReasonCode::Deadline,
            FailureReason::DeviceDeleted
            | FailureReason::ConcurrentChange
            | FailureReason::StorageError => ReasonCode::Error,
        }
    }

    /// The code a job device shows: a skipped device's, or its failure's (a device waiting for
    /// a retry keeps its last failure's). `None` for a device with neither.
    pub fn of_device(status: DeviceStatus, failure: Option<FailureReason>) -> Option<ReasonCode> {
        if status == DeviceStatus::Skipped {
            return Some(ReasonCode::Skipped);
        }
        failure.map(ReasonCode::of_failure)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_and_documented_as_their_text() {
        use utoipa::PartialSchema;
        let texts: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        for (code, text) in ReasonCode::ALL.iter().zip(&texts) {
            assert_eq!(serde_json::to_value(code).unwrap(), *text);
        }
        let schema = serde_json::to_value(ReasonCode::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(texts));
    }

    #[test]
    fn every_failure_reason_has_a_code() {
        use FailureReason::*;
        let expected = |reason| match reason {
            Rejected => "rejected",
            NoAcknowledgement | TimedOut => "timedOut",
            Offline => "offline",
            Interrupted => "interrupted",
            Deadline => "deadline",
            _ => "error",
        };
        for &reason in FailureReason::ALL {
            assert_eq!(ReasonCode::of_failure(reason).as_str(), expected(reason));
            assert_eq!(
                ReasonCode::of_device(DeviceStatus::Failed, Some(reason)),
                Some(ReasonCode::of_failure(reason))
            );
        }
        assert_eq!(ReasonCode::of_device(DeviceStatus::Completed, None), None);
        assert_eq!(ReasonCode::of_device(DeviceStatus::Pending, None), None);
        assert_eq!(
            ReasonCode::of_device(DeviceStatus::Skipped, None),
            Some(ReasonCode::Skipped)
        );
    }
}
