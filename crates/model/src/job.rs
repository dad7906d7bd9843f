//! Jobs as the REST API shows and takes them: what a job does to each device (`data`), how its
//! devices are split into batches, when failures cancel it, and the checks a job passes at
//! create time. Checks that need the store (the group, the templates) take what they need as
//! arguments.

use serde::Serialize;
use serde_json::{Number, Value, json};
use utoipa::ToSchema;

use crate::Invalid;
use crate::rollout::conflicts::ConflictPolicy;
use crate::rollout::deadlines::{self, Deadline};
use crate::rollout::gate::{BatchGate, JobBatchGate};
use crate::rollout::offline::Offline;
use crate::rollout::pacing::{JobRollout, Pacing};
use crate::rollout::retry::Retry;
use crate::rollout::revert;
use crate::rollout::windows::{JobWindow, MaintenanceWindows};
use crate::schema::check_value;
use crate::template::{Capability, CapabilityKind, find};
use crate::validate::Fields;

/// What a job does to a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Set a writable property (as a desired property) and wait for the device to accept it.
    Property(CapabilityTarget),
    /// Run a command and wait for a 2xx answer.
    Command(CapabilityTarget),
    /// Write a cloud property (the device is not involved).
    CloudProperty(CapabilityTarget),
    /// Move the device to another template.
    TemplateMigration { template: String },
}

/// A capability of a template, and the value a job applies to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilityTarget {
    /// The template (by its id or its capability model's id) that defines the capability.
    pub target: String,
    /// The path as the client wrote it (echoed back).
    pub path: String,
    pub component: Option<String>,
    pub name: String,
    /// The value as sent, and as the device gets it (numbers written as strings, as in IoT
    /// Central's own examples, become numbers).
    pub value: Option<Value>,
    pub effective_value: Option<Value>,
}

/// A data entry: the operation, and how the client spelled its type (answers echo it).
#[derive(Debug, Clone, PartialEq)]
pub struct JobData {
    pub operation: Operation,
    pub spelling: Spelling,
}

/// The two spellings of a data type: the spec's discriminator (`property`) and the name IoT
/// Central's docs examples send (`PropertyJobData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    Spec,
    Docs,
}

/// Each data type's spec name and docs name.
const KINDS: &[(&str, &str)] = &[
    ("property", "PropertyJobData"),
    ("command", "CommandJobData"),
    ("cloudProperty", "CloudPropertyJobData"),
    ("deviceTemplateMigration", "DeviceTemplateMigrationJobData"),
    ("deviceManifestMigration", "DeviceManifestMigrationJobData"),
];

/// The most data entries a job takes. Each entry is work on every device of the job, and a
/// template rarely has more writable properties than this.
pub const MAX_DATA_ENTRIES: usize = 100;

impl Operation {
    /// The spec's discriminator value.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Property(_) => "property",
            Operation::Command(_) => "command",
            Operation::CloudProperty(_) => "cloudProperty",
            Operation::TemplateMigration { .. } => "deviceTemplateMigration",
        }
    }

    /// The type name in the given spelling.
    pub fn type_name(&self, spelling: Spelling) -> &'static str {
        let kind = self.kind();
        match spelling {
            Spelling::Spec => kind,
            Spelling::Docs => KINDS
                .iter()
                .find(|(spec, _)| *spec == kind)
                .map_or(kind, |(_, docs)| docs),
        }
    }

    /// What makes two entries the same work on a device: the type and the capability (however
    /// its path was written), or the type alone for a migration (a device has one template).
    pub(crate) fn identity(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self.capability() {
            Some(c) => (self.kind(), c.component.as_deref(), Some(c.name.as_str())),
            None => (self.kind(), None, None),
        }
    }

    pub fn capability(&self) -> Option<&CapabilityTarget> {
        match self {
            Operation::Property(c) | Operation::Command(c) | Operation::CloudProperty(c) => Some(c),
            Operation::TemplateMigration { .. } => None,
        }
    }

    /// The data entry as the API answers it, with the type spelled as the client spelled it.
    pub fn entry(&self, spelling: Spelling) -> JobDataEntry {
        let kind = self.type_name(spelling).to_string();
        match self {
            Operation::TemplateMigration { template } => JobDataEntry {
                kind,
                target: None,
                path: None,
                value: None,
                template: Some(template.clone()),
            },
            Operation::Property(c) | Operation::Command(c) | Operation::CloudProperty(c) => {
                JobDataEntry {
                    kind,
                    target: Some(c.target.clone()),
                    path: Some(c.path.clone()),
                    value: c.value.clone(),
                    template: None,
                }
            }
        }
    }
}

