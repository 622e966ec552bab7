//! Consistent online copies of a live file, for backups: SQLite's backup API copies every
//! page in one step under one read transaction, so the copy is the database as of one instant
//! even while its writer commits, and never a byte copy of a file in the middle of a write.
//! It copies pages rather than rebuilding the b-trees as `VACUUM INTO` would, which is faster.

use super::{open_connection, open_connection_as, Cipher, OpenSpec, StoreError};
use std::path::Path;

/// Writes a consistent copy of the file in `spec` to `dest` (which must not exist), encrypted
/// under the same key, and checks that the copy opens with it.
///
/// # Errors
/// The source cannot be read, or the copy cannot be written or does not open.
pub fn snapshot(spec: &OpenSpec<'_>, dest: &Path) -> Result<(), StoreError> {
    if dest.exists() {
        return Err(StoreError::Io {
            what: spec.label.to_string(),
            reason: format!("{} exists", dest.display()),
        });
    }
    let err = |e: rusqlite::Error| StoreError::from_sqlite(spec.label, spec.key_version, &e);
    let src = open_connection(spec, true)?;
    // Pages are copied as they are: the copy has its source's page size and profile.
    let profile = Cipher::of(&src).map_err(err)?;
    let target = OpenSpec {
        path: dest,
        create: true,
        ..*spec
    };
    let mut dst = open_connection_as(&target, false, Some(profile))?;
    dst.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(err)?;
    {
        // One step copies every page under a single read lock: a consistent copy.
        let b = rusqlite::backup::Backup::new(&src, &mut dst).map_err(err)?;
        match b.step(-1).map_err(err)? {
            rusqlite::backup::StepResult::Done => {}
            _ => {
                return Err(StoreError::Busy {
                    what: spec.label.to_string(),
                })
            }
        }
    }
    dst.execute_batch("PRAGMA journal_mode = DELETE;")
        .map_err(err)?;
    drop(dst);
    drop(src);
    let copy = OpenSpec {
        path: dest,
        create: false,
        ..*spec
    };
    open_connection(&copy, true).map(|_| ())
}

/// Writes a copy of the file in `spec` to `dest` encrypted under `new_key` (for a tenant key
/// rotation), with the same schema version, and checks that it opens with the new key.
///
/// # Errors
/// The source cannot be read, or the copy cannot be written or does not open.
pub fn reencrypt(
    spec: &OpenSpec<'_>,
    dest: &Path,
    new_key: &crate::keyring::Key32,
) -> Result<(), StoreError> {
    let err = |e: rusqlite::Error| {
        StoreError::from_sqlite(spec.label, spec.key_version, &e).on_full_disk(Some(dest))
    };
    let conn = open_connection(spec, false)?;
    let dest_str = dest.to_str().ok_or_else(|| StoreError::Io {
        what: spec.label.to_string(),
        reason: "path is not UTF-8".into(),
    })?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    // The source connection may not create files, and attached databases inherit that: make
    // the (empty, owner-only) file first.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| {
                StoreError::from_io(spec.label, &format!("cannot create {}", dest.display()), &e)
            })?;
    }
    crate::fault::point(11);
    // Sized up front and wiped on drop: no copy of the key is left in freed memory.
    let hex = new_key.to_hex();
    let mut attach = zeroize::Zeroizing::new(String::with_capacity(64 + hex.len()));
    attach.push_str("ATTACH DATABASE ?1 AS rekeyed KEY \"x'");
    attach.push_str(hex.as_str());
    attach.push_str("'\"");
    conn.execute(&attach, [dest_str]).map_err(err)?;
    // The copy is made in the profile of a new file of its kind, whichever its source had.
    let exported = conn
        .execute_batch(&Cipher::for_new(spec).pragmas("rekeyed"))
        .and_then(|()| conn.query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(())))
        .and_then(|()| conn.execute_batch(&format!("PRAGMA rekeyed.user_version = {version}")));
    let _ = conn.execute_batch("DETACH DATABASE rekeyed");
    exported.map_err(err)?;
    drop(conn);
    let copy = OpenSpec {
        path: dest,
        key: new_key,
        create: false,
        ..*spec
    };
    let check = open_connection(&copy, false)?;
    check
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(err)?;
    drop(check);
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .and_then(|()| crate::fsutil::sync_dir(crate::fsutil::dir_of(dest)))
        .map_err(|e| StoreError::from_io(spec.label, "sync the copy", &e))
}
