//! TLS for devices: the rustls server configuration loaded from PEM files, and the development
//! certificates `gyre-ingest-bridge dev-certs` (run by `cargo xtask up`) makes.
//!
//! What the SDKs need (reference §1 and §8): TLS 1.2 must be offered (the Python SDK pins it;
//! Node negotiates 1.3), no ALPN, and the certificate must name the host the device dials, an IP
//! SAN for `127.0.0.1` (no SNI is sent for an IP). The crypto provider is ring, chosen
//! explicitly so no process-wide default has to be installed.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    NoKey { path: PathBuf, reason: String },
    #[error("the certificate and key are not usable together: {0}")]
    Config(#[from] rustls::Error),
    #[error("generating development certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The server configuration for `cert` (PEM chain, leaf first) and `key` (PEM): TLS 1.3 and
/// 1.2 on ring, no client certificates, no ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::NoKey {
        path: key.to_owned(),
        reason: err.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The files [`dev_certs`] leaves in its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCerts {
    /// The development CA devices trust.
    pub ca: PathBuf,
    /// The server certificate (leaf, then the CA).
    pub cert: PathBuf,
    /// The server's private key, owner-only.
    pub key: PathBuf,
    /// False when all three files existed and were reused.
    pub created: bool,
}

/// A development CA (`ca.pem`, its key `ca-key.pem`) and a server certificate for `hosts` (DNS
/// names or IP addresses) signed by it (`server.pem`, `server-key.pem`), in `dir`. Files that
/// already exist are reused, so devices keep trusting the same CA across restarts.
pub fn dev_certs(dir: &Path, hosts: &[String]) -> Result<DevCerts, TlsError> {
    let certs = DevCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        created: false,
    };
    let ca_key_path = dir.join("ca-key.pem");
    if [&certs.ca, &ca_key_path, &certs.cert, &certs.key]
        .iter()
        .all(|path| path.is_file())
    {
        return Ok(certs);
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;

    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gyre development CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);

    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    for host in hosts {
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(host.as_str().try_into()?),
        });
    }
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        hosts.first().map(String::as_str).unwrap_or("localhost"),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    // Under 398 days is only enforced by browsers; devices take the CA's word.
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    write_file(&ca_key_path, &ca_key.serialize_pem(), true)?;
    write_file(&certs.key, &key.serialize_pem(), true)?;
    write_file(&certs.ca, &ca_cert.pem(), false)?;
    write_file(
        &certs.cert,
        &format!("{}{}", cert.pem(), ca_cert.pem()),
        false,
    )?;
    Ok(DevCerts {
        created: true,
        ..certs
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let mode = if secret { 0o600 } else { 0o644 };
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()));
    result.map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_load_as_a_server_config_and_are_reused() {
        let dir = std::env::temp_dir().join(format!("gyre-dev-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = dev_certs(&dir, &hosts).expect("dev certs");
        assert!(made.created);
        server_config(&made.cert, &made.key).expect("a usable server config");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&made.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = dev_certs(&dir, &hosts).expect("dev certs again");
        assert!(!again.created);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
