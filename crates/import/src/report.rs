//! What an import did (or, with `--plan`, would do), per kind of resource.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    DeviceTemplates,
    EnrollmentGroups,
    DeviceGroups,
    Devices,
    ScheduledJobs,
    Jobs,
    ApiTokens,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DeviceTemplates => "device templates",
            Kind::EnrollmentGroups => "enrollment groups",
            Kind::DeviceGroups => "device groups",
            Kind::Devices => "devices",
            Kind::ScheduledJobs => "scheduled jobs",
            Kind::Jobs => "jobs",
            Kind::ApiTokens => "API tokens",
        }
    }
}

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// A resource not carried over, and why.
#[derive(Debug, Clone)]
pub struct Note {
    pub kind: Kind,
    pub id: String,
    pub reason: String,
}

/// Where an import shows its progress as it goes (bars on a terminal, lines otherwise: the
/// binary decides): each resource counted, and each kind done.
pub trait Progress: Send + Sync {
    /// `done` resources of `kind` are handled so far.
    fn counted(&self, kind: Kind, done: u64);
    /// Every resource of `kind` is handled.
    fn finished(&self, kind: Kind, done: u64);
}

#[derive(Default)]
pub struct Report {
    pub plan: bool,
    pub counts: BTreeMap<Kind, Counts>,
    pub skipped: Vec<Note>,
    pub failed: Vec<Note>,
    progress: Option<std::sync::Arc<dyn Progress>>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("plan", &self.plan)
            .field("counts", &self.counts)
            .field("skipped", &self.skipped)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.skipped + self.failed
    }
}

impl Report {
    pub fn new(plan: bool) -> Report {
        Report {
            plan,
            ..Report::default()
        }
    }

    /// A report that tells `progress` of each resource as it is counted.
    pub fn with_progress(plan: bool, progress: Option<std::sync::Arc<dyn Progress>>) -> Report {
        Report {
            plan,
            progress,
            ..Report::default()
        }
    }

    fn counts_of(&mut self, kind: Kind) -> &mut Counts {
        self.counts.entry(kind).or_default()
    }

    fn counted(&self, kind: Kind) {
        if let Some(progress) = &self.progress {
            progress.counted(kind, self.counts[&kind].total());
        }
    }

    /// Every resource of `kind` is counted.
    pub fn finished(&mut self, kind: Kind) {
        let done = self.counts_of(kind).total();
        if let Some(progress) = &self.progress {
            progress.finished(kind, done);
        }
    }

    pub fn count(&mut self, kind: Kind, outcome: Outcome) {
        let counts = self.counts_of(kind);
        match outcome {
            Outcome::Created => counts.created += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
        }
        self.counted(kind);
    }

    pub fn skip(&mut self, kind: Kind, id: &str, reason: impl Into<String>) {
        self.counts_of(kind).skipped += 1;
        self.skipped.push(Note {
            kind,
            id: id.to_string(),
            reason: reason.into(),
        });
        self.counted(kind);
    }

    pub fn fail(&mut self, kind: Kind, id: &str, reason: impl Into<String>) {
        self.counts_of(kind).failed += 1;
        self.failed.push(Note {
            kind,
            id: id.to_string(),
            reason: reason.into(),
        });
        self.counted(kind);
    }

    /// A kind whose list could not be read to its end (the resources before counted as they
    /// were): counted as one failure, named by the kind rather than a resource.
    pub fn fail_list(&mut self, kind: Kind, reason: impl Into<String>) {
        self.fail(kind, "", reason);
    }

    /// Whether anything failed: the command then exits non-zero.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
    }
}

impl fmt::Display for Report {
    /// One line per kind (`devices: 55 created, 0 updated, 0 unchanged, 0 skipped, 0 failed`),
    /// then the skipped and failed resources with their reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (created, updated) = if self.plan {
            ("to create", "to update")
        } else {
            ("created", "updated")
        };
        if self.plan {
            writeln!(f, "plan (nothing written):")?;
        }
        for (kind, c) in &self.counts {
            writeln!(
                f,
                "{}: {} {created}, {} {updated}, {} unchanged, {} skipped, {} failed",
                kind.as_str(),
                c.created,
                c.updated,
                c.unchanged,
                c.skipped,
                c.failed
            )?;
        }
        for note in &self.skipped {
            writeln!(
                f,
                "skipped {} {}: {}",
                kind_singular(note.kind),
                note.id,
                note.reason
            )?;
        }
        for note in &self.failed {
            if note.id.is_empty() {
                writeln!(f, "failed {}: {}", note.kind.as_str(), note.reason)?;
            } else {
                writeln!(
                    f,
                    "failed {} {}: {}",
                    kind_singular(note.kind),
                    note.id,
                    note.reason
                )?;
            }
        }
        Ok(())
    }
}

fn kind_singular(kind: Kind) -> &'static str {
    match kind {
        Kind::DeviceTemplates => "device template",
        Kind::EnrollmentGroups => "enrollment group",
        Kind::DeviceGroups => "device group",
        Kind::Devices => "device",
        Kind::ScheduledJobs => "scheduled job",
        Kind::Jobs => "job",
        Kind::ApiTokens => "API token",
    }
}
