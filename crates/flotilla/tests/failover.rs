//! A server among replicas on PostgreSQL that pauses past its lease (SIGSTOP, as a VM or a
//! stalled host would) is a zombie once it runs again: it stops and exits non-zero, saying why,
//! for its supervisor to start it again under a new id. (On SQLite there is one server and no
//! lease to lose.) Runs on `FLOTILLA_TEST_POSTGRES`, by default the local PostgreSQL the suite
//! starts.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fresh_dir, psql, serve_command};

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test]
async fn a_server_paused_past_its_lease_exits_non_zero_when_it_runs_again() {
    let server = std::env::var("FLOTILLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    let dir = fresh_dir();
    let database = format!(
        "flotilla_failover_{}",
        dir.file_name().unwrap().to_str().unwrap().replace('-', "_")
    );
    psql(&server, &format!("CREATE DATABASE {database}"));
    let log = dir.join("server.log");
    let mut child = serve_command(&dir)
        .env("FLOTILLA_DATABASE_URL", format!("{server}/{database}"))
        .env("FLOTILLA_REPLICA_HEARTBEAT_MS", "100")
        .env("FLOTILLA_REPLICA_LEASE_MS", "1000")
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(dir.join("http.addr")).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "flotilla exited at start"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "no start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Renewing its lease, it runs on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited while its lease held"
    );

    signal(child.id(), "STOP");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    signal(child.id(), "CONT");
    let resumed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "still running after its lease lapsed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{status}: {text}");
    assert!(text.contains("lease"), "{text}");

    let _ = std::fs::remove_dir_all(&dir);
    psql(
        &server,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
}
