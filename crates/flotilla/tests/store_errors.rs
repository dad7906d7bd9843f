//! Refusals the store reports by kind (no such entity, an id taken, a template in use, each
//! naming the entity and its id) reach clients worded by the API, exactly so.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_missing_entity_is_named_in_the_message() {
    let server = Server::start().await;
    let api = server.admin().preview();
    for (path, message) in [
        ("/devices/ghost", "The device 'ghost' was not found."),
        (
            "/deviceGroups/ghost",
            "The device group 'ghost' was not found.",
        ),
        (
            "/deviceTemplates/ghost",
            "The device template 'ghost' was not found.",
        ),
        (
            "/enrollmentGroups/ghost",
            "The enrollment group 'ghost' was not found.",
        ),
        ("/apiTokens/ghost", "The API token 'ghost' was not found."),
        (
            "/scheduledJobs/ghost",
            "The scheduled job 'ghost' was not found.",
        ),
    ] {
        let refused = api.delete(path).await;
        assert_eq!(refused.error(404, "NotFound"), message, "DELETE {path}");
    }
}

#[tokio::test]
async fn a_taken_id_and_a_template_in_use_are_worded_by_kind() {
    let server = Server::start().await;
    let api = server.admin().preview();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    api.put("/devices/tc-1", json!({"template": CONTROLLER}))
        .await
        .ok(200);
    let template = format!("/deviceTemplates/{}", encode(CONTROLLER));

    let taken = api.put(&template, controller_template()).await;
    assert_eq!(
        taken.error(409, "Conflict"),
        format!(
            "A device template with the id '{CONTROLLER}' already exists; change it with PATCH or publish a new version."
        )
    );
    let in_use = api.delete(&template).await;
    assert_eq!(
        in_use.error(409, "Conflict"),
        format!(
            "The device template '{CONTROLLER}' is used by 1 device(s); move or delete them first."
        )
    );

    let group =
        json!({"displayName": "Group", "type": "iot", "attestation": {"type": "symmetricKey"}});
    api.put("/enrollmentGroups/eg-1", group.clone())
        .await
        .ok(200);
    assert_eq!(
        api.put("/enrollmentGroups/eg-1", group)
            .await
            .error(409, "Conflict"),
        "A enrollment group with the id 'eg-1' already exists."
    );
    let token = json!({"roles": [{"role": ADMINISTRATOR}]});
    api.put("/apiTokens/ops", token.clone()).await.ok(200);
    assert_eq!(
        api.put("/apiTokens/ops", token)
            .await
            .error(409, "Conflict"),
        "A API token with the id 'ops' already exists."
    );
}
