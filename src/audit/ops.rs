//! Verify and export for the journals of an installation: `system.db` and each tenant file.
//! These open their own connections, never the writer, so they work on a file that a running
//! server holds, and on a damaged file that would not open for writing.

use super::export::{self, ExportError, ExportFormat};
use super::verify::{self, ChainReport, TrustedKey};
use crate::app::App;
use crate::keyring::Key32;
use crate::store::tenants::{tenant_label, tenant_path};
use crate::store::{self, FileKind, OpenSpec};
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
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.integrity.is_empty()
            && self.chain.as_ref().is_some_and(|c| c.problem.is_none())
    }
}

/// This installation's checkpoint key, and for a tenant journal restored from another
/// installation, the keys trusted for that journal alone.
fn trusted_keys(app: &App, journal: &str) -> Vec<TrustedKey> {
    let mut keys = vec![TrustedKey {
        id: app.signer().signing_key_id(),
        public_key: app.signer().signing_public_key(),
    }];
    let others = app
        .system()
        .read(|c| crate::store::system::signing_keys(c, journal).map_err(|e| app.system().err(&e)));
    match others {
        Ok(rows) => keys.extend(
            rows.into_iter()
                .map(|(id, public_key)| TrustedKey { id, public_key }),
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read trusted signing keys"),
    }
    keys
}

struct Target {
    /// Where `system.db` says this journal reached (tenants only).
    anchor: Option<(u64, Vec<u8>)>,
    journal: String,
    label: String,
    path: PathBuf,
    key: Key32,
    version: u32,
    kind: FileKind,
}

impl Target {
    fn spec(&self, app: &App) -> OpenSpec<'_> {
        OpenSpec {
            path: &self.path,
            label: &self.label,
            key: &self.key,
            key_version: self.version,
            kind: self.kind,
            create: false,
            busy_timeout: crate::app::settings_from(app.config()).busy_timeout,
            plaintext: false,
        }
    }
}

fn system_target(app: &App) -> Target {
    Target {
        anchor: None,
        journal: "system".into(),
        label: "system.db".into(),
        path: app.data_dir().join("system.db"),
        key: app.system_dek().duplicate(),
        version: 1,
        kind: FileKind::System,
    }
}

fn tenant_target(app: &App, id: &TenantId) -> Result<Target, TenantError> {
    tenants::settle(app, id)?;
    let (_, keys) = tenants::tenant_keys(app, id)?;
    let anchor = app
        .system()
        .read(|c| crate::store::system::anchor(c, id).map_err(|e| app.system().err(&e)))?;
    Ok(Target {
        anchor,
        journal: id.to_string(),
        label: tenant_label(id),
        path: tenant_path(app.data_dir(), id),
        key: keys.dek().duplicate(),
        version: keys.version,
        kind: FileKind::Tenant,
    })
}

fn verify_target(app: &App, t: &Target) -> FileReport {
    verify_target_with(app, t, false)
}

fn verify_target_with(app: &App, t: &Target, quick: bool) -> FileReport {
    check_file(
        &t.spec(app),
        &t.journal,
        &trusted_keys(app, &t.journal),
        t.anchor.clone(),
        quick,
        !quick,
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
    check_file(spec, journal, keys, anchor, false, pages)
}

fn check_file(
    spec: &store::OpenSpec<'_>,
    journal: &str,
    keys: &[TrustedKey],
    anchor: Option<(u64, Vec<u8>)>,
    quick: bool,
    pages: bool,
) -> FileReport {
    let mut report = FileReport {
        journal: journal.to_string(),
        label: spec.label.to_string(),
        file: spec.path.to_path_buf(),
        chain: None,
        integrity: Vec::new(),
        error: None,
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
        report.integrity = store::integrity_problems(spec);
    }
    let opened = store::open_connection(spec, false)
        .and_then(|c| Ok((c, store::open_connection(spec, false)?)));
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
pub fn verify_system_with(app: &App, quick: bool) -> FileReport {
    verify_target_with(app, &system_target(app), quick)
}

/// As [`verify_tenant`]; with `quick`, only against the newest checkpoint and no page scan.
///
/// # Errors
/// As [`verify_tenant`].
pub fn verify_tenant_with(
    app: &App,
    id: &TenantId,
    quick: bool,
) -> Result<FileReport, TenantError> {
    Ok(verify_target_with(app, &tenant_target(app, id)?, quick))
}

/// Verifies the system journal and `system.db`'s pages.
pub fn verify_system(app: &App) -> FileReport {
    verify_target(app, &system_target(app))
}

/// Verifies one tenant's journal and pages.
///
/// # Errors
/// Unknown tenant or a key that does not unwrap (problems in the file are in the report).
pub fn verify_tenant(app: &App, id: &TenantId) -> Result<FileReport, TenantError> {
    Ok(verify_target(app, &tenant_target(app, id)?))
}

/// Verifies `system.db` and every live tenant.
///
/// # Errors
/// The tenant list cannot be read.
pub fn verify_all(app: &App) -> Result<Vec<FileReport>, TenantError> {
    let mut out = vec![verify_system(app)];
    for t in tenants::list(app, false)? {
        out.push(match tenant_target(app, &t.id) {
            Ok(target) => verify_target(app, &target),
            Err(e) => FileReport {
                journal: t.id.to_string(),
                label: tenant_label(&t.id),
                file: tenant_path(app.data_dir(), &t.id),
                chain: None,
                integrity: Vec::new(),
                error: Some(e.to_string()),
            },
        });
    }
    Ok(out)
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
/// Unknown tenant, unreadable file, or a write failure on `out`.
pub fn export_journal(
    app: &App,
    tenant: Option<&TenantId>,
    format: ExportFormat,
    since: u64,
    out: &mut dyn std::io::Write,
) -> Result<u64, OpsError> {
    let target = match tenant {
        Some(id) => {
            tenants::usable(app, id)?;
            tenant_target(app, id)?
        }
        None => system_target(app),
    };
    let conn = store::open_connection(&target.spec(app), false)?;
    Ok(export::export(&conn, &target.journal, format, since, out)?)
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
    app: &App,
    tenant: Option<&TenantId>,
) -> Result<Vec<CheckpointRecord>, OpsError> {
    let target = match tenant {
        Some(id) => {
            tenants::usable(app, id)?;
            tenant_target(app, id)?
        }
        None => system_target(app),
    };
    let conn = store::open_connection(&target.spec(app), false)?;
    let err =
        |e: rusqlite::Error| store::StoreError::from_sqlite(&target.label, target.version, &e);
    let public_key = hex::encode(app.signer().signing_public_key());
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
                key_id: r.get(3)?,
                signature: hex::encode(r.get::<_, Vec<u8>>(4)?),
                public_key: public_key.clone(),
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
