//! The single-tenant restore into a live installation: the tenant's key and journal trust
//! read from the archive's registry, the live tenant held, its copy staged durably, then one
//! registry transaction that commits it, and the swap finished as after a tenant key rotation.

use super::*;
use crate::store::WriteTx;
use crate::tenants::{Tenant, TenantError, TenantStatus};
use std::time::Instant;

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
    let start = Instant::now();
    let archived = unpack_tenant(app, archive_path, id, options.opening, progress)?;
    let registry = read_registry(app, &archived, id)?;
    let held = hold_tenant(app, id, options.force)?;
    let live_active = is_active(held.live.as_ref());
    let expected = held.live.as_ref().map(|t| t.key_version);
    let version = expected.unwrap_or(0).max(archived.entry.key_version) + 1;
    let staged = crate::store::staged::staged_path(app.data_dir(), id, version);
    let restoring = Restoring { app, id, actor };
    let outcome = (|| -> Result<u32, BackupError> {
        if live_active && !options.force {
            return Err(BackupError::LiveData(format!("tenant {id}")));
        }
        restoring.stage_copy(&archived, &staged)?;
        restoring.commit(&archived, registry, held.live.as_ref(), version, start)?;
        restoring.finish(version)?;
        Ok(version)
    })();
    if outcome.is_err() {
        restoring.discard_uncommitted(version, &staged);
    }
    release(app, id, held.exclusive);
    let version = outcome?;
    // Opening the tenant delivers the restore's entry to its own journal.
    drop(crate::tenants::open_store(app, id)?);
    Ok(TenantRestored {
        tenant: id.to_string(),
        key_version: version,
        replaced_live_tenant: live_active,
    })
}

/// The archive, unpacked and verified, and its manifest's entry for the tenant.
struct Archived {
    unpacked: Unpacked,
    entry: TenantEntry,
}

fn unpack_tenant(
    app: &App,
    archive_path: &Path,
    id: &TenantId,
    opening: Opening<'_>,
    progress: Progress<'_>,
) -> Result<Archived, BackupError> {
    let unpacked = unpack(archive_path, opening, app.data_dir(), progress)?;
    let entry = unpacked
        .manifest
        .tenants
        .iter()
        .find(|t| t.id == id.as_str())
        .cloned()
        .ok_or_else(|| BackupError::Invalid(format!("the archive does not hold tenant {id}")))?;
    refuse_unverified(&unpacked)?;
    Ok(Archived { unpacked, entry })
}

/// What the archive's registry holds for the tenant.
struct ArchivedRegistry {
    /// The tenant's key, unwrapped from under the archive's root key.
    dek: Key32,
    /// Signing keys the tenant journal's checkpoints may carry, other than this
    /// installation's own.
    foreign: Vec<(String, Vec<u8>)>,
    /// Entries the archived file's journal was still owed.
    owed: Vec<system::OutboxEntry>,
}

fn read_registry(
    app: &App,
    archived: &Archived,
    id: &TenantId,
) -> Result<ArchivedRegistry, BackupError> {
    let (unpacked, entry) = (&archived.unpacked, &archived.entry);
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
    let owed = system::outbox_for(&sys_conn, id).map_err(err)?;
    drop(sys_conn);
    Ok(ArchivedRegistry { dek, foreign, owed })
}

/// The live tenant, held alone for the restore.
struct Held {
    exclusive: crate::store::tenants::ExclusiveTenant,
    /// The registry's row, read once the tenant was held (none for an unknown tenant).
    live: Option<Tenant>,
}

