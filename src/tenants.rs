//! Tenant lifecycle: create, list, suspend, resume and delete (crypto-shred).
//!
//! Each operation writes its audit entry in the same `system.db` transaction as its change.
//! Creation builds the tenant file first and registers it second: a crash in between leaves
//! an orphan file whose key was never stored, which is unreadable and harmless.

use crate::app::App;
use crate::audit::{Actor, NewEntry};
pub use crate::ids::TenantId;
use crate::keyring::{Key32, KeyringError, TenantKeys};
pub use crate::store::system::{Tenant, TenantStatus};
use crate::store::tenants::{tenant_label, tenant_path};
use crate::store::{system, Store, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    InvalidId(#[from] crate::ids::InvalidId),
    #[error("invalid tenant name: {0}")]
    InvalidName(String),
    #[error(
        "invalid region {0:?}: use 1-32 lower-case letters, digits and dashes, e.g. eu-central"
    )]
    InvalidRegion(String),
    #[error("a tenant named {0:?} already exists")]
    NameTaken(String),
    #[error("no tenant with id {0}")]
    NotFound(String),
    #[error("tenant {0} is suspended; `strongroom tenant resume {0}` makes it usable again (audit verify and backup work meanwhile)")]
    Suspended(String),
    #[error("tenant {id} is already {status}")]
    AlreadyInState { id: String, status: &'static str },
    #[error("tenant {0} is open in another strongroom process (the server keeps a tenant open until it has been idle for store.tenant_idle_secs); retry later, or stop the server")]
    InUse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

impl TenantError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId(e) => e.code(),
            Self::InvalidName(_) => "TEN-0002",
            Self::InvalidRegion(_) => "TEN-0003",
            Self::NameTaken(_) => "TEN-0004",
            Self::NotFound(_) => "TEN-0005",
            Self::Suspended(_) => "TEN-0006",
            Self::AlreadyInState { .. } => "TEN-0007",
            Self::InUse(_) => "TEN-0008",
            Self::Store(e) => e.code(),
            Self::Keyring(e) => e.code(),
        }
    }
}

fn validate_name(name: &str) -> Result<String, TenantError> {
    crate::text::display_name(name, 100).map_err(|p| TenantError::InvalidName(p.to_string()))
}

