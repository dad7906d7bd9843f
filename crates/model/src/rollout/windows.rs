//! `windows` and `timeZone`: maintenance windows, the only times a job starts device operations
//! (operations already started finish). Each window opens on the listed days at a local time of
//! `timeZone` (an IANA name; UTC when left out) and lasts `durationMinutes`, across midnight if
//! need be. Local times follow daylight saving: a window at 02:30 on the night clocks skip from
//! 02:00 to 03:00 opens at 03:30, moved forward by the gap (RFC 5545's rule, jiff's
//! "compatible"); on the night 02:30 happens twice it opens at the first.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;
use crate::rollout::pacing::{refuse_unknown, whole_number};
use crate::validate::Fields;

/// A week: a window longer than that is always open.
pub const MAX_DURATION_MINUTES: u64 = 7 * 24 * 60;
/// Enough for any weekly plan.
pub const MAX_WINDOWS: usize = 50;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start: Time,
    pub duration_minutes: u64,
}

/// A job's windows in their time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindows {
    pub windows: Vec<Window>,
    pub zone: TimeZone,
    /// The IANA name as sent (`None`: UTC, not sent).
    pub zone_name: Option<String>,
}

/// Whether devices may start now, and until or from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    Open { closes: Timestamp },
    Closed { opens: Option<Timestamp> },
}

/// One window as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobWindow {
    /// The days it opens on: `mon` to `sun`.
    pub days: Vec<String>,
    /// When it opens, `HH:MM` in the job's `timeZone`.
    pub start: String,
    /// How long it stays open (1 to 10,080).
    pub duration_minutes: u64,
}

/// A time zone by its IANA name (`Europe/Paris`), or a 400 naming `field`.
pub fn time_zone(name: &str, field: &str) -> Result<TimeZone, Invalid> {
    TimeZone::get(name).map_err(|_| {
        Invalid::field(
            field,
            format_args!(
                "is \"{name}\", which is not an IANA time zone name (such as Europe/Paris)"
            ),
        )
    })
}

impl MaintenanceWindows {
    /// `windows` and `timeZone` of a job body; `None` when neither is set.
    pub fn from_fields(fields: &Fields) -> Result<Option<MaintenanceWindows>, Invalid> {
        let zone_name = fields.string("timeZone")?;
        let Some(list) = fields.array("windows")? else {
            if zone_name.is_some() {
                return Err(Invalid::field(
                    "timeZone",
                    "only applies to windows (set windows too)",
                ));
            }
            return Ok(None);
        };
        let zone = match zone_name {
            Some(name) => time_zone(name, "timeZone")?,
            None => TimeZone::UTC,
        };
        if list.is_empty() || list.len() > MAX_WINDOWS {
            return Err(Invalid::field(
                "windows",
                format_args!("must hold from 1 to {MAX_WINDOWS} windows"),
            ));
        }
        let windows = list
            .iter()
            .enumerate()
            .map(|(i, w)| parse_window(w, &format!("windows[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(MaintenanceWindows {
            windows,
            zone,
            zone_name: zone_name.map(str::to_string),
        }))
    }

    pub fn body(&self) -> Vec<JobWindow> {
        self.windows
            .iter()
            .map(|w| JobWindow {
                days: w
                    .days
                    .iter()
                    .map(|d| {
                        DAYS.iter()
                            .find(|(_, day)| day == d)
                            .map_or("", |(name, _)| name)
                            .to_string()
                    })
                    .collect(),
                start: w.start.strftime("%H:%M").to_string(),
                duration_minutes: w.duration_minutes,
            })
            .collect()
    }

    /// Whether a window is open at `now`: until when, or when the next one opens (within a
    /// week; `None` past the calendar).
    pub fn state(&self, now: Timestamp) -> WindowState {
        let today = now.to_zoned(self.zone.clone()).date();
        let mut closes: Option<Timestamp> = None;
        let mut opens: Option<Timestamp> = None;
        // A window that opened up to a week ago may still be open; the next may open a week on.
        for offset in -8i64..=8 {
            let Ok(date) = today.checked_add(offset.days()) else {
                continue;
            };
            for window in &self.windows {
                if !window.days.contains(&date.weekday()) {
                    continue;
                }
                let Ok(open) = date.to_datetime(window.start).to_zoned(self.zone.clone()) else {
                    continue;
                };
                let open = open.timestamp();
                let minutes = SignedDuration::from_mins(window.duration_minutes as i64);
                let Ok(close) = open.checked_add(minutes) else {
                    continue;
                };
                if open <= now && now < close {
                    closes = Some(closes.map_or(close, |c| c.max(close)));
                } else if open > now {
                    opens = Some(opens.map_or(open, |o| o.min(open)));
                }
            }
        }
        match closes {
            Some(closes) => WindowState::Open { closes },
            None => WindowState::Closed { opens },
        }
    }
}

