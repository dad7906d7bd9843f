//! The real engine on a real store (SQLite in a temporary file), with devices played by an
//! in-memory bus: each device acknowledges, refuses, never answers, or is offline. The engine's
//! deadlines follow the wall clock (they are stored with each device), so these tests give it
//! deadlines of a few hundred milliseconds rather than pausing tokio's clock; a paused clock
//! would also fire the database pool's own timeouts while a query runs on its worker thread.
//! Assertions are on what the REST API shows: the job's status and counts, and each device's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_bus::{
    BoxFuture, Delivery, DesiredPatch, DeviceBus, InvokeError, MethodCall, MethodResponse,
    ReportedChange, ReportedChanges,
};
use flotilla_jobs::{Engine, EngineConfig};
use flotilla_model::device::Device;
use flotilla_model::device_group::DeviceGroup;
use flotilla_model::job_state::JobStatus;
use flotilla_model::template::DeviceTemplate;
use flotilla_store::{JobDevice, JobRecord, Store};
use serde_json::{Value, json};
use tokio::sync::broadcast;

const TEMPLATE: &str = "dtmi:contoso:mythermostattemplate;1";

/// What a simulated device does with what it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// Accepts every desired property (`ac` 200) and answers every method with 200.
    Acknowledges,
    /// Refuses every desired property (`ac` 400) and answers every method with 500.
    Refuses,
    /// Connected, but never acknowledges nor answers.
    NeverAnswers,
    Offline,
}

/// A bus whose devices live in memory. An acknowledgement is written to the store's twin, as
/// the gateway writes a device's reported patch, and then announced.
struct FakeBus {
    store: Store,
    devices: HashMap<String, Behaviour>,
    reported: broadcast::Sender<ReportedChange>,
    calls: Mutex<Vec<(String, MethodCall)>>,
}

impl FakeBus {
    fn behaviour(&self, device_id: &str) -> Behaviour {
        self.devices
            .get(device_id)
            .copied()
            .unwrap_or(Behaviour::Offline)
    }

    async fn acknowledge(&self, device_id: &str, patch: &DesiredPatch, code: i64) {
        let mut acks = serde_json::Map::new();
        for (name, value) in patch.message.as_object().unwrap() {
            if name != "$version" {
                acks.insert(
                    name.clone(),
                    json!({"value": value, "ac": code, "av": patch.version}),
                );
            }
        }
        let (version, reported) = self
            .store
            .patch_reported(device_id, &Value::Object(acks))
            .await
            .unwrap();
        let _ = self.reported.send(ReportedChange {
            device_id: device_id.to_string(),
            version,
            reported: Arc::new(reported),
        });
    }
}

impl DeviceBus for FakeBus {
    fn push_desired<'a>(
        &'a self,
        device_id: &'a str,
        patch: DesiredPatch,
    ) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            match self.behaviour(device_id) {
                Behaviour::Acknowledges => self.acknowledge(device_id, &patch, 200).await,
                Behaviour::Refuses => self.acknowledge(device_id, &patch, 400).await,
                Behaviour::NeverAnswers => {}
                Behaviour::Offline => return Delivery::NotSent,
            }
            Delivery::Sent
        })
    }

    fn invoke<'a>(
        &'a self,
        device_id: &'a str,
        call: MethodCall,
    ) -> BoxFuture<'a, Result<MethodResponse, InvokeError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((device_id.to_string(), call.clone()));
            let status = match self.behaviour(device_id) {
                Behaviour::Acknowledges => 200,
                Behaviour::Refuses => 500,
                Behaviour::NeverAnswers => {
                    tokio::time::sleep(call.response_timeout).await;
                    return Err(InvokeError::Timeout);
                }
                Behaviour::Offline => {
                    tokio::time::sleep(call.connect_timeout).await;
                    return Err(InvokeError::NotConnected);
                }
            };
            Ok(MethodResponse {
                status,
                payload: json!({"asked": call.payload}),
            })
        })
    }

    fn wait_until_reachable<'a>(
        &'a self,
        device_id: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<(), InvokeError>> {
        Box::pin(async move {
            if self.behaviour(device_id) == Behaviour::Offline {
                tokio::time::sleep(within).await;
                return Err(InvokeError::NotConnected);
            }
            Ok(())
        })
    }

    fn is_connected(&self, device_id: &str) -> bool {
        self.behaviour(device_id) != Behaviour::Offline
    }

    fn disconnect(&self, _device_id: &str) {}

    fn reported_changes(&self) -> ReportedChanges {
        ReportedChanges::new(self.reported.subscribe())
    }
}

