//! The whole-installation restore: the archive checked, the root key settled, the live data
//! moved aside under a `restore.pending` marker, the archive's members placed and the restore
//! journaled, or all of it undone.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn restore_into(
    archive_path: &Path,
    data_dir: &Path,
    config: &crate::config::Config,
    opening: Opening<'_>,
    root_key_out: Option<&Path>,
    live: bool,
    actor: &Actor,
    progress: Progress<'_>,
) -> Result<Restored, BackupError> {
    let unpacked = unpack_whole(archive_path, data_dir, opening, progress)?;
    // From here on the archive is known good.
    crate::fsutil::create_private_dir(data_dir)
        .map_err(io_err(format!("create {}", data_dir.display())))?;
    let lock = app::lock_file(data_dir)?;
    lock.try_lock()
        .map_err(|_| app::AppError::InUse(data_dir.display().to_string()))?;
    let wrote_root_key = ensure_root_key(config, data_dir, root_key_out, &unpacked)?;
    // The witness is not among the files moved aside (it may live elsewhere), but the
    // restore rewrites it: kept here, it is put back with the live data if the restore fails,
    // or the live journals would no longer match their witnessed heads.
    let witness = app::witness_path(config, data_dir);
    let witnessed = match std::fs::read(&witness) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(format!("read {}", witness.display()))(e)),
    };
    let mut swap = Swap::mark(data_dir)?;

    let n = unpacked.manifest.tenants.len();
    let outcome = (|| -> Result<(), BackupError> {
        swap.move_aside(data_dir)?;
        crate::fault::point(31);
        place_members(data_dir, &unpacked)?;
        crate::fault::point(33);
        crate::fault::fail(32).map_err(io_err("journal the restore"))?;
        journal_restore(config, data_dir, &lock, &unpacked, live, actor)
    })();
    if let Err(e) = outcome {
        let e = swap.undo(data_dir, e);
        let put_back = match &witnessed {
            Some(bytes) => crate::fsutil::replace_atomically(&witness, bytes, 0o600),
            None => std::fs::remove_file(&witness).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
        return Err(match put_back {
            Ok(()) => e,
            Err(w) => BackupError::Io {
                what: "undo the failed restore".into(),
                reason: format!(
                    "{e}; then the witness {} could not be put back ({})",
                    witness.display(),
                    w.kind()
                ),
            },
        });
    }
    app::PendingRestore::clear(data_dir).map_err(io_err("remove restore.pending"))?;
    drop(lock);
    let moved_aside = swap.aside;
    Ok(Restored {
        data_dir: data_dir.to_path_buf(),
        tenants: n,
        moved_aside,
        wrote_root_key,
    })
}

/// Unpacks the archive into `data_dir` and refuses it unless it is a whole installation that
/// verifies.
fn unpack_whole(
    archive_path: &Path,
    data_dir: &Path,
    opening: Opening<'_>,
    progress: Progress<'_>,
) -> Result<Unpacked, BackupError> {
    crate::fsutil::create_private_dir(data_dir)
        .map_err(io_err(format!("create {}", data_dir.display())))?;
    let unpacked = unpack(archive_path, opening, data_dir, progress)?;
    if unpacked.manifest.scope != "all" {
        return Err(BackupError::Invalid(
            "this archive holds a single tenant; a whole-installation restore needs an archive made without --tenant".into(),
        ));
    }
    refuse_unverified(&unpacked)?;
    Ok(unpacked)
}

