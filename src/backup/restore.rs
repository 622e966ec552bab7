//! Restoring a whole installation, or one tenant into a live one.

use super::*;

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
    let result = restore_into(
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

#[allow(clippy::too_many_arguments)]
fn restore_into(
    archive_path: &Path,
    data_dir: &Path,
    config: &crate::config::Config,
    opening: Opening<'_>,
    root_key_out: Option<&Path>,
    live: bool,
    actor: &Actor,
    progress: Progress<'_>,
) -> Result<Restored, BackupError> {
    crate::fsutil::create_private_dir(data_dir)
        .map_err(io_err(format!("create {}", data_dir.display())))?;
    let unpacked = unpack(archive_path, opening, data_dir, progress)?;
    if unpacked.manifest.scope != "all" {
        return Err(BackupError::Invalid(
            "this archive holds a single tenant; a whole-installation restore needs an archive made without --tenant".into(),
        ));
    }
    let report = check_unpacked(&unpacked)?;
    if !report.ok {
        let first = report
            .files
            .iter()
            .find(|f| !f.ok())
            .map(|f| f.label.clone())
            .unwrap_or_default();
        return Err(BackupError::Invalid(format!(
            "the archive does not verify ({first}); nothing was restored"
        )));
    }
    // From here on the archive is known good.
    use std::os::unix::fs::PermissionsExt;
    crate::fsutil::create_private_dir(data_dir)
        .map_err(io_err(format!("create {}", data_dir.display())))?;
    let lock = app::lock_file(data_dir)?;
    lock.try_lock()
        .map_err(|_| app::AppError::InUse(data_dir.display().to_string()))?;
    // The root key the restored installation will open with must be the archive's: check the
    // one already in place (a credential, or the configured key file) before anything moves,
    // and write the archive's first where there is none.
    let key_file = root_key_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app::root_key_file(config, data_dir));
    let present = match crate::keyring::load_root_key(app::credentials_dir().as_deref(), &key_file)
    {
        Ok((k, source)) => Some((crate::keyring::root_key_id(&k)?, source)),
        Err(crate::keyring::KeyringError::RootKeyMissing { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let mut wrote_root_key = false;
    match present {
        Some((id, source)) if id != unpacked.keyring.root_key_id() => {
            return Err(BackupError::Invalid(format!(
                "the root key in {source} (id {id}) is not the archive's (id {}); move it away or \
                 install the archive's key there first; nothing was restored",
                unpacked.keyring.root_key_id()
            )));
        }
        Some(_) => {}
        None => {
            unpacked
                .keyring
                .write_key_file(&key_file)
                .map_err(io_err(format!("write {}", key_file.display())))?;
            wrote_root_key = true;
        }
    }
    // From here on the directory changes. `restore.pending` marks it until the restore is
    // complete or undone: after a crash nothing opens or re-initializes a directory holding
    // half of one installation and half of another.
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

    let n = unpacked.manifest.tenants.len();
    let mut moved = Vec::new();
    let outcome = (|| -> Result<(), BackupError> {
        if let Some(aside) = &aside {
            for name in &existing {
                std::fs::rename(data_dir.join(name), aside.join(name))
                    .map_err(io_err(format!("move {name} aside")))?;
                moved.push(*name);
            }
        }
        crate::fault::point(31);
        crate::fsutil::create_private_dir(&data_dir.join("tenants"))
            .map_err(io_err("create tenants/"))?;
        let staged = unpacked.dir.path();
        for m in &unpacked.manifest.members {
            if m.name == "root.key" {
                continue;
            }
            let to = data_dir.join(&m.name);
            std::fs::rename(staged.join(&m.name), &to)
                .map_err(io_err(format!("place {}", m.name)))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("set the mode of {}", m.name)))?;
        }
        crate::fsutil::sync_dir(data_dir).map_err(io_err("sync the data directory"))?;
        crate::fsutil::sync_dir(&data_dir.join("tenants")).map_err(io_err("sync tenants/"))?;
        crate::fault::point(33);
        crate::fault::fail(32).map_err(io_err("journal the restore"))?;

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
            "tenants": n,
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
            for t in &unpacked.manifest.tenants {
                let id = TenantId::parse(&t.id).map_err(crate::tenants::TenantError::from)?;
                let store = crate::tenants::open_store(&app, &id)?;
                journal(&store, id.as_str())?;
            }
            Ok(())
        })();
        app.close();
        journaled
    })();
    if let Err(e) = outcome {
        // Fail closed, and lose nothing: put back what was there, and the marker as it was
        // (an earlier killed restore's, or none).
        let undone =
            undo_swap(data_dir, aside.as_deref(), &existing, &moved).and_then(|()| match &prior {
                Some(p) => p.write(data_dir),
                None => app::PendingRestore::clear(data_dir),
            });
        return Err(match undone {
            Ok(()) => e,
            Err(undo) => BackupError::Io {
                what: "undo the failed restore".into(),
                reason: format!(
                    "{e}; then {}; the earlier data is in {}",
                    undo.kind(),
                    aside
                        .as_deref()
                        .map(|a| a.display().to_string())
                        .unwrap_or_else(|| "no folder (there was none)".into())
                ),
            },
        });
    }
    app::PendingRestore::clear(data_dir).map_err(io_err("remove restore.pending"))?;
    drop(lock);
    let moved_aside = aside;
    Ok(Restored {
        data_dir: data_dir.to_path_buf(),
        tenants: n,
        moved_aside,
        wrote_root_key,
    })
}

