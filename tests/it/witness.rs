//! The witness: an older `system.db` or tenant file put back in place is caught, by verify
//! against a witness kept elsewhere, and at the next start.

use crate::support::{Env, Server};

/// An installation whose witness is kept outside its data directory, as packaged.
fn installation() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let witness = env.tmp.path().join("log/witness.ndjson");
    std::fs::write(
        &env.config,
        format!("[audit]\nwitness_path = {witness:?}\n"),
    )
    .unwrap();
    env.ok(&["init"]);
    (env, witness)
}

/// Appends `n` entries to a tenant's journal through the real binary.
fn append(env: &Env, tenant: &str, n: u32) {
    let n = n.to_string();
    env.ok(&[
        "bench",
        "append-loop",
        "--tenant",
        tenant,
        "--threads",
        "1",
        "--max",
        &n,
    ]);
}

fn copy(env: &Env, rel: &str, to: &str) {
    std::fs::copy(env.dir.join(rel), env.tmp.path().join(to)).unwrap();
}

fn put_back(env: &Env, from: &str, rel: &str) {
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(env.dir.join(format!("{rel}{side}")));
    }
    std::fs::copy(env.tmp.path().join(from), env.dir.join(rel)).unwrap();
}

/// The attack from the review: copies of system.db and tenant files taken, one tenant
/// suspended and another deleted, the copies put back. Before, verify said OK and the
/// deleted tenant was back, active and readable.
#[test]
fn a_rolled_back_system_db_is_caught_and_refused() {
    let (env, witness) = installation();
    let a = env.create_tenant("Alpha");
    let b = env.create_tenant("Bravo");
    let external = env.tmp.path().join("elsewhere.ndjson");
    copy(&env, "system.db", "system.old");
    copy(&env, &format!("tenants/{a}.db"), "a.old");
    copy(&env, &format!("tenants/{b}.db"), "b.old");
    env.ok(&["tenant", "suspend", &a]);
    env.ok(&["tenant", "delete", &b, "--yes"]);
    env.ok(&["audit", "witness", "--out", external.to_str().unwrap()]);
    let kept = std::fs::read_to_string(&witness).unwrap();
    assert!(kept.contains("\"journal\":\"system\""), "{kept}");
    env.ok(&["audit", "verify", "--all"]);

    put_back(&env, "system.old", "system.db");
    put_back(&env, "a.old", &format!("tenants/{a}.db"));
    put_back(&env, "b.old", &format!("tenants/{b}.db"));

    // Verify fails against both witnesses, naming the journal, the witness and both heads.
    for args in [
        vec!["audit", "verify", "--all"],
        vec![
            "audit",
            "verify",
            "--all",
            "--witness",
            external.to_str().unwrap(),
        ],
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let text = crate::support::stdout(&out);
        assert!(text.contains("FAIL  witness"), "{text}");
        assert!(
            text.contains("system.db does not extend the head recorded in the witness"),
            "{text}"
        );
        assert!(text.contains("the journal now ends at seq"), "{text}");
    }
    // The server and every writing command refuse to start on it, naming the witness and
    // the way back; the deleted tenant stays unreadable.
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["tenant", "list"],
        vec!["tenant", "create", "Charlie"],
        vec!["keys", "rotate-tenant", &b],
    ] {
        let text = env.fails(&args);
        assert!(
            text.contains(witness.to_str().unwrap())
                && text.contains("backup restore")
                && text.contains("STO-0015"),
            "{args:?}: {text}"
        );
    }
    let doctor = env.fails(&["doctor"]);
    assert!(doctor.contains("does not extend"), "{doctor}");
}

/// A tenant file put back from an older copy is refused when it opens, and verify names it.
#[test]
fn a_rolled_back_tenant_file_is_refused_when_it_opens() {
    let (env, _) = installation();
    let a = env.create_tenant("Alpha");
    let other = env.create_tenant("Other");
    copy(&env, &format!("tenants/{a}.db"), "a.old");
    append(&env, &a, 5);
    env.ok(&["audit", "verify", "--all"]);
    put_back(&env, "a.old", &format!("tenants/{a}.db"));
    let out = env.run(&["audit", "verify", "--all"]);
    assert!(!out.status.success());
    let text = crate::support::stdout(&out);
    assert!(
        text.contains(&format!("tenant {a} does not extend the head")),
        "{text}"
    );
    let text = env.fails(&[
        "bench",
        "append-loop",
        "--tenant",
        &a,
        "--threads",
        "1",
        "--max",
        "1",
    ]);
    assert!(
        text.contains("does not extend") && text.contains("STO-0015"),
        "{text}"
    );
    // Other tenants carry on.
    append(&env, &other, 1);
    let out = env.run(&["audit", "verify", "--tenant", &other]);
    assert!(out.status.success(), "{}", crate::support::stdout(&out));
}

/// Without its witness too, an older copy of a tenant file is refused when it opens:
/// system.db recorded how far its journal reached. Before, it opened, was written past
/// that point, and verified again.
#[test]
fn an_older_tenant_file_is_refused_even_without_the_witness() {
    let (env, witness) = installation();
    let a = env.create_tenant("Alpha");
    copy(&env, &format!("tenants/{a}.db"), "a.old");
    append(&env, &a, 5);
    std::fs::remove_file(&witness).unwrap();
    put_back(&env, "a.old", &format!("tenants/{a}.db"));
    let text = env.fails(&[
        "bench",
        "append-loop",
        "--tenant",
        &a,
        "--threads",
        "1",
        "--max",
        "10",
    ]);
    assert!(
        text.contains("system.db recorded") && text.contains("STO-0015"),
        "{text}"
    );
    let out = env.run(&["audit", "verify", "--tenant", &a]);
    assert!(!out.status.success(), "{}", crate::support::stdout(&out));
}

