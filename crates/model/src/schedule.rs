//! Schedules of scheduled jobs: when each occurrence falls, computed from the start (never by
//! repeated addition, so a monthly schedule from Jan 31 gives Feb 28 or 29, then Mar 31), and
//! when a schedule ends. Times are UTC, as in the API, or (the extension `schedule.timeZone`)
//! local times of an IANA time zone, so that a daily 02:30 stays 02:30 across daylight-saving
//! changes. Which occurrence is due is computed, not counted up to: a daily schedule from year
//! 0000 is millions of occurrences behind.

use jiff::civil::{Date, DateTime, Time};
use jiff::fmt::temporal::Pieces;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::validate::Fields;

/// How late a schedule's occurrence may be when the schedule is created, enabled or changed and
/// still run: a client that sends its own "now" as the start reaches the server a moment later.
pub const LATE_START_GRACE: SignedDuration = SignedDuration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// As a civil time in the schedule's zone (UTC without one): the API's range ends at
    /// 9999-12-31T23:59:59Z, after the last instant a `Timestamp` holds.
    pub start: DateTime,
    pub recurrence: Option<Recurrence>,
    pub end: Option<End>,
    /// Extension `timeZone`: the IANA name as sent, and its zone; recurrence (and an end date)
    /// is computed in its local time. `None`: UTC.
    pub time_zone: Option<(String, TimeZone)>,
}

/// A schedule as the API shows it, and as scheduled jobs store it (this type is also its OpenAPI
/// schema): at `start`, then daily, weekly or monthly until `end`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobSchedule {
    /// The first occurrence, as the client wrote it.
    #[schema(format = DateTime)]
    pub start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub recurrence: Option<Recurrence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end: Option<JobScheduleEnd>,
    /// Extension: the IANA time zone recurrence is computed in (daylight-saving changes
    /// included: a daily 02:30 stays 02:30 local); UTC when left out.
    #[serde(rename = "timeZone", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub time_zone: Option<String>,
}

/// When a recurring schedule ends: after a date (UTC), or after a number of occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobScheduleEnd {
    Date {
        #[schema(format = Date)]
        date: String,
    },
    Occurrences {
        occurrences: u32,
    },
}

