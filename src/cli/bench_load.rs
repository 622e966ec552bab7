//! The load generator of the HTTP benchmarks: kept-alive HTTP/1.1 connections, over TLS to
//! the server or plain to a loopback upstream, each sending one request after another until
//! a deadline or a count, recording each latency. It is a client of the server like any
//! other, in the bench process, not part of the server.

use super::Failure;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn fail(what: &str) -> impl Fn(String) -> Failure + '_ {
    move |e| Failure::new("BEN-0003", format!("{what}: {e}"))
}

/// The latency at fraction `p` of `sorted`, in seconds.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64()
}

/// Trusts the server's certificate `cert` for the name "localhost", HTTP/1.1 only.
pub(super) fn client_config(cert: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, Failure> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail("certificate")(e.to_string()))?
    {
        roots
            .add(c.map_err(|e| fail("certificate")(e.to_string()))?)
            .map_err(|e| fail("certificate")(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("tls")(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What every connection of a run sends.
pub(super) struct Target {
    pub addr: SocketAddr,
    /// TLS to the server; `None` for plain HTTP (a loopback upstream).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `Authorization` values, used in turn (one per tenant when the load is spread).
    pub bearers: Vec<HeaderValue>,
    pub body: axum::body::Bytes,
    pub expect: u16,
}

/// Runs `conns` connections until `seconds` have passed (or `max` requests in all): the
/// latencies, sorted, and the requests per second.
pub(super) async fn run(
    target: &Arc<Target>,
    conns: usize,
    seconds: u64,
    max: usize,
) -> Result<(Vec<Duration>, f64), Failure> {
    let deadline = Instant::now() + Duration::from_secs(seconds.max(1));
    let tasks: Vec<_> = (0..conns)
        .map(|c| tokio::spawn(connection(target.clone(), c, deadline, max / conns.max(1))))
        .collect();
    let start = Instant::now();
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.map_err(|e| fail("load")(e.to_string()))??);
    }
    let rps = times.len() as f64 / start.elapsed().as_secs_f64();
    times.sort();
    Ok((times, rps))
}

/// One kept-alive connection: requests until the deadline or `max`.
async fn connection(
    target: Arc<Target>,
    index: usize,
    deadline: Instant,
    max: usize,
) -> Result<Vec<Duration>, Failure> {
    let tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| fail("connect")(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .map_err(|e| fail("tls")(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| fail("handshake")(e.to_string()))?;
            drive(
                hyper_util::rt::TokioIo::new(tls),
                &target,
                index,
                deadline,
                max,
            )
            .await
        }
        None => {
            drive(
                hyper_util::rt::TokioIo::new(tcp),
                &target,
                index,
                deadline,
                max,
            )
            .await
        }
    }
}

async fn drive<T>(
    io: T,
    target: &Target,
    index: usize,
    deadline: Instant,
    max: usize,
) -> Result<Vec<Duration>, Failure>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| fail("http")(e.to_string()))?;
    tokio::spawn(conn);
    let mut times = Vec::new();
    while times.len() < max && Instant::now() < deadline {
        let mut b = Request::builder()
            .method(target.method.clone())
            .uri(target.path.as_str())
            .header("host", "localhost");
        for (k, v) in &target.headers {
            b = b.header(k, v);
        }
        if !target.bearers.is_empty() {
            let i = (index * 7 + times.len()) % target.bearers.len();
            b = b.header("authorization", &target.bearers[i]);
        }
        let req = b
            .body(Body::from(target.body.clone()))
            .map_err(|e| fail("request")(e.to_string()))?;
        let start = Instant::now();
        let res = send
            .send_request(req)
            .await
            .map_err(|e| fail("request")(e.to_string()))?;
        let status = res.status();
        let body = axum::body::to_bytes(Body::new(res.into_body()), 1 << 20)
            .await
            .map_err(|e| fail("response")(e.to_string()))?;
        times.push(start.elapsed());
        if status != target.expect {
            return Err(Failure::new(
                "BEN-0003",
                format!(
                    "{} {} answered {status}: {}",
                    target.method,
                    target.path,
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ),
            ));
        }
    }
    Ok(times)
}
