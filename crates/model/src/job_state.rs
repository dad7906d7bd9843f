//! The job state machine: a job's and a job device's statuses, the events that move them, and
//! the one table of legal moves (`next`). The store's conditional updates take their
//! `WHERE status IN (..)` from these tables, and the database's CHECK constraints list the same
//! statuses, so no other code decides which moves are legal.

use std::fmt;
use std::str::FromStr;

use crate::job::Threshold;

/// Defines a status-like enum whose variants have a stable text form (stored, and shown by the
/// API), with `ALL`, `as_str`, `Display`, `FromStr`, and `Serialize` and a schema as that text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        // The texts are the variants' names in camelCase (a test holds serde to `as_str`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<Self, UnknownStatus> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus(text.to_string())),
                }
            }
        }
    };
}

/// A stored status or reason that this server does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status '{0}'")]
pub struct UnknownStatus(pub String);

text_enum!(
    /// The statuses a job goes through.
    JobStatus {
        /// Created; the engine has not fixed its devices yet.
        Pending = "pending",
        Running = "running",
        /// Stopped by a user: no device starts, devices in flight finish.
        Stopped = "stopped",
        Complete = "complete",
        /// Its failures reached its cancellation threshold.
        Cancelled = "cancelled",
        /// It could not run at all (its group vanished, its definition no longer parses).
        Failed = "failed",
    }
);

text_enum!(
    /// The statuses of one device of a job.
    DeviceStatus {
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        /// The job's offline policy skipped it: neither completed nor failed.
        Skipped = "skipped",
    }
);

text_enum!(
    /// Why a device's operation failed, as a stable code beside the human message.
    FailureReason {
        /// The device was deleted while the job ran.
        DeviceDeleted = "deviceDeleted",
        /// The device was not connected when its deadline passed or a command was due.
        Offline = "offline",
        /// The device was connected but did not acknowledge the desired properties in time.
        NoAcknowledgement = "noAcknowledgement",
        /// The device refused a property (its `ac`) or answered a command with an error status.
        Rejected = "rejected",
        /// The device did not answer a command in time.
        TimedOut = "timedOut",
        /// The device's operation was cut short: the server restarted between sending a command
        /// and its answer, or the job failed before the device finished.
        Interrupted = "interrupted",
        /// The device kept changing while the job wrote it.
        ConcurrentChange = "concurrentChange",
        /// The server could not record the operation.
        StorageError = "storageError",
        /// The job's `deadline` passed before the device finished.
        Deadline = "deadline",
    }
);

impl JobStatus {
    /// A job that the engine still has to run (it holds its devices against later jobs).
    pub const ACTIVE: &[JobStatus] = &[JobStatus::Pending, JobStatus::Running];

    /// Statuses a job ends in: its end time is set when it reaches one.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Cancelled | JobStatus::Failed
        )
    }

    /// THE job transition table: the status `event` moves a job in this status to.
    pub fn next(self, event: &JobEvent) -> Result<JobStatus, IllegalTransition> {
        use JobStatus::*;
        match (self, event) {
            (Pending, JobEvent::Start) => Ok(Running),
            (Pending | Running, JobEvent::Stop) => Ok(Stopped),
            // A job stopped before it started goes back to pending.
            (Stopped, JobEvent::Resume { started: true }) => Ok(Running),
            (Stopped, JobEvent::Resume { started: false }) => Ok(Pending),
            // A rerun is a new job; the original stays as it is, and must have settled.
            (Stopped | Complete | Cancelled | Failed, JobEvent::Rerun) => Ok(self),
            (Running, JobEvent::Complete) => Ok(Complete),
            (Pending | Running, JobEvent::Fail(_) | JobEvent::DeadlinePassed(_)) => Ok(Failed),
            // A batch gate not met stops the job until a user resumes it.
            (Running, JobEvent::GateNotMet(_)) => Ok(Stopped),
            // A stopped job's devices in flight still finish, and may still cancel it.
            (Running | Stopped, JobEvent::ThresholdReached(_)) => Ok(Cancelled),
            _ => Err(IllegalTransition {
                from: self,
                event: event.name(),
            }),
        }
    }

    /// The statuses `event` can move a job from (the `WHERE status IN (..)` of its update).
    pub fn sources(event: &JobEvent) -> Vec<JobStatus> {
        JobStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.next(event).is_ok())
            .collect()
    }
}

