//! Calls to other servers: one HTTP client for all of them (single sign-on providers now,
//! model endpoints later), on rustls with the ring provider, so the binary carries one TLS
//! stack. It follows no redirect (a provider that redirects its token endpoint is refused
//! rather than followed somewhere unchecked), bounds every wait, and caps every body.

use crate::config::OutboundConfig;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// Largest response body read from another server.
pub const MAX_BODY: usize = 1024 * 1024;

/// Largest trust-anchor file read.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The client could not be built (the trust anchors, most likely).
    #[error("outbound TLS client: {0}")]
    Setup(String),
    /// Connecting, TLS, or the exchange failed; the text names the host, never a secret.
    #[error("{0}")]
    Failed(String),
    #[error("the answer of {0} is larger than {MAX_BODY} bytes")]
    TooLarge(String),
}

/// The client, shared by every part that calls out.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
}

/// The trust anchors of a PEM file, with a message that names the problem otherwise.
///
/// # Errors
/// The file cannot be read, is too large, or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
    if meta.len() > MAX_CA_FILE {
        return Err(format!(
            "{shown} is larger than 4 MiB; give a PEM file of CA certificates"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|_| {
            format!(
                "{shown} is not a PEM file of certificates (-----BEGIN CERTIFICATE----- blocks)"
            )
        })?;
        let cert = reqwest::Certificate::from_der(&cert)
            .map_err(|_| format!("{shown} holds a certificate that cannot be parsed"))?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err(format!(
            "{shown} holds no certificate; give a PEM file with -----BEGIN CERTIFICATE----- blocks"
        ));
    }
    Ok(out)
}

/// The origin (`https://host[:port]`, no trailing slash) of an https URL that has no user,
/// path beyond `/`, query or fragment; `None` otherwise.
pub fn public_origin(raw: &str) -> Option<String> {
    let u = url::Url::parse(raw.trim()).ok()?;
    let plain = u.scheme() == "https"
        && u.username().is_empty()
        && u.password().is_none()
        && u.host().is_some()
        && matches!(u.path(), "" | "/")
        && u.query().is_none()
        && u.fragment().is_none();
    plain.then(|| u.origin().ascii_serialization())
}

impl Outbound {
    /// # Errors
    /// [`OutboundError::Setup`] when the trust anchors cannot be read or the client built.
    pub fn new(config: &OutboundConfig) -> Result<Self, OutboundError> {
        // reqwest takes its crypto from the process default: ring, installed once. A second
        // install (another part, or a test in the same process) keeps the first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .timeout(Duration::from_secs(config.timeout_secs))
            .https_only(true)
            .no_proxy()
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            b = b.tls_certs_merge(read_ca_file(path).map_err(OutboundError::Setup)?);
        }
        let client = b
            .build()
            .map_err(|e| OutboundError::Setup(error_chain(&e)))?;
        Ok(Self { client })
    }

    /// Sends one request and reads the whole answer, at most [`MAX_BODY`] bytes.
    ///
    /// # Errors
    /// Connecting, TLS, a timeout, or a body that is too large.
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let host = request.uri().host().unwrap_or("the server").to_string();
        let request = reqwest::Request::try_from(request)
            .map_err(|_| OutboundError::Failed(format!("cannot send a request to {host}")))?;
        let mut response = self.client.execute(request).await.map_err(|e| {
            OutboundError::Failed(format!("cannot reach {host}: {}", error_chain(&e)))
        })?;
        let mut out = http::Response::builder().status(response.status());
        if let Some(h) = out.headers_mut() {
            *h = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            OutboundError::Failed(format!("reading the answer of {host}: {}", error_chain(&e)))
        })? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(OutboundError::TooLarge(host));
            }
            body.extend_from_slice(&chunk);
        }
        out.body(body)
            .map_err(|_| OutboundError::Failed(format!("a malformed answer from {host}")))
    }
}

/// The causes of an error, joined, without the URL (which may carry a code or a token).
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_string());
    }
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    if parts.is_empty() {
        parts.push(
            if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            }
            .into(),
        );
    }
    parts.join(": ")
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Outbound {
    type Error = OutboundError;
    type Future = Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, OutboundError>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_origins_are_plain_https_origins() {
        assert_eq!(
            public_origin("https://sr.example.com/").as_deref(),
            Some("https://sr.example.com")
        );
        assert_eq!(
            public_origin("https://127.0.0.1:8443").as_deref(),
            Some("https://127.0.0.1:8443")
        );
        for bad in [
            "http://sr.example.com",
            "https://sr.example.com/app",
            "https://u:p@sr.example.com",
            "https://sr.example.com/?x=1",
            "sr.example.com",
            "",
        ] {
            assert_eq!(public_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, b"not a certificate").unwrap_or_else(|e| panic!("{e}"));
        let e = read_ca_file(&path).err().unwrap_or_default();
        assert!(e.contains("ca.pem") && e.contains("no certificate"), "{e}");
        let missing = read_ca_file(&dir.path().join("absent.pem"))
            .err()
            .unwrap_or_default();
        assert!(missing.contains("cannot read"), "{missing}");
        let garbled = dir.path().join("bad.pem");
        std::fs::write(
            &garbled,
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = read_ca_file(&garbled).err().unwrap_or_default();
        assert!(e.contains("bad.pem"), "{e}");
    }
}
