//! Root-key rotation: the happy path, refusal while in use, and a SIGKILL at every step.

use crate::support::{Env, Server};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn key(env: &Env) -> String {
    std::fs::read_to_string(env.dir.join("root.key")).unwrap()
}

fn system_key_ids(env: &Env) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.join("system.key")).unwrap()).unwrap();
    v["wrappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["root_key_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every tenant opens with whatever key is now in root.key, and every journal verifies.
fn everything_opens(env: &Env) {
    let out = env.ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["files"].as_array().unwrap().len(), 4);
}

fn three_tenants() -> (Env, Vec<String>) {
    let env = Env::init();
    let ids = (0..3)
        .map(|i| env.create_tenant(&format!("T{i}")))
        .collect();
    (env, ids)
}

#[test]
fn rotate_root_rewraps_every_key_and_retires_the_old_one() {
    let (env, ids) = three_tenants();
    let old = key(&env);
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["keys", "rotate-root", "--json"])).unwrap();
    assert_eq!(out["rewrapped"], 3);
    let new = key(&env);
    assert_ne!(old, new);
    assert_eq!(
        system_key_ids(&env),
        [out["new_root_key_id"].as_str().unwrap()]
    );
    assert!(!env.dir.join("root.key.next").exists());
    everything_opens(&env);
    // The tenant files were not rewritten: same DEK, only re-wrapped.
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["keys", "status", "--json"])).unwrap();
    assert_eq!(status[0]["key_id"], out["new_root_key_id"]);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(status[i + 1]["owner"], id.as_str());
        assert_eq!(status[i + 1]["version"], 1);
    }
    let actions = env.system_actions();
    assert_eq!(
        &actions[actions.len() - 2..],
        ["keys.rotate_root", "keys.retire_root"]
    );
    let export = env.ok(&["audit", "export", "--system"]);
    assert!(
        !export.contains(old.trim()) && !export.contains(new.trim()),
        "no key material in the journal"
    );

    // The old key opens nothing any more.
    std::fs::write(env.dir.join("root.key"), &old).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(
        text.contains("is not one this data directory was sealed with"),
        "{text}"
    );
    std::fs::write(env.dir.join("root.key"), &new).unwrap();
    env.ok(&["tenant", "list"]);
}

#[test]
fn rotate_root_refuses_while_the_directory_is_in_use() {
    let (env, _) = three_tenants();
    let old = key(&env);
    let server = Server::start(&env, &[]);
    let text = env.fails(&["keys", "rotate-root"]);
    assert!(text.contains("stop them first"), "{text}");
    assert_eq!(key(&env), old, "nothing changed");
    // A second server on the same directory is refused too.
    let text = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(text.contains("another strongroom server"), "{text}");
    assert!(server.terminate().success());
    env.ok(&["keys", "rotate-root"]);
}

#[test]
fn a_sigkill_at_any_step_leaves_a_key_that_opens_everything() {
    for step in 1..=5 {
        let (env, _) = three_tenants();
        let old = key(&env);
        env.kill_at(&["keys", "rotate-root"], step);

        let now = key(&env);
        if step < 4 {
            assert_eq!(now, old, "step {step}: the old key stays until the switch");
        } else {
            assert_ne!(now, old, "step {step}: the switch happened");
        }
        everything_opens(&env);
        if step >= 4 {
            // The switch happened but the old key is not retired yet: doctor says so, and a
            // server retires it as it starts, and is ready.
            let doctor = env.run(&["doctor", "--json"]);
            let text = crate::support::stdout(&doctor);
            assert!(text.contains("root-key rotation stopped"), "{text}");
            let server = Server::start(&env, &[]);
            assert_eq!(server.get("/readyz").status, 200, "step {step}");
            assert!(server.terminate().success());
            assert_eq!(system_key_ids(&env).len(), 1, "step {step}");
            assert_eq!(env.system_actions().last().unwrap(), "keys.retire_root");
            let doctor = env.run(&["doctor", "--json"]);
            let text = crate::support::stdout(&doctor);
            assert!(!text.contains("root-key rotation stopped"), "{text}");
        }
        // A later rotation completes and cleans up whatever the crash left behind.
        env.ok(&["keys", "rotate-root"]);
        assert_eq!(system_key_ids(&env).len(), 1, "step {step}");
        assert!(!env.dir.join("root.key.next").exists(), "step {step}");
        everything_opens(&env);
    }
}

