//! Who a CONNECT is: a device of the hub, or a registration with DPS, proven by a SAS token
//! signed with the device's own key or a key derived from an enrollment group's.

use flotilla_model::enrollment_group::EnrollmentGroup;
use flotilla_model::keys::derive_device_key;
use flotilla_store::{PageRequest, Store};
use rumqttc::{Connect, ConnectReturnCode};

use crate::sas::{SasError, SasToken, Username};

/// An authenticated client.
#[derive(Debug, Clone)]
pub enum Identity {
    Device {
        device_id: String,
    },
    /// A DPS registration; `exists` says whether the device is known already.
    Registration {
        registration_id: String,
        exists: bool,
    },
}

impl Identity {
    pub fn client_id(&self) -> &str {
        match self {
            Identity::Device { device_id } => device_id,
            Identity::Registration {
                registration_id, ..
            } => registration_id,
        }
    }
}

/// Authenticates a CONNECT, or gives the CONNACK code that refuses it: `BadClientId` when the
/// client id is not the one the username names, `BadUserNamePassword` for a malformed, expired or
/// wrongly signed token, `NotAuthorized` for an unknown or disabled device or a foreign ID scope.
pub async fn authenticate(
    store: &Store,
    id_scope: &str,
    connect: &Connect,
) -> Result<Identity, ConnectReturnCode> {
    let login = connect
        .login
        .as_ref()
        .ok_or(ConnectReturnCode::BadUserNamePassword)?;
    let username =
        Username::parse(&login.username).ok_or(ConnectReturnCode::BadUserNamePassword)?;
    let token =
        SasToken::parse(&login.password).map_err(|_| ConnectReturnCode::BadUserNamePassword)?;
    let now = jiff::Timestamp::now().as_second();
    let internal = |e: flotilla_store::StoreError| {
        tracing::error!(error = %e, "store error while authenticating");
        ConnectReturnCode::ServiceUnavailable
    };
    match username {
        Username::Device { device_id, .. } => {
            if device_id != connect.client_id {
                return Err(ConnectReturnCode::BadClientId);
            }
            let device = store
                .device(&device_id)
                .await
                .map_err(internal)?
                .ok_or(ConnectReturnCode::NotAuthorized)?;
            if !device.enabled {
                return Err(ConnectReturnCode::NotAuthorized);
            }
            let keys = device_keys(store, &device_id).await.map_err(internal)?;
            check_any(&token, &keys, &format!("devices/{device_id}"), now)?;
            Ok(Identity::Device { device_id })
        }
        Username::Registration {
            id_scope: scope,
            registration_id,
        } => {
            if !scope.eq_ignore_ascii_case(id_scope) {
                return Err(ConnectReturnCode::NotAuthorized);
            }
            if registration_id != connect.client_id {
                return Err(ConnectReturnCode::BadClientId);
            }
            let device = store.device(&registration_id).await.map_err(internal)?;
            if device.as_ref().is_some_and(|d| !d.enabled) {
                return Err(ConnectReturnCode::NotAuthorized);
            }
            let keys = device_keys(store, &registration_id)
                .await
                .map_err(internal)?;
            let resource = format!("{scope}/registrations/{registration_id}");
            check_any(&token, &keys, &resource, now)?;
            Ok(Identity::Registration {
                registration_id,
                exists: device.is_some(),
            })
        }
    }
}

/// The keys a device may sign with: its individual attestation's, or else those derived from
/// every enabled enrollment group.
async fn device_keys(store: &Store, device_id: &str) -> flotilla_store::Result<Vec<String>> {
    if let Some(Some(attestation)) = store.attestation(device_id).await?
        && let Some(keys) = attestation.get("symmetricKey")
    {
        return Ok(["primaryKey", "secondaryKey"]
            .iter()
            .filter_map(|k| keys.get(*k).and_then(|v| v.as_str()).map(str::to_string))
            .collect());
    }
    let groups = enabled_groups(store).await?;
    Ok(groups
        .iter()
        .flat_map(|g| [&g.primary_key, &g.secondary_key])
        .filter_map(|key| derive_device_key(key, device_id))
        .collect())
}

async fn enabled_groups(store: &Store) -> flotilla_store::Result<Vec<EnrollmentGroup>> {
    let page = store
        .list_enrollment_groups(PageRequest {
            after: None,
            size: 1000,
        })
        .await?;
    Ok(page.items.into_iter().filter(|g| g.enabled).collect())
}

fn check_any(
    token: &SasToken,
    keys: &[String],
    resource: &str,
    now: i64,
) -> Result<(), ConnectReturnCode> {
    let mut expired = false;
    for key in keys {
        match token.verify(key, resource, now) {
            Ok(()) => return Ok(()),
            Err(SasError::Expired) => expired = true,
            Err(_) => {}
        }
    }
    if expired {
        tracing::info!(resource = ?crate::device_log::Untrusted(resource), "refused an expired SAS token");
    }
    Err(ConnectReturnCode::BadUserNamePassword)
}
