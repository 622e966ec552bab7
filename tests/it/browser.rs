//! End to end in a real browser: headless Chromium, driven over WebDriver (chromedriver) by
//! fantoccini, against the real binary over TLS on loopback. One path through the admin
//! pages as people take it: the platform owner's first sign-in and a new tenant, the tenant
//! owner's first sign-in, a user and a role change, an API token used and revoked, the audit
//! log verified and exported, settings and access grants, a second factor set up and used at
//! sign-in (a wrong and a replayed code refused), sign-out, and single sign-on at an OpenID
//! provider (npm `oidc-provider` on loopback) configured on the settings page. axe-core runs
//! on every page, and any serious or critical accessibility finding fails the test.
//!
//! Needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)
//! and axe-core in tests/browser/node_modules (`npm ci --prefix tests/browser`); `.ci/run`
//! installs all three. When the test fails, a screenshot of the page it was on is saved as
//! target/browser-failures/<step>.png; when it passes, the main pages are saved under
//! target/screenshots/.

use crate::support::{https, tool_missing, Env, Response, Server};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The longest any one wait for the browser may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);
/// The session cookie (see `identity::sessions::COOKIE`).
const COOKIE: &str = "__Host-strongroom";

fn worktree(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// chromedriver on a free loopback port, in a process group of its own that the Chromium it
/// starts joins too. The whole group is killed on drop, whether the test passed or not;
/// then the browser profile is removed.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let driver = Self {
            child,
            port,
            profile: tempfile::tempdir().expect("a profile directory"),
        };
        // chromedriver says when it listens; the reader keeps draining its stdout after.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(WAIT).is_err() {
            panic!("chromedriver did not start on 127.0.0.1:{port} within {WAIT:?}");
        }
        driver
    }

    async fn connect(&self) -> Client {
        let caps = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 60_000 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--ignore-certificate-errors",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            },
        });
        let caps = caps
            .as_object()
            .cloned()
            .expect("capabilities are an object");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(caps);
        builder
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromedriver opens a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use rustix::process::{kill_process_group, Pid, Signal};
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser, the server it talks to, and the step under way (named in the failure
/// screenshot).
struct Browser {
    c: Client,
    base: String,
    addr: SocketAddr,
    cert: PathBuf,
    axe: String,
    step: Mutex<String>,
}

/// An XPath string literal.
fn lit(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

/// Runs blocking work (the CLI, the plain HTTPS client) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Browser {
    fn step(&self, name: &str) {
        eprintln!("browser: {name}");
        self.set_step(name);
    }

    fn set_step(&self, name: &str) {
        *self.step.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    }

    fn current_step(&self) -> String {
        self.step.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn goto(&self, path: &str) {
        self.c
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// Waits until the browser is at `path` (with its query) and the page's heading reads
    /// `h1`.
    async fn at(&self, path: &str, h1: &str) {
        let want = self.url(path);
        let parsed = want.parse().expect("a URL on the server");
        if let Err(e) = self.c.wait().at_most(WAIT).for_url(&parsed).await {
            let now = self.c.current_url().await.map(|u| u.to_string());
            panic!("expected to reach {want}, still at {now:?}: {e}");
        }
        // The XPath matches the heading's text itself: once found, the page has it. (Reading
        // the element again could meet a page that has since reloaded: a stale element.)
        self.wait_for(&format!("//h1[normalize-space()={}]", lit(h1)))
            .await;
    }

    /// Waits for an element by XPath.
    async fn wait_for(&self, xpath: &str) -> Element {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::XPath(xpath))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self.c.current_url().await.map(|u| u.to_string());
                panic!("no {xpath} on {url:?} within {WAIT:?}: {e}")
            }
        }
    }

    /// The element's text. A page that is still being replaced (a form just submitted) can
    /// swap the element out between finding and reading it; then it is found again.
    async fn text(&self, xpath: &str) -> String {
        let mut tries = 0;
        loop {
            let el = self.wait_for(xpath).await;
            match el.text().await {
                Ok(t) => return t.trim().to_string(),
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && tries < 20 =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("element text of {xpath}: {e}"),
            }
        }
    }

    async fn fill(&self, id: &str, value: &str) {
        let el = self.wait_for(&format!("//*[@id={}]", lit(id))).await;
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("clear #{id}: {e}"));
        el.send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into #{id}: {e}"));
    }

    /// Ticks a checkbox.
    async fn tick(&self, id: &str) {
        self.wait_for(&format!("//input[@id={}]", lit(id)))
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("tick #{id}: {e}"));
    }

    async fn choose(&self, id: &str, value: &str) {
        let el = self.wait_for(&format!("//select[@id={}]", lit(id))).await;
        el.select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value} in #{id}: {e}"));
    }

    /// Clicks the button whose visible label is `label`.
    async fn press(&self, label: &str) {
        let button = self
            .wait_for(&format!("//button[normalize-space()={}]", lit(label)))
            .await;
        button
            .click()
            .await
            .unwrap_or_else(|e| panic!("press {label:?}: {e}"));
    }

    /// The text of the one-time secret on a "shown once" page.
    async fn secret(&self) -> String {
        let s = self.text("//*[@id='secret']").await;
        assert!(!s.is_empty() && !s.contains(char::is_whitespace), "{s:?}");
        s
    }

    /// Signs in on /login; the caller checks where it lands.
    async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.at("/login", "Sign in").await;
        self.fill("email", email).await;
        self.fill("password", password).await;
        self.press("Sign in").await;
    }

    /// On /password after a first sign-in: replace the one-time password, land on the
    /// overview with its notice.
    async fn first_password(&self, one_time: &str, new: &str) {
        self.at("/password", "Choose a new password").await;
        assert!(
            self.text("//main/p[1]").await.contains("one-time password"),
            "the first-sign-in explanation"
        );
        self.axe("password").await;
        self.fill("current", one_time).await;
        self.fill("new", new).await;
        self.fill("confirm", new).await;
        self.press("Change password").await;
        self.at("/?changed=1", "Overview").await;
        assert_eq!(
            self.text("//p[contains(@class,'notice')]").await,
            "Your password has been changed."
        );
    }

    async fn sign_out(&self) {
        self.press("Sign out").await;
        self.at("/login", "Sign in").await;
    }

    async fn session_cookie(&self) -> String {
        let cookie = self
            .c
            .get_named_cookie(COOKIE)
            .await
            .unwrap_or_else(|e| panic!("the {COOKIE} cookie: {e}"));
        assert_eq!(cookie.http_only(), Some(true), "{cookie}");
        assert_eq!(cookie.secure(), Some(true), "{cookie}");
        format!("{}={}", cookie.name(), cookie.value())
    }

    fn https_get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        blocking(|| https(self.addr, &self.cert, "GET", path, headers, b""))
    }

    async fn screenshot(&self, file: &Path) {
        let png = self.c.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
        }
        std::fs::write(file, png).expect("the screenshot is saved");
    }

    /// The page as it looks, for the README.
    async fn keep(&self, name: &str) {
        self.screenshot(&worktree(&format!("target/screenshots/{name}.png")))
            .await;
    }

    /// Runs axe-core on the page and fails on any serious or critical violation, naming the
    /// rule, its impact and the elements. Lesser findings are printed.
    async fn axe(&self, page: &str) {
        let was = self.current_step();
        self.set_step(&format!("{was}-axe-{page}"));
        // WebDriver scripts are not held to the page's CSP (`script-src 'self'`), so axe is
        // injected as it is; the check below fails loudly if that ever changes.
        let loaded = self
            .c
            .execute(
                &format!(
                    "if (typeof window.axe !== 'object') {{\n{}\n}}\nreturn typeof window.axe;",
                    self.axe
                ),
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("inject axe-core on {page}: {e}"));
        assert_eq!(loaded, "object", "axe-core did not load on {page}");
        let out = self
            .c
            .execute_async(AXE_RUN, vec![])
            .await
            .unwrap_or_else(|e| panic!("run axe-core on {page}: {e}"));
        if let Some(e) = out.get("error") {
            panic!("axe-core failed on {page}: {e}");
        }
        assert!(
            out["passes"].as_u64().unwrap_or(0) > 0,
            "axe-core checked nothing on {page}: {out}"
        );
        let mut bad = Vec::new();
        for v in out["violations"].as_array().expect("violations") {
            let impact = v["impact"].as_str().unwrap_or("unknown");
            let line = format!(
                "{} ({impact}): {} — {}",
                v["id"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or(""),
                v["targets"]
            );
            if matches!(impact, "serious" | "critical") {
                bad.push(line);
            } else {
                eprintln!("axe on {page}, not failing: {line}");
            }
        }
        assert!(
            bad.is_empty(),
            "accessibility violations on {page} ({}):\n{}",
            self.c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default(),
            bad.join("\n")
        );
        self.set_step(&was);
    }
}