fn tenant_file(env: &Env, id: &str) -> std::path::PathBuf {
    env.dir.join(format!("tenants/{id}.db"))
}

#[test]
fn rotate_tenant_reencrypts_one_tenant_and_retires_its_old_key() {
    let (env, ids) = three_tenants();
    let (target, others) = (&ids[0], &ids[1..]);
    let before: Vec<Vec<u8>> = others
        .iter()
        .map(|id| std::fs::read(tenant_file(&env, id)).unwrap())
        .collect();
    let old_dek = {
        let app = env.app();
        let (_, keys) = strongroom::tenants::tenant_keys(
            &app,
            &strongroom::tenants::TenantId::parse(target).unwrap(),
        )
        .unwrap();
        let k = keys.dek().duplicate();
        app.close();
        k
    };
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["keys", "rotate-tenant", target, "--json"])).unwrap();
    assert_eq!(
        (out["old_version"].as_u64(), out["new_version"].as_u64()),
        (Some(1), Some(2))
    );
    everything_opens(&env);
    // The old key opens nothing any more; the other tenants' files were not touched.
    let label = format!("tenant {target}");
    let path = tenant_file(&env, target);
    let err = strongroom::store::open_connection(
        &strongroom::store::OpenSpec {
            path: &path,
            label: &label,
            key: &old_dek,
            key_version: 1,
            kind: strongroom::store::FileKind::Tenant,
            create: false,
            busy_timeout: std::time::Duration::from_secs(5),
            plaintext: false,
        },
        true,
    )
    .unwrap_err();
    assert!(
        matches!(err, strongroom::store::StoreError::Decrypt { .. }),
        "{err}"
    );
    for (id, bytes) in others.iter().zip(before) {
        assert_eq!(
            std::fs::read(tenant_file(&env, id)).unwrap(),
            bytes,
            "{id} changed"
        );
    }
    let app = env.app();
    let rows = app
        .system()
        .read(|c| strongroom::store::system::key_rows(c).map_err(|e| app.system().err(&e)))
        .unwrap();
    let versions: Vec<u32> = rows
        .iter()
        .filter(|r| r.tenant_id.as_str() == target)
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, [2], "the old wrapped key is destroyed");
    app.close();
    // Both journals record it, with versions and no key material.
    let actions = env.system_actions();
    assert_eq!(
        actions[actions.len() - 2..],
        ["keys.rotate_tenant", "keys.destroy_tenant_keys"],
        "the old key's destruction is on the record too"
    );
    let tenant_log = env.ok(&["audit", "export", "--tenant", target]);
    let last: serde_json::Value = serde_json::from_str(tenant_log.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "keys.rotate_tenant");
    assert_eq!(last["params"]["new_version"], 2);
}

#[test]
fn rotate_tenant_survives_a_sigkill_at_every_step() {
    // 11: the staged copy exists but holds nothing yet (an empty file opens under any key,
    // so only the registry may say whether the copy is the tenant's data).
    for step in 11..=14 {
        let (env, ids) = three_tenants();
        let id = &ids[1];
        let before = env.ok(&["audit", "export", "--tenant", id]);
        env.kill_at(&["keys", "rotate-tenant", id], step);
        // Whatever the step, the tenant opens and its history is whole.
        everything_opens(&env);
        let after = env.ok(&["audit", "export", "--tenant", id]);
        assert!(after.starts_with(&before), "step {step}: history changed");
        // Once the registry committed (13, 14), the tenant's own journal records the
        // rotation too, exactly once, although the process died before writing it: the
        // server writes it as it starts. Until then doctor says it is owed.
        if step >= 13 {
            let doctor = crate::support::stdout(&env.run(&["doctor", "--quick", "--json"]));
            assert!(doctor.contains("entries owed to tenant"), "{doctor}");
        }
        assert!(Server::start(&env, &[]).terminate().success());
        let after = env.ok(&["audit", "export", "--tenant", id]);
        let rotations = after
            .lines()
            .filter(|l| l.contains("\"keys.rotate_tenant\""))
            .count();
        assert_eq!(rotations, usize::from(step >= 13), "step {step}");
        assert_eq!(staged_files(&env), Vec::<String>::new(), "step {step}");
        env.ok(&["keys", "rotate-tenant", id]);
        everything_opens(&env);
    }
}