/// What happens to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The engine fixed its devices and batches.
    Start,
    Stop,
    /// `started`: whether the job had started before it was stopped.
    Resume {
        started: bool,
    },
    /// A rerun of its failed devices is asked for.
    Rerun,
    /// Every device has finished.
    Complete,
    /// It cannot run, and why.
    Fail(String),
    ThresholdReached(Cancellation),
    /// Its `deadline` passed (the reason says when): its unfinished devices fail with it.
    DeadlinePassed(String),
    /// The previous batch did not meet its `batchGate`, and why.
    GateNotMet(String),
}

impl JobEvent {
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Start => "start",
            JobEvent::Stop => "stop",
            JobEvent::Resume { .. } => "resume",
            JobEvent::Rerun => "rerun",
            JobEvent::Complete => "complete",
            JobEvent::Fail(_) => "fail",
            JobEvent::ThresholdReached(_) => "cancel",
            JobEvent::DeadlinePassed(_) => "end at its deadline",
            JobEvent::GateNotMet(_) => "stop at a batch gate",
        }
    }

    /// The reason the job shows after this event, if the event gives one.
    pub fn reason(&self) -> Option<String> {
        match self {
            JobEvent::Fail(reason)
            | JobEvent::DeadlinePassed(reason)
            | JobEvent::GateNotMet(reason) => Some(reason.clone()),
            JobEvent::ThresholdReached(cancellation) => Some(cancellation.reason()),
            _ => None,
        }
    }

    /// The code the job's unfinished devices fail with when this event fails the job.
    pub fn device_failure(&self) -> FailureReason {
        match self {
            JobEvent::DeadlinePassed(_) => FailureReason::Deadline,
            _ => FailureReason::Interrupted,
        }
    }
}

/// A job's failures reached its cancellation threshold: `failed` of the `size` devices of the
/// batch (`per_batch`) or of the job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cancellation {
    pub failed: i64,
    pub size: i64,
    pub per_batch: bool,
}

impl Cancellation {
    pub fn reason(&self) -> String {
        let scope = if self.per_batch { "batch" } else { "job" };
        format!(
            "cancelled: {} of the {scope}'s {} devices failed, reaching the cancellation threshold",
            self.failed, self.size
        )
    }
}

impl Threshold {
    /// The cancellation, when `failed` of `size` devices reach this threshold.
    pub fn cancellation(self, failed: i64, size: i64) -> Option<Cancellation> {
        self.reached(failed.max(0) as u64, size.max(0) as u64)
            .then_some(Cancellation {
                failed,
                size,
                per_batch: self.per_batch,
            })
    }
}

/// An event the table does not allow in the job's (or device's) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot {event}")]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub event: &'static str,
}

/// How a device's operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOutcome {
    Completed,
    Failed(FailureReason),
    /// Not connected when its turn came, and the job's offline policy skips such devices.
    Skipped,
}

/// What happens to one device of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Its operation starts (the job is running and the device's turn came).
    Start,
    Finish(DeviceOutcome),
    /// Its job failed before the device finished: it fails with the job.
    JobFailed,
    /// Its try failed and the job's retry policy tries it again: it waits for its turn anew.
    Retry,
}

/// A device event its status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job device cannot take {event:?}")]
pub struct IllegalDeviceTransition {
    pub from: DeviceStatus,
    pub event: DeviceEvent,
}