fn validate_region(region: &str) -> Result<String, TenantError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(region.to_string())
    } else {
        Err(TenantError::InvalidRegion(
            region.chars().take(64).collect(),
        ))
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Creates a tenant: a new DEK, a new encrypted file with its journal, a registry row.
///
/// # Errors
/// Bad name or region, a name in use, or a storage or key fault (nothing is left registered).
pub fn create(
    app: &App,
    actor: &Actor,
    name: &str,
    region: Option<&str>,
) -> Result<Tenant, TenantError> {
    let start = std::time::Instant::now();
    let name = validate_name(name)?;
    let region = region.map(validate_region).transpose()?;
    if app
        .system()
        .read(|c| system::name_in_use(c, &name).map_err(|e| app.system().err(&e)))?
    {
        return Err(TenantError::NameTaken(name));
    }
    let id = TenantId::from_trusted(crate::keyring::random_id()?);
    let dek = Key32::random()?;
    let wrapped = app.keyring().wrap_dek(id.as_str(), 1, &dek)?;
    let root_key_id = app.keyring().root_key_id().to_string();
    let tenant = Tenant {
        id: id.clone(),
        name: name.clone(),
        region: region.clone(),
        status: TenantStatus::Active,
        key_version: 1,
        created_us: app.clock().now_us(),
    };
    let params = serde_json::json!({ "name": name, "region": region, "key_version": 1 });

    // Files that no registry row owns, left by a create that was killed or failed before.
    remove_leftovers(app);
    let store = match app
        .tenant_stores()
        .get::<TenantError>(&id, true, || Ok(TenantKeys::new(1, dek)?))
    {
        Ok(s) => s,
        Err(e) => {
            // A full disk can fail the file half-made: nothing of it may stay.
            discard_file(app, &id);
            return Err(e);
        }
    };
    let genesis = {
        let (actor, params, name) = (actor.clone(), params.clone(), name.clone());
        let id = id.clone();
        store
            .writer()
            .change_recorded(move |tx| -> Result<_, TenantError> {
                let err = |e: rusqlite::Error| tx.err(&e);
                system::meta_set(tx.conn(), "tenant_id", id.as_str()).map_err(err)?;
                system::meta_set(tx.conn(), "tenant_name", &name).map_err(err)?;
                let entry = NewEntry::new(actor, "tenant.create", id.as_str())
                    .params(params)
                    .since(start);
                Ok(((), entry))
            })
            .wait()
    };
    let genesis = match genesis {
        Ok(((), receipt)) => receipt,
        Err(e) => {
            drop(store);
            discard_file(app, &id);
            return Err(e);
        }
    };
    drop(store);
    crate::fault::point(51);

    let row = tenant.clone();
    let actor = actor.clone();
    let registered = app
        .system()
        .writer()
        .change(move |tx| -> Result<_, TenantError> {
            system::insert(tx.conn(), &row, &root_key_id, &wrapped, tx.now_us()).map_err(|e| {
                if is_unique_violation(&e) {
                    TenantError::NameTaken(row.name.clone())
                } else {
                    tx.err(&e).into()
                }
            })?;
            // The tenant journal's first entry, recorded here: an emptied journal is caught.
            system::raise_anchor(tx.conn(), &row.id, genesis.seq, &genesis.hash)
                .map_err(|e| tx.err(&e))?;
            let entry = NewEntry::new(actor, "tenant.create", row.id.as_str())
                .params(params)
                .since(start);
            Ok(((), entry))
        })
        .wait();
    if let Err(e) = registered {
        discard_file(app, &id);
        return Err(e);
    }
    Ok(tenant)
}

fn discard_file(app: &App, id: &TenantId) {
    app.tenant_stores().close(id);
    remove_files(app, id);
    let _ = std::fs::remove_file(crate::store::tenants::tenant_lock_path(app.data_dir(), id));
}

fn remove_files(app: &App, id: &TenantId) {
    let path = tenant_path(app.data_dir(), id);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = format!("{}{suffix}", path.display());
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(tenant = %id, error = %e.kind(), "cannot remove tenant file"),
        }
    }
}

/// Files under `tenants/` that no live registry row owns: what a tenant create that was
/// killed or hit a full disk left, and what a deletion could not remove. A file whose tenant
/// another process holds (its lock is taken: a create in progress) is not listed.
///
/// # Errors
/// `tenants/` or the registry cannot be read.
pub fn leftovers(app: &App) -> Result<Vec<std::path::PathBuf>, TenantError> {
    let live: std::collections::HashSet<String> = list(app, false)?
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    let dir = app.data_dir().join("tenants");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::from_io("tenants/", "list it", &e).into()),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.split('.').next().unwrap_or("");
        let Ok(id) = TenantId::parse(id) else {
            continue;
        };
        if live.contains(id.as_str()) {
            continue;
        }
        let lock = crate::store::tenants::tenant_lock_path(app.data_dir(), &id);
        // Opened read-only: looking must not create a lock file.
        let in_use = std::fs::File::open(&lock)
            .map(|f| f.try_lock().is_err())
            .unwrap_or(false);
        if !in_use {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes [`leftovers`]; failures are logged, not fatal (doctor lists what stays).
pub fn remove_leftovers(app: &App) -> usize {
    let files = match leftovers(app) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for leftover tenant files");
            return 0;
        }
    };
    let mut n = 0;
    for f in &files {
        match std::fs::remove_file(f) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e.kind(), "cannot remove a leftover tenant file")
            }
        }
    }
    if n > 0 {
        tracing::warn!(
            files = n,
            "removed files no tenant owns (left by an interrupted create or delete)"
        );
    }
    n
}

/// Looks a tenant up, deleted ones included.
///
/// # Errors
/// Unknown id, or a storage fault.
pub fn get(app: &App, id: &TenantId) -> Result<Tenant, TenantError> {
    app.system()
        .read(|c| system::get(c, id).map_err(|e| app.system().err(&e)))?
        .ok_or_else(|| TenantError::NotFound(id.to_string()))
}

