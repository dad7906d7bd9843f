//! What real clients send and how the server answers them: the Azure CLI's job flags, the docs'
//! spellings echoed back, bounded job data, merge patches without a precondition under
//! contention, and IoT Central's error shape for paths no route can take (invalid UTF-8, `..`).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server with the controller template and an (empty) group for jobs to target.
async fn server_with_group() -> (Server, Api) {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.put(
        "/deviceGroups/everything",
        json!({"displayName": "everything", "filter": "SELECT * FROM devices"}),
    )
    .await
    .ok(200);
    (server, api)
}

fn property_entry(path: &str) -> Value {
    json!({"type": "property", "target": CONTROLLER, "path": path, "value": 21})
}

/// A job body as `az iot central job create --cancellation-threshold 2 [--ctb <batch>]` sends it.
fn cli_job(batch: &str) -> Value {
    json!({
        "displayName": "cli job",
        "group": "everything",
        "data": [property_entry("thermostat1.targetTemperature")],
        "cancellationThreshold": {"value": 2, "type": "number", "batch": batch},
    })
}

#[tokio::test]
async fn the_clis_threshold_batch_strings_are_read_as_booleans() {
    let (_server, api) = server_with_group().await;
    for (id, sent, read) in [
        ("ctb-true", "true", true),
        ("ctb-false", "false", false),
        // The CLI's placeholder when --cancellation-threshold-batch is left out.
        ("ctb-absent", "number", false),
    ] {
        let body = api.put(&format!("/jobs/{id}"), cli_job(sent)).await;
        assert_eq!(
            body.ok(200)["cancellationThreshold"],
            json!({"type": "number", "value": 2, "batch": read}),
            "{sent}"
        );
    }
    let refused = api.put("/jobs/ctb-bad", cli_job("maybe")).await;
    let message = refused.error(400, "BadRequest");
    assert!(message.contains("cancellationThreshold.batch"), "{message}");
    api.get("/jobs/ctb-bad").await.error(404, "NotFound");
}

#[tokio::test]
async fn jobs_echo_the_type_spelling_and_the_numbers_as_sent() {
    let (mut server, api) = server_with_group().await;
    let entries = [
        json!({"type": "PropertyJobData", "target": CONTROLLER,
               "path": "thermostat1.targetTemperature", "value": "56"}),
        json!({"type": "CloudPropertyJobData", "target": CONTROLLER,
               "path": "customerName", "value": "Contoso"}),
        json!({"type": "cloudProperty", "target": CONTROLLER,
               "path": "installDate", "value": "2024-01-02"}),
    ];
    let body = json!({
        "group": "everything",
        "batch": {"type": "percentage", "value": 25},
        "cancellationThreshold": {"type": "percentage", "value": 12.5, "batch": false},
        "data": [entries[0], entries[1]],
    });
    let check = |job: &Value| {
        assert_eq!(job["data"][0]["type"], "PropertyJobData", "{job}");
        assert_eq!(job["data"][1]["type"], "CloudPropertyJobData", "{job}");
        assert_eq!(job["data"][0]["value"], "56", "{job}");
        assert!(job["batch"]["value"].is_u64(), "25 stays 25: {job}");
        assert_eq!(job["batch"]["value"], 25);
        assert_eq!(job["cancellationThreshold"]["value"], 12.5);
    };
    check(api.put("/jobs/docs-spelling", body).await.ok(200));
    check(api.get("/jobs/docs-spelling").await.ok(200));

    let spec = json!({"group": "everything", "data": [entries[2]],
                      "batch": {"type": "number", "value": 3}});
    let created = api.put("/jobs/spec-spelling", spec).await;
    assert_eq!(created.ok(200)["data"][0]["type"], "cloudProperty");

    let commands = json!({"group": "everything", "data": [
        {"type": "CommandJobData", "target": CONTROLLER, "path": "reboot", "value": 5}]});
    let created = api.put("/jobs/command-spelling", commands).await;
    assert_eq!(created.ok(200)["data"][0]["type"], "CommandJobData");
    let migration = json!({"group": "everything", "data": [
        {"type": "DeviceTemplateMigrationJobData", "template": CONTROLLER}]});
    let created = api.put("/jobs/migration-spelling", migration).await;
    assert_eq!(
        created.ok(200)["data"][0]["type"],
        "DeviceTemplateMigrationJobData"
    );

    // What is stored is what is echoed: the spelling survives a restart.
    server.restart().await;
    let api = server.admin();
    check(api.get("/jobs/docs-spelling").await.ok(200));
    let scheduled = json!({
        "displayName": "nightly", "group": "everything",
        "schedule": {"start": "2099-01-01T00:00:00Z"},
        "batch": {"type": "percentage", "value": 25},
        "cancellationThreshold": {"type": "percentage", "value": 12.5, "batch": false},
        "data": [entries[0]],
    });
    let created = api.put("/scheduledJobs/nightly", scheduled).await;
    let created = created.ok(200);
    assert_eq!(created["data"][0]["type"], "PropertyJobData");
    assert!(created["batch"]["value"].is_u64(), "{created}");
}

