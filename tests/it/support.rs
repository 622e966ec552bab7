//! Helpers: run the binary against a temporary data directory, start the server on a random
//! loopback port, and speak HTTPS to it with the data directory's certificate as the only
//! trusted root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

/// A temporary installation: a data directory and an empty config file, so that nothing on
/// the host (such as /etc/strongroom/config.toml) leaks into a test.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let config = tmp.path().join("config.toml");
        std::fs::write(&config, "").unwrap();
        Self {
            tmp,
            dir,
            config,
            extra_env: Vec::new(),
        }
    }

    /// A new, initialized installation.
    pub fn init() -> Self {
        let env = Self::new();
        let out = env.run(&["init"]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        env
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// Like `command`, with the binary run by a wrapper such as `strace -f`.
    pub fn command_under(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.arg("--data-dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("STRONGROOM_") {
                c.env_remove(k);
            }
        }
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// Runs a command with the crash hook set at `step`, waits until it stops there, and
    /// SIGKILLs it: a crash between two steps of the operation.
    pub fn kill_at(&self, args: &[&str], step: u32) {
        let mut child = self
            .command(args)
            .env("SR_FAULT_ROTATE_STEP", step.to_string())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let reached = BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("fault point reached"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(reached, "{args:?} never reached fault point {step}");
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strongroom {args:?} failed: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
        stdout(&out)
    }

    /// Runs and expects failure; returns stderr + stdout.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "strongroom {args:?} should have failed: {}",
            stdout(&out)
        );
        let text = format!("{}{}", stderr(&out), stdout(&out));
        assert!(!text.contains("panicked"), "{text}");
        text
    }

    pub fn create_tenant(&self, name: &str) -> String {
        self.ok(&["tenant", "create", name]).trim().to_string()
    }

    /// Lets each token of `tenant` make `burst` calls to models, then one per 1000 s.
    pub fn limit_token_calls(&self, tenant: &str, burst: u32) {
        let burst = format!("token.burst={burst}");
        self.ok(&[
            "assistant",
            "limits",
            "--tenant",
            tenant,
            "--set",
            "token.rps=0.001",
            "--set",
            &burst,
        ]);
    }

    /// The action of every system journal entry, oldest first.
    pub fn system_actions(&self) -> Vec<String> {
        self.ok(&["audit", "export", "--system"])
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["action"].as_str().unwrap().to_string()
            })
            .collect()
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls/cert.pem")
    }

    /// Opens the installation in-process, for tests that need to reach below the CLI.
    pub fn app(&self) -> strongroom::app::App {
        strongroom::app::App::open(&strongroom::config::Config::default(), &self.dir).unwrap()
    }

    /// A copy of the data directory, for destructive tests.
    pub fn clone_dir(&self) -> Env {
        let copy = Env::new();
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.dir)
            .arg(&copy.dir)
            .status()
            .unwrap();
        assert!(status.success());
        copy
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running server process; killed on drop if the test did not stop it.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub cert: PathBuf,
}

impl Server {
    /// Starts `serve` on 127.0.0.1:0 and waits for its "listening on" line.
    pub fn start(env: &Env, extra: &[&str]) -> Self {
        Self::start_under(env, &[], extra)
    }

