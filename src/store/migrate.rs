//! Schema migrations, owned by the modules whose tables they create.
//!
//! Each module declares its own [`Module`]: a name and its steps, in order. The store lists,
//! per kind of file, which modules a file carries and in which order they are applied; a new
//! module adds its [`Module`] there and never edits another module's steps. Each applied step
//! is recorded in the file as (module, step) in `schema_steps`; `PRAGMA user_version` holds
//! [`PER_MODULE`] once a file records steps that way.
//!
//! - The journal's own steps run first, straight on the connection: the writer reads the
//!   chain head in every transaction, so the journal must exist before the writer runs.
//! - Every other step runs through the writer's bookkeeping call, one transaction per step;
//!   on a file that already held data, each records a `store.migrate` entry in the file's own
//!   journal. A brand-new file records none: its creation is on the record already
//!   (`system.init`, `tenant.create`).
//! - A file that records a module or a step this build does not know was written by a newer
//!   build and is refused, never misread.
//! - Files written before steps were recorded per module (`user_version` 1 to 6 for
//!   `system.db`, 1 or 2 for a tenant file) are converted once: their steps were the same,
//!   in the same order.

use super::{FileKind, StoreError};
use crate::audit::{Actor, NewEntry};
use rusqlite::{params, Connection, OptionalExtension};

/// One module's schema: its steps, in order, each applied once per file.
pub struct Module {
    pub name: &'static str,
    pub steps: &'static [&'static str],
}

/// `PRAGMA user_version` of a file whose steps are recorded per module. Older builds,
/// which know versions up to 6, refuse such a file as newer than themselves.
pub const PER_MODULE: i64 = 1_000_000;

const STEPS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_steps (
    module     TEXT NOT NULL,
    step       INTEGER NOT NULL,
    applied_us INTEGER NOT NULL,
    PRIMARY KEY (module, step)
) STRICT;";

/// The modules a file of `kind` carries, in the order they are applied.
pub fn modules(kind: FileKind) -> &'static [&'static Module] {
    match kind {
        FileKind::System => &[
            &crate::audit::journal::SCHEMA,
            &super::system::REGISTRY_SCHEMA,
            &super::system::OUTBOX_SCHEMA,
            &crate::identity::PLATFORM_SCHEMA,
        ],
        FileKind::Tenant => &[
            &crate::audit::journal::SCHEMA,
            &super::system::DELIVERED_SCHEMA,
            &crate::identity::TENANT_SCHEMA,
            &crate::policy::SCHEMA,
            &crate::knowledge::SCHEMA,
            &crate::ai::SCHEMA,
        ],
    }
}

/// What `user_version` 1, 2, ... meant before steps were recorded per module: frozen, so
/// that a module adding a step later does not change how an old file is read.
fn legacy_steps(kind: FileKind) -> &'static [(&'static str, usize)] {
    match kind {
        FileKind::System => &[
            ("audit", 1),
            ("registry", 1),
            ("registry", 2),
            ("registry", 3),
            ("registry", 4),
            ("outbox", 1),
        ],
        FileKind::Tenant => &[("audit", 1), ("outbox", 1)],
    }
}

