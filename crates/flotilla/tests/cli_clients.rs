//! Requests as the Azure CLI's `az iot central` sends them: the api-version it hard-codes, the
//! OData parameters it adds, and the `nextLink`s it follows over HTTPS.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// `az iot central` sends this version with every `device-template` command and `device list`,
/// whatever its `--api-version` flag says.
const CLI_VERSION: &str = "2022-06-30-preview";

#[tokio::test]
async fn the_cli_version_manages_templates_and_lists_devices() {
    let server = Server::start().await;
    let cli = server.admin().with_version(Some(CLI_VERSION));

    // device-template create, show, list, update, delete.
    let created = cli
        .publish_template(CONTROLLER, controller_template())
        .await;
    assert_eq!(created.body["@id"], CONTROLLER);
    let path = format!("/deviceTemplates/{}", encode(CONTROLLER));
    assert_eq!(cli.get(&path).await.ok(200)["@id"], CONTROLLER);
    let templates = cli.get("/deviceTemplates").await;
    assert_eq!(templates.ok(200)["value"][0]["@id"], CONTROLLER);
    let patched = cli
        .patch(&path, json!({"displayName": "Renamed by the CLI"}))
        .await;
    assert_eq!(patched.ok(200)["displayName"], "Renamed by the CLI");

    for i in 0..3 {
        cli.put(
            &format!("/devices/cli-{i}"),
            json!({"displayName": format!("CLI {i}"), "template": CONTROLLER}),
        )
        .await
        .ok(200);
    }
    // device list, with the OData filter `--edge-only` adds and an order: this server does not
    // evaluate OData, so both are ignored rather than refused.
    let listed = cli
        .get("/devices?%24filter=type+eq+%27GatewayDevice%27+or+type+eq+%27EdgeDevice%27&%24orderby=displayName")
        .await;
    let ids: Vec<&str> = listed.ok(200)["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cli-0", "cli-1", "cli-2"]);
    // `$top`, this version's page size, is honoured; the next page keeps it.
    let (devices, pages) = cli.list_all("/devices?$top=2").await;
    assert_eq!((devices.len(), pages), (3, 2));
    let bad_top = cli.get("/devices?$top=0").await.error(400, "BadRequest");
    assert!(bad_top.contains("$top"), "{bad_top}");

    for i in 0..3 {
        cli.delete(&format!("/devices/cli-{i}")).await.ok(204);
    }
    cli.delete(&path).await.ok(204);
    cli.get(&path).await.error(404, "NotFound");
}

#[tokio::test]
async fn the_ga_1_0_version_is_refused_naming_the_supported_ones() {
    let server = Server::start().await;
    let old = server.admin().with_version(Some("1.0"));
    let message = old.get("/devices").await.error(404, "NotFound");
    assert!(
        message.starts_with("\"1.0\" is not a valid API version"),
        "{message}"
    );
    for version in [STABLE, PREVIEW, CLI_VERSION] {
        assert!(message.contains(version), "{message}");
    }
}

/// `az iot central device list-components`: the components of the device's template, each as
/// the template declares it, with its interface named by `@id`.
#[tokio::test]
async fn a_device_lists_the_components_of_its_template() {
    let server = Server::start().await;
    let cli = server.admin().with_version(Some(CLI_VERSION));
    cli.publish_template(CONTROLLER, controller_template())
        .await;
    cli.put("/devices/controller-1", json!({"template": CONTROLLER}))
        .await
        .ok(200);
    cli.put("/devices/bare-1", json!({})).await.ok(200);

    let listed = cli.get("/devices/controller-1/components").await;
    assert_eq!(
        listed.ok(200),
        &json!({"value": [
            {"@type": "Component", "name": "thermostat1", "displayName": "Thermostat One",
             "schema": "dtmi:contoso:temperaturecontroller:thermostat1;1"},
            {"@type": "Component", "name": "thermostat2", "displayName": "Thermostat Two",
             "schema": "dtmi:contoso:temperaturecontroller:thermostat2;1"},
        ]})
    );
    // The stable version serves the same.
    let stable = server.admin().get("/devices/controller-1/components").await;
    assert_eq!(stable.ok(200), listed.ok(200));
    // A device without a template has none; an unknown device is IoT Central's 404.
    let bare = cli.get("/devices/bare-1/components").await;
    assert_eq!(bare.ok(200), &json!({"value": []}));
    let message = cli
        .get("/devices/nobody/components")
        .await
        .error(404, "NotFound");
    assert!(message.contains("'nobody'"), "{message}");
}

