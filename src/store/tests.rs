//! Store tests on real SQLCipher files.

use super::writer::Mode;
use super::*;
use crate::audit::verify::{verify_chain, TrustedKey};
use crate::audit::{Actor, JournalConfig, NewEntry};
use crate::clock::SystemClock;
use crate::keyring::Signer;
use std::sync::Arc;

fn keyring() -> Arc<Signer> {
    Arc::new(Signer::from_system_dek(&Key32::from_bytes([5; 32])).unwrap())
}

fn journal(kr: &Arc<Signer>, every: u64) -> JournalConfig {
    JournalConfig {
        journal_id: "t".into(),
        signer: kr.clone(),
        clock: Arc::new(SystemClock),
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
        on_checkpoint: None,
    }
}

fn spec<'a>(path: &'a Path, key: &'a Key32, create: bool) -> OpenSpec<'a> {
    OpenSpec {
        path,
        label: "tenant t",
        key,
        key_version: 3,
        kind: FileKind::Tenant,
        create,
        busy_timeout: Duration::from_secs(5),
        plaintext: false,
    }
}

fn trusted(kr: &Signer) -> Vec<TrustedKey> {
    vec![TrustedKey {
        id: kr.signing_key_id(),
        public_key: kr.signing_public_key(),
    }]
}

fn append(store: &Store, n: u64) -> Result<u64, StoreError> {
    store
        .writer()
        .enqueue(Mode::Audited, move |tx| {
            tx.audit(NewEntry::new(
                Actor::system(),
                "test.append",
                &n.to_string(),
            ))
        })
        .wait()
}

#[test]
fn concurrent_appends_are_all_acknowledged_in_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Arc::new(Store::open(&spec(&path, &key, true), journal(&kr, 100)).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| append(&store, t * 1000 + i).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=800).collect::<Vec<_>>());
    let store = Arc::try_unwrap(store).ok().unwrap();
    store.close().unwrap();
    let conn = open_connection(&spec(&path, &key, false), false).unwrap();
    let report = verify_chain(&conn, "t", &trusted(&kr)).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.head_seq, 800);
    assert_eq!(report.last_checkpoint_seq, 800, "close signs the tail");
    assert!(report.checkpoints >= 8);
}

#[test]
fn the_writer_folds_the_log_into_the_file_after_large_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 1000)).unwrap();
    let big = 5 << 20;
    for i in 0..3 {
        store
            .writer()
            .enqueue(Mode::Audited, move |tx| -> Result<u64, StoreError> {
                let value = "x".repeat(big);
                crate::store::system::meta_set(tx.conn(), &format!("big{i}"), &value)
                    .map_err(|e| tx.err(&e))?;
                tx.audit(NewEntry::new(Actor::system(), "test.change", "big"))
            })
            .wait()
            .unwrap();
    }
    // The writer folds after answering; the next job runs after that fold.
    append(&store, 1).unwrap();
    let file = std::fs::metadata(&path).unwrap().len();
    let wal = std::fs::metadata(dir.path().join("t.db-wal"))
        .unwrap()
        .len();
    // Each value reached the main file, and the log was reused rather than grown by each.
    assert!(file >= 3 * big as u64, "main file {file} bytes");
    assert!(wal < 2 * big as u64, "log {wal} bytes");
    let kept = store
        .read(|c| crate::store::system::meta_get(c, "big2").map_err(|e| store.err(&e)))
        .unwrap();
    assert_eq!(kept.map(|v| v.len()), Some(big));
    store.close().unwrap();
}

#[test]
fn a_failing_job_rolls_back_its_change_and_its_entry_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 1000)).unwrap();
    append(&store, 1).unwrap();
    let failed = store
        .writer()
        .enqueue(Mode::Audited, |tx| -> Result<(), StoreError> {
            crate::store::system::meta_set(tx.conn(), "k", "v").map_err(|e| tx.err(&e))?;
            tx.audit(NewEntry::new(Actor::system(), "test.change", "k"))?;
            Err(StoreError::Busy {
                what: "simulated".into(),
            })
        })
        .wait();
    assert!(failed.is_err());
    // Fail closed: the entry cannot be written, so the change made before it is undone too.
    let bad_action = store
        .writer()
        .enqueue(Mode::Audited, |tx| -> Result<u64, StoreError> {
            crate::store::system::meta_set(tx.conn(), "k2", "v").map_err(|e| tx.err(&e))?;
            tx.audit(NewEntry::new(Actor::system(), "Not Valid", "x"))
        })
        .wait();
    assert!(bad_action.is_err());
    let k2 = store
        .read(|c| crate::store::system::meta_get(c, "k2").map_err(|e| store.err(&e)))
        .unwrap();
    assert_eq!(k2, None, "no journal entry, no change");
    assert_eq!(
        append(&store, 2).unwrap(),
        2,
        "failed jobs consumed no sequence number"
    );
    let meta = store
        .read(|c| crate::store::system::meta_get(c, "k").map_err(|e| store.err(&e)))
        .unwrap();
    assert_eq!(meta, None, "the change of the failed job was rolled back");
    store.close().unwrap();
}

