//! The engine's decisions on a job's rollout controls, as pure functions of (extension, counts,
//! now): how many devices may start now under `rollout` (and when to look again), whether the
//! next batch's `batchGate` is met, and what a job outside its `windows` says. The engine reads
//! the counts (`flotilla_store::job_pace`) and acts on the answers.

use flotilla_model::rollout::gate::BatchGate;
use flotilla_model::rollout::pacing::Pacing;
use flotilla_model::rollout::windows::WindowState;
use flotilla_store::{BatchOutcome, RecentStarts};

const MINUTE_MS: i64 = 60_000;
/// The shortest slice starts are spread over: at 600 a minute, 3 devices every 300 ms rather
/// than 600 at once; shorter would cost an engine pass per device.
const MIN_SLICE_MS: f64 = 250.0;

/// The pace at a rate: at most `per_slice` starts in any `slice_ms`, and at most `per_minute`
/// in any minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub rate: f64,
    pub per_slice: u64,
    pub slice_ms: i64,
    pub per_minute: u64,
}

impl Pace {
    /// The pace of `pacing` once `succeeded` devices of the job succeeded (its ramp's step).
    pub fn of(pacing: &Pacing, succeeded: u64) -> Pace {
        let rate = pacing.rate(succeeded).max(1.0);
        // A whole number of starts per slice, and the slice that many take at the rate.
        let per_slice = (rate * MIN_SLICE_MS / MINUTE_MS as f64).ceil().max(1.0);
        Pace {
            rate,
            per_slice: per_slice as u64,
            slice_ms: (per_slice * MINUTE_MS as f64 / rate).ceil() as i64,
            per_minute: (rate.floor() as u64).max(1),
        }
    }

    /// Where the two windows the counts are read for begin: (minute, slice).
    pub fn windows(&self, now_ms: i64) -> (i64, i64) {
        (now_ms - MINUTE_MS, now_ms - self.slice_ms)
    }

    /// How many devices may start now, given the job's recent starts, and when to look again.
    pub fn allowance(&self, recent: &RecentStarts, now_ms: i64) -> Allowance {
        let in_slice = self.per_slice.saturating_sub(recent.in_slice);
        let in_minute = self.per_minute.saturating_sub(recent.in_minute);
        let starts = in_slice.min(in_minute);
        let look_again_ms = if starts > 0 {
            // The starts made now fill this slice: the next ones are due when it has passed.
            now_ms + self.slice_ms
        } else {
            let mut at = now_ms + 1;
            if in_slice == 0 {
                at = at.max(recent.oldest_in_slice_ms.unwrap_or(now_ms) + self.slice_ms + 1);
            }
            if in_minute == 0 {
                at = at.max(recent.oldest_in_minute_ms.unwrap_or(now_ms) + MINUTE_MS + 1);
            }
            at
        };
        Allowance {
            starts: starts as usize,
            look_again_ms,
        }
    }
}

/// How many devices may start now, and when the engine should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub starts: usize,
    pub look_again_ms: i64,
}

/// Whether the next batch may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    Open,
    /// Met, but the soak lasts until then.
    Soaking {
        until_ms: i64,
    },
    /// Not met: the job stops, and says why.
    NotMet {
        reason: String,
    },
}

/// The gate before batch `next` (numbered from 0), given how the batch before it ended.
pub fn gate(gate: &BatchGate, next: i64, previous: &BatchOutcome, now_ms: i64) -> GateVerdict {
    if !gate.met_by(previous.succeeded, previous.total) {
        let percent = if previous.total == 0 {
            100.0
        } else {
            previous.succeeded as f64 * 100.0 / previous.total as f64
        };
        return GateVerdict::NotMet {
            reason: format!(
                "stopped at the batch gate before batch {}: {} of batch {}'s {} devices \
                 succeeded ({:.1}%), below minSuccessPercentage {}; resume the job to go on",
                next + 1,
                previous.succeeded,
                next,
                previous.total,
                percent,
                gate.min_success_percentage
            ),
        };
    }
    let soaked_at = previous.last_finished_ms.unwrap_or(0) + gate.soak_seconds as i64 * 1000;
    if now_ms < soaked_at {
        GateVerdict::Soaking {
            until_ms: soaked_at,
        }
    } else {
        GateVerdict::Open
    }
}

