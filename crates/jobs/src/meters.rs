//! The job engine's metrics: device operations by job type and outcome, their duration, and how
//! late scheduled occurrences fire. Every series is registered once, on first use, and
//! recorded through its handle: a device's finish costs an array index and an atomic add, not
//! a name lookup. No label names a job or a device.

use std::sync::LazyLock;

use flotilla_model::job::Operation;
use flotilla_model::job_state::FailureReason;

/// What a job does, as the `job_type` label says it: the kind of its operations, or `mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    Property,
    Command,
    CloudProperty,
    TemplateMigration,
    Mixed,
}

impl JobType {
    const ALL: [JobType; 5] = [
        JobType::Property,
        JobType::Command,
        JobType::CloudProperty,
        JobType::TemplateMigration,
        JobType::Mixed,
    ];

    pub fn of(operations: &[Operation]) -> JobType {
        let kind = |op: &Operation| match op {
            Operation::Property(_) => JobType::Property,
            Operation::Command(_) => JobType::Command,
            Operation::CloudProperty(_) => JobType::CloudProperty,
            Operation::TemplateMigration { .. } => JobType::TemplateMigration,
        };
        let mut kinds = operations.iter().map(kind);
        match kinds.next() {
            Some(first) if kinds.all(|k| k == first) => first,
            _ => JobType::Mixed,
        }
    }

    fn label(self) -> &'static str {
        match self {
            JobType::Property => "property",
            JobType::Command => "command",
            JobType::CloudProperty => "cloud_property",
            JobType::TemplateMigration => "template_migration",
            JobType::Mixed => "mixed",
        }
    }
}

/// One row per job type: the completed counter, then one failed counter per failure reason.
struct DeviceOps {
    counters: Vec<Vec<metrics::Counter>>,
    duration: Vec<metrics::Histogram>,
}

static DEVICE_OPS: LazyLock<DeviceOps> = LazyLock::new(|| DeviceOps {
    counters: JobType::ALL
        .iter()
        .map(|job_type| {
            let completed = metrics::counter!(
                "flotilla_job_device_operations_total",
                "job_type" => job_type.label(),
                "outcome" => "completed",
                "reason" => "none",
            );
            std::iter::once(completed)
                .chain(FailureReason::ALL.iter().map(|reason| {
                    metrics::counter!(
                        "flotilla_job_device_operations_total",
                        "job_type" => job_type.label(),
                        "outcome" => "failed",
                        "reason" => reason.as_str(),
                    )
                }))
                .collect()
        })
        .collect(),
    duration: JobType::ALL
        .iter()
        .map(|job_type| {
            metrics::histogram!(
                "flotilla_job_device_operation_duration_seconds",
                "job_type" => job_type.label(),
            )
        })
        .collect(),
});

fn index_of(job_type: JobType) -> usize {
    JobType::ALL
        .iter()
        .position(|t| *t == job_type)
        .expect("every job type is in ALL")
}

/// Counts a device's operation that finished (and was counted in its job), and how long it took
/// on this server.
pub fn device_finished(
    job_type: JobType,
    failure: Option<FailureReason>,
    took: std::time::Duration,
) {
    let ops = &*DEVICE_OPS;
    let row = index_of(job_type);
    let column = match failure {
        None => 0,
        Some(reason) => {
            1 + FailureReason::ALL
                .iter()
                .position(|r| *r == reason)
                .expect("every reason is in ALL")
        }
    };
    ops.counters[row][column].increment(1);
    ops.duration[row].record(took);
}

static SCHEDULER_LAG: LazyLock<metrics::Histogram> =
    LazyLock::new(|| metrics::histogram!("flotilla_scheduler_lag_seconds"));

static SCHEDULED_RUNS: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("flotilla_scheduler_runs_total"));

/// A scheduled occurrence ran, `lag` after its planned time.
pub fn occurrence_fired(lag: std::time::Duration) {
    SCHEDULER_LAG.record(lag);
    SCHEDULED_RUNS.increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::job::CapabilityTarget;

    fn target() -> CapabilityTarget {
        CapabilityTarget {
            target: "t".into(),
            path: "p".into(),
            component: None,
            name: "p".into(),
            value: None,
            effective_value: None,
        }
    }

    #[test]
    fn a_job_s_type_is_its_operations_kind_or_mixed() {
        assert_eq!(
            JobType::of(&[Operation::Property(target()), Operation::Property(target())]),
            JobType::Property
        );
        assert_eq!(
            JobType::of(&[Operation::Property(target()), Operation::Command(target())]),
            JobType::Mixed
        );
        assert_eq!(JobType::of(&[]), JobType::Mixed);
    }
}
