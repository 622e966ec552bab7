//! Journal tests on a real SQLCipher file, including the two-thread verify of long chains.

use super::journal::{self, JournalConfig};
use super::verify::{verify_chain, verify_chain_parallel, ProblemKind, TrustedKey};
use super::{Actor, NewEntry};
use crate::clock::ManualClock;
use crate::keyring::{Key32, Signer};
use crate::store::{self, FileKind, OpenSpec};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const N: u64 = 60_000;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    key: Key32,
    keyring: Arc<Signer>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            path: dir.path().join("j.db"),
            _dir: dir,
            key: Key32::random().unwrap(),
            keyring: Arc::new(Signer::from_system_dek(&Key32::from_bytes([9; 32])).unwrap()),
        }
    }

    /// The journal's configuration: a checkpoint every 1000 entries, on a manual clock.
    fn journal(&self) -> JournalConfig {
        JournalConfig {
            journal_id: "j".into(),
            signer: self.keyring.clone(),
            clock: Arc::new(ManualClock::new(1_700_000_000_000_000)),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            on_checkpoint: None,
        }
    }

    fn spec<'a>(&'a self, path: &'a Path) -> OpenSpec<'a> {
        OpenSpec {
            path,
            label: "tenant j",
            key: &self.key,
            key_version: 1,
            kind: FileKind::Tenant,
            create: true,
            busy_timeout: Duration::from_secs(5),
            plaintext: false,
        }
    }

    fn conn(&self) -> Connection {
        store::open_connection(&self.spec(&self.path), false).unwrap()
    }

    fn keys(&self) -> Vec<TrustedKey> {
        vec![TrustedKey {
            id: self.keyring.signing_key_id(),
            public_key: self.keyring.signing_public_key(),
        }]
    }

    fn verify(&self) -> super::verify::ChainReport {
        let r = verify_chain_parallel(&self.conn(), "j", &self.keys(), self.conn()).unwrap();
        let single = verify_chain(&self.conn(), "j", &self.keys()).unwrap();
        assert_eq!(r.problem, single.problem, "one and two threads must agree");
        assert_eq!(r.head_seq, single.head_seq);
        r
    }
}

/// A journal of `N` entries with a checkpoint every 1000, written in one transaction.
fn fixture() -> Fixture {
    let f = Fixture::new();
    let conn = store::open_connection(&f.spec(&f.path), false).unwrap();
    store::migrate::migrate(&conn, FileKind::Tenant, "tenant j", 1).unwrap();
    let cfg = f.journal();
    conn.execute_batch("BEGIN").unwrap();
    let mut head = journal::load_head(&conn).unwrap();
    let mut buf = Vec::new();
    for i in 0..N {
        let e = NewEntry::new(Actor::system(), "record.update", &format!("r{i}"))
            .params(serde_json::json!({ "i": i }));
        journal::append(&conn, &cfg, &mut head, e, &mut buf).unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    f
}

#[test]
fn long_chains_verify_on_two_threads_and_tampering_is_found_in_either_half() {
    let f = fixture();
    let clean = f.verify();
    assert_eq!(clean.problem, None);
    assert_eq!(
        (clean.entries, clean.head_seq, clean.checkpoints),
        (N, N, N / 1000)
    );

    let c = f.conn();
    // Second half.
    c.execute(
        "UPDATE audit_entries SET target = 'x' WHERE seq = 45000",
        [],
    )
    .unwrap();
    let r = f.verify();
    let p = r.problem.unwrap();
    assert_eq!((p.seq, p.kind), (45000, ProblemKind::Changed));
    // First half wins over second half.
    c.execute("UPDATE audit_entries SET target = 'x' WHERE seq = 7", [])
        .unwrap();
    assert_eq!(f.verify().problem.unwrap().seq, 7);
}

#[test]
fn the_join_between_halves_is_checked() {
    let f = fixture();
    let c = f.conn();
    // Entry 30001 is the first of the second half: forge its link and make its own hash
    // consistent again, so only the join can tell.
    let mut e: super::Entry = c
        .query_row(
            &format!(
                "SELECT {} FROM audit_entries WHERE seq = 30001",
                super::entry::ENTRY_COLUMNS
            ),
            [],
            super::Entry::from_row,
        )
        .unwrap();
    e.prev_hash = vec![7u8; 32];
    let h = e.fields("j").hash(&mut Vec::new());
    c.execute(
        "UPDATE audit_entries SET prev_hash = ?1, hash = ?2 WHERE seq = 30001",
        rusqlite::params![e.prev_hash, &h[..]],
    )
    .unwrap();
    let p = f.verify().problem.unwrap();
    assert_eq!(
        (p.seq, p.kind),
        (30001, ProblemKind::Changed),
        "{}",
        p.detail
    );
}

#[test]
fn gaps_at_the_join_and_at_the_end_are_found() {
    let f = fixture();
    let c = f.conn();
    c.execute("DELETE FROM audit_entries WHERE seq = 30001", [])
        .unwrap();
    let p = f.verify().problem.unwrap();
    assert_eq!((p.seq, p.kind), (30001, ProblemKind::Missing));

    let f = fixture();
    let c = f.conn();
    c.execute("DELETE FROM audit_entries WHERE seq > 59500", [])
        .unwrap();
    let p = f.verify().problem.unwrap();
    assert_eq!(
        (p.seq, p.kind),
        (59501, ProblemKind::Truncated),
        "{}",
        p.detail
    );
}

/// A spreadsheet must read every exported cell as text: formula starts get a `'`, and every
/// cell is quoted, so a list separator inside one (`;` in many locales) cannot start another.
#[test]
fn csv_export_cells_never_become_formulas() {
    let f = Fixture::new();
    let conn = f.conn();
    store::migrate::migrate(&conn, FileKind::Tenant, "tenant j", 1).unwrap();
    let cfg = f.journal();
    let targets = ["=1+1", "x;=cmd|' /C calc'!A0", "@SUM(A1)"];
    let mut head = journal::load_head(&conn).unwrap();
    let mut buf = Vec::new();
    for t in targets {
        journal::append(
            &conn,
            &cfg,
            &mut head,
            NewEntry::new(Actor::system(), "record.update", t),
            &mut buf,
        )
        .unwrap();
    }
    let mut out = Vec::new();
    let n =
        super::export::export(&conn, "j", super::export::ExportFormat::Csv, 1, &mut out).unwrap();
    assert_eq!(n, 3);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""'=1+1""#), "{text}");
    assert!(text.contains(r#""x;=cmd|' /C calc'!A0""#), "{text}");
    assert!(text.contains(r#""'@SUM(A1)""#), "{text}");
    for line in text.lines() {
        // Cells start right after a separator; each one opens with a quote.
        assert!(line.starts_with('"') && !line.contains(",="), "{line}");
    }
}