/// Slack for decimal percentages in floating point (far below a device's worth).
const EPSILON: f64 = 1e-6;

/// The largest batch size accepted (beyond any fleet a server holds).
const MAX_BATCH: f64 = 1e9;

/// A percentage as the client sent it: a whole number (`25`) stays one rather than becoming
/// `25.0`; a fraction (`12.5`) is kept as it is.
fn percentage_json(p: f64) -> Number {
    match Number::from_f64(p) {
        Some(_) if p.fract() == 0.0 => Number::from(p as u64),
        Some(fraction) => fraction,
        // Parsing keeps percentages within (0, 100]; not a number has no JSON spelling.
        None => Number::from(0),
    }
}

/// How a job's devices are split into batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Batch {
    /// That many devices per batch.
    Number(u64),
    /// ceil(total × value / 100) devices per batch.
    Percentage(f64),
}

impl Batch {
    /// Devices per batch for a job of `total` devices (at least 1).
    pub fn size(self, total: u64) -> u64 {
        match self {
            Batch::Number(n) => n.max(1),
            // The tolerance keeps decimal percentages exact: 16.1% of 1,000 is 161, although
            // 1000.0 * 16.1 / 100.0 is 161.00000000000003 in floating point.
            Batch::Percentage(p) => {
                (((total as f64 * p / 100.0) - EPSILON).ceil().max(0.0) as u64).max(1)
            }
        }
    }

    pub fn body(self) -> JobBatch {
        let (kind, value) = match self {
            Batch::Number(n) => (Measure::Number, Number::from(n)),
            Batch::Percentage(p) => (Measure::Percentage, percentage_json(p)),
        };
        JobBatch { kind, value }
    }
}

/// When failures cancel a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub kind: ThresholdKind,
    /// Counted per batch (each batch against its own size) or over the whole job.
    pub per_batch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdKind {
    Number(u64),
    Percentage(f64),
}

impl Threshold {
    /// Whether `failed` failures among `size` devices reach the threshold. A number is reached
    /// when `failed >= value`; a percentage when `failed * 100 >= value * size` (so 10% of 25
    /// devices is reached at the 3rd failure: 300 >= 250, not at the 2nd: 200 < 250).
    pub fn reached(self, failed: u64, size: u64) -> bool {
        if failed == 0 {
            return false;
        }
        match self.kind {
            ThresholdKind::Number(n) => failed >= n,
            ThresholdKind::Percentage(p) => {
                failed as f64 * 100.0 + EPSILON * size as f64 >= p * size as f64
            }
        }
    }

    pub fn body(self) -> JobCancellationThreshold {
        let (kind, value) = match self.kind {
            ThresholdKind::Number(n) => (Measure::Number, Number::from(n)),
            ThresholdKind::Percentage(p) => (Measure::Percentage, percentage_json(p)),
        };
        JobCancellationThreshold {
            kind,
            value,
            batch: self.per_batch,
        }
    }
}

/// A validated job definition (what `PUT /jobs/{id}` and scheduled jobs carry).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub group: String,
    pub batch: Option<Batch>,
    pub threshold: Option<Threshold>,
    pub data: Vec<JobData>,
    pub organizations: Vec<String>,
    /// Flotilla's extension: what to do when another active job holds the same capability on
    /// some of its devices (`None`: not sent, IoT Central's queueing).
    pub conflicts: Option<ConflictPolicy>,
    /// Flotilla's extension, set by the server on a revert job: the job whose changes it
    /// restores (its data then carries no values: each device gets the value it had).
    pub revert_of: Option<String>,
    /// Flotilla's `retry` extension.
    pub retry: Option<Retry>,
    /// Flotilla's `offline` extension.
    pub offline: Option<Offline>,
    /// Extension `rollout`: how fast devices start.
    pub pacing: Option<Pacing>,
    /// Extension `batchGate`: when the next batch may start.
    pub batch_gate: Option<BatchGate>,
    /// Extension `deviceTimeoutSeconds`: one device's time, instead of the server's default.
    pub device_timeout_seconds: Option<u64>,
    /// Extension `deadline`: when the whole job must be done.
    pub deadline: Option<Deadline>,
    /// Extensions `windows` and `timeZone`: when devices may start.
    pub windows: Option<MaintenanceWindows>,
}

