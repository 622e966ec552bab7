//! The tenant registry in `system.db`: tenants, their status and their wrapped data keys.
//! Plain row access only; the lifecycle rules and audit entries live in [`crate::tenants`].

use crate::ids::TenantId;
use crate::keyring::WrappedDek;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub region: Option<String>,
    pub status: TenantStatus,
    pub key_version: u32,
    pub created_us: i64,
}

fn tenant_from_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    let id: String = r.get(0)?;
    let status: String = r.get(3)?;
    Ok(Tenant {
        id: TenantId::from_trusted(id),
        name: r.get(1)?,
        region: r.get(2)?,
        status: TenantStatus::parse(&status).unwrap_or(TenantStatus::Suspended),
        key_version: r.get(4)?,
        created_us: r.get(5)?,
    })
}

const COLUMNS: &str = "id, name, region, status, key_version, created_us";

pub fn get(conn: &Connection, id: &TenantId) -> rusqlite::Result<Option<Tenant>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1"),
        [id.as_str()],
        tenant_from_row,
    )
    .optional()
}

pub fn list(conn: &Connection, include_deleted: bool) -> rusqlite::Result<Vec<Tenant>> {
    let filter = if include_deleted {
        ""
    } else {
        "WHERE status != 'deleted'"
    };
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM tenants {filter} ORDER BY created_us, id"
    ))?;
    let rows = st.query_map([], tenant_from_row)?;
    rows.collect()
}

pub fn name_in_use(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM tenants WHERE name = ?1 AND status != 'deleted'",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

pub fn insert(
    conn: &Connection,
    t: &Tenant,
    root_key_id: &str,
    wrapped: &WrappedDek,
    now_us: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO tenants (id, name, region, status, key_version, created_us, updated_us) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            t.id.as_str(),
            t.name,
            t.region,
            t.status.as_str(),
            t.key_version,
            t.created_us
        ],
    )?;
    conn.execute(
        "INSERT INTO tenant_keys (tenant_id, version, root_key_id, wrapped_dek, created_us) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![t.id.as_str(), t.key_version, root_key_id, wrapped.0, now_us],
    )?;
    Ok(())
}

pub fn set_status(
    conn: &Connection,
    id: &TenantId,
    status: TenantStatus,
    now_us: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tenants SET status = ?2, updated_us = ?3 WHERE id = ?1",
        params![id.as_str(), status.as_str(), now_us],
    )
}

/// Destroys every wrapped DEK of the tenant. With `secure_delete` on, the bytes are
/// overwritten, not just unlinked from the b-tree.
pub fn shred_keys(conn: &Connection, id: &TenantId) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM tenant_keys WHERE tenant_id = ?1",
        [id.as_str()],
    )
}

pub fn wrapped_dek(
    conn: &Connection,
    id: &TenantId,
    version: u32,
    root_key_id: &str,
) -> rusqlite::Result<Option<WrappedDek>> {
    conn.query_row(
        "SELECT wrapped_dek FROM tenant_keys \
         WHERE tenant_id = ?1 AND version = ?2 AND root_key_id = ?3",
        params![id.as_str(), version, root_key_id],
        |r| r.get::<_, Vec<u8>>(0),
    )
    .optional()
    .map(|o| o.map(WrappedDek))
}

pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )
    .map(|_| ())
}

/// One wrapped DEK as stored: which tenant, which version, under which root key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub tenant_id: TenantId,
    pub version: u32,
    pub root_key_id: String,
    pub wrapped: WrappedDek,
    pub created_us: i64,
}

