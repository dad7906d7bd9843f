//! The test harness: runs the real `flotilla` binary on a free port with its own data dir, and
//! talks to it over HTTP like any client would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const STABLE: &str = "2022-07-31";
pub const PREVIEW: &str = "2022-10-31-preview";

/// The temperature controller template's id, and the Postman thermostat's.
pub const CONTROLLER: &str = "dtmi:contoso:temperaturecontroller;1";
pub const THERMOSTAT: &str = "dtmi:contoso:mythermostattemplate;1";

pub const ADMINISTRATOR: &str = "ca310b8d-2f4a-44e0-a36e-957c202cd8d4";
pub const BUILDER: &str = "344138e9-8de4-4497-8c54-5237e96d6aaf";
pub const OPERATOR: &str = "ae2c9854-393b-4f97-8c42-479d70ce626e";

/// A running server, killed and its data dir removed when dropped.
///
/// With `FLOTILLA_TEST_POSTGRES` set to a server URL (e.g. `postgres://postgres@127.0.0.1:5432`),
/// each server gets a fresh PostgreSQL database instead of SQLite, dropped afterwards: the same
/// tests then check the PostgreSQL side of the store.
pub struct Server {
    child: Option<Child>,
    postgres: Option<(String, String)>,
    pub data_dir: PathBuf,
    pub base: String,
    pub admin_token: String,
    extra_env: Vec<(String, String)>,
    /// Where the server's stderr (its log) goes: a file in the data dir, or the test's stderr.
    log_file: Option<PathBuf>,
    /// The open files the server process may hold (soft and hard limit), when lowered.
    open_file_limit: Option<u64>,
}

/// How a test server's process is started, beyond its environment.
#[derive(Default)]
struct Launch {
    /// Its stderr (its log) into a file in the data dir that `Server::log` reads.
    capture_log: bool,
    /// A lowered open-file limit.
    open_file_limit: Option<u64>,
    /// A database URL the server shares with others, instead of a database of its own.
    shared_database: Option<String>,
}

pub fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flotilla-test-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A clock file a server goes by instead of the system's time (`FLOTILLA_CLOCK_FILE`), in a
/// folder of its own, removed when the clock is dropped.
pub struct TestClock {
    path: PathBuf,
}

impl TestClock {
    pub fn at(at: &str) -> TestClock {
        let clock = TestClock {
            path: fresh_dir().join("clock"),
        };
        clock.set(at);
        clock
    }

    /// Sets the time: written beside the file and renamed, so that no server reads half of it.
    pub fn set(&self, at: &str) {
        let sibling = self.path.with_extension("next");
        std::fs::write(&sibling, format!("{at}\n")).unwrap();
        std::fs::rename(&sibling, &self.path).unwrap();
    }

    /// The server's environment entry that names this clock.
    pub fn env(&self) -> (&'static str, &str) {
        ("FLOTILLA_CLOCK_FILE", self.path.to_str().unwrap())
    }
}

impl Drop for TestClock {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Server {
    /// Starts a server on an empty data dir.
    pub async fn start() -> Server {
        Self::start_with_env(&[]).await
    }

    /// Starts a server with extra environment variables (e.g. `FLOTILLA_ADMIN_TOKEN`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Server {
        Self::start_configured(env, Launch::default()).await
    }

    /// Starts a server whose log goes to a file that `log` reads (not to the test's stderr).
    pub async fn start_logging(env: &[(&str, &str)]) -> Server {
        let launch = Launch {
            capture_log: true,
            ..Launch::default()
        };
        Self::start_configured(env, launch).await
    }

    /// Starts a server whose process may hold at most `limit` open files (soft and hard limit),
    /// so that tests of connection limits reach them with a few hundred sockets.
    pub async fn start_with_open_file_limit(limit: u64, env: &[(&str, &str)]) -> Server {
        let launch = Launch {
            open_file_limit: Some(limit),
            ..Launch::default()
        };
        Self::start_configured(env, launch).await
    }