/// A fresh database in a file of its own, removed when the test ends.
struct TempDatabase(PathBuf);

impl TempDatabase {
    fn new(name: &str) -> TempDatabase {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-engine-{name}-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDatabase(dir)
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.join("flotilla.db").display())
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store with the thermostat template, one device per behaviour given (`d0`, `d1`, ...) and
/// a group of them all; the engine running on it with the fake bus.
struct Fixture {
    store: Store,
    bus: Arc<FakeBus>,
    engine: Engine,
    _database: TempDatabase,
}

impl Fixture {
    async fn start(name: &str, behaviours: &[Behaviour]) -> Fixture {
        let database = TempDatabase::new(name);
        let store = Store::connect(&database.url()).await.unwrap();
        let body: Value = serde_json::from_str(
            &std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../fixtures/thermostat.template.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let template = DeviceTemplate::from_json(TEMPLATE, &body).unwrap();
        store.insert_template(&template, "t1").await.unwrap();
        let mut devices = HashMap::new();
        for (i, behaviour) in behaviours.iter().enumerate() {
            let id = format!("d{i}");
            let device = Device {
                id: id.clone(),
                etag: "e1".into(),
                display_name: id.clone(),
                template: Some(TEMPLATE.into()),
                enabled: true,
                provisioned: true,
                simulated: false,
                organizations: vec![],
            };
            store.insert_device(&device).await.unwrap();
            devices.insert(id, *behaviour);
        }
        let group = DeviceGroup {
            id: "all".into(),
            etag: "e1".into(),
            display_name: "All".into(),
            filter: "SELECT * FROM devices".into(),
            description: None,
            organizations: vec![],
        };
        store.insert_device_group(&group).await.unwrap();
        let bus = Arc::new(FakeBus {
            store: store.clone(),
            devices,
            reported: broadcast::channel(1024).0,
            calls: Mutex::new(Vec::new()),
        });
        let config = EngineConfig {
            device_timeout: Duration::from_millis(300),
            command_response_timeout: Duration::from_millis(200),
            tick: Duration::from_millis(50),
            ..Default::default()
        };
        let engine = Engine::start(
            store.clone(),
            bus.clone(),
            tokio::runtime::Handle::current(),
            config,
        );
        Fixture {
            store,
            bus,
            engine,
            _database: database,
        }
    }

    /// Creates a job over the group, as `PUT /jobs/{id}` stores it, and wakes the engine.
    async fn create_job(&self, id: &str, data: Value) {
        let record = JobRecord {
            id: id.to_string(),
            sort_key: format!("{:013}-{id}", jiff::Timestamp::now().as_millisecond()),
            scheduled_job_id: None,
            definition: json!({"displayName": id, "group": "all", "data": data}),
            status: JobStatus::Pending,
            reason: None,
            start_ms: None,
            end_ms: None,
            total: 0,
            completed: 0,
            failed: 0,
            batch_size: 0,
            rerun_of: None,
        };
        self.store.insert_job(&record).await.unwrap();
        self.engine.wake();
    }

    /// Waits (up to 5 s) for the job to end, and returns it.
    async fn finished(&self, id: &str) -> JobRecord {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let job = self.store.job(id).await.unwrap().unwrap();
            if ["complete", "failed", "cancelled"].contains(&status(&job).as_str()) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {job:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The job's devices by id: (status, reason).
    async fn devices(&self, id: &str) -> HashMap<String, (String, Option<String>)> {
        let page = self.store.job_devices(id, None, 100).await.unwrap();
        page.items
            .into_iter()
            .map(|d: JobDevice| (d.device_id, (format!("{}", d.status), d.reason)))
            .collect()
    }
}

/// A status as the REST API spells it.
fn status(job: &JobRecord) -> String {
    format!("{}", job.status)
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