impl Schedule {
    pub fn from_json(value: &Value) -> Result<Schedule, Invalid> {
        let fields = Fields::nested(value, "schedule")?;
        let time_zone = match fields.string("timeZone")? {
            None => None,
            Some(name) => Some((
                name.to_string(),
                crate::rollout::windows::time_zone(name, "schedule.timeZone")?,
            )),
        };
        let start = parse_start(fields.required_string("start")?).ok_or_else(|| {
            Invalid::field(
                "schedule.start",
                "must be a date-time with a time zone from year 0000 to 9999, such as 2022-10-24T22:29:01Z",
            )
        })?;
        // In a time zone, the start's local time there (a start past the last instant a
        // `Timestamp` holds has none, and is refused).
        let start = match &time_zone {
            None => start,
            Some((_, zone)) => start
                .to_zoned(TimeZone::UTC)
                .map(|at| at.with_time_zone(zone.clone()).datetime())
                .map_err(|_| {
                    Invalid::field(
                        "schedule.start",
                        "is beyond the last time a schedule in a time zone can start",
                    )
                })?,
        };
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
                        let date = parse_end_date(end_fields.required_string("date")?).ok_or_else(
                            || {
                                Invalid::field(
                                    "schedule.end.date",
                                    "must be a date such as 2022-12-30",
                                )
                            },
                        )?;
                        if date < start.date() {
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
            time_zone,
        })
    }

    /// The schedule as the API shows it; the caller echoes the start as the client wrote it.
    pub fn to_body(&self) -> JobSchedule {
        JobSchedule {
            start: self.start.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            recurrence: self.recurrence,
            end: self.end.map(|end| match end {
                End::Date(date) => JobScheduleEnd::Date {
                    date: date.to_string(),
                },
                End::Occurrences(occurrences) => JobScheduleEnd::Occurrences { occurrences },
            }),
            time_zone: self.time_zone.as_ref().map(|(name, _)| name.clone()),
        }
    }

    /// The time of occurrence `n` (0 is the start), ignoring the end; `None` past the calendar
    /// (or past the last instant a `Timestamp` holds).
    pub fn nth(&self, n: u32) -> Option<Timestamp> {
        let at = self.civil_nth(n)?.to_zoned(self.zone()).ok()?;
        Some(at.timestamp())
    }

    fn civil_nth(&self, n: u32) -> Option<DateTime> {
        let n = i64::from(n);
        match self.recurrence {
            None if n == 0 => Some(self.start),
            None => None,
            Some(Recurrence::Daily) => self.start.checked_add(n.days()).ok(),
            Some(Recurrence::Weekly) => self.start.checked_add((n * 7).days()).ok(),
            // jiff adds months by the calendar and clamps the day to the month's last, always
            // from the start: Jan 31 + 1 month = Feb 28/29, + 2 months = Mar 31.
            Some(Recurrence::Monthly) => self.start.checked_add(n.months()).ok(),
        }
    }

    /// The first occurrence at or after `t`, ignoring the end: arithmetic on the time elapsed
    /// since the start, whatever the number of occurrences in between.
    fn index_at_or_after(&self, t: DateTime) -> u32 {
        if self.start >= t {
            return 0;
        }
        let index = match self.recurrence {
            None => 1,
            Some(Recurrence::Daily) => periods_between(self.start, t, 1),
            Some(Recurrence::Weekly) => periods_between(self.start, t, 7),
            Some(Recurrence::Monthly) => {
                // Occurrence `months` falls in t's month, before or at/after t.
                let months = (i64::from(t.year()) - i64::from(self.start.year())) * 12
                    + i64::from(t.month() - self.start.month());
                let months = u32::try_from(months).unwrap_or(u32::MAX);
                if self.civil_nth(months).is_some_and(|at| at >= t) {
                    i64::from(months)
                } else {
                    i64::from(months) + 1
                }
            }
        };
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// The last occurrence the end allows; `None` for a schedule without an end.
    fn last(&self) -> Option<u32> {
        if self.recurrence.is_none() {
            return Some(0);
        }
        match self.end? {
            End::Occurrences(count) => Some(count - 1),
            // The one before the first on a later day (the end date is never before the start's
            // day, so occurrence 0 is always in). The calendar ends after 9999-12-31 anyway.
            End::Date(last) => {
                let next_day = last.tomorrow().ok()?.to_datetime(Time::midnight());
                Some(self.index_at_or_after(next_day).saturating_sub(1))
            }
        }
    }

    /// Whether occurrence `n` is within the schedule's end.
    pub fn includes(&self, n: u32) -> bool {
        self.last().is_none_or(|last| n <= last)
    }

    /// The latest occurrence at or before `now`, from `from` on: what is due now. Older missed
    /// ones are skipped (after downtime a schedule runs once, not in a burst).
    pub fn due(&self, from: u32, now: Timestamp) -> Option<u32> {
        let next = self.index_at_or_after(self.local(now));
        // The latest whose instant has come: in a time zone, a local time in a daylight-saving
        // gap happens later than its civil order says (02:30 on the night clocks skip 02:00 to
        // 03:00 is 03:30), so the candidates around `next` are compared as instants.
        let latest = [
            Some(next.saturating_add(1)),
            Some(next),
            next.checked_sub(1),
        ]
        .into_iter()
        .flatten()
        .find(|&n| self.nth(n).is_some_and(|at| at <= now))?;
        let latest = self.last().map_or(latest, |last| latest.min(last));
        (latest >= from && self.civil_nth(latest).is_some()).then_some(latest)
    }

    /// The first occurrence at or after `now`.
    fn first_at_or_after(&self, now: Timestamp) -> u32 {
        self.index_at_or_after(self.local(now))
    }

    /// Where a new, re-enabled or rescheduled schedule starts: the first occurrence at most
    /// [`LATE_START_GRACE`] old, so that the past is not replayed. A schedule with no such
    /// occurrence would never run, and is refused.
    pub fn first_upcoming(&self, now: Timestamp) -> Result<u32, Invalid> {
        let first = self.first_at_or_after(now - LATE_START_GRACE);
        if self.has_more(first) {
            return Ok(first);
        }
        let now = now.strftime("%Y-%m-%dT%H:%M:%SZ");
        Err(match self.recurrence {
            None => Invalid::field(
                "schedule.start",
                format_args!(
                    "is in the past (it is now {now}); a one-time schedule must start now or later"
                ),
            ),
            Some(_) => Invalid::field(
                "schedule.end",
                format_args!("leaves no occurrence from now ({now}) on"),
            ),
        })
    }

    /// Whether any occurrence from `from` on remains.
    pub fn has_more(&self, from: u32) -> bool {
        self.includes(from) && self.civil_nth(from).is_some()
    }
}

impl Schedule {
    fn zone(&self) -> TimeZone {
        self.time_zone
            .as_ref()
            .map_or(TimeZone::UTC, |(_, zone)| zone.clone())
    }

    /// `t` as a civil time in the schedule's zone.
    fn local(&self, t: Timestamp) -> DateTime {
        t.to_zoned(self.zone()).datetime()
    }
}

