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

#[derive(Debug, Default)]
pub struct Report {
    pub plan: bool,
    pub counts: BTreeMap<Kind, Counts>,
    pub skipped: Vec<Note>,
    pub failed: Vec<Note>,
}

impl Report {
    pub fn new(plan: bool) -> Report {
        Report {
            plan,
            ..Report::default()
        }
    }

    pub fn count(&mut self, kind: Kind, outcome: Outcome) {
        let counts = self.counts.entry(kind).or_default();
        match outcome {
            Outcome::Created => counts.created += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
        }
    }

    pub fn skip(&mut self, kind: Kind, id: &str, reason: impl Into<String>) {
        self.counts.entry(kind).or_default().skipped += 1;
        self.skipped.push(Note {
            kind,
            id: id.to_string(),
            reason: reason.into(),
        });
    }

    pub fn fail(&mut self, kind: Kind, id: &str, reason: impl Into<String>) {
        self.counts.entry(kind).or_default().failed += 1;
        self.failed.push(Note {
            kind,
            id: id.to_string(),
            reason: reason.into(),
        });
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
            writeln!(
                f,
                "failed {} {}: {}",
                kind_singular(note.kind),
                note.id,
                note.reason
            )?;
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
        Kind::ApiTokens => "API token",
    }
}
