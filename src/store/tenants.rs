//! Open tenant files: opened lazily on first use, closed after idle time, and never more than
//! a configured number at once (least recently used closes first). One node can hold thousands
//! of tenants this way while only the busy ones hold a writer thread and file handles.

use super::{FileKind, OpenSpec, Store, StoreError};
use crate::audit::JournalConfig;
use crate::clock::Clock;
use crate::ids::TenantId;
use crate::keyring::{Signer, TenantKeys};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Settings shared by every store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub busy_timeout: Duration,
    pub max_open_tenants: usize,
    pub tenant_idle: Duration,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            max_open_tenants: 256,
            tenant_idle: Duration::from_secs(300),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// One tenant's place in the table. Its mutex is held while that tenant's file opens, so a
/// slow open blocks only requests for the same tenant.
#[derive(Default)]
struct Slot {
    open: Mutex<Option<OpenTenant>>,
}

struct OpenTenant {
    store: Arc<Store>,
    /// On the stores' clock (microseconds), so idle closing follows a test's clock too.
    last_used: i64,
    /// Shared flock on `tenants/<id>.lock`: another process that wants the tenant alone
    /// (delete, re-key) sees that this one has it open.
    _lock: std::fs::File,
}

/// Told (tenant, seq, hash) after a tenant checkpoint commits.
pub type AnchorHook = Arc<dyn Fn(&TenantId, u64, [u8; 32]) + Send + Sync>;

/// Checks an existing tenant file, on a read-only connection, before it is opened for use:
/// before its schema steps run and before any request can reach it (the witness check).
pub type OpenCheck =
    Arc<dyn Fn(&TenantId, &rusqlite::Connection) -> Result<(), StoreError> + Send + Sync>;

pub struct TenantStores {
    dir: PathBuf,
    signer: Arc<Signer>,
    anchor: Option<AnchorHook>,
    open_check: Option<OpenCheck>,
    clock: Arc<dyn Clock>,
    settings: StoreSettings,
    slots: Mutex<HashMap<TenantId, Arc<Slot>>>,
    /// Tenants being deleted in this process: never (re)opened again.
    closing: Mutex<HashMap<TenantId, Hold>>,
    /// Signalled when a paused tenant is released.
    released: Condvar,
}

/// Path of a tenant's file under the data directory.
pub fn tenant_path(data_dir: &Path, id: &TenantId) -> PathBuf {
    data_dir.join("tenants").join(format!("{}.db", id.as_str()))
}

pub fn tenant_lock_path(data_dir: &Path, id: &TenantId) -> PathBuf {
    data_dir
        .join("tenants")
        .join(format!("{}.lock", id.as_str()))
}

pub fn tenant_label(id: &TenantId) -> String {
    format!("tenant {}", id.as_str())
}

fn open_lock(path: &Path, label: &str) -> Result<std::fs::File, StoreError> {
    crate::fsutil::open_lock_file(path).map_err(|e| StoreError::Io {
        what: label.to_string(),
        reason: format!("cannot open lock file: {}", e.kind()),
    })
}

