//! The real engine on a real store (SQLite in a temporary file), with devices played by an
//! in-memory bus: each device acknowledges, refuses, never answers, or is offline. The engine's
//! deadlines follow the wall clock (they are stored with each device), so these tests give it
//! deadlines of a few hundred milliseconds rather than pausing tokio's clock; a paused clock
//! would also fire the database pool's own timeouts while a query runs on its worker thread.
//! Assertions are on what the REST API shows: the job's status and counts, and each device's.
//!
//! Every move of the transition table (`flotilla_model::job_state`) is made here through the
//! engine, at least in the test named:
//!
//! | status    | event                      | to        | test                                           |
//! |-----------|----------------------------|-----------|------------------------------------------------|
//! | pending   | start                      | running   | `a_property_job_completes_when_every_device_acknowledges` (and all) |
//! | pending   | stop                       | stopped   | `a_job_stopped_before_it_starts_resumes_to_pending_and_then_runs` |
//! | running   | stop                       | stopped   | `a_stopped_job_lets_devices_in_flight_finish_and_resumes_where_it_stopped` |
//! | stopped   | resume (started)           | running   | `a_stopped_job_lets_devices_in_flight_finish_and_resumes_where_it_stopped` |
//! | stopped   | resume (not started)       | pending   | `a_job_stopped_before_it_starts_resumes_to_pending_and_then_runs` |
//! | stopped   | rerun (a new job)          | stopped   | `a_stopped_job_lets_devices_in_flight_finish_and_resumes_where_it_stopped` |
//! | complete  | rerun (a new job)          | complete  | `a_rerun_runs_the_failed_devices_only_in_a_new_job` |
//! | cancelled | rerun (a new job)          | cancelled | `a_job_threshold_counts_failures_across_batches` |
//! | failed    | rerun (a new job)          | failed    | `a_running_job_whose_definition_no_longer_parses_after_a_restart_fails` |
//! | running   | complete                   | complete  | `a_property_job_completes_when_every_device_acknowledges` |
//! | pending   | fail                       | failed    | `a_job_whose_group_was_deleted_fails_to_start` |
//! | running   | fail                       | failed    | `a_running_job_whose_definition_no_longer_parses_after_a_restart_fails` |
//! | running   | cancel (job count)         | cancelled | `a_job_threshold_counts_failures_across_batches` |
//! | running   | cancel (batch percentage)  | cancelled | `a_batch_threshold_counts_failures_in_the_failed_device_s_batch` |
//! | stopped   | cancel (device in flight)  | cancelled | `a_device_in_flight_of_a_stopped_job_can_still_cancel_it` |
//!
//! Refused moves: rerun of a running job, rerun without failed devices
//! (`a_rerun_runs_the_failed_devices_only_in_a_new_job`), resume of a pending job
//! (`a_job_stopped_before_it_starts_resumes_to_pending_and_then_runs`).
//!
//! Devices: pending → running → completed or failed in every test (later batches wait
//! `pending` in the batch and threshold tests); the deadline passing
//! (`a_device_fails_when_its_deadline_passes_and_not_before`); recovery after a restart of
//! running devices of a running job (`a_restarted_engine_picks_up_running_devices_and_finishes_the_job`),
//! of a stopped job (`a_restarted_engine_finishes_the_devices_in_flight_of_a_stopped_job`), and of
//! a command already sent (`a_command_sent_before_a_restart_is_not_sent_again`); pending and
//! running devices failing with their job (`a_running_job_whose_definition_no_longer_parses_after_a_restart_fails`).

mod common;
use std::collections::HashMap;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Behaviour, FakeBus, TEMPLATE, TempDatabase, eventually, seed_fleet};
use flotilla_jobs::{Engine, EngineConfig, JobError};
use flotilla_model::job_state::{DeviceStatus, FailureReason, JobStatus};
use flotilla_store::{JobDevice, JobRecord, Store};
use serde_json::{Value, json};

/// A store with the thermostat template, one device per behaviour given (`d0`, `d1`, ...) and
/// a group of them all; the engine running on it with the fake bus.
struct Fixture {
    store: Store,
    bus: Arc<FakeBus>,
    engine: Engine,
    config: EngineConfig,
    _database: TempDatabase,
}

/// The engine's timings in these tests: deadlines of 300 ms.
fn config() -> EngineConfig {
    EngineConfig {
        device_timeout: Duration::from_millis(300),
        command_response_timeout: Duration::from_millis(200),
        tick: Duration::from_millis(50),
        ..Default::default()
    }
}

