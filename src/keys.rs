//! Key lifecycle on an installation: root-key rotation and key status.
//!
//! # Root-key rotation, step by step
//!
//! 1. The new root key is written to `root.key.next` (0600, fsync) before anything uses it.
//! 2. In one `system.db` transaction, with its journal entry, every DEK wrapped under the old
//!    root key is also wrapped under the new one. Both wrappings now exist.
//! 3. `system.key` is rewritten with the system DEK wrapped under both keys.
//! 4. `root.key.next` is renamed over `root.key`: from here on, the new key is the key.
//! 5. `system.key` keeps only the new wrapping; the old wrappings are deleted in one journaled
//!    transaction, after checking that every DEK has a new one.
//!
//! A crash before step 4 leaves the old key in `root.key`, and the old wrappings are all still
//! there. A crash after it leaves the new key, and its wrappings were committed in step 2. So
//! the root key on disk always opens every tenant. The server, as it starts, and the next
//! rotation finish step 5 of a rotation that crashed after step 4. Tenant files are not re-encrypted: rotating
//! the root key re-wraps 1,000 tenants' keys in well under a second.
//!
//! Rotation runs alone: it takes the data directory's lock exclusively, so it refuses while
//! the server or another command has the directory open.

use crate::app::App;
use crate::audit::{Actor, NewEntry};
use crate::keyring::system_key::{SystemKeyError, SystemKeyFile};
use crate::keyring::{Key32, Keyring, KeyringError, RootKeySource};
use crate::store::{staged, system, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What a rotation did.
#[derive(Debug, Serialize)]
pub struct RootRotation {
    pub old_root_key_id: String,
    pub new_root_key_id: String,
    pub rewrapped: usize,
}

/// Where the next root key waits between steps 1 and 4.
pub fn next_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".next");
    key_file.with_file_name(name)
}

/// Checks that a root rotation can run here (the key is in a file this process may replace)
/// and makes this process the only one using the data directory; returns the key file.
///
/// # Errors
/// The key comes from a credential, or other processes use the directory.
pub fn ready_to_rotate_root(app: &App) -> Result<PathBuf, KeysError> {
    let key_file = match app.keyring().source() {
        RootKeySource::KeyFile(p) => p.clone(),
        other => return Err(KeysError::NotAKeyFile(other.to_string())),
    };
    app.lock_exclusive()?;
    Ok(key_file)
}

/// Rotates the root key. See the module documentation for the crash-safe sequence.
///
/// # Errors
/// The key is not in a file, other processes use the directory, or a write fails (the old
/// key then still opens everything).
pub fn rotate_root(app: &App, actor: &Actor) -> Result<RootRotation, KeysError> {
    let key_file = ready_to_rotate_root(app)?;
    if let Some(retired) = finish_root_rotation(app, actor)? {
        tracing::warn!(
            retired,
            "finished the root-key rotation a crash interrupted"
        );
    }
    let old = app.keyring();
    let old_id = old.root_key_id().to_string();
    let new = Keyring::new(Key32::random()?, RootKeySource::KeyFile(key_file.clone()))?;
    let new_id = new.root_key_id().to_string();
    let write_err = |path: &Path, e: std::io::Error| KeysError::Write {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    };

    // 1.
    let next = next_key_path(&key_file);
    // Sized up front: a reallocation would leave an unwiped copy of the key behind.
    new.replace_key_file(&next)
        .map_err(|e| write_err(&next, e))?;
    crate::fault::point(1);

    // 2.
    let rewrapped = rewrap_all(app, &new, actor, &old_id)?;
    crate::fault::point(2);

    // 3.
    let key_path = crate::app::system_key_path(app.data_dir());
    app.add_system_key_wrapping(&new)?;
    crate::fault::point(3);

    // 4.
    std::fs::rename(&next, &key_file).map_err(|e| write_err(&key_file, e))?;
    crate::fsutil::sync_dir(key_file.parent().unwrap_or_else(|| Path::new(".")))
        .map_err(|e| write_err(&key_file, e))?;
    crate::fault::point(4);

    // 5.
    let mut skf = SystemKeyFile::read(&key_path)?;
    skf.keep_only(&new_id);
    skf.write(&key_path)?;
    crate::fault::point(5);
    drop_old_wrappings(app, &new, actor, &old_id)?;
    Ok(RootRotation {
        old_root_key_id: old_id,
        new_root_key_id: new_id,
        rewrapped,
    })
}

