//! Walking a journal: every entry's hash, every link, every checkpoint signature.
//!
//! The first problem found is reported with its sequence number and kind:
//! - `changed`: an entry's content no longer matches its hash, or a checkpoint's hash differs
//!   from the entry it signs;
//! - `missing`: a gap in the sequence numbers;
//! - `reordered`: an entry links to an entry other than its predecessor;
//! - `truncated`: a signed checkpoint covers entries that are no longer there;
//! - `bad_signature`: a checkpoint signature does not verify under any known key.
//!
//! The hash chain alone cannot stop someone who can rewrite the whole file from rebuilding a
//! consistent chain; the Ed25519 checkpoints, whose key never touches the file, can.

use super::entry::{self, Fields};
use rusqlite::Connection;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Changed,
    Missing,
    Reordered,
    Truncated,
    BadSignature,
    Unreadable,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Missing => "missing",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
            Self::BadSignature => "bad_signature",
            Self::Unreadable => "unreadable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub seq: u64,
    pub kind: ProblemKind,
    pub detail: String,
}

/// What a walk of one journal found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainReport {
    pub entries: u64,
    pub head_seq: u64,
    pub checkpoints: u64,
    pub last_checkpoint_seq: u64,
    /// Entries after the last checkpoint: appended but not yet signed.
    pub unsigned_tail: u64,
    pub problem: Option<Problem>,
}

struct Checkpoint {
    time_us: i64,
    hash: Vec<u8>,
    key_id: String,
    signature: Vec<u8>,
}

/// A public key that may have signed checkpoints, with its id.
pub struct TrustedKey {
    pub id: String,
    pub public_key: Vec<u8>,
}

/// Walks the journal in `conn` (one read transaction, so a live writer does not disturb it).
///
/// # Errors
/// The file cannot be read at all; problems in the chain are in the report, not errors.
pub fn verify_chain(
    conn: &Connection,
    journal_id: &str,
    keys: &[TrustedKey],
) -> Result<ChainReport, rusqlite::Error> {
    conn.execute_batch("BEGIN")?;
    let r = walk(conn, journal_id, keys);
    let _ = conn.execute_batch("COMMIT");
    r
}

fn walk(
    conn: &Connection,
    journal_id: &str,
    keys: &[TrustedKey],
) -> Result<ChainReport, rusqlite::Error> {
    let mut report = ChainReport::default();
    let mut checkpoints = BTreeMap::new();
    {
        let mut st =
            conn.prepare("SELECT seq, time_us, hash, key_id, signature FROM audit_checkpoints")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            checkpoints.insert(
                r.get::<_, i64>(0)? as u64,
                Checkpoint {
                    time_us: r.get(1)?,
                    hash: r.get(2)?,
                    key_id: r.get(3)?,
                    signature: r.get(4)?,
                },
            );
        }
    }
    report.checkpoints = checkpoints.len() as u64;
    report.last_checkpoint_seq = checkpoints.keys().next_back().copied().unwrap_or(0);

    let mut st = conn.prepare(
        "SELECT seq, format, time_us, actor_kind, actor_id, actor_role, source_ip, action, \
         target, params, outcome, duration_us, prev_hash, hash FROM audit_entries ORDER BY seq",
    )?;
    let mut rows = st.query([])?;
    let mut expected = 1u64;
    let mut prev = [0u8; 32];
    let mut buf = Vec::with_capacity(512);
    let problem = |seq, kind, detail: String| Some(Problem { seq, kind, detail });
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        if seq != expected {
            report.problem = problem(
                expected,
                ProblemKind::Missing,
                if seq == expected + 1 {
                    format!("entry {expected} is missing")
                } else {
                    format!("entries {expected} to {} are missing", seq - 1)
                },
            );
            return Ok(report);
        }
        let format: i64 = r.get(1)?;
        let stored_prev = r.get_ref(12)?.as_blob()?;
        let stored_hash = r.get_ref(13)?.as_blob()?;
        let fields = Fields {
            journal: journal_id,
            seq,
            time_us: r.get(2)?,
            actor_kind: r.get_ref(3)?.as_str()?,
            actor_id: r.get_ref(4)?.as_str()?,
            actor_role: r.get_ref(5)?.as_str()?,
            source_ip: r.get_ref(6)?.as_str()?,
            action: r.get_ref(7)?.as_str()?,
            target: r.get_ref(8)?.as_str()?,
            params: r.get_ref(9)?.as_str()?,
            outcome: r.get_ref(10)?.as_str()?,
            duration_us: r.get::<_, i64>(11)? as u64,
            prev_hash: stored_prev,
        };
        if stored_prev != prev {
            let (stored_prev, stored_hash) = (stored_prev.to_vec(), stored_hash.to_vec());
            drop(rows);
            report.problem = Some(classify_broken_link(conn, seq, &stored_prev, &stored_hash)?);
            return Ok(report);
        }
        if format != entry::FORMAT_V1 {
            report.problem = problem(
                seq,
                ProblemKind::Changed,
                format!("entry {seq} has unknown format {format}"),
            );
            return Ok(report);
        }
        let hash = fields.hash(&mut buf);
        if stored_hash != hash {
            report.problem = problem(
                seq,
                ProblemKind::Changed,
                format!("entry {seq} does not match its hash: its content was changed"),
            );
            return Ok(report);
        }
        if let Some(cp) = checkpoints.get(&seq) {
            if let Some(p) = check_checkpoint(journal_id, seq, cp, &hash, keys) {
                report.problem = Some(p);
                return Ok(report);
            }
        }
        prev = hash;
        report.entries += 1;
        expected += 1;
    }
    report.head_seq = expected - 1;
    if let Some((&seq, cp)) = checkpoints.range(expected..).next() {
        // A signed checkpoint past the end: entries were cut off. Only trust it if its
        // signature holds; a forged one is reported as such.
        let msg = entry::checkpoint_message(journal_id, seq, &cp.hash, cp.time_us);
        report.problem = if signature_ok(keys, &cp.key_id, &msg, &cp.signature) {
            problem(
                report.head_seq + 1,
                ProblemKind::Truncated,
                format!(
                    "the journal ends at entry {}, but a signed checkpoint covers entries up to {seq}",
                    report.head_seq
                ),
            )
        } else {
            problem(
                seq,
                ProblemKind::BadSignature,
                format!("checkpoint at entry {seq} has an invalid signature"),
            )
        };
        return Ok(report);
    }
    report.unsigned_tail = report.head_seq - report.last_checkpoint_seq.min(report.head_seq);
    Ok(report)
}

