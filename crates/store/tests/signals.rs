//! Cluster mode's SQL against a real PostgreSQL (`FLOTILLA_TEST_POSTGRES`, a fresh database
//! dropped at the end): two stores are two servers. A claim of a device's connection signals the
//! previous holder; a device call signals its holder and its answer its caller; and a listener
//! whose connection is cut reports a resync and hears signals again.

use std::time::Duration;

use flotilla_store::{
    CallKind, CallStatus, DeviceCall, Heard, HeldConnection, ReplicaInfo, Signal, SignalListener,
    Store,
};
use serde_json::json;
use sqlx::PgPool;

mod common;

use common::Database;

/// Cuts every connection to the database but the caller's (as a restart of PostgreSQL or a
/// network cut would).
async fn cut_connections(database: &Database) {
    let pool = PgPool::connect(&database.url()).await.unwrap();
    sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

async fn server(url: &str, instance: &str) -> Store {
    let store = Store::connect(url).await.unwrap();
    store
        .register_replica(&ReplicaInfo {
            instance: instance.into(),
            hostname: format!("{instance}.example"),
        })
        .await
        .unwrap();
    store
}

async fn next(listener: &mut SignalListener) -> Heard {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("the listener heard something in time")
}

fn held(device_id: &str, connection_id: u64) -> HeldConnection {
    HeldConnection {
        device_id: device_id.into(),
        connection_id,
    }
}

#[tokio::test]
async fn servers_signal_takeovers_calls_and_answers_and_a_cut_listener_resyncs() {
    let Some(database) = Database::fresh("flotilla_signals").await else {
        return;
    };
    let a = server(&database.url(), "a").await;
    let b = server(&database.url(), "b").await;
    let mut heard_by_a = a.signal_listener().await.unwrap();
    assert_eq!(next(&mut heard_by_a).await, Heard::Resync);

    // A holds the device; B's newer connection takes over and A is told which one to close.
    a.claim_connections(&[held("d1", 7)]).await.unwrap();
    assert_eq!(
        b.connection_holder("d1").await.unwrap().as_ref(),
        Some(a.replica())
    );
    b.claim_connections(&[held("d1", 3)]).await.unwrap();
    assert_eq!(
        next(&mut heard_by_a).await,
        Heard::Signal(Signal::Close {
            device: "d1".into(),
            connection: 7
        })
    );
    assert_eq!(
        a.connection_holder("d1").await.unwrap().as_ref(),
        Some(b.replica())
    );
    // A's late release of its old connection leaves B's row alone; B's own release removes it.
    a.release_connections(&[held("d1", 7)]).await.unwrap();
    assert_eq!(
        a.connection_holder("d1").await.unwrap().as_ref(),
        Some(b.replica())
    );
    b.release_connections(&[held("d1", 3)]).await.unwrap();
    assert_eq!(a.connection_holder("d1").await.unwrap(), None);

    // B hands A a call: A hears of it, finds it pending, answers; B reads the answer.
    let call = DeviceCall {
        id: "call-1".into(),
        device_id: "d2".into(),
        kind: CallKind::Invoke,
        request: json!({"method": "reboot"}),
        deadline_ms: jiff::Timestamp::now().as_millisecond() + 60_000,
    };
    b.send_device_call(a.replica(), &call).await.unwrap();
    assert_eq!(
        next(&mut heard_by_a).await,
        Heard::Signal(Signal::Call {
            call: "call-1".into()
        })
    );
    assert_eq!(a.pending_device_call_ids().await.unwrap(), vec!["call-1"]);
    let pending = a.pending_device_call("call-1").await.unwrap().unwrap();
    assert_eq!(pending.request, call.request);
    assert!(b.pending_device_call("call-1").await.unwrap().is_none());
    let waiting = b.device_call_state("call-1").await.unwrap().unwrap();
    assert_eq!(waiting.status, CallStatus::Pending);
    assert!(waiting.holder_alive);
    a.answer_device_call("call-1", CallStatus::Answered, &json!({"status": 200}))
        .await
        .unwrap();
    let answered = b.device_call_state("call-1").await.unwrap().unwrap();
    assert_eq!(answered.status, CallStatus::Answered);
    assert_eq!(answered.response, Some(json!({"status": 200})));
    b.forget_device_call("call-1").await.unwrap();
    assert!(b.device_call_state("call-1").await.unwrap().is_none());

    // The listener's connection is cut: it says so (resync), then hears signals again.
    cut_connections(&database).await;
    assert_eq!(next(&mut heard_by_a).await, Heard::Resync);
    b.close_device_everywhere("d3").await.unwrap();
    assert_eq!(
        next(&mut heard_by_a).await,
        Heard::Signal(Signal::CloseDevice {
            device: "d3".into()
        })
    );

    drop(heard_by_a);
    a.close().await;
    b.close().await;
    database.drop_now().await;
}

#[tokio::test]
async fn a_dead_servers_calls_are_dropped_with_it() {
    let Some(database) = Database::fresh("flotilla_signals").await else {
        return;
    };
    let a = server(&database.url(), "a").await;
    let b = Store::connect(&database.url()).await.unwrap();
    let lease = Duration::from_secs(1);
    b.register_replica_for(
        &ReplicaInfo {
            instance: "b".into(),
            hostname: "b.example".into(),
        },
        lease,
    )
    .await
    .unwrap();
    let call = |id: &str| DeviceCall {
        id: id.into(),
        device_id: "d1".into(),
        kind: CallKind::Push,
        request: json!({"version": 2}),
        deadline_ms: jiff::Timestamp::now().as_millisecond() + 60_000,
    };
    b.send_device_call(a.replica(), &call("from-b"))
        .await
        .unwrap();
    a.send_device_call(a.replica(), &call("from-a"))
        .await
        .unwrap();
    // B stops renewing its lease; A's sweep declares it dead, and nobody waits for B's call.
    tokio::time::sleep(lease + Duration::from_millis(500)).await;
    a.heartbeat(Duration::from_secs(10)).await.unwrap();
    let dead = a.sweep_dead_replicas(lease).await.unwrap();
    assert_eq!(dead, vec![b.replica().clone()]);
    assert_eq!(a.pending_device_call_ids().await.unwrap(), vec!["from-a"]);
    a.close().await;
    b.close().await;
    database.drop_now().await;
}