/// The one status check before a tenant is used: refuses a suspended tenant with
/// [`TenantError::Suspended`] and a deleted or unknown one with [`TenantError::NotFound`].
/// The door ([`crate::door`]) calls it for every context it hands out; the few commands that
/// read a tenant's file without a context (journal export, rotation) call it directly.
/// Verification, backup, resume and delete deliberately do not.
///
/// # Errors
/// As above, or a storage fault reading the registry.
pub fn usable(app: &App, id: &TenantId) -> Result<Tenant, TenantError> {
    let t = get(app, id)?;
    check_usable(&t)?;
    Ok(t)
}

/// The rule [`usable`] applies, for a registry row already read (by the read-only evidence
/// path, which has no `App`).
///
/// # Errors
/// As [`usable`].
pub fn check_usable(t: &Tenant) -> Result<(), TenantError> {
    match t.status {
        TenantStatus::Active => Ok(()),
        TenantStatus::Suspended => Err(TenantError::Suspended(t.id.to_string())),
        TenantStatus::Deleted => Err(TenantError::NotFound(t.id.to_string())),
    }
}

/// Lists tenants, oldest first.
///
/// # Errors
/// A storage fault.
pub fn list(app: &App, include_deleted: bool) -> Result<Vec<Tenant>, TenantError> {
    Ok(app
        .system()
        .read(|c| system::list(c, include_deleted).map_err(|e| app.system().err(&e)))?)
}

/// Suspends (`active = false`) or resumes a tenant.
///
/// # Errors
/// Unknown or deleted tenant, already in that state, or a storage fault.
pub fn set_active(
    app: &App,
    actor: &Actor,
    id: &TenantId,
    active: bool,
) -> Result<Tenant, TenantError> {
    let start = std::time::Instant::now();
    let (status, action) = if active {
        (TenantStatus::Active, "tenant.resume")
    } else {
        (TenantStatus::Suspended, "tenant.suspend")
    };
    let (id, actor) = (id.clone(), actor.clone());
    app.system()
        .writer()
        .change(move |tx| -> Result<_, TenantError> {
            let mut t = system::get(tx.conn(), &id)
                .map_err(|e| tx.err(&e))?
                .filter(|t| t.status != TenantStatus::Deleted)
                .ok_or_else(|| TenantError::NotFound(id.to_string()))?;
            if t.status == status {
                return Err(TenantError::AlreadyInState {
                    id: id.to_string(),
                    status: status.as_str(),
                });
            }
            system::set_status(tx.conn(), &id, status, tx.now_us()).map_err(|e| tx.err(&e))?;
            let entry = NewEntry::new(actor, action, id.as_str())
                .params(serde_json::json!({ "from": t.status.as_str(), "to": status.as_str() }))
                .since(start);
            t.status = status;
            Ok((t, entry))
        })
        .wait()
}

/// Deletes a tenant by destroying its wrapped data keys (crypto-shredding), then removes its
/// file. The registry row stays, marked deleted, and the system journal keeps the record.
///
/// # Errors
/// Unknown or already deleted tenant, or a storage fault (then nothing changed).
pub fn delete(app: &App, actor: &Actor, id: &TenantId) -> Result<(), TenantError> {
    let start = std::time::Instant::now();
    get(app, id)?;
    let exclusive = app
        .tenant_stores()
        .take_exclusive(id, crate::store::tenants::Hold::Remove)
        .map_err(|e| match e {
            StoreError::Busy { .. } => TenantError::InUse(id.to_string()),
            other => other.into(),
        })?;
    let (tid, actor) = (id.clone(), actor.clone());
    let done = app
        .system()
        .writer()
        .change(move |tx| -> Result<_, TenantError> {
            let t = system::get(tx.conn(), &tid)
                .map_err(|e| tx.err(&e))?
                .filter(|t| t.status != TenantStatus::Deleted)
                .ok_or_else(|| TenantError::NotFound(tid.to_string()))?;
            let shredded = system::shred_keys(tx.conn(), &tid).map_err(|e| tx.err(&e))?;
            // Nothing is owed any more to a journal that is about to go.
            system::outbox_remove_through(tx.conn(), &tid, i64::MAX).map_err(|e| tx.err(&e))?;
            system::set_status(tx.conn(), &tid, TenantStatus::Deleted, tx.now_us())
                .map_err(|e| tx.err(&e))?;
            let entry = NewEntry::new(actor, "tenant.delete", tid.as_str())
                .params(serde_json::json!({ "name": t.name, "key_versions_destroyed": shredded }))
                .since(start);
            Ok(((), entry))
        })
        .wait();
    if let Err(e) = done {
        app.tenant_stores().reopen_allowed(id);
        return Err(e);
    }
    // Push the overwritten pages from the WAL into the main file now, not at some later
    // checkpoint, so the wrapped key's old page is gone from disk promptly.
    app.system().fold_wal();
    remove_files(app, id);
    exclusive.release_and_remove();
    Ok(())
}

