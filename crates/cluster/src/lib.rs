//! Flotilla across several servers on one PostgreSQL database (cluster mode). Devices connect
//! to any server; [`ClusterBus`] is the device bus the job engine and the REST API use there:
//! it reaches a device through this server's hub when it is connected here, and through the
//! server holding it otherwise (a `device_calls` row and a signal, answered the same way). The
//! dispatcher hears the signals addressed to this server and acts on them.

mod bus;
mod calls;
mod dispatch;

use flotilla_gateway::Hub;
use flotilla_store::{Store, StoreError};

pub use bus::ClusterBus;

/// Starts listening for signals and returns the bus over this server's hub and the others.
/// Fails when the signal listener cannot connect.
pub async fn start(store: Store, hub: Hub) -> Result<ClusterBus, StoreError> {
    let listener = store.signal_listener().await?;
    let bus = ClusterBus::new(store, hub);
    tokio::spawn(dispatch::run(bus.clone(), listener));
    Ok(bus)
}
