//! Tenants: their registry rows, status and keys. One file per use case:
//! [`lifecycle`] (create, suspend, resume, delete), [`open`] (opening a tenant's file:
//! settling an interrupted rotation or restore, the witness check, delivering owed journal
//! entries) and [`leftovers`] (files no tenant owns).

mod leftovers;
mod lifecycle;
mod open;
mod standing;

pub use leftovers::{leftovers, leftovers_in, remove_leftovers};
pub use lifecycle::{create, delete, set_active};
pub use open::{deliver_all_owed, deliver_outbox, open_store, settle, settle_all};
pub use standing::Standing;

use crate::app::App;
pub use crate::ids::TenantId;
use crate::keyring::{KeyringError, TenantKeys};
pub use crate::store::system::{Tenant, TenantStatus};
use crate::store::tenants::tenant_label;
use crate::store::{system, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    InvalidId(#[from] crate::ids::InvalidId),
    #[error("invalid tenant name: {0}")]
    InvalidName(String),
    #[error(
        "invalid region {0:?}: use 1-32 lower-case letters, digits and dashes, e.g. eu-central"
    )]
    InvalidRegion(String),
    #[error("a tenant named {0:?} already exists")]
    NameTaken(String),
    #[error("no tenant with id {0}")]
    NotFound(String),
    #[error("tenant {0} is suspended; `strongroom tenant resume {0}` makes it usable again (audit verify and backup work meanwhile)")]
    Suspended(String),
    #[error("tenant {id} is already {status}")]
    AlreadyInState { id: String, status: &'static str },
    #[error("tenant {0} is open in another strongroom process (the server keeps a tenant open until it has been idle for store.tenant_idle_secs); retry later, or stop the server")]
    InUse(String),
    #[error(transparent)]
    Denied(#[from] crate::identity::Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

impl TenantError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId(e) => e.code(),
            Self::InvalidName(_) => "TEN-0002",
            Self::InvalidRegion(_) => "TEN-0003",
            Self::NameTaken(_) => "TEN-0004",
            Self::NotFound(_) => "TEN-0005",
            Self::Suspended(_) => "TEN-0006",
            Self::AlreadyInState { .. } => "TEN-0007",
            Self::InUse(_) => "TEN-0008",
            Self::Denied(_) => "TEN-0009",
            Self::Store(e) => e.code(),
            Self::Keyring(e) => e.code(),
        }
    }
}

fn validate_name(name: &str) -> Result<String, TenantError> {
    crate::text::display_name(name, 100).map_err(|p| TenantError::InvalidName(p.to_string()))
}