/// Finishes a root-key rotation that stopped after its switch (step 4): the key file holds
/// the new key, but `system.db` still names the old one as current. Runs step 5, which
/// retires the old key; returns its id, or `None` when no rotation was left unfinished.
/// Safe beside other processes: after the switch, every process holds the new key.
///
/// # Errors
/// The registry or `system.key` cannot be read or written, or a DEK has no wrapping under
/// the new key (then nothing is deleted).
pub fn finish_root_rotation(app: &App, actor: &Actor) -> Result<Option<String>, KeysError> {
    let Some(old_id) = unfinished_root_rotation(app)? else {
        return Ok(None);
    };
    let current = app.keyring().root_key_id();
    let key_path = crate::app::system_key_path(app.data_dir());
    let mut skf = SystemKeyFile::read(&key_path)?;
    skf.keep_only(current);
    skf.write(&key_path)?;
    drop_old_wrappings(app, app.keyring(), actor, &old_id)?;
    Ok(Some(old_id))
}

/// The id of the old root key when a root-key rotation stopped after its switch and still
/// has to retire it (see [`finish_root_rotation`]); `None` otherwise.
///
/// # Errors
/// The registry cannot be read.
pub fn unfinished_root_rotation(app: &App) -> Result<Option<String>, KeysError> {
    let named = app
        .system()
        .read(|c| system::meta_get(c, "root_key_id").map_err(|e| app.system().err(&e)))?;
    Ok(named.filter(|id| id != app.keyring().root_key_id()))
}

/// Step 2: wraps every DEK under `new` too, in one journaled transaction.
fn rewrap_all(app: &App, new: &Keyring, actor: &Actor, old_id: &str) -> Result<usize, KeysError> {
    let rows = app
        .system()
        .read(|c| system::key_rows(c).map_err(|e| app.system().err(&e)))?;
    let mut fresh = Vec::new();
    for row in rows.iter().filter(|r| r.root_key_id == old_id) {
        let dek = app
            .keyring()
            .unwrap_dek(row.tenant_id.as_str(), row.version, &row.wrapped)?;
        fresh.push(system::KeyRow {
            root_key_id: new.root_key_id().to_string(),
            wrapped: new.wrap_dek(row.tenant_id.as_str(), row.version, &dek)?,
            ..row.clone()
        });
    }
    let n = fresh.len();
    let params = serde_json::json!({
        "old_root_key_id": old_id,
        "new_root_key_id": new.root_key_id(),
        "rewrapped": n,
    });
    let actor = actor.clone();
    let start = std::time::Instant::now();
    app.system()
        .writer()
        .change(move |tx| -> Result<_, StoreError> {
            for row in &fresh {
                system::insert_key_row(tx.conn(), row).map_err(|e| tx.err(&e))?;
            }
            let entry = NewEntry::new(actor, "keys.rotate_root", "root-key")
                .params(params)
                .since(start);
            Ok(((), entry))
        })
        .wait()?;
    Ok(n)
}

