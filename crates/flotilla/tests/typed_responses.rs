//! Responses are typed structs that are also the OpenAPI schema; what they put on the wire is
//! what the hand-built JSON did: a template comes back as it was published (fields the server
//! does not know kept, a `null` kept as `null`), and an attestation and the credentials it gives
//! carry only the spec's fields.

mod common;

use common::*;
use serde_json::{Value, json};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn a_template_comes_back_as_published_with_its_etag() {
    let server = Server::start().await;
    let api = server.admin();
    let mut body = thermostat_template();
    body["@context"] = json!(["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"]);
    body["description"] = Value::Null;
    body["x-custom"] = json!({"kept": [1, 2.5, "three"]});
    let published = api.publish_template(THERMOSTAT, body.clone()).await;
    let published = published.ok(200).clone();
    let got = api
        .get(&format!("/deviceTemplates/{}", encode(THERMOSTAT)))
        .await;
    let got = got.ok(200);
    assert_eq!(got, &published);
    let mut expected = body.as_object().unwrap().clone();
    expected.insert("@id".into(), json!(THERMOSTAT));
    expected.insert("etag".into(), published["etag"].clone());
    assert_eq!(got.as_object().unwrap(), &expected);
}

#[tokio::test]
async fn an_attestation_and_its_credentials_carry_only_the_spec_fields() {
    let server = Server::start().await;
    let api = server.admin();
    api.put("/devices/typed-1", json!({})).await.ok(200);
    let attestation = api
        .put(
            "/devices/typed-1/attestation",
            json!({"type": "x509", "extra": 1, "x509": {"clientCertificates": {
                "primary": {"certificate": "p", "info": {}}}}}),
        )
        .await;
    let expected =
        json!({"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": "p"}}}});
    assert_eq!(attestation.ok(200), &expected);
    assert_eq!(
        api.get("/devices/typed-1/attestation").await.ok(200),
        &expected
    );
    let credentials = api.get("/devices/typed-1/credentials").await;
    let credentials = credentials.ok(200).as_object().unwrap().clone();
    assert_eq!(credentials.len(), 2, "{credentials:?}");
    assert_eq!(credentials["x509"], expected["x509"]);

    let patched = api
        .patch(
            "/devices/typed-1/attestation",
            json!({"type": "symmetricKey", "x509": null,
                   "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}),
        )
        .await;
    let keys = json!({"primaryKey": KEY, "secondaryKey": KEY});
    assert_eq!(
        patched.ok(200),
        &json!({"type": "symmetricKey", "symmetricKey": keys})
    );
    let credentials = api.get("/devices/typed-1/credentials").await;
    assert_eq!(credentials.ok(200)["symmetricKey"], keys);
}
