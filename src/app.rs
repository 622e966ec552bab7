//! The running installation: configuration, keys, `system.db` and the open tenant files.
//! The CLI and the web server are two doors onto one `App`.

use crate::audit::{Actor, JournalConfig, NewEntry};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keyring::system_key::{SystemKeyError, SystemKeyFile};
use crate::keyring::{self, Key32, Keyring, KeyringError, Signer};
use crate::store::tenants::{StoreSettings, TenantStores};
use crate::store::{system, FileKind, OpenSpec, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {0} is not initialized (no system.db); run `strongroom init --data-dir {0}`")]
    NotInitialized(String),
    #[error("data directory {0} is already initialized")]
    AlreadyInitialized(String),
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("a key rotation or restore is running on {0}; retry when it has finished")]
    Exclusive(String),
    #[error("other strongroom processes are using {0} (the server, or another command); stop them first")]
    InUse(String),
    #[error("{dir} holds an installation (system.key{tenants}) but its system.db is missing; nothing is recreated in its place, because a new one would hold none of the tenant keys. Restore it with `strongroom backup restore`")]
    SystemDbMissing { dir: String, tenants: String },
    #[error("a restore into {dir} was interrupted, so its data may be incomplete; run the same `strongroom backup restore` again{aside}")]
    RestoreInterrupted { dir: String, aside: String },
    #[error("{0}")]
    Witness(String),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    SystemKey(#[from] SystemKeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotInitialized(_) => "APP-0001",
            Self::AlreadyInitialized(_) => "APP-0002",
            Self::DataDir { .. } => "APP-0003",
            Self::Exclusive(_) => "APP-0005",
            Self::InUse(_) => "APP-0006",
            Self::RestoreInterrupted { .. } => "APP-0007",
            Self::SystemDbMissing { .. } => "APP-0008",
            Self::Witness(_) => "APP-0009",
            Self::Keyring(e) => e.code(),
            Self::SystemKey(e) => e.code(),
            Self::Store(e) => e.code(),
        }
    }
}

pub struct App {
    config: Config,
    data_dir: PathBuf,
    keyring: Arc<Keyring>,
    system_dek: Key32,
    signer: Arc<Signer>,
    clock: Arc<dyn Clock>,
    system: Arc<Store>,
    tenants: TenantStores,
    /// Tenants found usable a moment ago (see [`crate::tenants::Standing`]).
    standing: crate::tenants::Standing,
    /// The e-mail directory, identity keys and the password hasher.
    directory: Arc<crate::identity::Directory>,
    /// Records each journal's checkpoints in the witness file.
    witness: Arc<crate::audit::witness::Keeper>,
    /// Shared flock on `strongroom.lock` for as long as this process uses the directory;
    /// operations that must be alone (root-key rotation, restore) upgrade it to exclusive.
    lock: std::fs::File,
}

/// A file in the data directory that the CLI replaces after changing people (accounts,
/// roles, tokens, tenant status). The server looks at it on every authenticated request and,
/// when it has changed, forgets every credential it remembers, so such a change holds on the
/// next request there too. It carries no data: only its identity (inode, time) matters.
pub const IDENTITY_EPOCH: &str = "identity.epoch";

/// Replaces [`IDENTITY_EPOCH`] (a new file, so a new inode: a change is never missed for
/// falling within one timestamp tick).
///
/// # Errors
/// The file cannot be written.
pub fn bump_identity_epoch(data_dir: &Path) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{IDENTITY_EPOCH}.{}", std::process::id()));
    std::fs::write(&tmp, b"")?;
    std::fs::rename(&tmp, data_dir.join(IDENTITY_EPOCH))
}

/// What identifies the current [`IDENTITY_EPOCH`] file (0 when there is none).
pub fn identity_epoch(data_dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(data_dir.join(IDENTITY_EPOCH)) {
        Ok(m) => {
            m.ino().rotate_left(32) ^ (m.mtime_nsec() as u64) ^ (m.mtime() as u64).rotate_left(17)
        }
        Err(_) => 0,
    }
}

