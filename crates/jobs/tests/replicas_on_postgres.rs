//! Several replicas on one PostgreSQL database: each is a store of its own (its own replica
//! id, lease and group-commit writer) with an engine and a fake bus, as separate servers are.
//! Every device is worked once; a replica whose heartbeat stops is declared dead, its devices
//! are taken over (a property device without being pushed again), its sent commands fail as
//! interrupted; and a fenced (zombie) replica's writes have no effect.
//!
//! They run on the PostgreSQL server `FLOTILLA_TEST_POSTGRES` names, by default the local one
//! the suite starts (`postgres://postgres@127.0.0.1:5432`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Behaviour, FakeBus, TEMPLATE, TempDatabase, eventually, seed_fleet};
use flotilla_jobs::{Engine, EngineConfig};
use flotilla_model::job_state::{DeviceOutcome, DeviceStatus, FailureReason, JobEvent, JobStatus};
use flotilla_store::{JobDevice, JobRecord, ReplicaInfo, Store, StoreError};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Leases short enough for a test: a replica is declared dead 1 s after its last heartbeat.
const HEARTBEAT: Duration = Duration::from_millis(100);
const LEASE: Duration = Duration::from_secs(1);

fn database(name: &str) -> TempDatabase {
    let server = std::env::var("FLOTILLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    TempDatabase::on_postgres(name, &server)
}

/// Deadlines long enough that only a device's answer, or a takeover, ends it.
fn config(max_in_flight: usize) -> EngineConfig {
    EngineConfig {
        device_timeout: Duration::from_secs(30),
        command_response_timeout: Duration::from_secs(30),
        max_in_flight_per_job: max_in_flight,
        tick: Duration::from_millis(50),
        heartbeat: HEARTBEAT,
        lease: LEASE,
    }
}

/// One server: its store, registered among the replicas, its heartbeat (renew, then sweep, as
/// `flotilla::replica` does), its engine and its devices' bus.
struct Replica {
    store: Store,
    bus: Arc<FakeBus>,
    engine: Engine,
    heartbeat: JoinHandle<()>,
}

impl Replica {
    async fn start(url: &str, name: &str, behaviours: &[Behaviour], config: EngineConfig) -> Self {
        let store = Store::connect(url).await.unwrap();
        let info = ReplicaInfo {
            instance: name.to_string(),
            hostname: format!("{name}.example"),
        };
        store
            .register_replica_for(&info, config.lease)
            .await
            .unwrap();
        let heartbeat = tokio::spawn({
            let store = store.clone();
            async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    if store.heartbeat(LEASE).await.is_err() {
                        return;
                    }
                    let _ = store.sweep_dead_replicas(LEASE).await;
                }
            }
        });
        let bus = FakeBus::new(&store, behaviours);
        let engine = Engine::start(
            store.clone(),
            bus.clone(),
            tokio::runtime::Handle::current(),
            config,
        );
        Replica {
            store,
            bus,
            engine,
            heartbeat,
        }
    }

    async fn stop(&self) {
        self.heartbeat.abort();
        self.engine.stop().await;
    }
}

async fn create_job(store: &Store, id: &str, data: Value) {
    let definition = json!({"displayName": id, "group": "all", "data": data});
    let record = flotilla_jobs::service::new_job(id, definition, None);
    store.insert_job(&record).await.unwrap();
}

fn set_temperature(value: i64) -> Value {
    json!([{"type": "property", "target": TEMPLATE, "path": "targetTemperature", "value": value}])
}

fn get_report() -> Value {
    json!([{"type": "command", "target": TEMPLATE, "path": "getMaxMinReport",
            "value": "2024-05-01T00:00:00Z"}])
}

/// The job as stored now. Read past the store's job cache: another replica's writes do not
/// empty this one's cache (yet).
async fn job(store: &Store, id: &str) -> JobRecord {
    let jobs = store.jobs_with_status(JobStatus::ALL).await.unwrap();
    jobs.into_iter().find(|j| j.id == id).unwrap()
}

