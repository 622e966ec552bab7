//! Tampering with a journal, each way, and `audit verify` catching it with the first bad
//! sequence number and the reason, and a non-zero exit.

use crate::support::Env;
use rusqlite::Connection;
use std::sync::OnceLock;
use strongroom::audit::{Actor, NewEntry};
use strongroom::store::{self, FileKind, OpenSpec};
use strongroom::tenants::{self, TenantId};

/// A tenant with 50 entries and a checkpoint every 10: built once, copied per test.
fn pristine() -> &'static (Env, String) {
    static P: OnceLock<(Env, String)> = OnceLock::new();
    P.get_or_init(|| {
        let env = Env::init();
        std::fs::write(&env.config, "[audit]\ncheckpoint_every = 10\n").unwrap();
        let id = env.create_tenant("Tampered");
        let mut cfg = strongroom::config::Config::default();
        cfg.audit.checkpoint_every = 10;
        let app = strongroom::app::App::open(&cfg, &env.dir).unwrap();
        let tid = TenantId::parse(&id).unwrap();
        let store = tenants::open_store(&app, &tid).unwrap();
        for i in 2..=50 {
            store
                .writer()
                .change(move |_tx| -> Result<_, strongroom::store::StoreError> {
                    let e = NewEntry::new(Actor::system(), "record.update", &format!("r{i}"))
                        .params(serde_json::json!({ "i": i }));
                    Ok(((), e))
                })
                .wait()
                .unwrap();
        }
        drop(store);
        app.close();
        let out = env.ok(&["audit", "verify", "--tenant", &id, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["files"][0]["chain"]["entries"], 50);
        assert_eq!(v["files"][0]["chain"]["last_checkpoint_seq"], 50);
        // `tenant create` signed entry 1 on exit; then one every 10 entries, and the tail
        // when the store closed. The tests below rely on these positions.
        let cps: Vec<u64> = env
            .ok(&["audit", "checkpoints", "--tenant", &id])
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(cps, [1, 11, 21, 31, 41, 50]);
        (env, id)
    })
}

/// Opens a copy of the pristine installation's tenant file with its real key, as an
/// attacker who has the key (or a bug) would, runs `tamper`, and returns verify's report.
fn tamper(f: impl FnOnce(&Connection)) -> (String, serde_json::Value) {
    let (env, id) = pristine();
    let copy = env.clone_dir();
    std::fs::write(&copy.config, "[audit]\ncheckpoint_every = 10\n").unwrap();
    let tid = TenantId::parse(id).unwrap();
    {
        let app = copy.app();
        let conn = raw_tenant_file(&app, &tid);
        f(&conn);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(conn);
        app.close();
    }
    let out = copy.run(&["audit", "verify", "--tenant", id, "--json"]);
    assert!(!out.status.success(), "verify passed a tampered journal");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let text = copy.run(&["audit", "verify", "--tenant", id]);
    (
        crate::support::stdout(&text),
        v["files"][0]["chain"]["problem"].clone(),
    )
}

/// The tenant's file on a plain connection with its real key, outside any writer: what an
/// attacker who holds the key (or a bug) could do to it.
fn raw_tenant_file(app: &strongroom::app::App, tid: &TenantId) -> Connection {
    let (_, keys) = tenants::tenant_keys(app, tid).unwrap();
    let path = store::tenants::tenant_path(app.data_dir(), tid);
    let label = store::tenants::tenant_label(tid);
    store::open_connection(
        &OpenSpec {
            path: &path,
            label: &label,
            key: keys.dek(),
            key_version: keys.version,
            kind: FileKind::Tenant,
            create: false,
            busy_timeout: std::time::Duration::from_secs(5),
            plaintext: false,
        },
        false,
    )
    .unwrap()
}

fn expect(problem: &serde_json::Value, seq: u64, kind: &str) {
    assert_eq!(problem["seq"], seq, "{problem}");
    assert_eq!(problem["kind"], kind, "{problem}");
}

#[test]
fn an_edited_field_is_caught() {
    let (text, p) = tamper(|c| {
        c.execute(
            "UPDATE audit_entries SET target = 'someone-else' WHERE seq = 17",
            [],
        )
        .unwrap();
    });
    expect(&p, 17, "changed");
    assert!(text.contains("first bad entry: 17 (changed)"), "{text}");
}

#[test]
fn an_edited_parameter_is_caught() {
    let (_, p) = tamper(|c| {
        c.execute(
            "UPDATE audit_entries SET params = '{\"i\":999}' WHERE seq = 33",
            [],
        )
        .unwrap();
    });
    expect(&p, 33, "changed");
}

#[test]
fn a_deleted_entry_is_caught() {
    let (_, p) = tamper(|c| {
        c.execute("DELETE FROM audit_entries WHERE seq = 17", [])
            .unwrap();
    });
    expect(&p, 17, "missing");
}

#[test]
fn swapped_entries_are_caught() {
    let (text, p) = tamper(|c| {
        // Move entry 17 to position 18 and back the other way, seq numbers staying in place.
        c.execute_batch(
            "UPDATE audit_entries SET seq = -1 WHERE seq = 17;
             UPDATE audit_entries SET seq = 17 WHERE seq = 18;
             UPDATE audit_entries SET seq = 18 WHERE seq = -1;",
        )
        .unwrap();
    });
    expect(&p, 17, "reordered");
    assert!(text.contains("reordered"), "{text}");
}

