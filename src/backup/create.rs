//! `backup create`: snapshots streamed into the archive as they are taken, then the
//! manifest.
//!
//! Payload layout: one frame per member, `u16 BE name length, name, u64 BE size, bytes`,
//! then `u16 0`, then `u32 BE manifest length, manifest (JSON)`. The manifest comes last so
//! that each file is read once, hashed while it is written into the archive, and the next
//! tenant's snapshot is taken meanwhile.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

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
    if matches!((scope, sealing), (Scope::Tenant(_), Sealing::Passphrase(_))) {
        // A passphrase archive carries the root key, which opens every tenant: one tenant's
        // export must not.
        return Err(BackupError::Invalid(
            "a single-tenant archive cannot be sealed with a passphrase (it would carry the \
             root key of every tenant); seal it with the root key instead"
                .into(),
        ));
    }
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

    // The registry snapshot decides which tenants, and with which keys, go in.
    let sys_path = app.data_dir().join("system.db");
    let sys_copy = sdir.join("system.db");
    let sys_spec = |p| app.system_spec_for(p);
    store::snapshot::snapshot(&sys_spec(&sys_path), &sys_copy)?;
    std::fs::copy(
        app::system_key_path(app.data_dir()),
        sdir.join("system.key"),
    )
    .map_err(io_err("copy system.key"))?;
    let sys_conn = store::open_connection(&sys_spec(&sys_copy), true)?;
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
    let mut jobs = Vec::new();
    for t in chosen {
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
    drop(sys_conn);

    let created_us = app.clock().now_us();
    let (header, key) = seal_key(app, sealing, created_us)?;
    // Named afresh each run: the leftover of a run that was killed never blocks the next.
    let mut partial = out.as_os_str().to_os_string();
    partial.push(format!(".{}.partial", crate::keyring::random_id()?));
    let partial = PathBuf::from(partial);
    // For the progress bar: the live files' sizes are close to their snapshots'.
    let estimate: u64 = jobs
        .iter()
        .filter_map(|(t, _)| {
            std::fs::metadata(store::tenants::tenant_path(app.data_dir(), &t.id)).ok()
        })
        .map(|m| m.len())
        .sum::<u64>()
        + std::fs::metadata(&sys_copy).map(|m| m.len()).unwrap_or(0);

    let written = (|| -> Result<(u64, Manifest), BackupError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_err(format!("create {}", partial.display())))?;
        let mut sink = Sink {
            w: ArchiveWriter::new(std::io::BufWriter::new(file), header, &key)?,
            buf: vec![0u8; 1 << 20],
            done: 0,
            total: estimate,
            progress,
        };
        let mut members = vec![
            sink.file("system.key", &sdir.join("system.key"))?,
            sink.file("system.db", &sys_copy)?,
        ];
        let tenants = snapshot_into(app, sdir, &jobs, &mut sink, &mut members)?;
        if let Sealing::Passphrase(_) = sealing {
            // Sized up front: a reallocation would leave an unwiped copy of the key behind.
            let key = app.keyring().key_file_bytes_for_passphrase_archive();
            members.push(sink.bytes("root.key", &key)?);
        }
        sink.w.write_all(&0u16.to_be_bytes())?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            scope: match scope {
                Scope::All => "all".into(),
                Scope::Tenant(_) => "tenant".into(),
            },
            created_us,
            strongroom_version: env!("CARGO_PKG_VERSION").into(),
            root_key_id: app.keyring().root_key_id().to_string(),
            system_journal_head_seq,
            tenants,
            members,
        };
        let mjson =
            serde_json::to_vec(&manifest).map_err(|e| BackupError::BadManifest(e.to_string()))?;
        sink.w.write_all(&(mjson.len() as u32).to_be_bytes())?;
        sink.w.write_all(&mjson)?;
        let file = sink.w.finish()?.into_inner().map_err(|e| BackupError::Io {
            what: "write the archive".into(),
            reason: e.error().kind().to_string(),
        })?;
        file.sync_all().map_err(io_err("sync the archive"))?;
        Ok((file.metadata().map(|m| m.len()).unwrap_or(0), manifest))
    })();
    let (bytes, manifest) = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // Fail closed: the archive is renamed into place first, then journaled; if the entry
    // cannot be written, the archive goes again. So a journaled backup exists, and an archive
    // that stays was journaled.
    crate::fault::fail(41)
        .and_then(|()| std::fs::rename(&partial, out))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            io_err(format!("create {}", out.display()))(e)
        })?;
    if let Err(e) = crate::fsutil::sync_dir(crate::fsutil::dir_of(out)) {
        let _ = std::fs::remove_file(out);
        return Err(io_err("sync the archive's directory")(e));
    }
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
        .change(move |_tx| -> Result<_, StoreError> {
            let entry = NewEntry::new(actor, "backup.create", "system")
                .params(params)
                .since(start);
            Ok(((), entry))
        })
        .wait();
    if let Err(e) = journaled {
        let _ = std::fs::remove_file(out);
        let _ = crate::fsutil::sync_dir(crate::fsutil::dir_of(out));
        return Err(e.into());
    }
    Ok(manifest)
}