/// Read-only fields of a job body: the server sets them.
pub const READ_ONLY: &[&str] = &["start", "end", "progress", "status"];

/// The templates a job's checks consult: by id, its capability model's `@id` and capabilities.
pub trait TemplateLookup {
    /// The capabilities of the template whose id, or whose capability model's id, is `target`.
    fn capabilities(&self, target: &str) -> Option<Vec<Capability>>;
    fn exists(&self, template: &str) -> bool;
}

impl JobSpec {
    /// Parses a job body. `preview` allows the preview version's data types (none supported
    /// yet beyond the stable ones: `deviceManifestMigration` is refused with a clear message).
    pub fn from_json(body: &Value, templates: &dyn TemplateLookup) -> Result<Self, Invalid> {
        let fields = Fields::of(body)?;
        for field in READ_ONLY {
            if fields.contains(field) && !fields.get(field).is_none_or(Value::is_null) {
                // Clients that PUT back what they read send these; only `status` of a new job
                // would mean something, and it is the server's to set.
                if *field == "status"
                    && fields.get(field)
                        != Some(&json!(crate::job_state::JobStatus::Pending.as_str()))
                {
                    return Err(Invalid::field(field, "is read-only"));
                }
            }
        }
        let group = fields
            .bounded_string("group", 255)?
            .ok_or_else(|| Invalid::field("group", "is required"))?
            .to_string();
        let batch = fields.object("batch")?.map(parse_batch).transpose()?;
        let threshold = fields
            .object("cancellationThreshold")?
            .map(parse_threshold)
            .transpose()?;
        let entries = fields
            .array("data")?
            .ok_or_else(|| Invalid::field("data", "is required"))?;
        if entries.is_empty() {
            return Err(Invalid::field("data", "must hold at least one entry"));
        }
        if entries.len() > MAX_DATA_ENTRIES {
            return Err(Invalid::field(
                "data",
                format_args!(
                    "holds {} entries; a job takes at most {MAX_DATA_ENTRIES}",
                    entries.len()
                ),
            ));
        }
        let revert_of = fields
            .bounded_string(revert::FIELD, 255)?
            .map(str::to_string);
        let data = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_data(entry, &format!("data[{i}]"), templates, revert_of.is_some())
            })
            .collect::<Result<Vec<_>, _>>()?;
        refuse_duplicates(&data)?;
        let targets: Vec<&str> = data
            .iter()
            .filter_map(|d| d.operation.capability().map(|c| c.target.as_str()))
            .collect();
        if targets.windows(2).any(|w| w[0] != w[1]) {
            return Err(Invalid::field(
                "data",
                "must name one target template in all its entries (a job acts on the devices of one template)",
            ));
        }
        Ok(JobSpec {
            display_name: fields
                .bounded_string("displayName", 200)?
                .map(str::to_string),
            description: fields
                .bounded_string("description", 1000)?
                .map(str::to_string),
            group,
            batch,
            threshold,
            data,
            organizations: fields.organizations()?,
            conflicts: ConflictPolicy::from_fields(&fields)?,
            revert_of,
            retry: fields.object("retry")?.map(Retry::from_json).transpose()?,
            offline: fields
                .object("offline")?
                .map(Offline::from_json)
                .transpose()?,
            pacing: fields
                .object("rollout")?
                .map(Pacing::from_json)
                .transpose()?,
            batch_gate: fields
                .object("batchGate")?
                .map(BatchGate::from_json)
                .transpose()?,
            device_timeout_seconds: deadlines::device_timeout_seconds(&fields)?,
            deadline: deadlines::deadline(&fields)?,
            windows: MaintenanceWindows::from_fields(&fields)?,
        })
    }

    /// The template a job's devices must have, if its data names one.
    pub fn target(&self) -> Option<&str> {
        self.data
            .iter()
            .find_map(|d| d.operation.capability().map(|c| c.target.as_str()))
    }

    /// What the job does to each device, in order.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.data.iter().map(|d| &d.operation)
    }

    /// The job definition as the API shows it (without id, status, progress and times).
    pub fn definition(&self) -> JobDefinition {
        JobDefinition {
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            group: self.group.clone(),
            batch: self.batch.map(Batch::body),
            cancellation_threshold: self.threshold.map(Threshold::body),
            data: self
                .data
                .iter()
                .map(|d| d.operation.entry(d.spelling))
                .collect(),
            organizations: self.organizations.clone(),
            conflicts: self.conflicts,
            revert_of: self.revert_of.clone(),
            retry: self.retry.clone(),
            offline: self.offline.clone(),
            rollout: self.pacing.as_ref().map(Pacing::body),
            batch_gate: self.batch_gate.as_ref().map(BatchGate::body),
            device_timeout_seconds: self.device_timeout_seconds,
            deadline: self.deadline.as_ref().map(|d| d.text.clone()),
            windows: self.windows.as_ref().map(MaintenanceWindows::body),
            time_zone: self.windows.as_ref().and_then(|w| w.zone_name.clone()),
        }
    }

    /// Whether the job uses any of the pace extensions (`rollout`, `batchGate`,
    /// `deviceTimeoutSeconds`, `deadline`, `windows`): without them, it runs exactly as IoT
    /// Central's jobs do.
    pub fn paced(&self) -> bool {
        self.pacing.is_some()
            || self.batch_gate.is_some()
            || self.device_timeout_seconds.is_some()
            || self.deadline.is_some()
            || self.windows.is_some()
    }
}

