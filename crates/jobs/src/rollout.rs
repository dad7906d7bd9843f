//! The engine's decisions on a job's rollout controls, as pure functions of (extension, counts,
//! now): how many devices may start now under `rollout` (and when to look again), whether the
//! next batch's `batchGate` is met, and what a job outside its `windows` says. The engine reads
//! the counts (`flotilla_store::job_pace`) and acts on the answers.

use flotilla_model::rollout::gate::BatchGate;
use flotilla_model::rollout::pacing::Pacing;
use flotilla_model::rollout::windows::WindowState;
use flotilla_store::{BatchOutcome, RecentStarts};

const MINUTE_MS: i64 = 60_000;
/// The least burst a pace allows: at 600 a minute, 3 devices may start together (and a pass
/// late by up to a slice catches up), rather than one per engine pass.
const MIN_SLICE_MS: f64 = 250.0;

/// The pace at a rate, as a generic cell rate algorithm: each start is due `interval_ms` after
/// the one before (on a schedule kept by the engine, so a late pass catches up rather than
/// drifting), up to `burst_ms` early; and never more than `per_minute` starts in any minute,
/// counted in the database over every server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub rate: f64,
    pub interval_ms: f64,
    pub burst_ms: f64,
    pub per_minute: u64,
}

impl Pace {
    /// The pace of `pacing` once `succeeded` devices of the job succeeded (its ramp's step).
    pub fn of(pacing: &Pacing, succeeded: u64) -> Pace {
        let rate = pacing.rate(succeeded).max(1.0);
        let interval_ms = MINUTE_MS as f64 / rate;
        // A whole number of intervals, at least the minimum slice.
        let burst_ms = (MIN_SLICE_MS / interval_ms).ceil().max(1.0) * interval_ms;
        Pace {
            rate,
            interval_ms,
            burst_ms,
            per_minute: (rate.floor() as u64).max(1),
        }
    }

    /// Where the minute the starts are counted over begins.
    pub fn minute_since(&self, now_ms: i64) -> i64 {
        now_ms - MINUTE_MS
    }

    /// How many devices may start now: `due_ms` is when the next start is due on the job's
    /// schedule (`None`: none yet), `recent` the job's starts in the last minute.
    pub fn allowance(&self, due_ms: Option<f64>, recent: &RecentStarts, now_ms: i64) -> Allowance {
        let now = now_ms as f64;
        // An idle schedule earns no credit beyond the burst.
        let due = due_ms.unwrap_or(now).max(now);
        let on_schedule = if due <= now + self.burst_ms - self.interval_ms {
            ((now + self.burst_ms - self.interval_ms - due) / self.interval_ms).floor() as u64 + 1
        } else {
            0
        };
        let in_minute = self.per_minute.saturating_sub(recent.in_minute);
        let starts = on_schedule.min(in_minute);
        let look_again_ms = if starts > 0 {
            self.next_pass_ms(self.due_after(due_ms, starts as usize, now_ms))
        } else if in_minute == 0 {
            recent.oldest_in_minute_ms.unwrap_or(now_ms) + MINUTE_MS + 1
        } else {
            self.next_pass_ms(due)
        };
        Allowance {
            starts: starts as usize,
            look_again_ms: look_again_ms.max(now_ms + 1),
        }
    }

    /// When a pass should look again, the next start being due at `due`: once half a burst
    /// is due (one start at slow rates), so that a fast pace costs a pass per few starts, not
    /// one per start.
    pub fn next_pass_ms(&self, due: f64) -> i64 {
        (due - self.burst_ms + self.interval_ms.max(self.burst_ms / 2.0)).ceil() as i64
    }

    /// When the next start is due once `started` devices started now.
    pub fn due_after(&self, due_ms: Option<f64>, started: usize, now_ms: i64) -> f64 {
        let now = now_ms as f64;
        let due = due_ms.unwrap_or(now).max(now);
        due + started as f64 * self.interval_ms
    }
}

/// How many devices may start now, and when the engine should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub starts: usize,
    pub look_again_ms: i64,
}