/// Opens (creating if needed) the data directory's lock file, without locking it.
///
/// # Errors
/// The file cannot be opened.
pub fn lock_file(data_dir: &Path) -> Result<std::fs::File, AppError> {
    crate::fsutil::open_lock_file(&data_dir.join("strongroom.lock")).map_err(|e| {
        AppError::DataDir {
            path: data_dir.display().to_string(),
            reason: format!("cannot open strongroom.lock: {}", e.kind()),
        }
    })
}

/// Takes the shared lock every process holds while it uses a data directory.
fn lock_shared(data_dir: &Path) -> Result<std::fs::File, AppError> {
    let dd = data_dir.display().to_string();
    let file = lock_file(data_dir)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::Exclusive(dd)),
        Err(std::fs::TryLockError::Error(e)) => Err(AppError::DataDir {
            path: dd,
            reason: format!("cannot lock strongroom.lock: {}", e.kind()),
        }),
    }
}

/// The systemd credentials directory, if the service manager passed one.
pub fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

pub fn settings_from(config: &Config) -> StoreSettings {
    StoreSettings {
        busy_timeout: Duration::from_millis(config.store.busy_timeout_ms),
        max_open_tenants: config.store.max_open_tenants,
        tenant_idle: Duration::from_secs(config.store.tenant_idle_secs),
        checkpoint_every: config.audit.checkpoint_every,
        checkpoint_interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
    }
}

/// Where the witness of journal heads is kept (see [`crate::audit::witness`]).
pub fn witness_path(config: &Config, data_dir: &Path) -> PathBuf {
    config
        .audit
        .witness_path
        .clone()
        .unwrap_or_else(|| data_dir.join("witness.ndjson"))
}

/// `<data_dir>/root.key` unless the configuration names another file.
pub fn root_key_file(config: &Config, data_dir: &Path) -> PathBuf {
    config
        .keys
        .root_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("root.key"))
}

/// Present in a data directory from the moment a whole-installation restore starts changing
/// it until the restore is complete. While it is there, nothing opens or initializes the
/// directory: after a crash it may hold half of one installation and half of another.
pub const RESTORE_PENDING: &str = "restore.pending";

/// What `restore.pending` records: where earlier data was moved aside.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PendingRestore {
    pub format: u32,
    /// Folders (in the data directory) holding the data that was there before.
    pub moved_aside: Vec<String>,
}

impl PendingRestore {
    /// The marker's contents, if there is one. A marker that cannot be read or parsed (one
    /// root left, read by the service user) still counts as one.
    pub fn read(data_dir: &Path) -> Option<Self> {
        match std::fs::read(data_dir.join(RESTORE_PENDING)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // No marker can be there when the directory is not one, or its name too long.
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
                    || e.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error()) =>
            {
                None
            }
            Err(_) => Some(Self::default()),
        }
    }

    /// Writes the marker durably.
    ///
    /// # Errors
    /// The marker cannot be written.
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::fsutil::replace_atomically(&data_dir.join(RESTORE_PENDING), &bytes, 0o600)
    }

    /// Removes the marker durably: the restore is complete (or fully undone).
    ///
    /// # Errors
    /// The marker cannot be removed.
    pub fn clear(data_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(data_dir.join(RESTORE_PENDING)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        crate::fsutil::sync_dir(data_dir)
    }
}

/// Names what is wrong with the data directory itself (not a directory, not reachable, a
/// path too long) before anything reads inside it, so those are never mistaken for an
/// interrupted restore. A directory that does not exist yet is fine here.
pub(crate) fn check_data_dir(data_dir: &Path) -> Result<(), AppError> {
    let fail = |reason: String| AppError::DataDir {
        path: shorten(data_dir),
        reason,
    };
    match std::fs::metadata(data_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(fail("is not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(dir_reason(&e))),
    }
    match std::fs::read_dir(data_dir) {
        Ok(_) => Ok(()),
        Err(e) => Err(fail(dir_reason(&e))),
    }
}

fn dir_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) if n == rustix::io::Errno::NAMETOOLONG.raw_os_error() => {
            "the path is too long".into()
        }
        Some(n) if n == rustix::io::Errno::NOTDIR.raw_os_error() => {
            "a part of the path is not a directory".into()
        }
        Some(n) if n == rustix::io::Errno::ACCESS.raw_os_error() => {
            "permission denied; run as the user that owns the data directory".into()
        }
        _ => e.kind().to_string(),
    }
}

