//! Open tenant files: opened lazily on first use, closed after idle time, and never more than
//! a configured number at once (least recently used closes first). One node can hold thousands
//! of tenants this way while only the busy ones hold a writer thread and file handles.

use super::{FileKind, OpenSpec, Store, StoreError};
use crate::audit::JournalConfig;
use crate::clock::Clock;
use crate::keyring::{Signer, TenantKeys};
use crate::tenants::TenantId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

struct Slot {
    store: Arc<Store>,
    last_used: Instant,
}

pub struct TenantStores {
    dir: PathBuf,
    signer: Arc<Signer>,
    clock: Arc<dyn Clock>,
    settings: StoreSettings,
    // Held while a file opens, so two requests never start two writers for one file.
    open: Mutex<HashMap<TenantId, Slot>>,
}

/// Path of a tenant's file under the data directory.
pub fn tenant_path(data_dir: &Path, id: &TenantId) -> PathBuf {
    data_dir.join("tenants").join(format!("{}.db", id.as_str()))
}

pub fn tenant_label(id: &TenantId) -> String {
    format!("tenant {}", id.as_str())
}

impl TenantStores {
    pub fn new(
        data_dir: &Path,
        signer: Arc<Signer>,
        clock: Arc<dyn Clock>,
        settings: StoreSettings,
    ) -> Self {
        Self {
            dir: data_dir.to_path_buf(),
            signer,
            clock,
            settings,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn journal_config(&self, journal_id: &str) -> JournalConfig {
        JournalConfig {
            journal_id: journal_id.to_string(),
            signer: self.signer.clone(),
            clock: self.clock.clone(),
            checkpoint_every: self.settings.checkpoint_every,
            checkpoint_interval: self.settings.checkpoint_interval,
        }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// The open store of a tenant, opening it with `keys` if needed. `keys` is only called
    /// when the file is not open yet. Blocking.
    ///
    /// # Errors
    /// The key could not be obtained or the file could not be opened.
    pub fn get<E: From<StoreError>>(
        &self,
        id: &TenantId,
        create: bool,
        keys: impl FnOnce() -> Result<TenantKeys, E>,
    ) -> Result<Arc<Store>, E> {
        let mut open = self.open.lock().map_err(|_| StoreError::Closed {
            what: tenant_label(id),
        })?;
        if let Some(slot) = open.get_mut(id) {
            slot.last_used = Instant::now();
            return Ok(slot.store.clone());
        }
        let keys = keys()?;
        let label = tenant_label(id);
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
        let store = Arc::new(Store::open(&spec, self.journal_config(id.as_str()))?);
        open.insert(
            id.clone(),
            Slot {
                store: store.clone(),
                last_used: Instant::now(),
            },
        );
        let evicted = evict_lru(&mut open, self.settings.max_open_tenants);
        drop(open);
        close_all(evicted);
        Ok(store)
    }

    /// Closes the tenant's file if it is open (before deletion or a key change).
    pub fn close(&self, id: &TenantId) {
        let slot = self.open.lock().ok().and_then(|mut o| o.remove(id));
        if let Some(slot) = slot {
            close_all(vec![slot.store]);
        }
    }

    /// Closes files unused for the idle period. The server calls this periodically.
    pub fn close_idle(&self) -> usize {
        let idle = self.settings.tenant_idle;
        let victims: Vec<Arc<Store>> = match self.open.lock() {
            Ok(mut open) => {
                let ids: Vec<TenantId> = open
                    .iter()
                    .filter(|(_, s)| {
                        s.last_used.elapsed() >= idle && Arc::strong_count(&s.store) == 1
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter()
                    .filter_map(|id| open.remove(id).map(|s| s.store))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let n = victims.len();
        close_all(victims);
        n
    }

    pub fn open_count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Closes every open file, flushing writers. Used at shutdown.
    pub fn close_everything(&self) {
        let all: Vec<Arc<Store>> = match self.open.lock() {
            Ok(mut open) => open.drain().map(|(_, s)| s.store).collect(),
            Err(_) => Vec::new(),
        };
        close_all(all);
    }
}

fn evict_lru(open: &mut HashMap<TenantId, Slot>, max: usize) -> Vec<Arc<Store>> {
    let mut out = Vec::new();
    while open.len() > max.max(1) {
        let victim = open
            .iter()
            .filter(|(_, s)| Arc::strong_count(&s.store) == 1)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| id.clone());
        match victim.and_then(|id| open.remove(&id)) {
            Some(slot) => out.push(slot.store),
            // Everything is in use right now; going over the bound briefly beats failing.
            None => break,
        }
    }
    out
}

fn close_all(stores: Vec<Arc<Store>>) {
    for store in stores {
        let label = store.label().to_string();
        match Arc::try_unwrap(store) {
            Ok(store) => {
                if let Err(e) = store.close() {
                    tracing::warn!(file = %label, error = %e, "closing tenant file failed");
                }
            }
            // Still borrowed by a request: its writer stops when the last handle drops.
            Err(_still_used) => {}
        }
    }
}
