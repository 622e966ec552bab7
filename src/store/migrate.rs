//! Embedded schema migrations, applied at open inside one transaction per step.
//! `PRAGMA user_version` holds the number of steps applied; a file with more steps than this
//! build knows was written by a newer build and is refused rather than misread.

use super::{FileKind, StoreError};
use rusqlite::Connection;

const JOURNAL_V1: &str = "
CREATE TABLE audit_entries (
    seq         INTEGER PRIMARY KEY,
    format      INTEGER NOT NULL,
    time_us     INTEGER NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    source_ip   TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    params      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    duration_us INTEGER NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
) STRICT;
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    time_us   INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL
) STRICT;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
";

const SYSTEM_V1: &str = "
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    region      TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    key_version INTEGER NOT NULL,
    created_us  INTEGER NOT NULL,
    updated_us  INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX tenants_live_name ON tenants(name) WHERE status != 'deleted';
-- One row per DEK version and root key it is wrapped under. Normally one root key; two
-- while a root-key rotation is under way, so a crash leaves a wrapping that works.
CREATE TABLE tenant_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     INTEGER NOT NULL,
    root_key_id TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    created_us  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version, root_key_id)
) STRICT;
";

/// Where each tenant's journal is known to reach (seq and hash of its latest recorded
/// checkpoint), kept outside the tenant file so that cutting the file's tail together with
/// its checkpoints is still caught.
const SYSTEM_V2_ANCHORS: &str = "
ALTER TABLE tenants ADD COLUMN journal_anchor_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN journal_anchor_hash BLOB;
";

/// Checkpoint keys of other installations whose tenant journals were restored here: their
/// checkpoints stay verifiable after the move.
const SYSTEM_V3_SIGNING_KEYS: &str = "
CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    origin     TEXT NOT NULL,
    added_us   INTEGER NOT NULL
) STRICT;
";

/// Trust in another installation's checkpoint key is scoped to the journal it was trusted
/// for: restoring one tenant from elsewhere must not let that installation's key vouch for
/// any other journal here. Keys trusted before the scoping stay trusted for the tenant
/// journals that existed then, and for no other journal.
const SYSTEM_V4_SCOPED_SIGNING_KEYS: &str = "
CREATE TABLE journal_signing_keys (
    journal    TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    public_key BLOB NOT NULL,
    origin     TEXT NOT NULL,
    added_us   INTEGER NOT NULL,
    PRIMARY KEY (journal, key_id)
) STRICT;
INSERT INTO journal_signing_keys (journal, key_id, public_key, origin, added_us)
    SELECT t.id, s.key_id, s.public_key, s.origin, s.added_us
    FROM signing_keys s CROSS JOIN tenants t;
DROP TABLE signing_keys;
";

/// Entries a tenant's own journal is owed by an operation committed in `system.db` (a key
/// rotation, a restore) that could not write to the tenant file in the same transaction.
/// Delivered when the tenant next opens; ids are never reused.
const SYSTEM_V5_TENANT_OUTBOX: &str = "
CREATE TABLE tenant_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    op_id       TEXT NOT NULL UNIQUE,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    params      TEXT NOT NULL,
    created_us  INTEGER NOT NULL
) STRICT;
CREATE INDEX tenant_outbox_tenant ON tenant_outbox(tenant_id, id);
";

/// Operations whose entry this tenant journal has taken from `system.db`'s outbox, written in
/// the same transaction as the entry, so a delivery is never repeated.
const TENANT_V2_DELIVERED_OPS: &str = "
CREATE TABLE delivered_ops (
    op_id        TEXT PRIMARY KEY,
    delivered_us INTEGER NOT NULL
) STRICT;
";

fn steps(kind: FileKind) -> &'static [&'static str] {
    match kind {
        FileKind::System => &[
            JOURNAL_V1,
            SYSTEM_V1,
            SYSTEM_V2_ANCHORS,
            SYSTEM_V3_SIGNING_KEYS,
            SYSTEM_V4_SCOPED_SIGNING_KEYS,
            SYSTEM_V5_TENANT_OUTBOX,
        ],
        FileKind::Tenant => &[JOURNAL_V1, TENANT_V2_DELIVERED_OPS],
    }
}

/// Highest schema version this build knows for `kind`.
pub fn latest(kind: FileKind) -> i64 {
    steps(kind).len() as i64
}

/// Brings the file up to date.
///
/// # Errors
/// [`StoreError::TooNew`] for a file from a newer build; storage errors otherwise.
pub fn migrate(
    conn: &Connection,
    kind: FileKind,
    label: &str,
    key_version: u32,
) -> Result<(), StoreError> {
    let err = |e: rusqlite::Error| StoreError::from_sqlite(label, key_version, &e);
    let all = steps(kind);
    // Each step reads the version inside its own write transaction, so a CLI process and the
    // server opening the same file at once never apply a step twice.
    loop {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let step = (|| {
            let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if current >= all.len() as i64 {
                return Ok(Some(current));
            }
            let version = current + 1;
            conn.execute_batch(all[current as usize])?;
            conn.execute_batch(&format!("PRAGMA user_version = {version}"))?;
            Ok(None)
        })();
        match step {
            Ok(Some(current)) => {
                let _ = conn.execute_batch("ROLLBACK");
                if current > all.len() as i64 {
                    return Err(StoreError::TooNew {
                        what: label.to_string(),
                        found: current,
                        known: all.len() as i64,
                    });
                }
                return Ok(());
            }
            Ok(None) => conn.execute_batch("COMMIT").map_err(err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_trusted_before_scoping_stay_with_the_tenant_journals_only() {
        let conn = Connection::open_in_memory().unwrap();
        for step in &steps(FileKind::System)[..4] {
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
        assert_eq!(latest(FileKind::System), 6);
    }
}