/// A path for a message: a pathological 5,000-character path is cut, not echoed whole.
fn shorten(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars().count() <= 200 {
        return s;
    }
    let head: String = s.chars().take(120).collect();
    format!("{head}… ({} characters)", s.chars().count())
}

/// Refuses a directory that was initialized but has lost its `system.db`: only `init` may
/// create one, and only where there was never an installation.
pub(crate) fn refuse_lost_system_db(data_dir: &Path) -> Result<(), AppError> {
    if data_dir.join("system.db").exists() {
        return Ok(());
    }
    let tenant_files = std::fs::read_dir(data_dir.join("tenants"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
                .count()
        })
        .unwrap_or(0);
    if system_key_path(data_dir).exists() || tenant_files > 0 {
        return Err(AppError::SystemDbMissing {
            dir: shorten(data_dir),
            tenants: if tenant_files > 0 {
                format!(" and {tenant_files} tenant files")
            } else {
                String::new()
            },
        });
    }
    Ok(())
}

pub(crate) fn refuse_pending_restore(data_dir: &Path) -> Result<(), AppError> {
    let Some(pending) = PendingRestore::read(data_dir) else {
        return Ok(());
    };
    let aside = if pending.moved_aside.is_empty() {
        String::new()
    } else {
        let dirs: Vec<String> = pending
            .moved_aside
            .iter()
            .map(|d| data_dir.join(d).display().to_string())
            .collect();
        format!("; the data that was there before is in {}", dirs.join(", "))
    };
    Err(AppError::RestoreInterrupted {
        dir: data_dir.display().to_string(),
        aside,
    })
}

/// True when the root key was read from a file inside `data_dir`.
pub fn key_beside_data(source: &crate::keyring::RootKeySource, data_dir: &Path) -> bool {
    let crate::keyring::RootKeySource::KeyFile(file) = source else {
        return false;
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canonical(file).starts_with(canonical(data_dir))
}

/// `<data_dir>/system.key`: the system DEK wrapped under the root key.
pub fn system_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("system.key")
}

pub(crate) fn system_spec<'a>(
    path: &'a Path,
    key: &'a keyring::Key32,
    settings: &StoreSettings,
    create: bool,
) -> OpenSpec<'a> {
    OpenSpec {
        path,
        label: "system.db",
        key,
        key_version: 1,
        kind: FileKind::System,
        create,
        busy_timeout: settings.busy_timeout,
        plaintext: false,
    }
}

/// What `init` made, for the operator.
#[derive(Debug, serde::Serialize)]
pub struct InitReport {
    pub data_dir: PathBuf,
    pub root_key: String,
    pub root_key_id: String,
    pub created_key_file: bool,
}