/// Opens a live tenant's store, unwrapping its DEK from the registry if it is not open yet.
///
/// # Errors
/// Unknown or deleted tenant, a key that does not unwrap, or a file that does not open.
pub fn open_store(app: &App, id: &TenantId) -> Result<Arc<Store>, TenantError> {
    // A key rotation or restore here can take the store away between its opening and the
    // delivery of owed entries; then the open starts over, and waits for the pause to end.
    const ATTEMPTS: usize = 8;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Already open here: it was settled when it opened, and nobody can rotate or restore
        // it while this process holds it.
        if let Some(store) = app.tenant_stores().get_open(id) {
            return Ok(store);
        }
        settle(app, id)?;
        let store = app
            .tenant_stores()
            .get::<TenantError>(id, false, || tenant_keys(app, id).map(|(_, k)| k))?;
        if store.first_witness_check() {
            if let Err(e) = refuse_rolled_back(app, id, &store) {
                drop(store);
                app.tenant_stores().close(id);
                return Err(e);
            }
        }
        match deliver_outbox(app, id, &store) {
            Ok(_) => return Ok(store),
            Err(TenantError::Store(StoreError::Closed { .. })) if attempt < ATTEMPTS => {}
            Err(e) => {
                // Closed again, so the next open tries the delivery again.
                drop(store);
                app.tenant_stores().close(id);
                return Err(e);
            }
        }
    }
}

/// Refuses a tenant file whose journal does not extend the head its witness recorded: an
/// older copy put back in place.
fn refuse_rolled_back(app: &App, id: &TenantId, store: &Store) -> Result<(), TenantError> {
    use crate::audit::witness::{self, Extends};
    let head = app
        .witness()
        .head_of(id.as_str())
        .map_err(|e| StoreError::Io {
            what: tenant_label(id),
            reason: e.to_string(),
        })?;
    let Some(head) = head else {
        return Ok(());
    };
    let found = store.read(|c| witness::extends(c, &head).map_err(|e| store.err(&e)))?;
    if found == Extends::Yes {
        return Ok(());
    }
    // A restore of this tenant committed (its entry is still owed to the tenant's journal)
    // but died before it could reset the witnessed head: the step back is sanctioned.
    let owed = app
        .system()
        .read(|c| system::outbox_for(c, id).map_err(|e| app.system().err(&e)))?;
    if owed.iter().any(|e| e.action == "backup.restore") {
        tracing::warn!(tenant = %id, "a committed tenant restore had not reset the witness; resetting it now");
        app.witness()
            .forget(Some(&[id.to_string()]))
            .map_err(|e| StoreError::Io {
                what: tenant_label(id),
                reason: e.to_string(),
            })?;
        return Ok(());
    }
    let label = tenant_label(id);
    Err(StoreError::RolledBack {
        detail: witness::describe(&label, app.witness().path(), &head, &found),
        what: label,
    }
    .into())
}

