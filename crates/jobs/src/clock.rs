//! The time the scheduler goes by. The system clock in production; for tests, a file holding an
//! RFC 3339 time that the test rewrites, so schedules can be driven without waiting.

use std::path::PathBuf;

use jiff::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Reads the time from a file at each call (falling back to the system clock when the file is
/// missing or unreadable).
pub struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now(&self) -> Timestamp {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(Timestamp::now)
    }
}