impl App {
    /// Creates a data directory (mode 0700), a root key file (mode 0600) unless a systemd
    /// credential provides the key, and `system.db` with its journal's first entry.
    ///
    /// # Errors
    /// Already initialized, directory not creatable, key or store faults.
    pub fn init(config: &Config, data_dir: &Path, actor: &Actor) -> Result<InitReport, AppError> {
        let dd = data_dir.display().to_string();
        let dir_err = |e: std::io::Error| AppError::DataDir {
            path: dd.clone(),
            reason: e.kind().to_string(),
        };
        check_data_dir(data_dir)?;
        refuse_pending_restore(data_dir)?;
        if data_dir.join("system.db").exists() {
            return Err(AppError::AlreadyInitialized(dd));
        }
        refuse_lost_system_db(data_dir)?;
        crate::fsutil::create_private_subdir(&data_dir.join("tenants")).map_err(dir_err)?;
        crate::fsutil::create_private_dir(data_dir).map_err(dir_err)?;
        // Alone, for the whole init: two inits at once would each seal their own system key.
        let lock = lock_file(data_dir)?;
        if lock.try_lock().is_err() {
            return Err(AppError::InUse(dd));
        }
        // Checked again under the lock: another init may have finished meanwhile.
        if data_dir.join("system.db").exists() {
            return Err(AppError::AlreadyInitialized(dd));
        }
        refuse_lost_system_db(data_dir)?;
        let creds = credentials_dir();
        let key_file = root_key_file(config, data_dir);
        let credential_present = creds
            .as_ref()
            .is_some_and(|d| d.join(keyring::ROOT_KEY_CREDENTIAL).exists());
        let mut created_key_file = false;
        if !credential_present && !key_file.exists() {
            let key = keyring::Key32::random()?;
            keyring::write_root_key_file(&key_file, &key).map_err(dir_err)?;
            created_key_file = true;
        }
        let held = lock.try_clone().map_err(dir_err)?;
        let app = Self::open_inner(config, data_dir, true, Some(held))?;
        let params = serde_json::json!({ "root_key_id": app.keyring.root_key_id() });
        let actor = actor.clone();
        let id = app.keyring.root_key_id().to_string();
        app.system
            .writer()
            .change(move |tx| -> Result<_, StoreError> {
                system::meta_set(tx.conn(), "root_key_id", &id).map_err(|e| tx.err(&e))?;
                system::meta_set(tx.conn(), "root_key_since_us", &tx.now_us().to_string())
                    .map_err(|e| tx.err(&e))?;
                Ok((
                    (),
                    NewEntry::new(actor, "system.init", "system").params(params),
                ))
            })
            .wait()?;
        let report = InitReport {
            data_dir: data_dir.to_path_buf(),
            root_key: app.keyring.source().to_string(),
            root_key_id: app.keyring.root_key_id().to_string(),
            created_key_file,
        };
        app.close();
        Ok(report)
    }

    /// Opens an initialized data directory: loads the root key (fail closed: no key, no
    /// service) and opens `system.db`.
    ///
    /// # Errors
    /// Not initialized, key problems, a root key that does not open `system.db`.
    pub fn open(config: &Config, data_dir: &Path) -> Result<Self, AppError> {
        check_data_dir(data_dir)?;
        // Checked here for the clearer message, and again under the lock.
        refuse_pending_restore(data_dir)?;
        refuse_lost_system_db(data_dir)?;
        if !data_dir.join("system.db").exists() {
            return Err(AppError::NotInitialized(shorten(data_dir)));
        }
        Self::open_inner(config, data_dir, false, None)
    }

    /// [`App::open`] for the restore that owns the directory's `restore.pending` marker and
    /// its exclusive lock; `held` is a handle on that lock, kept for as long as the `App`.
    ///
    /// # Errors
    /// As [`App::open`].
    pub(crate) fn open_during_restore(
        config: &Config,
        data_dir: &Path,
        held: std::fs::File,
    ) -> Result<Self, AppError> {
        Self::open_inner(config, data_dir, false, Some(held))
    }

    fn open_inner(
        config: &Config,
        data_dir: &Path,
        create: bool,
        held: Option<std::fs::File>,
    ) -> Result<Self, AppError> {
        crate::store::set_page_cache_budget(config.store.page_cache_mib << 20);
        let (root, source) = keyring::load_root_key(
            credentials_dir().as_deref(),
            &root_key_file(config, data_dir),
        )?;
        let keyring = Arc::new(Keyring::new(root, source)?);
        Self::with_keyring_held(
            config,
            data_dir,
            keyring,
            Arc::new(SystemClock),
            create,
            held,
        )
    }

    /// Opens with a given keyring and clock (benchmarks and tests). With `create`, a new
    /// system DEK is made and sealed into `system.key` unless that file exists.
    ///
    /// # Errors
    /// As [`App::open`].
    pub fn with_keyring(
        config: &Config,
        data_dir: &Path,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        create: bool,
    ) -> Result<Self, AppError> {
        Self::with_keyring_held(config, data_dir, keyring, clock, create, None)
    }

