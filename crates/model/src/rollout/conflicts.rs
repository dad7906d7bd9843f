//! `"conflicts": "queue" | "refuse"` on a job body: what happens when another active job holds
//! the same capability on some of this job's devices. `queue` is IoT Central's behaviour (a
//! device gets the jobs' operations in the order the jobs were created); `refuse` refuses the
//! new job instead (409, nothing stored).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Invalid;
use crate::job::JobSpec;
use crate::validate::Fields;

/// The body field's name.
pub const FIELD: &str = "conflicts";

/// What a job does when an active job holds the same capability on overlapping devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// Wait: each device gets the jobs' operations in the order the jobs were created (IoT
    /// Central's behaviour, and the default).
    Queue,
    /// Refuse the job (409 `Conflict`, nothing stored) when an active job holds the same
    /// property, cloud property or command, or also migrates templates, on one of its devices.
    Refuse,
}

impl ConflictPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Queue => "queue",
            ConflictPolicy::Refuse => "refuse",
        }
    }

    /// The policy a body sets (`None` when it leaves the field out).
    pub fn from_fields(fields: &Fields) -> Result<Option<Self>, Invalid> {
        match fields.string(FIELD)? {
            None => Ok(None),
            Some("queue") => Ok(Some(ConflictPolicy::Queue)),
            Some("refuse") => Ok(Some(ConflictPolicy::Refuse)),
            Some(other) => Err(Invalid::field(
                &fields.name(FIELD),
                format_args!("is \"{other}\"; it must be \"queue\" or \"refuse\""),
            )),
        }
    }
}

/// The capabilities (as the job body spells their paths, or `template migration`) that both
/// jobs work on: what makes them conflict on a device they share.
pub fn shared_capabilities(new: &JobSpec, other: &JobSpec) -> Vec<String> {
    new.data
        .iter()
        .filter(|mine| {
            other
                .data
                .iter()
                .any(|theirs| mine.operation.identity() == theirs.operation.identity())
        })
        .map(|d| match d.operation.capability() {
            Some(c) => format!("{} '{}'", d.operation.kind(), c.path),
            None => "a template migration".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_parse_and_refuse_other_words() {
        let parse = |body: serde_json::Value| {
            ConflictPolicy::from_fields(&Fields::of(&body).unwrap()).map_err(|e| e.field)
        };
        assert_eq!(parse(json!({})), Ok(None));
        assert_eq!(parse(json!({"conflicts": null})), Ok(None));
        assert_eq!(
            parse(json!({"conflicts": "refuse"})),
            Ok(Some(ConflictPolicy::Refuse))
        );
        assert_eq!(
            parse(json!({"conflicts": "queue"})),
            Ok(Some(ConflictPolicy::Queue))
        );
        assert_eq!(
            parse(json!({"conflicts": "Refuse"})),
            Err("conflicts".into())
        );
        assert_eq!(parse(json!({"conflicts": 1})), Err("conflicts".into()));
    }
}
