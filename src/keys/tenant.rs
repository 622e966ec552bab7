//! Tenant-key rotation: a new data key and the tenant's file re-encrypted under it, crash-safe
//! at every step; and the destruction of the keys it replaced.

use super::{tenant_err, KeysError};
use crate::app::App;
use crate::audit::{Actor, NewEntry};
use crate::keyring::Key32;
use crate::store::{staged, system, StoreError};
use serde::Serialize;
use std::time::Duration;

/// What a tenant key rotation did.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TenantRotation {
    pub tenant: String,
    pub old_version: u32,
    pub new_version: u32,
}

/// Gives a tenant a new data key and re-encrypts its file under it.
///
/// 1. The tenant is taken from every other process (refused if one has it open); writes to
///    it wait, other tenants are untouched.
/// 2. The file is copied, re-encrypted under the new DEK, to `<id>.db.rekey-v<new>` (fsync).
/// 3. One `system.db` transaction adds the new wrapped DEK, makes it current and journals
///    the rotation with both versions; the old wrapping stays for now.
/// 4. The copy is renamed over the file.
/// 5. The old wrapping is destroyed, and the tenant's own journal records the rotation.
///
/// A crash before 3 leaves the old key and file, and the next open discards the copy (its
/// version is not the registry's, however far the copy got). After 3, opening the tenant
/// finishes the rename (step 4) itself. The journals hold key versions, never key material.
///
/// # Errors
/// Unknown tenant, tenant in use elsewhere, or a storage fault (before step 3: nothing
/// changed).
pub fn rotate_tenant(
    app: &App,
    actor: &Actor,
    id: &crate::tenants::TenantId,
) -> Result<TenantRotation, KeysError> {
    use crate::store::{self, tenants as st, FileKind, OpenSpec};
    let start = std::time::Instant::now();
    crate::tenants::usable(app, id).map_err(tenant_err)?;
    // A rotation interrupted earlier is resolved first: its copy may be the live data.
    crate::tenants::settle(app, id).map_err(tenant_err)?;
    let (t, old) = crate::tenants::tenant_keys(app, id).map_err(tenant_err)?;
    let exclusive = app
        .tenant_stores()
        .take_exclusive(id, crate::store::tenants::Hold::Pause)
        .map_err(|e| match e {
            StoreError::Busy { .. } => {
                KeysError::App(crate::app::AppError::InUse(format!("tenant {id}")))
            }
            other => other.into(),
        })?;
    let result = (|| {
        let new_version = t.key_version + 1;
        let new_dek = Key32::random()?;
        let label = st::tenant_label(id);
        let path = st::tenant_path(app.data_dir(), id);
        let staged = staged::staged_path(app.data_dir(), id, new_version);
        staged::remove_staged(&staged).map_err(|e| KeysError::Write {
            path: staged.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        let spec = OpenSpec {
            path: &path,
            label: &label,
            key: old.dek(),
            key_version: old.version,
            kind: FileKind::Tenant,
            create: false,
            busy_timeout: Duration::from_secs(30),
            plaintext: false,
        };
        store::snapshot::reencrypt(&spec, &staged, &new_dek)?;
        crate::fault::point(12);

        let wrapped = app.keyring().wrap_dek(id.as_str(), new_version, &new_dek)?;
        let row = system::KeyRow {
            tenant_id: id.clone(),
            version: new_version,
            root_key_id: app.keyring().root_key_id().to_string(),
            wrapped,
            created_us: app.clock().now_us(),
        };
        let params = serde_json::json!({ "old_version": old.version, "new_version": new_version });
        let (tid, a, p) = (id.clone(), actor.clone(), params.clone());
        let op_id = crate::keyring::random_id()?;
        app.system()
            .writer()
            .change(move |tx| -> Result<_, StoreError> {
                system::insert_key_row(tx.conn(), &row).map_err(|e| tx.err(&e))?;
                system::set_key_version(tx.conn(), &tid, new_version).map_err(|e| tx.err(&e))?;
                // The tenant's own journal gets its entry when the file next opens, even if
                // this process dies first.
                system::outbox_push(
                    tx.conn(),
                    &tid,
                    &op_id,
                    &a,
                    "keys.rotate_tenant",
                    &p,
                    tx.now_us(),
                )
                .map_err(|e| tx.err(&e))?;
                // The op id ties this entry to the one the tenant's journal receives, so
                // verify can cross-check the two journals.
                let mut sys_params = p;
                sys_params["op_id"] = op_id.clone().into();
                let entry = NewEntry::new(a, "keys.rotate_tenant", tid.as_str())
                    .params(sys_params)
                    .since(start);
                Ok(((), entry))
            })
            .wait()?;
        crate::fault::point(13);

        staged::finish_tenant_rekey(app.data_dir(), id, new_version).map_err(|e| {
            KeysError::Write {
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            }
        })?;
        crate::fault::point(14);

        destroy_older_tenant_keys(app, actor, id, new_version)?;
        Ok(new_version)
    })();
    let new_version = match result {
        Ok(r) => r,
        Err(e) => {
            // Never committed (the registry does not name the copy's version): the copy goes
            // now, not at the next open. If the registry cannot even be read, it stays for
            // the next open to settle.
            let attempted = t.key_version + 1;
            let committed = crate::tenants::get(app, id)
                .map(|now| now.key_version == attempted)
                .unwrap_or(true);
            if !committed {
                let _ = staged::remove_staged(&staged::staged_path(app.data_dir(), id, attempted));
            }
            drop(exclusive);
            app.tenant_stores().reopen_allowed(id);
            return Err(e);
        }
    };
    drop(exclusive);
    app.tenant_stores().reopen_allowed(id);
    // Opening the tenant delivers the rotation's entry to its own journal.
    drop(crate::tenants::open_store(app, id).map_err(tenant_err)?);
    Ok(TenantRotation {
        tenant: id.to_string(),
        old_version: old.version,
        new_version,
    })
}

/// The last step of a tenant rotation or restore: the tenant's wrapped keys older than
/// `keep` are destroyed, and the WAL is folded in at once so they do not linger on disk.
///
/// # Errors
/// The registry cannot be written.
pub fn destroy_older_tenant_keys(
    app: &App,
    actor: &Actor,
    id: &crate::tenants::TenantId,
    keep: u32,
) -> Result<(), StoreError> {
    let (tid, actor) = (id.clone(), actor.clone());
    app.system()
        .writer()
        .change_or_nothing(move |tx| -> Result<_, StoreError> {
            let n =
                system::delete_key_versions_below(tx.conn(), &tid, keep).map_err(|e| tx.err(&e))?;
            // Destroying a key is a crypto-shred of whatever only it could open: on the
            // record, like any other change.
            let entry = (n > 0).then(|| {
                NewEntry::new(actor, "keys.destroy_tenant_keys", tid.as_str())
                    .params(serde_json::json!({ "below_version": keep, "destroyed": n }))
            });
            Ok(((), entry))
        })
        .wait()?;
    app.system().fold_wal();
    Ok(())
}
