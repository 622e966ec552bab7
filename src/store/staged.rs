//! Staged copies of a tenant file: a copy keyed for a new key version (made by a rotation, or
//! taken from an archive by a restore) waits beside the live file until the registry commit
//! makes it the tenant's data. Rotation, restore and the settling of an interrupted one all
//! use these, so they live here, in the store, and not in any of those modules.

use crate::ids::TenantId;
use std::path::{Path, PathBuf};

/// Where a copy of a tenant file keyed for key version `version` (re-encrypted by a rotation,
/// or taken from an archive by a restore) waits until it replaces the live file. The version
/// in the name is what decides, after a crash, what the copy is: the tenant's data exactly
/// when the registry's current key version for the tenant is `version`, because the registry
/// commit is the one step that makes a rotation or a restore happen.
pub fn staged_path(data_dir: &Path, id: &TenantId, version: u32) -> PathBuf {
    let mut p = super::tenants::tenant_path(data_dir, id).into_os_string();
    p.push(format!(".rekey-v{version}"));
    PathBuf::from(p)
}

/// The staged copies of a tenant file in `tenants/`, with the key version each was made for.
///
/// # Errors
/// `tenants/` cannot be read.
pub fn staged_copies(data_dir: &Path, id: &TenantId) -> std::io::Result<Vec<(u32, PathBuf)>> {
    let prefix = format!("{}.db.rekey-v", id.as_str());
    let entries = match std::fs::read_dir(data_dir.join("tenants")) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        // SQLite's side files (`-journal`, `-wal`) do not parse as a version: skipped here,
        // removed with their copy.
        let version = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(v) = version {
            out.push((v, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes a staged copy and whatever SQLite left beside it.
///
/// # Errors
/// The copy exists and cannot be removed.
pub fn remove_staged(path: &Path) -> std::io::Result<()> {
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut side = path.as_os_str().to_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Step 4 of a tenant rotation (and the last step of a tenant restore), also run when a
/// tenant opens after a crash between the registry commit and the rename: the copy staged for
/// key `version` replaces the file. Returns false when there is no such copy.
///
/// # Errors
/// The rename or the directory sync failed.
pub fn finish_tenant_rekey(data_dir: &Path, id: &TenantId, version: u32) -> std::io::Result<bool> {
    let staged = staged_path(data_dir, id, version);
    if !staged.exists() {
        return Ok(false);
    }
    // The copy holds everything the old file had, its WAL included: the tenant was held
    // alone from the copy on. The old file's side files would not match the new one.
    // The copy's own side files are spent too: its WAL was folded in before it was synced.
    let path = super::tenants::tenant_path(data_dir, id);
    for file in [&path, &staged] {
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = file.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
    std::fs::rename(&staged, &path)?;
    crate::fsutil::sync_dir(crate::fsutil::dir_of(&path))?;
    Ok(true)
}
