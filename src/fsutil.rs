//! Durable file replacement: write a sibling temporary file, fsync it, rename it over the
//! target, fsync the directory. A crash leaves either the old file or the new one, whole.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces (or creates) `path` with `bytes` atomically, with file mode `mode`.
///
/// # Errors
/// Any I/O failure; the target is then unchanged.
pub fn replace_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes a rename or a new file in `dir` durable.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Opens (creating, mode 0600) a file used only for `flock`.
///
/// # Errors
/// The file cannot be opened.
pub fn open_lock_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Creates `dir` (and parents) with mode 0700, and makes sure an existing one is 0700 too.
///
/// # Errors
/// The directory cannot be created or its mode set.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// When root ran a command on a data directory that belongs to another user (the service
/// user of a packaged install), gives every file and directory root created in it back to
/// that user, so the service can open them. SQLite does the same for the WAL files it makes.
/// Symbolic links are neither followed nor changed. Returns how many entries changed owner.
///
/// # Errors
/// A directory cannot be read or an owner cannot be changed; the walk stops there.
pub fn hand_back_to_owner(dir: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(0);
    }
    let top = match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.uid() != 0 => m,
        Ok(_) => return Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut changed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Removed meanwhile (a lock file, a WAL checkpointed away): nothing to give.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.uid() == 0 {
                std::os::unix::fs::lchown(&path, Some(top.uid()), Some(top.gid()))?;
                changed += 1;
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_files_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        replace_atomically(&p, b"one", 0o600).unwrap();
        replace_atomically(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        assert!(replace_atomically(&dir.path().join("no/such/dir/f"), b"x", 0o600).is_err());
    }
}