/// The estimate of a job's duration (`unpaced`, in seconds) under its pace: no shorter than
/// its `devices` take to start at the `rollout` rate (the ramp stepping up as they succeed,
/// taken as they start) plus one device's work (`per_device`), and each batch gate's soak
/// between its `batches` on top.
pub fn paced_seconds(
    unpaced: f64,
    pacing: Option<&Pacing>,
    soak_seconds: u64,
    devices: u64,
    batches: u64,
    per_device: f64,
) -> f64 {
    let mut seconds = unpaced;
    if let Some(pacing) = pacing
        && devices > 0
    {
        let first = Pace::of(pacing, 0);
        let mut started = ((first.burst_ms / first.interval_ms).round() as u64).min(devices);
        let mut starting = 0.0;
        while started < devices {
            let pace = Pace::of(pacing, started);
            let step_end = match pacing.ramp {
                Some(ramp) if pace.rate < pacing.max_per_minute as f64 => {
                    (started / ramp.every_succeeded + 1) * ramp.every_succeeded
                }
                _ => devices,
            }
            .min(devices);
            starting += (step_end - started) as f64 * pace.interval_ms / 1000.0;
            started = step_end;
        }
        seconds = seconds.max(starting + per_device);
    }
    seconds += soak_seconds as f64 * batches.saturating_sub(1) as f64;
    (seconds * 100.0).round() / 100.0
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

/// How the reason of a job waiting for a window begins (the engine clears such a reason, and
/// only such a one, when the job goes on).
pub const WAITING: &str = "waiting:";

/// What a job outside its maintenance windows shows as its reason, and when it may start
/// devices again; `None` inside a window.
pub fn window_wait(state: WindowState) -> Option<(String, Option<jiff::Timestamp>)> {
    match state {
        WindowState::Open { .. } => None,
        WindowState::Closed { opens: Some(at) } => Some((
            format!("{WAITING} outside its maintenance windows until {at}"),
            Some(at),
        )),
        WindowState::Closed { opens: None } => {
            Some((format!("{WAITING} no maintenance window opens again"), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pacing(body: serde_json::Value) -> Pacing {
        Pacing::from_json(&body).unwrap()
    }

    fn recent(in_minute: u64, oldest: i64) -> RecentStarts {
        RecentStarts {
            in_minute,
            oldest_in_minute_ms: Some(oldest),
        }
    }

    #[test]
    fn starts_follow_a_schedule_at_the_rate() {
        let pace = Pace::of(&pacing(json!({"maxPerMinute": 600})), 0);
        assert_eq!(
            (pace.interval_ms, pace.burst_ms, pace.per_minute),
            (100.0, 300.0, 600)
        );
        let none = RecentStarts::default();
        // Idle: a burst of 3, then one every 100 ms.
        let first = pace.allowance(None, &none, 1000);
        assert_eq!(
            first,
            Allowance {
                starts: 3,
                look_again_ms: 1150
            }
        );
        let due = pace.due_after(None, 3, 1000);
        assert_eq!(due, 1300.0);
        assert_eq!(pace.allowance(Some(due), &recent(3, 1000), 1050).starts, 0);
        assert_eq!(
            pace.allowance(Some(due), &recent(3, 1000), 1050)
                .look_again_ms,
            1150
        );
        assert_eq!(pace.allowance(Some(due), &recent(3, 1000), 1100).starts, 1);
        // A pass late by 150 ms catches up, without drifting: 2 now, the next due at 1500.
        let late = pace.allowance(Some(due), &recent(3, 1000), 1250);
        assert_eq!(late.starts, 2);
        assert_eq!(pace.due_after(Some(due), 2, 1250), 1500.0);
        // After a long idle time, no more than the burst.
        assert_eq!(pace.allowance(Some(due), &recent(0, 0), 90_000).starts, 3);
        // Never more than the rate in a minute, whatever the schedule says.
        let full = pace.allowance(Some(due), &recent(600, 5_000), 10_000);
        assert_eq!(
            full,
            Allowance {
                starts: 0,
                look_again_ms: 65_001
            }
        );
        // A slow rate: one start per 60/7 s.
        let slow = Pace::of(&pacing(json!({"maxPerMinute": 7})), 0);
        assert_eq!(slow.allowance(None, &none, 0).starts, 1);
        let due = slow.due_after(None, 1, 0);
        let wait = slow.allowance(Some(due), &recent(1, 0), 1);
        assert_eq!(
            wait,
            Allowance {
                starts: 0,
                look_again_ms: 8572
            }
        );
    }

    #[test]
    fn the_ramp_steps_the_pace_with_successes() {
        let p = pacing(json!({"maxPerMinute": 600,
            "ramp": {"startPerMinute": 60, "factor": 2, "every": {"succeeded": 10}}}));
        assert_eq!(Pace::of(&p, 0).rate, 60.0);
        assert_eq!(Pace::of(&p, 0).interval_ms, 1000.0);
        assert_eq!(Pace::of(&p, 10).rate, 120.0);
        assert_eq!(Pace::of(&p, 35).rate, 480.0);
        assert_eq!(Pace::of(&p, 40).rate, 600.0);
    }

    #[test]
    fn the_estimate_counts_the_pace_the_ramp_and_the_soaks() {
        let flat = pacing(json!({"maxPerMinute": 600}));
        // 100 devices: 3 at once, then 97 at 100 ms; the work of the last one after.
        assert_eq!(paced_seconds(1.0, Some(&flat), 0, 100, 1, 0.5), 10.2);
        // An unpaced estimate that is longer stands.
        assert_eq!(paced_seconds(60.0, Some(&flat), 0, 100, 1, 0.5), 60.0);
        // Ramp: 120 a minute for the first 6 (1 at once, 5 at 0.5 s), 240 for the next 6
        // (1.5 s), 480 for the last 6 (0.75 s).
        let ramp = pacing(json!({"maxPerMinute": 960,
            "ramp": {"startPerMinute": 120, "factor": 2, "every": {"succeeded": 6}}}));
        assert_eq!(paced_seconds(0.0, Some(&ramp), 0, 18, 1, 0.0), 4.75);
        // Soaks between 3 batches, with or without a pace.
        assert_eq!(paced_seconds(1.0, None, 10, 30, 3, 0.5), 21.0);
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