    /// Like `start`, with the binary run by a wrapper such as `strace -f`.
    pub fn start_under(env: &Env, wrapper: &[&str], extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = env
            .command_under(wrapper, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("strongroom: listening on https://") {
                        break rest.parse::<SocketAddr>().unwrap();
                    }
                }
                _ => {
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    panic!("server did not start: {err}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr,
            cert: env.cert(),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        https(self.addr, &self.cert, "GET", path, &[], b"")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn client_config(
    cert: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One HTTP/1.1 request over TLS, verified against `cert` for the name "localhost".
pub fn https(
    addr: SocketAddr,
    cert: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    https_with(
        addr,
        client_config(cert, &[&rustls::version::TLS13, &rustls::version::TLS12]),
        method,
        path,
        headers,
        body,
    )
    .unwrap()
}

pub fn https_with(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes())?;
    tls.write_all(body)?;
    tls.flush()?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(parse_response(&raw))
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        body = out;
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    all_entries(dir)
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect()
}

/// Every entry under `dir`, directories included; links are listed, not followed.
pub fn all_entries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// True when the tests run as root (as CI does), which some checks need.
/// A tool a test needs is missing: a failure under CI (where `.ci/run` installs it), a note
/// and a skip elsewhere. Returns so the caller can `return`.
pub fn tool_missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing under CI; .ci/run installs it"
    );
    eprintln!("{what} is not installed; this part of the test is skipped");
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads a server's stdout until its "listening on" line; returns the address.
pub fn wait_listening(stdout: std::process::ChildStdout) -> Option<SocketAddr> {
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("strongroom: listening on https://")
                .and_then(|a| a.parse().ok())
        })
}

/// Opens the installation in-process with a clock `days_later` days ahead and a key-age
/// policy of `max_age_days`.
pub fn app_days_later(env: &Env, days_later: i64, max_age_days: u64) -> strongroom::app::App {
    use std::sync::Arc;
    let (root, source) =
        strongroom::keyring::load_root_key(None, &env.dir.join("root.key")).unwrap();
    let keyring = Arc::new(strongroom::keyring::Keyring::new(root, source).unwrap());
    let mut cfg = strongroom::config::Config::default();
    cfg.keys.max_age_days = Some(max_age_days);
    let clock = Arc::new(strongroom::clock::ManualClock::new(
        now_us() + days_later * 86_400_000_000,
    ));
    strongroom::app::App::with_keyring(&cfg, &env.dir, keyring, clock, false).unwrap()
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Waits for a spawned server's "listening on" line and asks it for `/healthz`, trusting the
/// certificate in `data_dir`. Returns the status.
pub fn healthz_of(child: &mut Child, data_dir: &Path) -> u16 {
    let addr = wait_listening(child.stdout.take().expect("stdout is piped"))
        .expect("the server did not start");
    https(
        addr,
        &data_dir.join("tls/cert.pem"),
        "GET",
        "/healthz",
        &[],
        b"",
    )
    .status
}

/// The real router in this process, on a clock that only moves when a test moves it: for
/// tests that need time to pass (idle timeouts, expiries, checkpoint intervals) without
/// waiting for it. The other helper, [`Server`], runs the real binary.
pub struct InProcess {
    pub env: Env,
    pub app: Arc<strongroom::app::App>,
    pub clock: Arc<strongroom::clock::ManualClock>,
    pub router: axum::Router,
}

impl InProcess {
    /// A fresh installation whose configuration file holds `config`, opened at `start_us`.
    pub fn start(config: &str, start_us: i64) -> Self {
        let env = Env::init();
        std::fs::write(&env.config, config).unwrap();
        let loaded = strongroom::config::load(Some(&env.config), std::iter::empty()).unwrap();
        let (root, source) =
            strongroom::keyring::load_root_key(None, &env.dir.join("root.key")).unwrap();
        let keyring = Arc::new(strongroom::keyring::Keyring::new(root, source).unwrap());
        let clock = Arc::new(strongroom::clock::ManualClock::new(start_us));
        let app = Arc::new(
            strongroom::app::App::with_keyring(
                &loaded.config,
                &env.dir,
                keyring,
                clock.clone(),
                false,
            )
            .unwrap(),
        );
        let router = strongroom::web::app(strongroom::web::AppState::new(app.clone()).unwrap());
        Self {
            env,
            app,
            clock,
            router,
        }
    }

    /// Another node of the same installation: its own state (its own limiter and
    /// connections), the same data and clock, as a second server behind a load balancer.
    pub fn node(&self) -> axum::Router {
        strongroom::web::app(strongroom::web::AppState::new(self.app.clone()).unwrap())
    }

    /// Sends one request through the router (no socket, no TLS) and returns the status,
    /// the headers and the body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, axum::http::HeaderMap, Vec<u8>) {
        self.send(method, path, &[], body).await
    }

    /// As [`InProcess::request`], with headers, from 192.0.2.10 (the accept loop's
    /// `ConnectInfo`) unless an `x-test-peer` header names another address.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, axum::http::HeaderMap, Vec<u8>) {
        send_to(&self.router, method, path, headers, body).await
    }
}

/// As [`InProcess::send`], through `router` (one of [`InProcess::node`]).
pub async fn send_to(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    use tower::ServiceExt;
    let mut b = axum::http::Request::builder().method(method).uri(path);
    let mut peer: std::net::SocketAddr = "192.0.2.10:40000".parse().unwrap();
    for (k, v) in headers {
        if *k == "x-test-peer" {
            peer = v.parse().unwrap();
        } else {
            b = b.header(*k, *v);
        }
    }
    let mut req = b.body(axum::body::Body::from(body.to_vec())).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

/// How many values of `kind` an AI entry's parameters say were replaced; 0 when none.
pub fn redacted_count(params: &serde_json::Value, kind: &str) -> u64 {
    params["redacted"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["kind"] == kind)
        .and_then(|c| c["count"].as_u64())
        .unwrap_or(0)
}
