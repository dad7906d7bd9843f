//! What `jobs watch` shows: progress bars on stderr when it is a terminal (one per batch, or the
//! current batch's when there are many), and on stdout a line per status change and per failed
//! device; with `--output json`, no bars and one JSON line per failed device, then the job.

use std::collections::HashSet;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::output::{Format, text};

/// More batches than this get one bar for the current batch instead of one each.
const MAX_BATCH_BARS: usize = 8;

/// Counts of one batch, or of the whole job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

impl Counts {
    pub fn finished(&self) -> u64 {
        self.completed + self.failed
    }
}

/// The job's progress: overall and per batch (batches may be unknown: empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub job: Counts,
    pub batches: Vec<Counts>,
}

pub struct View {
    job_id: String,
    format: Format,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    batch_bars: Vec<ProgressBar>,
    status: Option<String>,
    failures_seen: HashSet<String>,
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ")
}

impl View {
    pub fn new(job_id: &str, format: Format) -> View {
        let target = match format {
            // stderr hides itself when it is not a terminal.
            Format::Table => ProgressDrawTarget::stderr(),
            Format::Json => ProgressDrawTarget::hidden(),
        };
        View {
            job_id: job_id.to_string(),
            format,
            multi: MultiProgress::with_draw_target(target),
            overall: None,
            batch_bars: Vec::new(),
            status: None,
            failures_seen: HashSet::new(),
        }
    }

    /// A line on stdout that the bars do not tear.
    fn line(&self, line: String) {
        self.multi.suspend(|| println!("{line}"));
    }

    pub fn status(&mut self, status: &str) {
        if self.status.as_deref() == Some(status) {
            return;
        }
        self.status = Some(status.to_string());
        if self.format == Format::Table {
            self.line(format!("job {}: {status}", self.job_id));
        }
    }

    pub fn progress(&mut self, progress: &Progress) {
        let overall = self.overall.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0).with_style(style()));
            bar.set_prefix("job");
            bar
        });
        draw(overall, &progress.job);
        let batches = &progress.batches;
        if batches.len() <= 1 {
            return;
        }
        if batches.len() <= MAX_BATCH_BARS {
            while self.batch_bars.len() < batches.len() {
                let bar = self.multi.add(ProgressBar::new(0).with_style(style()));
                bar.set_prefix(format!(
                    "batch {}/{}",
                    self.batch_bars.len() + 1,
                    batches.len()
                ));
                self.batch_bars.push(bar);
            }
            for (bar, counts) in self.batch_bars.iter().zip(batches) {
                draw(bar, counts);
            }
        } else {
            // The first batch with devices left, or the last.
            let current = batches
                .iter()
                .position(|b| b.finished() < b.total)
                .unwrap_or(batches.len() - 1);
            if self.batch_bars.is_empty() {
                let bar = self.multi.add(ProgressBar::new(0).with_style(style()));
                self.batch_bars.push(bar);
            }
            let bar = &self.batch_bars[0];
            bar.set_prefix(format!("batch {}/{}", current + 1, batches.len()));
            draw(bar, &batches[current]);
        }
    }

    /// A device that failed (shown once, however often it is reported).
    pub fn failure(&mut self, device_id: &str, batch: Option<usize>, device: &Value) {
        if !self.failures_seen.insert(device_id.to_string()) {
            return;
        }
        match self.format {
            Format::Json => {
                let mut line = json!({
                    "jobId": self.job_id,
                    "deviceId": device_id,
                    "status": "failed",
                });
                for key in ["reasonCode", "reason", "responseCode", "response"] {
                    if let Some(value) = device.get(key) {
                        line[key] = value.clone();
                    }
                }
                if let Some(batch) = batch {
                    line["batch"] = json!(batch + 1);
                }
                println!("{line}");
            }
            Format::Table => {
                let batch = batch
                    .map(|b| format!(" (batch {})", b + 1))
                    .unwrap_or_default();
                let code = device
                    .get("reasonCode")
                    .map(|c| format!("[{}] ", text(c)))
                    .unwrap_or_default();
                self.line(format!(
                    "failed {device_id}{batch}: {code}{}",
                    text(&device["reason"])
                ));
            }
        }
    }

    /// Clears the bars and prints the job as it ended.
    pub fn finish(&mut self, job: &Value) {
        for bar in self.overall.iter().chain(&self.batch_bars) {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
        match self.format {
            Format::Json => println!("{job}"),
            Format::Table => {
                let status = text(&job["status"]);
                self.status(&status);
                let progress = &job["progress"];
                let mut line = format!(
                    "job {} {status}: {} completed, {} failed of {}",
                    self.job_id,
                    text(&progress["completed"]),
                    text(&progress["failed"]),
                    text(&progress["total"]),
                );
                if let Some(reason) = job.get("reason") {
                    line.push_str(&format!(" ({})", text(reason)));
                }
                println!("{line}");
            }
        }
    }
}

fn draw(bar: &ProgressBar, counts: &Counts) {
    bar.set_length(counts.total);
    bar.set_position(counts.finished());
    if counts.failed > 0 {
        bar.set_message(format!("{} failed", counts.failed));
    } else {
        bar.set_message("");
    }
}