/// The archive's header and key for the chosen sealing.
fn seal_key(app: &App, sealing: &Sealing, created_us: i64) -> Result<(Header, Key32), BackupError> {
    Ok(match sealing {
        Sealing::Root => {
            let h = Header::new(
                created_us,
                KeySpec::Root {
                    root_key_id: app.keyring().root_key_id().to_string(),
                },
            )?;
            let k = app.keyring().backup_key(&h.salt_bytes()?)?;
            (h, k)
        }
        Sealing::Passphrase(p) => {
            let h = Header::new(
                created_us,
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
    })
}

/// Writes member frames into the archive, hashing as it goes.
struct Sink<'p, W: Write> {
    w: ArchiveWriter<W>,
    buf: Vec<u8>,
    done: u64,
    total: u64,
    progress: Progress<'p>,
}

impl<W: Write> Sink<'_, W> {
    fn frame(&mut self, name: &str, size: u64) -> Result<(), BackupError> {
        self.w.write_all(&(name.len() as u16).to_be_bytes())?;
        self.w.write_all(name.as_bytes())?;
        self.w.write_all(&size.to_be_bytes())?;
        Ok(())
    }

    fn file(&mut self, name: &str, path: &Path) -> Result<Member, BackupError> {
        let mut f = std::fs::File::open(path).map_err(io_err(format!("read {name}")))?;
        let size = f.metadata().map_err(io_err(format!("read {name}")))?.len();
        self.frame(name, size)?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut left = size;
        while left > 0 {
            let want = (left as usize).min(self.buf.len());
            let n = f
                .read(&mut self.buf[..want])
                .map_err(io_err(format!("read {name}")))?;
            if n == 0 {
                return Err(BackupError::Io {
                    what: format!("read {name}"),
                    reason: "the file shrank while it was archived".into(),
                });
            }
            ctx.update(&self.buf[..n]);
            self.w.write_all(&self.buf[..n])?;
            left -= n as u64;
            self.done += n as u64;
            (self.progress)(self.done, self.total.max(self.done));
        }
        Ok(Member {
            name: name.to_string(),
            size,
            sha256: hex::encode(ctx.finish()),
        })
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<Member, BackupError> {
        self.frame(name, data.len() as u64)?;
        self.w.write_all(data)?;
        Ok(Member {
            name: name.to_string(),
            size: data.len() as u64,
            sha256: hex::encode(crate::audit::entry::sha256(data)),
        })
    }
}

/// Snapshots the tenants on worker threads while this thread streams each finished copy
/// into the archive (and then deletes it), so copying and archiving overlap.
fn snapshot_into<W: Write>(
    app: &App,
    sdir: &Path,
    jobs: &[(crate::tenants::Tenant, Key32)],
    sink: &mut Sink<'_, W>,
    members: &mut Vec<Member>,
) -> Result<Vec<TenantEntry>, BackupError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let (tx, rx) = mpsc::sync_channel::<Result<(TenantEntry, PathBuf), BackupError>>(workers);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (tx, next, stop) = (tx.clone(), &next, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= jobs.len() || stop.load(Ordering::SeqCst) {
                    break;
                }
                let (t, dek) = &jobs[i];
                if tx.send(snapshot_one(app, sdir, t, dek)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut tenants = Vec::with_capacity(jobs.len());
        for result in rx.iter().take(jobs.len()) {
            let step = result.and_then(|(entry, copy)| {
                let m = sink.file(&format!("tenants/{}.db", entry.id), &copy)?;
                let _ = std::fs::remove_file(&copy);
                Ok((entry, m))
            });
            match step {
                Ok((entry, m)) => {
                    tenants.push(entry);
                    members.push(m);
                }
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    // Drain so no worker blocks on a full channel.
                    for _ in rx.try_iter() {}
                    return Err(e);
                }
            }
        }
        if tenants.len() != jobs.len() {
            return Err(BackupError::Invalid(
                "a tenant snapshot went missing".into(),
            ));
        }
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tenants)
    })
}

fn snapshot_one(
    app: &App,
    sdir: &Path,
    t: &crate::tenants::Tenant,
    dek: &Key32,
) -> Result<(TenantEntry, PathBuf), BackupError> {
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
    let (seq, hash) =
        journal_head(&conn).map_err(|e| StoreError::from_sqlite(&label, t.key_version, &e))?;
    Ok((
        TenantEntry {
            id: t.id.to_string(),
            name: t.name.clone(),
            key_version: t.key_version,
            journal_head_seq: seq,
            journal_head_hash: hash,
        },
        copy,
    ))
}