#[test]
fn disk_full_fails_the_write_and_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 1_000_000)).unwrap();
    append(&store, 0).unwrap();
    // A page budget is SQLite's own SQLITE_FULL path, the same one a full disk takes.
    store
        .writer()
        .enqueue(Mode::Bookkeeping, |tx| {
            tx.conn()
                .query_row("PRAGMA max_page_count = 12", [], |_| Ok(()))
                .map_err(|e| tx.err(&e))
        })
        .wait()
        .unwrap();
    let big = "x".repeat(3000);
    let mut acked = 1;
    let err = loop {
        let b = big.clone();
        match store
            .writer()
            .enqueue(Mode::Audited, move |tx| {
                tx.audit(
                    NewEntry::new(Actor::system(), "test.fill", "x")
                        .params(serde_json::json!({ "blob": b })),
                )
            })
            .wait()
        {
            Ok(seq) => acked = seq,
            Err(e) => break e,
        }
        assert!(acked < 100, "the page budget never ran out");
    };
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
    drop(store);
    let conn = open_connection(&spec(&path, &key, false), false).unwrap();
    let report = verify_chain(&conn, "t", &trusted(&kr)).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(
        report.head_seq, acked,
        "every acknowledged entry and nothing else"
    );
}

#[test]
fn wrong_key_and_foreign_files_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    Store::open(&spec(&path, &key, true), journal(&keyring(), 10))
        .unwrap()
        .close()
        .unwrap();
    let wrong = Key32::random().unwrap();
    let err = open_connection(&spec(&path, &wrong, false), false).unwrap_err();
    assert!(
        matches!(err, StoreError::Decrypt { version: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot decrypt tenant t with key version 3: wrong key, or not a Strongroom file of this installation"
    );
    let foreign = dir.path().join("foreign.db");
    let mut bytes = b"SQLite format 3\0 but not really".repeat(200);
    bytes.resize(8192, 7);
    std::fs::write(&foreign, &bytes).unwrap();
    let err = open_connection(&spec(&foreign, &key, false), false).unwrap_err();
    assert!(matches!(err, StoreError::Decrypt { .. }), "{err:?}");
    // Not a whole number of pages: cut short, whatever it is, and named so.
    std::fs::write(&foreign, &bytes[..6200]).unwrap();
    let err = open_connection(&spec(&foreign, &key, false), false).unwrap_err();
    assert!(
        matches!(err, StoreError::Truncated { size: 6200, .. }),
        "{err:?}"
    );
    std::fs::write(&foreign, b"").unwrap();
    let err = open_connection(&spec(&foreign, &key, false), false).unwrap_err();
    assert!(matches!(err, StoreError::Emptied { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&foreign).unwrap().len(), 0, "not grown");
    let err =
        open_connection(&spec(&dir.path().join("absent.db"), &key, false), false).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");

    // Cut at a 4 KiB boundary inside a 16 KiB page: whole in the smallest page size, short
    // of the file's own. Refused at open, by the writer's open and the evidence open alike.
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size % 16384, 0, "{size}");
    assert!(size >= 2 * 16384, "{size}");
    open_connection(&spec(&path, &key, false), false).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(size - 4096).unwrap();
    let want = size - 4096;
    let err = open_connection(&spec(&path, &key, false), false).unwrap_err();
    assert!(
        matches!(err, StoreError::Truncated { size, .. } if size == want),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not a whole number of pages"),
        "{err}"
    );
    let err = open_evidence(&spec(&path, &key, false)).unwrap_err();
    assert!(matches!(err, StoreError::Truncated { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), want, "not grown");
}

#[test]
fn a_file_ending_inside_a_page_its_log_holds_is_opened() {
    // As a crash in the middle of a checkpoint leaves it: the main file ends 8 KiB into a
    // page that the write-ahead log still holds.
    let dir = tempfile::tempdir().unwrap();
    let (path, copy) = (dir.path().join("t.db"), dir.path().join("copy.db"));
    let key = Key32::random().unwrap();
    let wal = |p: &std::path::Path| {
        let mut s = p.as_os_str().to_os_string();
        s.push("-wal");
        std::path::PathBuf::from(s)
    };
    let conn = open_connection(&spec(&path, &key, true), false).unwrap();
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE cargo (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size % 16384, 0, "{size}");
    conn.execute(
        "INSERT INTO cargo (body) VALUES (zeroblob(200000)), (randomblob(50000))",
        [],
    )
    .unwrap();
    let kept: Vec<u8> = conn
        .query_row("SELECT body FROM cargo WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(wal(&path), wal(&copy)).unwrap();
    drop(conn);
    let mut main = std::fs::read(&copy).unwrap();
    assert_eq!(main.len() as u64, size, "the new pages are in the log only");
    main.extend_from_slice(&[0u8; 8192]);
    std::fs::write(&copy, &main).unwrap();

    let conn = open_connection(&spec(&copy, &key, false), false).unwrap();
    let body: Vec<u8> = conn
        .query_row("SELECT body FROM cargo WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body, kept);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    // The same cut with no log to complete it (closing folded the log in and removed it)
    // is truncated.
    std::fs::write(&copy, &main).unwrap();
    assert!(!wal(&copy).exists());
    let err = open_connection(&spec(&copy, &key, false), false).unwrap_err();
    assert!(matches!(err, StoreError::Truncated { .. }), "{err:?}");
}

#[test]
fn a_file_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let conn = open_connection(&spec(&path, &key, true), false).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = Store::open(&spec(&path, &key, false), journal(&keyring(), 10))
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn flipped_bytes_are_reported_with_their_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 10)).unwrap();
    for i in 0..300 {
        append(&store, i).unwrap();
    }
    store.close().unwrap();
    let clean = std::fs::read(&path).unwrap();
    assert!(integrity_problems(&spec(&path, &key, false)).is_empty());
    // A new tenant file has 16 KiB pages (the current cipher profile).
    let size = 16384;
    let pages = clean.len() / size;
    assert!(pages >= 5, "{pages}");
    for page in [1usize, 2, pages / 2, pages] {
        let mut bent = clean.clone();
        let offset = (page - 1) * size + 100;
        bent[offset] ^= 0x40;
        std::fs::write(&path, &bent).unwrap();
        let problems = integrity_problems(&spec(&path, &key, false));
        assert!(!problems.is_empty(), "page {page}: flip not detected");
        let joined = problems.join("\n");
        assert!(joined.contains("tenant t"), "{joined}");
        let names_page = joined
            .match_indices(&format!("page {page}"))
            .any(|(i, m)| !joined[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
        assert!(names_page, "page {page}: {joined}");
    }
    std::fs::write(&path, &clean).unwrap();
    let conn = open_connection(&spec(&path, &key, false), false).unwrap();
    assert_eq!(
        verify_chain(&conn, "t", &trusted(&kr)).unwrap().problem,
        None
    );
}

#[test]
fn unsigned_entries_get_a_checkpoint_after_the_interval_without_closing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let mut cfg = journal(&kr, 1000);
    cfg.checkpoint_interval = Duration::from_millis(100);
    let store = Store::open(&spec(&path, &key, true), cfg).unwrap();
    for i in 0..3 {
        append(&store, i).unwrap();
    }
    let signed = || {
        store
            .read(|c| {
                c.query_row(
                    "SELECT coalesce(max(seq), 0) FROM audit_checkpoints",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| store.err(&e))
            })
            .unwrap()
    };
    // Poll, bounded: the writer wakes by itself once the oldest unsigned entry is due.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while signed() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no time-based checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(signed(), 3);
    store.close().unwrap();
}

/// Appends `n` entries straight through the journal, with no checkpoint (as a process that
/// crashed before signing would leave them).
fn append_unsigned(path: &Path, key: &Key32, kr: &Arc<Signer>, n: u64) {
    let conn = open_connection(&spec(path, key, true), false).unwrap();
    migrate::migrate(&conn, FileKind::Tenant, "tenant t", 3).unwrap();
    let cfg = journal(kr, 1_000_000);
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut head = crate::audit::journal::load_head(&conn).unwrap();
    for i in 0..n {
        let e = NewEntry::new(Actor::system(), "test.append", &i.to_string());
        crate::audit::journal::append(&conn, &cfg, &mut head, e, &mut Vec::new()).unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn signed_up_to(path: &Path, key: &Key32) -> i64 {
    open_connection(&spec(path, key, false), false)
        .unwrap()
        .query_row(
            "SELECT coalesce(max(seq), 0) FROM audit_checkpoints",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_process_that_only_reads_does_not_sign_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    append_unsigned(&path, &key, &kr, 5);
    let store = Store::open(&spec(&path, &key, false), journal(&kr, 1000)).unwrap();
    store.close().unwrap();
    assert_eq!(
        signed_up_to(&path, &key),
        0,
        "closing without writing signed the tail"
    );
    let store = Store::open(&spec(&path, &key, false), journal(&kr, 1000)).unwrap();
    append(&store, 9).unwrap();
    store.close().unwrap();
    assert_eq!(
        signed_up_to(&path, &key),
        6,
        "a writer signs the whole tail on close"
    );
}

#[test]
fn a_long_running_writer_signs_a_tail_left_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    append_unsigned(&path, &key, &kr, 4);
    let mut cfg = journal(&kr, 1000);
    cfg.checkpoint_interval = Duration::from_millis(100);
    let store = Store::open(&spec(&path, &key, false), cfg).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while signed_up_to(&path, &key) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog was never signed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    store.close().unwrap();
}

#[test]
fn appending_after_a_cut_tail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 5)).unwrap();
    for i in 0..10 {
        append(&store, i).unwrap();
    }
    store
        .writer()
        .enqueue(Mode::Bookkeeping, |tx| {
            tx.conn()
                .execute("DELETE FROM audit_entries WHERE seq > 7", [])
                .map_err(|e| tx.err(&e))
        })
        .wait()
        .unwrap();
    let err = append(&store, 99).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("checkpoint covers entry 10"),
        "{err}"
    );
    drop(store);
}

