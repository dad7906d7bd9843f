//! The job state machine as the database holds it: a failed device's stable reason code is
//! stored beside its message, and the database refuses a status the state machine does not know.

mod common;

use common::*;
use serde_json::json;

/// Runs one statement on the server's database; the first column of each row, as text.
async fn sql(server: &Server, statement: &str) -> Result<Vec<Option<String>>, sqlx::Error> {
    use sqlx::Row;
    let url = server.database_url();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await?;
        let rows = sqlx::query(statement).fetch_all(&pool).await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    } else {
        let pool = sqlx::PgPool::connect(&url).await?;
        let rows = sqlx::query(statement).fetch_all(&pool).await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }
}

/// A server with `count` offline controllers in the group `controllers`, whose jobs give up on
/// a device after a second.
async fn offline_controllers(count: usize) -> (Server, Api) {
    let server = Server::start_with_env(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "1")]).await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    for i in 0..count {
        api.put(&format!("/devices/tc-{i}"), json!({"template": CONTROLLER}))
            .await
            .ok(200);
    }
    api.put(
        "/deviceGroups/controllers",
        json!({"displayName": "Controllers", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    (server, api)
}

fn property_job() -> serde_json::Value {
    json!({
        "displayName": "Set target temperature",
        "group": "controllers",
        "data": [{"type": "PropertyJobData", "target": CONTROLLER,
                  "path": "thermostat1.targetTemperature", "value": "55"}]
    })
}

#[tokio::test]
async fn an_offline_device_fails_with_the_offline_reason_code_beside_its_message() {
    let (server, api) = offline_controllers(2).await;
    api.put("/jobs/offline", property_job()).await.ok(200);
    let done = wait_job(&api, "offline", &["complete"]).await;
    assert_eq!(done["progress"]["failed"], 2, "{done}");

    let devices = api.list_all("/jobs/offline/devices").await.0;
    for device in &devices {
        assert_eq!(device["status"], "failed");
        assert!(
            device["reason"].as_str().unwrap().contains("offline"),
            "{device}"
        );
        assert!(
            device.get("reasonCode").is_none(),
            "the REST answer is unchanged: {device}"
        );
    }
    let codes = sql(
        &server,
        "SELECT reason_code FROM job_devices WHERE job_id = 'offline' ORDER BY device_id",
    )
    .await
    .unwrap();
    assert_eq!(codes, [Some("offline".into()), Some("offline".into())]);
}

#[tokio::test]
async fn the_database_refuses_statuses_the_state_machine_does_not_know() {
    let (server, api) = offline_controllers(1).await;
    api.put("/jobs/known", property_job()).await.ok(200);
    wait_job(&api, "known", &["complete"]).await;

    for statement in [
        "UPDATE jobs SET status = 'finished' WHERE id = 'known'",
        "UPDATE job_devices SET status = 'done' WHERE job_id = 'known'",
        "UPDATE job_devices SET reason_code = 'gremlins' WHERE job_id = 'known'",
    ] {
        let refused = sql(&server, statement).await;
        assert!(refused.is_err(), "{statement} was accepted");
    }
    // A known status still goes in, and nothing above changed the job.
    sql(
        &server,
        "UPDATE jobs SET status = 'complete' WHERE id = 'known'",
    )
    .await
    .unwrap();
    let job = api.get("/jobs/known").await.ok(200).clone();
    assert_eq!(job["status"], "complete");
    let devices = api.list_all("/jobs/known/devices").await.0;
    assert_eq!(devices[0]["status"], "failed");
}