/// Steps still to apply to a file, after [`prepare`].
pub struct Pending {
    /// (module, 1-based step) in application order.
    steps: Vec<(&'static Module, usize)>,
    /// The file was created by this open: its steps need no journal entry.
    fresh: bool,
}

fn recorded(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st = conn.prepare("SELECT module, max(step) FROM schema_steps GROUP BY module")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn record(conn: &Connection, module: &str, step: usize, now_us: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO schema_steps (module, step, applied_us) VALUES (?1, ?2, ?3)",
        params![module, step as i64, now_us],
    )
    .map(|_| ())
}

fn applied(conn: &Connection, module: &str, step: usize) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM schema_steps WHERE module = ?1 AND step = ?2",
        params![module, step as i64],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// Runs `f` inside its own `BEGIN IMMEDIATE` transaction: committed if it succeeds, rolled
/// back if not. The write lock orders processes opening the same file at once.
fn in_transaction<T>(
    conn: &Connection,
    err: impl Fn(rusqlite::Error) -> StoreError,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
    match f() {
        Ok(v) => {
            conn.execute_batch("COMMIT").map_err(&err)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Applies step `n` of `m` and records it, unless another process already did; returns
/// whether it applied it. Call inside a write transaction.
fn apply_step(conn: &Connection, m: &Module, n: usize, now_us: i64) -> rusqlite::Result<bool> {
    if applied(conn, m.name, n)? {
        return Ok(false);
    }
    conn.execute_batch(m.steps[n - 1])?;
    record(conn, m.name, n, now_us)?;
    Ok(true)
}

fn now_us() -> i64 {
    crate::clock::Clock::now_us(&crate::clock::SystemClock)
}

/// Reads (and, for an old file, converts) what the file records, refuses a file from a newer
/// build, and applies the journal's own steps. Returns the steps left for the writer.
///
/// # Errors
/// [`StoreError::TooNew`] or [`StoreError::TooNewModule`] for a file from a newer build;
/// storage errors otherwise.
pub fn prepare(
    conn: &Connection,
    kind: FileKind,
    label: &str,
    key_version: u32,
    created: bool,
) -> Result<Pending, StoreError> {
    let err = |e: rusqlite::Error| StoreError::from_sqlite(label, key_version, &e);
    let all = modules(kind);
    // Every step this build knows, in application order.
    let known: Vec<(&'static Module, usize)> = all
        .iter()
        .flat_map(|m| (1..=m.steps.len()).map(move |n| (*m, n)))
        .collect();
    let legacy = legacy_steps(kind);
    // Under the write lock: a CLI process and the server opening the same file at once
    // never both convert or apply a step.
    let (fresh, done) = in_transaction(conn, err, || {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        let fresh = version == 0;
        if fresh && !created {
            // An existing file with no schema is an emptied one: building a fresh store in
            // its place would lose what it held (for system.db, every tenant key).
            return Err(StoreError::Corrupt {
                what: label.to_string(),
                detail: "it holds no schema (it was emptied or replaced)".into(),
            });
        }
        match version {
            PER_MODULE => {}
            v if v >= 0 && v as usize <= legacy.len() => {
                conn.execute_batch(STEPS_TABLE).map_err(err)?;
                let now = now_us();
                for (m, n) in &legacy[..v as usize] {
                    record(conn, m, *n, now).map_err(err)?;
                }
                conn.execute_batch(&format!("PRAGMA user_version = {PER_MODULE}"))
                    .map_err(err)?;
            }
            v => {
                return Err(StoreError::TooNew {
                    what: label.to_string(),
                    found: v,
                    known: legacy.len() as i64,
                })
            }
        }
        let done = recorded(conn).map_err(err)?;
        for (module, step) in &done {
            let known = all
                .iter()
                .find(|m| m.name == module)
                .map_or(0, |m| m.steps.len() as i64);
            if *step > known {
                return Err(StoreError::TooNewModule {
                    what: label.to_string(),
                    module: module.clone(),
                    found: *step,
                    known,
                });
            }
        }
        Ok((fresh, done))
    })?;
    let have = |name: &str| done.iter().find(|(m, _)| m == name).map_or(0, |(_, s)| *s);
    let mut steps: Vec<(&'static Module, usize)> = known
        .into_iter()
        .filter(|(m, n)| *n as i64 > have(m.name))
        .collect();
    // The journal first, directly: the writer cannot run without it.
    let journal = crate::audit::journal::SCHEMA.name;
    for (m, n) in steps.iter().filter(|(m, _)| m.name == journal) {
        in_transaction(conn, err, || apply_step(conn, m, *n, now_us()).map_err(err))?;
    }
    steps.retain(|(m, _)| m.name != journal);
    Ok(Pending { steps, fresh })
}

/// Applies the remaining steps through the file's writer, one transaction each, recording a
/// `store.migrate` entry for each on a file that already held data.
///
/// # Errors
/// A step fails (nothing of it is applied).
pub fn finish(writer: &super::Writer, pending: Pending, label: &str) -> Result<(), StoreError> {
    for (m, n) in pending.steps {
        let (fresh, label) = (pending.fresh, label.to_string());
        writer
            .bookkeeping(move |tx| -> Result<(), StoreError> {
                let now = tx.now_us();
                if !apply_step(tx.conn(), m, n, now).map_err(|e| tx.err(&e))? {
                    return Ok(());
                }
                if !fresh {
                    tx.audit(
                        NewEntry::new(Actor::system(), "store.migrate", m.name).params(
                            serde_json::json!({ "module": m.name, "step": n, "file": label }),
                        ),
                    )?;
                }
                Ok(())
            })
            .wait()?;
    }
    Ok(())
}

/// Applies every step straight on the connection, without entries: for files that no writer
/// serves (a fresh file in a test, a copy being checked).
///
/// # Errors
/// As [`prepare`].
pub fn migrate(
    conn: &Connection,
    kind: FileKind,
    label: &str,
    key_version: u32,
) -> Result<(), StoreError> {
    let err = |e: rusqlite::Error| StoreError::from_sqlite(label, key_version, &e);
    let pending = prepare(conn, kind, label, key_version, true)?;
    for (m, n) in pending.steps {
        in_transaction(conn, err, || apply_step(conn, m, n, now_us()).map_err(err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_trusted_before_scoping_stay_with_the_tenant_journals_only() {
        let conn = Connection::open_in_memory().unwrap();
        // A file from before steps were recorded per module, at the old version 4.
        let old: Vec<&str> = modules(FileKind::System)
            .iter()
            .flat_map(|m| m.steps.iter().copied())
            .take(4)
            .collect();
        for step in old {
            conn.execute_batch(step).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 4;
             INSERT INTO tenants VALUES ('ta', 'A', NULL, 'active', 1, 0, 0, 0, NULL);
             INSERT INTO tenants VALUES ('tb', 'B', NULL, 'active', 1, 0, 0, 0, NULL);
             INSERT INTO signing_keys VALUES ('k1', x'01', 'backup.restore', 5);",
        )
        .unwrap();
        migrate(&conn, FileKind::System, "system.db", 1).unwrap();

        let rows: Vec<(String, String)> = conn
            .prepare("SELECT journal, key_id FROM journal_signing_keys ORDER BY journal")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [("ta".into(), "k1".into()), ("tb".into(), "k1".into())]
        );
        let old: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'signing_keys'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the unscoped table is gone");
        // Converted: every step recorded under its module, and the new marker.
        let steps: Vec<(String, i64)> = conn
            .prepare("SELECT module, step FROM schema_steps ORDER BY module, step")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            steps,
            [
                ("audit".into(), 1),
                // A module this old file never had: applied fresh, after the conversion.
                ("identity".into(), 1),
                ("identity".into(), 2),
                ("outbox".into(), 1),
                ("registry".into(), 1),
                ("registry".into(), 2),
                ("registry".into(), 3),
                ("registry".into(), 4)
            ]
        );
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, PER_MODULE);
    }
}