/// A job definition as the API shows it, and as jobs and scheduled jobs store it (this type is
/// also its OpenAPI schema): data types are spelled, and numbers written, as the client sent them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDefinition {
    /// Display name of the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 200)]
    pub display_name: Option<String>,
    /// Detailed description of the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 1000)]
    pub description: Option<String>,
    /// The ID of the device group on which to execute the job.
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub batch: Option<JobBatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cancellation_threshold: Option<JobCancellationThreshold>,
    /// What the job does to each device, in order.
    pub data: Vec<JobDataEntry>,
    /// The organizations the job belongs to; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub organizations: Vec<String>,
    /// Flotilla's extension: `queue` (the default: IoT Central's behaviour) or `refuse` (409,
    /// nothing stored, when an active job holds the same capability on some of the devices).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub conflicts: Option<ConflictPolicy>,
    /// Flotilla's extension, on a revert job only (set by the server): the job whose changes
    /// it restores. Its `data` then names capabilities without values.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, read_only)]
    pub revert_of: Option<String>,
    /// Beside the spec: retry a device whose operation failed for a listed cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry: Option<Retry>,
    /// Beside the spec: what to do with a device that is not connected when its turn comes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub offline: Option<Offline>,
    /// Extension: how fast the job's devices start (across its batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rollout: Option<JobRollout>,
    /// Extension: the next batch starts only when this is met; if not, the job stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub batch_gate: Option<JobBatchGate>,
    /// Extension: how long one device's operation may take, in seconds (1 to 604,800),
    /// instead of the server's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1, maximum = 604800)]
    pub device_timeout_seconds: Option<u64>,
    /// Extension: when the whole job must be done; devices not finished by then fail with the
    /// reason code `deadline`, and the job ends (`failed`). As the client wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub deadline: Option<String>,
    /// Extension: maintenance windows, the only times devices start (started ones finish).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub windows: Option<Vec<JobWindow>>,
    /// Extension: the IANA time zone of `windows` (UTC when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub time_zone: Option<String>,
}

/// How a batch size or a threshold counts devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// A number of devices.
    Number,
    /// A percentage of the devices (rounded up).
    Percentage,
}

/// How a job's devices are split into batches.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobBatch {
    #[serde(rename = "type")]
    pub kind: Measure,
    /// As the client wrote it: `25` stays `25`, `12.5` stays `12.5`.
    #[schema(value_type = f64)]
    pub value: Number,
}

/// When failures cancel a job.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobCancellationThreshold {
    #[serde(rename = "type")]
    pub kind: Measure,
    /// As the client wrote it.
    #[schema(value_type = f64)]
    pub value: Number,
    /// Per batch (true) or over the whole job (false, the default).
    #[schema(required = false)]
    pub batch: bool,
}

/// One thing a job does to each device: `property`, `command` or `cloudProperty` (with
/// `target`, `path` and `value`), or `deviceTemplateMigration` (with `template`). The docs'
/// spellings (`PropertyJobData`, ...) are accepted and echoed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobDataEntry {
    #[serde(rename = "type")]
    pub kind: String,
    /// The template that defines the capability.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub target: Option<String>,
    /// The capability: `name`, or `component.name` / `component/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub path: Option<String>,
    /// The value to apply, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The template a migration moves devices to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub template: Option<String>,
}