    /// Starts a server, its log captured as `start_logging`'s, on a database that other servers
    /// share (cluster mode): the database is the caller's to drop.
    pub async fn start_sharing(database_url: &str, env: &[(&str, &str)]) -> Server {
        let launch = Launch {
            capture_log: true,
            shared_database: Some(database_url.to_string()),
            ..Launch::default()
        };
        Self::start_configured(env, launch).await
    }

    async fn start_configured(env: &[(&str, &str)], launch: Launch) -> Server {
        let data_dir = fresh_dir();
        let postgres = match launch.shared_database {
            Some(_) => None,
            None => fresh_postgres(&data_dir),
        };
        let mut server = Server {
            child: None,
            postgres,
            log_file: launch.capture_log.then(|| data_dir.join("server.log")),
            data_dir,
            base: String::new(),
            admin_token: String::new(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(
                    launch
                        .shared_database
                        .map(|url| ("FLOTILLA_DATABASE_URL".to_string(), url)),
                )
                .collect(),
            open_file_limit: launch.open_file_limit,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let addr_file = self.data_dir.join("http.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut command = serve_command(&self.data_dir);
        command
            .env("FLOTILLA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(match &self.log_file {
                Some(path) => std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap()
                    .into(),
                None => Stdio::inherit(),
            });
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        if let Some((url, name)) = &self.postgres {
            command.env("FLOTILLA_DATABASE_URL", format!("{url}/{name}"));
        }
        if let Some(limit) = self.open_file_limit {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("the flotilla binary starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                self.base = format!("http://{addr}");
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("flotilla exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "flotilla did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Ok(token) = std::fs::read_to_string(self.data_dir.join("admin-token")) {
            self.admin_token = token;
        }
    }

    /// Stops the server (SIGKILL) and starts it again on the same data dir.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Whether the server runs (it was not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// How the server's process ended, if it has (by itself: `kill` forgets the process).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().unwrap())
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client with the administrator token, speaking the stable version.
    pub fn admin(&self) -> Api {
        self.client(&self.admin_token)
    }

    /// A client with the given token value, speaking the stable version.
    pub fn client(&self, token: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: Some(token.to_string()),
            version: Some(STABLE.to_string()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What the server has logged so far (started with `start_logging`).
    pub fn log(&self) -> String {
        let path = self
            .log_file
            .as_ref()
            .expect("a server started with start_logging");
        std::fs::read_to_string(path).unwrap()
    }

    /// The server's database (its SQLite file, or its PostgreSQL database), for tests that
    /// reach past the API.
    pub fn database_url(&self) -> String {
        match &self.postgres {
            Some((url, name)) => format!("{url}/{name}"),
            None => format!("sqlite://{}", self.data_dir.join("flotilla.db").display()),
        }
    }

    /// The server process's id (to read its `/proc` status).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }
}

/// `flotilla serve` on free loopback ports with its data dir, and with neither an admin token
/// nor a database URL from the test's own environment.
pub fn serve_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FLOTILLA_ADMIN_TOKEN")
        .env_remove("FLOTILLA_DATABASE_URL");
    command
}

/// With `FLOTILLA_TEST_POSTGRES` set, a fresh PostgreSQL database named after `dir`: the
/// server's URL and the database's name.
pub fn fresh_postgres(dir: &Path) -> Option<(String, String)> {
    std::env::var("FLOTILLA_TEST_POSTGRES").ok().map(|url| {
        let name = format!(
            "flotilla_test_{}",
            dir.file_name().unwrap().to_str().unwrap().replace('-', "_")
        );
        psql(&url, &format!("CREATE DATABASE {name}"));
        (url, name)
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some((url, name)) = &self.postgres {
            psql(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

pub use flotilla_testkit::psql;

/// The PostgreSQL server cluster tests use when `FLOTILLA_TEST_POSTGRES` is not set.
pub const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// A fresh PostgreSQL database that several servers share (`Server::start_sharing`), dropped
/// at the end; drop the servers first.
pub struct SharedDatabase {
    server: String,
    name: String,
}

impl SharedDatabase {
    /// On the server `FLOTILLA_TEST_POSTGRES` names, or the local one.
    pub fn fresh() -> SharedDatabase {
        let server =
            std::env::var("FLOTILLA_TEST_POSTGRES").unwrap_or_else(|_| LOCAL_POSTGRES.into());
        let name = format!(
            "flotilla_cluster_{}",
            flotilla_model::keys::random_hex::<8>()
        );
        psql(&server, &format!("CREATE DATABASE {name}"));
        SharedDatabase { server, name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// An HTTP client of the API: adds the token and the api-version to every request.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub version: Option<String>,
}

/// A response: status, headers and the body parsed as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Api {
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    pub fn with_version(&self, version: Option<&str>) -> Api {
        Api {
            version: version.map(str::to_string),
            ..self.clone()
        }
    }

    pub fn preview(&self) -> Api {
        self.with_version(Some(PREVIEW))
    }

    /// The full URL of an API path (relative to `/api`), with the api-version added.
    pub fn url(&self, path: &str) -> String {
        let mut url = format!("{}/api{}", self.base, path);
        if let Some(version) = &self.version {
            url.push(if path.contains('?') { '&' } else { '?' });
            url.push_str("api-version=");
            url.push_str(version);
        }
        url
    }

    /// A request builder with the token set, for requests the helpers below don't cover.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_url(method, &self.url(path))
    }

    pub fn request_url(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.header("Authorization", token),
            None => builder,
        }
    }

    pub async fn send(builder: reqwest::RequestBuilder) -> Resp {
        let response = builder.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        Self::send(self.request(Method::GET, path)).await
    }

    /// GETs an absolute URL as it is (a `nextLink`).
    pub async fn get_url(&self, url: &str) -> Resp {
        Self::send(self.request_url(Method::GET, url)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        Self::send(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        Self::send(self.request(Method::PATCH, path).json(&body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        Self::send(self.request(Method::POST, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        Self::send(self.request(Method::DELETE, path)).await
    }

    /// Every item of a list, following `nextLink`s; also returns how many pages there were.
    pub async fn list_all(&self, path: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut response = self.get(path).await;
        loop {
            response.ok(200);
            pages += 1;
            items.extend(response.body["value"].as_array().unwrap().iter().cloned());
            match response.body.get("nextLink").and_then(Value::as_str) {
                Some(next) => response = self.get_url(next).await,
                None => break,
            }
            assert!(pages < 10_000, "nextLink loops");
        }
        (items, pages)
    }

    /// Creates an API token with one role and returns its value.
    pub async fn create_token(&self, id: &str, role: &str) -> String {
        let response = self
            .put(
                &format!("/apiTokens/{id}"),
                serde_json::json!({"roles": [{"role": role}]}),
            )
            .await;
        response.ok(200);
        response.body["token"].as_str().unwrap().to_string()
    }

    /// Publishes one of the fixture templates.
    pub async fn publish_template(&self, id: &str, body: Value) -> Resp {
        let path = format!("/deviceTemplates/{}", encode(id));
        let response = self.put(&path, body).await;
        response.ok(200);
        response
    }
}

impl Resp {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text
        );
        &self.body
    }

    /// Asserts an IoT Central error: the status, `error.code`, the `x-ms-error-code` header, and
    /// the other fields of the shape. Returns the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text
        );
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "{}", self.text);
        assert_eq!(
            self.headers
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok()),
            Some(code)
        );
        assert!(error["requestId"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(error["time"].as_str().is_some_and(|s| s.ends_with(" GMT")));
        let message = error["message"].as_str().expect("a message").to_string();
        assert!(!message.is_empty());
        message
    }
}

/// Percent-encodes a path segment (DTMIs hold ';' and ':').
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn controller_template() -> Value {
    fixture("temperature-controller.template.json")
}

pub fn thermostat_template() -> Value {
    fixture("thermostat.template.json")
}

/// The temperature controller template, one device of it (`dev-1`) and a group of every device
/// (`all`).
pub async fn one_controller_in_group_all(api: &Api) {
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.put(
        "/devices/dev-1",
        serde_json::json!({"template": CONTROLLER}),
    )
    .await
    .ok(200);
    api.put(
        "/deviceGroups/all",
        serde_json::json!({"displayName": "All", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
}

/// `flotilla sim` for `devices` thermostats named `{prefix}00000...`, provisioned through the
/// server's DPS (with the thermostat's model id, so they get its template) and trusting its CA;
/// quiet, and killed when dropped. The caller adds flags and spawns it.
pub async fn sim_command(
    server: &Server,
    api: &Api,
    devices: usize,
    prefix: &str,
) -> tokio::process::Command {
    let addr = std::fs::read_to_string(server.data_dir().join("mqtt.addr")).unwrap();
    let port = addr.trim().parse::<std::net::SocketAddr>().unwrap().port();
    let group = api.get("/enrollmentGroups/sas-iot-devices").await;
    let group = group.ok(200).clone();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["sim", "--server", "127.0.0.1", "--progress-secs", "0"])
        .args(["--devices", &devices.to_string(), "--prefix", prefix])
        .args(["--port", &port.to_string(), "--model", THERMOSTAT])
        .args(["--id-scope", group["idScope"].as_str().unwrap()])
        .args([
            "--group-key",
            group["attestation"]["symmetricKey"]["primaryKey"]
                .as_str()
                .unwrap(),
        ])
        .arg("--data-dir")
        .arg(server.data_dir())
        .env("FLOTILLA_LOG", "warn")
        .kill_on_drop(true)
        .stdout(Stdio::null());
    command
}

/// Waits (up to 30 s) until the job reaches one of `statuses`, and returns it.
pub async fn wait_job(api: &Api, job: &str, statuses: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = api.get(&format!("/jobs/{job}")).await;
        if response.status == 200 && statuses.iter().any(|s| response.body["status"] == *s) {
            return response.body;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} did not reach {statuses:?}: {} {}",
            response.status,
            response.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Through `api`: runs a simulated thermostat's `getMaxMinReport` command (waiting up to 15 s for
/// the device to connect) and writes its `targetTemperature`, waiting for the acknowledgement.
/// Returns the command's response code and the acknowledgement's code.
pub async fn thermostat_round_trip(api: &Api, id: &str) -> (Value, Value) {
    let ran = api
        .post(
            &format!("/devices/{id}/commands/getMaxMinReport"),
            serde_json::json!({"connectionTimeout": 15, "request": "2026-01-01T00:00:00Z"}),
        )
        .await;
    let ran = ran.ok(201);
    assert_eq!(ran["response"]["method"], "getMaxMinReport", "{ran}");
    assert_eq!(ran["response"]["request"], "2026-01-01T00:00:00Z", "{ran}");

    api.patch(
        &format!("/devices/{id}/properties"),
        serde_json::json!({"targetTemperature": 21.5}),
    )
    .await
    .ok(202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ack = loop {
        let view = api.get(&format!("/devices/{id}/properties")).await;
        let meta = view.ok(200)["$metadata"]["targetTemperature"].clone();
        if meta.get("ackCode").is_some() {
            break meta;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never acknowledged: {}",
            view.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ack["ackVersion"], ack["desiredVersion"], "{id}: {ack}");
    assert_eq!(ack["desiredValue"], 21.5, "{id}: {ack}");
    (ran["responseCode"].clone(), ack["ackCode"].clone())
}

/// Waits (up to a minute) until the job reaches one of `statuses`, and returns it.
pub async fn wait_for(api: &Api, job: &str, statuses: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = api.get(&format!("/jobs/{job}")).await.ok(200).clone();
        if statuses.iter().any(|s| body["status"] == *s) {
            return body;
        }
        assert!(Instant::now() < deadline, "job {job} stuck: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The columns of a job's device export (`GET /jobs/{id}/devices` as CSV or NDJSON), in order.
pub const EXPORT_COLUMNS: [&str; 8] = [
    "id",
    "status",
    "reasonCode",
    "reason",
    "responseCode",
    "attempts",
    "start",
    "end",
];