#[test]
fn snapshots_are_consistent_encrypted_copies_under_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 10)).unwrap();
    for i in 0..50 {
        append(&store, i).unwrap();
    }
    let copy = dir.path().join("copy.db");
    super::snapshot::snapshot(&spec(&path, &key, false), &copy).unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    assert!(
        !bytes.starts_with(b"SQLite format 3"),
        "the copy is not encrypted"
    );
    assert!(open_connection(&spec(&copy, &Key32::random().unwrap(), false), true).is_err());
    let conn = open_connection(&spec(&copy, &key, false), true).unwrap();
    let r = verify_chain(&conn, "t", &trusted(&kr)).unwrap();
    assert_eq!((r.problem, r.head_seq), (None, 50));
    assert!(
        super::snapshot::snapshot(&spec(&path, &key, false), &copy).is_err(),
        "never overwrites"
    );
    store.close().unwrap();
}

fn meta(store: &Store, key: &str) -> Option<String> {
    store
        .read(|c| crate::store::system::meta_get(c, key).map_err(|e| store.err(&e)))
        .unwrap()
}

fn set_meta_unaudited(store: &Store, key: &'static str) -> Pending<(), StoreError> {
    store.writer().enqueue(Mode::Audited, move |tx| {
        crate::store::system::meta_set(tx.conn(), key, "v").map_err(|e| tx.err(&e))
    })
}