/// Runs axe-core on the whole document and answers with what the test needs.
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(
  (r) => done({
    passes: r.passes.length,
    violations: r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target),
    })),
  }),
  (e) => done({ error: String(e) }),
);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_owner_and_a_tenant_owner_work_through_the_admin_pages_in_chromium() {
    for (what, path) in [("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)] {
        if !Path::new(path).exists() {
            tool_missing(what);
            return;
        }
    }
    let Ok(axe) =
        std::fs::read_to_string(worktree("tests/browser/node_modules/axe-core/axe.min.js"))
    else {
        tool_missing("axe-core (npm ci --prefix tests/browser)");
        return;
    };
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(worktree("target/browser-failures"));

    let env = Arc::new(Env::init());
    // `init` shows the owner's one-time password on stderr, which `Env::init` drops; a reset
    // prints a new one alone on stdout.
    let owner_otp = env
        .ok(&["user", "reset-password", "--platform", "owner@localhost"])
        .trim()
        .to_string();
    assert!(!owner_otp.is_empty());
    // The identity provider's certificate is signed by a CA the server is told to trust.
    let sso_dir = tempfile::tempdir().expect("a folder for the identity provider");
    let pki = crate::sso::Pki::new(sso_dir.path());
    std::fs::write(
        &env.config,
        format!(
            "[outbound]\nca_file = \"{}\"\nallow_internal = [\"127.0.0.1\"]\n",
            pki.ca.display()
        ),
    )
    .expect("the configuration");
    let server = Server::start(&env, &[]);
    assert!(server.addr.ip().is_loopback());
    // People reach the server as `localhost` and the provider as `127.0.0.1`: two sites, so
    // the provider's redirect back is cross-site, as it is in production, and the cookie
    // rules (`SameSite`) are the ones that matter there.
    let sso_origin = format!("https://localhost:{}", server.addr.port());
    let idp = crate::sso::provider_installed().then(|| {
        crate::sso::Idp::start(
            sso_dir.path(),
            &pki,
            serde_json::json!([{"client_id": "strongroom", "client_secret": SSO_SECRET,
                "redirect_uris": [format!("{sso_origin}/login/sso/callback")]}]),
            serde_json::json!([{"sub": "idp-sam", "email": "sam@acme.example",
                "email_verified": true, "name": "Sam Ops", "groups": ["ops"]}]),
        )
    });
    let driver = Driver::start();
    let browser = Arc::new(Browser {
        c: driver.connect().await,
        base: format!("https://{}", server.addr),
        addr: server.addr,
        cert: server.cert.clone(),
        axe,
        step: Mutex::new("start".into()),
    });

    let sso = idp.as_ref().map(|i| (i.issuer.clone(), sso_origin.clone()));
    let run = tokio::spawn(flow(browser.clone(), env.clone(), owner_otp, sso));
    let outcome = run.await;
    if outcome.is_err() {
        let file = worktree(&format!(
            "target/browser-failures/{}.png",
            browser.current_step()
        ));
        if let Ok(png) = browser.c.screenshot().await {
            if std::fs::create_dir_all(file.parent().unwrap_or(Path::new("."))).is_ok()
                && std::fs::write(&file, png).is_ok()
            {
                eprintln!("screenshot of the failing page: {}", file.display());
            }
        }
    }
    let _ = browser.c.clone().close().await;
    drop(driver);
    drop(idp);
    drop(server);
    match outcome {
        Ok(()) => eprintln!("browser test took {:.1?}", started.elapsed()),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the browser flow did not finish: {e}"),
    }
}

const SSO_SECRET: &str = "browser-test-client-secret-41c9";

async fn flow(b: Arc<Browser>, env: Arc<Env>, owner_otp: String, sso: Option<(String, String)>) {
    // a. The platform owner's first sign-in: the one-time password, then their own.
    b.step("a-platform-owner-signs-in");
    b.goto("/").await;
    b.at("/login", "Sign in").await;
    b.axe("login").await;
    b.keep("login").await;
    b.sign_in("owner@localhost", &owner_otp).await;
    b.first_password(&owner_otp, "granite orchard lantern platform")
        .await;
    assert_eq!(b.text("//header//*[@class='where']").await, "Platform");
    b.axe("overview").await;

    // b. A tenant, made on /tenants and listed there.
    b.step("b-platform-owner-creates-a-tenant");
    b.goto("/tenants").await;
    b.at("/tenants", "Tenants").await;
    b.axe("tenants-empty").await;
    b.fill("name", "Acme Freight").await;
    b.fill("region", "eu-central").await;
    b.press("Create tenant").await;
    b.at("/tenants?done=created", "Tenants").await;
    assert!(b
        .text("//p[contains(@class,'notice')]")
        .await
        .contains("has been created"));
    let row = "//table[@id='tenants']/tbody/tr[td[1][normalize-space()='Acme Freight']]";
    assert_eq!(b.text(&format!("{row}/td[3]")).await, "eu-central");
    assert_eq!(b.text(&format!("{row}/td[4]")).await, "Active");
    let tenant = b
        .wait_for(&format!("{row}/td[2]"))
        .await
        .attr("title")
        .await
        .expect("the id cell")
        .expect("the full id in its title");
    let listed: serde_json::Value =
        serde_json::from_str(&blocking(|| env.ok(&["tenant", "list", "--json"]))).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == tenant.as_str() && t["name"] == "Acme Freight"),
        "{tenant} in {listed}"
    );
    b.axe("tenants").await;
    b.keep("tenants").await;
    for (path, h1, name) in [
        ("/users", "Platform accounts", "platform-accounts"),
        ("/status", "Service status", "status"),
    ] {
        b.goto(path).await;
        b.at(path, h1).await;
        b.axe(name).await;
    }
    assert_eq!(b.text("//*[@id='state']").await, "All systems operational");
    b.step("b-platform-owner-signs-out");
    b.goto("/").await;
    b.at("/", "Overview").await;
    b.sign_out().await;

    // c. The tenant's owner, made at the console, signs in for the first time.
    b.step("c-tenant-owner-signs-in");
    let boss_otp = blocking(|| {
        env.ok(&[
            "user",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "boss@acme.example",
            "--role",
            "owner",
            "--name",
            "Bea Boss",
        ])
    })
    .trim()
    .to_string();
    assert!(!boss_otp.is_empty());
    b.sign_in("boss@acme.example", &boss_otp).await;
    b.first_password(&boss_otp, "copper meadow beacon tenant")
        .await;
    assert_eq!(
        b.text("//header//*[@class='where']").await,
        "Tenant: Acme Freight"
    );
    assert!(b.text("//main").await.contains("Bea Boss (owner)"));
    b.axe("tenant-overview").await;
    b.keep("overview").await;

    // d. A user made on /users; the one-time password shown once; a new role.
    b.step("d-tenant-owner-creates-a-user");
    b.goto("/users").await;
    b.at("/users", "Users & roles").await;
    b.axe("users").await;
    b.fill("email", "nora@acme.example").await;
    b.fill("name", "Nora Night").await;
    b.choose("role", "operator").await;
    b.press("Create account").await;
    b.at("/users", "Account created").await;
    let nora_otp = b.secret().await;
    assert_ne!(nora_otp, boss_otp);
    assert!(b.text("//main").await.contains("nora@acme.example"));
    b.axe("secret").await;
    b.goto("/users").await;
    b.at("/users", "Users & roles").await;
    let row = "//table[@id='users']/tbody/tr[td[2][normalize-space()='nora@acme.example']]";
    assert_eq!(b.text(&format!("{row}/td[3]")).await, "operator");
    assert_eq!(
        b.text(&format!("{row}/td[4]")).await,
        "Awaiting first sign-in"
    );
    b.keep("users").await;

    b.step("d-tenant-owner-changes-a-role");
    b.wait_for(&format!("{row}/td[1]/a[normalize-space()='Nora Night']"))
        .await
        .click()
        .await
        .expect("open the account");
    b.wait_for("//h1[normalize-space()='Nora Night']").await;
    let page = b.c.current_url().await.expect("the account's URL");
    let user_path = page.path().to_string();
    assert!(user_path.starts_with("/users/"), "{page}");
    assert_eq!(b.text("//*[@id='role-now']").await, "operator");
    b.axe("user").await;
    b.choose("role", "auditor").await;
    b.press("Change role").await;
    b.at(&format!("{user_path}?done=role"), "Nora Night").await;
    assert_eq!(b.text("//*[@id='role-now']").await, "auditor");
    assert!(b
        .text("//p[contains(@class,'notice')]")
        .await
        .contains("role has been changed"));

    // e. An API token: made, used, revoked, refused.
    b.step("e-tenant-owner-makes-a-token");
    b.goto("/tokens").await;
    b.at("/tokens", "API tokens").await;
    b.axe("tokens-empty").await;
    b.fill("name", "nightly-export").await;
    b.choose("role", "auditor").await;
    b.press("Make token").await;
    b.at("/tokens", "Token created").await;
    let token = b.secret().await;
    b.axe("token-secret").await;
    let bearer = format!("Bearer {token}");
    let me = b.https_get("/api/v1/me", &[("authorization", &bearer)]);
    assert_eq!(me.status, 200, "{}", me.body);
    let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(me["kind"], "token", "{me}");
    assert_eq!(me["token"]["name"], "nightly-export", "{me}");
    assert_eq!(me["role"], "auditor", "{me}");
    assert_eq!(me["tenant"], tenant.as_str(), "{me}");

    b.step("e-tenant-owner-revokes-the-token");
    b.wait_for("//a[normalize-space()='Back to API tokens']")
        .await
        .click()
        .await
        .expect("back to the tokens");
    b.at("/tokens", "API tokens").await;
    let row = "//table[@id='tokens']/tbody/tr[td[1][normalize-space()='nightly-export']]";
    assert_eq!(b.text(&format!("{row}/td[5]")).await, "Live");
    b.axe("tokens").await;
    b.keep("tokens").await;
    b.press("Revoke nightly-export").await;
    b.at("/tokens?done=revoked", "API tokens").await;
    assert!(b
        .text("//p[contains(@class,'notice')]")
        .await
        .contains("has been revoked"));
    assert_eq!(b.text(&format!("{row}/td[5]")).await, "Revoked or expired");
    let left =
        b.c.find_all(Locator::XPath(
            "//button[normalize-space()='Revoke nightly-export']",
        ))
        .await
        .expect("look for the button");
    assert!(left.is_empty(), "a revoked token offers no revoke button");
    let me = b.https_get("/api/v1/me", &[("authorization", &bearer)]);
    assert_eq!(me.status, 401, "a revoked token is refused: {}", me.body);

    // My security: this session is listed.
    b.step("e-tenant-owner-sees-their-sessions");
    b.goto("/security").await;
    b.at("/security", "My security").await;
    assert!(b
        .text("//table[@id='sessions']")
        .await
        .contains("This session"));
    b.axe("security").await;

    // Settings, access grants, and single sign-on configured on its page.
    b.step("e-tenant-owner-reviews-settings-and-grants");
    for (path, h1, name) in [
        ("/settings", "Settings and policy", "settings"),
        ("/grants", "Access grants", "grants"),
    ] {
        b.goto(path).await;
        b.at(path, h1).await;
        b.axe(name).await;
        b.keep(name).await;
    }
    if let Some((issuer, _)) = &sso {
        b.step("e-tenant-owner-sets-up-single-sign-on");
        b.goto("/settings/sso").await;
        b.at("/settings/sso", "Single sign-on").await;
        b.axe("sso-settings-empty").await;
        b.tick("enabled").await;
        b.fill("issuer", issuer).await;
        b.fill("client_id", "strongroom").await;
        b.fill("client_secret", SSO_SECRET).await;
        b.fill("scopes", "openid email profile groups").await;
        b.fill("role_map", "ops = operator").await;
        b.tick("jit").await;
        b.press("Save single sign-on").await;
        b.at("/settings/sso?done=saved", "Single sign-on").await;
        assert!(b.text("//main").await.contains("A secret is stored"));
        assert_eq!(
            b.text("//*[@id='redirect-uri']").await,
            b.url("/login/sso/callback"),
            "the redirect URI to register, from the address the browser used"
        );
        assert!(!b.text("//main").await.contains(SSO_SECRET));
        b.axe("sso-settings").await;
        b.keep("sso-settings").await;
    }

    // A second factor: set up with a code, ten recovery codes shown once, then asked for at
    // sign-in, where a wrong code and the code already used are refused.
    b.step("e-tenant-owner-sets-up-a-second-factor");
    b.goto("/security/totp").await;
    b.at("/security/totp", "Second factor").await;
    b.axe("totp-enrol").await;
    b.keep("totp-enrol").await;
    let seed = b.text("//*[@id='totp-secret']").await;
    let first = crate::factor::code_at(&seed, crate::support::now_us());
    b.fill("code", &first).await;
    b.press("Turn on the second factor").await;
    b.at("/security/totp", "Your recovery codes").await;
    let codes =
        b.c.find_all(Locator::XPath("//ul[@id='recovery-codes']/li"))
            .await
            .expect("the recovery codes");
    assert_eq!(codes.len(), 10);
    b.axe("recovery-codes").await;
    b.keep("recovery-codes").await;

    b.step("e-tenant-owner-signs-in-with-a-code");
    b.goto("/").await;
    b.at("/", "Overview").await;
    b.sign_out().await;
    b.sign_in("boss@acme.example", "copper meadow beacon tenant")
        .await;
    b.at("/login/totp", "Enter your code").await;
    b.axe("totp-code").await;
    b.keep("totp-code").await;
    let now = crate::support::now_us();
    let near: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| crate::factor::code_at(&seed, now + d * 1_000_000))
        .collect();
    let wrong = ["123456", "654321", "111111"]
        .into_iter()
        .find(|c| !near.iter().any(|n| n == c))
        .expect("a wrong code");
    for refused in [wrong, first.as_str()] {
        b.fill("code", refused).await;
        b.press("Continue").await;
        b.at("/login/totp", "Enter your code").await;
        assert!(
            b.text("//*[@id='error-summary']")
                .await
                .contains("wrong or was already used"),
            "{refused} is refused"
        );
    }
    b.axe("totp-code-refused").await;
    // The app's next code (one step of drift is allowed): a time step not used before.
    let next = crate::factor::code_at(&seed, crate::support::now_us() + 30_000_000);
    b.fill("code", &next).await;
    b.press("Continue").await;
    b.at("/", "Overview").await;
    assert!(b.text("//main").await.contains("Bea Boss (owner)"));

    // f. The audit log: entries listed, the chain verified, the export fetched with the
    // browser's own session.
    b.step("f-tenant-owner-reads-the-audit-log");
    b.goto("/audit").await;
    b.at("/audit", "Audit log").await;
    let entries =
        b.c.find_all(Locator::XPath("//table[@id='entries']/tbody/tr"))
            .await
            .expect("the entries");
    assert!(!entries.is_empty(), "the log lists entries");
    let table = b.text("//table[@id='entries']").await;
    for action in ["token.create", "token.revoke", "user.create", "user.role"] {
        assert!(table.contains(action), "{action} in the log:\n{table}");
    }
    b.axe("audit").await;
    b.keep("audit").await;

    b.step("f-tenant-owner-verifies-the-chain");
    b.press("Verify the chain").await;
    b.at("/audit/verify", "Audit log").await;
    let verdict = b.text("//*[@id='verify-result']").await;
    assert!(verdict.starts_with("The journal is intact"), "{verdict}");
    b.axe("audit-verified").await;

    b.step("f-tenant-owner-exports-the-log");
    let href = b
        .wait_for("//a[normalize-space()='Export NDJSON']")
        .await
        .attr("href")
        .await
        .expect("the link")
        .expect("an href");
    assert_eq!(href, "/audit/export?format=ndjson");
    let cookie = b.session_cookie().await;
    let export = b.https_get(&href, &[("cookie", &cookie)]);
    assert_eq!(export.status, 200, "{}", export.body);
    assert_eq!(
        export.header("content-type"),
        Some("application/x-ndjson"),
        "{:?}",
        export.headers
    );
    let lines: Vec<serde_json::Value> = export
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= entries.len(), "{} lines", lines.len());
    for action in ["token.create", "token.revoke", "user.create", "user.role"] {
        assert!(
            lines.iter().any(|l| l["action"] == action),
            "{action} in the export"
        );
    }
    // Without the cookie the export is not given out.
    assert_ne!(b.https_get(&href, &[]).status, 200);

    // f2. Knowledge and the assistant: a document uploaded through the form, found by the
    // search page with its words marked, and a question asked on the assistant page, whose
    // answer streams in (the turn's entry says so) and cites a passage that opens.
    b.step("f2-tenant-owner-adds-a-document");
    b.goto("/documents").await;
    b.at("/documents", "Documents").await;
    b.axe("documents-empty").await;
    let upload_dir = tempfile::tempdir().expect("a folder for the upload");
    let guide = upload_dir.path().join("harbour-guide.md");
    std::fs::write(
        &guide,
        "# Harbour guide\n\nThe pilot boards at the outer buoy, two miles south of the breakwater.\n\nTugs are ordered through channel 14.\n",
    )
    .expect("write the upload");
    b.wait_for("//input[@id='files']")
        .await
        .send_keys(guide.to_str().expect("a UTF-8 path"))
        .await
        .expect("choose the file");
    b.press("Add").await;
    b.at("/documents?done=added-1", "Documents").await;
    assert!(b
        .text("//table[@id='documents']")
        .await
        .contains("harbour-guide.md"));
    b.axe("documents").await;
    b.keep("documents").await;

    b.step("f2-tenant-owner-searches");
    b.goto("/search").await;
    b.at("/search", "Search the documents").await;
    b.fill("q", "pilot buoy").await;
    b.press("Search").await;
    assert_eq!(
        b.text("(//ol[@class='results']//mark)[1]")
            .await
            .to_lowercase(),
        "pilot"
    );
    b.axe("search").await;
    b.keep("search").await;

    b.step("f2-tenant-owner-asks-the-assistant");
    b.goto("/assistant").await;
    b.at("/assistant", "Assistant").await;
    b.axe("assistant-empty").await;
    b.press("New conversation").await;
    b.wait_for("//h1[normalize-space()='New conversation']")
        .await;
    b.fill("question", "Where does the pilot board?").await;
    b.press("Ask").await;
    let answer = b
        .text("//section[contains(@class,'turn')]//div[contains(@class,'answer')]")
        .await;
    assert!(
        answer.contains("The pilot boards at the outer buoy"),
        "{answer}"
    );
    b.wait_for("//h1[normalize-space()='Where does the pilot board?']")
        .await;
    let thread_path =
        b.c.current_url()
            .await
            .expect("the thread's URL")
            .path()
            .to_string();
    b.axe("assistant-thread").await;
    b.keep("assistant").await;
    let turns = blocking(|| env.ok(&["audit", "export", "--tenant", &tenant]));
    let turn: serde_json::Value = turns
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("an entry"))
        .rfind(|e| e["action"] == "assistant.turn")
        .expect("the turn's entry");
    assert_eq!(
        turn["params"]["stream"], true,
        "the page streamed the answer: {turn}"
    );

    b.step("f2-tenant-owner-reads-the-assistant-policy");
    b.goto("/settings/assistant").await;
    b.at("/settings/assistant", "Assistant policy").await;
    b.axe("assistant-policy").await;
    b.goto(&thread_path).await;

    b.step("f2-tenant-owner-opens-a-cited-passage");
    b.wait_for("//div[contains(@class,'answer')]/a[normalize-space()='[1]']")
        .await
        .click()
        .await
        .expect("open the cited passage");
    b.wait_for("//h1[normalize-space()='Passage of harbour-guide.md']")
        .await;
    assert!(b.text("//*[@id='passage']").await.contains("outer buoy"));
    b.axe("passage").await;

    // g. Sign out: back at /login, and the session is over for the browser and the cookie.
    b.step("g-tenant-owner-signs-out");
    b.sign_out().await;
    b.goto("/").await;
    b.at("/login", "Sign in").await;
    let me = b.https_get("/api/v1/me", &[("cookie", &cookie)]);
    assert_eq!(me.status, 401, "a signed-out session is refused");

    // h. Single sign-on: someone with no account yet starts from the sign-in page with the
    // organisation's id, signs in at the provider, and lands on the overview with the role
    // the provider's group maps to.
    if let Some((_, origin)) = &sso {
        b.step("h-someone-signs-in-at-the-identity-provider");
        let login = format!("{origin}/login");
        b.c.goto(&login).await.expect("open the sign-in page");
        b.wait_for("//h1[normalize-space()='Sign in']").await;
        b.fill("who", &tenant).await;
        b.press("Sign in with single sign-on").await;
        let home: url::Url = format!("{origin}/").parse().expect("a URL");
        if let Err(e) = b.c.wait().at_most(WAIT).for_url(&home).await {
            let now = b.c.current_url().await.map(|u| u.to_string());
            panic!("single sign-on did not reach {home}, at {now:?}: {e}");
        }
        b.wait_for("//h1[normalize-space()='Overview']").await;
        assert!(b.text("//main").await.contains("Sam Ops (operator)"));
        b.axe("sso-overview").await;
        let flow_cookie = b.c.get_named_cookie("__Host-strongroom-sso").await;
        assert!(
            flow_cookie.is_err(),
            "the flow cookie is gone: {flow_cookie:?}"
        );
        let listed = blocking(|| env.ok(&["user", "list", "--tenant", &tenant, "--json"]));
        assert!(listed.contains("sam@acme.example"), "{listed}");
    }
}