fn kind_and_value(value: &Value, at: &str) -> Result<(String, f64), Invalid> {
    let fields = Fields::nested(value, at)?;
    let kind = fields.required_string("type")?.to_string();
    let number = fields
        .number("value")?
        .ok_or_else(|| Invalid::field(&format!("{at}.value"), "is required"))?;
    Ok((kind, number))
}

fn parse_batch(value: &Value) -> Result<Batch, Invalid> {
    let (kind, number) = kind_and_value(value, "batch")?;
    match kind.as_str() {
        "number" if (1.0..=MAX_BATCH).contains(&number) && number.fract() == 0.0 => {
            Ok(Batch::Number(number as u64))
        }
        "number" => Err(Invalid::field(
            "batch.value",
            "must be a whole number of devices, at least 1",
        )),
        "percentage" if number > 0.0 && number <= 100.0 => Ok(Batch::Percentage(number)),
        "percentage" => Err(Invalid::field(
            "batch.value",
            "must be a percentage greater than 0 and at most 100",
        )),
        _ => Err(Invalid::field(
            "batch.type",
            "must be \"number\" or \"percentage\"",
        )),
    }
}

/// A stored job definition's cancellation threshold (`None` without one, or one that no longer
/// parses), for the store to count failures it makes itself (a dead server's commands).
pub fn threshold_of(definition: &Value) -> Option<Threshold> {
    parse_threshold(definition.get("cancellationThreshold")?).ok()
}

fn parse_threshold(value: &Value) -> Result<Threshold, Invalid> {
    let (kind, number) = kind_and_value(value, "cancellationThreshold")?;
    let per_batch = threshold_per_batch(value)?;
    let kind = match kind.as_str() {
        "number" if (1.0..=MAX_BATCH).contains(&number) && number.fract() == 0.0 => {
            ThresholdKind::Number(number as u64)
        }
        "number" => {
            return Err(Invalid::field(
                "cancellationThreshold.value",
                "must be a whole number of devices, at least 1",
            ));
        }
        "percentage" if number > 0.0 && number <= 100.0 => ThresholdKind::Percentage(number),
        "percentage" => {
            return Err(Invalid::field(
                "cancellationThreshold.value",
                "must be a percentage greater than 0 and at most 100",
            ));
        }
        _ => {
            return Err(Invalid::field(
                "cancellationThreshold.type",
                "must be \"number\" or \"percentage\"",
            ));
        }
    };
    Ok(Threshold { kind, per_batch })
}

/// `cancellationThreshold.batch`: a boolean, or the strings `az iot central job create` sends
/// for it: "true"/"false" (it passes `--cancellation-threshold-batch` on as text, as "55" is sent
/// for numbers) and "number", its placeholder when the flag is left out (so: not per batch).
fn threshold_per_batch(threshold: &Value) -> Result<bool, Invalid> {
    let refuse = || {
        Invalid::field(
            "cancellationThreshold.batch",
            "must be a boolean (true or false)",
        )
    };
    match threshold.get("batch") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "number" => Ok(false),
            _ => Err(refuse()),
        },
        Some(_) => Err(refuse()),
    }
}

/// The spec's name of a data type sent in either spelling, and the spelling used.
fn canonical_kind(kind: &str) -> Option<(&'static str, Spelling)> {
    KINDS.iter().find_map(|(spec, docs)| {
        if kind == *spec {
            Some((*spec, Spelling::Spec))
        } else if kind == *docs {
            Some((*spec, Spelling::Docs))
        } else {
            None
        }
    })
}

/// A job may not repeat an entry: a repeat adds no effect, only work on every device.
fn refuse_duplicates(data: &[JobData]) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in data.iter().enumerate() {
        if !seen.insert(entry.operation.identity()) {
            let what = match entry.operation.capability() {
                Some(c) => format!("'{}' again", c.path),
                None => "a second template migration".to_string(),
            };
            return Err(Invalid::field(
                &format!("data[{i}]"),
                format_args!(
                    "repeats an earlier entry: {what} as {}; each capability may appear once",
                    entry.operation.kind()
                ),
            ));
        }
    }
    Ok(())
}

/// A capability path: `name`, or `component.name` / `component/name` for a component's.
pub fn split_path(path: &str) -> (Option<&str>, &str) {
    match path.split_once(['.', '/']) {
        Some((component, name)) => (Some(component), name),
        None => (None, path),
    }
}

