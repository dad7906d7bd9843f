//! TLS for the device endpoints. The first server to start on a database makes a development
//! CA and keeps it in the database, where every server on it finds the same one
//! (`share_development_ca`), and writes it to its data dir (`ca.pem`, what devices trust). At
//! every start a server signs its own certificate with it, covering `localhost`, `127.0.0.1` and
//! its configured host names (names as DNS entries, addresses as IP entries: SDKs that dial an
//! address check the certificate's IP entries), so a device that trusts `ca.pem` trusts every
//! server. An operator's own certificate and key replace both. One certificate serves every
//! connection, so clients that send no SNI (as the SDKs do when they dial an address) are
//! served too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotilla_store::{Store, StoreError};
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
    #[error("keeping the development CA in the database: {0}")]
    Store(#[from] StoreError),
    #[error("the development CA kept in the database (setting {CA_SETTING}) is unreadable")]
    StoredCa,
}

/// The setting that keeps the development CA (certificate and key, PEM) in the database.
const CA_SETTING: &str = "development_ca";

/// The development CA: its certificate and private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CaPem {
    cert: String,
    key: String,
}

impl CaPem {
    fn to_setting(&self) -> String {
        serde_json::json!({"cert": self.cert, "key": self.key}).to_string()
    }

    fn from_setting(value: &str) -> Result<CaPem, TlsError> {
        let value: serde_json::Value =
            serde_json::from_str(value).map_err(|_| TlsError::StoredCa)?;
        let field = |name: &str| value[name].as_str().map(str::to_string);
        match (field("cert"), field("key")) {
            (Some(cert), Some(key)) => Ok(CaPem { cert, key }),
            _ => Err(TlsError::StoredCa),
        }
    }

    /// A new CA.
    fn generate() -> Result<CaPem, TlsError> {
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
        Ok(CaPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// The CA in a data dir (`ca.pem`, `ca-key.pem`), if it has one.
    fn in_data_dir(data_dir: &Path) -> Result<Option<CaPem>, TlsError> {
        let (cert, key) = ca_files(data_dir);
        if !(cert.exists() && key.exists()) {
            return Ok(None);
        }
        Ok(Some(CaPem {
            cert: read(&cert)?,
            key: read(&key)?,
        }))
    }

    fn write_to_data_dir(&self, data_dir: &Path) -> Result<(), TlsError> {
        let (cert, key) = ca_files(data_dir);
        write(&key, &self.key, true)?;
        write(&cert, &self.cert, false)
    }
}

/// Where a data dir keeps the development CA: its certificate (what devices trust) and key.
fn ca_files(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("ca.pem"), data_dir.join("ca-key.pem"))
}

/// Makes the data dir's development CA the one kept in the database, so that every server on
/// the database presents a certificate from one CA. The first server to start stores its CA
/// (the data dir's own, so that devices of an existing install keep trusting it; else a new
/// one); every later server, on any data dir, adopts the stored one.
pub async fn share_development_ca(store: &Store, data_dir: &Path) -> Result<(), TlsError> {
    let local = CaPem::in_data_dir(data_dir)?;
    let candidate = match &local {
        Some(ca) => ca.to_setting(),
        None => CaPem::generate()?.to_setting(),
    };
    let shared = CaPem::from_setting(&store.setting_or_init(CA_SETTING, || candidate).await?)?;
    if local.as_ref() != Some(&shared) {
        if local.is_some() {
            tracing::warn!(path = %data_dir.join("ca.pem").display(), "this data dir's development CA differs from the one the database keeps; replaced by the database's, which devices must trust");
        } else {
            tracing::info!(path = %data_dir.join("ca.pem").display(), "wrote the database's development CA; devices trust this file");
        }
        shared.write_to_data_dir(data_dir)?;
    }
    Ok(())
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

/// Makes the CA if the data dir has none, and a server certificate for the current host names
/// at every start.
fn development_certificate(
    data_dir: &Path,
    hostnames: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let ca = match CaPem::in_data_dir(data_dir)? {
        Some(ca) => ca,
        None => {
            let ca = CaPem::generate()?;
            ca.write_to_data_dir(data_dir)?;
            tracing::info!(path = %data_dir.join("ca.pem").display(), "created a development CA; devices trust this file");
            ca
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key)?)?;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-tls-{}-{}-{name}",
            std::process::id(),
            flotilla_model::keys::random_hex::<4>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn an_existing_data_dirs_ca_is_kept_in_the_database_and_adopted_by_the_others() {
        let (existing, other) = (temp_dir("existing"), temp_dir("other"));
        // A file, not `:memory:`: each of the store's connections would get a database of its own.
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", other.display());
        let store = Store::connect(&url).await.unwrap();
        // An install from before: its CA in its data dir, made at its first start.
        server_config(CertificateSource::Development {
            data_dir: &existing,
            hostnames: &[],
        })
        .unwrap();
        let trusted = std::fs::read_to_string(existing.join("ca.pem")).unwrap();

        share_development_ca(&store, &existing).await.unwrap();
        share_development_ca(&store, &other).await.unwrap();
        for dir in [&existing, &other] {
            assert_eq!(
                std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
                trusted
            );
            server_config(CertificateSource::Development {
                data_dir: dir,
                hostnames: &["r.example.com".into()],
            })
            .unwrap();
        }
        // A data dir with a CA of its own adopts the database's.
        let stray = temp_dir("stray");
        server_config(CertificateSource::Development {
            data_dir: &stray,
            hostnames: &[],
        })
        .unwrap();
        share_development_ca(&store, &stray).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(stray.join("ca.pem")).unwrap(),
            trusted
        );
        for dir in [existing, other, stray] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