    /// As [`App::with_keyring`]; with `held`, under a lock the caller already holds instead
    /// of a new shared one.
    fn with_keyring_held(
        config: &Config,
        data_dir: &Path,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        create: bool,
        held: Option<std::fs::File>,
    ) -> Result<Self, AppError> {
        // The restore that owns the directory opens it under its own lock; it replaces the
        // journals on purpose, and resets their witnessed heads itself.
        let restoring = held.is_some();
        let lock = match held {
            Some(lock) => lock,
            None => {
                // Under the shared lock a restore cannot be starting, so what the marker says
                // now holds until this process lets go.
                let lock = lock_shared(data_dir)?;
                refuse_pending_restore(data_dir)?;
                lock
            }
        };
        let settings = settings_from(config);
        let key_path = system_key_path(data_dir);
        let system_dek = if create && !key_path.exists() {
            let dek = Key32::random()?;
            SystemKeyFile::seal(&keyring, &dek)?.write(&key_path)?;
            dek
        } else {
            SystemKeyFile::read(&key_path)?.unwrap(&keyring)?
        };
        let signer = Arc::new(Signer::from_system_dek(&system_dek)?);
        let witness = Arc::new(crate::audit::witness::Keeper::new(
            witness_path(config, data_dir),
            signer.clone(),
            clock.clone(),
        ));
        let path = data_dir.join("system.db");
        let spec = system_spec(&path, &system_dek, &settings, create);
        if !create && !restoring {
            // Before anything writes: a system.db put back from an older copy is refused
            // here, by every command and by the server, before it can undo a deletion.
            refuse_rolled_back_system(&spec, &witness)?;
        }
        let journal = JournalConfig {
            journal_id: "system".into(),
            signer: signer.clone(),
            clock: clock.clone(),
            checkpoint_every: settings.checkpoint_every,
            checkpoint_interval: settings.checkpoint_interval,
            on_checkpoint: Some({
                let w = witness.clone();
                Arc::new(move |seq, hash| w.note("system", seq, hash))
            }),
        };
        let system = Arc::new(Store::open(&spec, journal)?);
        let tenants = TenantStores::new(
            data_dir,
            signer.clone(),
            clock.clone(),
            settings,
            Some(anchor_in_registry(&system, &witness)),
        )
        .with_open_check(refuse_rolled_back_tenant(&system, &witness));
        let directory = Arc::new(crate::identity::Directory::new(
            system.clone(),
            &system_dek,
        )?);
        Ok(Self {
            config: config.clone(),
            data_dir: data_dir.to_path_buf(),
            keyring,
            directory,
            system_dek,
            signer,
            clock,
            system,
            tenants,
            standing: crate::tenants::Standing::default(),
            witness,
            lock,
        })
    }

