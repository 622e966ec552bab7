//! Key lifecycle on an installation, one file per use case: [`root`] (root-key rotation),
//! [`tenant`] (tenant-key rotation), and key status here.

mod root;
mod tenant;

pub use root::{
    finish_root_rotation, next_key_path, ready_to_rotate_root, rotate_root,
    unfinished_root_rotation, unfinished_root_rotation_in, RootRotation,
};
pub use tenant::{destroy_older_tenant_keys, rotate_tenant, TenantRotation};

use crate::app::App;
use crate::keyring::system_key::SystemKeyError;
use crate::keyring::KeyringError;
use crate::store::{system, StoreError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("the root key comes from {0}; rotate-root replaces a key file. Rotate by running the command with the key file configured (keys.root_key_file), then install the new file as the credential")]
    NotAKeyFile(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    SystemKey(#[from] SystemKeyError),
    #[error(transparent)]
    Tenant(crate::tenants::TenantError),
}

impl KeysError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAKeyFile(_) => "KEY-0201",
            Self::Write { .. } => "KEY-0202",
            Self::App(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Keyring(e) => e.code(),
            Self::SystemKey(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

/// One key and its age, for `keys status`, `doctor` and `/status`.
#[derive(Debug, Serialize)]
pub struct KeyStatus {
    /// `root`, `system` or a tenant id.
    pub owner: String,
    pub version: u32,
    pub key_id: Option<String>,
    pub source: Option<String>,
    pub since_us: Option<i64>,
    pub age_days: Option<u64>,
    /// True when older than the configured `keys.max_age_days`.
    pub too_old: bool,
}

/// Lists the root key and each live tenant's current DEK with their ages.
///
/// # Errors
/// The registry cannot be read.
pub fn status(app: &App) -> Result<Vec<KeyStatus>, KeysError> {
    app.system().read(|c| {
        status_in(
            c,
            app.keyring(),
            app.clock().now_us(),
            app.config().keys.max_age_days,
        )
    })
}

/// [`status`] from a connection to `system.db` (a reader, or the read-only evidence).
///
/// # Errors
/// The registry cannot be read.
pub fn status_in(
    c: &rusqlite::Connection,
    keyring: &crate::keyring::Keyring,
    now: i64,
    max_age: Option<u64>,
) -> Result<Vec<KeyStatus>, KeysError> {
    let age = |since: Option<i64>| since.map(|s| ((now - s).max(0) / 86_400_000_000) as u64);
    let old = |days: Option<u64>| matches!((days, max_age), (Some(d), Some(m)) if d > m);
    let err = |e: rusqlite::Error| StoreError::from_sqlite("system.db", 1, &e);
    let (since, rows, tenants) = (
        system::meta_get(c, "root_key_since_us").map_err(err)?,
        system::key_rows(c).map_err(err)?,
        system::list(c, false).map_err(err)?,
    );
    let root_since = since.and_then(|s| s.parse().ok());
    let mut out = vec![KeyStatus {
        owner: "root".into(),
        version: 1,
        key_id: Some(keyring.root_key_id().to_string()),
        source: Some(keyring.source().to_string()),
        since_us: root_since,
        age_days: age(root_since),
        too_old: old(age(root_since)),
    }];
    for t in tenants {
        let since = rows
            .iter()
            .filter(|r| r.tenant_id == t.id && r.version == t.key_version)
            .map(|r| r.created_us)
            .min();
        out.push(KeyStatus {
            owner: t.id.to_string(),
            version: t.key_version,
            key_id: None,
            source: None,
            since_us: since,
            age_days: age(since),
            too_old: old(age(since)),
        });
    }
    Ok(out)
}

fn tenant_err(e: crate::tenants::TenantError) -> KeysError {
    KeysError::Tenant(e)
}

crate::domain_error!(KeysError, |e| match e {
    KeysError::NotAKeyFile(_) => crate::error::ErrorKind::Invalid,
    KeysError::App(e) => crate::error::DomainError::kind(e),
    KeysError::Store(e) => crate::error::DomainError::kind(e),
    KeysError::Tenant(e) => crate::error::DomainError::kind(e),
    _ => crate::error::ErrorKind::Internal,
});
