//! Requests as the Azure CLI's `az iot central` sends them: the api-version it hard-codes, the
//! OData parameters it adds, and the `nextLink`s it follows over HTTPS.

mod common;

use common::*;
use serde_json::json;

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