    /// Makes this process the only one using the data directory, for as long as it runs.
    ///
    /// # Errors
    /// [`AppError::InUse`] if the server or another command has the directory open.
    pub fn lock_exclusive(&self) -> Result<(), AppError> {
        match self.lock.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(AppError::InUse(self.data_dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(AppError::DataDir {
                path: self.data_dir.display().to_string(),
                reason: format!("cannot lock strongroom.lock: {}", e.kind()),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// True when the root key was read from a file inside the data directory. Then a copy of
    /// the directory, or a snapshot of the volume, carries the key that opens it.
    pub fn root_key_beside_data(&self) -> bool {
        key_beside_data(self.keyring.source(), &self.data_dir)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// How to open a copy of `system.db` (a backup snapshot): the store's open path is the
    /// one place the system key goes.
    pub fn system_spec_for<'a>(&'a self, path: &'a Path) -> OpenSpec<'a> {
        system_spec(path, &self.system_dek, &settings_from(&self.config), false)
    }

    /// Seals the system key under `next` too, in `system.key` (step 3 of a root rotation),
    /// so that both the old and the new root key open it.
    ///
    /// # Errors
    /// `system.key` cannot be read, sealed or written.
    pub fn add_system_key_wrapping(&self, next: &Keyring) -> Result<(), AppError> {
        let path = system_key_path(&self.data_dir);
        let mut skf = SystemKeyFile::read(&path)?;
        skf.add(next, &self.system_dek)?;
        skf.write(&path)?;
        Ok(())
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// `system.db`, shared: for a [`crate::door::PlatformCtx`].
    pub(crate) fn system_shared(&self) -> Arc<Store> {
        self.system.clone()
    }

    /// The keys that verify a journal's checkpoints: this installation's signing key and any
    /// a journal brought from elsewhere (a restore).
    pub fn trusted_keys(&self, journal: &str) -> Vec<crate::audit::verify::TrustedKey> {
        let mut keys = vec![crate::audit::verify::TrustedKey {
            id: self.signer.signing_key_id(),
            public_key: self.signer.signing_public_key(),
        }];
        match self
            .system
            .read(|c| system::signing_keys(c, journal).map_err(|e| self.system.err(&e)))
        {
            Ok(rows) => keys.extend(
                rows.into_iter()
                    .map(|(id, public_key)| crate::audit::verify::TrustedKey { id, public_key }),
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read trusted signing keys"),
        }
        keys
    }

    /// Accounts' addresses, identity keys, the password hasher.
    pub fn directory(&self) -> &Arc<crate::identity::Directory> {
        &self.directory
    }

    pub fn system(&self) -> &Store {
        &self.system
    }

    pub fn tenant_stores(&self) -> &TenantStores {
        &self.tenants
    }

    /// Tenants found usable a moment ago, for the door.
    pub fn standing(&self) -> &crate::tenants::Standing {
        &self.standing
    }

    /// The identity epoch of this data directory now (see [`IDENTITY_EPOCH`]).
    pub fn identity_epoch(&self) -> u64 {
        identity_epoch(&self.data_dir)
    }

    pub fn witness(&self) -> &crate::audit::witness::Keeper {
        &self.witness
    }

    /// Writes the heads noted since the last flush into the witness file. The server calls
    /// this periodically; every process does at close.
    pub fn flush_witness(&self) {
        if let Err(e) = self.witness.flush() {
            tracing::warn!(error = %e, "cannot update the witness; the heads stay noted and the next flush retries");
        }
    }

    /// Flushes and closes every file: queued writes commit, journals get a final checkpoint.
    pub fn close(self) {
        self.shutdown();
    }

    /// As [`App::close`], for when other handles to the `App` may remain (the server's
    /// tasks): every writer stops, so nothing is acknowledged after this returns.
    pub fn shutdown(&self) {
        self.tenants.close_everything();
        if let Err(e) = self.system.writer().shutdown() {
            tracing::warn!(error = %e, "closing system.db failed");
        }
        // After the writers stopped: their final checkpoints are noted by now.
        self.flush_witness();
    }
}

/// A command that ends without [`App::close`] (an early return, a benchmark) still commits
/// what is queued, signs its journals and records their heads in the witness.
impl Drop for App {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Refuses a `system.db` whose journal does not extend the head its witness recorded.
fn refuse_rolled_back_system(
    spec: &OpenSpec<'_>,
    witness: &crate::audit::witness::Keeper,
) -> Result<(), AppError> {
    use crate::audit::witness::{self, Extends};
    let Some(head) = witness
        .head_of("system")
        .map_err(|e| AppError::Witness(e.to_string()))?
    else {
        return Ok(());
    };
    // Other processes may be writing it: read it through its WAL and locks.
    let conn = crate::store::open_evidence_with(spec, false)?;
    let found = witness::extends(&conn, &head)
        .map_err(|e| StoreError::from_sqlite(spec.label, spec.key_version, &e))?;
    if found == Extends::Yes {
        return Ok(());
    }
    Err(StoreError::RolledBack {
        what: "system.db".into(),
        detail: witness::describe("system.db", witness.path(), &head, &found),
    }
    .into())
}

/// Refuses a tenant file whose journal does not extend the head its witness recorded, or
/// does not reach the position `system.db` recorded for it (an older copy put back in
/// place, or its tail cut), before its schema steps run and before any request can reach
/// it. The second holds when the witness was deleted too: without it, a journal put back
/// and written past its old position would verify again. A tenant restore that committed
/// (its entry still owed to the tenant's journal) but died before it could reset the
/// witnessed head is the sanctioned step back.
fn refuse_rolled_back_tenant(
    system: &Arc<Store>,
    witness: &Arc<crate::audit::witness::Keeper>,
) -> crate::store::tenants::OpenCheck {
    use crate::audit::witness::{self, Extends};
    let (system, witness) = (Arc::downgrade(system), witness.clone());
    Arc::new(
        move |id: &crate::ids::TenantId, conn: &rusqlite::Connection| {
            let label = crate::store::tenants::tenant_label(id);
            let io = |e: crate::audit::witness::WitnessError| StoreError::Io {
                what: label.clone(),
                reason: e.to_string(),
            };
            let sql = |e: rusqlite::Error| StoreError::from_sqlite(&label, 0, &e);
            let Some(sys) = system.upgrade() else {
                return Err(StoreError::Closed { what: label });
            };
            let restore_owed = || -> Result<bool, StoreError> {
                let owed = sys.read(|c| system::outbox_for(c, id).map_err(|e| sys.err(&e)))?;
                Ok(owed.iter().any(|e| e.action == "backup.restore"))
            };
            if let Some(head) = witness.head_of(id.as_str()).map_err(io)? {
                let found = witness::extends(conn, &head).map_err(sql)?;
                if found != Extends::Yes {
                    if restore_owed()? {
                        tracing::warn!(tenant = %id, "a committed tenant restore had not reset the witness; resetting it now");
                        witness.forget(Some(&[id.to_string()])).map_err(io)?;
                        return Ok(());
                    }
                    return Err(StoreError::RolledBack {
                        detail: witness::describe(&label, witness.path(), &head, &found),
                        what: label,
                    });
                }
            }
            let Some((seq, hash)) = sys.read(|c| system::anchor(c, id).map_err(|e| sys.err(&e)))?
            else {
                return Ok(());
            };
            let head_seq: i64 = conn
                .query_row("SELECT coalesce(max(seq), 0) FROM audit_entries", [], |r| {
                    r.get(0)
                })
                .map_err(sql)?;
            let problem =
                crate::audit::verify::check_anchor(conn, head_seq.max(0) as u64, seq, &hash)
                    .map_err(sql)?;
            match problem {
                Some(problem) if !restore_owed()? => Err(StoreError::RolledBack {
                    detail: format!(
                        "{label}: {}; put back the current file, or restore the tenant with `strongroom backup restore`",
                        problem.detail
                    ),
                    what: label,
                }),
                _ => Ok(()),
            }
        },
    )
}

/// Records each tenant checkpoint's position in `system.db`, so that cutting a tenant's
/// journal together with its checkpoints is still detected. The record lags the tenant file
/// (a separate transaction, not waited for): it only ever claims less than is there.
fn anchor_in_registry(
    system: &Arc<Store>,
    witness: &Arc<crate::audit::witness::Keeper>,
) -> crate::store::tenants::AnchorHook {
    let weak = Arc::downgrade(system);
    let witness = witness.clone();
    Arc::new(move |id: &crate::ids::TenantId, seq: u64, hash: [u8; 32]| {
        witness.note(id.as_str(), seq, hash);
        if let Some(sys) = weak.upgrade() {
            let id = id.clone();
            let tenant = id.clone();
            sys.writer().bookkeeping_then(
                    move |tx| -> Result<(), StoreError> {
                        system::raise_anchor(tx.conn(), &id, seq, &hash)
                            .map(|_| ())
                            .map_err(|e| tx.err(&e))
                    },
                    // Not fatal: the anchor only ever claims less than the tenant file holds,
                    // and the next checkpoint raises it. But verify is weaker until then.
                    move |r| {
                        if let Err(e) = r {
                            tracing::warn!(tenant = %tenant, seq, error = %e,
                                "cannot record the tenant journal's checkpoint in system.db; the next checkpoint retries");
                        }
                    },
                );
        }
    })
}

crate::domain_error!(AppError, |e| match e {
    AppError::Exclusive(_) | AppError::InUse(_) => crate::error::ErrorKind::Busy,
    AppError::NotInitialized(_) | AppError::AlreadyInitialized(_) =>
        crate::error::ErrorKind::Conflict,
    AppError::Store(e) => crate::error::DomainError::kind(e),
    _ => crate::error::ErrorKind::Internal,
});
