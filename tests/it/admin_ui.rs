//! The admin pages through the real router: users and roles, tokens, tenants, the audit
//! log; an auditor trying every change; one tenant asking for another's objects.

use crate::signin::{between, journal, set_cookie, text, Browser, Site};
use strongroom::door;
use strongroom::identity::tokens::{self, NewToken};
use strongroom::identity::{Caller, Realm};

async fn post(
    site: &Site,
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, String) {
    crate::signin::form_post(site, b, path, fields, &[]).await
}

async fn get(site: &Site, b: &Browser, path: &str) -> (u16, String) {
    let (st, _, page) = crate::signin::page_get(site, b, path).await;
    (st, page)
}

fn secret_on(page: &str) -> String {
    let at = page.find("id=\"secret\">").unwrap() + 12;
    page[at..].split('<').next().unwrap().trim().to_string()
}

fn user_id_on(page: &str, email: &str) -> String {
    let table = page.find("id=\"users\"").unwrap();
    let at = table + page[table..].find(email).unwrap();
    let before = &page[..at];
    let href = before.rfind("/users/").unwrap() + 7;
    before[href..href + 32].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_manages_people_and_roles_through_the_pages() {
    let site = Site::new();
    let (admin, _) = site.signed_in("ad@acme.example", "admin").await;
    // Broken input is answered on the form, naming the field.
    for (fields, want) in [
        (
            vec![("email", "nope"), ("role", "operator")],
            "exactly one @",
        ),
        (
            vec![("email", "x@acme.example"), ("role", "wizard")],
            "Unknown role",
        ),
        (
            vec![("email", "ad@acme.example"), ("role", "operator")],
            "already used",
        ),
        (
            vec![("email", "x@acme.example"), ("role", "owner")],
            "owners.manage",
        ),
    ] {
        let (st, _, page) = post(&site, &admin, "/users", &fields).await;
        assert!(st == 400 || st == 403, "{fields:?}: {st}");
        assert!(page.contains(want), "{want}: {page}");
    }
    let (st, _, page) = post(
        &site,
        &admin,
        "/users",
        &[
            ("email", "New.Person@acme.example"),
            ("name", "New Person"),
            ("role", "operator"),
        ],
    )
    .await;
    assert_eq!(st, 201, "{page}");
    let otp = secret_on(&page);
    assert_eq!(otp.len(), 24);
    let (person, _) = site
        .first_sign_in("new.person@acme.example", &otp, "person")
        .await;
    assert_eq!(
        site.me(&[("cookie", &person.cookie)]).await.1["role"],
        "operator"
    );

    let (_, list) = get(&site, &admin, "/users").await;
    let id = user_id_on(&list, "new.person@acme.example");
    // A new role ends the person's sessions at once, in this process.
    let (st, h, _) = post(
        &site,
        &admin,
        &format!("/users/{id}/role"),
        &[("role", "auditor")],
    )
    .await;
    assert_eq!(st, 303);
    assert_eq!(
        h.get("location").unwrap().to_str().unwrap(),
        format!("/users/{id}?done=role")
    );
    assert_eq!(site.me(&[("cookie", &person.cookie)]).await.0, 401);
    let (_, page) = get(&site, &admin, &format!("/users/{id}?done=role")).await;
    assert!(page.contains("<td id=\"role-now\">auditor</td>"), "{page}");

    assert_eq!(
        post(&site, &admin, &format!("/users/{id}/disable"), &[])
            .await
            .0,
        303
    );
    assert_eq!(
        site.sign_in_raw(
            "new.person@acme.example",
            "velvet harbour lantern person",
            &[]
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post(&site, &admin, &format!("/users/{id}/enable"), &[])
            .await
            .0,
        303
    );
    let (st, _, page) = post(&site, &admin, &format!("/users/{id}/reset-password"), &[]).await;
    assert_eq!(st, 200);
    let again = secret_on(&page);
    assert_ne!(again, otp);
    assert_eq!(
        site.sign_in_raw("new.person@acme.example", &again, &[])
            .await
            .0,
        303
    );

    // A custom role: defined, held, then refused removal while held.
    let (st, _, page) = post(
        &site,
        &admin,
        "/roles",
        &[
            ("role_name", "shift-lead"),
            ("permission", "users.read"),
            ("permission", "knowledge.read"),
        ],
    )
    .await;
    assert_eq!(st, 303, "{page}");
    let (st, _, page) = post(
        &site,
        &admin,
        "/roles",
        &[("role_name", "Bad Name"), ("permission", "users.read")],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("lower-case"), "{page}");
    let (st, _, page) = post(
        &site,
        &admin,
        "/roles",
        &[("role_name", "too-strong"), ("permission", "grants.manage")],
    )
    .await;
    assert_eq!(
        st, 403,
        "an admin cannot define a role stronger than itself: {page}"
    );
    assert_eq!(
        post(
            &site,
            &admin,
            &format!("/users/{id}/role"),
            &[("role", "shift-lead")]
        )
        .await
        .0,
        303
    );
    let (st, _, page) = post(&site, &admin, "/roles/shift-lead/delete", &[]).await;
    assert_eq!(st, 409, "{page}");
    let actions: Vec<String> = journal(&site)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "user.create",
        "user.role",
        "user.disable",
        "user.enable",
        "user.reset_password",
        "role.create",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_made_shown_once_and_revoked_through_the_pages() {
    let site = Site::new();
    let (admin, _) = site.signed_in("tk@acme.example", "admin").await;
    let (st, _, page) = post(
        &site,
        &admin,
        "/tokens",
        &[
            ("name", "nightly-export"),
            ("role", "auditor"),
            ("expires", "30d"),
        ],
    )
    .await;
    assert_eq!(st, 201, "{page}");
    let token = secret_on(&page);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        site.me(&[("authorization", &bearer)]).await.1["token"]["name"],
        "nightly-export"
    );
    let (_, list) = get(&site, &admin, "/tokens").await;
    assert!(
        list.contains("nightly-export") && !list.contains(&token[token.len() - 64..]),
        "the list never shows the secret"
    );
    let tid = token.split('_').nth(2).unwrap().to_string();
    assert_eq!(
        post(&site, &admin, &format!("/tokens/{tid}/revoke"), &[])
            .await
            .0,
        303
    );
    // Refused on the very next request.
    assert_eq!(site.me(&[("authorization", &bearer)]).await.0, 401);
    let (st, _, page) = post(
        &site,
        &admin,
        "/tokens",
        &[("name", "x"), ("role", "auditor"), ("expires", "forever")],
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        page.contains("invalid expiry") || page.contains("Invalid expiry"),
        "{page}"
    );
    let (st, _, _) = post(
        &site,
        &admin,
        "/tokens",
        &[("name", "x"), ("role", "owner"), ("expires", "30d")],
    )
    .await;
    assert_eq!(st, 403, "an admin cannot mint an owner token");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_manages_tenants_and_sees_no_tenant_data() {
    let site = Site::new();
    let otp = site
        .s
        .env
        .ok(&["user", "reset-password", "--platform", "owner@localhost"])
        .trim()
        .to_string();
    let (platform, _) = site
        .first_sign_in("owner@localhost", &otp, "platform")
        .await;
    let (user, _) = site.signed_in("tu@acme.example", "operator").await;
    let t = site.tenant.to_string();

    let (st, page) = get(&site, &platform, "/tenants").await;
    assert_eq!(st, 200);
    assert!(page.contains("acme"));
    let (st, _, page) = post(
        &site,
        &platform,
        "/tenants",
        &[("name", "acme"), ("region", "")],
    )
    .await;
    assert_eq!(st, 400, "{page}");
    assert!(page.contains("already exists"), "{page}");
    let (st, _, page) = post(
        &site,
        &platform,
        "/tenants",
        &[("name", "globex"), ("region", "EU central")],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.to_lowercase().contains("invalid region"), "{page}");
    assert_eq!(
        post(
            &site,
            &platform,
            "/tenants",
            &[("name", "globex"), ("region", "eu-central")]
        )
        .await
        .0,
        303
    );

    // Suspending ends the tenant's sessions at once; resuming lets them back.
    assert_eq!(
        post(&site, &platform, &format!("/tenants/{t}/suspend"), &[])
            .await
            .0,
        303
    );
    assert_eq!(site.me(&[("cookie", &user.cookie)]).await.0, 403);
    assert_eq!(
        post(&site, &platform, &format!("/tenants/{t}/resume"), &[])
            .await
            .0,
        303
    );
    assert_eq!(site.me(&[("cookie", &user.cookie)]).await.0, 200);

    // The platform sees its own accounts and the system journal, not the tenant's.
    let (_, accounts) = get(&site, &platform, "/users").await;
    assert!(accounts.contains("owner@localhost") && !accounts.contains("tu@acme.example"));
    let (_, log) = get(&site, &platform, "/audit").await;
    assert!(
        log.contains("tenant.suspend") && !log.contains("tu@acme.example"),
        "{log}"
    );
    assert_eq!(get(&site, &platform, "/tokens").await.0, 403);

    // Deleting needs the name typed exactly.
    let (st, _, page) = post(
        &site,
        &platform,
        &format!("/tenants/{t}/delete"),
        &[("confirm", "acm")],
    )
    .await;
    assert_eq!(st, 400, "{page}");
    assert_eq!(site.me(&[("cookie", &user.cookie)]).await.0, 200);
    assert_eq!(
        post(
            &site,
            &platform,
            &format!("/tenants/{t}/delete"),
            &[("confirm", "acme")]
        )
        .await
        .0,
        303
    );
    assert!(site.me(&[("cookie", &user.cookie)]).await.0 >= 401);
    // A tenant's user may not manage tenants at all.
    let (other, _) = {
        let site2 = &site;
        let otp = site2
            .s
            .env
            .ok(&[
                "user",
                "create",
                "--platform",
                "--email",
                "aud@localhost",
                "--role",
                "auditor",
            ])
            .trim()
            .to_string();
        site2.first_sign_in("aud@localhost", &otp, "aud").await
    };
    assert_eq!(
        post(&site, &other, "/tenants", &[("name", "initech")])
            .await
            .0,
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_filters_pages_verifies_and_exports() {
    let site = Site::new();
    let (owner, _) = site.signed_in("au@acme.example", "owner").await;
    tokio::task::block_in_place(|| {
        let ctx = door::open_blocking(
            &site.s.app,
            &site.tenant,
            Caller::operator(Realm::Tenant),
            None,
        )
        .unwrap();
        for i in 0..60 {
            let input = NewToken {
                name: Some(format!("t{i}")),
                role: "auditor".into(),
                lifetime_secs: None,
            };
            tokens::create_blocking(&ctx, site.s.app.directory(), &input).unwrap();
        }
    });
    let total = journal(&site).len();
    let (st, page) = get(&site, &owner, "/audit").await;
    assert_eq!(st, 200);
    assert_eq!(page.matches("<tr><td>").count(), 50);
    let next = page.split("rel=\"next\"").next().unwrap();
    let href = &next[next.rfind("href=\"").unwrap() + 6..next.rfind('"').unwrap()];
    let href = href.replace("&amp;", "&");
    let (st, page2) = get(&site, &owner, &href).await;
    assert_eq!(st, 200);
    assert_eq!(page2.matches("<tr><td>").count(), total - 50);
    let (_, filtered) = get(&site, &owner, "/audit?action=token.").await;
    assert_eq!(filtered.matches("<td>token.create</td>").count(), 50);
    assert!(!filtered.contains("<td>user.create</td>"));
    let (_, by_actor) = get(&site, &owner, "/audit?actor=nobody").await;
    assert!(by_actor.contains("No entries match"));
    for bad in [
        "/audit?from=yesterday",
        "/audit?from=2026-12-05&to=2026-12-01",
        "/audit?before=-4",
    ] {
        let (st, page) = get(&site, &owner, bad).await;
        assert_eq!(st, 400, "{bad}");
        assert!(page.contains("error-summary"), "{bad}");
    }
    let (st, _, page) = post(&site, &owner, "/audit/verify", &[]).await;
    assert_eq!(st, 200);
    assert!(page.contains("The journal is intact"), "{page}");
    let (st, h, body) = export(&site, &owner, "/audit/export?format=ndjson").await;
    assert_eq!(st, 200);
    assert!(h
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("audit.ndjson"));
    assert!(text(&body).lines().count() >= total);
    let (_, _, csv) = export(&site, &owner, "/audit/export?format=csv").await;
    assert!(
        text(&csv).starts_with(r#""journal","seq","#),
        "{}",
        &text(&csv)[..80]
    );
    assert_eq!(
        export(&site, &owner, "/audit/export?format=xml").await.0,
        400
    );
    let _ = set_cookie;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_can_change_nothing() {
    let site = Site::new();
    let (owner, _) = site.signed_in("ow@acme.example", "owner").await;
    let (auditor, _) = site.signed_in("ad@acme.example", "auditor").await;
    let (_, list) = get(&site, &owner, "/users").await;
    let target = user_id_on(&list, "ow@acme.example");
    let (st, _, page) = post(
        &site,
        &owner,
        "/tokens",
        &[("name", "keep"), ("role", "auditor"), ("expires", "30d")],
    )
    .await;
    assert_eq!(st, 201, "{page}");
    let token_id = secret_on(&page).split('_').nth(2).unwrap().to_string();
    let before = journal(&site).len();
    let mutations: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/users".into(),
            vec![("email", "z@acme.example"), ("role", "operator")],
        ),
        (format!("/users/{target}/role"), vec![("role", "auditor")]),
        (format!("/users/{target}/disable"), vec![]),
        (format!("/users/{target}/enable"), vec![]),
        (format!("/users/{target}/reset-password"), vec![]),
        (format!("/users/{target}/end-sessions"), vec![]),
        (
            "/roles".into(),
            vec![("role_name", "sneaky"), ("permission", "audit.read")],
        ),
        ("/roles/sneaky/delete".into(), vec![]),
        ("/tokens".into(), vec![("name", "x"), ("role", "auditor")]),
        (format!("/tokens/{token_id}/revoke"), vec![]),
        ("/tenants".into(), vec![("name", "x")]),
        (format!("/tenants/{}/suspend", site.tenant), vec![]),
        (
            format!("/tenants/{}/delete", site.tenant),
            vec![("confirm", "acme")],
        ),
    ];
    for (path, fields) in &mutations {
        let (st, _, page) = post(&site, &auditor, path, fields).await;
        assert_eq!(st, 403, "{path}: {page}");
    }
    // Nothing changed but the refusals on the record.
    assert_eq!(site.me(&[("cookie", &owner.cookie)]).await.0, 200);
    let after = journal(&site);
    let changes: Vec<&str> = after[before..]
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| !a.starts_with("auth."))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
    // Each refusal is on the record, whether the route or the domain behind it refused.
    for (path, _) in &mutations {
        assert!(
            after[before..].iter().any(|e| e["action"] == "auth.denied"
                && e["outcome"] == "denied"
                && e["target"] == path.as_str()),
            "no auth.denied for {path}"
        );
    }
    // What an auditor may do: read the log, verify it, export it.
    assert_eq!(get(&site, &auditor, "/audit").await.0, 200);
    assert_eq!(post(&site, &auditor, "/audit/verify", &[]).await.0, 200);
}

/// A role that may read documents but not add or remove them is refused on the way in,
/// before an upload's body is read, and the refusal is on the record.
#[tokio::test(flavor = "multi_thread")]
async fn reading_documents_is_not_changing_them() {
    let site = Site::new();
    let (owner, _) = site.signed_in("ow@acme.example", "owner").await;
    let (st, _, page) = post(
        &site,
        &owner,
        "/roles",
        &[("role_name", "reader"), ("permission", "knowledge.read")],
    )
    .await;
    assert!(st < 400, "{st}: {page}");
    let t = site.tenant.to_string();
    let op = format!(
        "Bearer {}",
        site.s
            .env
            .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
            .trim()
    );
    let reader = format!(
        "Bearer {}",
        site.s
            .env
            .ok(&["token", "create", "--tenant", &t, "--role", "reader"])
            .trim()
    );
    let (ct, body) = crate::assistant::multipart(&[("note.txt", b"The harbour opens at six.")]);
    let send = |auth: String, method: &'static str, path: String, ct: String, body: Vec<u8>| {
        let site = &site;
        async move {
            let (st, _, b) = site
                .s
                .send(
                    method,
                    &path,
                    &[
                        ("authorization", auth.as_str()),
                        ("content-type", ct.as_str()),
                    ],
                    &body,
                )
                .await;
            (st, text(&b))
        }
    };
    let (st, page) = send(
        op.clone(),
        "POST",
        "/api/v1/documents".into(),
        ct.clone(),
        body.clone(),
    )
    .await;
    assert_eq!(st, 201, "{page}");
    let v: serde_json::Value = serde_json::from_str(&page).unwrap();
    let id = v["added"][0]["id"].as_str().unwrap().to_string();
    let before = journal(&site).len();
    let (st, page) = send(
        reader.clone(),
        "GET",
        "/api/v1/documents".into(),
        String::new(),
        Vec::new(),
    )
    .await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains(&id), "{page}");
    let (st, page) = send(reader.clone(), "POST", "/api/v1/documents".into(), ct, body).await;
    assert_eq!(st, 403, "{page}");
    let doc = format!("/api/v1/documents/{id}");
    let (st, page) = send(
        reader.clone(),
        "DELETE",
        doc.clone(),
        String::new(),
        Vec::new(),
    )
    .await;
    assert_eq!(st, 403, "{page}");
    let (st, page) = send(reader, "GET", doc.clone(), String::new(), Vec::new()).await;
    assert_eq!(st, 200, "{page}");
    let after = journal(&site);
    let denied: Vec<&str> = after[before..]
        .iter()
        .filter(|e| e["action"] == "auth.denied")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["/api/v1/documents", doc.as_str()]);
    assert!(after[before..]
        .iter()
        .all(|e| e["action"].as_str().unwrap().starts_with("auth.")));
}

/// A user of tenant A asks for every kind of tenant B's objects by id, on every route that
/// takes one: the answer is the one a missing object gets, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_cannot_reach_anothers_objects() {
    let site = Site::new();
    let (a_owner, _) = site.signed_in("alice@a.example", "owner").await;
    // Tenant B, with a user and their session, a token, a custom role and a vendor grant.
    let b = strongroom::ids::TenantId::parse(&site.s.env.create_tenant("bravo")).unwrap();
    let (b_user, b_token, b_otp, b_grant) = tokio::task::block_in_place(|| {
        let ctx =
            door::open_blocking(&site.s.app, &b, Caller::operator(Realm::Tenant), None).unwrap();
        let input = strongroom::identity::accounts::NewAccount {
            email: "victim@b.example".into(),
            name: None,
            role: "admin".into(),
        };
        let (user, otp) =
            strongroom::identity::accounts::create_blocking(&ctx, site.s.app.directory(), &input)
                .unwrap();
        let (tok, _) = tokens::create_blocking(
            &ctx,
            site.s.app.directory(),
            &NewToken {
                name: None,
                role: "auditor".into(),
                lifetime_secs: None,
            },
        )
        .unwrap();
        strongroom::identity::roles::create_blocking(
            &ctx,
            "b-role",
            strongroom::identity::Permissions::of(&[strongroom::identity::Permission::UsersRead]),
        )
        .unwrap();
        let grant = strongroom::identity::grants::create_blocking(
            &ctx,
            site.s.app.directory(),
            "owner@localhost",
            "case 7",
            3600,
        )
        .unwrap();
        (
            user.id.to_string(),
            tok.id.to_string(),
            otp.expose().to_string(),
            grant.id.to_string(),
        )
    });
    assert_eq!(
        site.sign_in_raw("victim@b.example", &b_otp, &[]).await.0,
        303
    );
    let b_session = tokio::task::block_in_place(|| {
        let ctx =
            door::open_blocking(&site.s.app, &b, Caller::operator(Realm::Tenant), None).unwrap();
        let uid = strongroom::ids::UserId::parse(&b_user).unwrap();
        strongroom::identity::sessions::list_blocking(&ctx, &uid).unwrap()[0]
            .id
            .to_string()
    });
    let missing = "cd".repeat(16);
    type Fields = Vec<(&'static str, &'static str)>;
    let routes: Vec<(&str, String, Fields)> = vec![
        ("GET", "/users/{}".into(), vec![]),
        ("POST", "/users/{}/role".into(), vec![("role", "auditor")]),
        ("POST", "/users/{}/disable".into(), vec![]),
        ("POST", "/users/{}/enable".into(), vec![]),
        ("POST", "/users/{}/reset-password".into(), vec![]),
        ("POST", "/users/{}/end-sessions".into(), vec![]),
        ("POST", "/tokens/{}/revoke".into(), vec![]),
        ("POST", "/security/sessions/{}/end".into(), vec![]),
        ("POST", "/users/{}/remove-2fa".into(), vec![]),
        ("POST", "/grants/{}/revoke".into(), vec![]),
    ];
    for (method, template, fields) in &routes {
        let foreign_id = if template.starts_with("/tokens") {
            &b_token
        } else if template.starts_with("/grants") {
            &b_grant
        } else if template.starts_with("/security") {
            &b_session
        } else {
            &b_user
        };
        let mut answers = Vec::new();
        for id in [foreign_id.as_str(), missing.as_str()] {
            let path = template.replace("{}", id);
            let (st, body) = if *method == "GET" {
                get(&site, &a_owner, &path).await
            } else {
                let (st, _, body) = post(&site, &a_owner, &path, fields).await;
                (st, body)
            };
            answers.push((st, body));
        }
        assert_eq!(answers[0].0, 404, "{template}: {}", answers[0].1);
        assert_eq!(
            answers[0], answers[1],
            "{template}: a foreign id answers unlike a missing one"
        );
    }
    // B's custom role is unknown to A.
    let (st, _, _) = post(&site, &a_owner, "/roles/b-role/delete", &[]).await;
    assert_eq!(st, 404);
    // B's victim is untouched.
    let list = site
        .s
        .env
        .ok(&["user", "list", "--tenant", b.as_str(), "--json"]);
    assert!(
        list.contains("\"disabled\": false") && list.contains("\"role\": \"admin\""),
        "{list}"
    );
}

