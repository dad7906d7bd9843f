//! A job definition from a file (IoT Central's JSON body, as `PUT /jobs/{id}` takes it) and/or
//! flags, which override the file's fields. The server validates the result.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use serde_json::{Map, Value, json};

use crate::error::{CliError, Result};

#[derive(Args, Debug, Clone, Default)]
pub struct JobBodyArgs {
    /// The body as IoT Central's JSON (a file, or `-` for stdin); the flags below override its fields.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The device group the job runs on.
    #[arg(long)]
    pub group: Option<String>,
    /// What the job does to each device (replaces the body's `data`).
    #[arg(long = "type", value_parser = ["property", "command", "cloudProperty", "deviceTemplateMigration"])]
    pub kind: Option<String>,
    /// The device template that defines the property or command.
    #[arg(long)]
    pub target: Option<String>,
    /// The property or command: `name`, or `component.name`.
    #[arg(long)]
    pub path: Option<String>,
    /// The value to write, or the command's request: JSON (`42`, `"text"`, `{"a": 1}`); text
    /// that is not JSON is sent as a string.
    #[arg(long)]
    pub value: Option<String>,
    /// For `--type deviceTemplateMigration`: the template to move the devices to.
    #[arg(long)]
    pub template: Option<String>,
    /// Batch size: a number of devices (`500`) or a percentage of them (`10%`).
    #[arg(long)]
    pub batch: Option<Measure>,
    /// Cancellation threshold: a number of failed devices (`5`) or a percentage (`2%`).
    #[arg(long)]
    pub threshold: Option<Measure>,
    /// Count the cancellation threshold in each batch instead of over the whole job.
    #[arg(long, requires = "threshold")]
    pub per_batch: bool,
}

/// `500` devices or `10%` of them, as IoT Central's `{"type", "value"}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub percentage: bool,
    pub value: f64,
}

impl FromStr for Measure {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Measure, String> {
        let text = text.trim();
        let (number, percentage) = match text.strip_suffix('%') {
            Some(number) => (number.trim(), true),
            None => (text, false),
        };
        let value: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                format!("'{text}' is neither a number of devices nor a percentage such as 10%")
            })?;
        Ok(Measure { percentage, value })
    }
}

impl Measure {
    pub fn body(self) -> Value {
        let kind = if self.percentage {
            "percentage"
        } else {
            "number"
        };
        json!({"type": kind, "value": number(self.value)})
    }
}

/// A whole number as an integer (`25`, not `25.0`).
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// JSON when it parses, else the text as a string.
pub fn loose_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Reads a JSON object from a file (`-`: stdin).
pub fn read_json_file(path: &std::path::Path) -> Result<Map<String, Value>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| CliError::file("stdin", e))?
    } else {
        std::fs::read_to_string(path).map_err(|e| CliError::file(path.display(), e))?
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::file(path.display(), "is not a JSON object")),
        Err(e) => Err(CliError::file(path.display(), format!("is not JSON: {e}"))),
    }
}

impl JobBodyArgs {
    /// The body: the file's, with the flags' fields over it. `require_data`: a body with no
    /// `data` and no `--type` is a usage error (creating needs one; patching does not).
    pub fn body(&self, require_data: bool) -> Result<Map<String, Value>> {
        let mut body = match &self.file {
            Some(path) => read_json_file(path)?,
            None => Map::new(),
        };
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.to_string(), value);
            }
        };
        set("displayName", self.name.clone().map(Value::String));
        set("description", self.description.clone().map(Value::String));
        set("group", self.group.clone().map(Value::String));
        set("batch", self.batch.map(Measure::body));
        set(
            "cancellationThreshold",
            self.threshold.map(|t| {
                let mut threshold = t.body();
                threshold["batch"] = json!(self.per_batch);
                threshold
            }),
        );
        if let Some(entry) = self.data_entry()? {
            body.insert("data".into(), json!([entry]));
        }
        if require_data {
            if !body.contains_key("group") {
                return Err(CliError::usage(
                    "the job needs a device group: --group, or `group` in --file",
                ));
            }
            if !body.contains_key("data") {
                return Err(CliError::usage(
                    "the job needs something to do: --type (with --target, --path, --value), or `data` in --file",
                ));
            }
        }
        Ok(body)
    }

    fn data_entry(&self) -> Result<Option<Value>> {
        let Some(kind) = &self.kind else {
            if self.target.is_some()
                || self.path.is_some()
                || self.value.is_some()
                || self.template.is_some()
            {
                return Err(CliError::usage(
                    "--target, --path, --value and --template describe the job's data: give --type too",
                ));
            }
            return Ok(None);
        };
        if kind == "deviceTemplateMigration" {
            let template = self.template.as_ref().ok_or_else(|| {
                CliError::usage("--type deviceTemplateMigration needs --template")
            })?;
            return Ok(Some(json!({"type": kind, "template": template})));
        }
        let missing = [
            ("--target", self.target.is_none()),
            ("--path", self.path.is_none()),
            ("--value", self.value.is_none() && kind != "command"),
        ];
        if let Some((flag, _)) = missing.iter().find(|(_, missing)| *missing) {
            return Err(CliError::usage(format!("--type {kind} needs {flag}")));
        }
        let mut entry = json!({"type": kind, "target": self.target, "path": self.path});
        if let Some(value) = &self.value {
            entry["value"] = loose_json(value);
        }
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_are_numbers_or_percentages() {
        assert_eq!(
            "10%".parse::<Measure>().unwrap().body(),
            json!({"type": "percentage", "value": 10})
        );
        assert_eq!(
            "12.5%".parse::<Measure>().unwrap().body(),
            json!({"type": "percentage", "value": 12.5})
        );
        assert_eq!(
            "500".parse::<Measure>().unwrap().body(),
            json!({"type": "number", "value": 500})
        );
        assert!("ten".parse::<Measure>().is_err());
        assert!("0".parse::<Measure>().is_err());
    }

    #[test]
    fn flags_build_a_body() {
        let args = JobBodyArgs {
            group: Some("g".into()),
            kind: Some("property".into()),
            target: Some("dtmi:t;1".into()),
            path: Some("targetTemperature".into()),
            value: Some("42".into()),
            threshold: Some("2".parse().unwrap()),
            per_batch: true,
            ..JobBodyArgs::default()
        };
        assert_eq!(
            Value::Object(args.body(true).unwrap()),
            json!({
                "group": "g",
                "cancellationThreshold": {"type": "number", "value": 2, "batch": true},
                "data": [{"type": "property", "target": "dtmi:t;1", "path": "targetTemperature", "value": 42}]
            })
        );
        let no_data = JobBodyArgs {
            group: Some("g".into()),
            ..JobBodyArgs::default()
        };
        assert!(matches!(no_data.body(true), Err(CliError::Usage(_))));
        assert_eq!(loose_json("plain text"), json!("plain text"));
    }
}