/// Step 5: deletes the old wrappings, after making sure every DEK has a new one (wrapping
/// any that a concurrent writer could have added under the old key).
fn drop_old_wrappings(
    app: &App,
    new: &Keyring,
    actor: &Actor,
    old_id: &str,
) -> Result<(), KeysError> {
    let rows = app
        .system()
        .read(|c| system::key_rows(c).map_err(|e| app.system().err(&e)))?;
    let has_new = |r: &system::KeyRow| {
        rows.iter().any(|n| {
            n.root_key_id == new.root_key_id()
                && n.tenant_id == r.tenant_id
                && n.version == r.version
        })
    };
    let mut missing = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.root_key_id == old_id && !has_new(r))
    {
        let dek = app
            .keyring()
            .unwrap_dek(row.tenant_id.as_str(), row.version, &row.wrapped)?;
        missing.push(system::KeyRow {
            root_key_id: new.root_key_id().to_string(),
            wrapped: new.wrap_dek(row.tenant_id.as_str(), row.version, &dek)?,
            ..row.clone()
        });
    }
    let keep = new.root_key_id().to_string();
    let params = serde_json::json!({ "old_root_key_id": old_id, "new_root_key_id": keep });
    let actor = actor.clone();
    app.system()
        .writer()
        .change_or_nothing(move |tx| -> Result<_, StoreError> {
            // Another process (a server finishing the same interrupted rotation) may have
            // retired the old key already: then there is nothing to do or to journal.
            let named = system::meta_get(tx.conn(), "root_key_id").map_err(|e| tx.err(&e))?;
            if named.as_deref() == Some(keep.as_str()) {
                return Ok(((), None));
            }
            for row in &missing {
                system::insert_key_row(tx.conn(), row).map_err(|e| tx.err(&e))?;
            }
            system::delete_other_wrappings(tx.conn(), &keep).map_err(|e| tx.err(&e))?;
            system::meta_set(tx.conn(), "root_key_id", &keep).map_err(|e| tx.err(&e))?;
            system::meta_set(tx.conn(), "root_key_since_us", &tx.now_us().to_string())
                .map_err(|e| tx.err(&e))?;
            let entry = NewEntry::new(actor, "keys.retire_root", "root-key").params(params);
            Ok(((), Some(entry)))
        })
        .wait()?;
    app.system().fold_wal();
    Ok(())
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
    let now = app.clock().now_us();
    let max_age = app.config().keys.max_age_days;
    let age = |since: Option<i64>| since.map(|s| ((now - s).max(0) / 86_400_000_000) as u64);
    let old = |days: Option<u64>| matches!((days, max_age), (Some(d), Some(m)) if d > m);
    let (since, rows, tenants) = app.system().read(|c| {
        let err = |e: rusqlite::Error| app.system().err(&e);
        Ok::<_, StoreError>((
            system::meta_get(c, "root_key_since_us").map_err(err)?,
            system::key_rows(c).map_err(err)?,
            system::list(c, false).map_err(err)?,
        ))
    })?;
    let root_since = since.and_then(|s| s.parse().ok());
    let mut out = vec![KeyStatus {
        owner: "root".into(),
        version: 1,
        key_id: Some(app.keyring().root_key_id().to_string()),
        source: Some(app.keyring().source().to_string()),
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

/// What a tenant key rotation did.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TenantRotation {
    pub tenant: String,
    pub old_version: u32,
    pub new_version: u32,
}

/// Gives a tenant a new data key and re-encrypts its file under it.
///
/// 1. The tenant is taken from every other process (refused if one has it open); writes to
///    it wait, other tenants are untouched.
/// 2. The file is copied, re-encrypted under the new DEK, to `<id>.db.rekey-v<new>` (fsync).
/// 3. One `system.db` transaction adds the new wrapped DEK, makes it current and journals
///    the rotation with both versions; the old wrapping stays for now.
/// 4. The copy is renamed over the file.
/// 5. The old wrapping is destroyed, and the tenant's own journal records the rotation.
///
/// A crash before 3 leaves the old key and file, and the next open discards the copy (its
/// version is not the registry's, however far the copy got). After 3, opening the tenant
/// finishes the rename (step 4) itself. The journals hold key versions, never key material.
///
/// # Errors
/// Unknown tenant, tenant in use elsewhere, or a storage fault (before step 3: nothing
/// changed).
pub fn rotate_tenant(
    app: &App,
    actor: &Actor,
    id: &crate::tenants::TenantId,
) -> Result<TenantRotation, KeysError> {
    use crate::store::{self, tenants as st, FileKind, OpenSpec};
    let start = std::time::Instant::now();
    crate::tenants::usable(app, id).map_err(tenant_err)?;
    // A rotation interrupted earlier is resolved first: its copy may be the live data.
    crate::tenants::settle(app, id).map_err(tenant_err)?;
    let (t, old) = crate::tenants::tenant_keys(app, id).map_err(tenant_err)?;
    let exclusive = app
        .tenant_stores()
        .take_exclusive(id, crate::store::tenants::Hold::Pause)
        .map_err(|e| match e {
            StoreError::Busy { .. } => {
                KeysError::App(crate::app::AppError::InUse(format!("tenant {id}")))
            }
            other => other.into(),
        })?;
    let result = (|| {
        let new_version = t.key_version + 1;
        let new_dek = Key32::random()?;
        let label = st::tenant_label(id);
        let path = st::tenant_path(app.data_dir(), id);
        let staged = staged::staged_path(app.data_dir(), id, new_version);
        staged::remove_staged(&staged).map_err(|e| KeysError::Write {
            path: staged.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        let spec = OpenSpec {
            path: &path,
            label: &label,
            key: old.dek(),
            key_version: old.version,
            kind: FileKind::Tenant,
            create: false,
            busy_timeout: Duration::from_secs(30),
            plaintext: false,
        };
        store::snapshot::reencrypt(&spec, &staged, &new_dek)?;
        crate::fault::point(12);

        let wrapped = app.keyring().wrap_dek(id.as_str(), new_version, &new_dek)?;
        let row = system::KeyRow {
            tenant_id: id.clone(),
            version: new_version,
            root_key_id: app.keyring().root_key_id().to_string(),
            wrapped,
            created_us: app.clock().now_us(),
        };
        let params = serde_json::json!({ "old_version": old.version, "new_version": new_version });
        let (tid, a, p) = (id.clone(), actor.clone(), params.clone());
        let op_id = crate::keyring::random_id()?;
        app.system()
            .writer()
            .change(move |tx| -> Result<_, StoreError> {
                system::insert_key_row(tx.conn(), &row).map_err(|e| tx.err(&e))?;
                system::set_key_version(tx.conn(), &tid, new_version).map_err(|e| tx.err(&e))?;
                // The tenant's own journal gets its entry when the file next opens, even if
                // this process dies first.
                system::outbox_push(
                    tx.conn(),
                    &tid,
                    &op_id,
                    &a,
                    "keys.rotate_tenant",
                    &p,
                    tx.now_us(),
                )
                .map_err(|e| tx.err(&e))?;
                // The op id ties this entry to the one the tenant's journal receives, so
                // verify can cross-check the two journals.
                let mut sys_params = p;
                sys_params["op_id"] = op_id.clone().into();
                let entry = NewEntry::new(a, "keys.rotate_tenant", tid.as_str())
                    .params(sys_params)
                    .since(start);
                Ok(((), entry))
            })
            .wait()?;
        crate::fault::point(13);

        staged::finish_tenant_rekey(app.data_dir(), id, new_version).map_err(|e| {
            KeysError::Write {
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            }
        })?;
        crate::fault::point(14);

        destroy_older_tenant_keys(app, actor, id, new_version)?;
        Ok(new_version)
    })();
    let new_version = match result {
        Ok(r) => r,
        Err(e) => {
            // Never committed (the registry does not name the copy's version): the copy goes
            // now, not at the next open. If the registry cannot even be read, it stays for
            // the next open to settle.
            let attempted = t.key_version + 1;
            let committed = crate::tenants::get(app, id)
                .map(|now| now.key_version == attempted)
                .unwrap_or(true);
            if !committed {
                let _ = staged::remove_staged(&staged::staged_path(app.data_dir(), id, attempted));
            }
            drop(exclusive);
            app.tenant_stores().reopen_allowed(id);
            return Err(e);
        }
    };
    drop(exclusive);
    app.tenant_stores().reopen_allowed(id);
    // Opening the tenant delivers the rotation's entry to its own journal.
    drop(crate::tenants::open_store(app, id).map_err(tenant_err)?);
    Ok(TenantRotation {
        tenant: id.to_string(),
        old_version: old.version,
        new_version,
    })
}

/// The last step of a tenant rotation or restore: the tenant's wrapped keys older than
/// `keep` are destroyed, and the WAL is folded in at once so they do not linger on disk.
///
/// # Errors
/// The registry cannot be written.
pub fn destroy_older_tenant_keys(
    app: &App,
    actor: &Actor,
    id: &crate::tenants::TenantId,
    keep: u32,
) -> Result<(), StoreError> {
    let (tid, actor) = (id.clone(), actor.clone());
    app.system()
        .writer()
        .change_or_nothing(move |tx| -> Result<_, StoreError> {
            let n =
                system::delete_key_versions_below(tx.conn(), &tid, keep).map_err(|e| tx.err(&e))?;
            // Destroying a key is a crypto-shred of whatever only it could open: on the
            // record, like any other change.
            let entry = (n > 0).then(|| {
                NewEntry::new(actor, "keys.destroy_tenant_keys", tid.as_str())
                    .params(serde_json::json!({ "below_version": keep, "destroyed": n }))
            });
            Ok(((), entry))
        })
        .wait()?;
    app.system().fold_wal();
    Ok(())
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