/// `vendor` inside the site's tenant under a new five-minute grant (given by the operator):
/// its session with the grant's cookie.
async fn enter_under_a_new_grant(site: &Site, vendor: &Browser, reason: &str) -> Browser {
    tokio::task::block_in_place(|| {
        let ctx = door::open_blocking(
            &site.s.app,
            &site.tenant,
            Caller::operator(Realm::Tenant),
            None,
        )
        .unwrap();
        strongroom::identity::grants::create_blocking(
            &ctx,
            site.s.app.directory(),
            "owner@localhost",
            reason,
            300,
        )
        .unwrap();
    });
    let t = &site.tenant;
    let (_, h, _) = post(site, vendor, &format!("/tenants/{t}/enter"), &[]).await;
    let cookie = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-strongroom-grant="))
        .unwrap();
    Browser {
        cookie: format!("{}; {}", vendor.cookie, cookie.split(';').next().unwrap()),
        csrf: vendor.csrf.clone(),
    }
}

/// Vendor break-glass: off until an owner grants it; read-only; every request journaled in
/// the tenant with the grant's id; ends by revocation or by itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_sees_tenant_data_only_under_a_live_grant() {
    let site = Site::new();
    let t = site.tenant.to_string();
    let (owner, _) = site.signed_in("own@acme.example", "owner").await;
    let (admin, _) = site.signed_in("adm@acme.example", "admin").await;
    let otp = site
        .s
        .env
        .ok(&["user", "reset-password", "--platform", "owner@localhost"])
        .trim()
        .to_string();
    let (vendor, _) = site.first_sign_in("owner@localhost", &otp, "vendor").await;

    // No grant: entering is refused and the tenant's pages show the platform's own data.
    let (st, _, page) = post(&site, &vendor, &format!("/tenants/{t}/enter"), &[]).await;
    assert_eq!(st, 404, "{page}");
    assert!(page.contains("no live access grant"), "{page}");
    let (_, users) = get(&site, &vendor, "/users").await;
    assert!(!users.contains("own@acme.example"));

    // Only owners grant; only platform accounts are granted; a reason is required.
    assert_eq!(
        post(
            &site,
            &admin,
            "/grants",
            &[
                ("email", "owner@localhost"),
                ("reason", "x"),
                ("hours", "8")
            ]
        )
        .await
        .0,
        403
    );
    let (st, _, page) = post(
        &site,
        &owner,
        "/grants",
        &[
            ("email", "adm@acme.example"),
            ("reason", "x"),
            ("hours", "8"),
        ],
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        page.contains("No platform account adm@acme.example"),
        "{page}"
    );
    let (st, _, _) = post(
        &site,
        &owner,
        "/grants",
        &[("email", "owner@localhost"), ("reason", ""), ("hours", "8")],
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        post(
            &site,
            &owner,
            "/grants",
            &[
                ("email", "owner@localhost"),
                ("reason", "support case 42"),
                ("hours", "1")
            ]
        )
        .await
        .0,
        303
    );

    let (st, h, _) = post(&site, &vendor, &format!("/tenants/{t}/enter"), &[]).await;
    assert_eq!(st, 303);
    let grant_cookie = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-strongroom-grant="))
        .unwrap();
    assert!(grant_cookie.contains("HttpOnly") && grant_cookie.contains("Secure"));
    let both = format!(
        "{}; {}",
        vendor.cookie,
        grant_cookie.split(';').next().unwrap()
    );
    let as_vendor = Browser {
        cookie: both.clone(),
        csrf: vendor.csrf.clone(),
    };
    let (st, users) = get(&site, &as_vendor, "/users").await;
    assert_eq!(st, 200);
    assert!(
        users.contains("own@acme.example") && users.contains("under its access grant"),
        "{users}"
    );
    assert_eq!(get(&site, &as_vendor, "/audit").await.0, 200);
    // Read-only: no change goes through.
    assert_eq!(
        post(
            &site,
            &as_vendor,
            "/users",
            &[("email", "x@acme.example"), ("role", "operator")]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(&site, &as_vendor, "/settings", &[("two_factor", "off")])
            .await
            .0,
        403
    );
    let j = journal(&site);
    let uses: Vec<&serde_json::Value> = j
        .iter()
        .filter(|e| e["action"] == "grant.request")
        .collect();
    assert!(uses.len() >= 3, "{uses:?}");
    // The change of settings its grant does not allow is refused at the door, in its name.
    assert!(j.iter().any(|e| e["action"] == "auth.denied"
        && e["target"] == "/settings"
        && e["actor"]["role"].as_str().unwrap().starts_with("vendor:")));
    assert!(uses
        .iter()
        .any(|e| e["params"]["path"] == "/users" && e["params"]["method"] == "GET"));
    assert!(uses
        .iter()
        .all(|e| e["actor"]["role"].as_str().unwrap().starts_with("vendor:")));

    // It ends when revoked: the next request is the platform's again.
    let (_, page) = get(&site, &owner, "/grants").await;
    let at = page.find("/grants/").unwrap();
    let live_id = &page[at + 8..at + 40];
    assert_eq!(
        post(&site, &owner, &format!("/grants/{live_id}/revoke"), &[])
            .await
            .0,
        303
    );
    assert!(!get(&site, &as_vendor, "/users")
        .await
        .1
        .contains("own@acme.example"));

    // And by itself: a five-minute grant, then six minutes later.
    let as_vendor = enter_under_a_new_grant(&site, &vendor, "case 43").await;
    assert!(get(&site, &as_vendor, "/users")
        .await
        .1
        .contains("own@acme.example"));
    site.s.clock.advance_us(301_000_000);
    let (st, users) = get(&site, &as_vendor, "/users").await;
    assert_eq!(st, 200, "the platform session itself lives on");
    assert!(
        users.contains("owner@localhost") && !users.contains("own@acme.example"),
        "{users}"
    );
    let actions: Vec<String> = journal(&site)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"grant.create".to_string())
            && actions.contains(&"grant.revoke".to_string())
    );

    // Signing out inside the tenant ends the platform session it runs on, and the grant's
    // cookie with it.
    let inside = enter_under_a_new_grant(&site, &vendor, "case 44").await;
    assert!(get(&site, &inside, "/users")
        .await
        .1
        .contains("own@acme.example"));
    let (st, h, _) = post(&site, &inside, "/logout", &[]).await;
    assert_eq!(st, 303);
    let cleared: Vec<String> = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("__Host-strongroom-grant=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let (st, page) = get(&site, &vendor, "/users").await;
    assert!(
        st == 303 && !page.contains("owner@localhost"),
        "the platform session outlived signing out: {st}"
    );
}

