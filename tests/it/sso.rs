//! Single sign-on against a real OpenID provider: the npm package `oidc-provider`, started
//! by the test on loopback over TLS with a certificate of a CA the test makes and gives to
//! Strongroom as `outbound.ca_file`. The test plays the browser: it follows the provider's
//! redirects with the provider's cookies, and brings the answer back to the real router.

use crate::signin::{cookie_value, journal, set_cookie, text, Browser, Site};
use crate::support::{https, InProcess};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use strongroom::ids::TenantId;

const SECRET: &str = "correct-horse-client-secret-7f3a";
const ORIGIN: &str = "https://strongroom.test";
const FLOW: &str = "__Host-strongroom-sso=";

/// Whether `npm ci --prefix tests/oidc` has run. Outside CI the tests skip without it; in CI
/// (`CI=true`) its absence fails them.
pub fn provider_installed() -> bool {
    let ok = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oidc/node_modules/oidc-provider")
        .is_dir()
        && Command::new("node").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tests/oidc is not installed: run `npm ci --prefix tests/oidc`"
        );
        eprintln!("skipped: run `npm ci --prefix tests/oidc` for the single sign-on tests");
    }
    ok
}

/// A CA and a server certificate it signed, for localhost and 127.0.0.1.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The provider's ID-token signing key (P-256).
    pub signing: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Strongroom test identity CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        let pki = Self {
            ca: dir.join("idp-ca.pem"),
            cert: dir.join("idp.pem"),
            key: dir.join("idp.key"),
            signing: dir.join("idp-signing.key"),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, leaf.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        std::fs::write(&pki.signing, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        pki
    }
}

/// The identity provider process; it exits when dropped (its stdin closes) or killed.
pub struct Idp {
    child: Child,
    pub issuer: String,
    pub addr: SocketAddr,
    ca: PathBuf,
}

