//! Tenant lifecycle: create, suspend, resume and delete (crypto-shred).
//!
//! Each operation writes its audit entry in the same `system.db` transaction as its change.
//! Creation builds the tenant file first and registers it second: a crash in between leaves
//! an orphan file whose key was never stored, which is unreadable and harmless (and removed
//! as a leftover).

use super::*;
use crate::audit::{Actor, NewEntry};
use crate::keyring::{Key32, TenantKeys};
use crate::store::tenants::tenant_path;
use crate::store::{system, StoreError};

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
    forget_witnessed(app, id);
}

/// A tenant that never came to be has no head to keep: closing its file noted one, which
/// would otherwise make verify report an unknown tenant forever.
pub(super) fn forget_witnessed(app: &App, id: &TenantId) {
    if let Err(e) = app.witness().forget(Some(&[id.to_string()])) {
        tracing::warn!(tenant = %id, error = %e, "cannot drop the witnessed head of a tenant that was never created");
    }
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
    let (tid, actor) = (id.clone(), actor.clone());
    let done = app
        .system()
        .writer()
        .change(move |tx| -> Result<_, TenantError> {
            let id = tid;
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
        .wait();
    // Even after a failure: the commit may have landed all the same.
    app.standing().forget(id);
    done
}

/// Deletes a tenant by destroying its wrapped data keys (crypto-shredding), then removes its
/// file. The registry row stays, marked deleted, and the system journal keeps the record.
///
/// # Errors
/// Unknown or already deleted tenant, or a storage fault (then nothing changed).
pub fn delete(app: &App, actor: &Actor, id: &TenantId) -> Result<(), TenantError> {
    let start = std::time::Instant::now();
    // Refused before the file is held: holding it makes a lock file that a deleted tenant's
    // refusal would leave behind.
    if get(app, id)?.status == TenantStatus::Deleted {
        return Err(TenantError::NotFound(id.to_string()));
    }
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
        .change_recorded(move |tx| -> Result<_, TenantError> {
            let t = system::get(tx.conn(), &tid)
                .map_err(|e| tx.err(&e))?
                .filter(|t| t.status != TenantStatus::Deleted)
                .ok_or_else(|| TenantError::NotFound(tid.to_string()))?;
            let shredded = system::shred_keys(tx.conn(), &tid).map_err(|e| tx.err(&e))?;
            // Nothing is owed any more to a journal that is about to go.
            system::outbox_remove_through(tx.conn(), &tid, i64::MAX).map_err(|e| tx.err(&e))?;
            // Its people go with it: their addresses become free for other tenants.
            let addresses = crate::identity::directory::forget_tenant(tx.conn(), &tid)
                .map_err(|e| tx.err(&e))?;
            system::set_status(tx.conn(), &tid, TenantStatus::Deleted, tx.now_us())
                .map_err(|e| tx.err(&e))?;
            let entry = NewEntry::new(actor, "tenant.delete", tid.as_str())
                .params(serde_json::json!({
                    "name": t.name,
                    "key_versions_destroyed": shredded,
                    "addresses_released": addresses,
                }))
                .since(start);
            Ok(((), entry))
        })
        .wait();
    app.standing().forget(id);
    let receipt = match done {
        Ok(((), receipt)) => receipt,
        Err(e) => {
            app.tenant_stores().reopen_allowed(id);
            return Err(e);
        }
    };
    // Witnessed before the command answers, not at the next checkpoint: an older system.db
    // put back after a crash must not bring the tenant back unnoticed.
    app.witness().note("system", receipt.seq, receipt.hash);
    app.flush_witness();
    // Push the overwritten pages from the WAL into the main file now, not at some later
    // checkpoint, so the wrapped key's old page is gone from disk promptly.
    app.system().fold_wal();
    remove_files(app, id);
    exclusive.release_and_remove();
    Ok(())
}
