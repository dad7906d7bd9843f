//! The dashboard in a real browser: starts the server and simulated thermostats, then runs
//! `tests/browser/dashboard.mjs` (playwright-core driving Debian's headless Chromium) with the
//! server's address and tokens, and fails when the script fails. The script signs in, creates a
//! group with the live count, runs a job through the wizard, stops and resumes it, watches it
//! finish without a reload, filters its failed devices, downloads the CSV, sees a device's
//! property change live and an operator refused the API tokens.
//!
//! Needs `node`, `npm ci` in `tests/browser` and `/usr/bin/chromium` (scripts/test.sh sees to
//! both). With `FLOTILLA_SCREENSHOTS=<dir>` the script also saves the main screens there
//! (docs/screenshots/ holds the committed ones).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const DEVICES: usize = 20;
const PREFIX: &str = "web-";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

#[tokio::test]
async fn the_dashboard_runs_a_job_end_to_end_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium (scripts/test.sh does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "run `npm ci` in tests/browser first (scripts/test.sh does)"
    );

    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    // A quarter of the devices answer commands with an error; every answer takes 400 ms, so a
    // job in batches of two runs for seconds and can be stopped while it runs.
    let _sim = sim_command(&server, &api, DEVICES, PREFIX)
        .await
        .args(["--fail-fraction", "0.25", "--delay-ms", "400"])
        .args(["--duration", "300"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");
    wait_until_connected(&api).await;
    let operator = api.create_token("web-operator", OPERATOR).await;

    let mut script = tokio::process::Command::new("node");
    script
        .arg("dashboard.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", &server.base)
        .env("ADMIN_TOKEN", &server.admin_token)
        .env("OPERATOR_TOKEN", &operator)
        .env("TEMPLATE", THERMOSTAT)
        .env("DEVICES", DEVICES.to_string())
        .env("DEVICE_PREFIX", PREFIX)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true);
    if let Ok(dir) = std::env::var("FLOTILLA_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        script.env("SCREENSHOTS", dir);
    }
    let status = tokio::time::timeout(Duration::from_secs(300), script.status())
        .await
        .expect("the browser script finishes within 5 minutes")
        .expect("node runs");
    assert!(status.success(), "the browser script failed: {status}");
}

/// Until every simulated device is provisioned and answers a command (so none is offline when
/// the job reaches it).
async fn wait_until_connected(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (devices, _) = api.list_all("/devices").await;
        let ready = devices
            .iter()
            .filter(|d| d["provisioned"] == true && d["template"] == THERMOSTAT)
            .count();
        if ready == DEVICES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready} devices provisioned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..DEVICES {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = api
                .post(
                    &format!("/devices/{PREFIX}{i:05}/commands/getMaxMinReport"),
                    serde_json::json!({"request": "2024-01-01T00:00:00Z", "connectionTimeout": 5}),
                )
                .await;
            // A failing device answers too (with its error status): it is connected.
            if run.status.as_u16() == 201 {
                break;
            }
            assert!(Instant::now() < deadline, "{PREFIX}{i:05}: {}", run.text);
        }
    }
}
