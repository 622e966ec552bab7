//! Durable file replacement: write a sibling temporary file, fsync it, rename it over the
//! target, fsync the directory. A crash leaves either the old file or the new one, whole.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The directory that holds `path`: `.` for a bare file name, whose `parent()` is the empty
/// path (which no directory call accepts), not `None`.
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Replaces (or creates) `path` with `bytes` atomically, with file mode `mode`.
///
/// # Errors
/// Any I/O failure; the target is then unchanged.
pub fn replace_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = dir_of(path);
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

/// A symbolic link where a directory must be.
#[derive(Debug, thiserror::Error)]
#[error("is a symbolic link, not a directory")]
pub struct LinkNotDirectory;

/// A path that names something other than a regular file, where only a file will do.
#[derive(Debug, thiserror::Error)]
#[error("is {0}, not a regular file")]
pub struct NotRegularFile(pub &'static str);

/// Opens `path` for reading only if it is a regular file, judged on the opened descriptor
/// (`O_NOFOLLOW`, then `fstat`), never by path first: a FIFO would block every reader
/// forever, a directory or device is never a key, and a symbolic link could be swapped
/// between a check and the open. `O_NONBLOCK` keeps the open of a FIFO from waiting for a
/// writer; it changes nothing for a regular file.
///
/// # Errors
/// Not found, not permitted, or [`NotRegularFile`] (as `InvalidInput`); see [`io_reason`].
pub fn open_regular(path: &Path) -> std::io::Result<(fs::File, fs::Metadata)> {
    use rustix::fs::OFlags;
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                NotRegularFile("a symbolic link"),
            ))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok((file, meta));
    }
    use std::os::unix::fs::FileTypeExt;
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        NotRegularFile(what),
    ))
}

/// Reads a small file (a key, a passphrase) through [`open_regular`], at most `limit` bytes.
///
/// # Errors
/// As [`open_regular`], or a read failure.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let (f, _) = open_regular(path)?;
    let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(limit.min(4096) as usize));
    f.take(limit).read_to_end(&mut raw)?;
    Ok(raw)
}

/// What went wrong with a file, for a message: "is a FIFO, not a regular file", or the I/O
/// error's kind ("permission denied"), never its full text.
pub fn io_reason(e: &std::io::Error) -> String {
    let inner = e.get_ref();
    if let Some(nr) = inner.and_then(|i| i.downcast_ref::<NotRegularFile>()) {
        return nr.to_string();
    }
    if let Some(link) = inner.and_then(|i| i.downcast_ref::<LinkNotDirectory>()) {
        return link.to_string();
    }
    e.kind().to_string()
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
/// For the data directory itself, which root chose (a link there is root's own).
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

/// As [`create_private_dir`], for a directory inside the data directory, which the service
/// user owns and may have changed: a symbolic link in its place is refused.
///
/// # Errors
/// The directory cannot be created or its mode set, or it is a symbolic link.
pub fn create_private_subdir(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Through a descriptor of the directory itself: a symbolic link in its place (which
    // `create` accepts as existing) is refused, not followed to chmod what it names.
    let flags = (OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC).bits() as i32;
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(dir)
        .map_err(|e| {
            // A link gives ELOOP, or ENOTDIR since O_DIRECTORY is judged on the link itself.
            let is_link = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, LinkNotDirectory)
            } else {
                e
            }
        })?;
    opened.set_permissions(fs::Permissions::from_mode(0o700))
}