#[tokio::test]
async fn job_data_is_bounded_and_free_of_duplicates() {
    let (_server, api) = server_with_group().await;
    let job = |data: Vec<Value>| json!({"group": "everything", "data": data});

    let repeated = vec![property_entry("thermostat1.targetTemperature"); 1000];
    let refused = api.put("/jobs/flood", job(repeated)).await;
    let message = refused.error(400, "BadRequest");
    assert!(
        message.contains("'data'") && message.contains("100"),
        "{message}"
    );

    let twice = vec![
        property_entry("thermostat1.targetTemperature"),
        property_entry("thermostat2.targetTemperature"),
        // The same capability, with the other component separator.
        property_entry("thermostat1/targetTemperature"),
    ];
    let refused = api.put("/jobs/twice", job(twice)).await;
    let message = refused.error(400, "BadRequest");
    assert!(
        message.contains("data[2]") && message.contains("thermostat1/targetTemperature"),
        "{message}"
    );
    api.get("/jobs/twice").await.error(404, "NotFound");

    // Scheduled jobs share the job checks.
    let mut scheduled = job(vec![
        property_entry("thermostat1.targetTemperature"),
        property_entry("thermostat1.targetTemperature"),
    ]);
    scheduled["displayName"] = json!("twice");
    scheduled["schedule"] = json!({"start": "2099-01-01T00:00:00Z"});
    let refused = api.put("/scheduledJobs/twice", scheduled).await;
    assert!(refused.error(400, "BadRequest").contains("data[1]"));

    // Distinct entries up to the cap are fine.
    let distinct = vec![
        property_entry("thermostat1.targetTemperature"),
        property_entry("thermostat2.targetTemperature"),
    ];
    api.put("/jobs/distinct", job(distinct)).await.ok(200);
}

/// PATCHes `path` from `writers` clients at once, each with its own `field` value, and checks
/// that every one applied and that the entity ends with one of the values written.
async fn concurrent_patches(api: &Api, path: &str, field: &str, writers: usize) {
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let api = api.clone();
            let path = path.to_string();
            let field = field.to_string();
            tokio::spawn(async move {
                let response = api
                    .patch(&path, json!({ field: format!("writer {i}") }))
                    .await;
                (response.status.as_u16(), response.text)
            })
        })
        .collect();
    for task in tasks {
        let (status, text) = task.await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
    }
    let last = api.get(path).await.ok(200)[field].clone();
    let written: Vec<Value> = (0..writers).map(|i| json!(format!("writer {i}"))).collect();
    assert!(written.contains(&last), "{path}: {last}");
}

#[tokio::test]
async fn merge_patches_without_a_precondition_all_apply_under_contention() {
    let (_server, api) = server_with_group().await;
    api.put("/devices/contended", json!({"template": CONTROLLER}))
        .await
        .ok(200);
    concurrent_patches(&api, "/devices/contended", "displayName", 50).await;
    concurrent_patches(&api, "/deviceGroups/everything", "displayName", 50).await;
    concurrent_patches(
        &api,
        "/devices/contended/cloudProperties",
        "customerName",
        20,
    )
    .await;
    // Desired properties are merged by the store's one writer: they never raced.
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let change = json!({"thermostat1": {"targetTemperature": i}});
                api.patch("/devices/contended/properties", change)
                    .await
                    .status
            })
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.unwrap().as_u16(), 202);
    }

    // A precondition still holds: a stale etag is 412 and changes nothing.
    let current = api.get("/devices/contended").await.ok(200).clone();
    let stale = "\"not-the-current-etag\"";
    let refused = Api::send(
        api.request(Method::PATCH, "/devices/contended")
            .header("If-Match", stale)
            .json(&json!({"displayName": "stale"})),
    )
    .await;
    refused.error(412, "PreconditionFailed");
    let refused = api
        .patch(
            "/deviceGroups/everything",
            json!({"displayName": "stale", "etag": stale}),
        )
        .await;
    refused.error(412, "PreconditionFailed");
    assert_eq!(api.get("/devices/contended").await.ok(200), &current);
    let fresh = Api::send(
        api.request(Method::PATCH, "/devices/contended")
            .header("If-Match", current["etag"].as_str().unwrap())
            .json(&json!({"displayName": "fresh"})),
    )
    .await;
    assert_eq!(fresh.ok(200)["displayName"], "fresh");
}

/// PUTs `body` to the request target as it is (no URL parser leaves `..` in place), and returns
/// the status and the whole response.
async fn raw_put(server: &Server, target: &str, body: &Value) -> (u16, String) {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (token, body) = (&server.admin_token, body.to_string());
    let request = format!(
        "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

#[tokio::test]
async fn every_refusal_has_the_error_body_even_for_unreadable_paths() {
    let (server, api) = server_with_group().await;
    // Every operation the server documents, with each path parameter invalid UTF-8.
    let doc = api.with_version(None).get("/openapi.json").await;
    let mut checked = 0;
    for (template, operations) in doc.ok(200)["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        let path: String = template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "%FF"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = Api::send(api.request(method.clone(), &path).json(&json!({}))).await;
            let message = response.error(400, "BadRequest");
            assert!(message.contains("UTF-8"), "{method} {path}: {message}");
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked} operations");
    api.get("/no-such-route").await.error(404, "NotFound");
    Api::send(api.request(Method::POST, "/devices"))
        .await
        .error(405, "MethodNotAllowed");

    // `.` and `..` cannot be addressed by clients that follow RFC 3986, so they are no ids.
    let body = json!({"roles": [{"role": ADMINISTRATOR}]});
    for id in ["..", ".", "%2E%2E", "%2e"] {
        for (collection, field) in [("devices", "deviceId"), ("apiTokens", "tokenId")] {
            let target = format!("/api/{collection}/{id}?api-version={STABLE}");
            let (status, response) = raw_put(&server, &target, &body).await;
            assert_eq!(status, 400, "{target}: {response}");
            assert!(
                response.contains("x-ms-error-code: BadRequest") && response.contains(field),
                "{target}: {response}"
            );
        }
    }
    assert_eq!(api.list_all("/devices").await.0, Vec::<Value>::new());
    api.put("/devices/a..b", json!({})).await.ok(200);
}
