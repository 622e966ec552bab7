//! TLS: rustls with the ring provider, TLS 1.3 and 1.2 only, ALPN h2 and http/1.1.
//! The certificate is the configured one, or the self-signed pair `init` writes to
//! `<data_dir>/tls/`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Config(String),
    #[error("cannot create the self-signed certificate: {0}")]
    Generate(String),
}

impl TlsError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cert { .. } => "TLS-0001",
            Self::Key { .. } => "TLS-0002",
            Self::Config(_) => "TLS-0003",
            Self::Generate(_) => "TLS-0004",
        }
    }
}

pub fn default_cert_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Writes a self-signed certificate for localhost, 127.0.0.1 and ::1 unless one exists.
/// Returns true if it wrote one.
///
/// # Errors
/// Generation or file errors.
pub fn ensure_self_signed(data_dir: &Path) -> Result<bool, TlsError> {
    let (cert_path, key_path) = default_cert_paths(data_dir);
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    let gen = |e: &dyn std::fmt::Display| TlsError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(|e| gen(&e))?;
    let now = std::time::SystemTime::now();
    let year: i32 = humantime::format_rfc3339_seconds(now).to_string()[..4]
        .parse()
        .unwrap_or(2026);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Strongroom self-signed");
    let key = rcgen::KeyPair::generate().map_err(|e| gen(&e))?;
    let cert = params.self_signed(&key).map_err(|e| gen(&e))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir.join("tls"))
        .map_err(|e| gen(&e))?;
    let write = |path: &Path, body: &str, mode: u32| -> Result<(), TlsError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(|e| gen(&e))?;
        f.write_all(body.as_bytes()).map_err(|e| gen(&e))?;
        f.sync_all().map_err(|e| gen(&e))
    };
    write(
        &key_path,
        &zeroize::Zeroizing::new(key.serialize_pem()),
        0o600,
    )?;
    write(&cert_path, &cert.pem(), 0o600)?;
    Ok(true)
}

/// Builds the rustls server configuration from PEM files.
///
/// # Errors
/// Unreadable or malformed certificate or key, or a key that does not match.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    // Regular files only, read with a bound: a FIFO or a device must not hang the start.
    let read = |p: &Path| crate::fsutil::read_regular(p, 1 << 20);
    let cert_pem = read(cert).map_err(|e| cert_err(crate::fsutil::io_reason(&e)))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate found".into()));
    }
    let key_err = |reason: String| TlsError::Key {
        path: key.display().to_string(),
        reason,
    };
    let key_pem = read(key).map_err(|e| key_err(crate::fsutil::io_reason(&e)))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            reason: format!("unusable, or does not match the certificate ({e})"),
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

crate::domain_error!(TlsError, |_e| crate::error::ErrorKind::Internal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_loads_and_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_self_signed(dir.path()).unwrap());
        let (c, k) = default_cert_paths(dir.path());
        let before = std::fs::read(&c).unwrap();
        assert!(!ensure_self_signed(dir.path()).unwrap());
        assert_eq!(before, std::fs::read(&c).unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config(&c, &k).unwrap();
    }

    #[test]
    fn broken_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        ensure_self_signed(dir.path()).unwrap();
        let (c, k) = default_cert_paths(dir.path());
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = server_config(&junk, &k).unwrap_err();
        assert!(
            matches!(e, TlsError::Cert { .. }) && e.to_string().contains("junk.pem"),
            "{e}"
        );
        let e = server_config(&c, &junk).unwrap_err();
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
        let e = server_config(&c, &dir.path().join("absent.pem")).unwrap_err();
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
        // A key that is valid but belongs to another certificate.
        let other = tempfile::tempdir().unwrap();
        ensure_self_signed(other.path()).unwrap();
        let (_, other_key) = default_cert_paths(other.path());
        assert!(server_config(&c, &other_key).is_err());
    }
}

/// The `notAfter` time of the first certificate in a PEM file, as Unix seconds.
///
/// # Errors
/// Unreadable, not PEM, or not a parsable X.509 certificate.
pub fn not_after(cert: &Path) -> Result<i64, TlsError> {
    use x509_cert::der::Decode;
    let err = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let der = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no PEM certificate found".into()))?
        .map_err(|e| err(e.to_string()))?;
    let parsed = x509_cert::Certificate::from_der(der.as_ref())
        .map_err(|e| err(format!("not an X.509 certificate: {e}")))?;
    let t = parsed.tbs_certificate.validity.not_after.to_unix_duration();
    Ok(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_expires_about_two_years_ahead() {
        let dir = tempfile::tempdir().unwrap();
        ensure_self_signed(dir.path()).unwrap();
        let (c, _) = default_cert_paths(dir.path());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let days = (not_after(&c).unwrap() - now) / 86_400;
        assert!((365..=3 * 366).contains(&days), "{days}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(not_after(&junk), Err(TlsError::Cert { .. })));
        std::fs::write(&junk, "").unwrap();
        assert!(not_after(&junk).is_err());
    }
}