/// A restore is the sanctioned step back: afterwards the witness holds the restored heads
/// and everything opens; the server keeps the witness as it runs.
#[test]
fn a_restore_resets_the_witness_and_the_server_keeps_it() {
    let (env, witness) = installation();
    let a = env.create_tenant("Alpha");
    let archive = env.tmp.path().join("a.srbk");
    env.ok(&["backup", "create", "--out", archive.to_str().unwrap()]);
    append(&env, &a, 5);
    env.ok(&["tenant", "create", "Later"]);
    env.ok(&[
        "backup",
        "restore",
        archive.to_str().unwrap(),
        "--tenant",
        &a,
        "--force",
    ]);
    env.ok(&["audit", "verify", "--all"]);
    append(&env, &a, 1);
    env.ok(&["backup", "restore", archive.to_str().unwrap(), "--force"]);
    let out = env.run(&["audit", "verify", "--all"]);
    assert!(out.status.success(), "{}", crate::support::stdout(&out));
    let server = Server::start(&env, &[]);
    assert!(server.terminate().success());
    let heads = std::fs::read_to_string(&witness).unwrap();
    assert!(heads.contains(&format!("\"journal\":\"{a}\"")), "{heads}");
    env.ok(&["audit", "verify", "--all"]);
}

/// A witness file that is broken, altered or foreign is named as such.
#[test]
fn a_broken_or_altered_witness_is_named() {
    let (env, witness) = installation();
    env.create_tenant("Alpha");
    let text = std::fs::read_to_string(&witness).unwrap();
    // Altered: a head moved forward without a signature to match.
    let altered = text.replacen("\"seq\":", "\"seq\":9", 1);
    std::fs::write(&witness, &altered).unwrap();
    let out = env.run(&["audit", "verify", "--all"]);
    assert!(!out.status.success());
    assert!(
        crate::support::stdout(&out).contains("does not carry this installation's signature"),
        "{}",
        crate::support::stdout(&out)
    );
    for (bad, expect) in [
        ("not json\n", "line 1"),
        ("{\"format\":1}\n", "line 1"),
        ("{\"format\":9,\"journal\":\"system\",\"seq\":1,\"hash\":\"00\",\"time_us\":1,\"key_id\":\"k\",\"signature\":\"00\"}\n", "newer"),
    ] {
        std::fs::write(&witness, bad).unwrap();
        let text = env.fails(&["audit", "verify", "--all"]);
        assert!(text.contains(expect) && text.contains("AUD-0102"), "{bad}: {text}");
        // The server refuses too, rather than trusting nothing.
        let text = env.fails(&["tenant", "list"]);
        assert!(text.contains("witness"), "{text}");
    }
    let text = env.fails(&["audit", "verify", "--witness", "/nonexistent/w.ndjson"]);
    assert!(text.contains("does not exist"), "{text}");
}

/// A head forged far ahead (no signature matches it) does not hold the journal's real head
/// back: the next flush writes a signed one beside it, and verify still names the forgery.
#[test]
fn a_forged_head_does_not_freeze_the_witness() {
    let (env, witness) = installation();
    env.create_tenant("Alpha");
    let text = std::fs::read_to_string(&witness).unwrap();
    let forged: String = text
        .lines()
        .map(|l| {
            let l = if l.contains("\"journal\":\"system\"") {
                l.replacen("\"seq\":", "\"seq\":99999999", 1)
            } else {
                l.to_string()
            };
            l + "\n"
        })
        .collect();
    assert_ne!(forged, text);
    std::fs::write(&witness, &forged).unwrap();
    env.create_tenant("Beta");
    let heads = strongroom::audit::witness::read(&witness).unwrap();
    let system: Vec<u64> = heads
        .iter()
        .filter(|h| h.journal == "system")
        .map(|h| h.seq)
        .collect();
    assert_eq!(system.len(), 2, "{system:?}");
    assert!(system.iter().any(|s| *s < 99_999_999), "{system:?}");
    let out = env.run(&["audit", "verify", "--all"]);
    assert!(!out.status.success());
    assert!(crate::support::stdout(&out).contains("does not carry this installation's signature"));
}

/// A deletion is witnessed before it answers, not at the next checkpoint: a long-running
/// process (the server) that dies right after cannot leave a window in which an older
/// system.db brings the tenant back unnoticed.
#[test]
fn a_deletion_is_witnessed_before_it_answers() {
    use strongroom::audit::Actor;
    let t = crate::support::InProcess::start("", 1_900_000_000 * 1_000_000);
    let tenant = strongroom::tenants::create(&t.app, &Actor::cli(), "Gone", None).unwrap();
    strongroom::tenants::delete(&t.app, &Actor::cli(), &tenant.id).unwrap();
    let last_seq: u64 = t
        .app
        .system()
        .read(|c| -> Result<i64, strongroom::store::StoreError> {
            Ok(
                c.query_row("SELECT max(seq) FROM audit_entries", [], |r| r.get(0))
                    .unwrap(),
            )
        })
        .unwrap() as u64;
    // The process is still running: nothing was closed or flushed at exit.
    let heads = strongroom::audit::witness::read(t.app.witness().path()).unwrap();
    let system = heads.iter().find(|h| h.journal == "system").unwrap();
    assert_eq!(system.seq, last_seq, "{heads:?}");
}