impl Fixture {
    async fn start(name: &str, behaviours: &[Behaviour]) -> Fixture {
        Fixture::start_with(name, behaviours, config()).await
    }

    async fn start_with(name: &str, behaviours: &[Behaviour], config: EngineConfig) -> Fixture {
        let database = TempDatabase::new(name);
        let store = Store::connect(&database.url()).await.unwrap();
        seed_fleet(&store, behaviours.len()).await;
        let bus = FakeBus::new(&store, behaviours);
        let engine = Engine::start(
            store.clone(),
            bus.clone(),
            tokio::runtime::Handle::current(),
            config.clone(),
        );
        Fixture {
            store,
            bus,
            engine,
            config,
            _database: database,
        }
    }

    /// Stops the engine, as a server stopping does (devices in flight stay `running`), and
    /// starts a new one on the same store and devices, as the next server start does.
    async fn restart(&mut self) {
        self.engine.stop().await;
        self.engine = Engine::start(
            self.store.clone(),
            self.bus.clone(),
            tokio::runtime::Handle::current(),
            self.config.clone(),
        );
    }

    /// Creates a job over the group, as `PUT /jobs/{id}` stores it, and wakes the engine.
    async fn create_job(&self, id: &str, data: Value) {
        self.create_job_with(id, json!({"data": data})).await;
    }

    /// Creates a job over the group with these fields beside its name and group (`data`,
    /// `batch`, `cancellationThreshold`).
    async fn create_job_with(&self, id: &str, fields: Value) {
        let mut definition = json!({"displayName": id, "group": "all"});
        for (name, value) in fields.as_object().unwrap() {
            definition[name] = value.clone();
        }
        let record = flotilla_jobs::service::new_job(id, definition, None);
        self.store.insert_job(&record).await.unwrap();
        self.engine.wake();
    }

    async fn job(&self, id: &str) -> JobRecord {
        self.store.job(id).await.unwrap().unwrap()
    }

    /// Waits (up to 5 s) for the job to end, and returns it.
    async fn finished(&self, id: &str) -> JobRecord {
        eventually(&format!("job {id} to end"), async || {
            let job = self.job(id).await;
            job.status.is_final().then_some(job)
        })
        .await
    }

    /// Waits (up to 5 s) for one of the job's devices to reach `status` (the job may not have
    /// started yet), and returns it.
    async fn device_reaches(
        &self,
        job_id: &str,
        device_id: &str,
        status: DeviceStatus,
    ) -> JobDevice {
        let what = format!("{device_id} of {job_id} to become {status}");
        eventually(&what, async || {
            let device = self.find_device(job_id, device_id).await;
            device.filter(|d| d.status == status)
        })
        .await
    }

    async fn find_device(&self, job_id: &str, device_id: &str) -> Option<JobDevice> {
        let page = self.store.job_devices(job_id, None, 100).await.unwrap();
        page.items.into_iter().find(|d| d.device_id == device_id)
    }

    async fn device(&self, job_id: &str, device_id: &str) -> JobDevice {
        self.find_device(job_id, device_id)
            .await
            .unwrap_or_else(|| panic!("{device_id} is not a device of {job_id}"))
    }

    /// The job's devices by id: (status, reason).
    async fn devices(&self, id: &str) -> HashMap<String, (String, Option<String>)> {
        let page = self.store.job_devices(id, None, 100).await.unwrap();
        page.items
            .into_iter()
            .map(|d: JobDevice| (d.device_id, (format!("{}", d.status), d.reason)))
            .collect()
    }

    /// The job's devices' statuses, in the job's order.
    async fn statuses(&self, id: &str) -> Vec<DeviceStatus> {
        let page = self.store.job_devices(id, None, 100).await.unwrap();
        page.items.into_iter().map(|d| d.status).collect()
    }

    /// Waits (up to 5 s) until the device holds a desired patch it will not acknowledge.
    async fn until_held(&self, device_id: &str) {
        let what = format!("{device_id} to be sent a patch");
        eventually(&what, async || self.bus.holds(device_id).then_some(())).await
    }
}

/// A status as the REST API spells it.
fn status(job: &JobRecord) -> String {
    format!("{}", job.status)
}

/// A property job's data: set the target temperature.
fn set_temperature(value: i64) -> Value {
    json!([{"type": "property", "target": TEMPLATE, "path": "targetTemperature", "value": value}])
}

