//! Appending to a journal. Only a file's writer thread calls this, inside the transaction that
//! also carries the change being recorded, so an entry and its change commit or fail together.

use super::entry::{self, Fields, NewEntry};
use crate::clock::Clock;
use crate::keyring::Signer;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;

/// Everything a writer needs to keep one file's journal.
#[derive(Clone)]
pub struct JournalConfig {
    /// `system`, or the tenant id.
    pub journal_id: String,
    pub signer: Arc<Signer>,
    pub clock: Arc<dyn Clock>,
    /// Sign a checkpoint after this many entries...
    pub checkpoint_every: u64,
    /// ...or when the oldest unsigned entry is this old.
    pub checkpoint_interval: Duration,
    /// Told (seq, hash) after a checkpoint has committed, so the position can be recorded
    /// outside this file. Runs on the writer thread; must not block.
    pub on_checkpoint: Option<CheckpointHook>,
}

/// Called with (seq, hash) of each committed checkpoint.
pub type CheckpointHook = Arc<dyn Fn(u64, [u8; 32]) + Send + Sync>;

/// The end of the chain as seen inside the current write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    pub checkpoint_seq: u64,
    /// The hash the last checkpoint signed (the entry hash at `checkpoint_seq`).
    pub checkpoint_hash: [u8; 32],
}

/// Errors raised while appending, beyond storage faults.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("invalid audit action name {0:?}: use dotted lower-case words such as tenant.create")]
    BadAction(String),
    #[error(transparent)]
    Sql(#[from] SqlFault),
}

/// A SQLite failure inside the journal, kept as the raw error for the writer to classify.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SqlFault(pub String, pub Option<rusqlite::ErrorCode>);

impl From<rusqlite::Error> for SqlFault {
    fn from(e: rusqlite::Error) -> Self {
        let code = e.sqlite_error_code();
        Self(crate::store::safe_detail(&e), code)
    }
}

impl From<rusqlite::Error> for AppendError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e.into())
    }
}

/// Reads the chain head; called once per write transaction, after the write lock is held.
pub fn load_head(conn: &Connection) -> Result<Head, rusqlite::Error> {
    // Kept prepared: this runs in every write transaction.
    let last = conn
        .prepare_cached("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    let checkpoint = conn
        .prepare_cached("SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    let (checkpoint_seq, checkpoint_hash) = match checkpoint {
        Some((s, h)) => (s.max(0) as u64, to32(&h)),
        None => (0, [0u8; 32]),
    };
    let (seq, hash) = match last {
        Some((seq, h)) => (seq as u64, to32(&h)),
        None => (0, [0u8; 32]),
    };
    if checkpoint_seq > seq {
        // Entries that a signed checkpoint covers are gone: appending would build on a cut
        // chain. Refuse (fail closed) and let `audit verify` explain.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!(
                "the journal ends at entry {seq} but a checkpoint covers entry {checkpoint_seq}"
            )),
        ));
    }
    Ok(Head {
        seq,
        hash,
        checkpoint_seq,
        checkpoint_hash,
    })
}

fn to32(b: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    if b.len() == 32 {
        h.copy_from_slice(b);
    }
    h
}

/// Appends one entry after `head` and advances it; signs a checkpoint when one is due by count.
pub fn append(
    conn: &Connection,
    cfg: &JournalConfig,
    head: &mut Head,
    mut e: NewEntry,
    buf: &mut Vec<u8>,
) -> Result<u64, AppendError> {
    if !entry::valid_action(&e.action) {
        return Err(AppendError::BadAction(e.action));
    }
    entry::redact(&mut e.params);
    let params = e.params.to_string();
    let source_ip = e.source_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let seq = head.seq + 1;
    let time_us = cfg.clock.now_us();
    let fields = Fields {
        journal: &cfg.journal_id,
        seq,
        time_us,
        actor_kind: e.actor.kind.as_str(),
        actor_id: &e.actor.id,
        actor_role: &e.actor.role,
        source_ip: &source_ip,
        action: &e.action,
        target: &e.target,
        params: &params,
        outcome: e.outcome.as_str(),
        duration_us: e.duration_us,
        prev_hash: &head.hash,
    };
    let hash = fields.hash(buf);
    let mut st = conn.prepare_cached(
        "INSERT INTO audit_entries (seq, format, time_us, actor_kind, actor_id, actor_role, \
         source_ip, action, target, params, outcome, duration_us, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    st.execute(params![
        seq as i64,
        entry::FORMAT_V1,
        time_us,
        fields.actor_kind,
        fields.actor_id,
        fields.actor_role,
        fields.source_ip,
        fields.action,
        fields.target,
        fields.params,
        fields.outcome,
        e.duration_us as i64,
        &head.hash[..],
        &hash[..],
    ])?;
    head.seq = seq;
    head.hash = hash;
    if cfg.checkpoint_every > 0
        && head.seq.saturating_sub(head.checkpoint_seq) >= cfg.checkpoint_every
    {
        write_checkpoint(conn, cfg, head, time_us)?;
    }
    Ok(seq)
}

/// Signs (journal, seq, hash, time) at the head, if anything is unsigned.
pub fn write_checkpoint(
    conn: &Connection,
    cfg: &JournalConfig,
    head: &mut Head,
    time_us: i64,
) -> Result<bool, rusqlite::Error> {
    if head.seq == 0 || head.seq == head.checkpoint_seq {
        return Ok(false);
    }
    let msg = entry::checkpoint_message(&cfg.journal_id, head.seq, &head.hash, time_us);
    let sig = cfg.signer.sign(&msg);
    conn.prepare_cached(
        "INSERT INTO audit_checkpoints (seq, time_us, hash, key_id, signature) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        head.seq as i64,
        time_us,
        &head.hash[..],
        cfg.signer.signing_key_id(),
        sig
    ])?;
    head.checkpoint_seq = head.seq;
    head.checkpoint_hash = head.hash;
    Ok(true)
}

/// Time of the oldest entry not yet covered by a checkpoint, if any.
pub fn oldest_unsigned_us(conn: &Connection, head: &Head) -> Result<Option<i64>, rusqlite::Error> {
    if head.seq == head.checkpoint_seq {
        return Ok(None);
    }
    conn.prepare_cached("SELECT time_us FROM audit_entries WHERE seq = ?1")?
        .query_row([head.checkpoint_seq as i64 + 1], |r| r.get(0))
        .optional()
}

/// The journal's tables (and the file's `meta` table), in every file. Applied before the
/// writer starts, because the writer reads the chain head in every transaction.
pub const SCHEMA: crate::store::migrate::Module = crate::store::migrate::Module {
    name: "audit",
    steps: &["
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
"],
};
