//! Which devices a job holds: its group's devices of its target template, by id (for a rerun,
//! the original's failed devices). The engine fixes them when the job starts; a dry-run plan and
//! the conflict check ask the same question before the job exists.

use flotilla_model::job::JobSpec;
use flotilla_store::Store;

use crate::templates::Templates;

/// A job's devices, or why it cannot start (the job fails with that reason).
pub type Members = Result<Vec<String>, String>;

/// The devices a job with this definition would hold if it started now.
pub async fn job_members(
    store: &Store,
    templates: &Templates,
    spec: &JobSpec,
    rerun_of: Option<&str>,
) -> flotilla_store::Result<Members> {
    if let Some(original) = rerun_of {
        return Ok(Ok(store.failed_job_devices(original).await?));
    }
    if let Some(original) = &spec.revert_of {
        return Ok(Ok(store.devices_changed_by(original).await?));
    }
    let ids = match spec.target() {
        Some(target) => {
            let ids = templates.resolve(target);
            if ids.is_empty() {
                return Ok(Ok(vec![]));
            }
            ids
        }
        None => vec![],
    };
    group_members(store, &spec.group, &ids).await
}

/// The devices of a group (in id order), only those of these templates unless there are none.
pub async fn group_members(
    store: &Store,
    group: &str,
    templates: &[String],
) -> flotilla_store::Result<Members> {
    let Some(group) = store.device_group(group).await? else {
        return Ok(Err(format!("the device group '{group}' no longer exists")));
    };
    let filter = match flotilla_filter::parse(&group.filter) {
        Ok(filter) => filter,
        Err(e) => return Ok(Err(format!("the device group's filter is invalid: {e}"))),
    };
    match store.device_ids_matching(&filter, templates).await {
        Ok(devices) => Ok(Ok(devices)),
        // Retrying each pass would leave the job pending forever.
        Err(e) if e.is_permanent() => {
            Ok(Err(format!("the device group could not be evaluated: {e}")))
        }
        Err(e) => Err(e),
    }
}
