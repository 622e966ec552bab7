//! Where the root key comes from: a systemd credential first, then the configured key file.
//!
//! The key is stored as 64 hex characters (plus an optional newline) so that it can be pasted
//! into `systemd-creds encrypt` or a secret store; 32 raw bytes are accepted too.

use super::{Key32, KeyringError};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The credential name systemd exposes under `$CREDENTIALS_DIRECTORY`.
pub const ROOT_KEY_CREDENTIAL: &str = "root-key";

/// Where the loaded root key came from; shown by `doctor` and `/status`, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootKeySource {
    SystemdCredential(PathBuf),
    KeyFile(PathBuf),
    /// Generated in memory (benchmarks, tests); never persisted.
    Test,
}

impl std::fmt::Display for RootKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SystemdCredential(p) => write!(f, "systemd credential {}", p.display()),
            Self::KeyFile(p) => write!(f, "key file {}", p.display()),
            Self::Test => f.write_str("ephemeral key"),
        }
    }
}

/// Loads the root key: `$CREDENTIALS_DIRECTORY/root-key` if that credential exists, otherwise
/// `key_file`, which must not be readable by group or others.
///
/// # Errors
/// Missing, unreadable, malformed or too-open key sources, each named with its fix.
pub fn load_root_key(
    credentials_dir: Option<&Path>,
    key_file: &Path,
) -> Result<(Key32, RootKeySource), KeyringError> {
    if let Some(dir) = credentials_dir {
        let cred = dir.join(ROOT_KEY_CREDENTIAL);
        match crate::fsutil::open_regular(&cred) {
            Ok((file, _)) => {
                let key = read_key(file, &cred)?;
                return Ok((key, RootKeySource::SystemdCredential(cred)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(KeyringError::RootKeyUnreadable {
                    source_name: cred.display().to_string(),
                    reason: crate::fsutil::io_reason(&e),
                })
            }
        }
    }
    // Judged on the opened descriptor: what is checked is what is read.
    match crate::fsutil::open_regular(key_file) {
        Ok((file, meta)) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyringError::RootKeyFileMode {
                    file: key_file.display().to_string(),
                    mode,
                });
            }
            let key = read_key(file, key_file)?;
            Ok((key, RootKeySource::KeyFile(key_file.to_path_buf())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(KeyringError::RootKeyMissing {
            credential: credentials_dir
                .map(|d| d.join(ROOT_KEY_CREDENTIAL).display().to_string())
                .unwrap_or_else(|| format!("$CREDENTIALS_DIRECTORY/{ROOT_KEY_CREDENTIAL}")),
            file: key_file.display().to_string(),
        }),
        Err(e) => Err(KeyringError::RootKeyUnreadable {
            source_name: key_file.display().to_string(),
            reason: crate::fsutil::io_reason(&e),
        }),
    }
}

fn read_key(file: fs::File, path: &Path) -> Result<Key32, KeyringError> {
    let name = path.display().to_string();
    let mut raw = Zeroizing::new(Vec::with_capacity(80));
    file.take(256)
        .read_to_end(&mut raw)
        .map_err(|e| KeyringError::RootKeyUnreadable {
            source_name: name.clone(),
            reason: e.kind().to_string(),
        })?;
    parse_key(&raw).ok_or(KeyringError::RootKeyMalformed { source_name: name })
}

/// Parses key bytes as a key file holds them (32 raw bytes, or 64 hex characters).
pub fn load_root_key_bytes(raw: &[u8]) -> Option<Key32> {
    parse_key(raw)
}

fn parse_key(raw: &[u8]) -> Option<Key32> {
    if raw.len() == 32 {
        return Key32::from_slice(raw);
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    if text.len() != 64 {
        return None;
    }
    Key32::from_hex(text)
}

/// Writes a new key file with mode 0600; refuses to replace an existing file.
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_root_key_file(path: &Path, key: &Key32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // Two writes rather than a pushed newline: growing the hex string could reallocate and
    // leave an unwiped copy of the key in freed memory.
    f.write_all(key.to_hex().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    // The new directory entry must survive a power loss too, or the data sealed under this
    // key outlives the key.
    crate::fsutil::sync_dir(crate::fsutil::dir_of(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mode_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        let k = Key32::random().unwrap();
        write_root_key_file(&p, &k).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (loaded, src) = load_root_key(None, &p).unwrap();
        assert_eq!(loaded.expose(), k.expose());
        assert_eq!(src, RootKeySource::KeyFile(p.clone()));
        assert!(write_root_key_file(&p, &k).is_err(), "must not overwrite");

        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_root_key(None, &p).unwrap_err();
        assert!(matches!(
            err,
            KeyringError::RootKeyFileMode { mode: 0o640, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn credential_wins_over_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        fs::create_dir(&creds).unwrap();
        fs::write(creds.join(ROOT_KEY_CREDENTIAL), [9u8; 32]).unwrap();
        let (k, src) = load_root_key(Some(&creds), &dir.path().join("absent")).unwrap();
        assert_eq!(k.expose(), &[9u8; 32]);
        assert!(matches!(src, RootKeySource::SystemdCredential(_)));
    }

    #[test]
    fn broken_key_sources_get_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_root_key(None, &dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, KeyringError::RootKeyMissing { .. }));
        assert!(missing.to_string().contains("strongroom init"));

        for bad in [
            &b"short"[..],
            &[b'z'; 64][..],
            &[b'a'; 63][..],
            &[0u8; 33][..],
        ] {
            let p = dir.path().join("bad.key");
            let _ = fs::remove_file(&p);
            fs::write(&p, bad).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_root_key(None, &p).unwrap_err();
            assert!(
                matches!(err, KeyringError::RootKeyMalformed { .. }),
                "{err}"
            );
            assert!(!err.to_string().contains("zzzz"));
        }
    }

    /// Anything but a regular file is refused at once, on the opened descriptor: a FIFO would
    /// block every command forever, and a directory is not "fixed with chmod 600".
    #[test]
    fn key_sources_that_are_not_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.key");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o600)).unwrap();
        let sub = dir.path().join("dir.key");
        fs::create_dir(&sub).unwrap();
        let target = dir.path().join("real.key");
        write_root_key_file(&target, &Key32::random().unwrap()).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for (path, what) in [
            (fifo, "a FIFO"),
            (sub, "a directory"),
            (link, "a symbolic link"),
        ] {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || {
                let _ = tx.send(
                    load_root_key(None, &p)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                );
            });
            let err = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("loading the key blocked")
                .unwrap_err();
            assert!(
                err.contains(what) && err.contains("not a regular file"),
                "{err}"
            );
            assert!(!err.contains("chmod"), "{err}");
        }
        // The same checks hold for the credential directory.
        let creds = tempfile::tempdir().unwrap();
        fs::create_dir(creds.path().join(ROOT_KEY_CREDENTIAL)).unwrap();
        let err = load_root_key(Some(creds.path()), &target)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a directory"), "{err}");
    }
}
