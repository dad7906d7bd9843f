//! Devices: each with its keys (`GET /devices/{id}/credentials`) and cloud properties, written
//! whole in one statement when new or changed.

use std::collections::HashSet;

use flotilla_model::device::Device;
use flotilla_model::new_etag;
use flotilla_store::ImportedDevice;
use serde_json::{Value, json};

use crate::ImportError;
use crate::client::{Client, STABLE, segment};
use crate::report::{Kind, Outcome, Report};
use crate::resources::Target;

/// Imports the source's devices (or only those of `group`), each whose template this server has
/// or takes in this run (`templates`; another fails, with the reason); sets `scope` to the source's ID
/// scope as the devices' credentials state it (as soon as one does: a list that ends early
/// keeps it).
pub async fn import(
    client: &Client,
    target: &Target<'_>,
    group: Option<&str>,
    templates: &HashSet<String>,
    scope: &mut Option<String>,
    report: &mut Report,
) -> Result<(), ImportError> {
    let mut pages = match group {
        None => client.pages("/devices", STABLE),
        Some(group) => client.pages(&format!("/deviceGroups/{}/devices", segment(group)), STABLE),
    };
    while let Some(page) = pages.next(client).await? {
        for item in page {
            let id = item["id"].as_str().unwrap_or_default().to_string();
            match one(client, target, templates, &item, &id).await? {
                Ok((outcome, device_scope)) => {
                    if scope.is_none() {
                        *scope = device_scope;
                    }
                    report.count(Kind::Devices, outcome);
                }
                Err(Refused::Skip(reason)) => report.skip(Kind::Devices, &id, reason),
                Err(Refused::Fail(reason)) => report.fail(Kind::Devices, &id, reason),
            }
        }
    }
    Ok(())
}

/// Why one device was not imported.
enum Refused {
    Skip(String),
    Fail(String),
}

async fn one(
    client: &Client,
    target: &Target<'_>,
    templates: &HashSet<String>,
    item: &Value,
    id: &str,
) -> Result<Result<(Outcome, Option<String>), Refused>, ImportError> {
    // A device names its template; one this server does not have (it failed to import) would
    // refuse the device's write, so the device fails here, and the import goes on.
    if let Some(template) = item["template"].as_str()
        && !templates.contains(template)
        && target.store.template(template).await?.is_none()
    {
        return Ok(Err(Refused::Fail(format!(
            "its template {template} is not on this server: it failed to import, or the source \
             does not list it"
        ))));
    }
    let path = format!("/devices/{}", segment(id));
    // Both reads at once: each waits a round trip (and its slot under the rate).
    let credentials_path = format!("{path}/credentials");
    let cloud_path = format!("{path}/cloudProperties");
    let (credentials, cloud_properties) = tokio::join!(
        client.get(&credentials_path, STABLE),
        client.get(&cloud_path, STABLE)
    );
    let Some(credentials) = credentials? else {
        return Ok(Err(Refused::Fail("deleted during the import".into())));
    };
    let keys = &credentials["symmetricKey"];
    let (Some(primary), Some(secondary)) =
        (keys["primaryKey"].as_str(), keys["secondaryKey"].as_str())
    else {
        let reason = if credentials.get("x509").is_some() {
            "X.509 attestation: the private keys stay on the devices and their CA; re-create its \
             attestation here"
        } else if credentials.get("tpm").is_some() {
            "TPM attestation: not carried over; re-create its attestation here"
        } else {
            "its credentials carry no symmetric keys"
        };
        return Ok(Err(Refused::Skip(reason.into())));
    };
    let attestation = json!({
        "type": "symmetricKey",
        "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
    });
    let cloud_properties = cloud_properties?.unwrap_or_else(|| json!({}));

    let existing = target.store.device(id).await?;
    let mut device = Device {
        id: id.to_string(),
        etag: String::new(),
        display_name: item["displayName"].as_str().unwrap_or(id).to_string(),
        template: item["template"].as_str().map(str::to_string),
        enabled: item["enabled"].as_bool().unwrap_or(true),
        provisioned: existing.as_ref().is_some_and(|d| d.provisioned),
        simulated: item["simulated"].as_bool().unwrap_or(false),
        organizations: item["organizations"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let outcome = match &existing {
        None => Outcome::Created,
        Some(current) => {
            let same_device = Device {
                etag: String::new(),
                ..current.clone()
            } == device;
            let same_keys =
                target.store.attestation(id).await?.flatten().as_ref() == Some(&attestation);
            let same_cloud = target
                .store
                .cloud_properties(id)
                .await?
                .is_some_and(|(properties, _)| properties == cloud_properties);
            if same_device && same_keys && same_cloud {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            }
        }
    };
    let scope = credentials["idScope"].as_str().map(str::to_string);
    if target.plan || outcome == Outcome::Unchanged {
        return Ok(Ok((outcome, scope)));
    }
    device.etag = new_etag();
    let imported = ImportedDevice {
        device: &device,
        attestation: Some(&attestation),
        cloud_properties: &cloud_properties,
    };
    match &existing {
        None => target.store.insert_imported_device(imported).await?,
        Some(current) => {
            if !target
                .store
                .replace_imported_device(imported, &current.etag)
                .await?
            {
                return Ok(Err(Refused::Fail(
                    "changed in the database during the import; run it again".into(),
                )));
            }
        }
    }
    Ok(Ok((outcome, scope)))
}
