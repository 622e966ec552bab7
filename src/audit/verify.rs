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
//! consistent chain. The Ed25519 checkpoints can, for anyone who lacks the signing key: it is
//! derived from the system DEK, so a tenant's own key (or a copy of a tenant file with its
//! key) is not enough to forge them. Holding the root key is holding everything; against
//! that, export the checkpoints (`audit checkpoints`) and keep them elsewhere. Cutting a
//! tenant journal's tail together with its checkpoints is caught by the position `system.db`
//! records for each tenant journal ([`check_anchor`]).

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
#[derive(Clone)]
pub struct TrustedKey {
    pub id: String,
    pub public_key: Vec<u8>,
}

/// Below this many entries a second thread costs more than it saves.
const PARALLEL_THRESHOLD: u64 = 50_000;

/// Walks the journal in `conn` in one read transaction, so a live writer does not disturb it.
///
/// # Errors
/// The file cannot be read at all; problems in the chain are in the report, not errors.
pub fn verify_chain(
    conn: &Connection,
    journal_id: &str,
    keys: &[TrustedKey],
) -> Result<ChainReport, rusqlite::Error> {
    verify_chain_with(conn, journal_id, keys, None)
}

/// As [`verify_chain`], but a long journal is split in two halves walked on two threads, the
/// second on `second`, a separate connection to the same file. The halves are joined by checking that the second
/// half's first link points at the first half's last hash.
///
/// # Errors
/// As [`verify_chain`].
pub fn verify_chain_parallel(
    conn: &Connection,
    journal_id: &str,
    keys: &[TrustedKey],
    second: Connection,
) -> Result<ChainReport, rusqlite::Error> {
    verify_chain_with(conn, journal_id, keys, Some(second))
}

fn verify_chain_with(
    conn: &Connection,
    journal_id: &str,
    keys: &[TrustedKey],
    second: Option<Connection>,
) -> Result<ChainReport, rusqlite::Error> {
    // The plan (last entry, checkpoints) comes from one snapshot. Entries up to that last one
    // are never legitimately removed, so later snapshots of the workers see all of them; a
    // checkpoint in this snapshot past the last entry means the tail was cut.
    conn.execute_batch("BEGIN")?;
    let plan = (|| {
        let last: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM audit_entries", [], |r| {
                r.get(0)
            })?;
        let below: i64 = conn.query_row(
            "SELECT count(*) FROM audit_entries WHERE seq < 1",
            [],
            |r| r.get(0),
        )?;
        Ok::<_, rusqlite::Error>((last.max(0) as u64, below, load_checkpoints(conn)?))
    })();
    let (last, below, checkpoints) = match plan {
        Ok(p) => p,
        Err(e) => {
            let _ = conn.execute_batch("COMMIT");
            return Err(e);
        }
    };
    if below > 0 {
        let _ = conn.execute_batch("COMMIT");
        return Ok(ChainReport {
            problem: problem(
                0,
                ProblemKind::Changed,
                format!("{below} entries carry sequence numbers below 1: the journal was changed"),
            ),
            ..Default::default()
        });
    }
    let ctx = Walk {
        journal_id,
        keys,
        checkpoints: &checkpoints,
    };
    let result = match second {
        Some(c2) if last >= PARALLEL_THRESHOLD => {
            let mid = last / 2;
            let ctx = &ctx;
            std::thread::scope(|scope| {
                let second = scope.spawn(move || -> Result<Range, rusqlite::Error> {
                    c2.execute_batch("BEGIN")?;
                    let r = ctx.range(&c2, mid + 1, last, None);
                    let _ = c2.execute_batch("COMMIT");
                    r
                });
                let first = ctx.range(conn, 1, mid, Some([0u8; 32]));
                let second = second
                    .join()
                    .unwrap_or_else(|_| Err(rusqlite::Error::InvalidQuery));
                Ok::<_, rusqlite::Error>((first?, Some(second?)))
            })
        }
        _ => ctx.range(conn, 1, last, Some([0u8; 32])).map(|r| (r, None)),
    };
    let report = result.and_then(|(first, second)| ctx.finish(conn, last, first, second));
    let _ = conn.execute_batch("COMMIT");
    report
}