/// `valueless`: a revert's entries carry no value (each device gets the one it had).
fn parse_data(
    entry: &Value,
    at: &str,
    templates: &dyn TemplateLookup,
    valueless: bool,
) -> Result<JobData, Invalid> {
    let fields = Fields::nested(entry, at)?;
    let kind_text = fields.required_string("type")?;
    let (kind, spelling) = canonical_kind(kind_text).ok_or_else(|| {
        Invalid::field(
            &format!("{at}.type"),
            format_args!("is \"{kind_text}\"; it must be one of property, command, cloudProperty, deviceTemplateMigration"),
        )
    })?;
    let operation = parse_operation(&fields, kind, at, templates, valueless)?;
    Ok(JobData {
        operation,
        spelling,
    })
}

/// The operation of a data entry whose type (in the spec's name) is `kind`.
fn parse_operation(
    fields: &Fields,
    kind: &str,
    at: &str,
    templates: &dyn TemplateLookup,
    valueless: bool,
) -> Result<Operation, Invalid> {
    match kind {
        "deviceManifestMigration" => Err(Invalid::field(
            &format!("{at}.type"),
            "deviceManifestMigration needs deployment manifests, which this server does not support yet",
        )),
        "deviceTemplateMigration" => {
            let template = fields
                .string("template")?
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Invalid::field(&format!("{at}.template"), "is required"))?;
            if !templates.exists(template) {
                return Err(Invalid::field(
                    &format!("{at}.template"),
                    format_args!("names the device template '{template}', which does not exist"),
                ));
            }
            Ok(Operation::TemplateMigration {
                template: template.to_string(),
            })
        }
        _ => {
            let target = fields
                .string("target")?
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Invalid::field(&format!("{at}.target"), "is required"))?;
            let path = fields
                .string("path")?
                .filter(|p| !p.is_empty())
                .ok_or_else(|| Invalid::field(&format!("{at}.path"), "is required"))?;
            let capabilities = templates.capabilities(target).ok_or_else(|| {
                Invalid::field(
                    &format!("{at}.target"),
                    format_args!("names the device template '{target}', which does not exist"),
                )
            })?;
            let (component, name) = split_path(path);
            let capability = find(&capabilities, component, name).ok_or_else(|| {
                Invalid::field(
                    &format!("{at}.path"),
                    format_args!("names '{path}', which the template '{target}' does not define"),
                )
            })?;
            let wanted = match kind {
                "property" => CapabilityKind::WritableProperty,
                "command" => CapabilityKind::Command,
                _ => CapabilityKind::CloudProperty,
            };
            if capability.kind != wanted {
                let why = match capability.kind {
                    CapabilityKind::ReadOnlyProperty => {
                        "is a read-only property; only the device sets it"
                    }
                    CapabilityKind::WritableProperty => "is a writable property, not a",
                    CapabilityKind::CloudProperty => "is a cloud property, not a",
                    CapabilityKind::Command => "is a command, not a",
                    CapabilityKind::Telemetry => "is telemetry, not a",
                };
                let message = if capability.kind == CapabilityKind::ReadOnlyProperty {
                    format!("names '{path}', which {why}")
                } else {
                    format!("names '{path}', which {why} {}", wanted_name(wanted))
                };
                return Err(Invalid::field(&format!("{at}.path"), message));
            }
            let value = fields.get("value").cloned();
            let effective_value = match &value {
                None if kind != "command" && !valueless => {
                    return Err(Invalid::field(&format!("{at}.value"), "is required"));
                }
                None => None,
                Some(v) if capability.schema.is_null() => Some(v.clone()),
                Some(v) => Some(
                    coerce(&capability.schema, v)
                        .map_err(|problem| Invalid::field(&format!("{at}.value"), problem))?,
                ),
            };
            let target = CapabilityTarget {
                target: target.to_string(),
                path: path.to_string(),
                component: component.map(str::to_string),
                name: name.to_string(),
                value,
                effective_value,
            };
            Ok(match kind {
                "property" => Operation::Property(target),
                "command" => Operation::Command(target),
                _ => Operation::CloudProperty(target),
            })
        }
    }
}

fn wanted_name(kind: CapabilityKind) -> &'static str {
    match kind {
        CapabilityKind::WritableProperty => "writable property",
        CapabilityKind::Command => "command",
        CapabilityKind::CloudProperty => "cloud property",
        _ => "capability",
    }
}

