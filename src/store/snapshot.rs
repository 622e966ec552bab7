//! Consistent online copies of a live file, for backups: SQLite's backup API copies every
//! page in one step under one read transaction, so the copy is the database as of one instant
//! even while its writer commits, and never a byte copy of a file in the middle of a write.
//! It copies pages rather than rebuilding the b-trees as `VACUUM INTO` would, which is faster.

use super::{open_connection, OpenSpec, StoreError};
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
    let target = OpenSpec {
        path: dest,
        create: true,
        ..*spec
    };
    let mut dst = open_connection(&target, false)?;
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