/// What a job outside its maintenance windows shows as its reason, and when it may start
/// devices again; `None` inside a window.
pub fn window_wait(state: WindowState) -> Option<(String, Option<jiff::Timestamp>)> {
    match state {
        WindowState::Open { .. } => None,
        WindowState::Closed { opens: Some(at) } => Some((
            format!("waiting: outside its maintenance windows until {at}"),
            Some(at),
        )),
        WindowState::Closed { opens: None } => Some((
            "waiting: no maintenance window opens again".to_string(),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pacing(body: serde_json::Value) -> Pacing {
        Pacing::from_json(&body).unwrap()
    }

    fn recent(in_minute: u64, in_slice: u64, oldest: i64) -> RecentStarts {
        RecentStarts {
            in_minute,
            oldest_in_minute_ms: Some(oldest),
            in_slice,
            oldest_in_slice_ms: Some(oldest),
        }
    }

    #[test]
    fn starts_are_spread_over_slices_at_the_rate() {
        let pace = Pace::of(&pacing(json!({"maxPerMinute": 600})), 0);
        assert_eq!(
            (pace.per_slice, pace.slice_ms, pace.per_minute),
            (3, 300, 600)
        );
        let none = RecentStarts::default();
        assert_eq!(
            pace.allowance(&none, 1000),
            Allowance {
                starts: 3,
                look_again_ms: 1300
            }
        );
        // The slice is full: look again when its oldest start is a slice old.
        assert_eq!(
            pace.allowance(&recent(3, 3, 900), 1000),
            Allowance {
                starts: 0,
                look_again_ms: 1201
            }
        );
        // A slow rate: one start per 60/7 s, never more than 7 a minute.
        let slow = Pace::of(&pacing(json!({"maxPerMinute": 7})), 0);
        assert_eq!((slow.per_slice, slow.slice_ms), (1, 8572));
        assert_eq!(slow.allowance(&recent(7, 0, 5_000), 10_000).starts, 0);
        assert_eq!(
            slow.allowance(&recent(7, 0, 5_000), 10_000).look_again_ms,
            65_001
        );
        // A high rate still keeps slices short and whole.
        let fast = Pace::of(&pacing(json!({"maxPerMinute": 100000})), 0);
        assert_eq!(fast.per_slice, 417);
        assert!(
            (fast.per_slice as f64 * 60_000.0 / fast.slice_ms as f64 - 100_000.0).abs() < 500.0
        );
    }

    #[test]
    fn the_ramp_steps_the_pace_with_successes() {
        let p = pacing(json!({"maxPerMinute": 600,
            "ramp": {"startPerMinute": 60, "factor": 2, "every": {"succeeded": 10}}}));
        assert_eq!(Pace::of(&p, 0).rate, 60.0);
        assert_eq!(Pace::of(&p, 0).slice_ms, 1000);
        assert_eq!(Pace::of(&p, 10).rate, 120.0);
        assert_eq!(Pace::of(&p, 35).rate, 480.0);
        assert_eq!(Pace::of(&p, 40).rate, 600.0);
    }

    #[test]
    fn the_gate_needs_the_share_then_the_soak() {
        let g =
            BatchGate::from_json(&json!({"minSuccessPercentage": 80, "soakSeconds": 10})).unwrap();
        let outcome = |succeeded| BatchOutcome {
            total: 10,
            succeeded,
            last_finished_ms: Some(1_000),
        };
        match gate(&g, 1, &outcome(7), 50_000) {
            GateVerdict::NotMet { reason } => assert!(
                reason.contains("7 of batch 1's 10 devices succeeded (70.0%)"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            gate(&g, 1, &outcome(8), 5_000),
            GateVerdict::Soaking { until_ms: 11_000 }
        );
        assert_eq!(gate(&g, 1, &outcome(8), 11_000), GateVerdict::Open);
    }

    #[test]
    fn a_closed_window_says_until_when() {
        let at: jiff::Timestamp = "2026-03-29T01:00:00Z".parse().unwrap();
        let (note, opens) = window_wait(WindowState::Closed { opens: Some(at) }).unwrap();
        assert_eq!(
            note,
            "waiting: outside its maintenance windows until 2026-03-29T01:00:00Z"
        );
        assert_eq!(opens, Some(at));
        assert_eq!(window_wait(WindowState::Open { closes: at }), None);
    }
}