async fn finished(store: &Store, id: &str, within: Duration) -> JobRecord {
    let deadline = Instant::now() + within;
    loop {
        let job = job(store, id).await;
        if job.status.is_final() {
            return job;
        }
        if Instant::now() >= deadline {
            let unfinished: Vec<JobDevice> = devices(store, id)
                .await
                .into_iter()
                .filter(|d| d.status != DeviceStatus::Completed)
                .collect();
            panic!("job {id} did not end: {job:?}; unfinished: {unfinished:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The job's devices as stored now (past the cache too).
async fn devices(store: &Store, id: &str) -> Vec<JobDevice> {
    let mut devices = Vec::new();
    for status in DeviceStatus::ALL {
        devices.extend(
            store
                .job_devices_with_status(id, *status, 1000)
                .await
                .unwrap(),
        );
    }
    devices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_work_every_device_of_a_job_once() {
    use Behaviour::*;
    let database = database("two-replicas");
    let url = database.url();
    let seed = Store::connect(&url).await.unwrap();
    seed_fleet(&seed, 60).await;
    let fleet = [Acknowledges; 60];
    // Few in flight each, so the two take turns through the job.
    let a = Replica::start(&url, "a", &fleet, config(4)).await;
    let b = Replica::start(&url, "b", &fleet, config(4)).await;

    create_job(&a.store, "set", set_temperature(70)).await;
    create_job(&b.store, "run", get_report()).await;
    a.engine.wake();
    b.engine.wake();
    for id in ["set", "run"] {
        let job = finished(&a.store, id, Duration::from_secs(30)).await;
        assert_eq!(format!("{}", job.status), "complete", "{job:?}");
        assert_eq!((job.total, job.completed, job.failed), (60, 60, 0), "{id}");
        assert!(
            devices(&a.store, id)
                .await
                .iter()
                .all(|d| d.status == DeviceStatus::Completed)
        );
    }
    // Each device was pushed its patch once and sent its command once, by one of the two.
    let mut by_a = 0;
    for i in 0..60 {
        let device = format!("d{i}");
        let pushes = a.bus.pushes_to(&device) + b.bus.pushes_to(&device);
        let calls = a.bus.calls_to(&device) + b.bus.calls_to(&device);
        assert_eq!((pushes, calls), (1, 1), "{device}");
        by_a += a.bus.pushes_to(&device) + a.bus.calls_to(&device);
    }
    assert!(
        by_a > 0 && by_a < 120,
        "both replicas took part ({by_a} of 120 by a)"
    );
    a.stop().await;
    b.stop().await;
}

/// Replica a starts the job alone and works all 6 devices (which never answer it), until
/// `holds` says each device got what it was sent; then a's heartbeat stops (its engine runs on:
/// a zombie) and replica b starts, whose devices answer. Returns both, and when a stopped.
async fn zombie_and_successor(
    url: &str,
    data: Value,
    holds: impl Fn(&FakeBus, &str) -> bool,
) -> (Replica, Replica, Instant) {
    use Behaviour::*;
    let seed = Store::connect(url).await.unwrap();
    seed_fleet(&seed, 6).await;
    let a = Replica::start(url, "a", &[NeverAnswers; 6], config(10)).await;
    create_job(&a.store, "job", data).await;
    a.engine.wake();
    eventually("replica a to work every device", async || {
        (0..6)
            .all(|i| holds(&a.bus, &format!("d{i}")))
            .then_some(())
    })
    .await;
    a.heartbeat.abort();
    let stopped = Instant::now();
    let b = Replica::start(url, "b", &[Acknowledges; 6], config(10)).await;
    (a, b, stopped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_sent_commands_fail_as_interrupted_and_are_not_sent_again() {
    let database = database("takeover-commands");
    let (a, b, stopped) = zombie_and_successor(&database.url(), get_report(), |bus, device| {
        bus.calls_to(device) == 1
    })
    .await;
    // Within the lease and a few heartbeats, b has declared a dead and failed its commands.
    let job = finished(&b.store, "job", LEASE + Duration::from_secs(5)).await;
    assert!(
        stopped.elapsed() >= LEASE - HEARTBEAT,
        "declared dead before its lease ran out"
    );
    assert_eq!(format!("{}", job.status), "complete");
    assert_eq!((job.total, job.completed, job.failed), (6, 0, 6));
    for device in devices(&b.store, "job").await {
        assert_eq!(device.reason_code, Some(FailureReason::Interrupted));
        let reason = device.reason.unwrap();
        assert!(
            reason.contains("stopped before its answer") && reason.contains("not sent again"),
            "{reason}"
        );
        assert_eq!(b.bus.calls_to(&device.device_id), 0);
    }
    // The zombie noticed by its own clock: it writes nothing more.
    assert!(a.store.is_fenced());
    assert!(matches!(
        a.store.transition("job", &JobEvent::Stop).await,
        Err(StoreError::Fenced)
    ));
    a.engine.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_property_devices_are_taken_over_without_a_second_push() {
    let database = database("takeover-properties");
    let (a, b, stopped) =
        zombie_and_successor(&database.url(), set_temperature(72), |bus, device| {
            bus.holds(device)
        })
        .await;
    // The devices move to b and acknowledge the patch a pushed; b takes the job's devices
    // over (they keep their desired version) and counts them, without pushing again.
    for i in 0..6 {
        let device = format!("d{i}");
        for patch in a.bus.take_held(&device) {
            b.bus.acknowledge(&device, &patch, 200).await;
        }
    }
    let job = finished(&b.store, "job", LEASE + Duration::from_secs(5)).await;
    assert!(
        stopped.elapsed() >= LEASE - HEARTBEAT,
        "declared dead before its lease ran out"
    );
    assert_eq!(format!("{}", job.status), "complete");
    assert_eq!((job.total, job.completed, job.failed), (6, 6, 0));
    for i in 0..6 {
        assert_eq!(b.bus.pushes_to(&format!("d{i}")), 0);
    }
    assert!(a.store.is_fenced());
    a.engine.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_connects_to_another_replica_is_worked_there() {
    use Behaviour::*;
    let database = database("adoption");
    let url = database.url();
    seed_fleet(&Store::connect(&url).await.unwrap(), 2).await;
    // a pushes both patches; the devices never answer it.
    let a = Replica::start(&url, "a", &[NeverAnswers; 2], config(10)).await;
    create_job(&a.store, "job", set_temperature(75)).await;
    a.engine.wake();
    eventually("replica a to push both patches", async || {
        (a.bus.holds("d0") && a.bus.holds("d1")).then_some(())
    })
    .await;
    // d0 reconnects to b (as the presence layer records it) and b adopts its job device.
    let b = Replica::start(&url, "b", &[Acknowledges; 2], config(10)).await;
    connection_row(&url, "d0", b.store.replica().as_str()).await;
    assert_eq!(b.store.adopt_job_devices(&["d0"]).await.unwrap(), 1);
    for patch in a.bus.take_held("d0") {
        b.bus.acknowledge("d0", &patch, 200).await;
    }
    // b finishes d0 without pushing again; a, alive, keeps d1 (its connection is not b's).
    eventually("b to complete d0", async || {
        let done = devices(&b.store, "job").await;
        done.iter()
            .any(|d| d.device_id == "d0" && d.status == DeviceStatus::Completed)
            .then_some(())
    })
    .await;
    assert_eq!(b.bus.pushes_to("d0"), 0);
    let job = job(&b.store, "job").await;
    assert_eq!((job.completed, job.failed), (1, 0));
    let d1 = devices(&b.store, "job").await;
    assert!(
        d1.iter()
            .any(|d| d.device_id == "d1" && d.status == DeviceStatus::Running)
    );
    a.stop().await;
    b.stop().await;
}

/// Records that `device` is connected to `replica`, as the presence layer does on CONNECT.
async fn connection_row(url: &str, device: &str, replica: &str) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO device_connections (device_id, replica_id, connection_id, since_ms) \
         VALUES ($1, $2, 1, 0)",
    )
    .bind(device)
    .bind(replica)
    .execute(&mut connection)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_declared_dead_cannot_touch_the_devices_it_worked() {
    let database = database("zombie");
    let url = database.url();
    let seed = Store::connect(&url).await.unwrap();
    seed_fleet(&seed, 2).await;
    // a's own lease is long, so only the owner checks stop its writes; no engine runs, the
    // test writes as a's device tasks would.
    let a = Store::connect(&url).await.unwrap();
    let info = |name: &str| ReplicaInfo {
        instance: name.to_string(),
        hostname: name.to_string(),
    };
    a.register_replica_for(&info("a"), Duration::from_secs(60))
        .await
        .unwrap();
    create_job(&a, "set", set_temperature(73)).await;
    let ids = ["d0".to_string(), "d1".to_string()];
    let deadline = jiff::Timestamp::now().as_millisecond() + 60_000;
    assert!(
        a.start_job("set", &ids, 2, &[0, 1], deadline)
            .await
            .unwrap()
    );
    a.note_job_device("set", "d0", Some(2), false)
        .await
        .unwrap();

    // b declares a dead (a short lease, by b's judgement); a's devices are released.
    let b = Store::connect(&url).await.unwrap();
    b.register_replica_for(&info("b"), LEASE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.heartbeat(LEASE).await.unwrap();
    let dead = b
        .sweep_dead_replicas(Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(dead, vec![a.replica().clone()]);
    let claimed = b.claim_orphaned_job_devices("set", 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        claimed[0].desired_version,
        Some(2),
        "kept its desired version"
    );

    // a, unaware, tries to note a command as sent and to finish: no effect.
    assert!(!a.note_job_device("set", "d1", None, true).await.unwrap());
    let finish = a
        .finish_job_device("set", "d0", DeviceOutcome::Completed, None, None, None)
        .await
        .unwrap();
    assert!(!finish.counted);
    let desired = a
        .patch_desired_for("d1", &json!({"targetTemperature": 1}), Some("set"))
        .await;
    assert!(
        matches!(desired, Err(StoreError::NotOwner(_))),
        "{desired:?}"
    );
    // Its next heartbeat finds it dead: fenced for good.
    assert!(matches!(
        a.heartbeat(Duration::from_secs(60)).await,
        Err(StoreError::Fenced)
    ));
    assert!(matches!(
        a.transition("set", &JobEvent::Stop).await,
        Err(StoreError::Fenced)
    ));
    let job = job(&b, "set").await;
    assert_eq!((job.completed, job.failed), (0, 0));
    let rows = devices(&b, "set").await;
    assert!(
        rows.iter()
            .all(|d| d.status == DeviceStatus::Running && !d.sent)
    );
    // b, the owner now, finishes them.
    for device in &ids {
        let finish = b
            .finish_job_device("set", device, DeviceOutcome::Completed, None, None, None)
            .await
            .unwrap();
        assert!(finish.counted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_did_not_renew_its_lease_in_time_writes_nothing() {
    let database = database("lapsed");
    let url = database.url();
    seed_fleet(&Store::connect(&url).await.unwrap(), 1).await;
    let a = Store::connect(&url).await.unwrap();
    let info = ReplicaInfo {
        instance: "a".into(),
        hostname: "a".into(),
    };
    a.register_replica_for(&info, Duration::from_millis(300))
        .await
        .unwrap();
    create_job(&a, "set", set_temperature(74)).await;
    // As if paused past its lease (no heartbeat ran): by its own clock it is a zombie, though
    // nobody declared it dead yet.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let devices = ["d0".to_string()];
    let started = a.start_job("set", &devices, 1, &[0], 0).await;
    assert!(matches!(started, Err(StoreError::Fenced)), "{started:?}");
    let reported = a.patch_reported("d0", &json!({"x": 1})).await;
    assert!(matches!(reported, Err(StoreError::Fenced)), "{reported:?}");
    assert!(matches!(
        a.heartbeat(Duration::from_secs(60)).await,
        Err(StoreError::Fenced)
    ));
    let b = Store::connect(&url).await.unwrap();
    assert_eq!(format!("{}", job(&b, "set").await.status), "pending");
}