fn signature_ok(keys: &[TrustedKey], key_id: &str, msg: &[u8], sig: &[u8]) -> bool {
    keys.iter()
        .filter(|k| k.id == key_id)
        .any(|k| crate::keyring::verify_signature(&k.public_key, msg, sig))
}

fn check_checkpoint(
    journal_id: &str,
    seq: u64,
    cp: &Checkpoint,
    hash: &[u8; 32],
    keys: &[TrustedKey],
) -> Option<Problem> {
    let msg = entry::checkpoint_message(journal_id, seq, &cp.hash, cp.time_us);
    if !keys.iter().any(|k| k.id == cp.key_id) {
        return Some(Problem {
            seq,
            kind: ProblemKind::BadSignature,
            detail: format!(
                "checkpoint at entry {seq} names signing key {} which this installation does not know",
                cp.key_id
            ),
        });
    }
    if !signature_ok(keys, &cp.key_id, &msg, &cp.signature) {
        return Some(Problem {
            seq,
            kind: ProblemKind::BadSignature,
            detail: format!("checkpoint at entry {seq} has an invalid signature"),
        });
    }
    if cp.hash.as_slice() != hash {
        return Some(Problem {
            seq,
            kind: ProblemKind::Changed,
            detail: format!(
                "checkpoint at entry {seq} signs a different hash: the chain up to {seq} was rewritten"
            ),
        });
    }
    None
}

/// An entry whose `prev_hash` does not match its predecessor: if it links to some other
/// entry, entries were reordered; otherwise the entry (or its link) was changed.
fn classify_broken_link(
    conn: &Connection,
    seq: u64,
    stored_prev: &[u8],
    stored_hash: &[u8],
) -> Result<Problem, rusqlite::Error> {
    use rusqlite::OptionalExtension;
    let follows: Option<i64> = conn
        .query_row(
            "SELECT seq FROM audit_entries WHERE hash = ?1 AND seq != ?2 LIMIT 1",
            rusqlite::params![stored_prev, seq as i64 - 1],
            |r| r.get(0),
        )
        .optional()?;
    let belongs_at: Option<i64> = conn
        .query_row(
            "SELECT seq FROM audit_entries WHERE prev_hash = ?1 AND seq != ?2 LIMIT 1",
            rusqlite::params![stored_hash, seq as i64 + 1],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match (follows, belongs_at) {
        (Some(other), _) => Problem {
            seq,
            kind: ProblemKind::Reordered,
            detail: format!(
                "entry at position {seq} links to entry {other}, not {}: entries were reordered",
                seq - 1
            ),
        },
        (None, Some(other)) => Problem {
            seq,
            kind: ProblemKind::Reordered,
            detail: format!("entry at position {seq} is followed elsewhere by entry {other}: entries were reordered"),
        },
        (None, None) => Problem {
            seq,
            kind: ProblemKind::Changed,
            detail: format!("entry {seq} does not link to entry {}: the chain was changed", seq - 1),
        },
    })
}