/// The overview draws the last 30 days of sign-ins, failures and journal entries as SVG,
/// each with a sentence and a table of its numbers.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_charts_usage_with_text_alternatives() {
    let site = Site::new();
    let (owner, password) = site.signed_in("chart@acme.example", "owner").await;
    for _ in 0..2 {
        assert_eq!(
            site.sign_in_raw("chart@acme.example", "not it at all", &[])
                .await
                .0,
            401
        );
    }
    assert_eq!(
        site.sign_in_raw("chart@acme.example", &password, &[])
            .await
            .0,
        303
    );
    let (st, page) = get(&site, &owner, "/").await;
    assert_eq!(st, 200);
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 3, "{page}");
    assert_eq!(page.matches("<rect").count(), 90);
    // Two sign-ins today (with the one-time password, and the last), two failures.
    let failed = between(&page, "id=\"failed-summary\">", "<");
    assert!(failed.starts_with("2 in the last 30 days"), "{failed}");
    let ok = between(&page, "id=\"sign-ins-summary\">", "<");
    assert!(ok.starts_with("2 in the last 30 days"), "{ok}");
    assert!(page.contains("Failed sign-ins per day as a table"));
    // An auditor (status.read) has the charts too.
    let (aud, _) = site.signed_in("aud@acme.example", "auditor").await;
    assert!(get(&site, &aud, "/")
        .await
        .1
        .contains("Usage, last 30 days"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_is_exported_whole_as_it_is_read_and_only_to_those_allowed() {
    let site = Site::new();
    let (owner, _) = site.signed_in("ow@acme.example", "owner").await;
    let (operator, _) = site.signed_in("op@acme.example", "operator").await;
    // A journal of several chunks.
    for i in 0..60 {
        site.account(&format!("person{i}@acme.example"), "auditor");
    }
    let (st, h, body) = export(&site, &owner, "/audit/export?format=ndjson").await;
    assert_eq!(st, 200);
    assert_eq!(h.get("content-type").unwrap(), "application/x-ndjson");
    // Sent as read: no length is known up front.
    assert!(h.get("content-length").is_none(), "{h:?}");
    let body = text(&body);
    assert!(body.len() > 16 * 1024 * 2, "{}", body.len());
    assert!(body.ends_with('\n'));
    // Every line whole, in order, and the same as the command line's export.
    let cli = site
        .s
        .env
        .ok(&["audit", "export", "--tenant", site.tenant.as_str()]);
    let lines: Vec<&str> = body.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["seq"], i as u64 + 1);
    }
    assert!(lines.len() >= 60, "{}", lines.len());
    assert_eq!(&cli.lines().take(lines.len()).collect::<Vec<_>>(), &lines);
    let (st, _, csv) = export(&site, &owner, "/audit/export?format=csv").await;
    assert_eq!(st, 200);
    assert!(text(&csv).lines().count() > lines.len());

    // Refused before a byte is sent: an error page, not a download.
    let (st, h, page) = export(&site, &operator, "/audit/export?format=ndjson").await;
    assert_eq!(st, 403, "{}", text(&page));
    assert!(h.get("content-disposition").is_none());
    assert!(text(&page).contains("<html"), "{}", text(&page));
}

