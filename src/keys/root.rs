//! Root-key rotation.
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

use super::KeysError;
use crate::app::App;
use crate::audit::{Actor, NewEntry};
use crate::keyring::system_key::SystemKeyFile;
use crate::keyring::{Key32, Keyring, RootKeySource};
use crate::store::{system, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};

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
    // From the rename on, the new key is the key, whatever follows: an operator told only
    // "cannot write" would keep escrowing the old one.
    crate::fsutil::sync_dir(crate::fsutil::dir_of(&key_file)).map_err(|e| KeysError::Write {
        path: key_file.display().to_string(),
        reason: format!(
            "the new root key is in place, but its directory could not be synced ({}); \
             escrow the new key now, and run any command to finish the rotation",
            e.kind()
        ),
    })?;
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
    app.system()
        .read(|c| unfinished_root_rotation_in(c, app.keyring().root_key_id()))
}

/// [`unfinished_root_rotation`] from a connection to `system.db`, for the root key
/// `root_key_id` this process holds.
///
/// # Errors
/// The registry cannot be read.
pub fn unfinished_root_rotation_in(
    c: &rusqlite::Connection,
    root_key_id: &str,
) -> Result<Option<String>, KeysError> {
    let named = system::meta_get(c, "root_key_id")
        .map_err(|e| StoreError::from_sqlite("system.db", 1, &e))?;
    Ok(named.filter(|id| id != root_key_id))
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