/// The number of whole periods of `days` days from `start` to `t`, rounded up (`start` < `t`).
fn periods_between(start: DateTime, t: DateTime, days: i128) -> i64 {
    let period = days * SignedDuration::from_hours(24).as_nanos();
    let elapsed = start.duration_until(t).as_nanos();
    i64::try_from((elapsed + period - 1) / period).unwrap_or(i64::MAX)
}

/// An RFC 3339 date-time with an offset, in UTC, years 0000 to 9999. Parsed as a civil time
/// and an offset, since 9999-12-31T23:59:59Z is past the last `Timestamp`.
fn parse_start(text: &str) -> Option<DateTime> {
    let pieces = Pieces::parse(text).ok()?;
    let offset = pieces.to_numeric_offset()?;
    let local = pieces.date().to_datetime(pieces.time()?);
    let utc = local
        .checked_sub(SignedDuration::from_secs(i64::from(offset.seconds())))
        .ok()?;
    (utc.year() >= 0).then_some(utc)
}

/// Exactly `YYYY-MM-DD`: nothing after the date.
fn parse_end_date(text: &str) -> Option<Date> {
    if text.len() != 10 {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn utc(t: Timestamp) -> DateTime {
        t.to_zoned(TimeZone::UTC).datetime()
    }

    fn schedule(start: &str, recurrence: Option<Recurrence>, end: Option<End>) -> Schedule {
        Schedule {
            start: parse_start(start).unwrap(),
            recurrence,
            end,
            time_zone: None,
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
            serde_json::to_value(s.to_body()).unwrap()["end"],
            json!({"type": "date", "date": "2022-12-30"})
        );
    }

    #[test]
    fn starts_span_years_0000_to_9999_in_utc() {
        let last = parse_start("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(
            last,
            DateTime::MAX.with().subsec_nanosecond(0).build().unwrap()
        );
        assert_eq!(
            parse_start("0000-01-01T01:00:00+01:00").unwrap(),
            Date::new(0, 1, 1).unwrap().to_datetime(Time::midnight())
        );
        for bad in [
            "-005000-01-01T00:00:00Z",
            "-000001-12-31T23:00:00Z",
            "0000-01-01T00:30:00+01:00",
            "+010000-01-01T00:00:00Z",
            "9999-12-31T23:00:00-01:00",
            "2030-01-10T00:00:00",
            "2030-01-10",
        ] {
            assert_eq!(parse_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn end_dates_are_exactly_a_date() {
        assert!(parse_end_date("2022-12-30").is_some());
        for bad in [
            "2022-12-30garbage",
            "2022-12-30T00:00:00Z",
            "2022-12-3",
            "+02022-12-30",
        ] {
            assert_eq!(parse_end_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn from_the_far_past_the_due_occurrence_is_computed() {
        let now: Timestamp = "2030-06-15T12:00:00Z".parse().unwrap();
        let daily = schedule("0000-01-01T00:00:00Z", Some(Recurrence::Daily), None);
        let due = daily.due(0, now).unwrap();
        assert_eq!(at(&daily, due), "2030-06-15T00:00:00Z");
        assert_eq!(daily.first_at_or_after(now), due + 1);
        let weekly = schedule("0001-01-01T12:00:00Z", Some(Recurrence::Weekly), None);
        let due = weekly.due(0, now).unwrap();
        assert!(weekly.nth(due).unwrap() <= now && weekly.nth(due + 1).unwrap() > now);
        let monthly = schedule("0000-01-31T12:00:00Z", Some(Recurrence::Monthly), None);
        assert_eq!(
            at(&monthly, monthly.due(0, now).unwrap()),
            "2030-05-31T12:00:00Z"
        );
        assert_eq!(
            at(&monthly, monthly.first_at_or_after(now)),
            "2030-06-30T12:00:00Z"
        );
        // An occurrence exactly at `now` is due, and is the first at or after it.
        let exact: Timestamp = "2030-06-15T00:00:00Z".parse().unwrap();
        assert_eq!(daily.due(0, exact), Some(daily.first_at_or_after(exact)));
    }

    #[test]
    fn a_schedule_with_nothing_left_to_run_is_refused() {
        let now: Timestamp = "2030-01-10T00:00:00Z".parse().unwrap();
        let once = schedule("2030-01-09T00:00:00Z", None, None);
        assert_eq!(
            once.first_upcoming(now).unwrap_err().field,
            "schedule.start"
        );
        // A client's "now" that arrives a moment late still runs.
        let just_now = schedule("2030-01-09T23:59:30Z", None, None);
        assert_eq!(just_now.first_upcoming(now), Ok(0));
        let ended = schedule(
            "2030-01-01T00:00:00Z",
            Some(Recurrence::Daily),
            Some(End::Date("2030-01-05".parse().unwrap())),
        );
        assert_eq!(ended.first_upcoming(now).unwrap_err().field, "schedule.end");
        let counted = schedule(
            "2030-01-01T00:00:00Z",
            Some(Recurrence::Daily),
            Some(End::Occurrences(20)),
        );
        assert_eq!(counted.first_upcoming(now), Ok(9));
        let last = schedule("9999-12-31T23:59:59Z", None, None);
        assert_eq!(last.first_upcoming(now), Ok(0));
    }

    proptest! {
        /// The computed first occurrence at or after a time is the one counting would find.
        #[test]
        fn the_first_occurrence_after_a_time_is_the_counted_one(
            start in 0i64..2_000_000_000, offset in 0i64..400_000_000, kind in 0u8..3,
            end_after in proptest::option::of(0u32..40),
        ) {
            let recurrence = [Recurrence::Daily, Recurrence::Weekly, Recurrence::Monthly][kind as usize];
            let start = utc(Timestamp::from_second(start).unwrap());
            let end = end_after.map(|n| End::Date(start.date().checked_add((n as i64).days()).unwrap()));
            let s = Schedule { start, recurrence: Some(recurrence), end, time_zone: None };
            let t = start.checked_add(offset.seconds()).unwrap();
            let counted = (0..).find(|&n| s.civil_nth(n).unwrap() >= t).unwrap();
            prop_assert_eq!(s.index_at_or_after(t), counted);
            let counted_last = end.map(|_| (0..).take_while(|&n| {
                matches!(s.end, Some(End::Date(d)) if s.civil_nth(n).unwrap().date() <= d)
            }).last().unwrap());
            prop_assert_eq!(s.last(), counted_last);
        }
        /// Monthly occurrences keep the start's day where the month has it, else the month's
        /// last day; they never drift (occurrence n depends only on the start and n).
        #[test]
        fn monthly_occurrences_keep_the_day_or_clamp(
            year in 1990i16..2100, month in 1i8..=12, day in 1i8..=31, n in 0u32..400,
        ) {
            let last = Date::new(year, month, 1).unwrap().last_of_month().day();
            prop_assume!(day <= last);
            let start = Date::new(year, month, day).unwrap().at(6, 30, 0, 0);
            let s = Schedule { start, recurrence: Some(Recurrence::Monthly), end: None, time_zone: None };
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
            let s = Schedule { start: utc(start), recurrence: Some(Recurrence::Daily), end: None, time_zone: None };
            prop_assert_eq!(s.nth(n).unwrap().as_second() - secs, n as i64 * 86_400);
        }
    }

    #[test]
    fn a_daily_schedule_in_a_time_zone_keeps_its_local_time_across_daylight_saving() {
        let s = Schedule::from_json(&json!({"start": "2026-03-27T02:30:00+01:00",
            "recurrence": "daily", "timeZone": "Europe/Paris"}))
        .unwrap();
        // 02:30 in Paris: 01:30Z in winter; on 2026-03-29 02:30 does not exist (clocks skip
        // 02:00-03:00) and it runs at 03:30 local (01:30Z); then 02:30 CEST is 00:30Z. In
        // autumn 02:30 happens twice (2026-10-25): the first, 00:30Z.
        assert_eq!(at(&s, 0), "2026-03-27T01:30:00Z");
        assert_eq!(at(&s, 1), "2026-03-28T01:30:00Z");
        assert_eq!(at(&s, 2), "2026-03-29T01:30:00Z");
        assert_eq!(at(&s, 3), "2026-03-30T00:30:00Z");
        assert_eq!(at(&s, 212), "2026-10-25T00:30:00Z");
        assert_eq!(at(&s, 213), "2026-10-26T01:30:00Z");
        // Due by the zone's clock.
        assert_eq!(s.due(0, "2026-03-30T00:29:00Z".parse().unwrap()), Some(2));
        assert_eq!(s.due(0, "2026-03-30T00:30:00Z".parse().unwrap()), Some(3));
        assert_eq!(
            serde_json::to_value(s.to_body()).unwrap()["timeZone"],
            "Europe/Paris"
        );
        // Without a zone, UTC: the same start every day at 01:30Z.
        let utc = Schedule::from_json(&json!({"start": "2026-03-27T02:30:00+01:00",
            "recurrence": "daily"}))
        .unwrap();
        assert_eq!(at(&utc, 3), "2026-03-30T01:30:00Z");
        assert!(
            serde_json::to_value(utc.to_body())
                .unwrap()
                .get("timeZone")
                .is_none()
        );
        assert_eq!(
            Schedule::from_json(&json!({"start": "2026-03-27T02:30:00Z", "timeZone": "Paris"}))
                .unwrap_err()
                .field,
            "schedule.timeZone"
        );
    }
}