#[test]
fn rotate_tenant_refuses_a_tenant_open_elsewhere() {
    let (env, ids) = three_tenants();
    let mut child = env
        .command(&[
            "bench",
            "append-loop",
            "--tenant",
            &ids[0],
            "--threads",
            "1",
            "--max",
            "100000000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep reading end open: the child must stay alive and hold the tenant.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let text = env.fails(&["keys", "rotate-tenant", &ids[0]]);
    assert!(text.contains("stop them first"), "{text}");
    // Another tenant rotates meanwhile: only the busy one is held.
    env.ok(&["keys", "rotate-tenant", &ids[1]]);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(out);
    env.ok(&["keys", "rotate-tenant", &ids[0]]);
    everything_opens(&env);
}

#[test]
fn a_running_server_rotates_a_tenant_key_itself() {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    let (env, ids) = three_tenants();
    let server = Server::start(&env, &[]);
    let sock = env.dir.join("admin.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the service user and root may talk to it");

    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["keys", "rotate-tenant", &ids[0], "--json"])).unwrap();
    assert_eq!(out["new_version"], 2);
    // A malformed request gets a named error, and the server carries on.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"{\"op\":\"format_disk\"}\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["code"].as_str()),
        (Some(false), Some("ADM-0001"))
    );
    let bad = env.fails(&["keys", "rotate-tenant", "0123456789abcdef0123456789abcdef"]);
    assert!(bad.contains("no tenant"), "{bad}");
    assert_eq!(server.get("/healthz").status, 200);

    assert!(server.terminate().success());
    assert!(!sock.exists(), "the socket goes with the server");
    let logs: String = crate::support::all_files(&env.dir.join("logs"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        logs.contains("admin request") && logs.contains("RotateTenant"),
        "the server did it"
    );
    everything_opens(&env);
    let actions = env.system_actions();
    assert_eq!(
        actions[actions.len() - 2..],
        ["keys.rotate_tenant", "keys.destroy_tenant_keys"],
        "the old key's destruction is on the record too"
    );
}