fn validate_region(region: &str) -> Result<String, TenantError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(region.to_string())
    } else {
        Err(TenantError::InvalidRegion(
            region.chars().take(64).collect(),
        ))
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Looks a tenant up, deleted ones included.
///
/// # Errors
/// Unknown id, or a storage fault.
pub fn get(app: &App, id: &TenantId) -> Result<Tenant, TenantError> {
    app.system()
        .read(|c| system::get(c, id).map_err(|e| app.system().err(&e)))?
        .ok_or_else(|| TenantError::NotFound(id.to_string()))
}

/// The one status check before a tenant is used: refuses a suspended tenant with
/// [`TenantError::Suspended`] and a deleted or unknown one with [`TenantError::NotFound`].
/// The door ([`crate::door`]) calls it for every context it hands out; the few commands that
/// read a tenant's file without a context (journal export, rotation) call it directly.
/// Verification, backup, resume and delete deliberately do not.
///
/// # Errors
/// As above, or a storage fault reading the registry.
pub fn usable(app: &App, id: &TenantId) -> Result<Tenant, TenantError> {
    let t = get(app, id)?;
    check_usable(&t)?;
    Ok(t)
}

/// The rule [`usable`] applies, for a registry row already read (by the read-only evidence
/// path, which has no `App`).
///
/// # Errors
/// As [`usable`].
pub fn check_usable(t: &Tenant) -> Result<(), TenantError> {
    match t.status {
        TenantStatus::Active => Ok(()),
        TenantStatus::Suspended => Err(TenantError::Suspended(t.id.to_string())),
        TenantStatus::Deleted => Err(TenantError::NotFound(t.id.to_string())),
    }
}

/// Lists tenants, oldest first.
///
/// # Errors
/// A storage fault.
pub fn list(app: &App, include_deleted: bool) -> Result<Vec<Tenant>, TenantError> {
    Ok(app
        .system()
        .read(|c| system::list(c, include_deleted).map_err(|e| app.system().err(&e)))?)
}

/// The tenant's current keys, unwrapped from the registry.
///
/// # Errors
/// Unknown or deleted tenant, or a wrapped key that does not unwrap under this root key.
pub fn tenant_keys(app: &App, id: &TenantId) -> Result<(Tenant, TenantKeys), TenantError> {
    let t = get(app, id)?;
    if t.status == TenantStatus::Deleted {
        return Err(TenantError::NotFound(id.to_string()));
    }
    let wrapped = app
        .system()
        .read(|c| {
            system::wrapped_dek(c, id, t.key_version, app.keyring().root_key_id())
                .map_err(|e| app.system().err(&e))
        })?
        .ok_or_else(|| StoreError::Decrypt {
            what: tenant_label(id),
            version: t.key_version,
        })?;
    let dek = app
        .keyring()
        .unwrap_dek(id.as_str(), t.key_version, &wrapped)?;
    let version = t.key_version;
    Ok((t, TenantKeys::new(version, dek)?))
}

crate::domain_error!(TenantError, |e| match e {
    TenantError::InvalidId(_) | TenantError::InvalidName(_) | TenantError::InvalidRegion(_) => {
        crate::error::ErrorKind::Invalid
    }
    TenantError::NameTaken(_) | TenantError::AlreadyInState { .. } =>
        crate::error::ErrorKind::Conflict,
    TenantError::NotFound(_) => crate::error::ErrorKind::NotFound,
    TenantError::Suspended(_) | TenantError::Denied(_) => crate::error::ErrorKind::Forbidden,
    TenantError::InUse(_) => crate::error::ErrorKind::Busy,
    TenantError::Store(e) => crate::error::DomainError::kind(e),
    TenantError::Keyring(e) => crate::error::DomainError::kind(e),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_regions_are_validated() {
        assert_eq!(
            validate_name("  Acme Logistics ").unwrap(),
            "Acme Logistics"
        );
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{0}b").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
        let e = validate_name("pay\u{202E}lanoitan")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("U+202E") && e.contains("invalid tenant name"),
            "{e}"
        );
        assert!(validate_region("eu-central-1").is_ok());
        for bad in ["", "EU", "eu central", &"a".repeat(33)] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}

/// The tenant lifecycle for a caller whose permission is checked here: the web's platform
/// pages. (The CLI is the operator at the console, who holds every permission.)
pub mod by {
    use super::*;
    use crate::identity::{Caller, Permission};

    /// # Errors
    /// Permission, or as [`super::list`].
    pub fn list(app: &App, caller: &Caller) -> Result<Vec<Tenant>, TenantError> {
        caller.require(Permission::TenantsRead)?;
        super::list(app, false)
    }

    /// # Errors
    /// Permission, or as [`super::create`].
    pub fn create(
        app: &App,
        caller: &Caller,
        name: &str,
        region: Option<&str>,
    ) -> Result<Tenant, TenantError> {
        caller.require(Permission::TenantsManage)?;
        super::create(app, &caller.actor, name, region)
    }

    /// # Errors
    /// Permission, or as [`super::set_active`].
    pub fn set_active(
        app: &App,
        caller: &Caller,
        id: &TenantId,
        active: bool,
    ) -> Result<Tenant, TenantError> {
        caller.require(Permission::TenantsManage)?;
        super::set_active(app, &caller.actor, id, active)
    }

    /// # Errors
    /// Permission, or as [`super::delete`].
    pub fn delete(app: &App, caller: &Caller, id: &TenantId) -> Result<(), TenantError> {
        caller.require(Permission::TenantsManage)?;
        super::delete(app, &caller.actor, id)
    }
}