/// A job value for a schema: IoT Central's own examples send numbers as strings (`"55"` for a
/// double), so a string that reads as a number is taken for a numeric schema, and "true"/"false"
/// for a boolean one; anything else must fit the schema as it is.
pub fn coerce(schema: &Value, value: &Value) -> Result<Value, String> {
    if let (Some(kind), Some(text)) = (schema.as_str(), value.as_str()) {
        let converted = match kind {
            "double" | "float" => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            "integer" | "long" => text.trim().parse::<i64>().ok().map(|n| json!(n)),
            "boolean" => text.trim().parse::<bool>().ok().map(Value::Bool),
            _ => None,
        };
        if let Some(converted) = converted {
            return Ok(converted);
        }
    }
    check_value(schema, value)?;
    Ok(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes() {
        assert_eq!(Batch::Percentage(25.0).size(10), 3);
        assert_eq!(Batch::Percentage(25.0).size(4), 1);
        assert_eq!(Batch::Percentage(100.0).size(7), 7);
        assert_eq!(Batch::Percentage(0.1).size(5), 1);
        assert_eq!(Batch::Number(3).size(10), 3);
    }

    #[test]
    fn thresholds_at_the_exact_edge() {
        let ten_percent = Threshold {
            kind: ThresholdKind::Percentage(10.0),
            per_batch: false,
        };
        assert!(!ten_percent.reached(2, 25));
        assert!(ten_percent.reached(3, 25));
        assert!(ten_percent.reached(1, 10));
        assert!(!ten_percent.reached(0, 10));
        let two = Threshold {
            kind: ThresholdKind::Number(2),
            per_batch: true,
        };
        assert!(!two.reached(1, 100));
        // Decimal percentages are exact: 16.1% of 1,000 is reached at 161, not 162.
        let decimal = Threshold {
            kind: ThresholdKind::Percentage(16.1),
            per_batch: false,
        };
        assert!(!decimal.reached(160, 1000));
        assert!(decimal.reached(161, 1000));
        assert_eq!(Batch::Percentage(16.1).size(1000), 161);
        assert!(two.reached(2, 100));
    }

    #[test]
    fn numeric_strings_become_numbers() {
        assert_eq!(coerce(&json!("double"), &json!("55")).unwrap(), json!(55.0));
        assert_eq!(coerce(&json!("integer"), &json!("7")).unwrap(), json!(7));
        assert!(coerce(&json!("double"), &json!("hot")).is_err());
        assert!(coerce(&json!("double"), &json!(true)).is_err());
        assert_eq!(
            coerce(&json!("dateTime"), &json!("2021-06-15T05:00:00.000Z")).unwrap(),
            json!("2021-06-15T05:00:00.000Z")
        );
    }

    #[test]
    fn the_clis_threshold_batch_strings() {
        let batch = |value: Value| threshold_per_batch(&json!({"batch": value}));
        assert_eq!(batch(json!(true)), Ok(true));
        assert_eq!(batch(json!("true")), Ok(true));
        assert_eq!(batch(json!("False")), Ok(false));
        assert_eq!(batch(json!("number")), Ok(false));
        assert_eq!(threshold_per_batch(&json!({})), Ok(false));
        assert_eq!(
            batch(json!("yes")).unwrap_err().field,
            "cancellationThreshold.batch"
        );
        assert!(batch(json!(1)).is_err());
    }

    #[test]
    fn percentages_keep_their_shape() {
        assert_eq!(percentage_json(25.0).to_string(), "25");
        assert_eq!(Batch::Number(3).body().value.to_string(), "3");
        assert_eq!(percentage_json(12.5).to_string(), "12.5");
        assert_eq!(
            canonical_kind("PropertyJobData"),
            Some(("property", Spelling::Docs))
        );
        assert_eq!(canonical_kind("command"), Some(("command", Spelling::Spec)));
        assert_eq!(canonical_kind("propertyjobdata"), None);
    }

    #[test]
    fn paths_name_components_with_a_dot_or_a_slash() {
        assert_eq!(
            split_path("thermostat1.targetTemperature"),
            (Some("thermostat1"), "targetTemperature")
        );
        assert_eq!(
            split_path("thermostat1/targetTemperature"),
            (Some("thermostat1"), "targetTemperature")
        );
        assert_eq!(split_path("targetTemperature"), (None, "targetTemperature"));
    }
}