pub fn key_rows(conn: &Connection) -> rusqlite::Result<Vec<KeyRow>> {
    let mut st = conn.prepare(
        "SELECT tenant_id, version, root_key_id, wrapped_dek, created_us FROM tenant_keys \
         ORDER BY tenant_id, version, root_key_id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(KeyRow {
            tenant_id: TenantId::from_trusted(r.get(0)?),
            version: r.get(1)?,
            root_key_id: r.get(2)?,
            wrapped: WrappedDek(r.get(3)?),
            created_us: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub fn insert_key_row(conn: &Connection, row: &KeyRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO tenant_keys (tenant_id, version, root_key_id, wrapped_dek, created_us) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(tenant_id, version, root_key_id) DO UPDATE SET wrapped_dek = excluded.wrapped_dek",
        params![
            row.tenant_id.as_str(),
            row.version,
            row.root_key_id,
            row.wrapped.0,
            row.created_us
        ],
    )
    .map(|_| ())
}

/// Deletes every wrapping under a root key other than `keep`.
pub fn delete_other_wrappings(conn: &Connection, keep: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM tenant_keys WHERE root_key_id != ?1", [keep])
}

/// Moves a tenant's journal anchor forward (never back).
pub fn raise_anchor(
    conn: &Connection,
    id: &TenantId,
    seq: u64,
    hash: &[u8; 32],
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tenants SET journal_anchor_seq = ?2, journal_anchor_hash = ?3 \
         WHERE id = ?1 AND journal_anchor_seq < ?2",
        params![id.as_str(), seq as i64, &hash[..]],
    )
}

/// The recorded (seq, hash) a tenant's journal must still reach, if any.
pub fn anchor(conn: &Connection, id: &TenantId) -> rusqlite::Result<Option<(u64, Vec<u8>)>> {
    conn.query_row(
        "SELECT journal_anchor_seq, journal_anchor_hash FROM tenants WHERE id = ?1",
        [id.as_str()],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)),
    )
    .optional()
    .map(|o| o.and_then(|(s, h)| h.filter(|_| s > 0).map(|h| (s as u64, h))))
}

pub fn set_key_version(conn: &Connection, id: &TenantId, version: u32) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tenants SET key_version = ?2 WHERE id = ?1",
        params![id.as_str(), version],
    )
}

/// Destroys the tenant's wrapped DEKs older than `keep` (secure_delete overwrites them).
pub fn delete_key_versions_below(
    conn: &Connection,
    id: &TenantId,
    keep: u32,
) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM tenant_keys WHERE tenant_id = ?1 AND version < ?2",
        params![id.as_str(), keep],
    )
}

/// Sets a tenant's journal anchor to exactly (seq, hash): a restore may move it back.
pub fn set_anchor(
    conn: &Connection,
    id: &TenantId,
    seq: u64,
    hash: &[u8],
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tenants SET journal_anchor_seq = ?2, journal_anchor_hash = ?3 WHERE id = ?1",
        params![id.as_str(), seq as i64, hash],
    )
}

/// Makes a (possibly deleted) registry row live again under `name`, at `key_version`.
pub fn revive(
    conn: &Connection,
    id: &TenantId,
    name: &str,
    key_version: u32,
    now_us: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tenants SET status = 'active', name = ?2, key_version = ?3, updated_us = ?4 \
         WHERE id = ?1",
        params![id.as_str(), name, key_version, now_us],
    )
}

/// Checkpoint-signing public keys trusted for `journal` besides this installation's own.
pub fn signing_keys(conn: &Connection, journal: &str) -> rusqlite::Result<Vec<(String, Vec<u8>)>> {
    let mut st = conn.prepare(
        "SELECT key_id, public_key FROM journal_signing_keys WHERE journal = ?1 ORDER BY key_id",
    )?;
    let rows = st.query_map([journal], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Trusts `public_key` for checkpoints of `journal` only.
pub fn trust_signing_key(
    conn: &Connection,
    journal: &str,
    key_id: &str,
    public_key: &[u8],
    origin: &str,
    now_us: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO journal_signing_keys (journal, key_id, public_key, origin, added_us) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(journal, key_id) DO NOTHING",
        params![journal, key_id, public_key, origin, now_us],
    )
}

/// An entry owed to a tenant's own journal; see [`outbox_push`].
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    /// Random and unique: the delivered entry carries it, so a delivery is never repeated.
    pub op_id: String,
    pub actor: crate::audit::Actor,
    pub action: String,
    pub params: serde_json::Value,
    /// When the operation committed.
    pub created_us: i64,
}

/// Owes `tenant`'s journal an entry, in the same transaction as the change it records.
///
/// # Errors
/// Storage errors.
pub fn outbox_push(
    conn: &Connection,
    tenant: &TenantId,
    op_id: &str,
    actor: &crate::audit::Actor,
    action: &str,
    params: &serde_json::Value,
    now_us: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO tenant_outbox (tenant_id, op_id, actor_kind, actor_id, actor_role, action, \
         params, created_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            tenant.as_str(),
            op_id,
            actor.kind.as_str(),
            actor.id,
            actor.role,
            action,
            params.to_string(),
            now_us
        ],
    )
}