/// Appends to the tenant's own journal the entries `system.db` owes it (see
/// [`system::outbox_push`]), then forgets them. Runs whenever the tenant's file opens here,
/// when the server starts and before a backup, so an operation that committed in `system.db`
/// but crashed before it could write to the tenant file is still recorded there. Each
/// delivered entry carries its `op_id` and the time the operation committed (`queued_us`);
/// the tenant file records delivered op ids in the same transaction, so none is written twice.
///
/// # Errors
/// Either store cannot be read or written.
pub fn deliver_outbox(app: &App, id: &TenantId, store: &Store) -> Result<usize, TenantError> {
    let owed = app
        .system()
        .read(|c| system::outbox_for(c, id).map_err(|e| app.system().err(&e)))?;
    let Some(last) = owed.last().map(|e| e.id) else {
        return Ok(0);
    };
    let target = id.to_string();
    let delivered = store
        .writer()
        .bookkeeping(move |tx| -> Result<usize, StoreError> {
            let mut n = 0;
            for e in owed {
                let fresh = tx
                    .conn()
                    .execute(
                        "INSERT INTO delivered_ops (op_id, delivered_us) VALUES (?1, ?2) \
                         ON CONFLICT(op_id) DO NOTHING",
                        rusqlite::params![e.op_id, tx.now_us()],
                    )
                    .map_err(|err| tx.err(&err))?;
                if fresh == 0 {
                    continue;
                }
                let mut params = e.params;
                if let Some(map) = params.as_object_mut() {
                    map.insert("op_id".into(), e.op_id.into());
                    map.insert("queued_us".into(), e.created_us.into());
                }
                tx.audit(NewEntry::new(e.actor, &e.action, &target).params(params))?;
                n += 1;
            }
            Ok(n)
        })
        .wait()?;
    forget_owed(app, id, last)?;
    Ok(delivered)
}

/// Drops the entries owed to `id`'s journal, up to and including outbox id `through`.
fn forget_owed(app: &App, id: &TenantId, through: i64) -> Result<(), StoreError> {
    let tid = id.clone();
    app.system()
        .writer()
        .bookkeeping(move |tx| -> Result<(), StoreError> {
            system::outbox_remove_through(tx.conn(), &tid, through).map_err(|e| tx.err(&e))?;
            Ok(())
        })
        .wait()
}