/// When root ran a command on a data directory that belongs to another user (the service
/// user of a packaged install), gives every file and directory root created in it back to
/// that user, so the service can open them. SQLite does the same for the WAL files it makes.
/// Returns how many entries changed owner.
///
/// That user may be hostile (a compromised service) and may rename things under the walk, so
/// the walk never resolves a path twice: every entry is opened `O_PATH | O_NOFOLLOW` relative
/// to its already-open parent, checked and re-owned through that descriptor, and descended
/// into through it. A symlink is never followed nor changed, and a regular file with more
/// than one link (a hard link to something elsewhere) is left alone.
///
/// # Errors
/// A directory cannot be read or an owner cannot be changed; the walk stops there.
pub fn hand_back_to_owner(dir: &Path) -> std::io::Result<usize> {
    use rustix::fs::{chownat, fstat, openat, AtFlags, Dir, FileType, Gid, Mode, OFlags, Uid};
    use rustix::io::Errno;
    if !rustix::process::geteuid().is_root() {
        return Ok(0);
    }
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // The directory itself is root's configuration, so a link there is followed, once.
    let top = match openat(
        rustix::fs::CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let st = fstat(&top)?;
    if st.st_uid == 0 {
        return Ok(0);
    }
    // Only a Strongroom data directory: a mistyped --data-dir that names someone's folder
    // must not hand them root's files.
    let ours = [c"strongroom.lock", c"system.db"]
        .iter()
        .any(|name| openat(&top, *name, flags, Mode::empty()).is_ok());
    if !ours {
        return Ok(0);
    }
    let (uid, gid) = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
    let mut changed = 0;
    let mut pending = vec![top];
    while let Some(parent) = pending.pop() {
        // `parent` is an O_PATH descriptor: open the directory itself through it to list it.
        let listing = openat(
            &parent,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for entry in Dir::new(listing)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let fd = match openat(&parent, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                // Gone meanwhile (a lock file, a checkpointed WAL): nothing to give back.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let st = fstat(&fd)?;
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Symlink {
                continue;
            }
            let single = kind == FileType::Directory || st.st_nlink == 1;
            if st.st_uid == 0 && single {
                chownat(&fd, c"", Some(uid), Some(gid), AtFlags::EMPTY_PATH)?;
                changed += 1;
            }
            if kind == FileType::Directory {
                pending.push(fd);
            }
        }
    }
    Ok(changed)
}

/// Hands one file outside the data directory (the witness and its lock, under
/// `/var/log/strongroom` on a packaged install) back to the data directory's owner, when root
/// created it in a directory that owner owns. Through descriptors, like
/// [`hand_back_to_owner`]: a symlink or a hard-linked file is left alone.
///
/// # Errors
/// The owner cannot be changed.
pub fn hand_back_file(data_dir: &Path, file: &Path) -> std::io::Result<bool> {
    use rustix::fs::{chownat, fstat, openat, AtFlags, FileType, Gid, Mode, OFlags, Uid};
    if !rustix::process::geteuid().is_root() {
        return Ok(false);
    }
    let path_fd = |p: &Path, dir: bool| {
        let mut f = OFlags::PATH | OFlags::CLOEXEC;
        if dir {
            f |= OFlags::DIRECTORY;
        } else {
            f |= OFlags::NOFOLLOW;
        }
        openat(rustix::fs::CWD, p, f, Mode::empty())
    };
    let (Ok(data), Some(parent)) = (path_fd(data_dir, true), file.parent()) else {
        return Ok(false);
    };
    let owner = fstat(&data)?;
    let ours = openat(
        &data,
        c"system.db",
        OFlags::PATH | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .is_ok();
    let Ok(parent_fd) = path_fd(parent, true) else {
        return Ok(false);
    };
    let parent_st = fstat(&parent_fd)?;
    if !ours || owner.st_uid == 0 || parent_st.st_uid != owner.st_uid {
        return Ok(false);
    }
    let Some(name) = file.file_name() else {
        return Ok(false);
    };
    let fd = match openat(
        &parent_fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return Ok(false),
    };
    let st = fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_nlink != 1
        || st.st_uid != 0
    {
        return Ok(false);
    }
    chownat(
        &fd,
        c"",
        Some(Uid::from_raw(owner.st_uid)),
        Some(Gid::from_raw(owner.st_gid)),
        AtFlags::EMPTY_PATH,
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_is_never_a_link_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("tenants");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = create_private_subdir(&link).unwrap_err();
        assert_eq!(io_reason(&e), "is a symbolic link, not a directory");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the link's target is untouched");
        let real = dir.path().join("real");
        create_private_subdir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_subdir(&real).unwrap();
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(dir_of(Path::new("root.key")), Path::new("."));
        assert_eq!(dir_of(Path::new("/root.key")), Path::new("/"));
        assert_eq!(dir_of(Path::new("keys/root.key")), Path::new("keys"));
        // What the directory sync after a rename is given for a bare name must be syncable.
        sync_dir(dir_of(Path::new("root.key"))).unwrap();
    }

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

    #[test]
    fn hands_back_through_descriptors_and_never_follows_links() {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret");
        fs::write(&target, b"root's").unwrap();
        fs::create_dir(outside.path().join("dir")).unwrap();

        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        fs::create_dir(d.join("tenants")).unwrap();
        fs::write(d.join("tenants/new.db"), b"x").unwrap();
        open_lock_file(&d.join("strongroom.lock")).unwrap();
        std::os::unix::fs::lchown(d.join("strongroom.lock"), Some(4321), Some(4322)).unwrap();
        std::os::unix::fs::symlink(&target, d.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), d.join("dirlink")).unwrap();
        fs::hard_link(&target, d.join("hard")).unwrap();
        for p in [d.to_path_buf(), d.join("tenants")] {
            std::os::unix::fs::lchown(&p, Some(4321), Some(4322)).unwrap();
        }

        // tenants/new.db is the only root-owned, singly linked entry.
        assert_eq!(hand_back_to_owner(d).unwrap(), 1);
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&d.join("tenants/new.db")), (4321, 4322));
        assert_eq!(owner(&target), (0, 0), "a hard link's target stays root's");
        assert_eq!(owner(&d.join("link")), (0, 0), "links are not changed");
        assert_eq!(
            owner(&outside.path().join("dir")),
            (0, 0),
            "links are not followed"
        );
        // A root-owned directory is left entirely alone.
        assert_eq!(hand_back_to_owner(outside.path()).unwrap(), 0);
        // So is a folder of another user that is no data directory.
        fs::remove_file(d.join("strongroom.lock")).unwrap();
        fs::write(d.join("tenants/newer.db"), b"x").unwrap();
        assert_eq!(hand_back_to_owner(d).unwrap(), 0);
        assert_eq!(owner(&d.join("tenants/newer.db")), (0, 0));
    }
}