#[test]
fn a_change_without_an_entry_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let store = Store::open(&spec(&path, &key, true), journal(&keyring(), 1000)).unwrap();
    append(&store, 1).unwrap();
    let err = set_meta_unaudited(&store, "sneaky").wait().unwrap_err();
    assert!(matches!(err, StoreError::Unaudited { .. }), "{err:?}");
    assert_eq!(err.code(), "STO-0010");
    assert_eq!(meta(&store, "sneaky"), None, "the change was rolled back");
    // A change that may find nothing to do must not change rows when it says so.
    let err = store
        .writer()
        .change_or_nothing(|tx| -> Result<((), Option<NewEntry>), StoreError> {
            crate::store::system::meta_set(tx.conn(), "quiet", "v").map_err(|e| tx.err(&e))?;
            Ok(((), None))
        })
        .wait()
        .unwrap_err();
    assert!(matches!(err, StoreError::Unaudited { .. }), "{err:?}");
    assert_eq!(meta(&store, "quiet"), None);
    // The same write with its entry goes through, and so does upkeep named as such.
    store
        .writer()
        .change(|tx| -> Result<_, StoreError> {
            crate::store::system::meta_set(tx.conn(), "open", "v").map_err(|e| tx.err(&e))?;
            Ok(((), NewEntry::new(Actor::system(), "test.change", "open")))
        })
        .wait()
        .unwrap();
    store
        .writer()
        .bookkeeping(|tx| -> Result<_, StoreError> {
            crate::store::system::meta_set(tx.conn(), "upkeep", "v").map_err(|e| tx.err(&e))
        })
        .wait()
        .unwrap();
    assert_eq!(meta(&store, "open").as_deref(), Some("v"));
    assert_eq!(meta(&store, "upkeep").as_deref(), Some("v"));
    assert_eq!(append(&store, 3).unwrap(), 3, "refused jobs took no seq");
    store.close().unwrap();
}