fn parse_window(value: &Value, at: &str) -> Result<Window, Invalid> {
    let fields = Fields::nested(value, at)?;
    refuse_unknown(&fields, &["days", "start", "durationMinutes"])?;
    let names = fields
        .string_array("days")?
        .ok_or_else(|| Invalid::field(&format!("{at}.days"), "is required"))?;
    if names.is_empty() {
        return Err(Invalid::field(
            &format!("{at}.days"),
            "must name at least one day",
        ));
    }
    let mut days = Vec::new();
    for name in &names {
        let day = DAYS
            .iter()
            .find(|(text, _)| text == name)
            .map(|(_, day)| *day)
            .ok_or_else(|| {
                Invalid::field(
                    &format!("{at}.days"),
                    format_args!("holds \"{name}\"; days are mon, tue, wed, thu, fri, sat, sun"),
                )
            })?;
        if !days.contains(&day) {
            days.push(day);
        }
    }
    let start_text = fields.required_string("start")?;
    let start = parse_hh_mm(start_text).ok_or_else(|| {
        Invalid::field(
            &format!("{at}.start"),
            "must be a time of day as HH:MM, such as 02:30",
        )
    })?;
    let duration = fields
        .number("durationMinutes")?
        .ok_or_else(|| Invalid::field(&format!("{at}.durationMinutes"), "is required"))?;
    let duration_minutes = whole_number(
        duration,
        &format!("{at}.durationMinutes"),
        1..=MAX_DURATION_MINUTES,
    )?;
    Ok(Window {
        days,
        start,
        duration_minutes,
    })
}

/// Exactly `HH:MM`, 00:00 to 23:59.
fn parse_hh_mm(text: &str) -> Option<Time> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    Time::new(hours, minutes, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn windows(body: Value) -> Result<Option<MaintenanceWindows>, Invalid> {
        MaintenanceWindows::from_fields(&Fields::of(&body).unwrap())
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_window_across_midnight_is_open_until_it_closes() {
        let w = windows(
            json!({"windows": [{"days": ["fri"], "start": "22:00", "durationMinutes": 240}]}),
        )
        .unwrap()
        .unwrap();
        // 2026-12-04 is a Friday.
        assert_eq!(
            w.state(ts("2026-12-05T01:00:00Z")),
            WindowState::Open {
                closes: ts("2026-12-05T02:00:00Z")
            }
        );
        assert_eq!(
            w.state(ts("2026-12-05T02:00:00Z")),
            WindowState::Closed {
                opens: Some(ts("2026-12-11T22:00:00Z"))
            }
        );
        assert_eq!(
            serde_json::to_value(w.body()).unwrap(),
            json!([{"days": ["fri"], "start": "22:00", "durationMinutes": 240}])
        );
    }

    #[test]
    fn windows_follow_daylight_saving_in_their_time_zone() {
        let w = windows(json!({"timeZone": "Europe/Paris",
            "windows": [{"days": ["sun"], "start": "02:30", "durationMinutes": 60}]}))
        .unwrap()
        .unwrap();
        // Winter: 02:30 in Paris is 01:30Z. On 2026-03-29 clocks skip 02:00-03:00, so the window
        // opens an hour later, at 03:30 local (01:30Z); in summer 02:30 is 00:30Z.
        assert_eq!(
            w.state(ts("2026-03-22T01:45:00Z")),
            WindowState::Open {
                closes: ts("2026-03-22T02:30:00Z")
            }
        );
        assert_eq!(
            w.state(ts("2026-03-28T12:00:00Z")),
            WindowState::Closed {
                opens: Some(ts("2026-03-29T01:30:00Z"))
            }
        );
        assert_eq!(
            w.state(ts("2026-04-01T12:00:00Z")),
            WindowState::Closed {
                opens: Some(ts("2026-04-05T00:30:00Z"))
            }
        );
    }

    #[test]
    fn each_field_is_checked_by_name() {
        let field = |v: Value| windows(v).unwrap_err().field;
        let one = |w: Value| field(json!({"windows": [w]}));
        assert_eq!(field(json!({"timeZone": "UTC"})), "timeZone");
        assert_eq!(
            field(
                json!({"timeZone": "Mars/Olympus", "windows": [{"days": ["mon"], "start": "01:00", "durationMinutes": 5}]})
            ),
            "timeZone"
        );
        assert_eq!(field(json!({"windows": []})), "windows");
        assert_eq!(
            one(json!({"days": ["monday"], "start": "01:00", "durationMinutes": 5})),
            "windows[0].days"
        );
        assert_eq!(
            one(json!({"days": [], "start": "01:00", "durationMinutes": 5})),
            "windows[0].days"
        );
        assert_eq!(
            one(json!({"days": ["mon"], "start": "1:00", "durationMinutes": 5})),
            "windows[0].start"
        );
        assert_eq!(
            one(json!({"days": ["mon"], "start": "24:00", "durationMinutes": 5})),
            "windows[0].start"
        );
        assert_eq!(
            one(json!({"days": ["mon"], "start": "01:00", "durationMinutes": 0})),
            "windows[0].durationMinutes"
        );
        assert_eq!(
            one(json!({"days": ["mon"], "start": "01:00"})),
            "windows[0].durationMinutes"
        );
        assert!(windows(json!({})).unwrap().is_none());
    }
}
