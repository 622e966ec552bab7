//! Files under `tenants/` that no live registry row owns.

use super::*;
use crate::store::StoreError;

/// Files under `tenants/` that no live registry row owns: what a tenant create that was
/// killed or hit a full disk left, and what a deletion could not remove. A file whose tenant
/// another process holds (its lock is taken: a create in progress) is not listed.
///
/// # Errors
/// `tenants/` or the registry cannot be read.
pub fn leftovers(app: &App) -> Result<Vec<std::path::PathBuf>, TenantError> {
    leftovers_in(app.data_dir(), &list(app, false)?)
}

/// [`leftovers`] given the live tenants (from the read-only evidence, for doctor).
///
/// # Errors
/// `tenants/` cannot be listed.
pub fn leftovers_in(
    data_dir: &std::path::Path,
    live: &[Tenant],
) -> Result<Vec<std::path::PathBuf>, TenantError> {
    let live: std::collections::HashSet<String> = live.iter().map(|t| t.id.to_string()).collect();
    let dir = data_dir.join("tenants");
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
        let lock = crate::store::tenants::tenant_lock_path(data_dir, &id);
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
///
/// Each tenant's files go only while this process holds that tenant's lock exclusively and
/// after the registry, read again under the lock, still does not know the tenant: a create
/// in another process either holds the lock (and is skipped) or has registered its tenant by
/// the time the lock is free (and is kept).
pub fn remove_leftovers(app: &App) -> usize {
    let files = match leftovers(app) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for leftover tenant files");
            return 0;
        }
    };
    let mut ids: Vec<TenantId> = files
        .iter()
        .filter_map(|f| {
            f.file_name()?
                .to_str()?
                .split('.')
                .next()
                .map(str::to_string)
        })
        .filter_map(|id| TenantId::parse(&id).ok())
        .collect();
    ids.sort();
    ids.dedup();
    let n: usize = ids.iter().map(|id| remove_if_still_unowned(app, id)).sum();
    if n > 0 {
        tracing::warn!(
            files = n,
            "removed files no tenant owns (left by an interrupted create or delete)"
        );
    }
    n
}

fn remove_if_still_unowned(app: &App, id: &TenantId) -> usize {
    let lock_path = crate::store::tenants::tenant_lock_path(app.data_dir(), id);
    let Ok(lock) = crate::fsutil::open_lock_file(&lock_path) else {
        return 0;
    };
    if lock.try_lock().is_err() {
        return 0;
    }
    match get(app, id) {
        Err(TenantError::NotFound(_)) => {}
        Ok(t) if t.status == TenantStatus::Deleted => {}
        _ => return 0,
    }
    let prefix = format!("{}.", id.as_str());
    let mine: Vec<std::path::PathBuf> = std::fs::read_dir(app.data_dir().join("tenants"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .filter(|p| *p != lock_path)
                .collect()
        })
        .unwrap_or_default();
    let mut n = 0;
    // The lock file last, still held: a create that opened it meanwhile finds its lock
    // gone from the path and gives up (see `TenantStores::get`).
    for f in mine.iter().chain(std::iter::once(&lock_path)) {
        match std::fs::remove_file(f) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e.kind(), "cannot remove a leftover tenant file")
            }
        }
    }
    super::lifecycle::forget_witnessed(app, id);
    drop(lock);
    n
}