fn load_checkpoints(conn: &Connection) -> Result<BTreeMap<u64, Checkpoint>, rusqlite::Error> {
    let mut checkpoints = BTreeMap::new();
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
    Ok(checkpoints)
}

struct Walk<'a> {
    journal_id: &'a str,
    keys: &'a [TrustedKey],
    checkpoints: &'a BTreeMap<u64, Checkpoint>,
}

/// What one walked range of sequence numbers yielded.
struct Range {
    /// `prev_hash` of the range's first entry, to be joined with the previous range.
    first_prev: Option<[u8; 32]>,
    last_hash: [u8; 32],
    entries: u64,
    problem: Option<Problem>,
}

fn problem(seq: u64, kind: ProblemKind, detail: String) -> Option<Problem> {
    Some(Problem { seq, kind, detail })
}

fn hash32(b: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    if b.len() == 32 {
        h.copy_from_slice(b);
    }
    h
}

impl Walk<'_> {
    /// Walks entries `from..=to`. With `known_prev`, the first entry must link to it; without,
    /// its link is returned for the caller to join.
    fn range(
        &self,
        conn: &Connection,
        from: u64,
        to: u64,
        known_prev: Option<[u8; 32]>,
    ) -> Result<Range, rusqlite::Error> {
        let mut out = Range {
            first_prev: None,
            last_hash: known_prev.unwrap_or([0u8; 32]),
            entries: 0,
            problem: None,
        };
        let mut st = conn.prepare(
            "SELECT seq, format, time_us, actor_kind, actor_id, actor_role, source_ip, action, \
             target, params, outcome, duration_us, prev_hash, hash FROM audit_entries \
             WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let mut rows = st.query([from as i64, to as i64])?;
        let mut expected = from;
        let mut prev = known_prev;
        let mut buf = Vec::with_capacity(512);
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            if seq != expected {
                out.problem = problem(
                    expected,
                    ProblemKind::Missing,
                    if seq == expected + 1 {
                        format!("entry {expected} is missing")
                    } else {
                        format!("entries {expected} to {} are missing", seq - 1)
                    },
                );
                return Ok(out);
            }
            let format: i64 = r.get(1)?;
            let stored_prev = r.get_ref(12)?.as_blob()?;
            let stored_hash = r.get_ref(13)?.as_blob()?;
            match prev {
                None => out.first_prev = Some(hash32(stored_prev)),
                Some(p) if p.as_slice() != stored_prev => {
                    let (sp, sh) = (stored_prev.to_vec(), stored_hash.to_vec());
                    drop(rows);
                    out.problem = Some(classify_broken_link(conn, seq, &sp, &sh)?);
                    return Ok(out);
                }
                Some(_) => {}
            }
            if format != entry::FORMAT_V1 {
                out.problem = problem(
                    seq,
                    ProblemKind::Changed,
                    format!("entry {seq} has unknown format {format}"),
                );
                return Ok(out);
            }
            let fields = Fields {
                journal: self.journal_id,
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
            let hash = fields.hash(&mut buf);
            if stored_hash != hash {
                out.problem = problem(
                    seq,
                    ProblemKind::Changed,
                    format!("entry {seq} does not match its hash: its content was changed"),
                );
                return Ok(out);
            }
            if let Some(cp) = self.checkpoints.get(&seq) {
                if let Some(p) = check_checkpoint(self.journal_id, seq, cp, &hash, self.keys) {
                    out.problem = Some(p);
                    return Ok(out);
                }
            }
            prev = Some(hash);
            out.last_hash = hash;
            out.entries += 1;
            expected += 1;
        }
        if expected <= to {
            out.problem = problem(
                expected,
                ProblemKind::Missing,
                format!("entries {expected} to {to} are missing"),
            );
        }
        Ok(out)
    }

    /// Joins the ranges, then looks for signed checkpoints past the end.
    fn finish(
        &self,
        conn: &Connection,
        last: u64,
        first: Range,
        second: Option<Range>,
    ) -> Result<ChainReport, rusqlite::Error> {
        let mut report = ChainReport {
            checkpoints: self.checkpoints.len() as u64,
            last_checkpoint_seq: self.checkpoints.keys().next_back().copied().unwrap_or(0),
            ..Default::default()
        };
        report.entries = first.entries;
        if first.problem.is_some() {
            report.problem = first.problem;
            return Ok(report);
        }
        if let Some(second) = second {
            let join_seq = first.entries + 1;
            if second.first_prev.is_some_and(|p| p != first.last_hash) {
                let (sp, sh): (Vec<u8>, Vec<u8>) = conn.query_row(
                    "SELECT prev_hash, hash FROM audit_entries WHERE seq = ?1",
                    [join_seq as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                report.problem = Some(classify_broken_link(conn, join_seq, &sp, &sh)?);
                return Ok(report);
            }
            report.entries += second.entries;
            if second.problem.is_some() {
                report.problem = second.problem;
                return Ok(report);
            }
        }
        report.head_seq = last;
        if let Some((&seq, cp)) = self.checkpoints.range(last + 1..).next() {
            // A signed checkpoint past the end: entries were cut off. Only trust it if its
            // signature holds; a forged one is reported as such.
            let msg = entry::checkpoint_message(self.journal_id, seq, &cp.hash, cp.time_us);
            report.problem = if signature_ok(self.keys, &cp.key_id, &msg, &cp.signature) {
                problem(
                    last + 1,
                    ProblemKind::Truncated,
                    format!(
                        "the journal ends at entry {last}, but a signed checkpoint covers entries up to {seq}"
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
        report.unsigned_tail = last - report.last_checkpoint_seq.min(last);
        Ok(report)
    }
}

pub(crate) fn signature_ok(keys: &[TrustedKey], key_id: &str, msg: &[u8], sig: &[u8]) -> bool {
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
                "checkpoint at entry {seq} names signing key {:?} which this installation does not know",
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

/// Checks a journal against a position recorded elsewhere (in `system.db`): it must still
/// reach `seq`, with the same hash there.
///
/// # Errors
/// The file cannot be read.
pub fn check_anchor(
    conn: &Connection,
    head_seq: u64,
    seq: u64,
    hash: &[u8],
) -> Result<Option<Problem>, rusqlite::Error> {
    use rusqlite::OptionalExtension;
    if head_seq < seq {
        return Ok(problem(
            head_seq + 1,
            ProblemKind::Truncated,
            format!(
                "system.db recorded that this journal reached entry {seq}, but it ends at {head_seq}"
            ),
        ));
    }
    let stored: Option<Vec<u8>> = conn
        .query_row(
            "SELECT hash FROM audit_entries WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .optional()?;
    if stored.as_deref() != Some(hash) {
        return Ok(problem(
            seq,
            ProblemKind::Changed,
            format!("entry {seq} is not the one system.db recorded: the journal was rewritten"),
        ));
    }
    Ok(None)
}

/// A quick check for `doctor --quick`: the newest checkpoint's signature, the entry it signs
/// (its own hash and the signed one), and no signed entry missing past the end. It does not
/// walk the chain; `audit verify` does.
///
/// # Errors
/// The file cannot be read.
pub fn verify_quick(
    conn: &Connection,
    journal_id: &str,
    keys: &[TrustedKey],
) -> Result<ChainReport, rusqlite::Error> {
    conn.execute_batch("BEGIN")?;
    let r = (|| {
        let last: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM audit_entries", [], |r| {
                r.get(0)
            })?;
        let last = last.max(0) as u64;
        let checkpoints = load_checkpoints(conn)?;
        let ctx = Walk {
            journal_id,
            keys,
            checkpoints: &checkpoints,
        };
        let mut report = ChainReport {
            entries: last,
            head_seq: last,
            checkpoints: checkpoints.len() as u64,
            last_checkpoint_seq: checkpoints.keys().next_back().copied().unwrap_or(0),
            ..Default::default()
        };
        let newest_within = checkpoints.range(..=last).next_back().map(|(s, _)| *s);
        if let Some(seq) = newest_within {
            let one = ctx.range(conn, seq, seq, None)?;
            if one.problem.is_some() {
                report.problem = one.problem;
                return Ok(report);
            }
        }
        let tail = ctx.finish(
            conn,
            last,
            Range {
                first_prev: None,
                last_hash: [0u8; 32],
                entries: last,
                problem: None,
            },
            None,
        )?;
        report.problem = tail.problem;
        report.unsigned_tail = tail.unsigned_tail;
        Ok(report)
    })();
    let _ = conn.execute_batch("COMMIT");
    r
}
