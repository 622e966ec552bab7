//! The door: tenant contexts with the status check, audited changes, query-only reads, and
//! writes that survive a key rotation underneath them.

use crate::support::Env;
use std::sync::Arc;
use strongroom::audit::{Actor, ActorKind};
use strongroom::door::{self, Audit};
use strongroom::store::system::{meta_get, meta_set};
use strongroom::tenants::{TenantError, TenantId};

fn actor() -> strongroom::identity::Caller {
    strongroom::identity::Caller::new(
        Actor {
            kind: ActorKind::Cli,
            id: "door-test".into(),
            role: "admin".into(),
        },
        strongroom::identity::permission::everything(strongroom::identity::Realm::Tenant),
    )
}

fn setup(name: &str) -> (Env, Arc<strongroom::app::App>, TenantId) {
    let env = Env::init();
    let id = TenantId::parse(&env.create_tenant(name)).unwrap();
    let app = Arc::new(env.app());
    (env, app, id)
}

/// Sets `key` in the tenant's meta table through the door.
fn set(ctx: &door::TenantCtx, key: &'static str, value: &'static str) -> Result<(), TenantError> {
    ctx.change_blocking(move |tx| -> Result<_, TenantError> {
        meta_set(tx.conn(), key, value).map_err(|e| tx.err(&e))?;
        Ok((
            (),
            Audit::new("record.set", key).params(serde_json::json!({ "value": value })),
        ))
    })
}

fn get(ctx: &door::TenantCtx, key: &'static str) -> Option<String> {
    ctx.read_blocking(move |c| -> Result<_, TenantError> {
        Ok(meta_get(c, key).map_err(|e| strongroom::store::StoreError::from_sqlite("t", 1, &e))?)
    })
    .unwrap()
}

