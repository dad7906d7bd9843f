//! The server process and its files: the data dir and the database are private to their owner
//! whatever the umask, one server at a time holds a data dir and a SQLite database (a PostgreSQL
//! database takes several), the admin token must be strong, secrets on the command line are
//! warned about, and SIGTERM stops the server cleanly in the middle of a job.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A strong administrator token, for the tests that supply one.
const STRONG_TOKEN: &str = "a-strong-administrator-token-of-48-characters-xx";

/// A test's places: a work dir for data dirs and logs, and a fresh PostgreSQL database when
/// `FLOTILLA_TEST_POSTGRES` is set (else each server uses SQLite in its data dir).
struct Setup {
    work: PathBuf,
    postgres: Option<(String, String)>,
}

impl Setup {
    fn new() -> Setup {
        let work = fresh_dir();
        let postgres = fresh_postgres(&work);
        Setup { work, postgres }
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    fn postgres_url(&self) -> Option<String> {
        self.postgres
            .as_ref()
            .map(|(url, name)| format!("{url}/{name}"))
    }

    /// Runs `flotilla serve` on `data_dir` (and this setup's PostgreSQL database, if any) under
    /// umask 022, with its log kept in the work dir.
    fn serve(&self, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Flotilla {
        static LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = self.work.join(format!(
            "stderr-{}.log",
            LOGS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let mut command = serve_command(data_dir);
        command
            .args(args)
            .env("FLOTILLA_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = self.postgres_url() {
            command.env("FLOTILLA_DATABASE_URL", url);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        // SAFETY: umask is async-signal-safe and only changes the child's own mask.
        unsafe {
            command.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        Flotilla {
            child: command.spawn().expect("the flotilla binary starts"),
            log,
            data_dir: data_dir.to_path_buf(),
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
        if let Some((url, name)) = &self.postgres {
            psql(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// A `flotilla serve` process, killed when dropped.
struct Flotilla {
    child: Child,
    log: PathBuf,
    data_dir: PathBuf,
}

impl Flotilla {
    /// Waits until the server listens, and returns an administrator client.
    async fn started(&mut self, token: Option<&str>) -> Api {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(self.data_dir.join("http.addr"))
                && !addr.is_empty()
            {
                break addr;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("flotilla exited at start: {status}\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "flotilla did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = match token {
            Some(token) => token.to_string(),
            None => std::fs::read_to_string(self.data_dir.join("admin-token")).unwrap(),
        };
        Api {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            token: Some(token),
            version: Some(STABLE.to_string()),
        }
    }

    /// Waits for the process to end by itself.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "flotilla still runs after {within:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Flotilla {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asserts that only the owner may read, write or enter `path`, and returns its mode.
#[track_caller]
fn assert_private(path: &Path) -> u32 {
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o077,
        0,
        "{} is {mode:o}: others may use it",
        path.display()
    );
    mode
}

/// Asserts that the data dir and every file in it are private.
#[track_caller]
fn assert_all_private(data_dir: &Path) {
    assert_eq!(assert_private(data_dir), 0o700);
    for entry in std::fs::read_dir(data_dir).unwrap() {
        assert_private(&entry.unwrap().path());
    }
}

#[tokio::test]
async fn a_new_data_dir_and_its_database_files_are_private_under_umask_022() {
    let setup = Setup::new();
    let data_dir = setup.data_dir("data");
    let mut server = setup.serve(&data_dir, &[], &[]);
    let api = server.started(None).await;
    // A write, so that SQLite has made its write-ahead log and shared-memory files.
    api.put("/devices/d1", json!({})).await.ok(200);
    if setup.postgres.is_none() {
        assert!(data_dir.join("flotilla.db-wal").exists());
        assert!(data_dir.join("flotilla.db-shm").exists());
    }
    assert_all_private(&data_dir);
}

#[tokio::test]
async fn an_existing_data_dir_open_to_others_is_made_private() {
    let setup = Setup::new();
    let data_dir = setup.data_dir("data");
    let mut first = setup.serve(&data_dir, &[], &[]);
    first.started(None).await;
    first.kill();
    // As an older version left it.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["flotilla.db", "flotilla.db-wal", "flotilla.db-shm"] {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    std::fs::remove_file(data_dir.join("http.addr")).unwrap();
    let mut again = setup.serve(&data_dir, &[], &[]);
    again.started(None).await;
    assert_all_private(&data_dir);
    assert!(again.log().contains("made private"), "{}", again.log());
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let setup = Setup::new();
    let data_dir = setup.data_dir("data");
    let mut first = setup.serve(&data_dir, &[], &[]);
    let api = first.started(None).await;
    let address = std::fs::read_to_string(data_dir.join("http.addr")).unwrap();

    let mut second = setup.serve(&data_dir, &[], &[]);
    let status = second.exited(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = second.log();
    assert!(
        log.contains("another flotilla server") && log.contains(&first.child.id().to_string()),
        "{log}"
    );
    // The first server's files are as it wrote them, and it still serves.
    assert_eq!(
        std::fs::read_to_string(data_dir.join("http.addr")).unwrap(),
        address
    );
    api.get("/roles").await.ok(200);
}

/// A second server with a data dir of its own: refused on the first's SQLite file (named by
/// URL), started beside it on the same PostgreSQL database (cluster mode).
#[tokio::test]
async fn a_second_server_on_the_same_database_is_refused_on_sqlite_and_joins_on_postgresql() {
    let setup = Setup::new();
    let first_dir = setup.data_dir("first");
    let mut first = setup.serve(&first_dir, &[], &[("FLOTILLA_ADMIN_TOKEN", STRONG_TOKEN)]);
    let api = first.started(Some(STRONG_TOKEN)).await;
    api.put("/devices/shared", json!({})).await.ok(200);

    let sqlite_url = format!("sqlite://{}", first_dir.join("flotilla.db").display());
    let args: Vec<&str> = match setup.postgres {
        Some(_) => vec![],
        None => vec!["--database-url", &sqlite_url],
    };
    let mut second = setup.serve(
        &setup.data_dir("second"),
        &args,
        &[("FLOTILLA_ADMIN_TOKEN", STRONG_TOKEN)],
    );
    if setup.postgres.is_some() {
        let beside = second.started(Some(STRONG_TOKEN)).await;
        beside.get("/devices/shared").await.ok(200);
        api.get("/devices/shared").await.ok(200);
        return;
    }
    let status = second.exited(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = second.log();
    assert!(
        log.contains("another flotilla server")
            && log.contains("database")
            && log.contains(&first.child.id().to_string()),
        "{log}"
    );
}

#[tokio::test]
async fn a_killed_server_leaves_no_lock_behind() {
    let setup = Setup::new();
    let data_dir = setup.data_dir("data");
    let mut first = setup.serve(&data_dir, &[], &[]);
    first
        .started(None)
        .await
        .put("/devices/kept", json!({}))
        .await
        .ok(200);
    first.kill();
    std::fs::remove_file(data_dir.join("http.addr")).unwrap();
    let mut again = setup.serve(&data_dir, &[], &[]);
    let api = again.started(None).await;
    api.get("/devices/kept").await.ok(200);
}

#[tokio::test]
async fn a_weak_admin_token_is_refused_at_start() {
    let setup = Setup::new();
    for weak in ["tooShort7", "only-31-characters-long-xxxxxxx"] {
        let mut server = setup.serve(
            &setup.data_dir(&weak.len().to_string()),
            &[],
            &[("FLOTILLA_ADMIN_TOKEN", weak)],
        );
        assert!(!server.exited(Duration::from_secs(30)).await.success());
        let log = server.log();
        assert!(log.contains("at least 32 characters"), "{log}");
        assert!(!log.contains(weak), "the token is not logged: {log}");
    }
    let mut strong = setup.serve(
        &setup.data_dir("strong"),
        &[],
        &[("FLOTILLA_ADMIN_TOKEN", STRONG_TOKEN)],
    );
    strong
        .started(Some(STRONG_TOKEN))
        .await
        .get("/roles")
        .await
        .ok(200);
}

#[tokio::test]
async fn secrets_on_the_command_line_are_warned_about_and_not_logged() {
    let setup = Setup::new();
    let mut server = setup.serve(
        &setup.data_dir("flag"),
        &["--admin-token", STRONG_TOKEN],
        &[],
    );
    server
        .started(Some(STRONG_TOKEN))
        .await
        .get("/roles")
        .await
        .ok(200);
    let log = server.log();
    assert!(
        log.contains(" WARN ")
            && log.contains("--admin-token")
            && log.contains("FLOTILLA_ADMIN_TOKEN"),
        "{log}"
    );
    assert!(!log.contains(STRONG_TOKEN), "{log}");

    // A database password in a flag: warned about before connecting (here, to nowhere).
    let mut with_password = setup.serve(
        &setup.data_dir("password"),
        &[
            "--database-url",
            "postgres://flotilla:pg-s3cret@127.0.0.1:1/none",
        ],
        &[],
    );
    assert!(
        !with_password
            .exited(Duration::from_secs(30))
            .await
            .success()
    );
    let log = with_password.log();
    assert!(
        log.contains(" WARN ") && log.contains("--database-url"),
        "{log}"
    );
    assert!(!log.contains("pg-s3cret"), "{log}");
}

#[tokio::test]
async fn sigterm_in_the_middle_of_a_job_stops_cleanly_and_the_job_finishes_after_a_restart() {
    const DEVICES: usize = 300;
    let setup = Setup::new();
    let data_dir = setup.data_dir("data");
    // Few devices at a time: the engine starts the next ones as each finishes, so it is busy
    // with the database when the signal comes.
    let in_flight = [("FLOTILLA_JOB_MAX_IN_FLIGHT", "5")];
    let mut server = setup.serve(&data_dir, &[], &in_flight);
    let api = server.started(None).await;
    api.publish_template(CONTROLLER, controller_template())
        .await;
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..DEVICES {
        let api = api.clone();
        creating.spawn(async move {
            api.put(
                &format!("/devices/tc-{i:03}"),
                json!({"template": CONTROLLER}),
            )
            .await
            .ok(200);
        });
        if creating.len() >= 8 {
            creating.join_next().await.unwrap().unwrap();
        }
    }
    creating.join_all().await;
    api.put(
        "/deviceGroups/all",
        json!({"displayName": "all", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    api.put(
        "/jobs/customer",
        json!({"group": "all", "data": [{"type": "cloudProperty", "target": CONTROLLER,
                                         "path": "customerName", "value": "Contoso"}]}),
    )
    .await
    .ok(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = api.get("/jobs/customer").await.ok(200).clone();
        if job["status"] == "running" && job["progress"]["completed"].as_u64() > Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "the job never started: {job}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    server.signal(libc::SIGTERM);
    let status = server.exited(Duration::from_secs(15)).await;
    let log = server.log();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(" ERROR "), "{log}");

    std::fs::remove_file(data_dir.join("http.addr")).unwrap();
    let mut again = setup.serve(&data_dir, &[], &in_flight);
    let api = again.started(None).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = api.get("/jobs/customer").await.ok(200).clone();
        if job["status"] == "complete" {
            break job;
        }
        assert!(Instant::now() < deadline, "the job never completed: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        job["progress"],
        json!({"total": DEVICES, "pending": 0, "completed": DEVICES, "failed": 0})
    );
}