/// Holds the writer busy until `release` is dropped or sent, so later jobs queue up and are
/// drained into one transaction together.
fn hold_writer(store: &Store) -> (Pending<(), StoreError>, std::sync::mpsc::Sender<()>) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let held = store
        .writer()
        .bookkeeping(move |_tx| -> Result<(), StoreError> {
            let _ = started_tx.send(());
            let _ = wait.recv_timeout(Duration::from_secs(30));
            Ok(())
        });
    started.recv_timeout(Duration::from_secs(30)).unwrap();
    (held, release)
}

#[test]
fn jobs_in_one_batch_share_a_transaction_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let store = Arc::new(Store::open(&spec(&path, &key, true), journal(&keyring(), 1000)).unwrap());
    let (held, release) = hold_writer(&store);
    let change = |k: &'static str| {
        move |tx: &mut WriteTx<'_>| -> Result<((), NewEntry), StoreError> {
            crate::store::system::meta_set(tx.conn(), k, "v").map_err(|e| tx.err(&e))?;
            Ok(((), NewEntry::new(Actor::system(), "test.change", k)))
        }
    };
    let a = store.writer().change(change("a"));
    let failing = store
        .writer()
        .change(|tx| -> Result<((), NewEntry), StoreError> {
            crate::store::system::meta_set(tx.conn(), "b", "v").map_err(|e| tx.err(&e))?;
            tx.audit(NewEntry::new(Actor::system(), "test.change", "b-extra"))?;
            Err(StoreError::Busy {
                what: "simulated".into(),
            })
        });
    let panicking = store
        .writer()
        .change(|_tx| -> Result<((), NewEntry), StoreError> { panic!("job bug") });
    let unaudited = set_meta_unaudited(&store, "d");
    // Runs after `a` in the same transaction: another connection cannot see `a` yet.
    let reader = store.clone();
    let same_tx = store.writer().change(move |tx| -> Result<_, StoreError> {
        let own = crate::store::system::meta_get(tx.conn(), "a").map_err(|e| tx.err(&e))?;
        let other =
            crate::store::system::meta_get(&open_connection(&reader.spec(false), true)?, "a")
                .map_err(|e| tx.err(&e))?;
        crate::store::system::meta_set(tx.conn(), "e", "v").map_err(|e| tx.err(&e))?;
        Ok((
            (own, other),
            NewEntry::new(Actor::system(), "test.change", "e"),
        ))
    });
    release.send(()).unwrap();
    held.wait().unwrap();
    a.wait().unwrap();
    assert!(matches!(failing.wait(), Err(StoreError::Busy { .. })));
    let err = panicking.wait().unwrap_err();
    assert!(matches!(err, StoreError::JobPanicked { .. }), "{err:?}");
    assert!(matches!(
        unaudited.wait(),
        Err(StoreError::Unaudited { .. })
    ));
    let (own, other) = same_tx.wait().unwrap();
    assert_eq!(
        own.as_deref(),
        Some("v"),
        "the job sees the batch's earlier change"
    );
    assert_eq!(
        other, None,
        "...which is not committed yet: one shared transaction"
    );
    for (k, kept) in [("a", true), ("b", false), ("d", false), ("e", true)] {
        assert_eq!(meta(&store, k).is_some(), kept, "{k}");
    }
    // Only the two good jobs' entries are in the chain, and it verifies.
    assert_eq!(append(&store, 9).unwrap(), 3);
    let store = Arc::try_unwrap(store).ok().unwrap();
    store.close().unwrap();
    let conn = open_connection(&spec(&path, &key, false), true).unwrap();
    let report = verify_chain(&conn, "t", &trusted(&keyring())).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.head_seq, 3);
}

#[test]
fn reads_are_bounded_and_a_queue_that_waits_too_long_is_told_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let mut s = spec(&path, &key, true);
    s.busy_timeout = Duration::from_millis(300);
    let store = Arc::new(Store::open(&s, journal(&keyring(), 1000)).unwrap());
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let started = Arc::new(std::sync::Barrier::new(MAX_READERS + 1));
    let holders: Vec<_> = (0..MAX_READERS)
        .map(|_| {
            let (store, started, release_rx) = (store.clone(), started.clone(), release_rx.clone());
            std::thread::spawn(move || {
                store
                    .read(|_c| -> Result<(), StoreError> {
                        started.wait();
                        let _ = release_rx.lock().unwrap().recv();
                        Ok(())
                    })
                    .unwrap();
            })
        })
        .collect();
    started.wait();
    let err = store
        .read(|_c| -> Result<(), StoreError> { Ok(()) })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ReadersBusy { waited_ms: 300, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "STO-0012");
    for _ in 0..MAX_READERS {
        release_tx.send(()).unwrap();
    }
    for h in holders {
        h.join().unwrap();
    }
    // Every permit came back.
    let seen = store
        .read(|c| -> Result<i64, StoreError> {
            c.query_row("SELECT count(*) FROM audit_entries", [], |r| r.get(0))
                .map_err(|e| store.err(&e))
        })
        .unwrap();
    assert_eq!(seen, 0);
    // A panicking read gives its permit back as well.
    for _ in 0..MAX_READERS + 1 {
        let s2 = store.clone();
        let r = std::thread::spawn(move || {
            s2.read(|_c| -> Result<(), StoreError> { panic!("read bug") })
        })
        .join();
        assert!(r.is_err());
    }
    store
        .read(|_c| -> Result<(), StoreError> { Ok(()) })
        .unwrap();
}