/// The root key the restored installation will open with must be the archive's: check the
/// one already in place (a credential, or the configured key file) before anything moves,
/// and write the archive's first where there is none. True when it wrote the key.
fn ensure_root_key(
    config: &crate::config::Config,
    data_dir: &Path,
    root_key_out: Option<&Path>,
    unpacked: &Unpacked,
) -> Result<bool, BackupError> {
    let key_file = root_key_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app::root_key_file(config, data_dir));
    let present = match crate::keyring::load_root_key(app::credentials_dir().as_deref(), &key_file)
    {
        Ok((k, source)) => Some((crate::keyring::root_key_id(&k)?, source)),
        Err(crate::keyring::KeyringError::RootKeyMissing { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    match present {
        Some((id, source)) if id != unpacked.keyring.root_key_id() => {
            Err(BackupError::Invalid(format!(
                "the root key in {source} (id {id}) is not the archive's (id {}); move it away or \
                 install the archive's key there first; nothing was restored",
                unpacked.keyring.root_key_id()
            )))
        }
        Some(_) => Ok(false),
        None => {
            unpacked
                .keyring
                .write_key_file(&key_file)
                .map_err(io_err(format!("write {}", key_file.display())))?;
            Ok(true)
        }
    }
}

/// The live data's way aside and back: what of [`SWAPPED`] was there, where it goes, what
/// has gone so far, and the `restore.pending` marker that was there before.
struct Swap {
    existing: Vec<&'static str>,
    aside: Option<PathBuf>,
    moved: Vec<&'static str>,
    prior: Option<app::PendingRestore>,
}

impl Swap {
    /// From here on the directory changes. `restore.pending` marks it until the restore is
    /// complete or undone: after a crash nothing opens or re-initializes a directory holding
    /// half of one installation and half of another.
    fn mark(data_dir: &Path) -> Result<Self, BackupError> {
        let existing: Vec<&str> = SWAPPED
            .iter()
            .copied()
            .filter(|name| data_dir.join(name).exists())
            .collect();
        let aside = if existing.is_empty() {
            None
        } else {
            Some(
                tempfile::Builder::new()
                    .prefix("pre-restore-")
                    .tempdir_in(data_dir)
                    .map_err(io_err("create a pre-restore directory"))?
                    .keep(),
            )
        };
        let prior = app::PendingRestore::read(data_dir);
        let mut pending = prior.clone().unwrap_or_default();
        pending.format = 1;
        if let Some(name) = aside.as_ref().and_then(|a| a.file_name()) {
            pending
                .moved_aside
                .push(name.to_string_lossy().into_owned());
        }
        pending
            .write(data_dir)
            .map_err(io_err("write restore.pending"))?;
        Ok(Self {
            existing,
            aside,
            moved: Vec::new(),
            prior,
        })
    }

    fn move_aside(&mut self, data_dir: &Path) -> Result<(), BackupError> {
        if let Some(aside) = &self.aside {
            for name in &self.existing {
                std::fs::rename(data_dir.join(name), aside.join(name))
                    .map_err(io_err(format!("move {name} aside")))?;
                self.moved.push(*name);
            }
        }
        Ok(())
    }

    /// Fail closed, and lose nothing: put back what was there, and the marker as it was
    /// (an earlier killed restore's, or none). Returns the error to report for `e`.
    fn undo(&self, data_dir: &Path, e: BackupError) -> BackupError {
        let undone = undo_swap(data_dir, self.aside.as_deref(), &self.existing, &self.moved)
            .and_then(|()| match &self.prior {
                Some(p) => p.write(data_dir),
                None => app::PendingRestore::clear(data_dir),
            });
        match undone {
            Ok(()) => e,
            Err(undo) => BackupError::Io {
                what: "undo the failed restore".into(),
                reason: format!(
                    "{e}; then {}; the earlier data is in {}",
                    undo.kind(),
                    self.aside
                        .as_deref()
                        .map(|a| a.display().to_string())
                        .unwrap_or_else(|| "no folder (there was none)".into())
                ),
            },
        }
    }
}

/// Moves the archive's members (all but `root.key`) from staging into place, durably.
fn place_members(data_dir: &Path, unpacked: &Unpacked) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    crate::fsutil::create_private_subdir(&data_dir.join("tenants"))
        .map_err(io_err("create tenants/"))?;
    let staged = unpacked.dir.path();
    for m in &unpacked.manifest.members {
        if m.name == "root.key" {
            continue;
        }
        let to = data_dir.join(&m.name);
        // The mode is set in the private staging directory, before the rename: after it,
        // the path is in a directory the service user can change, and a chmod by path
        // would follow whatever link was put there.
        std::fs::set_permissions(staged.join(&m.name), std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("set the mode of {}", m.name)))?;
        std::fs::rename(staged.join(&m.name), &to).map_err(io_err(format!("place {}", m.name)))?;
    }
    crate::fsutil::sync_dir(data_dir).map_err(io_err("sync the data directory"))?;
    crate::fsutil::sync_dir(&data_dir.join("tenants")).map_err(io_err("sync tenants/"))
}

/// Opens the restored installation and records `backup.restore` in the system journal and in
/// every restored tenant journal.
fn journal_restore(
    config: &crate::config::Config,
    data_dir: &Path,
    lock: &std::fs::File,
    unpacked: &Unpacked,
    live: bool,
    actor: &Actor,
) -> Result<(), BackupError> {
    // The installation opens under this process's exclusive lock (a second handle on
    // the same lock), so nothing else can open it until the restore is over.
    let held = lock
        .try_clone()
        .map_err(io_err("share the data directory's lock"))?;
    let app = App::open_during_restore(config, data_dir, held)?;
    // Every journal was just put back to the archive's older head, on purpose: the
    // witness forgets this installation's heads and learns the restored ones as the
    // restore records itself below.
    app.witness().forget(None).map_err(|e| BackupError::Io {
        what: "reset the witness".into(),
        reason: e.to_string(),
    })?;
    let params = serde_json::json!({
        "archive_created_us": unpacked.manifest.created_us,
        "tenants": unpacked.manifest.tenants.len(),
        "replaced_live_data": live,
    });
    let journal = |store: &store::Store, target: &str| {
        let (actor, params, target) = (actor.clone(), params.clone(), target.to_string());
        store
            .writer()
            .change(move |_tx| -> Result<_, StoreError> {
                Ok((
                    (),
                    NewEntry::new(actor, "backup.restore", &target).params(params),
                ))
            })
            .wait()
    };
    let journaled = (|| -> Result<(), BackupError> {
        journal(app.system(), "system")?;
        crate::fault::fail(34).map_err(io_err("journal the restore in the tenants"))?;
        for t in &unpacked.manifest.tenants {
            let id = TenantId::parse(&t.id).map_err(crate::tenants::TenantError::from)?;
            let store = crate::tenants::open_store(&app, &id)?;
            journal(&store, id.as_str())?;
        }
        Ok(())
    })();
    app.close();
    journaled
}
