//! Restoring from an archive: the options and reports, the whole-installation entry point,
//! and what both kinds of restore share. The whole-installation restore is in [`whole`], the
//! restore of one tenant into a live installation in [`tenant`].

use super::*;

mod tenant;
mod whole;

pub use tenant::restore_tenant;

/// How to restore.
pub struct RestoreOptions<'a> {
    /// The key or passphrase that opens the archive.
    pub opening: Opening<'a>,
    /// Where to write the root key if the target has none (default: the configured file).
    pub root_key_out: Option<&'a Path>,
    /// Replace an existing installation (moved aside, not deleted).
    pub force: bool,
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub tenants: usize,
    pub moved_aside: Option<PathBuf>,
    pub wrote_root_key: bool,
}

/// What a single-tenant restore did.
#[derive(Debug, Serialize)]
pub struct TenantRestored {
    pub tenant: String,
    pub key_version: u32,
    pub replaced_live_tenant: bool,
}

/// Restores a whole installation into `data_dir`: checks everything first (nothing is
/// touched if anything is wrong), refuses live data unless `force` (then moves it aside),
/// and records `backup.restore` in the system journal and in every restored tenant journal,
/// each chain continuing where it was.
///
/// # Errors
/// Any archive or key problem, live data without `force`, or a directory in use.
pub fn restore(
    archive_path: &Path,
    data_dir: &Path,
    config: &crate::config::Config,
    options: RestoreOptions<'_>,
    actor: &Actor,
    progress: Progress<'_>,
) -> Result<Restored, BackupError> {
    let RestoreOptions {
        opening,
        root_key_out,
        force,
    } = options;
    let live = data_dir.join("system.db").exists();
    // A directory a killed restore left behind is no installation to protect: the restore
    // the marker asks for may run without --force.
    let pending = app::PendingRestore::read(data_dir).is_some();
    if live && !force && !pending {
        return Err(BackupError::LiveData(data_dir.display().to_string()));
    }
    // Staging lives inside the data directory, on the same filesystem as its final place (the
    // directory may be a mount point). A directory this call creates goes again on failure.
    let created_dir = !data_dir.exists();
    let result = whole::restore_into(
        archive_path,
        data_dir,
        config,
        opening,
        root_key_out,
        live,
        actor,
        progress,
    );
    if result.is_err() && created_dir {
        let _ = std::fs::remove_dir_all(data_dir);
    }
    result
}

/// What a whole-installation restore replaces in the data directory. Whatever of these is
/// there first is moved aside, so afterwards every one of them is the restore's own.
const SWAPPED: [&str; 6] = [
    "system.db",
    "system.db-wal",
    "system.db-shm",
    "system.db-journal",
    "system.key",
    "tenants",
];

/// Undoes a whole-installation restore that failed part-way: removes what it placed and moves
/// back what it had moved aside. `existing` is what was there before; `moved`, what of that
/// reached the aside folder.
fn undo_swap(
    data_dir: &Path,
    aside: Option<&Path>,
    existing: &[&str],
    moved: &[&str],
) -> std::io::Result<()> {
    for name in SWAPPED {
        // Still the original where it was never moved: leave it.
        if existing.contains(&name) && !moved.contains(&name) {
            continue;
        }
        let p = data_dir.join(name);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if let Some(aside) = aside {
        for name in moved {
            std::fs::rename(aside.join(name), data_dir.join(name))?;
        }
        std::fs::remove_dir(aside)?;
    }
    crate::fsutil::sync_dir(data_dir)
}

/// Refuses an archive with any file that fails its check: nothing is restored from it.
fn refuse_unverified(unpacked: &Unpacked) -> Result<(), BackupError> {
    let report = check_unpacked(unpacked)?;
    if let Some(bad) = report.files.iter().find(|f| !f.ok()) {
        return Err(BackupError::Invalid(format!(
            "the archive does not verify ({}); nothing was restored",
            bad.label
        )));
    }
    Ok(())
}
