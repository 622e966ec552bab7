//! The audit log as the admin pages read it: one realm's journal, filtered, a page at a time
//! (keyset pagination on the sequence number, newest first), verified, exported. Each
//! function checks its caller's permission; reads run on the door's query-only connections.

use super::verify::{verify_chain, ChainReport, TrustedKey};
use crate::door::Door;
use crate::identity::{IdentityError, Permission};
use crate::store::StoreError;
use rusqlite::params;
use serde::Serialize;

/// Longest page.
pub const MAX_PAGE: usize = 200;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact actor id.
    pub actor: Option<String>,
    /// Action, or its dotted prefix (`user.` matches `user.create`).
    pub action: Option<String>,
    /// Entries at or after this time.
    pub from_us: Option<i64>,
    /// Entries before this time.
    pub to_us: Option<i64>,
    /// Entries with a sequence number below this (the next page).
    pub before_seq: Option<i64>,
    pub limit: usize,
}

/// One entry as the log lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub seq: i64,
    pub time_us: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_role: String,
    pub source_ip: String,
    pub action: String,
    pub target: String,
    pub params: String,
    pub outcome: String,
}

/// A page and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub rows: Vec<Row>,
    pub next_before: Option<i64>,
}

fn store_err(e: rusqlite::Error) -> IdentityError {
    IdentityError::Store(StoreError::from_sqlite("journal", 0, &e))
}

/// The journal's id: the tenant's id, or `system`.
pub fn journal_id<D: Door>(door: &D) -> String {
    door.tenant_id()
        .map_or_else(|| "system".to_string(), |t| t.to_string())
}

/// One page of the realm's journal, newest first.
///
/// # Errors
/// Permission or a storage fault.
pub fn page_blocking<D: Door>(door: &D, f: &Filter) -> Result<Page, IdentityError> {
    door.caller().require(Permission::AuditRead)?;
    let limit = f.limit.clamp(1, MAX_PAGE);
    let f = f.clone();
    door.read_blocking(move |c| {
        let mut st = c
            .prepare(
                "SELECT seq, time_us, actor_kind, actor_id, actor_role, coalesce(source_ip, ''), \
                 action, target, params, outcome FROM audit_entries \
                 WHERE (?1 IS NULL OR actor_id = ?1) \
                 AND (?2 IS NULL OR action = ?2 OR substr(action, 1, length(?2)) = ?2) \
                 AND (?3 IS NULL OR time_us >= ?3) AND (?4 IS NULL OR time_us < ?4) \
                 AND (?5 IS NULL OR seq < ?5) ORDER BY seq DESC LIMIT ?6",
            )
            .map_err(store_err)?;
        let mut rows = st
            .query_map(
                params![
                    f.actor,
                    f.action,
                    f.from_us,
                    f.to_us,
                    f.before_seq,
                    (limit + 1) as i64
                ],
                |r| {
                    Ok(Row {
                        seq: r.get(0)?,
                        time_us: r.get(1)?,
                        actor_kind: r.get(2)?,
                        actor_id: r.get(3)?,
                        actor_role: r.get(4)?,
                        source_ip: r.get(5)?,
                        action: r.get(6)?,
                        target: r.get(7)?,
                        params: r.get(8)?,
                        outcome: r.get(9)?,
                    })
                },
            )
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(store_err)?;
        let next_before = (rows.len() > limit).then(|| rows[limit - 1].seq);
        rows.truncate(limit);
        Ok(Page { rows, next_before })
    })
}

/// Verifies the realm's chain and signatures, read-only, and that it still reaches
/// `anchor`, the position `system.db` recorded for a tenant's journal: a journal cut back
/// together with its checkpoints, or an older copy put back, is intact as a chain but no
/// longer reaches it. A journal without entries is reported too: every journal begins
/// with its creation.
///
/// # Errors
/// Permission or a storage fault.
pub fn verify_blocking<D: Door>(
    door: &D,
    keys: &[TrustedKey],
    anchor: Option<(u64, Vec<u8>)>,
) -> Result<ChainReport, IdentityError> {
    door.caller().require(Permission::AuditVerify)?;
    let journal = journal_id(door);
    door.read_blocking(|c| {
        let mut report = verify_chain(c, &journal, keys).map_err(store_err)?;
        if let (None, Some((seq, hash))) = (&report.problem, &anchor) {
            report.problem =
                super::verify::check_anchor(c, report.head_seq, *seq, hash).map_err(store_err)?;
        }
        if report.problem.is_none() && report.entries == 0 {
            report.problem = Some(super::verify::Problem {
                seq: 1,
                kind: super::verify::ProblemKind::Truncated,
                detail:
                    "the journal holds no entries, though every journal begins with its creation"
                        .into(),
            });
        }
        Ok(report)
    })
}

/// Writes the realm's whole journal to `out` as NDJSON or CSV, as it is read: a journal of
/// any length takes no more memory than `out` holds.
///
/// # Errors
/// Permission (checked before anything is written), a storage fault, or `out` failing (a
/// reader that went away).
pub fn export_blocking<D: Door>(
    door: &D,
    format: super::export::ExportFormat,
    out: &mut dyn std::io::Write,
) -> Result<u64, IdentityError> {
    door.caller().require(Permission::AuditExport)?;
    let journal = journal_id(door);
    door.read_blocking(|c| {
        let written = super::export::export(c, &journal, format, 1, out).map_err(|e| {
            IdentityError::Store(StoreError::Io {
                what: "journal".into(),
                reason: e.to_string(),
            })
        });
        // The export opened a read transaction; the pooled reader must not keep it.
        let _ = c.execute_batch("COMMIT");
        written
    })
}

/// Activity per day (UTC) over the last `days` days, oldest first: sign-ins, failed
/// sign-ins, and all journal entries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Day {
    /// Days since 1970-01-01.
    pub day: i64,
    pub sign_ins: i64,
    pub failed_sign_ins: i64,
    pub entries: i64,
}

/// Counts per day from the realm's journal, for the usage overview.
///
/// # Errors
/// Permission (status.read) or a storage fault.
pub fn daily_blocking<D: Door>(
    door: &D,
    days: i64,
    now_us: i64,
) -> Result<Vec<Day>, IdentityError> {
    door.caller().require(Permission::StatusRead)?;
    const DAY_US: i64 = 86_400_000_000;
    let today = now_us.div_euclid(DAY_US);
    let first = today - days.clamp(1, 366) + 1;
    door.read_blocking(move |c| {
        let mut st = c
            .prepare(
                "SELECT time_us / ?2 AS day, \
                 sum(action = 'auth.sign_in' AND outcome = 'success'), \
                 sum(action = 'auth.sign_in' AND outcome = 'failure'), count(*) \
                 FROM audit_entries WHERE time_us >= ?1 GROUP BY day ORDER BY day",
            )
            .map_err(store_err)?;
        let found = st
            .query_map(params![first * DAY_US, DAY_US], |r| {
                Ok(Day {
                    day: r.get(0)?,
                    sign_ins: r.get(1)?,
                    failed_sign_ins: r.get(2)?,
                    entries: r.get(3)?,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(store_err)?;
        // Every day of the window, with zeros where nothing happened.
        Ok((first..=today)
            .map(|day| {
                found.iter().find(|d| d.day == day).cloned().unwrap_or(Day {
                    day,
                    sign_ins: 0,
                    failed_sign_ins: 0,
                    entries: 0,
                })
            })
            .collect())
    })
}