/// Delivers what is owed to every tenant journal (see [`deliver_outbox`]); the server does
/// this as it starts. Entries owed to a tenant that no longer exists are dropped. Returns the
/// number of tenants served.
///
/// # Errors
/// The registry cannot be read, or a tenant cannot be opened or written.
pub fn deliver_all_owed(app: &App) -> Result<usize, TenantError> {
    let owed = app
        .system()
        .read(|c| system::outbox_tenants(c).map_err(|e| app.system().err(&e)))?;
    let n = owed.len();
    for id in owed {
        match open_store(app, &id) {
            Ok(store) => drop(store),
            Err(TenantError::NotFound(_)) => forget_owed(app, &id, i64::MAX)?,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Resolves a tenant key rotation or restore that a crash interrupted. A staged copy made for
/// the registry's current key version committed, and replaces the file; any other copy never
/// committed, and is discarded. No-op when nothing is pending.
///
/// # Errors
/// The key cannot be unwrapped, a committed copy does not open, or a file cannot be renamed
/// or removed.
pub fn settle(app: &App, id: &TenantId) -> Result<(), TenantError> {
    let label = tenant_label(id);
    let io = |e: std::io::Error| StoreError::Io {
        what: label.clone(),
        reason: format!(
            "cannot settle an interrupted key rotation or restore: {}",
            e.kind()
        ),
    };
    if crate::store::staged::staged_copies(app.data_dir(), id)
        .map_err(io)?
        .is_empty()
    {
        return Ok(());
    }
    // A rotation or restore under way (here or in another process) holds the tenant's lock
    // and owns its copy: leave it alone.
    let lock_path = crate::store::tenants::tenant_lock_path(app.data_dir(), id);
    let Ok(lock) = crate::fsutil::open_lock_file(&lock_path) else {
        return Ok(());
    };
    if lock.try_lock().is_err() {
        return Ok(());
    }
    // Listed again under the lock: an operation that just finished has taken its copy.
    let copies = crate::store::staged::staged_copies(app.data_dir(), id).map_err(io)?;
    let current = match get(app, id) {
        Ok(t) if t.status != TenantStatus::Deleted => Some(t.key_version),
        Ok(_) | Err(TenantError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    for (version, staged) in copies {
        if current != Some(version) {
            tracing::warn!(tenant = %id, version, "discarding the copy of a key rotation or restore that never committed");
            crate::store::staged::remove_staged(&staged).map_err(io)?;
            continue;
        }
        // Committed: the copy was whole and synced before the registry pointed at its key.
        // Check that anyway before it replaces the file; if it fails, keep both for a person.
        let (_, keys) = tenant_keys(app, id)?;
        let spec = crate::store::OpenSpec {
            path: &staged,
            label: &label,
            key: keys.dek(),
            key_version: keys.version,
            kind: crate::store::FileKind::Tenant,
            create: false,
            busy_timeout: std::time::Duration::from_secs(10),
            plaintext: false,
        };
        let schema = crate::store::open_connection(&spec, true).and_then(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
                .map_err(|e| StoreError::from_sqlite(&label, keys.version, &e))
        });
        if !matches!(schema, Ok(v) if v > 0) {
            return Err(StoreError::Io {
                what: label.clone(),
                reason: format!(
                    "the copy staged for key version {version} is committed but does not open \
                     as a tenant store; both files are left in place, run `strongroom doctor`"
                ),
            }
            .into());
        }
        tracing::warn!(tenant = %id, version, "finishing an interrupted tenant key rotation or restore");
        crate::store::staged::finish_tenant_rekey(app.data_dir(), id, version).map_err(io)?;
    }
    Ok(())
}

/// Settles every tenant that has a staged copy beside its file (see [`settle`]). Cheap when
/// there is none: one directory listing.
///
/// # Errors
/// `tenants/` cannot be listed, or a tenant cannot be settled.
pub fn settle_all(app: &App) -> Result<usize, TenantError> {
    let dir = app.data_dir().join("tenants");
    let names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(StoreError::Io {
                what: "tenants/".into(),
                reason: e.kind().to_string(),
            }
            .into())
        }
    };
    let mut ids: Vec<TenantId> = names
        .iter()
        .filter_map(|n| n.split_once(".db.rekey-v"))
        .filter_map(|(id, _)| TenantId::parse(id).ok())
        .collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        settle(app, id)?;
    }
    Ok(ids.len())
}

/// The tenant's current keys, unwrapped from the registry.
///
/// # Errors
/// Unknown or deleted tenant, or a wrapped key that does not unwrap under this root key.
pub fn tenant_keys(app: &App, id: &TenantId) -> Result<(Tenant, TenantKeys), TenantError> {
    let t = get(app, id)?;
    if t.status == TenantStatus::Deleted {
        return Err(TenantError::NotFound(id.to_string()));
    }
    let wrapped = app
        .system()
        .read(|c| {
            system::wrapped_dek(c, id, t.key_version, app.keyring().root_key_id())
                .map_err(|e| app.system().err(&e))
        })?
        .ok_or_else(|| StoreError::Decrypt {
            what: tenant_label(id),
            version: t.key_version,
        })?;
    let dek = app
        .keyring()
        .unwrap_dek(id.as_str(), t.key_version, &wrapped)?;
    let version = t.key_version;
    Ok((t, TenantKeys::new(version, dek)?))
}

crate::domain_error!(TenantError, |e| match e {
    TenantError::InvalidId(_) | TenantError::InvalidName(_) | TenantError::InvalidRegion(_) => {
        crate::error::ErrorKind::Invalid
    }
    TenantError::NameTaken(_) | TenantError::AlreadyInState { .. } =>
        crate::error::ErrorKind::Conflict,
    TenantError::NotFound(_) => crate::error::ErrorKind::NotFound,
    TenantError::Suspended(_) => crate::error::ErrorKind::Forbidden,
    TenantError::InUse(_) => crate::error::ErrorKind::Busy,
    TenantError::Store(e) => crate::error::DomainError::kind(e),
    TenantError::Keyring(e) => crate::error::DomainError::kind(e),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_regions_are_validated() {
        assert_eq!(
            validate_name("  Acme Logistics ").unwrap(),
            "Acme Logistics"
        );
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{0}b").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
        let e = validate_name("pay\u{202E}lanoitan")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("U+202E") && e.contains("invalid tenant name"),
            "{e}"
        );
        assert!(validate_region("eu-central-1").is_ok());
        for bad in ["", "EU", "eu central", &"a".repeat(33)] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
