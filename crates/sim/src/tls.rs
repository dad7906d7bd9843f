//! The devices' TLS: rustls with the `ring` provider, trusting only the server's CA.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::Error;

/// A connector that trusts the certificates in `ca_pem` (TLS 1.2 and 1.3).
pub fn connector(ca_pem: &Path) -> Result<TlsConnector, Error> {
    let tls = |message: String| Error::Tls(format!("{}: {message}", ca_pem.display()));
    let certs = CertificateDer::pem_file_iter(ca_pem)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls("no certificate in the file".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| tls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name the server's certificate must cover: an address for an IP, a DNS name otherwise.
pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_string())
        .map_err(|_| Error::Config(format!("'{host}' is neither a host name nor an address")))
}