/// `az iot central device list-modules` and the module routes: Flotilla's devices have no
/// modules (no IoT Edge), so the list is empty and every module is unknown.
#[tokio::test]
async fn modules_are_an_empty_list_and_each_module_route_is_a_404() {
    let server = Server::start().await;
    let cli = server.admin().with_version(Some(CLI_VERSION));
    cli.publish_template(CONTROLLER, controller_template())
        .await;
    cli.put("/devices/controller-1", json!({"template": CONTROLLER}))
        .await
        .ok(200);

    let modules = cli.get("/devices/controller-1/modules").await;
    assert_eq!(modules.ok(200), &json!({"value": []}));
    cli.get("/devices/nobody/modules")
        .await
        .error(404, "NotFound");

    let module = "/devices/controller-1/modules/edgeModule";
    let requests = [
        (Method::GET, format!("{module}/components"), None),
        (Method::GET, format!("{module}/properties"), None),
        (
            Method::PUT,
            format!("{module}/properties"),
            Some(json!({"a": 1})),
        ),
        (
            Method::PATCH,
            format!("{module}/properties"),
            Some(json!({"a": 1})),
        ),
        (Method::GET, format!("{module}/telemetry/temperature"), None),
        (Method::GET, format!("{module}/commands/reboot"), None),
        (
            Method::POST,
            format!("{module}/commands/reboot"),
            Some(json!({"request": 1})),
        ),
        (
            Method::GET,
            format!("{module}/components/thermostat1/properties"),
            None,
        ),
        (
            Method::PUT,
            format!("{module}/components/thermostat1/properties"),
            Some(json!({"a": 1})),
        ),
        (
            Method::PATCH,
            format!("{module}/components/thermostat1/properties"),
            Some(json!({"a": 1})),
        ),
        (
            Method::GET,
            format!("{module}/components/thermostat1/telemetry/temperature"),
            None,
        ),
        (
            Method::GET,
            format!("{module}/components/thermostat1/commands/getMaxMinReport"),
            None,
        ),
        (
            Method::POST,
            format!("{module}/components/thermostat1/commands/getMaxMinReport"),
            Some(json!({})),
        ),
    ];
    for (method, path, body) in requests {
        let mut request = cli.request(method.clone(), &path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let message = Api::send(request).await.error(404, "NotFound");
        assert!(
            message.contains("'edgeModule'") && message.contains("'controller-1'"),
            "{method} {path}: {message}"
        );
    }
    // An unknown device is named as such, before its modules.
    let message = cli
        .get("/devices/nobody/modules/edgeModule/properties")
        .await
        .error(404, "NotFound");
    assert!(message.contains("The device 'nobody'"), "{message}");
}

/// An API client of the server's HTTPS listener, trusting the development CA as devices do.
fn over_tls(server: &Server, version: &str) -> Api {
    let addr = std::fs::read_to_string(server.data_dir().join("https.addr")).unwrap();
    let ca = std::fs::read(server.data_dir().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    Api {
        http,
        base: format!("https://{addr}"),
        ..server.admin().with_version(Some(version))
    }
}

/// The `nextLink` of a list, if the list has more.
fn next_link(body: &Value) -> Option<String> {
    body.get("nextLink")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `az iot central device list` over HTTPS past 25 devices: every `nextLink` is an https link to
/// the listener the list came from, and following them over TLS gives every device once.
#[tokio::test]
async fn next_links_over_https_are_https_and_are_followed_over_tls() {
    let server = Server::start().await;
    let admin = server.admin();
    for i in 0..60 {
        admin
            .put(&format!("/devices/tls-{i:02}"), json!({}))
            .await
            .ok(200);
    }
    let cli = over_tls(&server, CLI_VERSION);
    let mut response = cli.get("/devices").await;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let body = response.ok(200);
        pages += 1;
        for device in body["value"].as_array().unwrap() {
            ids.push(device["id"].as_str().unwrap().to_string());
        }
        let Some(next) = next_link(body) else { break };
        assert!(
            next.starts_with(&format!("{}/api/devices?", cli.base)),
            "{next}"
        );
        response = cli.get_url(&next).await;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..60).map(|i| format!("tls-{i:02}")).collect();
    assert_eq!(ids, expected);
}

/// A list of two pages, asked for with forwarded headers; returns its `nextLink`.
async fn next_link_forwarded(api: &Api, proto: &str, host: &str) -> String {
    let request = api
        .request(Method::GET, "/devices?maxpagesize=1")
        .header("X-Forwarded-Proto", proto)
        .header("X-Forwarded-Host", host);
    next_link(Api::send(request).await.ok(200)).expect("a second page")
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_a_trusted_proxy() {
    let server = Server::start().await;
    let admin = server.admin().preview();
    for id in ["fwd-1", "fwd-2"] {
        admin
            .put(&format!("/devices/{id}"), json!({}))
            .await
            .ok(200);
    }
    // A client is no proxy: its headers cannot point others at another host or scheme.
    let link = next_link_forwarded(&admin, "https", "evil.example").await;
    assert!(
        link.starts_with(&format!("{}/api/devices?", server.base)),
        "{link}"
    );
    let tls = over_tls(&server, PREVIEW);
    let link = next_link_forwarded(&tls, "http", "evil.example").await;
    assert!(
        link.starts_with(&format!("{}/api/devices?", tls.base)),
        "{link}"
    );

    // The operator's proxy (here, the test itself on loopback) is believed.
    let proxied =
        Server::start_with_env(&[("FLOTILLA_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")]).await;
    let admin = proxied.admin().preview();
    for id in ["fwd-1", "fwd-2"] {
        admin
            .put(&format!("/devices/{id}"), json!({}))
            .await
            .ok(200);
    }
    let link = next_link_forwarded(&admin, "https", "central.example").await;
    assert!(
        link.starts_with("https://central.example/api/devices?maxpagesize=1&api-version=2022-10-31-preview&$skiptoken="),
        "{link}"
    );
}