impl DeviceStatus {
    /// THE job device transition table.
    pub fn next(self, event: DeviceEvent) -> Result<DeviceStatus, IllegalDeviceTransition> {
        use DeviceStatus::*;
        match (self, event) {
            (Pending, DeviceEvent::Start) => Ok(Running),
            (Running, DeviceEvent::Finish(DeviceOutcome::Completed)) => Ok(Completed),
            (Running, DeviceEvent::Finish(DeviceOutcome::Failed(_))) => Ok(Failed),
            (Running, DeviceEvent::Finish(DeviceOutcome::Skipped)) => Ok(Skipped),
            (Pending | Running, DeviceEvent::JobFailed) => Ok(Failed),
            (Running, DeviceEvent::Retry) => Ok(Pending),
            _ => Err(IllegalDeviceTransition { from: self, event }),
        }
    }

    /// The statuses `event` moves a device from (the `WHERE status IN (..)` of its update).
    pub fn sources(event: DeviceEvent) -> Vec<DeviceStatus> {
        DeviceStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.next(event).is_ok())
            .collect()
    }

    /// The status `event` moves a device to (the same from each of its sources).
    pub fn target(event: DeviceEvent) -> DeviceStatus {
        DeviceStatus::sources(event)
            .first()
            .and_then(|s| s.next(event).ok())
            .expect("every device event has a source status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ThresholdKind;
    use JobStatus::*;

    /// The API shows each status (and failure code) as the text the store keeps, in its schema too.
    #[test]
    fn serialized_and_documented_as_their_text() {
        use utoipa::PartialSchema;
        fn check<T: serde::Serialize + PartialSchema + Copy + fmt::Display>(all: &[T]) {
            let texts: Vec<String> = all.iter().map(T::to_string).collect();
            for (status, text) in all.iter().zip(&texts) {
                assert_eq!(serde_json::to_value(status).unwrap(), text.as_str());
            }
            let schema = serde_json::to_value(T::schema()).unwrap();
            assert_eq!(schema["enum"], serde_json::json!(texts));
        }
        check(JobStatus::ALL);
        check(DeviceStatus::ALL);
        check(FailureReason::ALL);
    }

    fn cancellation() -> Cancellation {
        Cancellation {
            failed: 2,
            size: 4,
            per_batch: false,
        }
    }

    fn job_events() -> Vec<JobEvent> {
        vec![
            JobEvent::Start,
            JobEvent::Stop,
            JobEvent::Resume { started: true },
            JobEvent::Resume { started: false },
            JobEvent::Rerun,
            JobEvent::Complete,
            JobEvent::Fail("gone".into()),
            JobEvent::ThresholdReached(cancellation()),
            JobEvent::DeadlinePassed("late".into()),
            JobEvent::GateNotMet("too few".into()),
        ]
    }

    /// The expected table, written out pair by pair: `None` is illegal.
    fn expected(status: JobStatus, event: &JobEvent) -> Option<JobStatus> {
        let row: [Option<JobStatus>; 6] = match event {
            // pending, running, stopped, complete, cancelled, failed
            JobEvent::Start => [Some(Running), None, None, None, None, None],
            JobEvent::Stop => [Some(Stopped), Some(Stopped), None, None, None, None],
            JobEvent::Resume { started: true } => [None, None, Some(Running), None, None, None],
            JobEvent::Resume { started: false } => [None, None, Some(Pending), None, None, None],
            JobEvent::Rerun => [
                None,
                None,
                Some(Stopped),
                Some(Complete),
                Some(Cancelled),
                Some(Failed),
            ],
            JobEvent::Complete => [None, Some(Complete), None, None, None, None],
            JobEvent::Fail(_) => [Some(Failed), Some(Failed), None, None, None, None],
            JobEvent::ThresholdReached(_) => {
                [None, Some(Cancelled), Some(Cancelled), None, None, None]
            }
            JobEvent::DeadlinePassed(_) => [Some(Failed), Some(Failed), None, None, None, None],
            JobEvent::GateNotMet(_) => [None, Some(Stopped), None, None, None, None],
        };
        let index = JobStatus::ALL.iter().position(|s| *s == status).unwrap();
        row[index]
    }

    #[test]
    fn every_job_status_and_event_pair() {
        assert_eq!(JobStatus::ALL.len(), 6);
        for &status in JobStatus::ALL {
            for event in job_events() {
                let got = status.next(&event);
                match expected(status, &event) {
                    Some(to) => assert_eq!(got, Ok(to), "{status} + {event:?}"),
                    None => assert_eq!(
                        got,
                        Err(IllegalTransition {
                            from: status,
                            event: event.name()
                        }),
                        "{status} + {event:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn sources_come_from_the_table() {
        assert_eq!(JobStatus::sources(&JobEvent::Start), [Pending]);
        assert_eq!(JobStatus::sources(&JobEvent::Stop), [Pending, Running]);
        assert_eq!(
            JobStatus::sources(&JobEvent::ThresholdReached(cancellation())),
            [Running, Stopped]
        );
        assert_eq!(JobStatus::ACTIVE, JobStatus::sources(&JobEvent::Stop));
    }

    #[test]
    fn every_device_status_and_event_pair() {
        let failed = DeviceOutcome::Failed(FailureReason::Offline);
        let events = [
            DeviceEvent::Start,
            DeviceEvent::Finish(DeviceOutcome::Completed),
            DeviceEvent::Finish(failed),
            DeviceEvent::Finish(DeviceOutcome::Skipped),
            DeviceEvent::JobFailed,
            DeviceEvent::Retry,
        ];
        for &status in DeviceStatus::ALL {
            for event in events {
                let expected = match (status, event) {
                    (DeviceStatus::Pending, DeviceEvent::Start) => Some(DeviceStatus::Running),
                    (DeviceStatus::Running, DeviceEvent::Finish(DeviceOutcome::Completed)) => {
                        Some(DeviceStatus::Completed)
                    }
                    (DeviceStatus::Running, DeviceEvent::Finish(DeviceOutcome::Skipped)) => {
                        Some(DeviceStatus::Skipped)
                    }
                    (DeviceStatus::Running, DeviceEvent::Finish(_)) => Some(DeviceStatus::Failed),
                    (DeviceStatus::Running, DeviceEvent::Retry) => Some(DeviceStatus::Pending),
                    (DeviceStatus::Pending | DeviceStatus::Running, DeviceEvent::JobFailed) => {
                        Some(DeviceStatus::Failed)
                    }
                    _ => None,
                };
                assert_eq!(status.next(event).ok(), expected, "{status} + {event:?}");
            }
        }
        assert_eq!(
            DeviceStatus::sources(DeviceEvent::Finish(failed)),
            [DeviceStatus::Running]
        );
        assert_eq!(
            DeviceStatus::sources(DeviceEvent::JobFailed),
            [DeviceStatus::Pending, DeviceStatus::Running]
        );
        assert_eq!(
            DeviceStatus::target(DeviceEvent::JobFailed),
            DeviceStatus::Failed
        );
        assert_eq!(
            DeviceStatus::target(DeviceEvent::Finish(failed)),
            DeviceStatus::Failed
        );
    }

    #[test]
    fn text_forms_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in DeviceStatus::ALL {
            assert_eq!(s.as_str().parse::<DeviceStatus>(), Ok(*s));
        }
        for r in FailureReason::ALL {
            assert_eq!(r.as_str().parse::<FailureReason>(), Ok(*r));
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn cancellation_decision_and_reason() {
        let threshold = Threshold {
            kind: ThresholdKind::Number(2),
            per_batch: true,
        };
        assert_eq!(threshold.cancellation(1, 5), None);
        let cancel = threshold.cancellation(2, 5).unwrap();
        assert_eq!(
            JobEvent::ThresholdReached(cancel).reason().unwrap(),
            "cancelled: 2 of the batch's 5 devices failed, reaching the cancellation threshold"
        );
    }
}
