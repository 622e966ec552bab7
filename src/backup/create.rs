//! `backup create`: snapshots, manifest, archive.

use super::*;

/// Creates an archive at `out` (written aside and renamed into place, so `out` is whole or
/// absent). Runs while the server runs: every file is copied from one read transaction.
///
/// # Errors
/// A file cannot be snapshotted, the archive cannot be written, or the journal entry fails
/// (then no archive is left).
pub fn create(
    app: &App,
    actor: &Actor,
    out: &Path,
    scope: &Scope,
    sealing: &Sealing,
    progress: Progress<'_>,
) -> Result<Manifest, BackupError> {
    let start = std::time::Instant::now();
    if out.exists() {
        return Err(BackupError::Invalid(format!(
            "{} exists; choose a new file name",
            out.display()
        )));
    }
    let staging = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(app.data_dir())
        .map_err(io_err("create a staging directory"))?;
    let sdir = staging.path();
    std::fs::create_dir(sdir.join("tenants")).map_err(io_err("create a staging directory"))?;

    let sys_path = app.data_dir().join("system.db");
    let sys_copy = sdir.join("system.db");
    store::snapshot::snapshot(
        &spec(
            &sys_path,
            "system.db",
            app.system_dek(),
            1,
            FileKind::System,
        ),
        &sys_copy,
    )?;
    std::fs::copy(
        app::system_key_path(app.data_dir()),
        sdir.join("system.key"),
    )
    .map_err(io_err("copy system.key"))?;
    let sys_conn = store::open_connection(
        &spec(
            &sys_copy,
            "system.db",
            app.system_dek(),
            1,
            FileKind::System,
        ),
        true,
    )?;
    let err = |e: rusqlite::Error| StoreError::from_sqlite("system.db", 1, &e);
    let live = system::list(&sys_conn, false).map_err(err)?;
    let (system_journal_head_seq, _) = journal_head(&sys_conn).map_err(err)?;
    let chosen: Vec<_> = match scope {
        Scope::All => live,
        Scope::Tenant(id) => {
            let t = live
                .into_iter()
                .find(|t| &t.id == id)
                .ok_or_else(|| crate::tenants::TenantError::NotFound(id.to_string()))?;
            vec![t]
        }
    };
    let mut tenants = Vec::new();
    let mut members = vec![
        file_member("system.key", &sdir.join("system.key"))?,
        file_member("system.db", &sys_copy)?,
    ];
    // Keys first (the registry connection stays on this thread), then the copies, which
    // are CPU-bound (decrypt, encrypt), on every core.
    let mut jobs = Vec::new();
    for t in &chosen {
        let wrapped =
            system::wrapped_dek(&sys_conn, &t.id, t.key_version, app.keyring().root_key_id())
                .map_err(err)?
                .ok_or_else(|| StoreError::Decrypt {
                    what: store::tenants::tenant_label(&t.id),
                    version: t.key_version,
                })?;
        let dek = app
            .keyring()
            .unwrap_dek(t.id.as_str(), t.key_version, &wrapped)?;
        jobs.push((t, dek));
    }
    let copied = par_map(
        &jobs,
        |(t, dek)| -> Result<(TenantEntry, Member), BackupError> {
            let label = store::tenants::tenant_label(&t.id);
            let live_path = store::tenants::tenant_path(app.data_dir(), &t.id);
            let copy = sdir.join(format!("tenants/{}.db", t.id));
            store::snapshot::snapshot(
                &spec(&live_path, &label, dek, t.key_version, FileKind::Tenant),
                &copy,
            )?;
            let conn = store::open_connection(
                &spec(&copy, &label, dek, t.key_version, FileKind::Tenant),
                true,
            )?;
            let (seq, hash) = journal_head(&conn)
                .map_err(|e| StoreError::from_sqlite(&label, t.key_version, &e))?;
            Ok((
                TenantEntry {
                    id: t.id.to_string(),
                    name: t.name.clone(),
                    key_version: t.key_version,
                    journal_head_seq: seq,
                    journal_head_hash: hash,
                },
                file_member(&format!("tenants/{}.db", t.id), &copy)?,
            ))
        },
    );
    for r in copied {
        let (entry, member) = r?;
        tenants.push(entry);
        members.push(member);
    }
    drop(sys_conn);
    let root_hex = match sealing {
        Sealing::Passphrase(_) => {
            let mut h = app.keyring().root_hex();
            h.push('\n');
            let bytes = h.as_bytes();
            members.push(Member {
                name: "root.key".into(),
                size: bytes.len() as u64,
                sha256: hex::encode(crate::audit::entry::sha256(bytes)),
            });
            Some(h)
        }
        Sealing::Root => None,
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        scope: match scope {
            Scope::All => "all".into(),
            Scope::Tenant(_) => "tenant".into(),
        },
        created_us: app.clock().now_us(),
        strongroom_version: env!("CARGO_PKG_VERSION").into(),
        root_key_id: app.keyring().root_key_id().to_string(),
        system_journal_head_seq,
        tenants,
        members,
    };

    let (header, key) = match sealing {
        Sealing::Root => {
            let h = Header::new(
                manifest.created_us,
                KeySpec::Root {
                    root_key_id: app.keyring().root_key_id().to_string(),
                },
            )?;
            let k = app.keyring().backup_key(&h.salt_bytes()?)?;
            (h, k)
        }
        Sealing::Passphrase(p) => {
            let h = Header::new(
                manifest.created_us,
                KeySpec::Passphrase {
                    kdf: "pbkdf2-sha256".into(),
                    iterations: archive::PBKDF2_ITERATIONS,
                },
            )?;
            let k = archive::passphrase_key(
                p.expose().as_bytes(),
                &h.salt_bytes()?,
                archive::PBKDF2_ITERATIONS,
            );
            (h, k)
        }
    };
    let mut partial = out.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = (|| -> Result<u64, BackupError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_err(format!("create {}", partial.display())))?;
        let mut w = ArchiveWriter::new(std::io::BufWriter::new(file), header, &key)?;
        let mjson =
            serde_json::to_vec(&manifest).map_err(|e| BackupError::BadManifest(e.to_string()))?;
        w.write_all(&(mjson.len() as u32).to_be_bytes())?;
        w.write_all(&mjson)?;
        let mut buf = vec![0u8; 1 << 20];
        let total: u64 = manifest.members.iter().map(|m| m.size).sum();
        let mut done = 0u64;
        for m in &manifest.members {
            if m.name == "root.key" {
                if let Some(h) = &root_hex {
                    w.write_all(h.as_bytes())?;
                }
                continue;
            }
            let mut f = std::fs::File::open(sdir.join(&m.name))
                .map_err(io_err(format!("read {}", m.name)))?;
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(io_err(format!("read {}", m.name)))?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n])?;
                done += n as u64;
                progress(done, total);
            }
        }
        let file = w.finish()?.into_inner().map_err(|e| BackupError::Io {
            what: "write the archive".into(),
            reason: e.error().kind().to_string(),
        })?;
        file.sync_all().map_err(io_err("sync the archive"))?;
        Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
    })();
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // Fail closed: the archive only appears if its journal entry is written.
    let params = serde_json::json!({
        "file": out.file_name().map(|n| n.to_string_lossy().into_owned()),
        "tenants": manifest.tenants.len(),
        "bytes": bytes,
        "sealing": match sealing { Sealing::Root => "root", Sealing::Passphrase(_) => "passphrase" },
    });
    let actor = actor.clone();
    let journaled = app
        .system()
        .writer()
        .submit(move |tx| {
            tx.audit(
                NewEntry::new(actor, "backup.create", "system")
                    .params(params)
                    .since(start),
            )
        })
        .wait();
    if let Err(e) = journaled {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    std::fs::rename(&partial, out).map_err(io_err(format!("create {}", out.display())))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::sync_dir(dir).map_err(io_err("sync the archive's directory"))?;
    }
    Ok(manifest)
}
