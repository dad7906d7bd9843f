//! `flotilla import`'s progress on standard error: a bar per resource kind on a terminal
//! (indicatif), plain lines otherwise (a log or a CI job), so the report on standard output
//! stays clean.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_import::{Kind, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How often a plain line reports a kind still under way.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum ImportProgress {
    Bars {
        multi: MultiProgress,
        bars: Mutex<BTreeMap<Kind, ProgressBar>>,
    },
    Lines {
        last: Mutex<BTreeMap<Kind, Instant>>,
    },
}

impl ImportProgress {
    /// Bars when standard error is a terminal, lines otherwise.
    pub fn for_stderr() -> ImportProgress {
        if std::io::stderr().is_terminal() {
            ImportProgress::Bars {
                multi: MultiProgress::new(),
                bars: Mutex::default(),
            }
        } else {
            ImportProgress::Lines {
                last: Mutex::default(),
            }
        }
    }

    fn bar(
        multi: &MultiProgress,
        bars: &Mutex<BTreeMap<Kind, ProgressBar>>,
        kind: Kind,
    ) -> ProgressBar {
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(kind)
            .or_insert_with(|| {
                // Lists have no total up front (IoT Central's pages carry no count): a counter.
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:>18}: {pos} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(kind.as_str());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            })
            .clone()
    }
}

impl Progress for ImportProgress {
    fn counted(&self, kind: Kind, done: u64) {
        match self {
            ImportProgress::Bars { multi, bars } => Self::bar(multi, bars, kind).set_position(done),
            ImportProgress::Lines { last } => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let at = last.entry(kind).or_insert(now);
                if now.duration_since(*at) >= LINE_EVERY {
                    *at = now;
                    eprintln!("importing {}: {done} so far", kind.as_str());
                }
            }
        }
    }

    fn finished(&self, kind: Kind, done: u64) {
        match self {
            ImportProgress::Bars { multi, bars } => {
                let bar = Self::bar(multi, bars, kind);
                bar.set_position(done);
                bar.finish_with_message("done");
            }
            ImportProgress::Lines { .. } => eprintln!("imported {}: {done}", kind.as_str()),
        }
    }
}
