//! What a device can put in the log: its text only escaped and cut short (`Untrusted`), and
//! its warnings only so many a minute (`WarnBudget`), so that a client can neither forge log
//! lines nor fill the disk with them.

use std::fmt;
use std::time::{Duration, Instant};

/// Characters of device-supplied text a log line shows.
const SHOWN_CHARS: usize = 128;
/// Warnings one connection may cause per window; the rest are counted.
const WARNINGS_PER_WINDOW: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);

/// Device-supplied text (a client id, a topic) for a log field, as `?Untrusted(text)`: quoted
/// with control characters escaped, so a newline cannot start a forged line, and cut to
/// `SHOWN_CHARS` (a client id may be 64 KiB).
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// The warnings one connection's packets may still write: `WARNINGS_PER_WINDOW` per minute;
/// past that they are counted, and the count is written when the window is over or the
/// connection ends. A device repeating a refused request writes a few lines, not megabytes.
pub struct WarnBudget {
    window_start: Instant,
    written: u32,
    held_back: u64,
}

impl WarnBudget {
    pub fn new() -> WarnBudget {
        WarnBudget {
            window_start: Instant::now(),
            written: 0,
            held_back: 0,
        }
    }

    /// Whether a warning about `client_id` may be written now; if not, it is counted.
    pub fn allow(&mut self, client_id: &str) -> bool {
        if self.window_start.elapsed() >= WINDOW {
            self.report(client_id);
            self.window_start = Instant::now();
            self.written = 0;
        }
        if self.written < WARNINGS_PER_WINDOW {
            self.written += 1;
            true
        } else {
            self.held_back += 1;
            false
        }
    }

    /// Writes how many warnings were held back since the last report, if any.
    pub fn report(&mut self, client_id: &str) {
        if self.held_back > 0 {
            tracing::warn!(
                client = ?Untrusted(client_id),
                held_back = self.held_back,
                "more warnings about this connection were held back (at most {WARNINGS_PER_WINDOW} a minute)"
            );
            self.held_back = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_escaped_and_cut() {
        let forged = "dev\n2026-01-01T00:00:00Z ERROR forged";
        let shown = format!("{:?}", Untrusted(forged));
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(shown, format!("{forged:?}"));
        let long = "é".repeat(1000);
        let shown = format!("{:?}", Untrusted(&long));
        assert!(shown.ends_with("... (2000 bytes)"), "{shown}");
        assert_eq!(shown.matches('é').count(), SHOWN_CHARS);
    }

    #[test]
    fn a_budget_allows_a_few_warnings_then_counts_them() {
        let mut budget = WarnBudget::new();
        let allowed = (0..100).filter(|_| budget.allow("dev")).count();
        assert_eq!(allowed, WARNINGS_PER_WINDOW as usize);
        assert_eq!(budget.held_back, 100 - u64::from(WARNINGS_PER_WINDOW));
        budget.report("dev");
        assert_eq!(budget.held_back, 0);
        // A new window allows again.
        budget.window_start -= WINDOW;
        assert!(budget.allow("dev"));
    }
}