/// A download of the journal at `path`, as `who`.
async fn export(site: &Site, who: &Browser, path: &str) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    site.s
        .send("GET", path, &[("cookie", &who.cookie)], b"")
        .await
}

/// The log page's check holds a tenant's journal to the position `system.db` recorded for
/// it, as `audit verify` does: a journal that no longer reaches it, or reaches it with
/// another entry, is reported, not called intact.
#[tokio::test(flavor = "multi_thread")]
async fn the_pages_verify_holds_the_journal_to_its_anchor() {
    use strongroom::audit::browse;
    use strongroom::audit::verify::ProblemKind;
    let site = Site::new();
    let (owner, _) = site.signed_in("ow@acme.example", "owner").await;
    let (st, _, page) = post(&site, &owner, "/audit/verify", &[]).await;
    assert_eq!(st, 200);
    assert!(page.contains("The journal is intact"), "{page}");
    let app = site.s.app.clone();
    let tenant = site.tenant.clone();
    tokio::task::block_in_place(|| {
        let ctx =
            door::open_blocking(&app, &tenant, Caller::operator(Realm::Tenant), None).unwrap();
        let keys = app.trusted_keys(tenant.as_str());
        let clean = browse::verify_blocking(&ctx, &keys, None).unwrap();
        assert_eq!(clean.problem, None);
        let head = clean.head_seq;
        let r = browse::verify_blocking(&ctx, &keys, Some((head + 5, vec![0; 32]))).unwrap();
        assert_eq!(r.problem.unwrap().kind, ProblemKind::Truncated);
        let r = browse::verify_blocking(&ctx, &keys, Some((1, vec![7; 32]))).unwrap();
        assert_eq!(r.problem.unwrap().kind, ProblemKind::Changed);
    });
}