/// Writes through the door keep coming while their tenant is rotated three times: each
/// waits out the pause, or is run again by the door when its store was closed under it;
/// none is lost or doubled. Another tenant's writes go on meanwhile.
#[test]
fn writes_wait_while_their_tenant_is_rotated_and_other_tenants_carry_on() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use strongroom::audit::Actor;
    use strongroom::door::{self, Audit};
    use strongroom::tenants::{TenantError, TenantId};
    let (env, ids) = three_tenants();
    let app = Arc::new(env.app());
    let rotated = TenantId::parse(&ids[0]).unwrap();
    let other = TenantId::parse(&ids[1]).unwrap();
    const N: usize = 300;
    let started = Arc::new(AtomicUsize::new(0));
    let writer = |id: TenantId| {
        let (app, started) = (app.clone(), started.clone());
        std::thread::spawn(move || {
            let ctx = door::open_blocking(
                &app,
                &id,
                strongroom::identity::Caller::system(strongroom::identity::Realm::Tenant),
                None,
            )
            .expect("a paused tenant waits, it does not fail");
            for i in 0..N {
                ctx.change_blocking(move |_tx| -> Result<_, TenantError> {
                    Ok(((), Audit::new("record.write", &format!("w{i}"))))
                })
                .expect("the door carries a write across a rotation");
                started.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let writers = [writer(rotated.clone()), writer(other.clone())];
    // Rotate while writes are in flight.
    while started.load(Ordering::SeqCst) < 20 {
        std::thread::yield_now();
    }
    for _ in 0..3 {
        strongroom::keys::rotate_tenant(&app, &Actor::system(), &rotated).unwrap();
    }
    for w in writers {
        w.join().unwrap();
    }
    let app = Arc::try_unwrap(app).ok().unwrap();
    app.close();
    let actions = |id: &str| -> Vec<String> {
        env.ok(&["audit", "export", "--tenant", id])
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let log = actions(&ids[0]);
    let count = |log: &[String], a: &str| log.iter().filter(|x| *x == a).count();
    assert_eq!(count(&log, "record.write"), N, "no write lost or doubled");
    assert_eq!(count(&log, "keys.rotate_tenant"), 3);
    let log = actions(&ids[1]);
    assert_eq!(
        count(&log, "record.write"),
        N,
        "the other tenant carried on"
    );
    assert_eq!(count(&log, "keys.rotate_tenant"), 0);
    everything_opens(&env);
}

/// Files in `tenants/` that are a staged copy (or one of its SQLite side files).
pub fn staged_files(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.dir.join("tenants"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rekey"))
        .collect()
}

#[test]
fn an_owed_tenant_entry_is_delivered_once_even_if_delivered_before() {
    use strongroom::audit::Actor;
    use strongroom::store::system;
    use strongroom::tenants::{self, TenantId};
    let env = Env::init();
    let id = TenantId::parse(&env.create_tenant("Owed")).unwrap();
    let app = env.app();
    let push = |op: &str| {
        let (tid, op) = (id.clone(), op.to_string());
        app.system()
            .writer()
            .bookkeeping(move |tx| {
                system::outbox_push(
                    tx.conn(),
                    &tid,
                    &op,
                    &Actor::system(),
                    "keys.rotate_tenant",
                    &serde_json::json!({ "new_version": 7 }),
                    tx.now_us(),
                )
                .map_err(|e| tx.err(&e))
            })
            .wait()
            .unwrap();
    };
    push("op-one");
    drop(tenants::open_store(&app, &id).unwrap());
    // As if a process had appended it and died before forgetting the row: owed again.
    app.tenant_stores().close(&id);
    push("op-one-again");
    let (tid, op) = (id.clone(), "op-one".to_string());
    app.system()
        .writer()
        .bookkeeping(move |tx| {
            tx.conn()
                .execute(
                    "UPDATE tenant_outbox SET op_id = ?1 WHERE tenant_id = ?2",
                    rusqlite::params![op, tid.as_str()],
                )
                .map_err(|e| tx.err(&e))
        })
        .wait()
        .unwrap();
    drop(tenants::open_store(&app, &id).unwrap());
    let owed = app
        .system()
        .read(|c| system::outbox_for(c, &id).map_err(|e| app.system().err(&e)))
        .unwrap();
    assert!(owed.is_empty(), "delivered rows are forgotten");
    app.close();
    let log = env.ok(&["audit", "export", "--tenant", id.as_str()]);
    let delivered: Vec<&str> = log.lines().filter(|l| l.contains("op-one")).collect();
    assert_eq!(delivered.len(), 1, "{log}");
    assert!(delivered[0].contains("\"new_version\":7"), "{log}");
}

/// The server dies while it rotates a tenant for the CLI: the CLI says the server went away
/// and what decides the tenant's state, instead of a JSON parser's "EOF"; nothing is lost.
#[test]
fn a_cli_rotation_that_loses_the_server_says_so() {
    let (mut env, ids) = three_tenants();
    let before = env.ok(&["audit", "export", "--tenant", &ids[0]]);
    env.extra_env
        .push(("SR_FAULT_ROTATE_STEP".into(), "12".into()));
    let mut server = Server::start(&env, &[]);
    env.extra_env.clear();
    let cli = env
        .command(&["keys", "rotate-tenant", &ids[0]])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The server stops dead once its copy is staged (fault point 12): then it dies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while staged_files(&env).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let out = cli.wait_with_output().unwrap();
    assert!(!out.status.success());
    let text = crate::support::stderr(&out);
    assert!(
        text.contains("went away") && text.contains("keys status") && text.contains("ADM-0006"),
        "{text}"
    );
    assert!(!text.contains("EOF while parsing"), "{text}");
    // The next start settles it; the tenant's history is whole.
    assert!(Server::start(&env, &[]).terminate().success());
    assert_eq!(staged_files(&env), Vec::<String>::new());
    everything_opens(&env);
    assert!(env
        .ok(&["audit", "export", "--tenant", &ids[0]])
        .starts_with(&before));
}

/// `tenant delete --rotate-root` shreds the tenant and rotates the root key in one command,
/// so an old system.db cannot unwrap its key with the current root key.
#[test]
fn delete_with_rotate_root_rotates_the_root_key_too() {
    let (env, ids) = three_tenants();
    let old_key = std::fs::read(env.dir.join("root.key")).unwrap();
    let old_system = std::fs::read(env.dir.join("system.db")).unwrap();
    let out: serde_json::Value = serde_json::from_str(&env.ok(&[
        "tenant",
        "delete",
        &ids[0],
        "--yes",
        "--rotate-root",
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["status"], "deleted");
    assert_ne!(
        out["root_rotation"]["old_root_key_id"],
        out["root_rotation"]["new_root_key_id"]
    );
    assert_ne!(std::fs::read(env.dir.join("root.key")).unwrap(), old_key);
    let actions = env.system_actions();
    assert_eq!(
        actions[actions.len() - 3..],
        ["tenant.delete", "keys.rotate_root", "keys.retire_root"]
    );
    everything_opens_but(&env, 3);
    // The old system.db's wrapped key for the deleted tenant needs the old root key: the
    // current one cannot unwrap it.
    use strongroom::keyring::{load_root_key, system_key::SystemKeyFile, Keyring};
    let old = tempfile::tempdir().unwrap();
    let old_path = old.path().join("system.db");
    std::fs::write(&old_path, &old_system).unwrap();
    let (root, source) = load_root_key(None, &env.dir.join("root.key")).unwrap();
    let keyring = Keyring::new(root, source).unwrap();
    let system_dek = SystemKeyFile::read(&env.dir.join("system.key"))
        .unwrap()
        .unwrap(&keyring)
        .unwrap();
    let spec = strongroom::store::OpenSpec {
        path: &old_path,
        label: "old system.db",
        key: &system_dek,
        key_version: 1,
        kind: strongroom::store::FileKind::System,
        create: false,
        busy_timeout: std::time::Duration::from_secs(5),
        plaintext: false,
    };
    let conn = strongroom::store::open_evidence(&spec).unwrap();
    let rows = strongroom::store::system::key_rows(&conn).unwrap();
    let row = rows
        .iter()
        .find(|r| r.tenant_id.as_str() == ids[0])
        .expect("the old copy still holds the wrapped key");
    assert!(
        keyring
            .unwrap_dek(&ids[0], row.version, &row.wrapped)
            .is_err(),
        "the current root key still unwraps the deleted tenant's key from an old copy"
    );
    // With a server running, the combined command refuses before deleting anything.
    let server = Server::start(&env, &[]);
    let text = env.fails(&["tenant", "delete", &ids[1], "--yes", "--rotate-root"]);
    assert!(text.contains("other strongroom processes"), "{text}");
    assert!(server.terminate().success());
    let list = env.ok(&["tenant", "list"]);
    assert!(
        list.contains(&ids[1]),
        "deleted although the rotation could not run"
    );
}

fn everything_opens_but(env: &Env, files: usize) {
    let out = env.ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["files"].as_array().unwrap().len(), files);
}
