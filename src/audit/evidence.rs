//! Read-only access to an installation's evidence: the journals, the registry that anchors
//! them, and the keys that open and verify them. `audit verify`, `export`, `checkpoints` and
//! `witness` work through this, never through [`crate::app::App`]: they take no lock, start
//! no writer, run no migration, settle no interrupted operation and create no file, so they
//! work on a read-only copy or a full disk, and cannot alter what they check.

use super::verify::TrustedKey;
use crate::app::{self, AppError};
use crate::config::Config;
use crate::ids::TenantId;
use crate::keyring::system_key::SystemKeyFile;
use crate::keyring::{self, Key32, Keyring, Signer, TenantKeys};
use crate::store::system::{self, Tenant};
use crate::store::tenants::{tenant_label, tenant_path};
use crate::store::{self, FileKind, OpenSpec, StoreError};
use crate::tenants::TenantError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// True when no process uses the data directory right now: its shared lock is free. Looked
/// at without creating the lock file; one that cannot be read counts as in use.
fn nobody_else(data_dir: &Path) -> bool {
    match std::fs::File::open(data_dir.join("strongroom.lock")) {
        Ok(f) => f.try_lock().is_ok(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// One installation, opened for reading evidence only.
pub struct Evidence {
    config: Config,
    data_dir: PathBuf,
    keyring: Keyring,
    system_dek: Key32,
    signer: Signer,
    system: Connection,
    busy_timeout: Duration,
    /// No other process held the data directory when this opened: files with an empty WAL
    /// may then be read `immutable` (see [`store::open_evidence_with`]).
    quiet: bool,
}

/// How to open one journal's file for reading.
pub struct JournalFile {
    /// `system`, or the tenant id.
    pub journal: String,
    pub label: String,
    pub path: PathBuf,
    key: Key32,
    pub version: u32,
    pub kind: FileKind,
    /// Where `system.db` says this journal reached (tenants only).
    pub anchor: Option<(u64, Vec<u8>)>,
    busy_timeout: Duration,
    pub quiet: bool,
}

impl JournalFile {
    pub fn spec(&self) -> OpenSpec<'_> {
        OpenSpec {
            path: &self.path,
            label: &self.label,
            key: &self.key,
            key_version: self.version,
            kind: self.kind,
            create: false,
            busy_timeout: self.busy_timeout,
            plaintext: false,
        }
    }

    /// A read-only connection to the file (see [`store::open_evidence`]).
    ///
    /// # Errors
    /// As [`store::open_evidence`].
    pub fn open(&self) -> Result<Connection, StoreError> {
        store::open_evidence_with(&self.spec(), self.quiet)
    }
}

impl Evidence {
    /// Opens the installation in `data_dir` read-only: the root key, `system.key`, and
    /// `system.db` as evidence.
    ///
    /// # Errors
    /// A bad or uninitialized data directory, an interrupted restore, a lost or damaged
    /// `system.db`, or a key that does not load or does not open it.
    pub fn open(config: &Config, data_dir: &Path) -> Result<Self, AppError> {
        app::check_data_dir(data_dir)?;
        app::refuse_pending_restore(data_dir)?;
        app::refuse_lost_system_db(data_dir)?;
        if !data_dir.join("system.db").exists() {
            return Err(AppError::NotInitialized(data_dir.display().to_string()));
        }
        let (root, source) = keyring::load_root_key(
            app::credentials_dir().as_deref(),
            &app::root_key_file(config, data_dir),
        )?;
        let keyring = Keyring::new(root, source)?;
        let system_dek = SystemKeyFile::read(&app::system_key_path(data_dir))?.unwrap(&keyring)?;
        let signer = Signer::from_system_dek(&system_dek)?;
        let busy_timeout = app::settings_from(config).busy_timeout;
        let path = data_dir.join("system.db");
        let spec = app::system_spec(&path, &system_dek, &app::settings_from(config), false);
        let quiet = nobody_else(data_dir);
        let system = store::open_evidence_with(&spec, quiet)?;
        Ok(Self {
            config: config.clone(),
            data_dir: data_dir.to_path_buf(),
            keyring,
            system_dek,
            signer,
            system,
            busy_timeout,
            quiet,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The installation's checkpoint signer (it signs witness heads too).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The root key, for reading (key ids, sources, unwrapping for verification).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn key_source(&self) -> &crate::keyring::RootKeySource {
        self.keyring.source()
    }

    pub fn root_key_id(&self) -> &str {
        self.keyring.root_key_id()
    }

    /// True when the root key was read from a file inside the data directory.
    pub fn root_key_beside_data(&self) -> bool {
        app::key_beside_data(self.keyring.source(), &self.data_dir)
    }

    /// The read-only connection to `system.db`.
    pub fn system(&self) -> &Connection {
        &self.system
    }

    fn err(&self, e: &rusqlite::Error) -> StoreError {
        StoreError::from_sqlite("system.db", 1, e)
    }

    /// Tenants in the registry, oldest first.
    ///
    /// # Errors
    /// The registry cannot be read.
    pub fn tenants(&self, include_deleted: bool) -> Result<Vec<Tenant>, StoreError> {
        system::list(&self.system, include_deleted).map_err(|e| self.err(&e))
    }

    /// One tenant, deleted ones included.
    ///
    /// # Errors
    /// Unknown id, or the registry cannot be read.
    pub fn tenant(&self, id: &TenantId) -> Result<Tenant, TenantError> {
        system::get(&self.system, id)
            .map_err(|e| self.err(&e))?
            .ok_or_else(|| TenantError::NotFound(id.to_string()))
    }

    /// This installation's checkpoint key, and for a tenant journal restored from another
    /// installation, the keys trusted for that journal alone.
    pub fn trusted_keys(&self, journal: &str) -> Vec<TrustedKey> {
        let mut keys = vec![TrustedKey {
            id: self.signer.signing_key_id(),
            public_key: self.signer.signing_public_key(),
        }];
        match system::signing_keys(&self.system, journal) {
            Ok(rows) => keys.extend(
                rows.into_iter()
                    .map(|(id, public_key)| TrustedKey { id, public_key }),
            ),
            Err(e) => tracing::warn!(error = %self.err(&e), "cannot read trusted signing keys"),
        }
        keys
    }

    /// `system.db` as a journal file.
    pub fn system_file(&self) -> JournalFile {
        JournalFile {
            journal: "system".into(),
            label: "system.db".into(),
            path: self.data_dir.join("system.db"),
            key: self.system_dek.duplicate(),
            version: 1,
            kind: FileKind::System,
            anchor: None,
            busy_timeout: self.busy_timeout,
            quiet: self.quiet,
        }
    }

    /// A live tenant's file as a journal file, with its key and anchor. When a rotation or
    /// restore committed but a crash kept its copy from replacing the file, the copy is the
    /// tenant's data, and is what is read (nothing is renamed here).
    ///
    /// # Errors
    /// Unknown or deleted tenant, a key that does not unwrap, or an unreadable registry.
    pub fn tenant_file(&self, id: &TenantId) -> Result<JournalFile, TenantError> {
        let t = self.tenant(id)?;
        if t.status == system::TenantStatus::Deleted {
            return Err(TenantError::NotFound(id.to_string()));
        }
        let keys = self.tenant_keys(&t)?;
        let anchor = system::anchor(&self.system, id).map_err(|e| self.err(&e))?;
        let staged = store::staged::staged_path(&self.data_dir, id, keys.version);
        let path = if staged.exists() {
            staged
        } else {
            tenant_path(&self.data_dir, id)
        };
        Ok(JournalFile {
            journal: id.to_string(),
            label: tenant_label(id),
            path,
            key: keys.dek().duplicate(),
            version: keys.version,
            kind: FileKind::Tenant,
            anchor,
            busy_timeout: self.busy_timeout,
            quiet: self.quiet,
        })
    }

    fn tenant_keys(&self, t: &Tenant) -> Result<TenantKeys, TenantError> {
        let wrapped = system::wrapped_dek(
            &self.system,
            &t.id,
            t.key_version,
            self.keyring.root_key_id(),
        )
        .map_err(|e| self.err(&e))?
        .ok_or_else(|| StoreError::Decrypt {
            what: tenant_label(&t.id),
            version: t.key_version,
        })?;
        let dek = self
            .keyring
            .unwrap_dek(t.id.as_str(), t.key_version, &wrapped)?;
        Ok(TenantKeys::new(t.key_version, dek)?)
    }
}