/// A reader keeps a large cache of decrypted pages, bounded for the whole process by the
/// budget that `store.page_cache_mib` sets; it stays a reader.
#[test]
fn readers_cache_pages_within_the_process_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let store = Store::open(&spec(&path, &key, true), journal(&keyring(), 1000)).unwrap();
    let (cache, limit, write) = store
        .read(|c| -> Result<(i64, i64, bool), StoreError> {
            let get = |sql| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            let e = |e: rusqlite::Error| store.err(&e);
            Ok((
                get("PRAGMA cache_size").map_err(e)?,
                get("PRAGMA soft_heap_limit").map_err(e)?,
                c.execute_batch("CREATE TABLE x (a)").is_ok(),
            ))
        })
        .unwrap();
    assert_eq!(cache, -READER_CACHE_KIB);
    assert_eq!(
        u64::try_from(limit).unwrap(),
        PAGE_CACHE_BUDGET.load(Ordering::Relaxed)
    );
    assert!(limit >= 1 << 20, "{limit}");
    assert!(!write);
}

fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read(|c| {
            c.query_row(sql, [], |r| r.get(0))
                .map_err(|e| store.err(&e))
        })
        .unwrap()
}

/// A step a module adds after a file was written is applied at the next open, through the
/// writer, with a `store.migrate` entry in that file's journal; a brand-new file gets its
/// steps without entries.
#[test]
fn a_later_step_is_applied_at_open_and_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let kr = keyring();
    let store = Store::open(&spec(&path, &key, true), journal(&kr, 1000)).unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM audit_entries"),
        0,
        "fresh: no entry"
    );
    append(&store, 1).unwrap();
    // As if the file came from a build before the outbox module's step existed.
    store
        .writer()
        .enqueue(Mode::Bookkeeping, |tx| {
            tx.conn()
                .execute_batch(
                    "DROP TABLE delivered_ops; DELETE FROM schema_steps WHERE module = 'outbox'",
                )
                .map_err(|e| tx.err(&e))
        })
        .wait()
        .unwrap();
    store.close().unwrap();
    let store = Store::open(&spec(&path, &key, false), journal(&kr, 1000)).unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM delivered_ops"),
        0,
        "table is back"
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM audit_entries WHERE action = 'store.migrate' AND target = 'outbox'"),
        1
    );
    // Opening again applies nothing more.
    store.close().unwrap();
    let store = Store::open(&spec(&path, &key, false), journal(&kr, 1000)).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM audit_entries"), 2);
    store.close().unwrap();
    let conn = open_connection(&spec(&path, &key, false), true).unwrap();
    assert_eq!(
        verify_chain(&conn, "t", &trusted(&kr)).unwrap().problem,
        None
    );
}