/// Batches of `size` devices.
fn batches_of(size: u64) -> Value {
    json!({"type": "number", "value": size})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_job_completes_when_every_device_acknowledges() {
    use Behaviour::*;
    let fixture = Fixture::start("acknowledged", &[Acknowledges, Acknowledges, Acknowledges]).await;
    fixture
        .create_job(
            "set",
            json!([{"type": "property", "target": TEMPLATE, "path": "targetTemperature", "value": 55}]),
        )
        .await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (3, 3, 0));
    for (device, (status, _)) in fixture.devices("set").await {
        assert_eq!(status, "completed", "{device}");
        let twin = fixture.store.twin(&device).await.unwrap().unwrap();
        assert_eq!(twin.desired["targetTemperature"], 55, "{device}");
    }
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_refuse_never_acknowledge_or_are_offline_fail_the_property_job() {
    use Behaviour::*;
    let fixture = Fixture::start(
        "unacknowledged",
        &[Acknowledges, Refuses, NeverAnswers, Offline],
    )
    .await;
    let started = Instant::now();
    fixture
        .create_job(
            "set",
            json!([{"type": "property", "target": TEMPLATE, "path": "targetTemperature", "value": 60}]),
        )
        .await;
    let job = fixture.finished("set").await;
    // Whoever has not acknowledged fails at the deadline, not before.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (4, 1, 3));
    let devices = fixture.devices("set").await;
    let reason = |id: &str| {
        let (status, reason) = &devices[id];
        assert_eq!(status, "failed", "{id}");
        reason.clone().unwrap()
    };
    assert_eq!(devices["d0"].0, "completed");
    assert!(reason("d1").contains("refused"), "{}", reason("d1"));
    assert!(
        reason("d2").contains("did not acknowledge"),
        "{}",
        reason("d2")
    );
    assert!(reason("d3").contains("offline"), "{}", reason("d3"));
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_job_records_each_device_s_answer() {
    use Behaviour::*;
    let fixture = Fixture::start("command", &[Acknowledges, Refuses, NeverAnswers, Offline]).await;
    fixture
        .create_job(
            "run",
            json!([{"type": "command", "target": TEMPLATE, "path": "getMaxMinReport",
                    "value": "2024-05-01T00:00:00Z"}]),
        )
        .await;
    let job = fixture.finished("run").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (4, 1, 3));
    let devices = fixture.devices("run").await;
    assert_eq!(devices["d0"].0, "completed");
    let reason = |id: &str| devices[id].1.clone().unwrap_or_default();
    assert!(reason("d1").contains("status 500"), "{}", reason("d1"));
    assert!(reason("d2").contains("did not answer"), "{}", reason("d2"));
    assert!(reason("d3").contains("could not reach"), "{}", reason("d3"));
    // The offline device is never asked; the others are asked once, with the job's value.
    let calls = fixture.bus.calls.lock().unwrap().clone();
    let mut asked: Vec<&str> = calls.iter().map(|(device, _)| device.as_str()).collect();
    asked.sort();
    assert_eq!(asked, ["d0", "d1", "d2"]);
    for (_, call) in &calls {
        assert_eq!(call.method, "getMaxMinReport");
        assert_eq!(call.payload, "2024-05-01T00:00:00Z");
    }
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_fails_when_its_deadline_passes_and_not_before() {
    use Behaviour::*;
    let fixture = Fixture::start("deadline", &[NeverAnswers, Offline]).await;
    let started = Instant::now();
    fixture
        .create_job_with("set", json!({"data": set_temperature(61)}))
        .await;
    let waiting = fixture
        .device_reaches("set", "d0", DeviceStatus::Running)
        .await;
    assert!(waiting.deadline_ms.is_some(), "{waiting:?}");
    assert_eq!(status(&fixture.job("set").await), "running");
    let job = fixture.finished("set").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((job.total, job.completed, job.failed), (2, 0, 2));
    let connected = fixture.device("set", "d0").await;
    assert_eq!(connected.status, DeviceStatus::Failed);
    assert_eq!(
        connected.reason_code,
        Some(FailureReason::NoAcknowledgement)
    );
    let offline = fixture.device("set", "d1").await;
    assert_eq!(offline.reason_code, Some(FailureReason::Offline));
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_threshold_counts_failures_across_batches() {
    use Behaviour::*;
    let fixture = Fixture::start(
        "job-threshold",
        &[Refuses, Acknowledges, Refuses, Acknowledges],
    )
    .await;
    // Batches of one device: a per-batch count of 2 could never be reached, the job's is.
    fixture
        .create_job_with(
            "set",
            json!({
                "data": set_temperature(62),
                "batch": batches_of(1),
                "cancellationThreshold": {"type": "number", "value": 2, "batch": false},
            }),
        )
        .await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "cancelled");
    assert_eq!((job.total, job.completed, job.failed), (4, 1, 2));
    assert!(job.end_ms.is_some());
    assert_eq!(
        job.reason.as_deref(),
        Some("cancelled: 2 of the job's 4 devices failed, reaching the cancellation threshold")
    );
    use DeviceStatus::*;
    assert_eq!(
        fixture.statuses("set").await,
        [Failed, Completed, Failed, Pending]
    );

    // A rerun of the cancelled job runs its two failed devices, in a new job.
    fixture.bus.set_behaviour("d0", Acknowledges);
    fixture.bus.set_behaviour("d2", Acknowledges);
    let rerun = fixture.engine.rerun_job(&job, "again").await.unwrap();
    assert_eq!(rerun.rerun_of.as_deref(), Some("set"));
    let rerun = fixture.finished("again").await;
    assert_eq!(status(&rerun), "complete");
    assert_eq!((rerun.total, rerun.completed, rerun.failed), (2, 2, 0));
    assert_eq!(status(&fixture.job("set").await), "cancelled");
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_threshold_counts_failures_in_the_failed_device_s_batch() {
    use Behaviour::*;
    let fixture = Fixture::start(
        "batch-threshold",
        &[
            Acknowledges,
            Refuses,
            Refuses,
            Refuses,
            Acknowledges,
            Acknowledges,
        ],
    )
    .await;
    // 60% per batch of two: one failure (50%) is not enough, two (100%) are. Counted over the
    // job, three failures of six (50%) would never cancel it.
    fixture
        .create_job_with(
            "set",
            json!({
                "data": set_temperature(63),
                "batch": batches_of(2),
                "cancellationThreshold": {"type": "percentage", "value": 60, "batch": true},
            }),
        )
        .await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "cancelled");
    assert_eq!((job.total, job.completed, job.failed), (6, 1, 3));
    assert_eq!(
        job.reason.as_deref(),
        Some("cancelled: 2 of the batch's 2 devices failed, reaching the cancellation threshold")
    );
    use DeviceStatus::*;
    assert_eq!(
        fixture.statuses("set").await,
        [Completed, Failed, Failed, Failed, Pending, Pending]
    );
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_job_lets_devices_in_flight_finish_and_resumes_where_it_stopped() {
    use Behaviour::*;
    let fixture = Fixture::start("stop", &[NeverAnswers, NeverAnswers, Acknowledges]).await;
    fixture
        .create_job_with(
            "set",
            json!({"data": set_temperature(64), "batch": batches_of(1)}),
        )
        .await;
    fixture
        .device_reaches("set", "d0", DeviceStatus::Running)
        .await;
    fixture.engine.stop_job("set").await.unwrap();
    assert_eq!(status(&fixture.job("set").await), "stopped");
    // The device in flight finishes (at its deadline); the next batch does not start.
    fixture
        .device_reaches("set", "d0", DeviceStatus::Failed)
        .await;
    tokio::time::sleep(config().tick * 3).await;
    let stopped = fixture.job("set").await;
    assert_eq!(status(&stopped), "stopped");
    assert_eq!((stopped.completed, stopped.failed), (0, 1));
    use DeviceStatus::*;
    assert_eq!(fixture.statuses("set").await, [Failed, Pending, Pending]);
    assert!(matches!(
        fixture.engine.stop_job("set").await,
        Err(JobError::Illegal(_))
    ));

    // A stopped job can be rerun: the new job runs its failed device; the job stays stopped.
    fixture.bus.set_behaviour("d0", Acknowledges);
    fixture.engine.rerun_job(&stopped, "again").await.unwrap();
    let rerun = fixture.finished("again").await;
    assert_eq!(
        (status(&rerun).as_str(), rerun.total, rerun.completed),
        ("complete", 1, 1)
    );
    assert_eq!(status(&fixture.job("set").await), "stopped");

    fixture.engine.resume_job("set").await.unwrap();
    fixture
        .device_reaches("set", "d1", DeviceStatus::Running)
        .await;
    assert_eq!(status(&fixture.job("set").await), "running");
    fixture.until_held("d1").await;
    fixture.bus.release("d1").await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (3, 2, 1));
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_in_flight_of_a_stopped_job_can_still_cancel_it() {
    use Behaviour::*;
    let fixture = Fixture::start("stopped-cancel", &[NeverAnswers, Acknowledges]).await;
    fixture
        .create_job_with(
            "set",
            json!({
                "data": set_temperature(65),
                "batch": batches_of(1),
                "cancellationThreshold": {"type": "number", "value": 1, "batch": false},
            }),
        )
        .await;
    fixture
        .device_reaches("set", "d0", DeviceStatus::Running)
        .await;
    fixture.engine.stop_job("set").await.unwrap();
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "cancelled");
    assert_eq!((job.total, job.completed, job.failed), (2, 0, 1));
    use DeviceStatus::*;
    assert_eq!(fixture.statuses("set").await, [Failed, Pending]);
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_before_it_starts_resumes_to_pending_and_then_runs() {
    use Behaviour::*;
    let mut fixture = Fixture::start("stop-pending", &[Acknowledges, Acknowledges]).await;
    // With the engine stopped, the job stays pending as long as the test needs.
    fixture.engine.stop().await;
    fixture
        .create_job_with("set", json!({"data": set_temperature(66)}))
        .await;
    assert!(matches!(
        fixture.engine.resume_job("set").await,
        Err(JobError::Illegal(_))
    ));
    fixture.engine.stop_job("set").await.unwrap();
    let stopped = fixture.job("set").await;
    assert_eq!(
        (status(&stopped).as_str(), stopped.start_ms),
        ("stopped", None)
    );
    fixture.engine.resume_job("set").await.unwrap();
    assert_eq!(status(&fixture.job("set").await), "pending");

    fixture.restart().await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (2, 2, 0));
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_group_was_deleted_fails_to_start() {
    use Behaviour::*;
    let fixture = Fixture::start("no-group", &[Acknowledges]).await;
    fixture.store.delete_device_group("all").await.unwrap();
    fixture
        .create_job_with("set", json!({"data": set_temperature(67)}))
        .await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "failed");
    assert_eq!(
        job.reason.as_deref(),
        Some("the device group 'all' no longer exists")
    );
    assert_eq!((job.total, job.start_ms.is_some()), (0, false));
    assert!(job.end_ms.is_some());
    assert_eq!(fixture.bus.pushes_to("d0"), 0);
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_whose_definition_no_longer_parses_after_a_restart_fails() {
    use Behaviour::*;
    let mut fixture = Fixture::start("unparsable", &[Refuses, NeverAnswers]).await;
    fixture
        .create_job_with(
            "set",
            json!({"data": set_temperature(68), "batch": batches_of(1)}),
        )
        .await;
    fixture
        .device_reaches("set", "d1", DeviceStatus::Running)
        .await;
    // While the server is down, the job's target template goes (with its devices).
    fixture.engine.stop().await;
    for device in ["d0", "d1"] {
        fixture.store.delete_device(device).await.unwrap();
    }
    fixture.store.delete_template(TEMPLATE).await.unwrap();
    assert_eq!(status(&fixture.job("set").await), "running");
    fixture.restart().await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "failed");
    assert!(job.reason.is_some(), "{job:?}");
    // Its device in flight (d1) ends failed too, counted, with the reason: none stays running.
    let page = fixture.store.job_devices("set", None, 100).await.unwrap();
    for device in &page.items {
        assert_eq!(device.status, DeviceStatus::Failed, "{device:?}");
    }
    let d1 = page.items.iter().find(|d| d.device_id == "d1").unwrap();
    assert_eq!(d1.reason_code, Some(FailureReason::Interrupted), "{d1:?}");
    assert!(
        d1.reason.as_deref().unwrap().contains("the job failed"),
        "{d1:?}"
    );
    assert_eq!(job.failed, 2);

    // A failed job with failed devices can be rerun; this rerun cannot start either.
    fixture.engine.rerun_job(&job, "again").await.unwrap();
    let rerun = fixture.finished("again").await;
    assert_eq!(status(&rerun), "failed");
    assert_eq!(rerun.reason, job.reason);
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_runs_the_failed_devices_only_in_a_new_job() {
    use Behaviour::*;
    let fixture = Fixture::start("rerun", &[Refuses, Acknowledges, Refuses, NeverAnswers]).await;
    fixture
        .create_job_with("set", json!({"data": set_temperature(69)}))
        .await;
    fixture
        .device_reaches("set", "d3", DeviceStatus::Running)
        .await;
    let running = fixture.job("set").await;
    assert!(matches!(
        fixture.engine.rerun_job(&running, "too-early").await,
        Err(JobError::Illegal(_))
    ));
    fixture.bus.release("d3").await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (4, 2, 2));

    fixture.bus.set_behaviour("d0", Acknowledges);
    fixture.bus.set_behaviour("d2", Acknowledges);
    let created = fixture.engine.rerun_job(&job, "again").await.unwrap();
    assert_eq!(created.status, JobStatus::Pending);
    let rerun = fixture.finished("again").await;
    assert_eq!(status(&rerun), "complete");
    assert_eq!((rerun.total, rerun.completed, rerun.failed), (2, 2, 0));
    let mut rerun_devices: Vec<String> = fixture.devices("again").await.into_keys().collect();
    rerun_devices.sort();
    assert_eq!(rerun_devices, ["d0", "d2"]);
    assert_eq!(fixture.bus.pushes_to("d1"), 1);
    // The original is left as it was.
    let original = fixture.job("set").await;
    assert_eq!(
        (status(&original).as_str(), original.failed),
        ("complete", 2)
    );
    // Nothing failed in the rerun: nothing to rerun again.
    assert!(matches!(
        fixture.engine.rerun_job(&rerun, "once-more").await,
        Err(JobError::NoFailedDevices)
    ));
    assert!(fixture.store.job("too-early").await.unwrap().is_none());
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_picks_up_running_devices_and_finishes_the_job() {
    use Behaviour::*;
    // Deadlines far enough out that only the acknowledgement ends the device.
    let config = EngineConfig {
        device_timeout: Duration::from_secs(5),
        ..config()
    };
    let mut fixture = Fixture::start_with(
        "restart",
        &[NeverAnswers, Acknowledges, Acknowledges],
        config,
    )
    .await;
    fixture
        .create_job_with(
            "set",
            json!({"data": set_temperature(70), "batch": batches_of(1)}),
        )
        .await;
    fixture.until_held("d0").await;
    fixture.engine.stop().await;
    // As after a crash: the device stays running, the job too.
    let before = fixture.device("set", "d0").await;
    assert_eq!(before.status, DeviceStatus::Running);
    assert_eq!(status(&fixture.job("set").await), "running");

    fixture.restart().await;
    fixture.bus.release("d0").await;
    let job = fixture.finished("set").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (3, 3, 0));
    // The desired write made before the restart is not repeated; its deadline is kept.
    assert_eq!(fixture.bus.pushes_to("d0"), 1);
    assert_eq!(
        fixture.device("set", "d0").await.deadline_ms,
        before.deadline_ms
    );
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_finishes_the_devices_in_flight_of_a_stopped_job() {
    use Behaviour::*;
    let config = EngineConfig {
        device_timeout: Duration::from_secs(5),
        ..config()
    };
    let mut fixture =
        Fixture::start_with("restart-stopped", &[NeverAnswers, Acknowledges], config).await;
    fixture
        .create_job_with(
            "set",
            json!({"data": set_temperature(71), "batch": batches_of(1)}),
        )
        .await;
    fixture.until_held("d0").await;
    fixture.engine.stop_job("set").await.unwrap();
    fixture.restart().await;
    fixture.bus.release("d0").await;
    fixture
        .device_reaches("set", "d0", DeviceStatus::Completed)
        .await;
    let job = fixture.job("set").await;
    assert_eq!(status(&job), "stopped");
    assert_eq!((job.completed, job.failed), (1, 0));
    assert_eq!(
        fixture.device("set", "d1").await.status,
        DeviceStatus::Pending
    );
    fixture.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_before_a_restart_is_not_sent_again() {
    use Behaviour::*;
    let mut fixture = Fixture::start("restart-command", &[NeverAnswers]).await;
    fixture
        .create_job(
            "run",
            json!([{"type": "command", "target": TEMPLATE, "path": "getMaxMinReport",
                    "value": "2024-05-01T00:00:00Z"}]),
        )
        .await;
    eventually("the command to be sent", async || {
        let sent = !fixture.bus.calls.lock().unwrap().is_empty();
        sent.then_some(())
    })
    .await;
    fixture.restart().await;
    let job = fixture.finished("run").await;
    assert_eq!(status(&job), "complete");
    assert_eq!((job.total, job.completed, job.failed), (1, 0, 1));
    let device = fixture.device("run", "d0").await;
    assert_eq!(device.reason_code, Some(FailureReason::Interrupted));
    assert_eq!(fixture.bus.calls.lock().unwrap().len(), 1);
    fixture.engine.stop().await;
}
