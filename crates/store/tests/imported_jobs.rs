//! An import that replaces a job (`flotilla import --with-jobs`, the job changed on the source)
//! leaves nothing of the job it replaced: not its devices, not the values it replaced (which a
//! revert would otherwise write back). On SQLite, and on a real PostgreSQL when
//! `FLOTILLA_TEST_POSTGRES` is set (a fresh database, dropped at the end), where no foreign key
//! deletes a job's rows with it (migration 0016).

use flotilla_model::device::Device;
use flotilla_model::job_state::{DeviceStatus, JobStatus};
use flotilla_store::{ImportedJobDevice, JobRecord, ReplicaInfo, Store};
use serde_json::json;

mod common;

use common::Database;

fn job(id: &str, devices: &[&str], display_name: &str) -> JobRecord {
    JobRecord {
        id: id.into(),
        sort_key: format!("0001-{id}"),
        scheduled_job_id: None,
        definition: json!({"displayName": display_name, "group": "g", "data": []}),
        status: JobStatus::Complete,
        reason: None,
        start_ms: Some(1),
        end_ms: Some(2),
        total: devices.len() as i64,
        completed: devices.len() as i64,
        failed: 0,
        skipped: 0,
        batch_size: 0,
        rerun_of: None,
    }
}

fn completed(device_id: &str) -> ImportedJobDevice {
    ImportedJobDevice {
        device_id: device_id.into(),
        status: DeviceStatus::Completed,
        reason: None,
        reason_code: None,
        detail: None,
    }
}

async fn replacing_a_job_leaves_nothing_of_it(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store
        .register_replica(&ReplicaInfo {
            instance: "test".into(),
            hostname: "test.example".into(),
        })
        .await
        .unwrap();
    for id in ["a", "b"] {
        store
            .insert_device(&Device {
                id: id.into(),
                etag: "e".into(),
                display_name: id.into(),
                template: None,
                enabled: true,
                provisioned: false,
                simulated: false,
                organizations: vec![],
            })
            .await
            .unwrap();
    }
    store
        .put_imported_job(&job("j", &["a"], "first"), &[completed("a")], false)
        .await
        .unwrap();
    // A value the job replaced, as its cloud-property write records it.
    assert!(
        store
            .set_cloud_property_for("a", "customerName", json!("new"), Some("j"))
            .await
            .unwrap()
    );
    assert!(store.job_changed_devices("j").await.unwrap());

    store
        .put_imported_job(&job("j", &["b"], "second"), &[completed("b")], true)
        .await
        .unwrap();

    let stored = store.job("j").await.unwrap().expect("the job is there");
    assert_eq!(stored.definition["displayName"], "second");
    let devices = store.job_devices_uncached("j", None, 10).await.unwrap();
    let ids: Vec<&str> = devices.items.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["b"], "only the new job's devices");
    assert!(
        !store.job_changed_devices("j").await.unwrap(),
        "the replaced job's previous values are gone"
    );
    store.close().await;
}

#[tokio::test]
async fn replacing_an_imported_job_on_sqlite_leaves_nothing_of_the_old_one() {
    let dir = std::env::temp_dir().join(format!(
        "flotilla-imported-jobs-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
    replacing_a_job_leaves_nothing_of_it(&url).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn replacing_an_imported_job_on_postgres_leaves_nothing_of_the_old_one() {
    let Some(database) = Database::fresh("flotilla_imported_jobs").await else {
        return;
    };
    replacing_a_job_leaves_nothing_of_it(&database.url()).await;
    database.drop_now().await;
}