/// A file that records a step or a module this build does not know is refused, unchanged.
#[test]
fn a_file_with_a_newer_module_step_is_refused() {
    for (module, step) in [("outbox", 9), ("from-a-later-build", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let key = Key32::random().unwrap();
        Store::open(&spec(&path, &key, true), journal(&keyring(), 10))
            .unwrap()
            .close()
            .unwrap();
        let conn = open_connection(&spec(&path, &key, false), false).unwrap();
        conn.execute(
            "INSERT INTO schema_steps VALUES (?1, ?2, 0)",
            rusqlite::params![module, step],
        )
        .unwrap();
        drop(conn);
        let err = Store::open(&spec(&path, &key, false), journal(&keyring(), 10))
            .err()
            .unwrap();
        assert!(
            matches!(&err, StoreError::TooNewModule { module: m, found, .. } if m == module && *found == step),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("upgrade the strongroom binary"),
            "{err}"
        );
        assert_eq!(err.code(), "STO-0016");
    }
}

/// A tenant file from before steps were recorded per module (user_version 2) converts
/// without applying anything twice and without an entry.
#[test]
fn an_old_file_is_converted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let conn = open_connection(&spec(&path, &key, true), false).unwrap();
    // What user_version 2 meant: the journal's and the outbox's first steps.
    for m in migrate::modules(FileKind::Tenant) {
        if matches!(m.name, "audit" | "outbox") {
            conn.execute_batch(m.steps[0]).unwrap();
        }
    }
    conn.execute_batch("PRAGMA user_version = 2").unwrap();
    drop(conn);
    let store = Store::open(&spec(&path, &key, false), journal(&keyring(), 10)).unwrap();
    // The two old steps recorded, the newer modules' steps applied once on top.
    let newer: i64 = migrate::modules(FileKind::Tenant)
        .iter()
        .filter(|m| !matches!(m.name, "audit" | "outbox"))
        .map(|m| m.steps.len() as i64)
        .sum();
    assert_eq!(
        count(&store, "SELECT count(*) FROM schema_steps"),
        2 + newer
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM schema_steps WHERE module = 'identity'"
        ),
        crate::identity::TENANT_SCHEMA.steps.len() as i64
    );
    // Each step applied to a file that already existed is on the record.
    assert_eq!(count(&store, "SELECT count(*) FROM audit_entries"), newer);
    assert_eq!(count(&store, "PRAGMA user_version"), migrate::PER_MODULE);
    store.close().unwrap();
}

/// A job cannot end, nest or widen the group transaction, nor (when audited) change the
/// schema: a COMMIT inside a job would commit its change without its entry, and its batch
/// mates with it.
#[test]
fn a_job_cannot_take_over_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let key = Key32::random().unwrap();
    let store = Store::open(&spec(&path, &key, true), journal(&keyring(), 1000)).unwrap();
    append(&store, 1).unwrap();
    let attach = format!(
        "ATTACH DATABASE '{}' AS other",
        dir.path().join("o.db").display()
    );
    for (mode, sql) in [
        (
            Mode::Audited,
            "INSERT INTO meta VALUES ('sneaky', 'v'); COMMIT".to_string(),
        ),
        (
            Mode::Audited,
            "COMMIT; INSERT INTO meta VALUES ('sneaky', 'v')".to_string(),
        ),
        (
            Mode::Audited,
            "SAVEPOINT mine; INSERT INTO meta VALUES ('sneaky', 'v'); RELEASE mine".to_string(),
        ),
        (Mode::Audited, "ROLLBACK".to_string()),
        (
            Mode::Bookkeeping,
            "INSERT INTO meta VALUES ('sneaky', 'v'); COMMIT".to_string(),
        ),
        (Mode::Audited, attach.clone()),
        (Mode::Bookkeeping, attach),
        (Mode::Audited, "CREATE TABLE sneaky (x)".to_string()),
        (Mode::Audited, "DROP TABLE meta".to_string()),
        (Mode::Audited, "PRAGMA user_version = 7".to_string()),
    ] {
        let held = sql.clone();
        let r = store
            .writer()
            .enqueue(mode, move |tx| -> Result<(), StoreError> {
                tx.conn().execute_batch(&held).map_err(|e| tx.err(&e))?;
                tx.audit(NewEntry::new(Actor::system(), "test.change", "x"))?;
                Err(StoreError::Busy {
                    what: "the job fails after its statements".into(),
                })
            })
            .wait();
        let err = r.unwrap_err();
        assert!(
            matches!(err, StoreError::NotAllowed { .. }),
            "{sql}: {err:?}"
        );
        assert_eq!(err.code(), "STO-0017");
        assert_eq!(meta(&store, "sneaky"), None, "{sql}");
    }
    // The writer's own statements, as a job would take them from the connection's cache:
    // refused all the same.
    for sql in ["COMMIT", "BEGIN IMMEDIATE", "SAVEPOINT job", "RELEASE job"] {
        let r = store
            .writer()
            .enqueue(Mode::Audited, move |tx| -> Result<(), StoreError> {
                tx.conn()
                    .execute("INSERT INTO meta VALUES ('sneaky', 'v')", [])
                    .map_err(|e| tx.err(&e))?;
                let mut st = tx.conn().prepare_cached(sql).map_err(|e| tx.err(&e))?;
                st.execute([]).map_err(|e| tx.err(&e))?;
                drop(st);
                tx.audit(NewEntry::new(Actor::system(), "test.change", "x"))?;
                Ok(())
            })
            .wait();
        let err = r.unwrap_err();
        assert!(
            matches!(err, StoreError::NotAllowed { .. }),
            "{sql}: {err:?}"
        );
        assert_eq!(meta(&store, "sneaky"), None, "{sql}");
    }
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM sqlite_master WHERE name = 'sneaky'"
        ),
        0
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM sqlite_master WHERE name = 'meta'"
        ),
        1
    );
    assert!(!dir.path().join("o.db").exists());
    // The writer carries on, and its chain is whole.
    assert_eq!(append(&store, 2).unwrap(), 2);
    // Schema steps (bookkeeping) may still change the schema.
    store
        .writer()
        .bookkeeping(|tx| -> Result<(), StoreError> {
            tx.conn()
                .execute_batch("CREATE TABLE allowed (x)")
                .map_err(|e| tx.err(&e))
        })
        .wait()
        .unwrap();
    store.close().unwrap();
}

