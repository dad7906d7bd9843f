//! REST tests on the in-process server: the same requests the end-to-end tests send to the
//! binary, without starting a process, on a fresh database each.

use flotilla_testkit::{Api, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CONTROLLER: &str = "dtmi:contoso:temperaturecontroller;1";

fn controller_template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/temperature-controller.template.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A server with the temperature controller template and a group of every device.
async fn server_with_group() -> TestServer {
    let server = TestServer::start().await;
    let template = format!("/deviceTemplates/{CONTROLLER}");
    let (status, _) = server
        .api
        .request(Method::PUT, &template, Some(&controller_template()))
        .await;
    assert_eq!(status, 200);
    let group = json!({"displayName": "everything", "filter": "SELECT * FROM devices"});
    let (status, _) = server
        .api
        .request(Method::PUT, "/deviceGroups/everything", Some(&group))
        .await;
    assert_eq!(status, 200);
    server
}

/// `writers` merge patches of one field at once: all apply, and one of them is the last.
async fn concurrent_patches(api: &Api, path: &str, field: &str, writers: usize) {
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let (api, path, field) = (api.clone(), path.to_string(), field.to_string());
            tokio::spawn(async move {
                let patch = json!({ field: format!("writer {i}") });
                api.request(Method::PATCH, &path, Some(&patch)).await
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, current) = api.request(Method::GET, path, None).await;
    let written: Vec<Value> = (0..writers).map(|i| json!(format!("writer {i}"))).collect();
    assert!(written.contains(&current[field]), "{path}: {current}");
}

#[tokio::test]
async fn merge_patches_without_a_precondition_all_apply_under_contention() {
    let server = server_with_group().await;
    let api = &server.api;
    let device = json!({"template": CONTROLLER});
    let (status, _) = api
        .request(Method::PUT, "/devices/contended", Some(&device))
        .await;
    assert_eq!(status, 200);
    concurrent_patches(api, "/devices/contended", "displayName", 50).await;
    concurrent_patches(api, "/deviceGroups/everything", "displayName", 50).await;
    concurrent_patches(
        api,
        "/devices/contended/cloudProperties",
        "customerName",
        20,
    )
    .await;

    // A precondition still holds: a stale etag is 412 and changes nothing.
    let (_, current) = api.request(Method::GET, "/devices/contended", None).await;
    let stale = json!({"displayName": "stale", "etag": "\"not-the-current-etag\""});
    let (status, body) = api
        .request(Method::PATCH, "/devices/contended", Some(&stale))
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["error"]["code"], "PreconditionFailed");
    assert_eq!(
        api.request(Method::GET, "/devices/contended", None).await.1,
        current
    );
    let fresh = json!({"displayName": "fresh", "etag": current["etag"]});
    let (status, body) = api
        .request(Method::PATCH, "/devices/contended", Some(&fresh))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["displayName"], "fresh");
    server.stop().await;
}

#[tokio::test]
async fn put_creates_then_replaces_and_read_only_fields_are_refused() {
    let server = server_with_group().await;
    let api = &server.api;
    let provisioned = json!({"displayName": "new", "provisioned": true});
    let (status, body) = api
        .request(Method::PUT, "/devices/fresh", Some(&provisioned))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        api.request(Method::GET, "/devices/fresh", None).await.0,
        404
    );

    let (status, created) = api
        .request(
            Method::PUT,
            "/devices/fresh",
            Some(&json!({"displayName": "one"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(created["provisioned"], false);
    let replacement = json!({"displayName": "two", "etag": created["etag"]});
    let (status, replaced) = api
        .request(Method::PUT, "/devices/fresh", Some(&replacement))
        .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["displayName"], "two");
    assert_ne!(replaced["etag"], created["etag"]);
    // The old etag is stale now.
    let (status, _) = api
        .request(Method::PUT, "/devices/fresh", Some(&replacement))
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    let (status, body) = api
        .request(
            Method::PATCH,
            "/deviceGroups/everything",
            Some(&json!({"id": "other"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn patching_what_does_not_exist_is_404_in_iot_centrals_error_shape() {
    let server = TestServer::start().await;
    for path in [
        "/devices/nobody",
        "/devices/nobody/cloudProperties",
        "/deviceGroups/nothing",
        "/enrollmentGroups/nothing",
        "/scheduledJobs/nothing",
    ] {
        let (status, body) = server
            .api
            .request(Method::PATCH, path, Some(&json!({"displayName": "x"})))
            .await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "NotFound", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("was not found."),
            "{path}: {body}"
        );
    }
    server.stop().await;
}
