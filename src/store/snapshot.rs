//! Consistent online copies of a live file, for backups: `VACUUM INTO` runs inside one read
//! transaction, so the copy is the database as of one instant even while its writer commits,
//! and never a byte copy of a file in the middle of a write.

use super::{open_connection, OpenSpec, StoreError};
use std::path::Path;

/// Writes a consistent copy of the file in `spec` to `dest` (which must not exist), encrypted
/// under the same key, and checks that the copy opens with it.
///
/// # Errors
/// The source cannot be read, or the copy cannot be written or does not open.
pub fn snapshot(spec: &OpenSpec<'_>, dest: &Path) -> Result<(), StoreError> {
    let conn = open_connection(spec, true)?;
    let dest_str = dest.to_str().ok_or_else(|| StoreError::Io {
        what: spec.label.to_string(),
        reason: "snapshot path is not UTF-8".into(),
    })?;
    conn.execute("VACUUM INTO ?1", [dest_str])
        .map_err(|e| StoreError::from_sqlite(spec.label, spec.key_version, &e))?;
    drop(conn);
    let copy = OpenSpec {
        path: dest,
        create: false,
        ..*spec
    };
    open_connection(&copy, true).map(|_| ())
}