/// A tenant file as builds before the current cipher profile made it: SQLCipher 4's defaults
/// (4 KiB pages, HMAC-SHA512), with one table of rows.
fn legacy_file(path: &Path, key: &Key32, rows: i64) {
    let conn = Connection::open(path).unwrap();
    set_key(&conn, key).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER, pad TEXT); \
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    for n in 0..rows {
        conn.execute("INSERT INTO t VALUES (?1, hex(randomblob(200)))", [n])
            .unwrap();
    }
    assert_eq!(Cipher::of(&conn).unwrap(), Cipher::Legacy);
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn new_tenant_files_use_the_current_profile_and_older_files_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key32::random().unwrap();

    let fresh = dir.path().join("fresh.db");
    let conn = open_connection(&spec(&fresh, &key, true), false).unwrap();
    assert_eq!(Cipher::of(&conn).unwrap(), Cipher::Current);
    let hmac: String = conn
        .query_row("PRAGMA cipher_hmac_algorithm", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hmac, "HMAC_SHA256");
    conn.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    // Opened again, it is read in the profile it was made in, read-write and as evidence.
    let conn = open_connection(&spec(&fresh, &key, false), false).unwrap();
    assert_eq!(
        (Cipher::of(&conn).unwrap(), rows(&conn)),
        (Cipher::Current, 1)
    );
    drop(conn);
    let evidence = open_evidence(&spec(&fresh, &key, false)).unwrap();
    assert_eq!(Cipher::of(&evidence).unwrap(), Cipher::Current);

    let old = dir.path().join("old.db");
    legacy_file(&old, &key, 300);
    for read_only in [false, true] {
        let conn = open_connection(&spec(&old, &key, false), read_only).unwrap();
        assert_eq!(
            (Cipher::of(&conn).unwrap(), rows(&conn)),
            (Cipher::Legacy, 300)
        );
    }
    assert_eq!(rows(&open_evidence(&spec(&old, &key, false)).unwrap()), 300);
    assert!(integrity_problems(&spec(&old, &key, false)).is_empty());
    // A wrong key fails under every profile, and is named as before.
    let wrong = Key32::random().unwrap();
    let e = open_connection(&spec(&old, &wrong, false), false).unwrap_err();
    assert!(matches!(e, StoreError::Decrypt { version: 3, .. }), "{e:?}");

    // A backup copy keeps the source's profile; a key rotation writes the current one.
    let copy = dir.path().join("copy.db");
    super::snapshot::snapshot(&spec(&old, &key, false), &copy).unwrap();
    let conn = open_connection(&spec(&copy, &key, false), true).unwrap();
    assert_eq!(
        (Cipher::of(&conn).unwrap(), rows(&conn)),
        (Cipher::Legacy, 300)
    );
    let rekeyed = dir.path().join("rekeyed.db");
    let new_key = Key32::random().unwrap();
    super::snapshot::reencrypt(&spec(&old, &key, false), &rekeyed, &new_key).unwrap();
    let conn = open_connection(&spec(&rekeyed, &new_key, false), true).unwrap();
    assert_eq!(
        (Cipher::of(&conn).unwrap(), rows(&conn)),
        (Cipher::Current, 300)
    );

    // A flipped byte in an older file is still found and named by its page.
    let clean = std::fs::read(&old).unwrap();
    let mut bent = clean.clone();
    bent[2 * 4096 + 100] ^= 0x40;
    std::fs::write(&old, &bent).unwrap();
    let joined = integrity_problems(&spec(&old, &key, false)).join("\n");
    assert!(joined.contains("page 3"), "{joined}");
    // With page 1 itself damaged, the profile under which the other pages verify is used.
    let mut bent = clean;
    bent[100] ^= 0x40;
    std::fs::write(&old, &bent).unwrap();
    let problems = integrity_problems(&spec(&old, &key, false));
    assert!(problems.join("\n").contains("page 1"), "{problems:?}");
    assert!(problems.len() <= 2, "{problems:?}");
}