/// True when `path` still names the file `held` is open on.
fn same_file(held: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (held.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Why a tenant is taken away from everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// For good (deletion): requests fail at once.
    Remove,
    /// For a moment (key rotation, restore): requests wait, up to the busy timeout.
    Pause,
}

/// Held while one process has a tenant to itself (deletion, re-keying).
pub struct ExclusiveTenant {
    _lock: std::fs::File,
    path: PathBuf,
}

impl ExclusiveTenant {
    /// Removes the lock file too, once the tenant is gone for good.
    pub fn release_and_remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl TenantStores {
    pub fn new(
        data_dir: &Path,
        signer: Arc<Signer>,
        clock: Arc<dyn Clock>,
        settings: StoreSettings,
        anchor: Option<AnchorHook>,
    ) -> Self {
        Self {
            dir: data_dir.to_path_buf(),
            signer,
            anchor,
            open_check: None,
            clock,
            settings,
            slots: Mutex::new(HashMap::new()),
            closing: Mutex::new(HashMap::new()),
            released: Condvar::new(),
        }
    }

    /// Runs `check` on every existing tenant file before it opens (see [`OpenCheck`]).
    #[must_use]
    pub fn with_open_check(mut self, check: OpenCheck) -> Self {
        self.open_check = Some(check);
        self
    }

    fn journal_config(&self, id: &TenantId) -> JournalConfig {
        let on_checkpoint = self.anchor.clone().map(|hook| {
            let id = id.clone();
            Arc::new(move |seq: u64, hash: [u8; 32]| hook(&id, seq, hash))
                as crate::audit::journal::CheckpointHook
        });
        JournalConfig {
            journal_id: id.as_str().to_string(),
            signer: self.signer.clone(),
            clock: self.clock.clone(),
            checkpoint_every: self.settings.checkpoint_every,
            checkpoint_interval: self.settings.checkpoint_interval,
            on_checkpoint,
        }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    fn slot(&self, id: &TenantId) -> Result<Arc<Slot>, StoreError> {
        let closed = || StoreError::Closed {
            what: tenant_label(id),
        };
        {
            let held = self.closing.lock().map_err(|_| closed())?;
            match held.get(id) {
                None => {}
                Some(Hold::Remove) => return Err(closed()),
                // Paused (a key rotation, a restore): wait for it, like a busy writer.
                Some(Hold::Pause) => {
                    let (held, _) = self
                        .released
                        .wait_timeout_while(held, self.settings.busy_timeout, |h| {
                            h.contains_key(id)
                        })
                        .map_err(|_| closed())?;
                    if held.contains_key(id) {
                        return Err(StoreError::Busy {
                            what: tenant_label(id),
                        });
                    }
                }
            }
        }
        let mut slots = self.slots.lock().map_err(|_| closed())?;
        Ok(slots.entry(id.clone()).or_default().clone())
    }

    /// The tenant's store if this process has it open and it is not paused; never opens.
    pub fn get_open(&self, id: &TenantId) -> Option<Arc<Store>> {
        if self.closing.lock().ok()?.contains_key(id) {
            return None;
        }
        let slot = self.slots.lock().ok()?.get(id).cloned()?;
        let mut open = slot.open.lock().ok()?;
        let t = open.as_mut()?;
        t.last_used = self.clock.now_us();
        Some(t.store.clone())
    }

    /// The open store of a tenant, opening it with `keys` if needed. `keys` is only called
    /// when the file is not open yet. Blocking.
    ///
    /// # Errors
    /// The tenant is being deleted, another process has it alone, the key could not be
    /// obtained, or the file could not be opened.
    pub fn get<E: From<StoreError>>(
        &self,
        id: &TenantId,
        create: bool,
        keys: impl FnOnce() -> Result<TenantKeys, E>,
    ) -> Result<Arc<Store>, E> {
        let label = tenant_label(id);
        let closed = || StoreError::Closed {
            what: label.clone(),
        };
        // The pause check in `slot` and this slot's lock are taken one after the other: a
        // pause that began in between (its close found the slot empty) must be seen here,
        // under the slot's lock, or this would open the file under the pausing operation.
        // Bounded: each round waits for the pause to end, up to the busy timeout.
        let mut rounds = 0;
        let mut slot = self.slot(id)?;
        let mut open = loop {
            let open = slot.open.lock().map_err(|_| closed())?;
            let paused = self.closing.lock().map_err(|_| closed())?.contains_key(id);
            if !paused || open.is_some() {
                break open;
            }
            drop(open);
            rounds += 1;
            if rounds > 3 {
                return Err(StoreError::Busy { what: label }.into());
            }
            slot = self.slot(id)?;
        };
        if let Some(t) = open.as_mut() {
            t.last_used = self.clock.now_us();
            return Ok(t.store.clone());
        }
        let keys = keys()?;
        let lock = open_lock(&tenant_lock_path(&self.dir, id), &label)?;
        if lock.try_lock_shared().is_err() {
            return Err(StoreError::Busy { what: label }.into());
        }
        // A lock on a file that was unlinked meanwhile (leftover removal) protects nothing.
        if !same_file(&lock, &tenant_lock_path(&self.dir, id)) {
            return Err(StoreError::Busy { what: label }.into());
        }
        let path = tenant_path(&self.dir, id);
        let spec = OpenSpec {
            path: &path,
            label: &label,
            key: keys.dek(),
            key_version: keys.version,
            kind: FileKind::Tenant,
            create,
            busy_timeout: self.settings.busy_timeout,
            plaintext: false,
        };
        if let (false, Some(check)) = (create, &self.open_check) {
            // Other processes may be writing it: read it through its WAL and locks.
            let conn = super::open_evidence_with(&spec, false)?;
            check(id, &conn)?;
        }
        let store = Arc::new(Store::open(&spec, self.journal_config(id))?);
        *open = Some(OpenTenant {
            store: store.clone(),
            last_used: self.clock.now_us(),
            _lock: lock,
        });
        drop(open);
        self.evict_over_bound();
        Ok(store)
    }

    /// Takes a tenant away from every process but this one, for deletion or re-keying: this
    /// process stops using it, and the call fails if another process has it open.
    ///
    /// # Errors
    /// [`StoreError::Busy`] when another process (the server) has the tenant open.
    pub fn take_exclusive(&self, id: &TenantId, hold: Hold) -> Result<ExclusiveTenant, StoreError> {
        let label = tenant_label(id);
        if let Ok(mut c) = self.closing.lock() {
            c.insert(id.clone(), hold);
        }
        self.close(id);
        let path = tenant_lock_path(&self.dir, id);
        let lock = open_lock(&path, &label)?;
        // The lock this process just let go can outlive its close for a moment: a thread that
        // is starting a program holds a copy of every descriptor between fork and exec. So a
        // refusal is only believed after a short wait; a real holder is still there after it.
        let deadline = Instant::now() + std::time::Duration::from_millis(250);
        while lock.try_lock().is_err() {
            if Instant::now() >= deadline {
                self.reopen_allowed(id);
                return Err(StoreError::Busy { what: label });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(ExclusiveTenant { _lock: lock, path })
    }

    /// Lets a tenant be opened again after [`TenantStores::take_exclusive`] (the operation
    /// did not go through).
    pub fn reopen_allowed(&self, id: &TenantId) {
        if let Ok(mut c) = self.closing.lock() {
            c.remove(id);
        }
        self.released.notify_all();
    }

    /// Closes the tenant's file in this process. Its writer stops at once even if a request
    /// still holds the store: later writes through that handle fail instead of landing in a
    /// file that is about to go away.
    pub fn close(&self, id: &TenantId) {
        let slot = self.slots.lock().ok().and_then(|s| s.get(id).cloned());
        let taken = slot.and_then(|s| s.open.lock().ok().and_then(|mut o| o.take()));
        if let Some(t) = taken {
            close_store(t.store);
        }
    }

    /// Closes files unused for the idle period, and forgets tenants that are neither open nor
    /// being opened, so the table stays as small as the working set. The server calls this
    /// periodically.
    pub fn close_idle(&self) -> usize {
        let idle = self.settings.tenant_idle;
        let idle_us = i64::try_from(idle.as_micros()).unwrap_or(i64::MAX);
        let now = self.clock.now_us();
        let victims = self.take_where(|t| now.saturating_sub(t.last_used) >= idle_us, usize::MAX);
        let n = victims.len();
        victims.into_iter().for_each(close_store);
        self.forget_closed();
        n
    }

    /// Drops empty slots nobody holds. A slot is only handed out under the table's lock, so
    /// one with no other reference cannot gain one while the table is locked here.
    fn forget_closed(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.open.try_lock().map_or(true, |open| open.is_some())
            });
        }
    }

    /// How many tenants the table tracks, open or not.
    pub fn tracked_count(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn open_count(&self) -> usize {
        self.open_slots()
            .iter()
            .filter(|s| s.open.lock().map(|o| o.is_some()).unwrap_or(false))
            .count()
    }

    /// Closes every open file, flushing writers. Used at shutdown.
    pub fn close_everything(&self) {
        for slot in self.open_slots() {
            let taken = slot.open.lock().ok().and_then(|mut o| o.take());
            if let Some(t) = taken {
                close_store(t.store);
            }
        }
    }

    fn open_slots(&self) -> Vec<Arc<Slot>> {
        self.slots
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes up to `max` open, unused stores matching `pred`, least recently used first.
    /// Slots whose lock is held (a file opening right now) are skipped, never waited for.
    fn take_where(&self, pred: impl Fn(&OpenTenant) -> bool, max: usize) -> Vec<Arc<Store>> {
        let mut candidates: Vec<(i64, Arc<Slot>)> = Vec::new();
        for slot in self.open_slots() {
            if let Ok(open) = slot.open.try_lock() {
                if let Some(t) = open.as_ref() {
                    if Arc::strong_count(&t.store) == 1 && pred(t) {
                        candidates.push((t.last_used, slot.clone()));
                    }
                }
            }
        }
        candidates.sort_by_key(|(t, _)| *t);
        candidates
            .into_iter()
            .take(max)
            .filter_map(|(_, slot)| {
                let mut open = slot.open.try_lock().ok()?;
                let unused = open
                    .as_ref()
                    .is_some_and(|t| Arc::strong_count(&t.store) == 1);
                if unused {
                    open.take().map(|t| t.store)
                } else {
                    None
                }
            })
            .collect()
    }

    fn evict_over_bound(&self) {
        let open = self.open_count();
        let max = self.settings.max_open_tenants.max(1);
        if open > max {
            // Everything in use right now stays open: going over the bound briefly beats
            // failing a request.
            let victims = self.take_where(|_| true, open - max);
            victims.into_iter().for_each(close_store);
        }
    }
}

/// Stops the writer (committing what is queued) even if other handles remain.
fn close_store(store: Arc<Store>) {
    let label = store.label().to_string();
    match Arc::try_unwrap(store) {
        Ok(store) => {
            if let Err(e) = store.close() {
                tracing::warn!(file = %label, error = %e, "closing tenant file failed");
            }
        }
        Err(shared) => {
            if let Err(e) = shared.writer().shutdown() {
                tracing::warn!(file = %label, error = %e, "closing tenant file failed");
            }
        }
    }
}
