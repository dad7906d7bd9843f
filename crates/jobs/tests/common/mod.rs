//! What the engine tests share: devices played by an in-memory bus on a real store, a fresh
//! database per test, the thermostat fleet they run jobs on, and waiting for a condition.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_bus::{
    BoxFuture, Delivery, DesiredPatch, DeviceBus, InvokeError, MethodCall, MethodResponse,
    ReportedChange, ReportedChanges,
};
use flotilla_model::device::Device;
use flotilla_model::device_group::DeviceGroup;
use flotilla_model::template::DeviceTemplate;
use flotilla_store::Store;
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub const TEMPLATE: &str = "dtmi:contoso:mythermostattemplate;1";

/// What a simulated device does with what it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Accepts every desired property (`ac` 200) and answers every method with 200.
    Acknowledges,
    /// Refuses every desired property (`ac` 400) and answers every method with 500.
    Refuses,
    /// Connected, but never acknowledges (until `release`) nor answers.
    NeverAnswers,
    Offline,
}

/// A bus whose devices live in memory. An acknowledgement is written to the store's twin, as
/// the gateway writes a device's reported patch, and then announced.
pub struct FakeBus {
    pub store: Store,
    devices: Mutex<HashMap<String, Behaviour>>,
    reported: broadcast::Sender<ReportedChange>,
    pub calls: Mutex<Vec<(String, MethodCall)>>,
    /// Every desired patch pushed, by device.
    pushed: Mutex<Vec<String>>,
    /// Patches a device that never answers holds, for `release`.
    held: Mutex<HashMap<String, Vec<DesiredPatch>>>,
}

impl FakeBus {
    pub fn behaviour(&self, device_id: &str) -> Behaviour {
        self.devices
            .lock()
            .unwrap()
            .get(device_id)
            .copied()
            .unwrap_or(Behaviour::Offline)
    }

    pub fn set_behaviour(&self, device_id: &str, behaviour: Behaviour) {
        self.devices
            .lock()
            .unwrap()
            .insert(device_id.to_string(), behaviour);
    }

    /// The device acknowledges the patches it held, and from now on acknowledges at once.
    pub async fn release(&self, device_id: &str) {
        let held = {
            let mut devices = self.devices.lock().unwrap();
            devices.insert(device_id.to_string(), Behaviour::Acknowledges);
            self.held.lock().unwrap().remove(device_id)
        };
        for patch in held.unwrap_or_default() {
            self.acknowledge(device_id, &patch, 200).await;
        }
    }

    pub fn pushes_to(&self, device_id: &str) -> usize {
        let pushed = self.pushed.lock().unwrap();
        pushed.iter().filter(|d| *d == device_id).count()
    }

    pub fn holds(&self, device_id: &str) -> bool {
        self.held.lock().unwrap().contains_key(device_id)
    }

    pub async fn acknowledge(&self, device_id: &str, patch: &DesiredPatch, code: i64) {
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
            self.pushed.lock().unwrap().push(device_id.to_string());
            let behaviour = {
                // Under the devices' lock, so that `release` sees every patch held before it.
                let devices = self.devices.lock().unwrap();
                let behaviour = devices
                    .get(device_id)
                    .copied()
                    .unwrap_or(Behaviour::Offline);
                if behaviour == Behaviour::NeverAnswers {
                    let mut held = self.held.lock().unwrap();
                    held.entry(device_id.to_string())
                        .or_default()
                        .push(patch.clone());
                }
                behaviour
            };
            match behaviour {
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

    fn is_connected<'a>(&'a self, device_id: &'a str) -> BoxFuture<'a, bool> {
        let connected = self.behaviour(device_id) != Behaviour::Offline;
        Box::pin(std::future::ready(connected))
    }

    fn disconnect(&self, _device_id: &str) {}

    fn reported_changes(&self) -> ReportedChanges {
        ReportedChanges::new(self.reported.subscribe())
    }
}

impl FakeBus {
    /// A bus for devices `d0`, `d1`, ... of `store`, one per behaviour given.
    pub fn new(store: &Store, behaviours: &[Behaviour]) -> Arc<FakeBus> {
        let devices = behaviours
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("d{i}"), *b))
            .collect();
        Arc::new(FakeBus {
            store: store.clone(),
            devices: Mutex::new(devices),
            reported: broadcast::channel(1024).0,
            calls: Mutex::new(Vec::new()),
            pushed: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The patches a device that never answers holds, taken (to be acknowledged elsewhere).
    pub fn take_held(&self, device_id: &str) -> Vec<DesiredPatch> {
        self.held
            .lock()
            .unwrap()
            .remove(device_id)
            .unwrap_or_default()
    }

    /// Every method call made, by device.
    pub fn calls_to(&self, device_id: &str) -> usize {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(d, _)| d == device_id).count()
    }
}

/// A fresh database, removed when the test ends: a SQLite file, or a new database on the
/// PostgreSQL server `FLOTILLA_TEST_POSTGRES` names.
pub struct TempDatabase {
    dir: PathBuf,
    url: String,
    /// The PostgreSQL server and the database's name.
    postgres: Option<(String, String)>,
}

impl TempDatabase {
    pub fn new(name: &str) -> TempDatabase {
        match std::env::var("FLOTILLA_TEST_POSTGRES") {
            Ok(server) => TempDatabase::on_postgres(name, &server),
            Err(_) => TempDatabase::sqlite(name),
        }
    }

    pub fn sqlite(name: &str) -> TempDatabase {
        let dir = temp_dir(name);
        let url = format!("sqlite://{}?mode=rwc", dir.join("flotilla.db").display());
        TempDatabase {
            dir,
            url,
            postgres: None,
        }
    }

    /// A database on the PostgreSQL server at `server` (no database in the URL).
    pub fn on_postgres(name: &str, server: &str) -> TempDatabase {
        let dir = temp_dir(name);
        let database = format!(
            "flotilla_engine_{}_{}",
            name.replace('-', "_"),
            flotilla_model::keys::random_hex::<6>()
        );
        psql(server, &format!("CREATE DATABASE {database}"));
        TempDatabase {
            dir,
            url: format!("{server}/{database}"),
            postgres: Some((server.to_string(), database)),
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flotilla-engine-{name}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((server, database)) = &self.postgres {
            psql(
                server,
                &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one statement against the `postgres` database of the server at `server`.
fn psql(server: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {sql}");
}

/// Stores the thermostat template, devices `d0` .. `d{count-1}` of it, and the group `all` of
/// every device.
pub async fn seed_fleet(store: &Store, count: usize) {
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
    for i in 0..count {
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
}

/// Waits (up to 5 s) until `probe` finds what it looks for, and returns it.
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