/// Refuses a live tenant without `force`, then takes the tenant for this process alone.
fn hold_tenant(app: &App, id: &TenantId, force: bool) -> Result<Held, BackupError> {
    let live = find_tenant(app, id)?;
    if is_active(live.as_ref()) && !force {
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
    match find_tenant(app, id) {
        Ok(live) => Ok(Held { exclusive, live }),
        Err(e) => {
            release(app, id, exclusive);
            Err(e.into())
        }
    }
}

fn find_tenant(app: &App, id: &TenantId) -> Result<Option<Tenant>, TenantError> {
    match crate::tenants::get(app, id) {
        Ok(t) => Ok(Some(t)),
        Err(TenantError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_active(live: Option<&Tenant>) -> bool {
    live.is_some_and(|t| t.status != TenantStatus::Deleted)
}

/// Lets the tenant be opened again.
fn release(app: &App, id: &TenantId, exclusive: crate::store::tenants::ExclusiveTenant) {
    drop(exclusive);
    app.tenant_stores().reopen_allowed(id);
}

/// What the steps after the tenant is held work on.
struct Restoring<'a> {
    app: &'a App,
    id: &'a TenantId,
    actor: &'a Actor,
}

impl Restoring<'_> {
    fn stage_copy(&self, archived: &Archived, staged: &Path) -> Result<(), BackupError> {
        let from = archived
            .unpacked
            .dir
            .path()
            .join(format!("tenants/{}.db", self.id));
        crate::store::staged::remove_staged(staged).map_err(io_err("stage the tenant file"))?;
        // A new file, never whatever is at the path now: the directory belongs to the service
        // user, and a link planted there would have root write through it. Written, given
        // its mode and synced through the one descriptor.
        let copied = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut source = std::fs::File::open(&from)?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(staged)?;
            std::io::copy(&mut source, &mut out)?;
            crate::fault::point(21);
            out.sync_all()
        })();
        copied.map_err(io_err("stage the tenant file"))?;
        // The copy's directory entry must be durable before the registry points at its key.
        crate::fsutil::sync_dir(&self.app.data_dir().join("tenants"))
            .map_err(io_err("stage the tenant file"))
    }

    /// Points the registry at the staged copy's key, in one transaction with the system
    /// journal's entry and the tenant journal's owed entries.
    fn commit(
        &self,
        archived: &Archived,
        registry: ArchivedRegistry,
        live: Option<&Tenant>,
        version: u32,
        start: Instant,
    ) -> Result<(), BackupError> {
        let (app, id, entry) = (self.app, self.id, &archived.entry);
        let row = system::KeyRow {
            tenant_id: id.clone(),
            version,
            root_key_id: app.keyring().root_key_id().to_string(),
            wrapped: app
                .keyring()
                .wrap_dek(id.as_str(), version, &registry.dek)?,
            created_us: app.clock().now_us(),
        };
        let head_hash = hex::decode(&entry.journal_head_hash).unwrap_or_default();
        let params = serde_json::json!({
            "archive_created_us": archived.unpacked.manifest.created_us,
            "key_version": version,
            "journal_head_seq": entry.journal_head_seq,
            "trusted_signing_keys": registry.foreign.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        });
        let registration = Registration {
            tid: id.clone(),
            actor: self.actor.clone(),
            existed: live.is_some(),
            name: entry.name.clone(),
            expected: live.map(|t| t.key_version),
            version,
            row,
            head_seq: entry.journal_head_seq,
            head_hash,
            foreign: registry.foreign,
            owed: registry.owed,
            params,
            op_id: crate::keyring::random_id()?,
        };
        app.system()
            .writer()
            .change(move |tx| registration.apply(tx, start))
            .wait()?;
        Ok(())
    }

    fn finish(&self, version: u32) -> Result<(), BackupError> {
        let (app, id) = (self.app, self.id);
        // Committed: the tenant's journal now goes back to the archive's head, on purpose.
        if let Err(e) = app.witness().forget(Some(&[id.to_string()])) {
            tracing::warn!(tenant = %id, error = %e, "cannot reset the tenant's witnessed head; the tenant will be refused until the witness is updated");
        }
        crate::fault::point(22);
        crate::store::staged::finish_tenant_rekey(app.data_dir(), id, version)
            .map_err(io_err("place the tenant file"))?;
        crate::keys::destroy_older_tenant_keys(app, self.actor, id, version)?;
        Ok(())
    }

    fn discard_uncommitted(&self, version: u32, staged: &Path) {
        // Never committed (the registry does not name the copy's version): the copy goes.
        // If the registry cannot even be read, it stays, for the next open to settle.
        let committed = crate::tenants::get(self.app, self.id)
            .map(|t| t.key_version == version)
            .unwrap_or_else(|e| !matches!(e, TenantError::NotFound(_)));
        if !committed {
            let _ = crate::store::staged::remove_staged(staged);
        }
    }
}

