//! Calls to other servers: one HTTP client for all of them (single sign-on providers now,
//! model endpoints later), on rustls with the ring provider, so the binary carries one TLS
//! stack. It follows no redirect (a provider that redirects its token endpoint is refused
//! rather than followed somewhere unchecked), bounds every wait, and caps every body.
//!
//! Host names are resolved by [`Names`] (`hickory-resolver` reading `/etc/hosts` and
//! `resolv.conf` itself, never the C library's name service), and the connection goes to
//! the addresses that were checked. A tenant's administrator chooses its identity provider,
//! so a provider that resolves to a loopback, private, link-local or otherwise internal
//! address is refused unless the installation lists that host or address in
//! `outbound.allow_internal`: a tenant cannot point the server at the machines around it.

use crate::config::OutboundConfig;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Longest wait for a name to resolve.
const RESOLVE_TIME: Duration = Duration::from_secs(5);

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
    /// The host is internal and not listed.
    #[error("{0}")]
    Refused(String),
}

/// Resolves host names without the C library: made on the first name to resolve, so an
/// installation that names every server by address never reads the resolver's files.
#[derive(Default)]
pub struct Names {
    pub(crate) inner: OnceLock<Option<hickory_resolver::TokioResolver>>,
}

impl Names {
    /// Reads `resolv.conf` and `/etc/hosts`, once. A system without them can still reach
    /// servers given by address.
    fn get(&self) -> Option<&hickory_resolver::TokioResolver> {
        self.inner
            .get_or_init(|| {
                hickory_resolver::Resolver::builder_tokio()
                    .and_then(|b| b.build())
                    .map_err(|e| {
                        tracing::warn!(error = %e, "no DNS configuration; other servers must be given by address");
                    })
                    .ok()
            })
            .as_ref()
    }

    /// The addresses of `host`, or why there are none, in words.
    ///
    /// # Errors
    /// No DNS configuration, no answer in time, or no address.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, &'static str> {
        let Some(r) = self.get() else {
            return Err("no DNS configuration to resolve it with");
        };
        match tokio::time::timeout(RESOLVE_TIME, r.lookup_ip(host)).await {
            Err(_) => Err("its name did not resolve in time"),
            Ok(Err(_)) => Err("its name does not resolve"),
            Ok(Ok(found)) => {
                let v: Vec<IpAddr> = found.iter().collect();
                if v.is_empty() {
                    Err("its name does not resolve")
                } else {
                    Ok(v)
                }
            }
        }
    }
}

/// Addresses another server may not have unless listed: loopback, private, link-local,
/// shared (CGNAT), unique-local, unspecified, multicast, documentation and IPv4-mapped forms
/// of any of them.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16) carry an IPv4
            // address a gateway reaches on the caller's behalf, internal ones included.
            let embeds_v4 = (s[0] == 0x64 && s[1] == 0xff9b) || s[0] == 0x2002;
            embeds_v4
                || v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Why `host` may not be reached at `ips`, if it may not: an internal address whose host
/// and address are both unlisted.
fn internal_refusal(host: &str, ips: &[IpAddr], allow: &[String]) -> Option<String> {
    let listed = |s: &str| allow.iter().any(|a| a.eq_ignore_ascii_case(s));
    if listed(host) {
        return None;
    }
    ips.iter()
        .find(|ip| is_internal(**ip) && !listed(&ip.to_string()))
        .map(|ip| {
            // The address goes to the operator's log only: this message reaches a tenant's
            // administrator, who would otherwise learn the internal network's layout.
            tracing::warn!(%host, address = %ip, "outbound call refused: an internal address not on outbound.allow_internal");
            format!(
                "{host} is at an internal address (the server's log names it); list the host \
                 or the address in outbound.allow_internal to allow it"
            )
        })
}

/// The client's resolver: [`Names`], then the internal-address rule.
struct Checked {
    names: Arc<Names>,
    allow: Arc<[String]>,
}

impl reqwest::dns::Resolve for Checked {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (names, allow) = (self.names.clone(), self.allow.clone());
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let ips = names
                .lookup(&host)
                .await
                .map_err(|reason| format!("{host}: {reason}"))?;
            if let Some(refusal) = internal_refusal(&host, &ips, &allow) {
                return Err(refusal.into());
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The client, shared by every part that calls out.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow: Arc<[String]>,
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
        let allow: Arc<[String]> = config.allow_internal.clone().into();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .timeout(Duration::from_secs(config.timeout_secs))
            .https_only(true)
            .no_proxy()
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(Checked {
                names: Arc::new(Names::default()),
                allow: allow.clone(),
            }));
        if let Some(path) = &config.ca_file {
            b = b.tls_certs_merge(read_ca_file(path).map_err(OutboundError::Setup)?);
        }
        let client = b
            .build()
            .map_err(|e| OutboundError::Setup(error_chain(&e)))?;
        Ok(Self { client, allow })
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
        // An address in the URL is never resolved, so the resolver's rule is applied here.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if let Some(refusal) = internal_refusal(bare, &[ip], &self.allow) {
                return Err(OutboundError::Refused(refusal));
            }
        }
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

    fn outbound(allow: &[&str]) -> Outbound {
        let config = OutboundConfig {
            allow_internal: allow.iter().map(|s| (*s).to_string()).collect(),
            connect_timeout_secs: 2,
            timeout_secs: 5,
            ..OutboundConfig::default()
        };
        Outbound::new(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn get(o: &Outbound, url: &str) -> String {
        let req = http::Request::get(url)
            .body(Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        match o.send(req).await {
            Ok(r) => panic!("{url} answered {}", r.status()),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn internal_addresses_are_reached_only_when_listed() {
        // Nothing listens on port 1: a call that is let through fails to connect instead.
        let plain = outbound(&[]);
        let e = get(
            &plain,
            "https://127.0.0.1:1/.well-known/openid-configuration",
        )
        .await;
        assert!(
            e.contains("127.0.0.1 is at an internal address")
                && e.contains("outbound.allow_internal"),
            "{e}"
        );
        let e = get(&plain, "https://[::1]:1/").await;
        assert!(e.contains("outbound.allow_internal"), "{e}");
        // A name is resolved by the server's own resolver from /etc/hosts, then checked.
        let e = get(&plain, "https://localhost:1/").await;
        assert!(
            e.contains("localhost is at an internal address")
                && e.contains("allow_internal")
                && !e.contains("127.0.0.1"),
            "{e}"
        );
        let listed = outbound(&["127.0.0.1", "LocalHost"]);
        for url in ["https://127.0.0.1:1/", "https://localhost:1/"] {
            let e = get(&listed, url).await;
            assert!(
                e.contains("cannot reach") && !e.contains("allow_internal"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_listed_host_or_address_lifts_the_internal_rule() {
        let ten: IpAddr = "10.0.0.5".parse().unwrap_or_else(|e| panic!("{e}"));
        let public: IpAddr = "151.101.1.69".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(internal_refusal("idp.corp", &[ten], &[]).is_some());
        assert!(internal_refusal("idp.corp", &[public, ten], &[]).is_some());
        assert!(internal_refusal("idp.corp", &[ten], &["IDP.corp".into()]).is_none());
        assert!(internal_refusal("idp.corp", &[ten], &["10.0.0.5".into()]).is_none());
        assert!(internal_refusal("idp.corp", &[ten], &["10.0.0.6".into()]).is_some());
        assert!(internal_refusal("login.example.com", &[public], &[]).is_none());
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