/// What a single-tenant restore did.
#[derive(Debug, Serialize)]
pub struct TenantRestored {
    pub tenant: String,
    pub key_version: u32,
    pub replaced_live_tenant: bool,
}

/// Restores one tenant from an archive into a live installation, which may use another root
/// key: the tenant's key is re-wrapped under this installation's root key as a new key
/// version. The tenant's file is replaced (with `force`) or brought back (a deleted or
/// unknown tenant), its journal continues with a `backup.restore` entry, and the system
/// journal records the restore. Uses the same crash-safe swap as a tenant key rotation.
///
/// # Errors
/// The archive does not verify or lacks the tenant, the tenant is live without `force`, its
/// name is taken by another tenant, or another process has it open.
pub fn restore_tenant(
    app: &App,
    archive_path: &Path,
    id: &TenantId,
    options: RestoreOptions<'_>,
    actor: &Actor,
    progress: Progress<'_>,
) -> Result<TenantRestored, BackupError> {
    let start = std::time::Instant::now();
    let unpacked = unpack(archive_path, options.opening, app.data_dir(), progress)?;
    let entry = unpacked
        .manifest
        .tenants
        .iter()
        .find(|t| t.id == id.as_str())
        .cloned()
        .ok_or_else(|| BackupError::Invalid(format!("the archive does not hold tenant {id}")))?;
    let report = check_unpacked(&unpacked)?;
    if let Some(bad) = report.files.iter().find(|f| !f.ok()) {
        return Err(BackupError::Invalid(format!(
            "the archive does not verify ({}); nothing was restored",
            bad.label
        )));
    }
    // The tenant's key, from the archive's registry, under the archive's root key.
    let staged_dir = unpacked.dir.path();
    let system_dek =
        SystemKeyFile::read(&staged_dir.join("system.key"))?.unwrap(&unpacked.keyring)?;
    let sys_path = staged_dir.join("system.db");
    let sys_conn = store::open_connection(
        &spec(&sys_path, "system.db", &system_dek, 1, FileKind::System),
        true,
    )?;
    let err = |e: rusqlite::Error| StoreError::from_sqlite("system.db", 1, &e);
    let wrapped = system::wrapped_dek(
        &sys_conn,
        id,
        entry.key_version,
        unpacked.keyring.root_key_id(),
    )
    .map_err(err)?
    .ok_or_else(|| BackupError::MemberMismatch(format!("tenants/{id}.db")))?;
    let dek = unpacked
        .keyring
        .unwrap_dek(id.as_str(), entry.key_version, &wrapped)?;
    // The tenant journal's checkpoints were signed by the archive's installation (or by
    // installations it trusted): keep them verifiable here.
    let mut foreign = system::signing_keys(&sys_conn, id.as_str()).map_err(err)?;
    let archive_signer = crate::keyring::Signer::from_system_dek(&system_dek)?;
    foreign.push((
        archive_signer.signing_key_id(),
        archive_signer.signing_public_key(),
    ));
    foreign.retain(|(kid, _)| *kid != app.signer().signing_key_id());
    // Entries the archived file's journal was still owed come along with it.
    let archive_owed = system::outbox_for(&sys_conn, id).map_err(err)?;
    drop(sys_conn);

    let live = match crate::tenants::get(app, id) {
        Ok(t) => Some(t),
        Err(crate::tenants::TenantError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let live_active = live
        .as_ref()
        .is_some_and(|t| t.status != crate::tenants::TenantStatus::Deleted);
    if live_active && !options.force {
        return Err(BackupError::LiveData(format!("tenant {id}")));
    }
    // An interrupted rotation is resolved first, while nobody holds the tenant: its copy may
    // be the live data.
    crate::tenants::settle(app, id)?;
    let exclusive = app
        .tenant_stores()
        .take_exclusive(id, crate::store::tenants::Hold::Pause)
        .map_err(|e| match e {
            StoreError::Busy { .. } => {
                BackupError::App(app::AppError::InUse(format!("tenant {id}")))
            }
            other => other.into(),
        })?;
    // Read again now that the tenant is held: a rotation may have finished since the first
    // look, and the new version must be above whatever the registry holds now.
    let live = match crate::tenants::get(app, id) {
        Ok(t) => Some(t),
        Err(crate::tenants::TenantError::NotFound(_)) => None,
        Err(e) => {
            drop(exclusive);
            app.tenant_stores().reopen_allowed(id);
            return Err(e.into());
        }
    };
    let live_active = live
        .as_ref()
        .is_some_and(|t| t.status != crate::tenants::TenantStatus::Deleted);
    let expected = live.as_ref().map(|t| t.key_version);
    let version = expected.unwrap_or(0).max(entry.key_version) + 1;
    let staged = crate::store::staged::staged_path(app.data_dir(), id, version);
    let outcome = (|| -> Result<u32, BackupError> {
        if live_active && !options.force {
            return Err(BackupError::LiveData(format!("tenant {id}")));
        }
        crate::store::staged::remove_staged(&staged).map_err(io_err("stage the tenant file"))?;
        std::fs::copy(staged_dir.join(format!("tenants/{id}.db")), &staged)
            .map_err(io_err("stage the tenant file"))?;
        crate::fault::point(21);
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("stage the tenant file"))?;
        }
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(io_err("stage the tenant file"))?;
        // The copy's directory entry must be durable before the registry points at its key.
        crate::fsutil::sync_dir(&app.data_dir().join("tenants"))
            .map_err(io_err("stage the tenant file"))?;
        let row = system::KeyRow {
            tenant_id: id.clone(),
            version,
            root_key_id: app.keyring().root_key_id().to_string(),
            wrapped: app.keyring().wrap_dek(id.as_str(), version, &dek)?,
            created_us: app.clock().now_us(),
        };
        let head_hash = hex::decode(&entry.journal_head_hash).unwrap_or_default();
        let params = serde_json::json!({
            "archive_created_us": unpacked.manifest.created_us,
            "key_version": version,
            "journal_head_seq": entry.journal_head_seq,
            "trusted_signing_keys": foreign.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        });
        let (tid, a, existed, name) = (
            id.clone(),
            actor.clone(),
            live.is_some(),
            entry.name.clone(),
        );
        let head_seq = entry.journal_head_seq;
        let op_id = crate::keyring::random_id()?;
        app.system()
            .writer()
            .change(move |tx| -> Result<_, crate::tenants::TenantError> {
                let e = |e: rusqlite::Error| crate::tenants::TenantError::from(tx.err(&e));
                // The tenant is held alone, so its version cannot move; if it did, stop
                // rather than overwrite a key.
                let now = system::get(tx.conn(), &tid)
                    .map_err(e)?
                    .map(|t| t.key_version);
                if now != expected {
                    return Err(crate::tenants::TenantError::Store(StoreError::Busy {
                        what: format!("tenant {tid}"),
                    }));
                }
                if system::name_in_use(tx.conn(), &name).map_err(e)?
                    && system::get(tx.conn(), &tid).map_err(e)?.is_none_or(|t| {
                        t.status == crate::tenants::TenantStatus::Deleted || t.name != name
                    })
                {
                    return Err(crate::tenants::TenantError::NameTaken(name));
                }
                if existed {
                    system::revive(tx.conn(), &tid, &name, version, tx.now_us()).map_err(e)?;
                } else {
                    let t = crate::tenants::Tenant {
                        id: tid.clone(),
                        name: name.clone(),
                        region: None,
                        status: crate::tenants::TenantStatus::Active,
                        key_version: version,
                        created_us: tx.now_us(),
                    };
                    system::insert(tx.conn(), &t, &row.root_key_id, &row.wrapped, tx.now_us())
                        .map_err(e)?;
                }
                system::insert_key_row(tx.conn(), &row).map_err(e)?;
                system::set_anchor(tx.conn(), &tid, head_seq, &head_hash).map_err(e)?;
                for (kid, public) in &foreign {
                    system::trust_signing_key(
                        tx.conn(),
                        tid.as_str(),
                        kid,
                        public,
                        "backup.restore",
                        tx.now_us(),
                    )
                    .map_err(e)?;
                }
                // What the replaced file was owed goes with it; what the archived file was
                // owed comes back, ahead of the restore's own entry.
                system::outbox_remove_through(tx.conn(), &tid, i64::MAX).map_err(e)?;
                for o in &archive_owed {
                    system::outbox_push(
                        tx.conn(),
                        &tid,
                        &o.op_id,
                        &o.actor,
                        &o.action,
                        &o.params,
                        o.created_us,
                    )
                    .map_err(e)?;
                }
                system::outbox_push(
                    tx.conn(),
                    &tid,
                    &op_id,
                    &a,
                    "backup.restore",
                    &serde_json::json!({ "key_version": version }),
                    tx.now_us(),
                )
                .map_err(e)?;
                let mut params = params;
                params["op_id"] = op_id.clone().into();
                let entry = NewEntry::new(a, "backup.restore", tid.as_str())
                    .params(params)
                    .since(start);
                Ok(((), entry))
            })
            .wait()?;
        // Committed: the tenant's journal now goes back to the archive's head, on purpose.
        if let Err(e) = app.witness().forget(Some(&[id.to_string()])) {
            tracing::warn!(tenant = %id, error = %e, "cannot reset the tenant's witnessed head; the tenant will be refused until the witness is updated");
        }
        crate::fault::point(22);
        crate::store::staged::finish_tenant_rekey(app.data_dir(), id, version)
            .map_err(io_err("place the tenant file"))?;
        crate::keys::destroy_older_tenant_keys(app, actor, id, version)?;
        Ok(version)
    })();
    if outcome.is_err() {
        // Never committed (the registry does not name the copy's version): the copy goes.
        // If the registry cannot even be read, it stays, for the next open to settle.
        let committed = crate::tenants::get(app, id)
            .map(|t| t.key_version == version)
            .unwrap_or_else(|e| !matches!(e, crate::tenants::TenantError::NotFound(_)));
        if !committed {
            let _ = crate::store::staged::remove_staged(&staged);
        }
    }
    drop(exclusive);
    app.tenant_stores().reopen_allowed(id);
    let version = outcome?;
    // Opening the tenant delivers the restore's entry to its own journal.
    drop(crate::tenants::open_store(app, id)?);
    Ok(TenantRestored {
        tenant: id.to_string(),
        key_version: version,
        replaced_live_tenant: live_active,
    })
}
