//! Opening a tenant's file: settling a rotation or restore a crash interrupted, checking the
//! file against its witnessed head, and delivering the journal entries `system.db` owes it.

use super::*;
use crate::audit::NewEntry;
use crate::store::tenants::tenant_label;
use crate::store::{system, Store, StoreError};
use std::sync::Arc;

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