/// The registry transaction's inputs, owned: the system store's writer runs it.
struct Registration {
    tid: TenantId,
    actor: Actor,
    existed: bool,
    name: String,
    /// The key version the tenant was held at.
    expected: Option<u32>,
    version: u32,
    row: system::KeyRow,
    head_seq: u64,
    head_hash: Vec<u8>,
    foreign: Vec<(String, Vec<u8>)>,
    owed: Vec<system::OutboxEntry>,
    params: serde_json::Value,
    op_id: String,
}

impl Registration {
    fn apply(self, tx: &WriteTx<'_>, start: Instant) -> Result<((), NewEntry), TenantError> {
        self.check_unmoved(tx)?;
        self.write_tenant(tx)?;
        self.requeue_owed(tx)?;
        let mut params = self.params;
        params["op_id"] = self.op_id.clone().into();
        let entry = NewEntry::new(self.actor, "backup.restore", self.tid.as_str())
            .params(params)
            .since(start);
        Ok(((), entry))
    }

    fn check_unmoved(&self, tx: &WriteTx<'_>) -> Result<(), TenantError> {
        let (tid, name) = (&self.tid, &self.name);
        let e = |e: rusqlite::Error| TenantError::from(tx.err(&e));
        // The tenant is held alone, so its version cannot move; if it did, stop
        // rather than overwrite a key.
        let now = system::get(tx.conn(), tid)
            .map_err(e)?
            .map(|t| t.key_version);
        if now != self.expected {
            return Err(TenantError::Store(StoreError::Busy {
                what: format!("tenant {tid}"),
            }));
        }
        if system::name_in_use(tx.conn(), name).map_err(e)?
            && system::get(tx.conn(), tid)
                .map_err(e)?
                .is_none_or(|t| t.status == TenantStatus::Deleted || t.name != *name)
        {
            return Err(TenantError::NameTaken(name.clone()));
        }
        Ok(())
    }

    fn write_tenant(&self, tx: &WriteTx<'_>) -> Result<(), TenantError> {
        let (tid, name, version, row) = (&self.tid, &self.name, self.version, &self.row);
        let e = |e: rusqlite::Error| TenantError::from(tx.err(&e));
        if self.existed {
            system::revive(tx.conn(), tid, name, version, tx.now_us()).map_err(e)?;
        } else {
            let t = Tenant {
                id: tid.clone(),
                name: name.clone(),
                region: None,
                status: TenantStatus::Active,
                key_version: version,
                created_us: tx.now_us(),
            };
            system::insert(tx.conn(), &t, &row.root_key_id, &row.wrapped, tx.now_us())
                .map_err(e)?;
        }
        system::insert_key_row(tx.conn(), row).map_err(e)?;
        system::set_anchor(tx.conn(), tid, self.head_seq, &self.head_hash).map_err(e)?;
        for (kid, public) in &self.foreign {
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
        Ok(())
    }

    fn requeue_owed(&self, tx: &WriteTx<'_>) -> Result<(), TenantError> {
        let tid = &self.tid;
        let e = |e: rusqlite::Error| TenantError::from(tx.err(&e));
        // What the replaced file was owed goes with it; what the archived file was
        // owed comes back, ahead of the restore's own entry.
        system::outbox_remove_through(tx.conn(), tid, i64::MAX).map_err(e)?;
        for o in &self.owed {
            system::outbox_push(
                tx.conn(),
                tid,
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
            tid,
            &self.op_id,
            &self.actor,
            "backup.restore",
            &serde_json::json!({ "key_version": self.version }),
            tx.now_us(),
        )
        .map_err(e)?;
        Ok(())
    }
}
