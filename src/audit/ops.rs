//! Verify and export for the journals of an installation: `system.db` and each tenant file.
//! These work on [`Evidence`]: read-only connections, never the writer, so they work on a
//! file that a running server holds, on a damaged file that would not open for writing, and
//! on a read-only copy; they change nothing.

use super::evidence::{Evidence, JournalFile};
use super::export::{self, ExportError, ExportFormat};
use super::verify::{self, ChainReport, TrustedKey};
use crate::store;
use crate::store::tenants::{tenant_label, tenant_path};
use crate::tenants::{self, TenantError, TenantId};
use serde::Serialize;
use std::path::PathBuf;

/// The verdict on one file: its journal and its pages.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// `system` or the tenant id.
    pub journal: String,
    pub label: String,
    pub file: PathBuf,
    pub chain: Option<ChainReport>,
    /// Page-level problems (SQLCipher HMAC and SQLite structure), one line each.
    pub integrity: Vec<String>,
    /// Why the journal could not be read at all, if it could not.
    pub error: Option<String>,
    /// What the other journal records about this one but this one lacks.
    pub cross: Vec<String>,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.integrity.is_empty()
            && self.cross.is_empty()
            && self.chain.as_ref().is_some_and(|c| c.problem.is_none())
    }
}

fn verify_target(ev: &Evidence, t: &JournalFile, quick: bool) -> FileReport {
    check_file(
        &t.spec(),
        &t.journal,
        &ev.trusted_keys(&t.journal),
        t.anchor.clone(),
        quick,
        !quick,
        t.quiet,
    )
}

/// Verifies one file given how to open it: pages, chain, and (for tenants) the position
/// `system.db` recorded. Used for live files and for files unpacked from a backup.
///
/// `pages` adds SQLCipher's page check and SQLite's structural check; a file unpacked from a
/// backup has its bytes proven by the manifest's hash instead.
pub fn verify_file(
    spec: &store::OpenSpec<'_>,
    journal: &str,
    keys: &[TrustedKey],
    anchor: Option<(u64, Vec<u8>)>,
    pages: bool,
) -> FileReport {
    // Files unpacked from an archive: no process writes them.
    check_file(spec, journal, keys, anchor, false, pages, true)
}

