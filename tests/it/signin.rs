//! Signing in through the real router: sessions, the first-password change, CSRF, timeouts,
//! throttling, tokens, suspended tenants, and the rule that every route declares its access.

use crate::support::InProcess;
use std::sync::Arc;
use strongroom::door;
use strongroom::identity::accounts::{self, NewAccount};
use strongroom::identity::{Caller, Realm};
use strongroom::ids::TenantId;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1";

fn config() -> &'static str {
    "[identity]\nsession_idle_secs = 600\nsession_absolute_secs = 3600\nlockout_failures = 5\nlockout_secs = 300\n"
}

pub struct Site {
    pub s: InProcess,
    pub tenant: TenantId,
}

/// A signed-in browser: its cookie and the session's CSRF token.
#[derive(Clone, Debug)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn set_cookie(h: &axum::http::HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-strongroom="))
}

pub fn cookie_value(set: &str) -> String {
    set.split(';').next().unwrap().to_string()
}

pub fn journal(site: &Site) -> Vec<serde_json::Value> {
    site.s
        .env
        .ok(&["audit", "export", "--tenant", site.tenant.as_str()])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl Site {
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// A site whose configuration has `extra` after the usual settings.
    pub fn with_config(extra: &str) -> Self {
        let s = InProcess::start(&format!("{}{extra}", config()), crate::support::now_us());
        let tenant = TenantId::parse(&s.env.create_tenant("acme")).unwrap();
        Self { s, tenant }
    }

    /// A tenant account with a one-time password.
    pub fn account(&self, email: &str, role: &str) -> String {
        tokio::task::block_in_place(|| self.account_blocking(email, role))
    }

    fn account_blocking(&self, email: &str, role: &str) -> String {
        let ctx = door::open_blocking(
            &self.s.app,
            &self.tenant,
            Caller::operator(Realm::Tenant),
            None,
        )
        .unwrap();
        let input = NewAccount {
            email: email.into(),
            name: None,
            role: role.into(),
        };
        let (_, pw) = accounts::create_blocking(&ctx, self.s.app.directory(), &input).unwrap();
        pw.expose().to_string()
    }

    pub async fn sign_in_raw(
        &self,
        email: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> (u16, axum::http::HeaderMap, String) {
        let body = serde_urlencoded::to_string([("email", email), ("password", password)]).unwrap();
        let mut headers = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("user-agent", UA),
        ];
        headers.extend_from_slice(extra);
        let (st, h, b) = self
            .s
            .send("POST", "/login", &headers, body.as_bytes())
            .await;
        (st, h, text(&b))
    }

    pub async fn csrf_of(&self, cookie: &str) -> String {
        let (st, _, b) = self
            .s
            .send("GET", "/password", &[("cookie", cookie)], b"")
            .await;
        assert_eq!(st, 200, "{}", text(&b));
        let page = text(&b);
        let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
        page[at..at + 64].to_string()
    }

    /// Signs in with the one-time password and replaces it: a full session.
    pub async fn signed_in(&self, email: &str, role: &str) -> (Browser, String) {
        let otp = self.account(email, role);
        self.first_sign_in(email, &otp, role).await
    }

    /// Signs in with a one-time password and replaces it with `velvet harbour lantern <tag>`.
    pub async fn first_sign_in(&self, email: &str, otp: &str, tag: &str) -> (Browser, String) {
        let (otp, role) = (otp.to_string(), tag);
        let (st, h, _) = self.sign_in_raw(email, &otp, &[]).await;
        assert_eq!(st, 303);
        assert_eq!(h.get("location").unwrap(), "/password");
        let cookie = cookie_value(&set_cookie(&h).unwrap());
        let csrf = self.csrf_of(&cookie).await;
        let new = format!("velvet harbour lantern {role}");
        let body = serde_urlencoded::to_string([
            ("csrf", csrf.as_str()),
            ("current", otp.as_str()),
            ("new", new.as_str()),
            ("confirm", new.as_str()),
        ])
        .unwrap();
        let (st, h, b) = self
            .s
            .send(
                "POST",
                "/password",
                &[
                    ("cookie", &cookie),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .await;
        assert_eq!(st, 303, "{}", text(&b));
        let cookie = cookie_value(&set_cookie(&h).unwrap());
        let csrf = self.csrf_of(&cookie).await;
        (Browser { cookie, csrf }, new)
    }

    pub async fn me(&self, auth: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let (st, _, b) = self.s.send("GET", "/api/v1/me", auth, b"").await;
        (
            st,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sign_in_forces_a_new_password_and_rotates_the_session() {
    let site = Site::new();
    let otp = site.account("ana@acme.example", "admin");
    let (st, h, _) = site.sign_in_raw("ANA@acme.example", &otp, &[]).await;
    assert_eq!(st, 303);
    assert_eq!(h.get("location").unwrap(), "/password");
    let set = set_cookie(&h).unwrap();
    for attr in [
        "; Path=/",
        "; Secure",
        "; HttpOnly",
        "; SameSite=Strict",
        "; Max-Age=3600",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let first = cookie_value(&set);
    // Before the new password: nothing but the password page.
    let (st, body) = site.me(&[("cookie", &first)]).await;
    assert_eq!(st, 403);
    assert_eq!(body["error"]["code"], "AUTH-0004");
    let (st, h, _) = site.s.send("GET", "/", &[("cookie", &first)], b"").await;
    assert_eq!(
        (st, h.get("location").unwrap().to_str().unwrap()),
        (303, "/password")
    );

    let csrf = site.csrf_of(&first).await;
    let change = |current: &str, new: &str, confirm: &str| {
        serde_urlencoded::to_string([
            ("csrf", csrf.as_str()),
            ("current", current),
            ("new", new),
            ("confirm", confirm),
        ])
        .unwrap()
    };
    let form = [
        ("cookie", first.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    for (body, want) in [
        (
            change(&otp, "password123456", "password123456"),
            "common password",
        ),
        (change(&otp, "short", "short"), "at least 12 characters"),
        (
            change(&otp, "velvet harbour lantern", "velvet harbour lantrn"),
            "two new passwords differ",
        ),
        (
            change(
                "wrong-current-password",
                "velvet harbour lantern",
                "velvet harbour lantern",
            ),
            "current password is wrong",
        ),
        (change(&otp, &otp, &otp), "must differ"),
    ] {
        let (st, _, b) = site
            .s
            .send("POST", "/password", &form, body.as_bytes())
            .await;
        let page = text(&b);
        assert_eq!(st, 400, "{want}: {page}");
        assert!(page.contains(want), "{want}: {page}");
        assert!(page.contains("error-summary"), "{page}");
    }
    let (st, h, _) = site
        .s
        .send(
            "POST",
            "/password",
            &form,
            change(&otp, "velvet harbour lantern", "velvet harbour lantern").as_bytes(),
        )
        .await;
    assert_eq!(st, 303);
    let second = cookie_value(&set_cookie(&h).unwrap());
    assert_ne!(first, second, "the session id is rotated");
    assert_eq!(
        site.me(&[("cookie", &first)]).await.0,
        401,
        "the old session ended"
    );
    let (st, me) = site.me(&[("cookie", &second)]).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["user"]["email"], "ana@acme.example");
    assert_eq!(me["tenant"], site.tenant.as_str());
    assert_eq!(me["role"], "admin");
    assert!(me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "users.manage"));

    // The one-time password is spent; the new one works.
    assert_eq!(site.sign_in_raw("ana@acme.example", &otp, &[]).await.0, 401);
    let (st, h, _) = site
        .sign_in_raw("ana@acme.example", "velvet harbour lantern", &[])
        .await;
    assert_eq!(
        (st, h.get("location").unwrap().to_str().unwrap()),
        (303, "/")
    );

    let j = journal(&site);
    let actions: Vec<&str> = j.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"user.password_change"), "{actions:?}");
    let all = serde_json::to_string(&j).unwrap();
    for secret in [
        otp.as_str(),
        "velvet harbour lantern",
        "password123456",
        &first[18..],
        &second[18..],
    ] {
        assert!(!all.contains(secret), "{secret} in the journal");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_and_unknown_sign_ins_get_one_answer_and_are_journaled() {
    let site = Site::new();
    let otp = site.account("bo@acme.example", "operator");
    let (st, _, page) = site
        .sign_in_raw("bo@acme.example", "not-the-password", &[])
        .await;
    assert_eq!(st, 401);
    assert!(
        page.contains("The e-mail address or password is wrong"),
        "{page}"
    );
    let (st2, _, page2) = site
        .sign_in_raw(
            "nobody@acme.example",
            "not-the-password",
            &[("x-test-peer", "192.0.2.77:1")],
        )
        .await;
    assert_eq!(st2, 401);
    assert_eq!(
        page.replace("bo@acme.example", ""),
        page2.replace("nobody@acme.example", "")
    );
    // Broken forms are answered, not crashed on.
    for body in ["", "email=&password=", "%%%", "email=a@b.c"] {
        let (st, _, b) = site
            .s
            .send(
                "POST",
                "/login",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-test-peer", "192.0.2.78:1"),
                ],
                body.as_bytes(),
            )
            .await;
        assert_eq!(st, 400, "{body}: {}", text(&b));
        assert!(text(&b).contains("error-summary"));
    }
    // Disabled: the right password still fails, the same way.
    site.s.env.ok(&[
        "user",
        "disable",
        "--tenant",
        site.tenant.as_str(),
        "bo@acme.example",
    ]);
    let (st, _, _) = site
        .sign_in_raw("bo@acme.example", &otp, &[("x-test-peer", "192.0.2.79:1")])
        .await;
    assert_eq!(st, 401);

    let j = journal(&site);
    let fails: Vec<&serde_json::Value> = j
        .iter()
        .filter(|e| e["action"] == "auth.sign_in" && e["outcome"] == "failure")
        .collect();
    let reasons: Vec<&str> = fails
        .iter()
        .map(|e| e["params"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["wrong_password", "disabled"]);
    assert_eq!(fails[0]["source_ip"], "192.0.2.10");
    let all = serde_json::to_string(&j).unwrap();
    assert!(!all.contains("not-the-password") && !all.contains(&otp));
    let system = site.s.env.ok(&["audit", "export", "--system"]);
    assert!(system.contains("\"unknown_account\""), "{system}");
    assert!(!system.contains("nobody@acme.example") && !system.contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_throttled_then_locked_per_account_and_per_source() {
    let site = Site::new();
    let otp = site.account("cy@acme.example", "operator");
    // Three failures: then each attempt must wait, growing.
    for _ in 0..3 {
        assert_eq!(
            site.sign_in_raw("cy@acme.example", "wrong password 1", &[])
                .await
                .0,
            401
        );
    }
    let (st, h, page) = site
        .sign_in_raw(
            "cy@acme.example",
            &otp,
            &[("x-test-peer", "198.51.100.1:1")],
        )
        .await;
    assert_eq!(st, 429, "{page}");
    assert_eq!(h.get("retry-after").unwrap(), "1");
    assert!(page.contains("Try again in 1 seconds"), "{page}");
    site.s.clock.advance_us(1_100_000);
    assert_eq!(
        site.sign_in_raw("cy@acme.example", "wrong password 2", &[])
            .await
            .0,
        401
    );
    let (st, h, _) = site
        .sign_in_raw("cy@acme.example", "wrong password 3", &[])
        .await;
    assert_eq!(st, 429);
    assert_eq!(h.get("retry-after").unwrap(), "2");
    site.s.clock.advance_us(2_100_000);
    assert_eq!(
        site.sign_in_raw("cy@acme.example", "wrong password 4", &[])
            .await
            .0,
        401
    );
    // Five failures in the window: locked, even with the right password from elsewhere.
    site.s.clock.advance_us(60_000_000);
    let (st, h, _) = site
        .sign_in_raw(
            "cy@acme.example",
            &otp,
            &[("x-test-peer", "198.51.100.2:1")],
        )
        .await;
    assert_eq!(st, 429);
    let wait: i64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((200..=300).contains(&wait), "{wait}");
    // The source is throttled too, for any account.
    let other = site.account("di@acme.example", "operator");
    assert_eq!(
        site.sign_in_raw("di@acme.example", &other, &[]).await.0,
        429
    );
    // The window passes: the right password works again.
    site.s.clock.advance_us(301_000_000);
    assert_eq!(site.sign_in_raw("cy@acme.example", &otp, &[]).await.0, 303);
    let throttled = site.s.env.ok(&["audit", "export", "--system"]);
    assert!(throttled.contains("\"throttled\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn csrf_tokens_are_per_session_and_refusals_are_journaled() {
    let site = Site::new();
    let (a, _) = site.signed_in("ed@acme.example", "admin").await;
    let (b, _) = site.signed_in("fi@acme.example", "admin").await;
    assert_ne!(a.csrf, b.csrf);
    let form = |cookie: &str| {
        vec![
            ("cookie", cookie.to_string()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ]
    };
    for body in [
        String::new(),
        "csrf=".into(),
        format!("csrf={}", b.csrf),
        format!("csrf={}x", a.csrf),
    ] {
        let h = form(&a.cookie);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, _, body_out) = site.s.send("POST", "/logout", &h, body.as_bytes()).await;
        assert_eq!(st, 403, "{body}: {}", text(&body_out));
        assert!(text(&body_out).contains("AUTH-0002"));
    }
    // A foreign token in the header is refused as well.
    let (st, _, _) = site
        .s
        .send(
            "POST",
            "/logout",
            &[("cookie", &a.cookie), ("x-csrf-token", &b.csrf)],
            b"",
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(
        site.me(&[("cookie", &a.cookie)]).await.0,
        200,
        "still signed in"
    );
    let refusals = journal(&site)
        .iter()
        .filter(|e| e["action"] == "auth.csrf_refused")
        .count();
    assert_eq!(refusals, 5);

    let h = form(&a.cookie);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (st, hdr, _) = site
        .s
        .send("POST", "/logout", &h, format!("csrf={}", a.csrf).as_bytes())
        .await;
    assert_eq!(st, 303);
    assert!(set_cookie(&hdr).unwrap().contains("Max-Age=0"));
    assert_eq!(site.me(&[("cookie", &a.cookie)]).await.0, 401);
    assert_eq!(site.me(&[("cookie", &b.cookie)]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_cookie_is_not_kept_and_sessions_expire() {
    let site = Site::new();
    let (_, password) = site.signed_in("gu@acme.example", "operator").await;
    let planted = format!("__Host-strongroom={}.{}", site.tenant, "ab".repeat(32));
    let (st, h, _) = site
        .sign_in_raw("gu@acme.example", &password, &[("cookie", &planted)])
        .await;
    assert_eq!(st, 303);
    let fresh = cookie_value(&set_cookie(&h).unwrap());
    assert_ne!(fresh, planted);
    assert_eq!(site.me(&[("cookie", &planted)]).await.0, 401);
    assert_eq!(site.me(&[("cookie", &fresh)]).await.0, 200);

    // Idle: ten minutes without a request ends it.
    site.s.clock.advance_us(601_000_000);
    assert_eq!(site.me(&[("cookie", &fresh)]).await.0, 401);
    // Absolute: busy every five minutes, it still ends an hour after sign-in.
    let (_, h, _) = site.sign_in_raw("gu@acme.example", &password, &[]).await;
    let busy = cookie_value(&set_cookie(&h).unwrap());
    for _ in 0..11 {
        site.s.clock.advance_us(300_000_000);
        assert_eq!(site.me(&[("cookie", &busy)]).await.0, 200);
    }
    site.s.clock.advance_us(300_000_000);
    assert_eq!(site.me(&[("cookie", &busy)]).await.0, 401);
    // Malformed cookies are just "not signed in".
    for bad in [
        "__Host-strongroom=",
        "__Host-strongroom=p.zz",
        "__Host-strongroom=p.%00%00",
    ] {
        assert_eq!(site.me(&[("cookie", bad)]).await.0, 401, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_holds_on_the_next_request_also_when_made_by_another_process() {
    let site = Site::new();
    let (admin, _) = site.signed_in("ha@acme.example", "admin").await;
    let (user, _) = site.signed_in("io@acme.example", "operator").await;
    assert_eq!(site.me(&[("cookie", &user.cookie)]).await.0, 200);
    // Listing changes nobody: the cache stays (the epoch file is not replaced).
    let epoch = || strongroom::app::identity_epoch(&site.s.env.dir);
    let before = epoch();
    site.s
        .env
        .ok(&["user", "list", "--tenant", site.tenant.as_str()]);
    assert_eq!(epoch(), before);
    // Disabled by another process (the CLI), with no time passing here: the next request
    // is refused, because the CLI replaced the identity epoch file.
    site.s.env.ok(&[
        "user",
        "disable",
        "--tenant",
        site.tenant.as_str(),
        "io@acme.example",
    ]);
    assert_ne!(epoch(), before);
    assert_eq!(site.me(&[("cookie", &user.cookie)]).await.0, 401);
    assert_eq!(site.me(&[("cookie", &admin.cookie)]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_restored_by_another_process_authenticates_as_restored_on_the_next_request() {
    // One open tenant file at a time, so that the server closes this tenant's file (and
    // releases it to the CLI) as soon as another tenant is used.
    let site = Site::with_config("[store]\nmax_open_tenants = 1\n");
    let t = site.tenant.as_str();
    let env = &site.s.env;
    let other = TenantId::parse(&env.create_tenant("other")).unwrap();
    let out = env.tmp.path().join("before-the-token.srb");
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    let token = env.ok(&[
        "token", "create", "--tenant", t, "--role", "auditor", "--name", "ci",
    ]);
    let bearer = format!("Bearer {}", token.trim());
    // Authenticated once: the server now remembers the token.
    assert_eq!(site.me(&[("authorization", &bearer)]).await.0, 200);
    tokio::task::block_in_place(|| {
        door::open_blocking(&site.s.app, &other, Caller::operator(Realm::Tenant), None).unwrap()
    });
    // The tenant goes back to before the token existed, by another process (the CLI),
    // with no time passing here: the next request is refused, not served from memory.
    let epoch = || strongroom::app::identity_epoch(&env.dir);
    let before = epoch();
    env.ok(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--tenant",
        t,
        "--force",
    ]);
    assert_ne!(epoch(), before);
    assert_eq!(site.me(&[("authorization", &bearer)]).await.0, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_authenticate_until_revoked_or_expired_and_unusable_tenants_are_refused() {
    let site = Site::new();
    let t = site.tenant.as_str();
    let token = site.s.env.ok(&[
        "token",
        "create",
        "--tenant",
        t,
        "--role",
        "auditor",
        "--name",
        "ci",
        "--expires",
        "1h",
    ]);
    let token = token.trim().to_string();
    assert!(token.starts_with(&format!("srt_{t}_")), "{token}");
    let bearer = format!("Bearer {token}");
    let (st, me) = site.me(&[("authorization", &bearer)]).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["kind"], "token");
    assert_eq!(me["token"]["name"], "ci");
    assert_eq!(me["role"], "auditor");
    assert!(!me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "users.manage"));

    // Malformed or foreign: 401 with the challenge, and the shape of every API error.
    let forged = format!(
        "Bearer {}{}",
        &token[..token.len() - 2],
        if token.ends_with("00") { "11" } else { "00" }
    );
    for auth in [
        "Bearer",
        "Bearer x",
        "Basic abc",
        forged.as_str(),
        "Bearer srt____",
    ] {
        let (st, h, b) = site
            .s
            .send("GET", "/api/v1/me", &[("authorization", auth)], b"")
            .await;
        assert_eq!(st, 401, "{auth}");
        assert_eq!(
            h.get("www-authenticate").unwrap(),
            "Bearer realm=\"strongroom\""
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{v}"
        );
    }
    let (st, h, _) = site.s.send("GET", "/api/v1/me", &[], b"").await;
    assert_eq!(st, 401);
    assert!(h.get("www-authenticate").is_some());

    // Suspended: the token and the tenant's sessions are refused; resumed: back.
    let (user, _) = site.signed_in("jo@acme.example", "operator").await;
    site.s.env.ok(&["tenant", "suspend", t]);
    let (st, body) = site.me(&[("authorization", &bearer)]).await;
    assert_eq!(
        (st, body["error"]["code"].as_str().unwrap()),
        (403, "TEN-0006")
    );
    assert_eq!(site.me(&[("cookie", &user.cookie)]).await.0, 403);
    site.s.env.ok(&["tenant", "resume", t]);
    assert_eq!(site.me(&[("authorization", &bearer)]).await.0, 200);

    // Last use is recorded; revoked: refused at once in this process, and for good.
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&site.s.env.ok(&["token", "list", "--tenant", t, "--json"])).unwrap();
    assert!(list[0]["last_used_us"].as_i64().is_some());
    let id = list[0]["id"].as_str().unwrap().to_string();
    site.s.env.ok(&["token", "revoke", "--tenant", t, &id]);
    assert_eq!(site.me(&[("authorization", &bearer)]).await.0, 401);
    let again = site.s.env.fails(&["token", "revoke", "--tenant", t, &id]);
    assert!(again.contains("no live token"), "{again}");

    // Expired.
    let short = site.s.env.ok(&[
        "token",
        "create",
        "--tenant",
        t,
        "--role",
        "operator",
        "--expires",
        "2m",
    ]);
    let short = format!("Bearer {}", short.trim());
    assert_eq!(site.me(&[("authorization", &short)]).await.0, 200);
    site.s.clock.advance_us(121_000_000);
    assert_eq!(site.me(&[("authorization", &short)]).await.0, 401);
    let all = site
        .s
        .env
        .ok(&["token", "revoke", "--tenant", t, "--all", "--json"]);
    assert!(all.contains("\"revoked\": 1"), "{all}");
}

#[test]
fn token_cli_refuses_broken_input() {
    let env = crate::support::Env::init();
    let t = env.create_tenant("acme");
    for (args, want) in [
        (
            vec!["token", "create", "--tenant", &t, "--role", "wizard"],
            "unknown role",
        ),
        (
            vec![
                "token",
                "create",
                "--tenant",
                &t,
                "--role",
                "admin",
                "--expires",
                "soon",
            ],
            "invalid expiry",
        ),
        (
            vec![
                "token",
                "create",
                "--tenant",
                &t,
                "--role",
                "admin",
                "--expires",
                "20y",
            ],
            "at most ten years",
        ),
        (
            vec!["token", "create", "--tenant", "nope", "--role", "admin"],
            "invalid tenant id",
        ),
        (vec!["token", "revoke", "--tenant", &t], "required"),
        (
            vec!["token", "revoke", "--tenant", &t, "abc"],
            "invalid token id",
        ),
        (
            vec!["token", "revoke", "--tenant", &t, &"0".repeat(32), "--all"],
            "cannot be used with",
        ),
        (
            vec!["token", "revoke", "--tenant", &t, &"0".repeat(32)],
            "no live token",
        ),
        (
            vec![
                "token",
                "create",
                "--tenant",
                &t,
                "--role",
                "admin",
                "--name",
                "a\u{202e}b",
            ],
            "invisible",
        ),
    ] {
        let e = env.fails(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(
        env.ok(&["token", "list", "--tenant", &t, "--json"]).trim(),
        "[]"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfamiliar_device_is_journaled() {
    let site = Site::new();
    let (_, password) = site.signed_in("ka@acme.example", "operator").await;
    let before = journal(&site)
        .iter()
        .filter(|e| e["action"] == "auth.unfamiliar_sign_in")
        .count();
    assert_eq!(before, 0, "the first device is not unfamiliar");
    assert_eq!(
        site.sign_in_raw("ka@acme.example", &password, &[]).await.0,
        303
    );
    assert_eq!(
        site.sign_in_raw(
            "ka@acme.example",
            &password,
            &[("x-test-peer", "203.0.113.9:1")]
        )
        .await
        .0,
        303
    );
    let j = journal(&site);
    let odd: Vec<_> = j
        .iter()
        .filter(|e| e["action"] == "auth.unfamiliar_sign_in")
        .collect();
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0]["params"]["ip"], "203.0.113.9");
}

/// Every route declares its access; none but the public ones answers without credentials.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_declares_its_access_and_enforces_it() {
    let site = Site::new();
    let table = strongroom::web::routes().table();
    assert!(table.len() >= 8);
    for (path, access) in table {
        let public = access == strongroom::web::access::Access::Public;
        for method in ["GET", "POST"] {
            let (st, h, _) = site.s.send(method, path, &[], b"").await;
            // `/metrics` is public to the guard and answers this host or its own token only
            // (tests/it/metrics.rs); these requests come from off the host.
            if public && path == "/metrics" {
                assert!(st == 403 || st == 405, "{method} {path}: {st}");
                continue;
            }
            if public {
                assert!(st != 401 && st != 403, "{method} {path}: {st}");
                continue;
            }
            // The API and the gateway answer 401 (the gateway in its vendors' shapes).
            let ok = if path.starts_with("/api/") || path.starts_with("/v1/") {
                st == 401 || st == 405
            } else {
                (st == 303 && h.get("location").unwrap() == "/login") || st == 405
            };
            assert!(
                ok,
                "{method} {path} ({}) answered {st} without credentials",
                access.describe()
            );
        }
    }
    // Nothing in the web layer registers a route but the one builder that takes an access.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap() == "access.rs" || p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&p).unwrap();
        for (at, _) in src.match_indices(".route(") {
            let call: String = src[at..].chars().take(160).collect();
            assert!(
                call.contains("Access::"),
                "{}: a route without a declared access: {call}",
                p.display()
            );
        }
    }
    let _ = Arc::clone(&site.s.app);
}

/// A flood of wrong sign-ins (200 at once, over TLS, to the real binary) queues on the
/// hashing semaphore while `/healthz` keeps answering.
#[test]
fn a_flood_of_sign_ins_does_not_starve_other_requests() {
    use std::io::{Read, Write};
    let env = crate::support::Env::init();
    let server = crate::support::Server::start(&env, &[]);
    let (addr, cert) = (server.addr, server.cert.clone());
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let cert = cert.clone();
            std::thread::spawn(move || {
                let body = format!("email=nobody{i}%40example.com&password=wrong-password-{i}");
                crate::support::https(
                    addr,
                    &cert,
                    "POST",
                    "/login",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    body.as_bytes(),
                )
                .status
            })
        })
        .collect();
    // Probe on one kept-alive connection, so each probe measures the server, not a handshake.
    let cfg = crate::support::client_config(&cert, &[&rustls::version::TLS13]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(rustls::ClientConnection::new(cfg, name).unwrap(), sock);
    let mut probes = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while probes.len() < 40 && std::time::Instant::now() < deadline {
        let start = std::time::Instant::now();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"ok\n") {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
        }
        probes.push(start.elapsed());
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let statuses: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    // Every sign-in was answered: refused (401), throttled once failures were counted (429),
    // or turned away at once while the hashing queue was full (503).
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429 | 503)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 401).count() >= 10,
        "some reached the hash: {statuses:?}"
    );
    probes.sort();
    let within = probes.iter().filter(|d| d.as_millis() < 100).count();
    eprintln!(
        "healthz during the flood: median {:?}, max {:?}",
        probes[probes.len() / 2],
        probes[probes.len() - 1]
    );
    assert!(
        within * 10 >= probes.len() * 9,
        "fewer than 90% of probes within 100 ms: {probes:?}"
    );
    assert!(probes[probes.len() - 1].as_secs() < 1, "{probes:?}");
}

/// `bench auth` prints its figures as JSON lines, each a positive number.
#[test]
fn bench_auth_prints_its_figures() {
    let env = crate::support::Env::new();
    let out = env.ok(&[
        "bench",
        "auth",
        "--seconds",
        "1",
        "--dir",
        env.tmp.path().to_str().unwrap(),
    ]);
    let figures: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for name in [
        "auth_check_token_p99",
        "auth_check_session_p99",
        "me_token_tls_1conn_rps",
        "me_token_tls_16conn_rps",
        "me_token_tls_16conn_p99",
    ] {
        let f = figures
            .iter()
            .find(|f| f["figure"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert!(f["value"].as_f64().unwrap() > 0.0, "{name}: {f}");
    }
}

/// Posts a form with the browser's cookie and CSRF token, and any extra headers.
pub async fn form_post(
    site: &Site,
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, String) {
    let mut all = vec![("csrf", b.csrf.as_str())];
    all.extend_from_slice(fields);
    let body = serde_urlencoded::to_string(&all).unwrap();
    let mut headers = vec![
        ("cookie", b.cookie.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    headers.extend_from_slice(extra);
    let (st, h, out) = site.s.send("POST", path, &headers, body.as_bytes()).await;
    (st, h, text(&out))
}

pub async fn page_get(
    site: &Site,
    b: &Browser,
    path: &str,
) -> (u16, axum::http::HeaderMap, String) {
    let (st, h, out) = site
        .s
        .send("GET", path, &[("cookie", &b.cookie)], b"")
        .await;
    (st, h, text(&out))
}

/// The text between `start` and the next `end` on a page.
pub fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let at = page
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {page}"))
        + start.len();
    &page[at..at + page[at..].find(end).unwrap()]
}