#[test]
fn a_cut_tail_is_caught_by_the_checkpoint() {
    let (_, p) = tamper(|c| {
        c.execute("DELETE FROM audit_entries WHERE seq > 45", [])
            .unwrap();
    });
    expect(&p, 46, "truncated");
}

#[test]
fn a_forged_checkpoint_is_caught() {
    let (_, p) = tamper(|c| {
        c.execute(
            "UPDATE audit_checkpoints SET signature = randomblob(64) WHERE seq = 21",
            [],
        )
        .unwrap();
    });
    expect(&p, 21, "bad_signature");
}

#[test]
fn a_rebuilt_chain_is_caught_by_the_signatures() {
    // The attacker edits entry 12 and recomputes every hash after it, so the chain itself is
    // consistent again; only the signed checkpoints can tell.
    let (_, p) = tamper(|c| {
        c.execute(
            "UPDATE audit_entries SET target = 'forged' WHERE seq = 12",
            [],
        )
        .unwrap();
        let mut prev = vec![0u8; 32];
        let rows: Vec<strongroom::audit::Entry> = c
            .prepare(&format!(
                "SELECT {} FROM audit_entries ORDER BY seq",
                strongroom::audit::entry::ENTRY_COLUMNS
            ))
            .unwrap()
            .query_map([], strongroom::audit::Entry::from_row)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let (_, id) = pristine();
        for mut e in rows {
            e.prev_hash = prev.clone();
            let h = e.fields(id).hash(&mut Vec::new());
            c.execute(
                "UPDATE audit_entries SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                rusqlite::params![e.prev_hash, &h[..], e.seq as i64],
            )
            .unwrap();
            prev = h.to_vec();
        }
    });
    expect(&p, 21, "changed");
}

#[test]
fn a_flipped_byte_is_reported_with_file_and_page() {
    let (env, id) = pristine();
    let copy = env.clone_dir();
    let path = copy.dir.join(format!("tenants/{id}.db"));
    let mut bytes = std::fs::read(&path).unwrap();
    // A tenant file has 16 KiB pages (its cipher profile).
    let size = 16384;
    let pages = bytes.len() / size;
    let page = pages; // the last page holds the newest entries
    bytes[(page - 1) * size + 777] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let out = copy.run(&["audit", "verify", "--tenant", id]);
    assert!(!out.status.success());
    let text = crate::support::stdout(&out);
    assert!(text.contains(&format!("tenant {id}")), "{text}");
    assert!(text.contains(&format!("page {page}")), "{text}");
    assert!(!crate::support::stderr(&out).contains("panicked"));
}

#[test]
fn entries_renumbered_below_one_are_caught() {
    let (_, p) = tamper(|c| {
        c.execute("UPDATE audit_entries SET seq = 0 WHERE seq = 1", [])
            .unwrap();
    });
    expect(&p, 0, "changed");
}

#[test]
fn a_tail_cut_together_with_its_checkpoints_is_caught_by_the_registry() {
    let (_, p) = tamper(|c| {
        c.execute_batch(
            "DELETE FROM audit_entries WHERE seq > 45; DELETE FROM audit_checkpoints WHERE seq > 45;",
        )
        .unwrap();
    });
    expect(&p, 46, "truncated");
}

#[test]
fn an_emptied_journal_is_caught() {
    let (text, p) = tamper(|c| {
        c.execute_batch("DELETE FROM audit_entries; DELETE FROM audit_checkpoints;")
            .unwrap();
    });
    expect(&p, 1, "truncated");
    assert!(text.contains("system.db recorded"), "{text}");
}

/// With the root key, an attacker cuts a tenant journal's last entries with their
/// checkpoints, lowers its anchor in system.db and deletes the witness: each journal is
/// consistent on its own, but the system journal still records the rotation the tenant
/// journal lost. Before, verify passed.
#[test]
fn a_cut_tenant_journal_is_caught_by_what_the_system_journal_records() {
    let env = Env::init();
    let id = env.create_tenant("Cut");
    env.create_tenant("Untouched");
    env.ok(&["keys", "rotate-tenant", &id]);
    env.ok(&["audit", "verify", "--all"]);
    let tid = TenantId::parse(&id).unwrap();
    {
        let app = env.app();
        let conn = raw_tenant_file(&app, &tid);
        let first: Vec<u8> = conn
            .query_row("SELECT hash FROM audit_entries WHERE seq = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        conn.execute_batch(
            "DELETE FROM audit_entries WHERE seq > 1; DELETE FROM audit_checkpoints WHERE seq > 1;
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        drop(conn);
        let t = tid.clone();
        app.system()
            .writer()
            .bookkeeping(move |tx| {
                store::system::set_anchor(tx.conn(), &t, 1, &first).map_err(|e| tx.err(&e))
            })
            .wait()
            .unwrap();
        app.close();
    }
    std::fs::remove_file(env.dir.join("witness.ndjson")).unwrap();
    // Each journal alone still verifies...
    let alone = env.run(&["audit", "verify", "--tenant", &id]);
    assert!(alone.status.success(), "{}", crate::support::stdout(&alone));
    // ...but the system journal says what this one lost.
    let out = env.run(&["audit", "verify", "--all"]);
    assert!(!out.status.success());
    let text = crate::support::stdout(&out);
    assert!(
        text.contains("cross-check: the system journal records keys.rotate_tenant"),
        "{text}"
    );
    assert_eq!(
        text.matches("FAIL").count(),
        1,
        "only the cut tenant: {text}"
    );
}