fn last_entry(env: &Env, id: &TenantId) -> serde_json::Value {
    let log = env.ok(&["audit", "export", "--tenant", id.as_str()]);
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

#[test]
fn a_change_commits_with_its_entry_stamped_by_the_context() {
    let (env, app, id) = setup("Door");
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let ctx = door::open_blocking(&app, &id, actor(), Some(ip)).unwrap();
    set(&ctx, "colour", "blue").unwrap();
    assert_eq!(get(&ctx, "colour").as_deref(), Some("blue"));
    // A failing change leaves neither its row nor an entry.
    let failed = ctx.change_blocking(|tx| -> Result<((), Audit), TenantError> {
        meta_set(tx.conn(), "half", "done").map_err(|e| tx.err(&e))?;
        Err(TenantError::InvalidName("refused by the domain".into()))
    });
    assert!(matches!(failed, Err(TenantError::InvalidName(_))));
    assert_eq!(get(&ctx, "half"), None);
    drop(ctx);
    Arc::try_unwrap(app).ok().unwrap().close();
    let e = last_entry(&env, &id);
    assert_eq!(e["action"], "record.set");
    assert_eq!(e["target"], "colour");
    assert_eq!(e["params"]["value"], "blue");
    assert_eq!(e["actor"]["id"], "door-test");
    assert_eq!(e["actor"]["role"], "admin");
    assert_eq!(e["actor"]["kind"], "cli");
    assert_eq!(e["source_ip"], "192.0.2.7");
    env.ok(&["audit", "verify", "--tenant", id.as_str()]);
}

#[test]
fn a_read_cannot_write() {
    let (_env, app, id) = setup("Readonly");
    let ctx = door::open_blocking(&app, &id, actor(), None).unwrap();
    let r = ctx.read_blocking(|c| -> Result<usize, TenantError> {
        c.execute("INSERT INTO meta (key, value) VALUES ('sneaky', 'x')", [])
            .map_err(|e| strongroom::store::StoreError::from_sqlite("t", 1, &e).into())
    });
    assert!(r.is_err(), "a write inside a read went through");
    let r = ctx.read_blocking(|c| -> Result<usize, TenantError> {
        c.execute("DELETE FROM audit_entries", [])
            .map_err(|e| strongroom::store::StoreError::from_sqlite("t", 1, &e).into())
    });
    assert!(r.is_err(), "a read could delete the journal");
    // Nor can a read switch the guard off: the connection itself is read-only.
    let r = ctx.read_blocking(|c| -> Result<(), TenantError> {
        c.execute_batch(
            "PRAGMA query_only = 0; INSERT INTO meta (key, value) VALUES ('sneaky', 'x')",
        )
        .map_err(|e| strongroom::store::StoreError::from_sqlite("t", 1, &e).into())
    });
    assert!(r.is_err(), "a read turned query_only off and wrote");
    // A read that leaves a transaction open does not pin later reads to its snapshot.
    ctx.read_blocking(|c| -> Result<(), TenantError> {
        c.execute_batch("BEGIN").unwrap();
        Ok(())
    })
    .unwrap();
    set(&ctx, "after_begin", "1").unwrap();
    for _ in 0..16 {
        assert_eq!(get(&ctx, "after_begin").as_deref(), Some("1"));
    }
    assert_eq!(get(&ctx, "sneaky"), None);
    let entries = ctx
        .read_blocking(|c| -> Result<i64, TenantError> {
            Ok(
                c.query_row("SELECT count(*) FROM audit_entries", [], |r| r.get(0))
                    .unwrap(),
            )
        })
        .unwrap();
    assert!(entries >= 1);
}

#[test]
fn suspended_and_deleted_tenants_are_refused_at_the_door() {
    let (env, app, id) = setup("Paused");
    let other = TenantId::parse(&env.create_tenant("Gone")).unwrap();
    env.ok(&["tenant", "suspend", id.as_str()]);
    let err = door::open_blocking(&app, &id, actor(), None).unwrap_err();
    assert!(matches!(err, TenantError::Suspended(_)), "{err:?}");
    assert_eq!(err.code(), "TEN-0006");
    assert!(err.to_string().contains("tenant resume"), "{err}");
    env.ok(&["tenant", "delete", other.as_str(), "--yes"]);
    let err = door::open_blocking(&app, &other, actor(), None).unwrap_err();
    assert!(matches!(err, TenantError::NotFound(_)), "{err:?}");
    env.ok(&["tenant", "resume", id.as_str()]);
    let ctx = door::open_blocking(&app, &id, actor(), None).unwrap();
    set(&ctx, "back", "yes").unwrap();
}

/// The door remembers for a moment that an open tenant is usable; a suspension, here or by
/// another process, still holds on the very next open.
#[test]
fn a_suspension_holds_at_once_though_the_door_remembers_the_tenant_usable() {
    let (env, app, id) = setup("Remembered");
    let system = Actor::system();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = || rt.block_on(door::open(&app, &id, actor(), None));
    // Opened twice: the second open is answered from what the first found.
    set(&open().unwrap(), "seen", "once").unwrap();
    assert!(open().is_ok());
    // Suspended in this process.
    strongroom::tenants::set_active(&app, &system, &id, false).unwrap();
    assert!(matches!(open().unwrap_err(), TenantError::Suspended(_)));
    assert!(matches!(
        door::open_blocking(&app, &id, actor(), None).unwrap_err(),
        TenantError::Suspended(_)
    ));
    strongroom::tenants::set_active(&app, &system, &id, true).unwrap();
    assert!(open().is_ok(), "a resumed tenant is usable at once");
    assert!(open().is_ok());
    // Suspended by another process, which tells this one through the identity epoch.
    env.ok(&["tenant", "suspend", id.as_str()]);
    assert!(matches!(open().unwrap_err(), TenantError::Suspended(_)));
    env.ok(&["tenant", "resume", id.as_str()]);
    set(&open().unwrap(), "seen", "again").unwrap();
}

#[test]
fn a_suspended_tenant_is_refused_by_every_command_but_the_exempt_ones() {
    let env = Env::init();
    let id = env.create_tenant("Cli paused");
    env.ok(&["tenant", "suspend", &id]);
    for args in [
        vec!["audit", "export", "--tenant", &id],
        vec!["audit", "checkpoints", "--tenant", &id],
        vec!["keys", "rotate-tenant", &id],
        vec!["bench", "append-loop", "--tenant", &id, "--max", "1"],
    ] {
        let text = env.fails(&args);
        assert!(
            text.contains("is suspended") && text.contains("TEN-0006"),
            "{args:?}: {text}"
        );
    }
    // Evidence and recovery keep working on a suspended tenant.
    env.ok(&["audit", "verify", "--tenant", &id]);
    env.ok(&["audit", "verify", "--all"]);
    let archive = env.tmp.path().join("paused.srbk");
    env.ok(&[
        "backup",
        "create",
        "--out",
        archive.to_str().unwrap(),
        "--tenant",
        &id,
    ]);
    env.ok(&["tenant", "resume", &id]);
    env.ok(&["audit", "export", "--tenant", &id]);
    env.ok(&["tenant", "suspend", &id]);
    env.ok(&["tenant", "delete", &id, "--yes"]);
}

#[test]
fn a_write_survives_a_key_rotation_under_its_context() {
    let (_env, app, id) = setup("Rotating");
    let ctx = door::open_blocking(&app, &id, actor(), None).unwrap();
    set(&ctx, "before", "1").unwrap();
    // The rotation takes the tenant away from this process and re-encrypts its file: the
    // context's store is closed, and its key is no longer the tenant's.
    strongroom::keys::rotate_tenant(&app, &Actor::cli(), &id).unwrap();
    set(&ctx, "after", "2").unwrap();
    assert_eq!(get(&ctx, "before").as_deref(), Some("1"));
    assert_eq!(get(&ctx, "after").as_deref(), Some("2"));
    strongroom::keys::rotate_tenant(&app, &Actor::cli(), &id).unwrap();
    // A read on a closed store reopens too.
    assert_eq!(get(&ctx, "after").as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_forms_work_from_a_runtime() {
    let (_env, app, id) = setup("Async");
    let ctx = Arc::new(door::open(&app, &id, actor(), None).await.unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.change(move |tx| -> Result<_, TenantError> {
                    meta_set(tx.conn(), &format!("k{i}"), "v").map_err(|e| tx.err(&e))?;
                    Ok((i, Audit::new("record.set", &format!("k{i}"))))
                })
                .await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i);
    }
    let n = ctx
        .read(|c| -> Result<i64, TenantError> {
            Ok(
                c.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                    r.get(0)
                })
                .unwrap(),
            )
        })
        .await
        .unwrap();
    assert_eq!(n, 64);
    let err = door::open(
        &app,
        &TenantId::parse(&"0".repeat(32)).unwrap(),
        actor(),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TenantError::NotFound(_)), "{err:?}");
}
