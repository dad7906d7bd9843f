//! Webhooks against the real server, with a receiver on loopback: deliveries are signed, retried
//! after the receiver fails, delivered after a crash and restart, and listed in the history;
//! bad bodies and non-admin tokens are refused.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Mutex;

const SECRET: &str = "a-secret-of-some-length";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

/// A webhook receiver on a loopback port: answers 500 to its first `failures` requests (all of
/// them while `failures` is `usize::MAX`), 200 after.
#[derive(Clone)]
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    failures: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicUsize::new(failures));
        let state = (received.clone(), failures.clone());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url,
            received,
            failures,
        }
    }

    /// Waits (up to a minute) until a request for which `wanted` holds was answered 200.
    async fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Received {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = self
                .received
                .lock()
                .await
                .iter()
                .find(|r| r.answered == 200 && wanted(&r.json()))
            {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no such delivery: {:?}",
                self.all().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn all(&self) -> Vec<Value> {
        self.received
            .lock()
            .await
            .iter()
            .map(Received::json)
            .collect()
    }
}

type ReceiverState = (Arc<Mutex<Vec<Received>>>, Arc<AtomicUsize>);

async fn receive(
    State((received, failures)): State<ReceiverState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let fail = failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            usize::MAX => Some(usize::MAX),
            n => Some(n - 1),
        })
        .is_ok();
    let answered = if fail { 500 } else { 200 };
    received.lock().await.push(Received {
        headers,
        body: body.to_vec(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

/// The signature the receiver expects for `body`.
fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn cloud_property_job() -> Value {
    json!({
        "displayName": "Name the customer",
        "group": "all",
        "data": [{"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": "Contoso"}]
    })
}

async fn put_webhook(api: &Api, id: &str, url: &str, events: Value) {
    let created = api
        .put(
            &format!("/webhooks/{id}"),
            json!({"url": url, "secret": SECRET, "events": events, "displayName": "Test"}),
        )
        .await;
    let body = created.ok(200);
    assert_eq!(body["id"], id);
    assert_eq!(body["url"], url);
    assert!(body.get("secret").is_none(), "{body}");
}

#[tokio::test]
async fn deliveries_are_signed_and_retried_until_the_receiver_takes_them() {
    let server = Server::start().await;
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let receiver = Receiver::start(2).await;
    put_webhook(
        &api,
        "hook",
        &receiver.url,
        json!(["job.status", "job.progress", "job.device"]),
    )
    .await;
    api.put("/jobs/signed", cloud_property_job()).await.ok(200);

    let complete = receiver
        .wait_for(|b| b["type"] == "job.status" && b["data"]["status"] == "complete")
        .await;
    assert_eq!(complete.json()["data"]["jobId"], "signed");
    let device = receiver.wait_for(|b| b["type"] == "job.device").await;
    let devices = &device.json()["data"]["devices"];
    assert_eq!(devices[0]["deviceId"], "dev-1", "{devices}");
    assert_eq!(devices[0]["status"], "completed", "{devices}");
    let progress = receiver
        .wait_for(|b| b["type"] == "job.progress" && b["data"]["completed"] == 1)
        .await;
    assert_eq!(progress.json()["data"]["total"], 1);

    let received = receiver.received.lock().await.clone();
    for request in &received {
        assert_eq!(
            request.header("x-flotilla-signature"),
            signature(&request.body)
        );
        let body = request.json();
        assert_eq!(request.header("x-flotilla-delivery"), body["id"]);
        assert_eq!(request.header("x-flotilla-event"), body["type"]);
        assert_eq!(request.header("content-type"), "application/json");
    }
    // The first two answers were 500: those deliveries come again, with the same id and
    // signature, and are taken.
    let failed: Vec<&Received> = received.iter().filter(|r| r.answered == 500).collect();
    assert_eq!(failed.len(), 2);
    for first in failed {
        let id = first.header("x-flotilla-delivery").to_string();
        let retried = receiver.wait_for(|b| b["id"] == id.as_str()).await;
        assert_eq!(retried.body, first.body);
        assert_eq!(
            retried.header("x-flotilla-signature"),
            signature(&retried.body)
        );
    }

    // The history: every delivery delivered, the retried ones with their attempts; paged.
    let (history, _) = api.list_all("/webhooks/hook/deliveries").await;
    assert!(history.len() >= 3, "{history:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (history, _) = api.list_all("/webhooks/hook/deliveries").await;
        if history.iter().all(|d| d["status"] == "delivered") {
            assert!(
                history.iter().any(|d| d["attempts"].as_i64() >= Some(2)),
                "{history:?}"
            );
            assert!(
                history.iter().all(|d| d["responseStatus"] == 200),
                "{history:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{history:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = api
        .preview()
        .get("/webhooks/hook/deliveries?maxpagesize=1")
        .await;
    let page = page.ok(200);
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    assert!(page["nextLink"].is_string(), "{page}");

    // Listed, read back without the secret, and deleted with its history.
    let (hooks, _) = api.list_all("/webhooks").await;
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].get("secret").is_none());
    let read = api.get("/webhooks/hook").await;
    assert_eq!(
        read.ok(200)["events"],
        json!(["job.status", "job.progress", "job.device"])
    );
    api.delete("/webhooks/hook").await.ok(204);
    api.get("/webhooks/hook").await.error(404, "NotFound");
    api.get("/webhooks/hook/deliveries")
        .await
        .error(404, "NotFound");
    api.delete("/webhooks/hook").await.error(404, "NotFound");
}

#[tokio::test]
async fn a_pending_delivery_is_delivered_after_a_crash_and_restart() {
    let mut server = Server::start().await;
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let receiver = Receiver::start(usize::MAX).await;
    put_webhook(&api, "durable", &receiver.url, json!(["job.status"])).await;
    api.put("/jobs/durable", cloud_property_job()).await.ok(200);
    wait_job(&api, "durable", &["complete"]).await;

    // The final status's delivery is due and has failed at least once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let (history, _) = api.list_all("/webhooks/durable/deliveries").await;
        if let Some(found) = history.iter().find(|d| {
            d["body"]["data"]["status"] == "complete"
                && d["status"] == "pending"
                && d["attempts"].as_i64() >= Some(1)
        }) {
            break found.clone();
        }
        assert!(Instant::now() < deadline, "{history:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.restart().await;
    receiver.failures.store(0, Ordering::SeqCst);
    let delivered = receiver.wait_for(|b| b["id"] == pending["id"]).await;
    assert_eq!(delivered.json()["data"]["status"], "complete");
    assert_eq!(
        delivered.header("x-flotilla-signature"),
        signature(&delivered.body)
    );
    let api = server.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (history, _) = api.list_all("/webhooks/durable/deliveries").await;
        let record = history.iter().find(|d| d["id"] == pending["id"]).unwrap();
        if record["status"] == "delivered" {
            assert!(record["attempts"].as_i64() > pending["attempts"].as_i64());
            break;
        }
        assert!(Instant::now() < deadline, "{record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_bodies_and_non_admin_tokens_are_refused_and_store_nothing() {
    let server = Server::start().await;
    let api = server.admin();
    let good =
        json!({"url": "https://example.com/hook", "secret": SECRET, "events": ["job.status"]});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("url", json!("ftp://example.com/hook")), "url"),
        (with("url", json!("not a url")), "url"),
        (with("url", json!(7)), "url"),
        (with("secret", json!("short")), "secret"),
        (with("secret", Value::Null), "secret"),
        (with("events", json!([])), "events"),
        (with("events", json!(["job.everything"])), "events[0]"),
        (with("events", json!("job.status")), "events"),
        (with("color", json!("blue")), "color"),
        (with("id", json!("other")), "id"),
    ];
    for (body, field) in cases {
        let refused = api.put("/webhooks/bad", body.clone()).await;
        let message = refused.error(400, "BadRequest");
        assert!(message.contains(&format!("'{field}'")), "{body}: {message}");
    }
    api.put("/webhooks/bad%20id", good.clone())
        .await
        .error(400, "BadRequest");
    api.get("/webhooks/bad").await.error(404, "NotFound");
    let (hooks, _) = api.list_all("/webhooks").await;
    assert!(hooks.is_empty(), "{hooks:?}");

    // Only the role that manages API tokens manages webhooks.
    for role in [OPERATOR, BUILDER] {
        let token = api.create_token(&format!("t-{}", &role[..8]), role).await;
        let other = server.client(&token);
        other
            .put("/webhooks/theirs", good.clone())
            .await
            .error(403, "Forbidden");
        other.get("/webhooks").await.error(403, "Forbidden");
        other.get("/webhooks/theirs").await.error(403, "Forbidden");
    }
    api.get("/webhooks/theirs").await.error(404, "NotFound");
    api.with_token(None)
        .get("/webhooks")
        .await
        .error(401, "Unauthorized");
}