/// What `tenant`'s journal is owed, oldest first.
///
/// # Errors
/// Storage errors, or a row this build cannot read.
pub fn outbox_for(conn: &Connection, tenant: &TenantId) -> rusqlite::Result<Vec<OutboxEntry>> {
    let mut st = conn.prepare(
        "SELECT id, op_id, actor_kind, actor_id, actor_role, action, params, created_us \
         FROM tenant_outbox WHERE tenant_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([tenant.as_str()], |r| {
        let kind: String = r.get(2)?;
        let params: String = r.get(6)?;
        let bad = |i: usize, what: &str| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Text,
                format!("tenant_outbox: bad {what}").into(),
            )
        };
        Ok(OutboxEntry {
            id: r.get(0)?,
            op_id: r.get(1)?,
            actor: crate::audit::Actor {
                kind: crate::audit::ActorKind::parse(&kind).ok_or_else(|| bad(2, "actor"))?,
                id: r.get(3)?,
                role: r.get(4)?,
            },
            action: r.get(5)?,
            params: serde_json::from_str(&params).map_err(|_| bad(6, "params"))?,
            created_us: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Forgets what was delivered to `tenant`'s journal, up to and including `id`.
///
/// # Errors
/// Storage errors.
pub fn outbox_remove_through(
    conn: &Connection,
    tenant: &TenantId,
    id: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM tenant_outbox WHERE tenant_id = ?1 AND id <= ?2",
        params![tenant.as_str(), id],
    )
}

/// How many entries each tenant's journal is owed.
///
/// # Errors
/// Storage errors.
pub fn outbox_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st = conn.prepare(
        "SELECT tenant_id, count(*) FROM tenant_outbox GROUP BY tenant_id ORDER BY tenant_id",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The tenants whose journals are owed entries.
///
/// # Errors
/// Storage errors.
pub fn outbox_tenants(conn: &Connection) -> rusqlite::Result<Vec<TenantId>> {
    Ok(outbox_counts(conn)?
        .into_iter()
        .map(|(id, _)| TenantId::from_trusted(id))
        .collect())
}

/// The tenant registry's tables in `system.db`.
pub const REGISTRY_SCHEMA: super::migrate::Module = super::migrate::Module {
    name: "registry",
    steps: &[
        // Tenants and their wrapped data keys: one row per DEK version and root key it is
        // wrapped under (two while a root-key rotation is under way).
        "
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
",
        // Where each tenant's journal is known to reach (seq and hash of its latest recorded
        // checkpoint), kept outside the tenant file so that cutting the file's tail together with
        // its checkpoints is still caught.
        "
ALTER TABLE tenants ADD COLUMN journal_anchor_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN journal_anchor_hash BLOB;
",
        // Checkpoint keys of other installations whose tenant journals were restored here: their
        // checkpoints stay verifiable after the move.
        "
CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    origin     TEXT NOT NULL,
    added_us   INTEGER NOT NULL
) STRICT;
",
        // Trust in another installation's checkpoint key is scoped to the journal it was trusted
        // for: restoring one tenant from elsewhere must not let that installation's key vouch for
        // any other journal here. Keys trusted before the scoping stay trusted for the tenant
        // journals that existed then, and for no other journal.
        "
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
",
    ],
};

/// Entries a tenant's own journal is owed by an operation committed in `system.db` (a key
/// rotation, a restore) that could not write to the tenant file in the same transaction.
/// Delivered when the tenant next opens; ids are never reused.
pub const OUTBOX_SCHEMA: super::migrate::Module = super::migrate::Module {
    name: "outbox",
    steps: &["
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
"],
};

/// Operations whose entry this tenant journal has taken from `system.db`'s outbox, written in
/// the same transaction as the entry, so a delivery is never repeated.
pub const DELIVERED_SCHEMA: super::migrate::Module = super::migrate::Module {
    name: "outbox",
    steps: &["
CREATE TABLE delivered_ops (
    op_id        TEXT PRIMARY KEY,
    delivered_us INTEGER NOT NULL
) STRICT;
"],
};
