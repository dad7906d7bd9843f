//! IoT Central's three built-in roles, with their well-known ids, and what each may do.
//!
//! Operators run jobs and manage devices and device groups; Builders also manage device
//! templates and enrollment groups; Administrators do everything, including API tokens.

use serde::Serialize;
use utoipa::ToSchema;

pub const ADMINISTRATOR: &str = "ca310b8d-2f4a-44e0-a36e-957c202cd8d4";
pub const BUILDER: &str = "344138e9-8de4-4497-8c54-5237e96d6aaf";
pub const OPERATOR: &str = "ae2c9854-393b-4f97-8c42-479d70ce626e";

/// A built-in role, as stored and as the API returns it (this type is also its OpenAPI schema).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Unique ID of the role.
    #[schema(read_only)]
    pub id: &'static str,
    /// Display name of the role.
    pub display_name: &'static str,
}

pub const BUILT_IN: [Role; 3] = [
    Role {
        id: ADMINISTRATOR,
        display_name: "Administrator",
    },
    Role {
        id: BUILDER,
        display_name: "Builder",
    },
    Role {
        id: OPERATOR,
        display_name: "Operator",
    },
];

pub fn find(id: &str) -> Option<&'static Role> {
    BUILT_IN.iter().find(|role| role.id == id)
}

/// The areas of the API that access is granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Roles,
    ApiTokens,
    DeviceTemplates,
    EnrollmentGroups,
    Devices,
    DeviceGroups,
    Jobs,
}

/// Read or change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether a holder of `role_id` may have `access` to `area`.
pub fn allows(role_id: &str, area: Area, access: Access) -> bool {
    use Area::*;
    match role_id {
        ADMINISTRATOR => true,
        BUILDER => !matches!(area, ApiTokens),
        OPERATOR => match area {
            Roles | DeviceTemplates => access == Access::Read,
            Devices | DeviceGroups | Jobs => true,
            // Enrollment groups hold the keys every device derives its own from.
            ApiTokens | EnrollmentGroups => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_cannot_touch_templates_or_tokens() {
        assert!(allows(OPERATOR, Area::Jobs, Access::Write));
        assert!(allows(OPERATOR, Area::DeviceTemplates, Access::Read));
        assert!(!allows(OPERATOR, Area::DeviceTemplates, Access::Write));
        assert!(!allows(OPERATOR, Area::ApiTokens, Access::Read));
        assert!(allows(BUILDER, Area::DeviceTemplates, Access::Write));
        assert!(!allows(BUILDER, Area::ApiTokens, Access::Write));
        assert!(allows(ADMINISTRATOR, Area::ApiTokens, Access::Write));
        assert!(!allows("not-a-role", Area::Roles, Access::Read));
    }
}
