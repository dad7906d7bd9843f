//! TLS for the device endpoints. On first start the server makes a development CA
//! (`<data-dir>/ca.pem`, what devices trust) and, at every start, a server certificate signed by
//! it that covers `localhost`, `127.0.0.1` and every configured host name (names as DNS entries,
//! addresses as IP entries: SDKs that dial an address check the certificate's IP entries). An
//! operator's own certificate and key replace both. One certificate serves every connection,
//! so clients that send no SNI (as the SDKs do when they dial an address) are served too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("reading PEM from {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate comes from.
pub enum CertificateSource<'a> {
    /// Generated under the data dir, covering these host names besides localhost/127.0.0.1.
    Development {
        data_dir: &'a Path,
        hostnames: &'a [String],
    },
    /// An operator's own PEM files.
    Files { cert: &'a Path, key: &'a Path },
}

/// The rustls configuration the MQTT and HTTPS listeners use (TLS 1.2 and 1.3).
pub fn server_config(source: CertificateSource<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match source {
        CertificateSource::Development {
            data_dir,
            hostnames,
        } => development_certificate(data_dir, hostnames)?,
        CertificateSource::Files { cert, key } => (cert.to_path_buf(), key.to_path_buf()),
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            message: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Makes the CA once and a server certificate for the current host names at every start.
fn development_certificate(
    data_dir: &Path,
    hostnames: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let ca_cert_path = data_dir.join("ca.pem");
    let ca_key_path = data_dir.join("ca-key.pem");
    let issuer = if ca_cert_path.exists() && ca_key_path.exists() {
        let key = KeyPair::from_pem(&read(&ca_key_path)?)?;
        Issuer::from_ca_cert_pem(&read(&ca_cert_path)?, key)?
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Flotilla development CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let cert = params.self_signed(&key)?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        write(&ca_cert_path, &cert.pem(), false)?;
        tracing::info!(path = %ca_cert_path.display(), "created a development CA; devices trust this file");
        Issuer::new(params, key)
    };

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for name in hostnames {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    // `new` makes addresses IP entries and names DNS entries.
    let mut params = CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let cert_path = data_dir.join("server.pem");
    let key_path = data_dir.join("server-key.pem");
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}
