//! The second factor and the tenant policy, through the real router: enrolment, the code at
//! sign-in (once per time step), recovery codes, throttling, a policy that requires a second
//! factor, address lists, and a tenant's tighter idle timeout.

use crate::signin::{
    between, cookie_value, form_post as post, journal, page_get as get, set_cookie, text, Browser,
    Site,
};
use strongroom::clock::Clock;

pub fn code_at(secret_b32: &str, now_us: i64) -> String {
    let seed = totp_rs::Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .unwrap();
    let t = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        0,
        30,
        seed,
        None,
        String::new(),
    )
    .unwrap();
    t.generate(u64::try_from(now_us / 1_000_000).unwrap())
}

/// A browser at some stage: its cookie, and the CSRF token of the page it is sent to.
async fn at_stage(site: &Site, cookie: String, page: &str) -> Browser {
    let b = Browser {
        cookie,
        csrf: String::new(),
    };
    let (_, _, html) = get(site, &b, page).await;
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
    Browser { csrf, ..b }
}

/// Enrols the signed-in browser; returns its new session, the seed and the recovery codes.
async fn enrol(site: &Site, b: &Browser) -> (Browser, String, Vec<String>) {
    let (st, _, page) = get(site, b, "/security/totp").await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("<svg"), "a QR code is drawn");
    let uri = between(&page, "id=\"totp-uri\" href=\"", "\"").replace("&amp;", "&");
    assert!(uri.starts_with("otpauth://totp/Strongroom:"), "{uri}");
    let secret = between(&page, "id=\"totp-secret\">", "<").to_string();
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let (st, _, page) = post(site, b, "/security/totp", &[("code", "000000")], &[]).await;
    assert_eq!(st, 400, "a wrong first code is refused");
    assert!(page.contains("The code is wrong"));
    // The refusal showed a new seed: use the one on that page.
    let secret = between(&page, "id=\"totp-secret\">", "<").to_string();
    let now = site.s.clock.now_us();
    let (st, h, page) = post(
        site,
        b,
        "/security/totp",
        &[("code", &code_at(&secret, now))],
        &[],
    )
    .await;
    assert_eq!(st, 200, "{page}");
    let codes: Vec<String> = between(&page, "id=\"recovery-codes\">", "</ul>")
        .split("<li>")
        .filter_map(|c| c.split("</li>").next())
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(codes.len(), 10);
    let cookie = cookie_value(&set_cookie(&h).unwrap());
    assert_ne!(cookie, b.cookie, "a new session after a privilege change");
    assert_eq!(site.me(&[("cookie", &b.cookie)]).await.0, 401);
    (at_stage(site, cookie, "/security").await, secret, codes)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_factor_is_set_up_asked_for_and_each_code_works_once() {
    let site = Site::new();
    let (b, password) = site.signed_in("two@acme.example", "operator").await;
    let (b, secret, codes) = enrol(&site, &b).await;
    assert_eq!(site.me(&[("cookie", &b.cookie)]).await.0, 200);

    // Sign in again: the password leads to the code, and to nothing else.
    let (st, h, _) = site.sign_in_raw("two@acme.example", &password, &[]).await;
    assert_eq!(
        (st, h.get("location").unwrap().to_str().unwrap()),
        (303, "/login/totp")
    );
    let half = at_stage(&site, cookie_value(&set_cookie(&h).unwrap()), "/login/totp").await;
    let (st, body) = site.me(&[("cookie", &half.cookie)]).await;
    assert_eq!(
        (st, body["error"]["message"].as_str().unwrap()),
        (403, "give your second factor first")
    );
    for page in ["/", "/password", "/security", "/users", "/security/totp"] {
        let (st, h, _) = get(&site, &half, page).await;
        assert_eq!(
            (st, h.get("location").map(|v| v.to_str().unwrap())),
            (303, Some("/login/totp")),
            "{page}"
        );
    }
    let (st, _, _) = post(
        &site,
        &half,
        "/password",
        &[("current", &password), ("new", "x"), ("confirm", "x")],
        &[],
    )
    .await;
    assert_eq!(
        st, 303,
        "the password cannot be changed with the password alone"
    );

    // The code of the enrolment's time step was used: refused; the next step's works once.
    let now = site.s.clock.now_us();
    let (st, _, page) = post(
        &site,
        &half,
        "/login/totp",
        &[("code", &code_at(&secret, now))],
        &[],
    )
    .await;
    assert_eq!(st, 400, "{page}");
    site.s.clock.advance_us(30_000_000);
    let code = code_at(&secret, site.s.clock.now_us());
    let (st, h, _) = post(&site, &half, "/login/totp", &[("code", &code)], &[]).await;
    assert_eq!(
        (st, h.get("location").unwrap().to_str().unwrap()),
        (303, "/")
    );
    let full = cookie_value(&set_cookie(&h).unwrap());
    assert_eq!(site.me(&[("cookie", &full)]).await.0, 200);
    assert_eq!(
        site.me(&[("cookie", &half.cookie)]).await.0,
        401,
        "the half-signed-in session ended"
    );

    // The same code on another sign-in, within its step: refused.
    let (_, h, _) = site.sign_in_raw("two@acme.example", &password, &[]).await;
    let again = at_stage(&site, cookie_value(&set_cookie(&h).unwrap()), "/login/totp").await;
    assert_eq!(
        post(&site, &again, "/login/totp", &[("code", &code)], &[])
            .await
            .0,
        400
    );
    // A recovery code works once, in any case and spacing.
    let shouted = format!(" {} ", codes[0].to_uppercase());
    assert_eq!(
        post(&site, &again, "/login/totp", &[("code", &shouted)], &[])
            .await
            .0,
        303
    );
    let (_, h, _) = site.sign_in_raw("two@acme.example", &password, &[]).await;
    let third = at_stage(&site, cookie_value(&set_cookie(&h).unwrap()), "/login/totp").await;
    assert_eq!(
        post(&site, &third, "/login/totp", &[("code", &codes[0])], &[])
            .await
            .0,
        400
    );
    // Wrong codes are throttled like passwords.
    for wrong in ["123456", "654321"] {
        let (st, _, _) = post(&site, &third, "/login/totp", &[("code", wrong)], &[]).await;
        assert_eq!(st, 400);
    }
    let (st, _, page) = post(&site, &third, "/login/totp", &[("code", &codes[1])], &[]).await;
    assert_eq!(st, 429, "three failures: the fourth attempt waits ({page})");
    // A burst of wrong codes at once is counted as it comes: at most three are checked.
    site.s.clock.advance_us(901_000_000);
    let (_, h, _) = site.sign_in_raw("two@acme.example", &password, &[]).await;
    let fourth = at_stage(&site, cookie_value(&set_cookie(&h).unwrap()), "/login/totp").await;
    let burst = (0..12).map(|_| {
        let (site, b) = (&site, &fourth);
        async move {
            post(site, b, "/login/totp", &[("code", "000000")], &[])
                .await
                .0
        }
    });
    let statuses = futures_util::future::join_all(burst).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 400 || *s == 429),
        "{statuses:?}"
    );

    let j = journal(&site);
    let totp: Vec<&serde_json::Value> = j.iter().filter(|e| e["action"] == "auth.totp").collect();
    assert!(totp.iter().any(|e| e["outcome"] == "failure"));
    assert!(totp.iter().any(|e| e["params"]["with"] == "recovery_code"));
    let all = serde_json::to_string(&j).unwrap();
    assert!(
        !all.contains(&secret) && !all.contains(&codes[1]),
        "no seed or code in the journal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_can_require_a_second_factor_and_admins_can_remove_one() {
    let site = Site::new();
    let (owner, _) = site.signed_in("boss@acme.example", "owner").await;
    let (st, _, page) = post(
        &site,
        &owner,
        "/settings",
        &[("two_factor", "sometimes")],
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("off, admins or everyone"), "{page}");
    let (st, _, _) = post(
        &site,
        &owner,
        "/settings",
        &[("two_factor", "everyone")],
        &[],
    )
    .await;
    assert_eq!(st, 303);

    // A new person is sent to set one up, and reaches nothing else until they do.
    let otp = site.account("new@acme.example", "operator");
    let (b, _) = {
        let (st, h, _) = site.sign_in_raw("new@acme.example", &otp, &[]).await;
        assert_eq!(h.get("location").unwrap(), "/password", "{st}");
        let b = at_stage(&site, cookie_value(&set_cookie(&h).unwrap()), "/password").await;
        let new = "velvet harbour lantern new";
        let (st, h, _) = post(
            &site,
            &b,
            "/password",
            &[("current", &otp), ("new", new), ("confirm", new)],
            &[],
        )
        .await;
        assert_eq!(
            (st, h.get("location").unwrap().to_str().unwrap()),
            (303, "/security/totp")
        );
        (
            at_stage(
                &site,
                cookie_value(&set_cookie(&h).unwrap()),
                "/security/totp",
            )
            .await,
            new,
        )
    };
    assert_eq!(
        site.me(&[("cookie", &b.cookie)]).await.1["error"]["message"],
        "set up a second factor first"
    );
    let (_, h, _) = get(&site, &b, "/users").await;
    assert_eq!(h.get("location").unwrap(), "/security/totp");
    let (b, _, _) = enrol(&site, &b).await;
    assert_eq!(site.me(&[("cookie", &b.cookie)]).await.0, 200);

    // An owner removes it (a lost phone); the policy sends the person to set it up again.
    let (_, _, list) = get(&site, &owner, "/users").await;
    let at = list.find("new@acme.example").unwrap();
    let id = &list[list[..at].rfind("/users/").unwrap() + 7..][..32];
    assert_eq!(
        post(&site, &owner, &format!("/users/{id}/remove-2fa"), &[], &[])
            .await
            .0,
        303
    );
    let (st, h, _) = site
        .sign_in_raw("new@acme.example", "velvet harbour lantern new", &[])
        .await;
    assert_eq!(
        (st, h.get("location").unwrap().to_str().unwrap()),
        (303, "/security/totp")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn address_lists_apply_to_every_request_of_users_and_tokens() {
    let site = Site::new();
    let (owner, _) = site.signed_in("net@acme.example", "owner").await;
    let (user, password) = site.signed_in("far@acme.example", "operator").await;
    let token = site.s.env.ok(&[
        "token",
        "create",
        "--tenant",
        site.tenant.as_str(),
        "--role",
        "auditor",
    ]);
    let bearer = format!("Bearer {}", token.trim());
    // Broken lists are refused, naming the entry; a list that would shut out the owner too.
    let (st, _, page) = post(
        &site,
        &owner,
        "/settings",
        &[("two_factor", "off"), ("ip_allow", "192.0.2.0/24 banana")],
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("banana"), "{page}");
    let (st, _, page) = post(
        &site,
        &owner,
        "/settings",
        &[("two_factor", "off"), ("ip_allow", "198.51.100.0/24")],
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("your own address 192.0.2.10"), "{page}");
    let (st, _, _) = post(
        &site,
        &owner,
        "/settings",
        &[
            ("two_factor", "off"),
            ("ip_allow", "192.0.2.0/24"),
            ("ip_deny", "192.0.2.99"),
        ],
        &[],
    )
    .await;
    assert_eq!(st, 303);

    let from = |ip: &'static str| ("x-test-peer", ip);
    assert_eq!(
        site.s
            .send(
                "GET",
                "/api/v1/me",
                &[("cookie", &user.cookie), from("192.0.2.20:1")],
                b""
            )
            .await
            .0,
        200
    );
    for (auth, ip) in [
        (("cookie", user.cookie.as_str()), "198.51.100.7:1"),
        (("cookie", user.cookie.as_str()), "192.0.2.99:1"),
        (("authorization", bearer.as_str()), "203.0.113.1:1"),
    ] {
        let (st, _, b) = site
            .s
            .send("GET", "/api/v1/me", &[auth, from(ip)], b"")
            .await;
        assert_eq!(st, 403, "{ip}");
        assert!(text(&b).contains("AUTH-0006"));
    }
    let (st, _, page) = site
        .sign_in_raw("far@acme.example", &password, &[from("198.51.100.7:1")])
        .await;
    assert_eq!(st, 403);
    assert!(page.contains("not allowed by your organisation"), "{page}");
    // The model gateway's own guard refuses the address too, in the vendor's shape, and
    // journals it like the pages' guard.
    let (st, _, b) = site
        .s
        .send(
            "GET",
            "/v1/models",
            &[("authorization", bearer.as_str()), from("203.0.113.1:1")],
            b"",
        )
        .await;
    assert_eq!(st, 403);
    assert!(
        text(&b).contains("not allowed by your organisation"),
        "{}",
        text(&b)
    );
    let refused: Vec<_> = journal(&site)
        .into_iter()
        .filter(|e| e["action"] == "auth.address_refused")
        .collect();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert_eq!(refused[3]["target"], "/v1/models", "{}", refused[3]);
    let saved = journal(&site)
        .into_iter()
        .rev()
        .find(|e| e["action"] == "policy.update")
        .unwrap();
    assert_eq!(saved["params"]["ip_allow"][0], "192.0.2.0/24");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_may_tighten_the_idle_timeout() {
    let site = Site::new();
    let (owner, _) = site.signed_in("idle@acme.example", "owner").await;
    let (st, _, page) = post(
        &site,
        &owner,
        "/settings",
        &[("two_factor", "off"), ("session_idle_secs", "30")],
        &[],
    )
    .await;
    assert_eq!(st, 400, "below the bound");
    assert!(page.contains("from 60"), "{page}");
    assert_eq!(
        post(
            &site,
            &owner,
            "/settings",
            &[("two_factor", "off"), ("session_idle_secs", "120")],
            &[]
        )
        .await
        .0,
        303
    );
    site.s.clock.advance_us(100_000_000);
    assert_eq!(site.me(&[("cookie", &owner.cookie)]).await.0, 200);
    site.s.clock.advance_us(121_000_000);
    assert_eq!(site.me(&[("cookie", &owner.cookie)]).await.0, 401);
}

/// Two servers on one data directory (two nodes behind a load balancer): an address list
/// saved on one holds on the other at its next request, as does a token revoked on one.
/// Before, the other trusted what it remembered for up to 10 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_saved_on_one_server_holds_at_once_on_another() {
    let site = Site::new();
    let (owner, _) = site.signed_in("net2@acme.example", "owner").await;
    let token = site.s.env.ok(&[
        "token",
        "create",
        "--tenant",
        site.tenant.as_str(),
        "--role",
        "auditor",
    ]);
    let bearer = format!("Bearer {}", token.trim());
    let other = site.s.node();
    let me = |peer: &'static str| {
        let (other, bearer) = (other.clone(), bearer.clone());
        async move {
            crate::support::send_to(
                &other,
                "GET",
                "/api/v1/me",
                &[("authorization", &bearer), ("x-test-peer", peer)],
                b"",
            )
            .await
            .0
        }
    };
    // The other server has read the tenant's policy and the token, and remembers both.
    assert_eq!(me("192.0.2.20:1").await, 200);
    assert_eq!(me("192.0.2.20:1").await, 200);
    let (st, _, _) = post(
        &site,
        &owner,
        "/settings",
        &[("two_factor", "off"), ("ip_deny", "192.0.2.20")],
        &[],
    )
    .await;
    assert_eq!(st, 303);
    assert_eq!(me("192.0.2.20:1").await, 403);
    assert_eq!(me("192.0.2.21:1").await, 200);
    // A token revoked on this server stops working on the other.
    let listed = site
        .s
        .env
        .ok(&["token", "list", "--tenant", site.tenant.as_str(), "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&listed).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _, _) = post(&site, &owner, &format!("/tokens/{id}/revoke"), &[], &[]).await;
    assert_eq!(st, 303);
    assert_eq!(me("192.0.2.21:1").await, 401);
}