impl Idp {
    pub fn start(
        dir: &Path,
        pki: &Pki,
        clients: serde_json::Value,
        accounts: serde_json::Value,
    ) -> Self {
        let cfg = dir.join("idp.json");
        let body = serde_json::json!({
            "cert": pki.cert, "key": pki.key, "signing_key": pki.signing,
            "clients": clients, "accounts": accounts,
        });
        std::fs::write(&cfg, body.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("idp.log")).unwrap();
        let mut child = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/idp.mjs"))
            .arg(&cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        // Bounded: a provider that never says it listens fails the test, not hangs it.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_default();
        let issuer = line
            .trim()
            .strip_prefix("idp: listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "the identity provider did not start: {line:?} {}",
                    std::fs::read_to_string(dir.join("idp.log")).unwrap_or_default()
                )
            })
            .to_string();
        let addr = issuer.strip_prefix("https://").unwrap().parse().unwrap();
        Self {
            child,
            issuer,
            addr,
            ca: pki.ca.clone(),
        }
    }

    /// Follows the provider's redirects from an authorization URL, as a browser would, to
    /// the URL it sends the browser back to.
    pub fn authorize(&self, url: &str) -> String {
        let mut jar: Vec<(String, String, String)> = Vec::new();
        let mut url = url.to_string();
        for _ in 0..10 {
            let path = url
                .strip_prefix(&self.issuer)
                .unwrap_or_else(|| panic!("left the provider early: {url}"))
                .to_string();
            let cookies = jar
                .iter()
                .filter(|(_, _, p)| path.starts_with(p.as_str()))
                .map(|(n, v, _)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let host = self.addr.to_string();
            let mut headers = vec![("host", host.as_str())];
            if !cookies.is_empty() {
                headers.push(("cookie", cookies.as_str()));
            }
            let r = https(self.addr, &self.ca, "GET", &path, &headers, b"");
            for (k, v) in &r.headers {
                if !k.eq_ignore_ascii_case("set-cookie") {
                    continue;
                }
                let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
                let (name, value) = pair.split_once('=').unwrap();
                let cpath = attrs
                    .split(';')
                    .find_map(|a| a.trim().strip_prefix("path="))
                    .unwrap_or("/")
                    .to_string();
                jar.retain(|(n, _, p)| !(n == name && *p == cpath));
                jar.push((name.to_string(), value.to_string(), cpath));
            }
            assert!(
                matches!(r.status, 302 | 303),
                "provider answered {} at {path}: {}",
                r.status,
                r.body
            );
            let location = r.header("location").unwrap().to_string();
            url = if location.starts_with('/') {
                format!("{}{location}", self.issuer)
            } else {
                location
            };
            if !url.starts_with(&self.issuer) {
                return url;
            }
        }
        panic!("too many redirects at the provider");
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A URL with one query parameter replaced (or added).
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    u.to_string()
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The reasons of the failed sign-ins in a journal, in order.
fn failure_reasons(journal: &[serde_json::Value]) -> Vec<&str> {
    journal
        .iter()
        .filter(|e| e["action"] == "auth.sign_in" && e["outcome"] == "failure")
        .map(|e| e["params"]["reason"].as_str().unwrap())
        .collect()
}

struct World {
    site: Site,
    idp: Idp,
    owner: Browser,
    _dir: tempfile::TempDir,
}

fn accounts() -> serde_json::Value {
    serde_json::json!([
        {"sub": "idp-alice", "email": "alice@acme.test", "email_verified": true,
         "name": "Alice Example", "groups": ["strongroom-admins", "staff"]},
        {"sub": "idp-bob", "email": "bob@acme.test", "email_verified": true,
         "name": "Bob", "groups": ["staff"]},
        {"sub": "idp-carol", "email": "carol@acme.test", "email_verified": true,
         "name": "Carol", "groups": ["visitors"]},
        {"sub": "idp-dave", "email": "dave@acme.test", "email_verified": false,
         "name": "Dave", "groups": ["staff"]},
        {"sub": "idp-oona", "email": "oona@acme.test", "email_verified": true,
         "name": "Oona", "groups": ["strongroom-admins"]},
        // A provider that does not say (as Microsoft Entra ID does not).
        {"sub": "idp-erin", "email": "erin@acme.test", "name": "Erin", "groups": ["staff"]},
    ])
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let callback = format!("{ORIGIN}/login/sso/callback");
        let idp = Idp::start(
            dir.path(),
            &pki,
            serde_json::json!([
                {"client_id": "strongroom", "client_secret": SECRET, "redirect_uris": [callback]},
                {"client_id": "strongroom-slow", "client_secret": SECRET,
                 "redirect_uris": [callback], "code_ttl_secs": 1},
            ]),
            accounts(),
        );
        let config = format!(
            "[identity]\nsession_idle_secs = 600\nsession_absolute_secs = 3600\n\
             [server]\npublic_url = \"{ORIGIN}\"\n[outbound]\nca_file = \"{}\"\n\
             allow_internal = [\"127.0.0.1\"]\n",
            pki.ca.display()
        );
        let s = InProcess::start(&config, crate::support::now_us());
        let tenant = TenantId::parse(&s.env.create_tenant("acme")).unwrap();
        let site = Site { s, tenant };
        let (owner, _) = site.signed_in("olga@acme.test", "owner").await;
        let w = Self {
            site,
            idp,
            owner,
            _dir: dir,
        };
        let st = w.configure("strongroom", true).await;
        assert_eq!(st.0, 303, "{}", st.1);
        w
    }

    async fn post_settings(&self, fields: &[(&str, &str)]) -> (u16, String) {
        let mut all = vec![("csrf", self.owner.csrf.as_str())];
        all.extend_from_slice(fields);
        let body = serde_urlencoded::to_string(&all).unwrap();
        let (st, _, b) = self
            .site
            .s
            .send(
                "POST",
                "/settings/sso",
                &[
                    ("cookie", &self.owner.cookie),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .await;
        (st, text(&b))
    }

    async fn configure(&self, client: &str, jit: bool) -> (u16, String) {
        let mut f = vec![
            ("enabled", "on"),
            ("issuer", self.idp.issuer.as_str()),
            ("client_id", client),
            ("client_secret", SECRET),
            ("scopes", "openid email profile groups"),
            ("role_claim", "groups"),
            ("role_map", "strongroom-admins = admin\nstaff = operator"),
        ];
        if jit {
            f.push(("jit", "on"));
        }
        self.post_settings(&f).await
    }

    /// The sign-in page's single sign-on form, posted with `who`.
    async fn sso_form(&self, who: &str) -> (u16, axum::http::HeaderMap, Vec<u8>) {
        let body = serde_urlencoded::to_string([("who", who)]).unwrap();
        self.site
            .s
            .send(
                "POST",
                "/login/sso",
                &[("content-type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .await
    }

    /// Starts at the tenant's link: the provider's URL and the flow cookie.
    async fn begin(&self) -> (String, String) {
        let path = format!("/login/sso/{}", self.site.tenant);
        let (st, h, b) = self.site.s.send("GET", &path, &[], b"").await;
        assert_eq!(st, 303, "{}", text(&b));
        let location = h.get("location").unwrap().to_str().unwrap().to_string();
        let set = h
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with(FLOW))
            .unwrap();
        for attr in [
            "; Path=/",
            "; Secure",
            "; HttpOnly",
            "; SameSite=Lax",
            "; Max-Age=600",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        (location, cookie_value(&set))
    }

    /// The provider's answer brought back to the callback with the flow cookie.
    async fn back(&self, url: &str, flow: Option<&str>) -> (u16, axum::http::HeaderMap, String) {
        let path = url
            .strip_prefix(ORIGIN)
            .unwrap_or_else(|| panic!("not sent back here: {url}"));
        let mut headers = vec![("user-agent", "sso-test")];
        if let Some(f) = flow {
            headers.push(("cookie", f));
        }
        let (st, h, b) = self.site.s.send("GET", path, &headers, b"").await;
        (st, h, text(&b))
    }

    /// A whole sign-in as the provider's account with `email`.
    async fn sign_in_as(&self, email: &str) -> (u16, axum::http::HeaderMap, String) {
        let (auth, flow) = self.begin().await;
        let back = self.authorize_blocking(&with_param(&auth, "login_hint", email));
        self.back(&back, Some(&flow)).await
    }

    fn authorize_blocking(&self, url: &str) -> String {
        tokio::task::block_in_place(|| self.idp.authorize(url))
    }
}

/// Single sign-ins counted in `/metrics` with `outcome`, as a scraper on this host sees it.
async fn sso_sign_ins_counted(w: &World, outcome: &str) -> f64 {
    let (st, _, b) = w
        .site
        .s
        .send(
            "GET",
            "/metrics",
            &[("x-test-peer", "127.0.0.1:40000")],
            b"",
        )
        .await;
    assert_eq!(st, 200);
    let want = format!("strongroom_sign_ins_total{{method=\"sso\",outcome=\"{outcome}\"}} ");
    text(&b)
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn set_cookie_named(h: &axum::http::HeaderMap, prefix: &str) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(prefix))
}

fn session_of(h: &axum::http::HeaderMap) -> String {
    cookie_value(&set_cookie(h).expect("a session cookie"))
}

#[tokio::test(flavor = "multi_thread")]
async fn single_sign_on_creates_maps_links_and_signs_in() {
    if !provider_installed() {
        return;
    }
    let w = World::new().await;
    let counted_before = [
        sso_sign_ins_counted(&w, "success").await,
        sso_sign_ins_counted(&w, "refused").await,
    ];

    // The authorization request: code flow, S256 PKCE, a nonce and a state, our client.
    let (auth, _) = w.begin().await;
    assert!(
        auth.starts_with(&format!("{}/auth?", w.idp.issuer)),
        "{auth}"
    );
    assert_eq!(param(&auth, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&auth, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(param(&auth, "client_id").as_deref(), Some("strongroom"));
    assert_eq!(
        param(&auth, "redirect_uri").as_deref(),
        Some("https://strongroom.test/login/sso/callback")
    );
    assert!(param(&auth, "nonce").is_some_and(|n| n.len() >= 16));
    assert!(param(&auth, "state").is_some_and(|n| n.len() >= 16));
    assert!(param(&auth, "scope").unwrap().contains("groups"));

    // Alice has no account: one is made, with the role her first mapped group gives.
    let (st, h, body) = w.sign_in_as("alice@acme.test").await;
    assert_eq!(st, 200, "{body}");
    assert!(
        body.contains("http-equiv=\"refresh\" content=\"0;url=/\""),
        "{body}"
    );
    let cleared = h.get_all("set-cookie").iter().any(|v| {
        v.to_str().unwrap().starts_with(FLOW) && v.to_str().unwrap().contains("Max-Age=0")
    });
    assert!(cleared, "the flow cookie is cleared");
    let alice = session_of(&h);
    let (st, me) = w.site.me(&[("cookie", &alice)]).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["user"]["email"], "alice@acme.test");

    // An owner's account is not linked by address to a provider that maps her to less:
    // whoever set the provider up could otherwise take it over.
    w.site.account("oona@acme.test", "owner");
    let (st, h, body) = w.sign_in_as("oona@acme.test").await;
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("does not map oona@acme.test to owner"),
        "{body}"
    );
    assert!(set_cookie(&h).is_none());

    // Bob already has a password account (auditor): it is linked by his verified address and
    // takes the role his group maps to.
    w.site.account("bob@acme.test", "auditor");
    let (st, h, body) = w.sign_in_as("bob@acme.test").await;
    assert_eq!(st, 200, "{body}");
    let (_, me) = w.site.me(&[("cookie", &session_of(&h))]).await;
    assert_eq!(me["role"], "operator");
    // Signing in again finds him by subject.
    let (st, _, body) = w.sign_in_as("bob@acme.test").await;
    assert_eq!(st, 200, "{body}");

    // Carol's group maps to nothing and there is no default role: refused.
    let (st, h, body) = w.sign_in_as("carol@acme.test").await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("maps to no role"), "{body}");
    assert!(set_cookie(&h).is_none());
    // Dave's provider has not verified his address: no account is made.
    let (st, _, body) = w.sign_in_as("dave@acme.test").await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("not verified"), "{body}");

    // A disabled account is refused, and told so: the provider has vouched for the person.
    let t = w.site.tenant.to_string();
    w.site
        .s
        .env
        .ok(&["user", "disable", "--tenant", &t, "bob@acme.test"]);
    let (st, h, body) = w.sign_in_as("bob@acme.test").await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("disabled"), "{body}");
    assert!(set_cookie(&h).is_none());

    // A made account has no password: signing in with one fails like a wrong password.
    let (st, _, _) = w.site.sign_in_raw("alice@acme.test", "", &[]).await;
    assert_eq!(st, 400);
    let (st, _, _) = w
        .site
        .sign_in_raw("alice@acme.test", "velvet harbour lantern x", &[])
        .await;
    assert_eq!(st, 401);

    let j = journal(&w.site);
    let all = serde_json::to_string(&j).unwrap();
    assert!(
        !all.contains(SECRET),
        "the client secret is never journaled"
    );
    let sso_sign_ins = j
        .iter()
        .filter(|e| e["action"] == "auth.sign_in" && e["params"]["method"] == "sso")
        .collect::<Vec<_>>();
    let ok = sso_sign_ins
        .iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(ok, 3, "{sso_sign_ins:#?}");
    let reasons: Vec<&str> = sso_sign_ins
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .map(|e| e["params"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["owner_unmapped", "no_role", "email_unverified", "disabled"]
    );
    // And counted in /metrics (shared by the tests running beside this one: at least ours).
    let counted = [
        sso_sign_ins_counted(&w, "success").await - counted_before[0],
        sso_sign_ins_counted(&w, "refused").await - counted_before[1],
    ];
    assert!(counted[0] >= 3.0 && counted[1] >= 4.0, "{counted:?}");
    assert!(j
        .iter()
        .any(|e| e["action"] == "user.create" && e["params"]["sign_in"] == "sso"));
    assert_eq!(j.iter().filter(|e| e["action"] == "sso.link").count(), 2);
    let updates: Vec<_> = j.iter().filter(|e| e["action"] == "sso.update").collect();
    assert!(
        j.iter().any(|e| e["action"] == "sso.update"
            && e["params"]["client_auth_changed"] == true
            && e["params"]["client_id"] == "strongroom"),
        "{updates:?}"
    );

    // The settings page never shows the secret back.
    let (st, _, b) = w
        .site
        .s
        .send("GET", "/settings/sso", &[("cookie", &w.owner.cookie)], b"")
        .await;
    let page = text(&b);
    assert_eq!(st, 200);
    assert!(!page.contains(SECRET));
    assert!(page.contains("A secret is stored"));
    assert!(page.contains("https://strongroom.test/login/sso/callback"));

    // The sign-in page's form finds the tenant from a known address.
    let (st, h, b) = w.sso_form("bob@acme.test").await;
    // A page that moves on by itself (a redirect would break the sign-in page's form-action
    // policy), with the flow cookie.
    let page = text(&b);
    assert_eq!(st, 200, "{page}");
    assert!(set_cookie_named(&h, FLOW).is_some());
    let shown = crate::signin::between(&page, "id=\"continue\" href=\"", "\"");
    assert!(
        page.contains(&format!("content=\"0;url={shown}\"")),
        "{page}"
    );
    let location = shown.replace("&#38;", "&").replace("&amp;", "&");
    assert!(location.starts_with(&w.idp.issuer), "{location}");
    assert_eq!(
        param(&location, "login_hint").as_deref(),
        Some("bob@acme.test")
    );
    // An unknown address learns nothing but that single sign-on is not set up for it.
    let (st, _, b) = w.sso_form("nobody@else.test").await;
    assert_eq!(st, 400);
    assert!(text(&b).contains("not set up"));
    // Nor does one trying addresses by the thousand: after three that led nowhere, the
    // source waits before it may try another, known or not; another source may go on.
    for who in ["nobody2@else.test", "nobody3@else.test"] {
        assert_eq!(w.sso_form(who).await.0, 400, "{who}");
    }
    let (st, h, b) = w.sso_form("bob@acme.test").await;
    assert_eq!(st, 429, "{}", text(&b));
    assert_eq!(h.get("retry-after").unwrap(), "1");
    assert!(text(&b).contains("try again in 1 seconds"), "{}", text(&b));
    let body = serde_urlencoded::to_string([("who", "bob@acme.test")]).unwrap();
    let (st, _, b) = w
        .site
        .s
        .send(
            "POST",
            "/login/sso",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-test-peer", "198.51.100.7:40000"),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(st, 200, "{}", text(&b));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_the_provider_does_not_vouch_for_links_nothing_unless_the_tenant_trusts_it() {
    if !provider_installed() {
        return;
    }
    let w = World::new().await;
    // Erin has a password account; the provider's token carries her address without saying
    // it verified it. By default that address links nothing and makes nothing.
    w.site.account("erin@acme.test", "auditor");
    let (st, h, body) = w.sign_in_as("erin@acme.test").await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("does not say that it verified"), "{body}");
    assert!(set_cookie(&h).is_none());
    let (_, _, page) = w
        .site
        .s
        .send("GET", "/settings/sso", &[("cookie", &w.owner.cookie)], b"")
        .await;
    assert!(
        !text(&page).contains("name=\"trust_email\" aria-describedby=\"trust_email-hint\" checked"),
        "off by default"
    );

    // The administrator trusts this provider's addresses: Erin's account is linked.
    let mut f = vec![
        ("enabled", "on"),
        ("issuer", w.idp.issuer.as_str()),
        ("client_id", "strongroom"),
        ("scopes", "openid email profile groups"),
        ("role_claim", "groups"),
        ("role_map", "strongroom-admins = admin\nstaff = operator"),
        ("jit", "on"),
    ];
    f.push(("trust_email", "on"));
    let (st, body) = w.post_settings(&f).await;
    assert_eq!(st, 303, "{body}");
    let (_, _, page) = w
        .site
        .s
        .send("GET", "/settings/sso", &[("cookie", &w.owner.cookie)], b"")
        .await;
    assert!(
        text(&page).contains("name=\"trust_email\" aria-describedby=\"trust_email-hint\" checked"),
        "shown as set"
    );
    let (st, h, body) = w.sign_in_as("erin@acme.test").await;
    assert_eq!(st, 200, "{body}");
    let (_, me) = w.site.me(&[("cookie", &session_of(&h))]).await;
    assert_eq!(me["user"]["email"], "erin@acme.test");
    assert_eq!(me["role"], "operator");
    // An address the provider says it has not verified stays refused.
    let (st, _, body) = w.sign_in_as("dave@acme.test").await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("has not verified"), "{body}");

    let j = journal(&w.site);
    let reasons = failure_reasons(&j);
    assert_eq!(reasons, ["email_unverified", "email_unverified"]);
    assert!(j
        .iter()
        .any(|e| e["action"] == "sso.update" && e["params"]["trust_email"] == true));
    assert_eq!(j.iter().filter(|e| e["action"] == "sso.link").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_state_wrong_nonce_swapped_pkce_expired_and_replayed_codes_are_refused() {
    if !provider_installed() {
        return;
    }
    let w = World::new().await;

    // A forged state, and no flow cookie at all.
    let (auth, flow) = w.begin().await;
    let back = w.authorize_blocking(&with_param(&auth, "login_hint", "alice@acme.test"));
    let forged = with_param(&back, "state", "forged-state-value");
    let (st, h, body) = w.back(&forged, Some(&flow)).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("did not start in this browser"), "{body}");
    assert!(set_cookie(&h).is_none());
    let (st, h, _) = w.back(&back, None).await;
    assert_eq!(st, 400);
    assert!(set_cookie(&h).is_none());
    // Another flow's cookie does not fit this answer either.
    let (_, other_flow) = w.begin().await;
    let (st, _, _) = w.back(&back, Some(&other_flow)).await;
    assert_eq!(st, 400);

    // The nonce sent to the provider was changed on the way: the ID token's does not match.
    let (auth, flow) = w.begin().await;
    let tampered = with_param(
        &with_param(&auth, "nonce", "attacker-chosen-nonce-0123456789"),
        "login_hint",
        "alice@acme.test",
    );
    let back = w.authorize_blocking(&tampered);
    let (st, h, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("nonce does not match"), "{body}");
    assert!(set_cookie(&h).is_none());

    // The PKCE challenge was swapped on the way: the code is bound to the other challenge and
    // does not redeem with this sign-in's verifier.
    let (auth, flow) = w.begin().await;
    let swapped = with_param(
        &with_param(
            &auth,
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        "login_hint",
        "alice@acme.test",
    );
    let back = w.authorize_blocking(&swapped);
    let (st, h, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    assert!(set_cookie(&h).is_none());

    // A code used once cannot be used again.
    let (auth, flow) = w.begin().await;
    let back = w.authorize_blocking(&with_param(&auth, "login_hint", "alice@acme.test"));
    let (st, _, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 200, "{body}");
    let (st, h, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    assert!(set_cookie(&h).is_none());

    // The provider refuses (no such account): its error is shown, nobody is signed in.
    let (auth, flow) = w.begin().await;
    let back = w.authorize_blocking(&with_param(&auth, "login_hint", "mallory@acme.test"));
    let (st, _, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("access_denied"), "{body}");

    // An expired code: this client's codes live one second.
    let (st, body) = w.configure("strongroom-slow", true).await;
    assert_eq!(st, 303, "{body}");
    let (auth, flow) = w.begin().await;
    let back = w.authorize_blocking(&with_param(&auth, "login_hint", "alice@acme.test"));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (st, h, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    assert!(set_cookie(&h).is_none());

    // A started sign-in lapses after ten minutes, however good the answer.
    let (auth, flow) = w.begin().await;
    let back = w.authorize_blocking(&with_param(&auth, "login_hint", "alice@acme.test"));
    w.site.s.clock.advance_us(601 * 1_000_000);
    let (st, _, body) = w.back(&back, Some(&flow)).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("took longer than 10 minutes"), "{body}");

    let j = journal(&w.site);
    let reasons = failure_reasons(&j);
    assert_eq!(
        reasons,
        [
            "token",
            "provider_refused",
            "provider_refused",
            "provider_refused",
            "provider_refused"
        ],
        "{reasons:?}"
    );
    let system = w.site.s.env.ok(&["audit", "export", "--system"]);
    assert!(system.matches("sso_state").count() >= 4, "{system}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_single_sign_on_settings_are_refused_by_name() {
    if !provider_installed() {
        return;
    }
    let w = World::new().await;
    let base = |issuer: &'static str, map: &'static str| {
        vec![
            ("enabled", "on"),
            ("issuer", issuer),
            ("client_id", "strongroom"),
            ("scopes", "openid email"),
            ("role_claim", "groups"),
            ("role_map", map),
        ]
    };
    for (fields, needle) in [
        (base("http://idp.example.com", ""), "https:// URL"),
        (base("not a url", ""), "issuer URL"),
        (base("https://idp.example.com", "staff operator"), "line 1"),
        (
            base("https://idp.example.com", "staff = wizard"),
            "Unknown role",
        ),
    ] {
        let (st, page) = w.post_settings(&fields).await;
        assert_eq!(st, 400, "{needle}: {page}");
        assert!(page.contains(needle), "{needle}: {page}");
    }
    let mut no_scope = base("https://idp.example.com", "");
    no_scope[3] = ("scopes", "email");
    let (st, page) = w.post_settings(&no_scope).await;
    assert_eq!(st, 400);
    assert!(page.contains("including openid"), "{page}");

    // An admin may manage settings but not hand out the owner role through a map.
    let (admin, _) = w.site.signed_in("ada@acme.test", "admin").await;
    let body = serde_urlencoded::to_string([
        ("csrf", admin.csrf.as_str()),
        ("issuer", "https://idp.example.com"),
        ("client_id", "strongroom"),
        ("scopes", "openid"),
        ("role_claim", "groups"),
        ("role_map", "admins = owner"),
    ])
    .unwrap();
    let (st, _, _) = w
        .site
        .s
        .send(
            "POST",
            "/settings/sso",
            &[
                ("cookie", &admin.cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(st, 403);

    // Nothing of the refused posts was saved: sign-in still goes to the configured provider.
    let (auth, _) = w.begin().await;
    assert!(auth.starts_with(&w.idp.issuer), "{auth}");

    // A provider at an internal address the installation does not list (here the cloud
    // metadata address) is saved but never called; the administrator is told why, and a
    // person signing in only that it cannot be reached.
    let mut metadata = base("https://169.254.169.254", "staff = operator");
    metadata.push(("client_secret", SECRET));
    let (st, page) = w.post_settings(&metadata).await;
    assert_eq!(st, 200, "{page}");
    assert!(
        page.contains("Saved, but the provider cannot be reached")
            && page.contains("169.254.169.254")
            && page.contains("outbound.allow_internal"),
        "{page}"
    );
    let (st, _, b) = w
        .site
        .s
        .send("GET", &format!("/login/sso/{}", w.site.tenant), &[], b"")
        .await;
    let shown = text(&b);
    assert_ne!(st, 303, "{shown}");
    assert!(
        shown.contains("SSO-0005") && !shown.contains("169.254"),
        "{shown}"
    );
    let st = w.configure("strongroom", true).await;
    assert_eq!(st.0, 303, "{}", st.1);
    let (auth, _) = w.begin().await;
    assert!(auth.starts_with(&w.idp.issuer), "{auth}");
    // A tenant without single sign-on, or an id that is no tenant, is told the same thing.
    let other = w.site.s.env.create_tenant("globex");
    for path in [
        format!("/login/sso/{other}"),
        "/login/sso/not-a-tenant".to_string(),
    ] {
        let (st, _, b) = w.site.s.send("GET", &path, &[], b"").await;
        assert_eq!(st, 400, "{path}");
        assert!(text(&b).contains("not set up"), "{path}");
    }
}

#[test]
fn outbound_and_public_url_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (body, key) in [
        (
            "[outbound]\nca_file = \"/nonexistent/ca.pem\"\n",
            "outbound.ca_file",
        ),
        (
            "[server]\npublic_url = \"http://sr.example.com\"\n",
            "server.public_url",
        ),
        (
            "[server]\npublic_url = \"https://sr.example.com/app\"\n",
            "server.public_url",
        ),
        ("[outbound]\ntimeout_secs = 0\n", "outbound.timeout_secs"),
        (
            "[outbound]\nallow_internal = [\"https://idp.corp\"]\n",
            "outbound.allow_internal[0]",
        ),
        (
            "[outbound]\nallow_internal = [\"idp.corp\", \"10.0.0.5:8443\"]\n",
            "outbound.allow_internal[1]",
        ),
        (
            "[outbound]\nallow_internal = [\"\"]\n",
            "outbound.allow_internal[0]",
        ),
    ] {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, body).unwrap();
        let e = strongroom::config::load(Some(&path), std::iter::empty())
            .err()
            .unwrap_or_else(|| panic!("{key} accepted"))
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[outbound]\nca_file = \"{}\"\n", not_pem.display()),
    )
    .unwrap();
    let e = strongroom::config::load(Some(&path), std::iter::empty())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no certificate"), "{e}");
}
