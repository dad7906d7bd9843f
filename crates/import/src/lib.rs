//! `flotilla import`: reads an IoT Central application through its 2022-07-31 REST API (or a
//! Flotilla serving it) and writes it into this server's database, keeping every id and key, so
//! that a device only changes the host it dials. Safe to run again: each resource is compared
//! with what the database holds and created, updated or left unchanged (docs/api-behaviour.md,
//! "Importing from IoT Central").

mod client;
mod device_move;
mod devices;
mod jobs_history;
mod report;
mod resources;

pub use client::{Client, ClientError};
pub use device_move::{Fate, MoveError, MoveOptions, MoveReport, run as run_move};
pub use report::{Counts, Kind, Note, Outcome, Progress, Report};

use flotilla_store::{Store, StoreError};

/// Ends a kind of resource: every one is counted. A list whose `nextLink` leads away from the
/// source fails the kind (counted failed, with the reason) and the import goes on with the
/// others: what the pages before it held is imported, what follows is not.
fn finish<T: Default>(
    kind: Kind,
    done: Result<T, ImportError>,
    report: &mut Report,
) -> Result<T, ImportError> {
    let done = match done {
        Err(ImportError::Source(error @ ClientError::ForeignNextLink { .. })) => {
            report.fail_list(
                kind,
                format!("{error}; the rest of the list is not imported"),
            );
            Ok(T::default())
        }
        done => done,
    };
    report.finished(kind);
    done
}

/// What an import does besides reading everything.
#[derive(Clone, Default)]
pub struct Options {
    /// Write nothing; the report says what a run would do.
    pub plan: bool,
    /// Only the devices of this device group (templates and groups are all imported).
    pub group: Option<String>,
    /// Enable the scheduled jobs the source has enabled (by default they are imported disabled,
    /// so no occurrence fires on both sides; one enabled here stays enabled either way).
    pub enable_schedules: bool,
    /// Also the jobs history: each finished job with its devices' outcomes, as records.
    pub with_jobs: bool,
    /// Told of each resource as it is counted (the binary's bars or lines).
    pub progress: Option<std::sync::Arc<dyn Progress>>,
}

/// What stops an import as a whole (a single resource that fails is counted in the report).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the source: {0}")]
    Source(#[from] ClientError),
    #[error("writing the database: {0}")]
    Store(#[from] StoreError),
    #[error("the source has no device group {0}")]
    NoSuchGroup(String),
}

/// Imports the application `client` reads into `store`.
pub async fn run(client: &Client, store: &Store, options: &Options) -> Result<Report, ImportError> {
    // Before anything is written: an unknown group is a mistake in the command.
    if let Some(group) = &options.group {
        let path = format!("/deviceGroups/{}", client::segment(group));
        if client.get(&path, client::STABLE).await?.is_none() {
            return Err(ImportError::NoSuchGroup(group.clone()));
        }
    }
    let mut report = Report::with_progress(options.plan, options.progress.clone());
    let target = resources::Target {
        store,
        plan: options.plan,
    };
    let done = resources::templates(client, &target, &mut report).await;
    let templates = finish(Kind::DeviceTemplates, done, &mut report)?;
    let done = resources::enrollment_groups(client, &target, &mut report).await;
    let scope = finish(Kind::EnrollmentGroups, done, &mut report)?;
    let done = resources::device_groups(client, &target, &mut report).await;
    finish(Kind::DeviceGroups, done, &mut report)?;
    let mut device_scope = None;
    let group = options.group.as_deref();
    let done = devices::import(
        client,
        &target,
        group,
        &templates,
        &mut device_scope,
        &mut report,
    )
    .await;
    finish(Kind::Devices, done, &mut report)?;
    if let Some(scope) = scope.or(device_scope) {
        resources::take_id_scope(&target, &scope).await?;
    }
    let enable = options.enable_schedules;
    let done = resources::scheduled_jobs(client, &target, enable, &mut report).await;
    finish(Kind::ScheduledJobs, done, &mut report)?;
    if options.with_jobs {
        let done = jobs_history::import(client, &target, &mut report).await;
        finish(Kind::Jobs, done, &mut report)?;
    }
    let done = resources::api_tokens(client, &mut report).await;
    finish(Kind::ApiTokens, done, &mut report)?;
    Ok(report)
}
