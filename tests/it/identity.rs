//! Accounts: the first owners, `strongroom user ...`, the e-mail directory, permissions in
//! the domain functions, and what the journals keep (never a password).

use crate::support::{stderr, stdout, Env};
use std::sync::Arc;
use strongroom::audit::{Actor, ActorKind};
use strongroom::door;
use strongroom::identity::accounts::{self, NewAccount};
use strongroom::identity::{permission, Caller, IdentityError, Realm};

/// The one-time password `user create` prints: alone, one line, groups of four.
fn one_time(out: &str) -> String {
    let line = out.trim_end_matches('\n');
    assert!(!line.contains('\n'), "more than the password: {out:?}");
    assert_eq!(line.len(), 24, "{line:?}");
    assert_eq!(line.split('-').count(), 5, "{line:?}");
    line.to_string()
}

fn accounts_json(env: &Env, at: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["user", "list", "--json"];
    args.extend_from_slice(at);
    serde_json::from_str::<Vec<serde_json::Value>>(&env.ok(&args)).unwrap()
}

#[test]
fn init_makes_the_platform_owner_and_shows_the_password_once_on_stderr() {
    let env = Env::new();
    let out = env.run(&["init", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // stdout stays the JSON report alone; the password goes to stderr only.
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(report["root_key_id"].is_string());
    assert!(!stdout(&out).contains("password"));
    let err = stderr(&out);
    assert!(err.contains("Platform owner: owner@localhost"), "{err}");
    assert!(
        err.contains("sign in at https://127.0.0.1:8443/login"),
        "{err}"
    );
    let pw = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("one-time password: "))
        .unwrap()
        .to_string();
    assert_eq!(pw.len(), 24);

    let list = accounts_json(&env, &["--platform"]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["email"], "owner@localhost");
    assert_eq!(list[0]["role"], "owner");
    assert_eq!(list[0]["must_change_password"], true);
    assert!(list[0].get("password_hash").is_none());

    // The journal records the account, never its password or hash.
    let journal = env.ok(&["audit", "export", "--system"]);
    assert!(journal.contains("\"user.create\""), "{journal}");
    assert!(!journal.contains(&pw));
    assert!(!journal.contains("$argon2"));
    // The stored file keeps only the hash: the password is nowhere in the data directory
    // (which is encrypted anyway; this checks the plaintext through the app).
    let app = env.app();
    let hash: String = app
        .system()
        .read(|c| {
            c.query_row("SELECT password_hash FROM users", [], |r| r.get(0))
                .map_err(|e| app.system().err(&e))
        })
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(&pw));
    app.close();
}