fn check_file(
    spec: &store::OpenSpec<'_>,
    journal: &str,
    keys: &[TrustedKey],
    anchor: Option<(u64, Vec<u8>)>,
    quick: bool,
    pages: bool,
    quiet: bool,
) -> FileReport {
    let mut report = FileReport {
        journal: journal.to_string(),
        label: spec.label.to_string(),
        file: spec.path.to_path_buf(),
        chain: None,
        integrity: Vec::new(),
        error: None,
        cross: Vec::new(),
    };
    if !spec.path.exists() {
        report.error = Some(format!(
            "{}: file {} does not exist",
            spec.label,
            spec.path.display()
        ));
        return report;
    }
    if pages {
        report.integrity = store::integrity_problems_with(spec, quiet);
    }
    let opened = store::open_evidence_with(spec, quiet)
        .and_then(|c| Ok((c, store::open_evidence_with(spec, quiet)?)));
    match opened {
        Ok((conn, second)) => {
            let walked = if quick {
                verify::verify_quick(&conn, journal, keys)
            } else {
                verify::verify_chain_parallel(&conn, journal, keys, second)
            };
            let walked = walked.and_then(|mut chain| {
                if let (None, Some((seq, hash))) = (&chain.problem, &anchor) {
                    chain.problem = verify::check_anchor(&conn, chain.head_seq, *seq, hash)?;
                }
                Ok(chain)
            });
            match walked {
                Ok(chain) => report.chain = Some(chain),
                Err(e) => {
                    report.error = Some(
                        store::StoreError::from_sqlite(spec.label, spec.key_version, &e)
                            .to_string(),
                    )
                }
            }
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report
}

/// As [`verify_system`]; with `quick`, only against the newest checkpoint and no page scan.
pub fn verify_system_with(ev: &Evidence, quick: bool) -> FileReport {
    verify_target(ev, &ev.system_file(), quick)
}

/// As [`verify_tenant`]; with `quick`, only against the newest checkpoint and no page scan.
///
/// # Errors
/// As [`verify_tenant`].
pub fn verify_tenant_with(
    ev: &Evidence,
    id: &TenantId,
    quick: bool,
) -> Result<FileReport, TenantError> {
    Ok(verify_target(ev, &ev.tenant_file(id)?, quick))
}

/// Verifies the system journal and `system.db`'s pages.
pub fn verify_system(ev: &Evidence) -> FileReport {
    verify_system_with(ev, false)
}

/// Verifies one tenant's journal and pages.
///
/// # Errors
/// Unknown tenant or a key that does not unwrap (problems in the file are in the report).
pub fn verify_tenant(ev: &Evidence, id: &TenantId) -> Result<FileReport, TenantError> {
    verify_tenant_with(ev, id, false)
}

/// Verifies `system.db` and every live tenant (suspended ones included).
///
/// # Errors
/// The tenant list cannot be read.
pub fn verify_all(ev: &Evidence) -> Result<Vec<FileReport>, TenantError> {
    let mut out = vec![verify_system(ev)];
    for t in ev.tenants(false)? {
        out.push(match ev.tenant_file(&t.id) {
            Ok(file) => verify_target(ev, &file, false),
            Err(e) => FileReport {
                journal: t.id.to_string(),
                label: tenant_label(&t.id),
                file: tenant_path(ev.data_dir(), &t.id),
                chain: None,
                integrity: Vec::new(),
                error: Some(e.to_string()),
                cross: Vec::new(),
            },
        });
    }
    cross_check(ev, &mut out);
    Ok(out)
}

/// An operation the system journal records for a tenant, which the tenant's journal must
/// record too (delivered through the outbox, under the same op id).
struct Owed {
    seq: u64,
    action: String,
    op_id: String,
}

/// Cross-checks what `system.db`'s journal says about each tenant journal: every rotation or
/// restore recorded there with an op id must be in the tenant's journal (under the same op
/// id), unless it is still queued for delivery, or an operation a later restore of that tenant
/// replaced. A tenant journal cut back (with its checkpoints, and its anchor lowered) shows
/// up here, because the system journal still holds what it lost.
fn cross_check(ev: &Evidence, reports: &mut [FileReport]) {
    let mut owed: std::collections::HashMap<String, Vec<Owed>> = Default::default();
    let read = (|| -> rusqlite::Result<std::collections::HashSet<String>> {
        let mut st = ev.system().prepare(
            "SELECT seq, action, target, params FROM audit_entries \
             WHERE action IN ('keys.rotate_tenant', 'backup.restore') ORDER BY seq",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (seq, action, target, params) = row?;
            let op_id = serde_json::from_str::<serde_json::Value>(&params)
                .ok()
                .and_then(|v| v.get("op_id").and_then(|o| o.as_str()).map(str::to_string));
            let list = owed.entry(target).or_default();
            if action == "backup.restore" {
                // What came before a restore of this tenant was replaced on purpose.
                list.clear();
            }
            if let Some(op_id) = op_id {
                list.push(Owed {
                    seq: seq.max(0) as u64,
                    action,
                    op_id,
                });
            }
        }
        let mut st = ev.system().prepare("SELECT op_id FROM tenant_outbox")?;
        let queued = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(queued)
    })();
    let queued = match read {
        Ok(q) => q,
        Err(e) => {
            if let Some(sys) = reports.iter_mut().find(|r| r.journal == "system") {
                sys.cross.push(format!(
                    "cannot cross-check the journals: {}",
                    store::StoreError::from_sqlite("system.db", 1, &e)
                ));
            }
            return;
        }
    };
    for report in reports
        .iter_mut()
        .filter(|r| r.journal != "system" && r.ok())
    {
        let Some(expected) = owed.get(&report.journal) else {
            continue;
        };
        let Ok(id) = TenantId::parse(&report.journal) else {
            continue;
        };
        let delivered = ev
            .tenant_file(&id)
            .map_err(|e| e.to_string())
            .and_then(|f| f.open().map_err(|e| e.to_string()))
            .and_then(|c| delivered_ops(&c).map_err(|e| e.to_string()));
        let delivered = match delivered {
            Ok(d) => d,
            Err(e) => {
                report.cross.push(format!("cannot cross-check: {e}"));
                continue;
            }
        };
        for o in expected {
            if !delivered.contains(&o.op_id) && !queued.contains(&o.op_id) {
                report.cross.push(format!(
                    "the system journal records {} for this tenant (system entry {}, op {}), \
                     but this journal does not: entries were cut from it",
                    o.action, o.seq, o.op_id
                ));
            }
        }
    }
}

/// The op ids of the entries delivered into a tenant journal from the outbox.
fn delivered_ops(
    conn: &rusqlite::Connection,
) -> rusqlite::Result<std::collections::HashSet<String>> {
    let mut st = conn.prepare(
        "SELECT params FROM audit_entries WHERE action IN ('keys.rotate_tenant', 'backup.restore')",
    )?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = std::collections::HashSet::new();
    for p in rows {
        if let Some(op) = serde_json::from_str::<serde_json::Value>(&p?)
            .ok()
            .and_then(|v| v.get("op_id").and_then(|o| o.as_str()).map(str::to_string))
        {
            out.insert(op);
        }
    }
    Ok(out)
}

/// The journal file to read for `tenant` (`None`: the system journal), once the tenant's
/// status allows its use.
fn readable(ev: &Evidence, tenant: Option<&TenantId>) -> Result<JournalFile, OpsError> {
    Ok(match tenant {
        Some(id) => {
            tenants::check_usable(&ev.tenant(id)?)?;
            ev.tenant_file(id)?
        }
        None => ev.system_file(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

impl OpsError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Tenant(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Export(_) => "AUD-0001",
        }
    }
}

/// Streams a journal (`None` = the system journal) to `out`.
///
/// # Errors
/// Unknown or suspended tenant, unreadable file, or a write failure on `out`.
pub fn export_journal(
    ev: &Evidence,
    tenant: Option<&TenantId>,
    format: ExportFormat,
    since: u64,
    out: &mut dyn std::io::Write,
) -> Result<u64, OpsError> {
    let file = readable(ev, tenant)?;
    let conn = file.open()?;
    Ok(export::export(&conn, &file.journal, format, since, out)?)
}

/// A journal's signed checkpoints, for keeping outside the installation.
#[derive(Debug, Serialize)]
pub struct CheckpointRecord {
    pub journal: String,
    pub seq: u64,
    pub time_us: i64,
    pub hash: String,
    pub key_id: String,
    pub signature: String,
    pub public_key: String,
}

/// Lists a journal's checkpoints with the public key that verifies them.
///
/// # Errors
/// Unknown tenant or unreadable file.
pub fn checkpoints(
    ev: &Evidence,
    tenant: Option<&TenantId>,
) -> Result<Vec<CheckpointRecord>, OpsError> {
    let target = readable(ev, tenant)?;
    let conn = target.open()?;
    let err =
        |e: rusqlite::Error| store::StoreError::from_sqlite(&target.label, target.version, &e);
    // Each checkpoint with the key that signed it: a tenant restored from another
    // installation carries checkpoints signed with that installation's key.
    let keys = ev.trusted_keys(&target.journal);
    let public_key_of = |key_id: &str| {
        keys.iter()
            .find(|k| k.id == key_id)
            .map(|k| hex::encode(&k.public_key))
            .unwrap_or_default()
    };
    let mut st = conn
        .prepare("SELECT seq, time_us, hash, key_id, signature FROM audit_checkpoints ORDER BY seq")
        .map_err(err)?;
    let rows = st
        .query_map([], |r| {
            Ok(CheckpointRecord {
                journal: target.journal.clone(),
                seq: r.get::<_, i64>(0)? as u64,
                time_us: r.get(1)?,
                hash: hex::encode(r.get::<_, Vec<u8>>(2)?),
                public_key: public_key_of(&r.get::<_, String>(3)?),
                key_id: r.get(3)?,
                signature: hex::encode(r.get::<_, Vec<u8>>(4)?),
            })
        })
        .map_err(err)?;
    Ok(rows.collect::<Result<Vec<_>, _>>().map_err(err)?)
}

crate::domain_error!(OpsError, |e| match e {
    OpsError::Tenant(e) => crate::error::DomainError::kind(e),
    OpsError::Store(e) => crate::error::DomainError::kind(e),
    OpsError::Export(_) => crate::error::ErrorKind::Internal,
});

/// What checking the journals against a witness found.
#[derive(Debug, Clone, Serialize)]
pub struct WitnessReport {
    pub path: PathBuf,
    /// Heads of this installation that were checked.
    pub checked: usize,
    /// Heads signed by another installation's key, left alone.
    pub foreign: usize,
    /// One sentence per journal that does not extend its witnessed head.
    pub problems: Vec<String>,
}

impl WitnessReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks that every journal extends the head `witness` recorded for it; `only` limits the
/// check to the named journals. Deleted tenants are skipped (their journal is gone on
/// purpose); a tenant the registry does not know at all means `system.db` went back in time.
///
/// # Errors
/// The witness file cannot be read or parsed.
pub fn check_witness(
    ev: &Evidence,
    path: &std::path::Path,
    only: Option<&[String]>,
) -> Result<WitnessReport, super::witness::WitnessError> {
    use super::witness::{self, Extends};
    let heads = witness::read(path)?;
    let keys = ev.trusted_keys("system");
    let mine = ev.signer().signing_key_id();
    let mut report = WitnessReport {
        path: path.to_path_buf(),
        checked: 0,
        foreign: 0,
        problems: Vec::new(),
    };
    for head in &heads {
        if head.key_id != mine {
            report.foreign += 1;
            continue;
        }
        if only.is_some_and(|o| !o.contains(&head.journal)) {
            continue;
        }
        report.checked += 1;
        if !head.signed_by(&keys[..1]) {
            report.problems.push(format!(
                "the witnessed head of journal {:?} does not carry this installation's signature: the witness was altered",
                head.journal
            ));
            continue;
        }
        let file = if head.journal == "system" {
            ev.system_file()
        } else {
            let Ok(id) = TenantId::parse(&head.journal) else {
                report.problems.push(format!(
                    "the witness names an unknown journal {:?}",
                    head.journal
                ));
                continue;
            };
            match ev.tenant(&id) {
                Ok(t) if t.status == crate::store::system::TenantStatus::Deleted => continue,
                Ok(_) => match ev.tenant_file(&id) {
                    Ok(f) => f,
                    Err(e) => {
                        report.problems.push(format!("tenant {id}: {e}"));
                        continue;
                    }
                },
                Err(TenantError::NotFound(_)) => {
                    report.problems.push(format!(
                        "the witness {} recorded tenant {id} at {}, but system.db does not know this tenant: system.db was rolled back or replaced; restore it with `strongroom backup restore`",
                        path.display(),
                        head.seq
                    ));
                    continue;
                }
                Err(e) => {
                    report.problems.push(format!("tenant {id}: {e}"));
                    continue;
                }
            }
        };
        let found = file.open().map_err(|e| e.to_string()).and_then(|c| {
            witness::extends(&c, head).map_err(|e| {
                store::StoreError::from_sqlite(&file.label, file.version, &e).to_string()
            })
        });
        match found {
            Ok(Extends::Yes) => {}
            Ok(other) => report
                .problems
                .push(witness::describe(&file.label, path, head, &other)),
            Err(e) => report.problems.push(e),
        }
    }
    if only.is_none() && report.checked == 0 && !heads.is_empty() {
        report.problems.push(format!(
            "the witness {} holds no head signed by this installation",
            path.display()
        ));
    }
    Ok(report)
}

/// The signed head of every journal now: `system` and every tenant not deleted.
///
/// # Errors
/// The registry cannot be read, or a journal cannot be opened or read.
pub fn witness_heads(ev: &Evidence, now_us: i64) -> Result<Vec<super::witness::Head>, OpsError> {
    let mut files = vec![ev.system_file()];
    for t in ev.tenants(false)? {
        files.push(ev.tenant_file(&t.id)?);
    }
    let mut heads = Vec::with_capacity(files.len());
    for f in files {
        let conn = f.open()?;
        let head = conn
            .query_row(
                "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .map_err(|e| store::StoreError::from_sqlite(&f.label, f.version, &e))?;
        let mut hash = [0u8; 32];
        if head.1.len() == 32 {
            hash.copy_from_slice(&head.1);
        }
        heads.push(super::witness::Head::sign(
            ev.signer(),
            &f.journal,
            head.0.max(0) as u64,
            &hash,
            now_us,
        ));
    }
    Ok(heads)
}
