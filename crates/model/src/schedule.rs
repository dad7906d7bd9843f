//! Schedules of scheduled jobs: when each occurrence falls, computed from the start (never by
//! repeated addition, so a monthly schedule from Jan 31 gives Feb 28 or 29, then Mar 31), and
//! when a schedule ends. Times are UTC, as in the API.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::Invalid;
use crate::validate::Fields;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrence {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// No occurrence falls on a later day than this (UTC).
    Date(Date),
    /// This many occurrences in all.
    Occurrences(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub start: Timestamp,
    pub recurrence: Option<Recurrence>,
    pub end: Option<End>,
}

impl Schedule {
    pub fn from_json(value: &Value) -> Result<Schedule, Invalid> {
        let fields = Fields::nested(value, "schedule")?;
        let start_text = fields.required_string("start")?;
        let start: Timestamp = start_text.parse().map_err(|_| {
            Invalid::field(
                "schedule.start",
                "must be a date-time with a time zone, such as 2022-10-24T22:29:01Z",
            )
        })?;
        let recurrence = match fields.string("recurrence")? {
            None => None,
            Some("daily") => Some(Recurrence::Daily),
            Some("weekly") => Some(Recurrence::Weekly),
            Some("monthly") => Some(Recurrence::Monthly),
            Some(other) => {
                return Err(Invalid::field(
                    "schedule.recurrence",
                    format_args!("is \"{other}\"; it must be \"daily\", \"weekly\" or \"monthly\""),
                ));
            }
        };
        let end = match fields.object("end")? {
            None => None,
            Some(end) => {
                let end_fields = Fields::nested(end, "schedule.end")?;
                match end_fields.required_string("type")? {
                    "date" => {
                        let text = end_fields.required_string("date")?;
                        let date: Date =
                            text.get(..10).and_then(|d| d.parse().ok()).ok_or_else(|| {
                                Invalid::field(
                                    "schedule.end.date",
                                    "must be a date such as 2022-12-30",
                                )
                            })?;
                        if date < start.to_zoned(TimeZone::UTC).date() {
                            return Err(Invalid::field(
                                "schedule.end.date",
                                "is before the schedule's start",
                            ));
                        }
                        Some(End::Date(date))
                    }
                    "occurrences" => {
                        let n = end_fields.number("occurrences")?.ok_or_else(|| {
                            Invalid::field("schedule.end.occurrences", "is required")
                        })?;
                        if n.fract() != 0.0 || !(1.0..=999.0).contains(&n) {
                            return Err(Invalid::field(
                                "schedule.end.occurrences",
                                "must be a whole number from 1 to 999",
                            ));
                        }
                        Some(End::Occurrences(n as u32))
                    }
                    other => {
                        return Err(Invalid::field(
                            "schedule.end.type",
                            format_args!("is \"{other}\"; it must be \"date\" or \"occurrences\""),
                        ));
                    }
                }
            }
        };
        if recurrence.is_none() && end.is_some() {
            return Err(Invalid::field(
                "schedule.end",
                "only applies to a recurring schedule (set schedule.recurrence)",
            ));
        }
        Ok(Schedule {
            start,
            recurrence,
            end,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut out = json!({"start": crate::api_token::format_time(self.start)});
        if let Some(r) = self.recurrence {
            out["recurrence"] = json!(match r {
                Recurrence::Daily => "daily",
                Recurrence::Weekly => "weekly",
                Recurrence::Monthly => "monthly",
            });
        }
        match self.end {
            Some(End::Date(date)) => out["end"] = json!({"type": "date", "date": date.to_string()}),
            Some(End::Occurrences(n)) => {
                out["end"] = json!({"type": "occurrences", "occurrences": n})
            }
            None => {}
        }
        out
    }

    /// The time of occurrence `n` (0 is the start), ignoring the end; `None` past the calendar.
    pub fn nth(&self, n: u32) -> Option<Timestamp> {
        let start = self.start.to_zoned(TimeZone::UTC);
        let at = match self.recurrence {
            None if n == 0 => return Some(self.start),
            None => return None,
            Some(Recurrence::Daily) => start.checked_add((n as i64).days()).ok()?,
            Some(Recurrence::Weekly) => start.checked_add((n as i64 * 7).days()).ok()?,
            // jiff adds months by the calendar and clamps the day to the month's last, always
            // from the start: Jan 31 + 1 month = Feb 28/29, + 2 months = Mar 31.
            Some(Recurrence::Monthly) => start.checked_add((n as i64).months()).ok()?,
        };
        Some(at.timestamp())
    }

    /// Whether occurrence `n` is within the schedule's end.
    pub fn includes(&self, n: u32) -> bool {
        if self.recurrence.is_none() {
            return n == 0;
        }
        match self.end {
            None => true,
            Some(End::Occurrences(count)) => n < count,
            Some(End::Date(last)) => self
                .nth(n)
                .is_some_and(|t| t.to_zoned(TimeZone::UTC).date() <= last),
        }
    }

    /// The latest occurrence at or before `now`, from `from` on: what is due now. Older missed
    /// ones are skipped (after downtime a schedule runs once, not in a burst).
    pub fn due(&self, from: u32, now: Timestamp) -> Option<u32> {
        let mut due = None;
        let mut n = from;
        while self.includes(n) {
            match self.nth(n) {
                Some(t) if t <= now => due = Some(n),
                _ => break,
            }
            n = n.checked_add(1)?;
            if n > from + 100_000 {
                break;
            }
        }
        due
    }

    /// The first occurrence at or after `now`: where a new, re-enabled or rescheduled schedule
    /// starts, so that the past is not replayed.
    pub fn first_at_or_after(&self, now: Timestamp) -> u32 {
        let mut n = 0;
        while self.nth(n).is_some_and(|t| t < now) && n < 1_000_000 {
            n += 1;
        }
        n
    }

    /// Whether any occurrence from `from` on remains.
    pub fn has_more(&self, from: u32) -> bool {
        self.includes(from) && self.nth(from).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schedule(start: &str, recurrence: Option<Recurrence>, end: Option<End>) -> Schedule {
        Schedule {
            start: start.parse().unwrap(),
            recurrence,
            end,
        }
    }

    fn at(s: &Schedule, n: u32) -> String {
        s.nth(n).unwrap().to_string()
    }

    #[test]
    fn monthly_from_the_31st_clamps_each_month_from_the_start() {
        let s = schedule("2024-01-31T10:00:00Z", Some(Recurrence::Monthly), None);
        assert_eq!(at(&s, 1), "2024-02-29T10:00:00Z", "leap year");
        assert_eq!(at(&s, 2), "2024-03-31T10:00:00Z", "back to the 31st");
        assert_eq!(at(&s, 3), "2024-04-30T10:00:00Z");
        assert_eq!(at(&s, 13), "2025-02-28T10:00:00Z", "not a leap year");
        let s = schedule("2023-03-30T00:00:00Z", Some(Recurrence::Monthly), None);
        assert_eq!(at(&s, 11), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn daily_and_weekly_count_whole_days() {
        let s = schedule("2024-02-28T23:30:00Z", Some(Recurrence::Daily), None);
        assert_eq!(at(&s, 1), "2024-02-29T23:30:00Z");
        assert_eq!(at(&s, 2), "2024-03-01T23:30:00Z");
        let s = schedule("2024-12-26T08:00:00Z", Some(Recurrence::Weekly), None);
        assert_eq!(at(&s, 1), "2025-01-02T08:00:00Z");
    }

    #[test]
    fn ends_by_date_and_by_count() {
        let date = End::Date("2022-10-26".parse().unwrap());
        let s = schedule("2022-10-24T22:29:01Z", Some(Recurrence::Daily), Some(date));
        assert!(s.includes(2) && !s.includes(3));
        let s = schedule(
            "2022-10-24T22:29:01Z",
            Some(Recurrence::Daily),
            Some(End::Occurrences(2)),
        );
        assert!(s.includes(1) && !s.includes(2));
        let once = schedule("2022-10-24T22:29:01Z", None, None);
        assert!(once.includes(0) && !once.includes(1));
    }

    #[test]
    fn after_downtime_only_the_latest_missed_occurrence_is_due() {
        let s = schedule("2024-01-01T00:00:00Z", Some(Recurrence::Daily), None);
        let now: Timestamp = "2024-01-05T12:00:00Z".parse().unwrap();
        assert_eq!(s.due(0, now), Some(4));
        assert_eq!(s.due(5, now), None);
        let early: Timestamp = "2023-12-31T00:00:00Z".parse().unwrap();
        assert_eq!(s.due(0, early), None);
    }

    #[test]
    fn parsing_refuses_bad_schedules() {
        let bad = [
            (json!({"start": "tomorrow"}), "schedule.start"),
            (
                json!({"start": "2022-10-24T22:29:01Z", "recurrence": "yearly"}),
                "schedule.recurrence",
            ),
            (
                json!({"start": "2022-10-24T22:29:01Z", "recurrence": "daily", "end": {"type": "date", "date": "2022-10-01"}}),
                "schedule.end.date",
            ),
            (
                json!({"start": "2022-10-24T22:29:01Z", "recurrence": "daily", "end": {"type": "occurrences", "occurrences": 0}}),
                "schedule.end.occurrences",
            ),
            (
                json!({"start": "2022-10-24T22:29:01Z", "recurrence": "daily", "end": {"type": "occurrences", "occurrences": 1000}}),
                "schedule.end.occurrences",
            ),
            (
                json!({"start": "2022-10-24T22:29:01Z", "recurrence": "daily", "end": {"type": "never"}}),
                "schedule.end.type",
            ),
        ];
        for (value, field) in bad {
            assert_eq!(
                Schedule::from_json(&value).unwrap_err().field,
                field,
                "{value}"
            );
        }
        let ok = json!({"start": "2022-10-24T22:29:01Z", "recurrence": "daily", "end": {"type": "date", "date": "2022-12-30"}});
        let s = Schedule::from_json(&ok).unwrap();
        assert_eq!(
            s.to_json()["end"],
            json!({"type": "date", "date": "2022-12-30"})
        );
    }

    proptest! {
        /// Monthly occurrences keep the start's day where the month has it, else the month's
        /// last day; they never drift (occurrence n depends only on the start and n).
        #[test]
        fn monthly_occurrences_keep_the_day_or_clamp(
            year in 1990i16..2100, month in 1i8..=12, day in 1i8..=31, n in 0u32..400,
        ) {
            let last = Date::new(year, month, 1).unwrap().last_of_month().day();
            prop_assume!(day <= last);
            let start = Date::new(year, month, day).unwrap().at(6, 30, 0, 0)
                .to_zoned(TimeZone::UTC).unwrap().timestamp();
            let s = Schedule { start, recurrence: Some(Recurrence::Monthly), end: None };
            let t = s.nth(n).unwrap().to_zoned(TimeZone::UTC);
            let expected_month = (month as i32 - 1 + n as i32) % 12 + 1;
            prop_assert_eq!(t.month() as i32, expected_month);
            let month_last = t.date().last_of_month().day();
            prop_assert_eq!(t.day(), day.min(month_last));
            prop_assert_eq!((t.hour(), t.minute()), (6, 30));
        }

        /// Daily occurrences are exactly n days apart from the start, whatever the calendar.
        #[test]
        fn daily_occurrences_are_n_days_from_the_start(secs in 0i64..4_000_000_000, n in 0u32..2000) {
            let start = Timestamp::from_second(secs).unwrap();
            let s = Schedule { start, recurrence: Some(Recurrence::Daily), end: None };
            prop_assert_eq!(s.nth(n).unwrap().as_second() - secs, n as i64 * 86_400);
        }
    }
}