#[test]
fn accounts_are_managed_from_the_cli_in_either_realm() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let pw = one_time(&env.ok(&[
        "user",
        "create",
        "--tenant",
        &t,
        "--email",
        " Ana@Acme.Example ",
        "--role",
        "admin",
    ]));
    let again = one_time(&env.ok(&[
        "user",
        "create",
        "--tenant",
        &t,
        "--email",
        "bob@acme.example",
        "--role",
        "auditor",
        "--name",
        "Bob Auditor",
    ]));
    assert_ne!(pw, again);
    let list = accounts_json(&env, &["--tenant", &t]);
    let emails: Vec<_> = list.iter().map(|a| a["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["ana@acme.example", "bob@acme.example"]);
    assert_eq!(list[0]["name"], "ana");
    assert_eq!(list[1]["name"], "Bob Auditor");
    // Tenant users are not platform accounts.
    assert_eq!(accounts_json(&env, &["--platform"]).len(), 1);

    let id = list[1]["id"].as_str().unwrap().to_string();
    let out = env.ok(&["user", "disable", "--tenant", &t, &id]);
    assert!(out.contains("disabled"), "{out}");
    let twice = env.fails(&["user", "disable", "--tenant", &t, "bob@acme.example"]);
    assert!(
        twice.contains("already disabled") && twice.contains("IDN-0008"),
        "{twice}"
    );
    env.ok(&["user", "enable", "--tenant", &t, "BOB@acme.example"]);
    env.ok(&["user", "set-role", "--tenant", &t, &id, "operator"]);
    let reset = one_time(&env.ok(&["user", "reset-password", "--tenant", &t, &id]));
    assert_ne!(reset, again);
    let list = accounts_json(&env, &["--tenant", &t]);
    assert_eq!(list[1]["role"], "operator");
    assert_eq!(list[1]["disabled"], false);

    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    let actions: Vec<String> = journal
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for a in [
        "user.create",
        "user.disable",
        "user.enable",
        "user.role",
        "user.reset_password",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    for secret in [&pw, &again, &reset] {
        assert!(!journal.contains(secret.as_str()));
    }
    assert!(!journal.contains("$argon2"));
}

#[test]
fn an_address_is_unique_across_the_installation_and_freed_with_its_tenant() {
    let env = Env::init();
    let a = env.create_tenant("a");
    let b = env.create_tenant("b");
    env.ok(&[
        "user",
        "create",
        "--tenant",
        &a,
        "--email",
        "sam@example.com",
        "--role",
        "operator",
    ]);
    for (at, email) in [
        (["--tenant", b.as_str()], "sam@example.com"),
        (["--tenant", b.as_str()], "SAM@EXAMPLE.COM"),
        (["--tenant", a.as_str()], "sam@example.com"),
        (["--tenant", b.as_str()], "owner@localhost"),
    ] {
        let mut args = vec!["user", "create"];
        args.extend_from_slice(&at);
        args.extend_from_slice(&["--email", email, "--role", "operator"]);
        let e = env.fails(&args);
        assert!(
            e.contains("already used") && e.contains("IDN-0003"),
            "{email}: {e}"
        );
    }
    let e = env.fails(&[
        "user",
        "create",
        "--platform",
        "--email",
        "sam@example.com",
        "--role",
        "admin",
    ]);
    assert!(e.contains("IDN-0003"), "{e}");
    assert!(accounts_json(&env, &["--tenant", &b]).is_empty());

    // The directory holds the address as a keyed hash only.
    let app = env.app();
    let rows: Vec<(Vec<u8>, String)> = app
        .system()
        .read(|c| {
            let mut st = c.prepare("SELECT mac, realm FROM email_directory").unwrap();
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| app.system().err(&e));
            rows
        })
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (mac, _) in &rows {
        assert_eq!(mac.len(), 32);
        assert!(!crate::support::contains(mac, b"sam"));
    }
    assert!(rows.iter().any(|(_, realm)| realm == &a));
    app.close();

    env.ok(&["tenant", "delete", "--yes", &a]);
    env.ok(&[
        "user",
        "create",
        "--tenant",
        &b,
        "--email",
        "sam@example.com",
        "--role",
        "operator",
    ]);
}

#[test]
fn broken_input_gets_a_clear_error_and_changes_nothing() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let before = env.ok(&["audit", "export", "--system"]);
    for (args, want) in [
        (
            vec![
                "user",
                "create",
                "--tenant",
                &t,
                "--email",
                "not-an-address",
                "--role",
                "admin",
            ],
            "exactly one @",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                &t,
                "--email",
                "a@example.com",
                "--role",
                "wizard",
            ],
            "unknown role \"wizard\"",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                "nope",
                "--email",
                "a@example.com",
                "--role",
                "admin",
            ],
            "invalid tenant id",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                &"0".repeat(32),
                "--email",
                "a@example.com",
                "--role",
                "admin",
            ],
            "no tenant",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "a@example.com",
                "--role",
                "admin",
            ],
            "--tenant",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                &t,
                "--platform",
                "--email",
                "a@example.com",
                "--role",
                "admin",
            ],
            "cannot be used with",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                &t,
                "--email",
                "a@example.com",
                "--role",
                "admin",
                "--name",
                "\u{202e}evil",
            ],
            "invisible formatting",
        ),
        (
            vec!["user", "disable", "--tenant", &t, "nobody@example.com"],
            "no account",
        ),
        (
            vec![
                "user",
                "set-role",
                "--platform",
                "owner@localhost",
                "auditor",
            ],
            "without an active owner",
        ),
        (
            vec!["user", "disable", "--platform", "owner@localhost"],
            "without an active owner",
        ),
    ] {
        let e = env.fails(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // No account and no held address: the refused creates left nothing behind.
    assert!(accounts_json(&env, &["--tenant", &t]).is_empty());
    let after = env.ok(&["audit", "export", "--system"]);
    assert_eq!(before.lines().count(), after.lines().count(), "{after}");
}

fn caller(role: &str, realm: Realm) -> Caller {
    Caller::new(
        Actor {
            kind: ActorKind::User,
            id: "someone".into(),
            role: role.into(),
        },
        permission::built_in(realm, role).unwrap(),
    )
}

#[test]
fn domain_functions_check_the_callers_permission() {
    let env = Env::init();
    let t = strongroom::ids::TenantId::parse(&env.create_tenant("acme")).unwrap();
    let app = Arc::new(env.app());
    let new = |email: &str, role: &str| NewAccount {
        email: email.into(),
        name: None,
        role: role.into(),
    };
    let as_role =
        |role: &str| door::open_blocking(&app, &t, caller(role, Realm::Tenant), None).unwrap();

    // Auditors and operators may not create anyone; admins may, but not owners.
    for role in ["auditor", "operator"] {
        let e = accounts::create_blocking(
            &as_role(role),
            app.directory(),
            &new("x@example.com", "operator"),
        )
        .unwrap_err();
        assert!(matches!(e, IdentityError::Denied(_)), "{role}: {e}");
        assert_eq!(
            e.to_string(),
            "not allowed: this needs the permission users.manage"
        );
    }
    let admin = as_role("admin");
    let e = accounts::create_blocking(&admin, app.directory(), &new("o@example.com", "owner"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "not allowed: this needs the permission owners.manage"
    );
    let (ana, _) =
        accounts::create_blocking(&admin, app.directory(), &new("ana@example.com", "operator"))
            .unwrap();
    let owner = as_role("owner");
    let (olga, _) =
        accounts::create_blocking(&owner, app.directory(), &new("olga@example.com", "owner"))
            .unwrap();
    // An admin cannot touch an owner, nor make one.
    let e = accounts::set_disabled_blocking(&admin, olga.id.as_str(), true).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    let e = accounts::set_role_blocking(&admin, ana.id.as_str(), "owner").unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    let e = accounts::reset_password_blocking(&admin, olga.id.as_str()).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    // Nor remove an owner's second factor or end an owner's sessions.
    let e = strongroom::identity::totp::remove_blocking(&admin, &olga.id).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    let e = strongroom::identity::sessions::end_all_blocking(&admin, &olga.id).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    // A tenant's own role as strong as an owner is no way around it: an admin may not give
    // it (to itself or anyone, new or not), nor act for an account that holds it.
    strongroom::identity::roles::create_blocking(
        &owner,
        "co-owner",
        permission::Permissions::of(&[
            permission::Permission::UsersManage,
            permission::Permission::OwnersManage,
        ]),
    )
    .unwrap();
    let e = accounts::set_role_blocking(&admin, ana.id.as_str(), "co-owner").unwrap_err();
    assert_eq!(
        e.to_string(),
        "not allowed: this needs the permission owners.manage"
    );
    let e = accounts::create_blocking(&admin, app.directory(), &new("c@example.com", "co-owner"))
        .unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    let (cora, _) = accounts::create_blocking(
        &owner,
        app.directory(),
        &new("cora@example.com", "co-owner"),
    )
    .unwrap();
    let e = accounts::reset_password_blocking(&admin, cora.id.as_str()).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    let e = accounts::set_disabled_blocking(&admin, cora.id.as_str(), true).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    // What the admin holds itself it still gives.
    accounts::set_role_blocking(&admin, ana.id.as_str(), "auditor").unwrap();
    // An auditor reads, and a platform role is nothing inside a tenant.
    assert_eq!(
        accounts::list_blocking(&as_role("auditor")).unwrap().len(),
        3
    );
    let platform_owner =
        door::open_blocking(&app, &t, caller("owner", Realm::Platform), None).unwrap();
    let e = accounts::list_blocking(&platform_owner).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    // And a tenant owner is nothing on the platform.
    let p = door::platform(&app, caller("owner", Realm::Tenant), None);
    let e = accounts::list_blocking(&p).unwrap_err();
    assert!(matches!(e, IdentityError::Denied(_)), "{e}");
    drop((admin, owner, platform_owner));
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
}

/// `serve --dev` on a fresh directory: a platform owner and a `demo` tenant with its owner,
/// each password shown once on stderr; a second start shows nothing and makes nothing.
#[test]
fn serve_dev_provisions_a_platform_owner_and_a_demo_tenant_once() {
    use std::io::Read;
    let env = Env::new();
    let read_stderr = |mut server: crate::support::Server| {
        let mut child_err = server.child.stderr.take().unwrap();
        assert!(server.terminate().success());
        let mut err = String::new();
        child_err.read_to_string(&mut err).unwrap();
        err
    };
    let err = read_stderr(crate::support::Server::start(&env, &["--dev"]));
    assert!(err.contains("Platform owner: owner@localhost"), "{err}");
    assert!(err.contains("owner@demo.localhost"), "{err}");
    assert_eq!(err.matches("one-time password: ").count(), 2, "{err}");
    let tenants: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["tenant", "list", "--json"])).unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["name"], "demo");
    let demo = tenants[0]["id"].as_str().unwrap();
    let owners = accounts_json(&env, &["--tenant", demo]);
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["email"], "owner@demo.localhost");
    assert_eq!(owners[0]["role"], "owner");

    let err = read_stderr(crate::support::Server::start(&env, &["--dev"]));
    assert!(!err.contains("one-time password"), "{err}");
    assert_eq!(accounts_json(&env, &["--platform"]).len(), 1);
}
