//! Backups: consistent online snapshots (SQLite's backup API) of `system.db` and the tenant files, packed into one
//! encrypted archive ([`crate::store::archive`]) with an authenticated manifest; verification
//! without restoring; restoration onto a fresh machine given the root key or the passphrase.
//!
//! The payload is one frame per member, then the manifest ([`create`] has the layout). Members are `system.key`, `system.db`, `tenants/<id>.db` (all still
//! encrypted under their own keys) and, for a passphrase archive only, `root.key`: such an
//! archive is meant to restore with the passphrase alone, so the passphrase guards the root
//! key and must be kept like it.

use crate::app::{self, App};
use crate::audit::{ops, verify, Actor, NewEntry};
use crate::keyring::system_key::SystemKeyFile;
use crate::keyring::{Key32, Keyring, RootKeySource, SecretString};
use crate::store::archive::{self, ArchiveError, ArchiveReader, ArchiveWriter, Header, KeySpec};
use crate::store::{self, system, FileKind, OpenSpec, StoreError};
use crate::tenants::TenantId;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod create;
mod restore;
mod unpack;

pub use create::create;
pub use restore::{restore, restore_tenant, RestoreOptions, Restored, TenantRestored};
pub use unpack::{check_unpacked, unpack, Opening, Unpacked, VerifyReport};

const MANIFEST_FORMAT: u32 = 1;

/// Told (bytes done, bytes in all) as an archive is written or read; the CLI draws a
/// progress bar from it on a terminal.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// A [`Progress`] that shows nothing.
pub fn quiet(_done: u64, _total: u64) {}
const MAX_MANIFEST: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the archive was sealed under root key {archive}, but the key given has id {given}; pass the root key it was made with (--root-key-file)")]
    OtherRootKey { archive: String, given: String },
    #[error("this archive is sealed with a passphrase: pass --passphrase-file")]
    NeedsPassphrase,
    #[error("the passphrase is too short: use at least 12 characters")]
    WeakPassphrase,
    #[error("the manifest is malformed: {0}")]
    BadManifest(String),
    #[error("member {0} does not match the manifest: the archive was altered")]
    MemberMismatch(String),
    #[error("{0} already holds an installation; pass --force to replace it (it is moved aside, not deleted)")]
    LiveData(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {what}: {reason}")]
    Io { what: String, reason: String },
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
    #[error(transparent)]
    SystemKey(#[from] crate::keyring::system_key::SystemKeyError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
}

impl BackupError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Archive(e) => e.code(),
            Self::OtherRootKey { .. } => "BAK-0101",
            Self::NeedsPassphrase => "BAK-0102",
            Self::WeakPassphrase => "BAK-0103",
            Self::BadManifest(_) => "BAK-0104",
            Self::MemberMismatch(_) => "BAK-0105",
            Self::LiveData(_) => "BAK-0106",
            Self::Invalid(_) => "BAK-0107",
            Self::Io { .. } => "BAK-0108",
            Self::App(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Keyring(e) => e.code(),
            Self::SystemKey(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |e| BackupError::Io {
        what,
        reason: e.kind().to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    pub id: String,
    pub name: String,
    pub key_version: u32,
    pub journal_head_seq: u64,
    pub journal_head_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// `all`, or `tenant` for an archive of one tenant (plus the system files it needs).
    pub scope: String,
    pub created_us: i64,
    pub strongroom_version: String,
    pub root_key_id: String,
    pub system_journal_head_seq: u64,
    pub tenants: Vec<TenantEntry>,
    pub members: Vec<Member>,
}

/// How an archive is sealed.
pub enum Sealing {
    /// Under a key derived from the installation's root key.
    Root,
    /// Under a key derived from a passphrase; the archive then also carries the root key.
    Passphrase(SecretString),
}

/// Which tenants go into a backup.
pub enum Scope {
    All,
    Tenant(TenantId),
}

/// Reads a passphrase file: the first line, at least 12 characters. Like the root key file,
/// it must be readable by its owner alone: the passphrase opens the archive and the root key
/// the archive carries.
///
/// # Errors
/// Unreadable, readable by others, or too short.
pub fn read_passphrase(path: &Path) -> Result<SecretString, BackupError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: std::io::Error| BackupError::Io {
        what: format!("read {}", path.display()),
        reason: crate::fsutil::io_reason(&e),
    };
    let (file, meta) = crate::fsutil::open_regular(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(BackupError::Invalid(format!(
            "{} can be read by other users (mode {mode:o}); the passphrase opens the archive \
             and the root key it carries: run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(128));
    file.take(64 * 1024)
        .read_to_end(&mut raw)
        .map_err(unreadable)?;
    let Ok(text) = std::str::from_utf8(&raw) else {
        return Err(BackupError::Invalid(format!(
            "{} is not UTF-8 text; put the passphrase on its first line",
            path.display()
        )));
    };
    let line = text.lines().next().unwrap_or("").to_string();
    if line.chars().count() < 12 {
        return Err(BackupError::WeakPassphrase);
    }
    Ok(SecretString::new(line))
}

fn spec<'a>(
    path: &'a Path,
    label: &'a str,
    key: &'a Key32,
    version: u32,
    kind: FileKind,
) -> OpenSpec<'a> {
    OpenSpec {
        path,
        label,
        key,
        key_version: version,
        kind,
        create: false,
        busy_timeout: Duration::from_secs(30),
        plaintext: false,
    }
}

fn journal_head(conn: &rusqlite::Connection) -> Result<(u64, String), rusqlite::Error> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row
        .map(|(s, h)| (s.max(0) as u64, hex::encode(h)))
        .unwrap_or((0, String::new())))
}

/// Maps `f` over `items` on as many threads as there are cores (at most 4), in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    if items.len() < 2 || threads == 1 {
        return items.iter().map(&f).collect();
    }
    let size = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(size)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

crate::domain_error!(BackupError, |e| match e {
    BackupError::Archive(e) => crate::error::DomainError::kind(e),
    BackupError::LiveData(_) => crate::error::ErrorKind::Conflict,
    BackupError::Io { .. } => crate::error::ErrorKind::Internal,
    BackupError::App(e) => crate::error::DomainError::kind(e),
    BackupError::Store(e) => crate::error::DomainError::kind(e),
    BackupError::Keyring(_) | BackupError::SystemKey(_) => crate::error::ErrorKind::Internal,
    BackupError::Tenant(e) => crate::error::DomainError::kind(e),
    _ => crate::error::ErrorKind::Invalid,
});
