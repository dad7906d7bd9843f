//! The pages lists answer with: `{"value": [...], "nextLink": "..."}`, one named type per list
//! (IoT Central's schema names), each both what the handler returns and its OpenAPI schema.

use flotilla_model::api_token::ApiTokenBody;
use flotilla_model::device::Device;
use flotilla_model::device_group::DeviceGroup;
use flotilla_model::enrollment_group::EnrollmentGroupBody;
use flotilla_model::roles::Role;
use flotilla_model::template::PublishedTemplate;
use serde::Serialize;
use utoipa::ToSchema;

use crate::routes::device_commands::DeviceCommand;
use crate::routes::device_components::Component;
use crate::routes::device_modules::Module;
use crate::routes::jobs::{Job, JobDeviceStatus};
use crate::routes::scheduled_jobs::ScheduledJob;

/// A page of `Item`s, built by [`crate::paging::list_body`].
pub trait Collection: Serialize {
    type Item;
    fn new(value: Vec<Self::Item>, next_link: Option<String>) -> Self;
}

macro_rules! collection {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Serialize, ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// The page's items.
            pub value: Vec<$item>,
            /// The absolute URL of the next page, to GET as it is; absent on the last page.
            #[serde(skip_serializing_if = "Option::is_none")]
            #[schema(nullable = false)]
            pub next_link: Option<String>,
        }

        impl Collection for $name {
            type Item = $item;
            fn new(value: Vec<$item>, next_link: Option<String>) -> Self {
                $name { value, next_link }
            }
        }
    };
}

collection!(
    /// A page of API tokens (never with their values).
    ApiTokenCollection of ApiTokenBody
);
collection!(
    /// A page of roles.
    RoleCollection of Role
);
collection!(
    /// A page of device templates.
    DeviceTemplateCollection of PublishedTemplate
);
collection!(
    /// A page of devices.
    DeviceCollection of Device
);
collection!(
    /// The components of a device's template (one page).
    ComponentCollection of Component
);
collection!(
    /// The modules of a device (one page).
    ModuleCollection of Module
);
collection!(
    /// A page of device groups.
    DeviceGroupCollection of DeviceGroup
);
collection!(
    /// A page of the devices a device group's filter selects now.
    DeviceGroupDeviceCollection of Device
);
collection!(
    /// A page of enrollment groups.
    EnrollmentGroupCollection of EnrollmentGroupBody
);
collection!(
    /// A page of scheduled jobs.
    ScheduledJobCollection of ScheduledJob
);
collection!(
    /// A page of jobs, newest first.
    JobCollection of Job
);
collection!(
    /// A page of a job's devices, in the job's order.
    JobDeviceStatusCollection of JobDeviceStatus
);
collection!(
    /// A page of a command's history on a device, oldest first.
    DeviceCommandCollection of DeviceCommand
);
collection!(
    /// A page of webhooks (never with their secrets).
    WebhookCollection of flotilla_model::webhook::WebhookBody
);
collection!(
    /// A page of a webhook's deliveries, newest first.
    WebhookDeliveryCollection of crate::routes::webhooks::WebhookDelivery
);
