//! Backups: consistent online snapshots (SQLite's backup API) of `system.db` and the tenant files, packed into one
//! encrypted archive ([`crate::store::archive`]) with an authenticated manifest; verification
//! without restoring; restoration onto a fresh machine given the root key or the passphrase.
//!
//! The payload is `u32 BE manifest length, manifest (JSON), then each member's bytes in
//! manifest order`. Members are `system.key`, `system.db`, `tenants/<id>.db` (all still
//! encrypted under their own keys) and, for a passphrase archive only, `root.key`: such an
//! archive is meant to restore with the passphrase alone, so the passphrase guards the root
//! key and must be kept like it.

use crate::app::{self, App};
use crate::audit::{ops, verify, Actor, NewEntry};
use crate::keyring::system_key::SystemKeyFile;
use crate::keyring::{Key32, Keyring, RootKeySource, SecretString};
use crate::store::archive::{self, ArchiveError, ArchiveReader, ArchiveWriter, Header, KeySpec};
use crate::store::{self, system, FileKind, OpenSpec, StoreError};
use crate::tenants::TenantId;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MANIFEST_FORMAT: u32 = 1;

/// Told (bytes done, bytes in all) as an archive is written or read; the CLI draws a
/// progress bar from it on a terminal.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// A [`Progress`] that shows nothing.
pub fn quiet(_done: u64, _total: u64) {}
const MAX_MANIFEST: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the archive was sealed under root key {archive}, but the key given has id {given}; pass the root key it was made with (--root-key-file)")]
    OtherRootKey { archive: String, given: String },
    #[error("this archive is sealed with a passphrase: pass --passphrase-file")]
    NeedsPassphrase,
    #[error("the passphrase is too short: use at least 12 characters")]
    WeakPassphrase,
    #[error("the manifest is malformed: {0}")]
    BadManifest(String),
    #[error("member {0} does not match the manifest: the archive was altered")]
    MemberMismatch(String),
    #[error("{0} already holds an installation; pass --force to replace it (it is moved aside, not deleted)")]
    LiveData(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {what}: {reason}")]
    Io { what: String, reason: String },
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
    #[error(transparent)]
    SystemKey(#[from] crate::keyring::system_key::SystemKeyError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
}

impl BackupError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Archive(e) => e.code(),
            Self::OtherRootKey { .. } => "BAK-0101",
            Self::NeedsPassphrase => "BAK-0102",
            Self::WeakPassphrase => "BAK-0103",
            Self::BadManifest(_) => "BAK-0104",
            Self::MemberMismatch(_) => "BAK-0105",
            Self::LiveData(_) => "BAK-0106",
            Self::Invalid(_) => "BAK-0107",
            Self::Io { .. } => "BAK-0108",
            Self::App(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Keyring(e) => e.code(),
            Self::SystemKey(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |e| BackupError::Io {
        what,
        reason: e.kind().to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    pub id: String,
    pub name: String,
    pub key_version: u32,
    pub journal_head_seq: u64,
    pub journal_head_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// `all`, or `tenant` for an archive of one tenant (plus the system files it needs).
    pub scope: String,
    pub created_us: i64,
    pub strongroom_version: String,
    pub root_key_id: String,
    pub system_journal_head_seq: u64,
    pub tenants: Vec<TenantEntry>,
    pub members: Vec<Member>,
}

/// How an archive is sealed.
pub enum Sealing {
    /// Under a key derived from the installation's root key.
    Root,
    /// Under a key derived from a passphrase; the archive then also carries the root key.
    Passphrase(SecretString),
}

/// Which tenants go into a backup.
pub enum Scope {
    All,
    Tenant(TenantId),
}

/// Reads a passphrase file: the first line, at least 12 characters.
///
/// # Errors
/// Unreadable or too short.
pub fn read_passphrase(path: &Path) -> Result<SecretString, BackupError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?,
    );
    let line = text.lines().next().unwrap_or("").to_string();
    if line.chars().count() < 12 {
        return Err(BackupError::WeakPassphrase);
    }
    Ok(SecretString::new(line))
}

fn spec<'a>(
    path: &'a Path,
    label: &'a str,
    key: &'a Key32,
    version: u32,
    kind: FileKind,
) -> OpenSpec<'a> {
    OpenSpec {
        path,
        label,
        key,
        key_version: version,
        kind,
        create: false,
        busy_timeout: Duration::from_secs(30),
        plaintext: false,
    }
}

fn journal_head(conn: &rusqlite::Connection) -> Result<(u64, String), rusqlite::Error> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row
        .map(|(s, h)| (s.max(0) as u64, hex::encode(h)))
        .unwrap_or((0, String::new())))
}

fn file_member(name: &str, path: &Path) -> Result<Member, BackupError> {
    let mut f = std::fs::File::open(path).map_err(io_err(format!("read {name}")))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(format!("read {name}")))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Member {
        name: name.to_string(),
        size,
        sha256: hex::encode(ctx.finish()),
    })
}

/// Creates an archive at `out` (written aside and renamed into place, so `out` is whole or
/// absent). Runs while the server runs: every file is copied from one read transaction.
///
/// # Errors
/// A file cannot be snapshotted, the archive cannot be written, or the journal entry fails
/// (then no archive is left).
pub fn create(
    app: &App,
    actor: &Actor,
    out: &Path,
    scope: &Scope,
    sealing: &Sealing,
    progress: Progress<'_>,
) -> Result<Manifest, BackupError> {
    let start = std::time::Instant::now();
    if out.exists() {
        return Err(BackupError::Invalid(format!(
            "{} exists; choose a new file name",
            out.display()
        )));
    }
    let staging = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(app.data_dir())
        .map_err(io_err("create a staging directory"))?;
    let sdir = staging.path();
    std::fs::create_dir(sdir.join("tenants")).map_err(io_err("create a staging directory"))?;

    let sys_path = app.data_dir().join("system.db");
    let sys_copy = sdir.join("system.db");
    store::snapshot::snapshot(
        &spec(
            &sys_path,
            "system.db",
            app.system_dek(),
            1,
            FileKind::System,
        ),
        &sys_copy,
    )?;
    std::fs::copy(
        app::system_key_path(app.data_dir()),
        sdir.join("system.key"),
    )
    .map_err(io_err("copy system.key"))?;
    let sys_conn = store::open_connection(
        &spec(
            &sys_copy,
            "system.db",
            app.system_dek(),
            1,
            FileKind::System,
        ),
        true,
    )?;
    let err = |e: rusqlite::Error| StoreError::from_sqlite("system.db", 1, &e);
    let live = system::list(&sys_conn, false).map_err(err)?;
    let (system_journal_head_seq, _) = journal_head(&sys_conn).map_err(err)?;
    let chosen: Vec<_> = match scope {
        Scope::All => live,
        Scope::Tenant(id) => {
            let t = live
                .into_iter()
                .find(|t| &t.id == id)
                .ok_or_else(|| crate::tenants::TenantError::NotFound(id.to_string()))?;
            vec![t]
        }
    };
    let mut tenants = Vec::new();
    let mut members = vec![
        file_member("system.key", &sdir.join("system.key"))?,
        file_member("system.db", &sys_copy)?,
    ];
    // Keys first (the registry connection stays on this thread), then the copies, which
    // are CPU-bound (decrypt, encrypt), on every core.
    let mut jobs = Vec::new();
    for t in &chosen {
        let wrapped =
            system::wrapped_dek(&sys_conn, &t.id, t.key_version, app.keyring().root_key_id())
                .map_err(err)?
                .ok_or_else(|| StoreError::Decrypt {
                    what: store::tenants::tenant_label(&t.id),
                    version: t.key_version,
                })?;
        let dek = app
            .keyring()
            .unwrap_dek(t.id.as_str(), t.key_version, &wrapped)?;
        jobs.push((t, dek));
    }
    let copied = par_map(
        &jobs,
        |(t, dek)| -> Result<(TenantEntry, Member), BackupError> {
            let label = store::tenants::tenant_label(&t.id);
            let live_path = store::tenants::tenant_path(app.data_dir(), &t.id);
            let copy = sdir.join(format!("tenants/{}.db", t.id));
            store::snapshot::snapshot(
                &spec(&live_path, &label, dek, t.key_version, FileKind::Tenant),
                &copy,
            )?;
            let conn = store::open_connection(
                &spec(&copy, &label, dek, t.key_version, FileKind::Tenant),
                true,
            )?;
            let (seq, hash) = journal_head(&conn)
                .map_err(|e| StoreError::from_sqlite(&label, t.key_version, &e))?;
            Ok((
                TenantEntry {
                    id: t.id.to_string(),
                    name: t.name.clone(),
                    key_version: t.key_version,
                    journal_head_seq: seq,
                    journal_head_hash: hash,
                },
                file_member(&format!("tenants/{}.db", t.id), &copy)?,
            ))
        },
    );
    for r in copied {
        let (entry, member) = r?;
        tenants.push(entry);
        members.push(member);
    }
    drop(sys_conn);
    let root_hex = match sealing {
        Sealing::Passphrase(_) => {
            let mut h = app.keyring().root_hex();
            h.push('\n');
            let bytes = h.as_bytes();
            members.push(Member {
                name: "root.key".into(),
                size: bytes.len() as u64,
                sha256: hex::encode(crate::audit::entry::sha256(bytes)),
            });
            Some(h)
        }
        Sealing::Root => None,
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        scope: match scope {
            Scope::All => "all".into(),
            Scope::Tenant(_) => "tenant".into(),
        },
        created_us: app.clock().now_us(),
        strongroom_version: env!("CARGO_PKG_VERSION").into(),
        root_key_id: app.keyring().root_key_id().to_string(),
        system_journal_head_seq,
        tenants,
        members,
    };

    let (header, key) = match sealing {
        Sealing::Root => {
            let h = Header::new(
                manifest.created_us,
                KeySpec::Root {
                    root_key_id: app.keyring().root_key_id().to_string(),
                },
            )?;
            let k = app.keyring().backup_key(&h.salt_bytes()?)?;
            (h, k)
        }
        Sealing::Passphrase(p) => {
            let h = Header::new(
                manifest.created_us,
                KeySpec::Passphrase {
                    kdf: "pbkdf2-sha256".into(),
                    iterations: archive::PBKDF2_ITERATIONS,
                },
            )?;
            let k = archive::passphrase_key(
                p.expose().as_bytes(),
                &h.salt_bytes()?,
                archive::PBKDF2_ITERATIONS,
            );
            (h, k)
        }
    };
    let mut partial = out.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = (|| -> Result<u64, BackupError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_err(format!("create {}", partial.display())))?;
        let mut w = ArchiveWriter::new(std::io::BufWriter::new(file), header, &key)?;
        let mjson =
            serde_json::to_vec(&manifest).map_err(|e| BackupError::BadManifest(e.to_string()))?;
        w.write_all(&(mjson.len() as u32).to_be_bytes())?;
        w.write_all(&mjson)?;
        let mut buf = vec![0u8; 1 << 20];
        let total: u64 = manifest.members.iter().map(|m| m.size).sum();
        let mut done = 0u64;
        for m in &manifest.members {
            if m.name == "root.key" {
                if let Some(h) = &root_hex {
                    w.write_all(h.as_bytes())?;
                }
                continue;
            }
            let mut f = std::fs::File::open(sdir.join(&m.name))
                .map_err(io_err(format!("read {}", m.name)))?;
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(io_err(format!("read {}", m.name)))?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n])?;
                done += n as u64;
                progress(done, total);
            }
        }
        let file = w.finish()?.into_inner().map_err(|e| BackupError::Io {
            what: "write the archive".into(),
            reason: e.error().kind().to_string(),
        })?;
        file.sync_all().map_err(io_err("sync the archive"))?;
        Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
    })();
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // Fail closed: the archive only appears if its journal entry is written.
    let params = serde_json::json!({
        "file": out.file_name().map(|n| n.to_string_lossy().into_owned()),
        "tenants": manifest.tenants.len(),
        "bytes": bytes,
        "sealing": match sealing { Sealing::Root => "root", Sealing::Passphrase(_) => "passphrase" },
    });
    let actor = actor.clone();
    let journaled = app
        .system()
        .writer()
        .submit(move |tx| {
            tx.audit(
                NewEntry::new(actor, "backup.create", "system")
                    .params(params)
                    .since(start),
            )
        })
        .wait();
    if let Err(e) = journaled {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    std::fs::rename(&partial, out).map_err(io_err(format!("create {}", out.display())))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::sync_dir(dir).map_err(io_err("sync the archive's directory"))?;
    }
    Ok(manifest)
}

/// The key material needed to open an archive.
pub enum Opening<'a> {
    /// A root key (for archives sealed under the root key).
    Root(&'a Keyring),
    Passphrase(SecretString),
}

/// An archive unpacked into a staging directory and checked member by member.
pub struct Unpacked {
    pub manifest: Manifest,
    pub dir: tempfile::TempDir,
    /// The root key the archive's members are wrapped under.
    pub keyring: Keyring,
}

/// Decrypts every chunk and checks every member's size and hash, writing members (still
/// encrypted under their own keys, except `root.key`, which stays in memory) to a staging
/// directory under `staging_parent`.
///
/// # Errors
/// Any damage, a wrong key or passphrase, a newer format.
pub fn unpack(
    path: &Path,
    opening: Opening<'_>,
    staging_parent: &Path,
    progress: Progress<'_>,
) -> Result<Unpacked, BackupError> {
    let file = std::fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let mut inp = std::io::BufReader::with_capacity(1 << 20, file);
    let (header, header_bytes) = archive::read_header(&mut inp)?;
    let key = match (&header.key, &opening) {
        (KeySpec::Root { root_key_id }, Opening::Root(kr)) => {
            if root_key_id != kr.root_key_id() {
                return Err(BackupError::OtherRootKey {
                    archive: root_key_id.clone(),
                    given: kr.root_key_id().to_string(),
                });
            }
            kr.backup_key(&header.salt_bytes()?)?
        }
        (KeySpec::Root { .. }, Opening::Passphrase(_)) => {
            return Err(BackupError::Invalid(
                "this archive is sealed under a root key, not a passphrase: pass --root-key-file"
                    .into(),
            ))
        }
        (KeySpec::Passphrase { kdf, iterations }, Opening::Passphrase(p)) => {
            if kdf != "pbkdf2-sha256" {
                return Err(ArchiveError::BadHeader(format!("unknown kdf {kdf}")).into());
            }
            archive::passphrase_key(p.expose().as_bytes(), &header.salt_bytes()?, *iterations)
        }
        (KeySpec::Passphrase { .. }, Opening::Root(_)) => return Err(BackupError::NeedsPassphrase),
    };
    let mut r = ArchiveReader::new(inp, header, &header_bytes, &key)?;
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MANIFEST {
        return Err(BackupError::BadManifest(format!("{len} bytes")));
    }
    let mut mjson = vec![0u8; len];
    r.read_exact(&mut mjson)?;
    let manifest: Manifest =
        serde_json::from_slice(&mjson).map_err(|e| BackupError::BadManifest(e.to_string()))?;
    if manifest.format > MANIFEST_FORMAT {
        return Err(ArchiveError::TooNew(manifest.format).into());
    }
    let dir = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(staging_parent)
        .map_err(io_err("create a staging directory"))?;
    std::fs::create_dir(dir.path().join("tenants"))
        .map_err(io_err("create a staging directory"))?;
    let mut root_hex: Option<zeroize::Zeroizing<Vec<u8>>> = None;
    let mut buf = vec![0u8; 1 << 20];
    let total: u64 = manifest.members.iter().map(|m| m.size).sum();
    let mut done = 0u64;
    for m in &manifest.members {
        let valid_name = m.name == "system.key"
            || m.name == "system.db"
            || m.name == "root.key"
            || m.name
                .strip_prefix("tenants/")
                .and_then(|n| n.strip_suffix(".db"))
                .is_some_and(|id| TenantId::parse(id).is_ok());
        if !valid_name {
            return Err(BackupError::BadManifest(format!(
                "unexpected member {:?}",
                m.name
            )));
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut left = m.size;
        if m.name == "root.key" {
            if m.size > 256 {
                return Err(BackupError::MemberMismatch(m.name.clone()));
            }
            let mut v = zeroize::Zeroizing::new(vec![0u8; m.size as usize]);
            r.read_exact(&mut v)?;
            ctx.update(&v);
            root_hex = Some(v);
        } else {
            let mut f = std::fs::File::create(dir.path().join(&m.name))
                .map_err(io_err(format!("write {}", m.name)))?;
            while left > 0 {
                let n = (left as usize).min(buf.len());
                r.read_exact(&mut buf[..n])?;
                done += n as u64;
                progress(done, total);
                ctx.update(&buf[..n]);
                f.write_all(&buf[..n])
                    .map_err(io_err(format!("write {}", m.name)))?;
                left -= n as u64;
            }
            f.sync_all().map_err(io_err(format!("write {}", m.name)))?;
        }
        if hex::encode(ctx.finish()) != m.sha256 {
            return Err(BackupError::MemberMismatch(m.name.clone()));
        }
    }
    r.finish()?;
    let keyring = match (opening, root_hex) {
        (Opening::Root(kr), _) => kr.duplicate()?,
        (Opening::Passphrase(_), Some(hexkey)) => {
            let k = crate::keyring::load_root_key_bytes(&hexkey)
                .ok_or_else(|| BackupError::MemberMismatch("root.key".into()))?;
            Keyring::new(k, RootKeySource::Test)?
        }
        (Opening::Passphrase(_), None) => {
            return Err(BackupError::BadManifest(
                "a passphrase archive without root.key".into(),
            ))
        }
    };
    if keyring.root_key_id() != manifest.root_key_id {
        return Err(BackupError::MemberMismatch("root.key".into()));
    }
    Ok(Unpacked {
        manifest,
        dir,
        keyring,
    })
}

/// What `backup verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub created_us: i64,
    pub members: usize,
    pub bytes: u64,
    pub files: Vec<ops::FileReport>,
}

/// Checks an unpacked archive's files: each opens with its key, its pages are sound, its
/// journal verifies, and each tenant journal reaches the head the manifest recorded.
///
/// # Errors
/// `system.key` or the registry cannot be read at all.
pub fn check_unpacked(u: &Unpacked) -> Result<VerifyReport, BackupError> {
    let dir = u.dir.path();
    let system_dek = SystemKeyFile::read(&dir.join("system.key"))?.unwrap(&u.keyring)?;
    let signer = crate::keyring::Signer::from_system_dek(&system_dek)?;
    let sys_path = dir.join("system.db");
    let sys_spec = spec(&sys_path, "system.db", &system_dek, 1, FileKind::System);
    let mut keys = vec![verify::TrustedKey {
        id: signer.signing_key_id(),
        public_key: signer.signing_public_key(),
    }];
    {
        let conn = store::open_connection(&sys_spec, true)?;
        let rows =
            system::signing_keys(&conn).map_err(|e| StoreError::from_sqlite("system.db", 1, &e))?;
        keys.extend(
            rows.into_iter()
                .map(|(id, public_key)| verify::TrustedKey { id, public_key }),
        );
    }
    let mut files = vec![ops::verify_file(&sys_spec, "system", &keys, None, false)];
    let sys_conn = store::open_connection(&sys_spec, true)?;
    let err = |e: rusqlite::Error| StoreError::from_sqlite("system.db", 1, &e);
    let mut jobs = Vec::new();
    for t in &u.manifest.tenants {
        let id = TenantId::parse(&t.id)?;
        let wrapped = system::wrapped_dek(&sys_conn, &id, t.key_version, u.keyring.root_key_id())
            .map_err(err)?
            .ok_or_else(|| BackupError::MemberMismatch(format!("tenants/{}.db", t.id)))?;
        let dek = u.keyring.unwrap_dek(id.as_str(), t.key_version, &wrapped)?;
        let anchor = system::anchor(&sys_conn, &id).map_err(err)?;
        jobs.push((t, id, dek, anchor));
    }
    drop(sys_conn);
    files.extend(par_map(&jobs, |(t, id, dek, anchor)| {
        let path = dir.join(format!("tenants/{}.db", t.id));
        let label = store::tenants::tenant_label(id);
        let mut report = ops::verify_file(
            &spec(&path, &label, dek, t.key_version, FileKind::Tenant),
            &t.id,
            &keys,
            anchor.clone(),
            false,
        );
        if let Some(c) = &report.chain {
            if c.problem.is_none() && c.head_seq != t.journal_head_seq {
                report.error = Some(format!(
                    "the manifest records entry {} as the head, the file ends at {}",
                    t.journal_head_seq, c.head_seq
                ));
            }
        }
        report
    }));
    Ok(VerifyReport {
        ok: files.iter().all(ops::FileReport::ok),
        created_us: u.manifest.created_us,
        members: u.manifest.members.len(),
        bytes: u.manifest.members.iter().map(|m| m.size).sum(),
        files,
    })
}

/// How to restore.
pub struct RestoreOptions<'a> {
    /// The key or passphrase that opens the archive.
    pub opening: Opening<'a>,
    /// Where to write the root key if the target has none (default: the configured file).
    pub root_key_out: Option<&'a Path>,
    /// Replace an existing installation (moved aside, not deleted).
    pub force: bool,
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub tenants: usize,
    pub moved_aside: Option<PathBuf>,
    pub wrote_root_key: bool,
}

/// Restores a whole installation into `data_dir`: checks everything first (nothing is
/// touched if anything is wrong), refuses live data unless `force` (then moves it aside),
/// and records `backup.restore` in the system journal and in every restored tenant journal,
/// each chain continuing where it was.
///
/// # Errors
/// Any archive or key problem, live data without `force`, or a directory in use.
pub fn restore(
    archive_path: &Path,
    data_dir: &Path,
    config: &crate::config::Config,
    options: RestoreOptions<'_>,
    actor: &Actor,
    progress: Progress<'_>,
) -> Result<Restored, BackupError> {
    let RestoreOptions {
        opening,
        root_key_out,
        force,
    } = options;
    let live = data_dir.join("system.db").exists();
    if live && !force {
        return Err(BackupError::LiveData(data_dir.display().to_string()));
    }
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
    let unpacked = unpack(archive_path, opening, parent, progress)?;
    if unpacked.manifest.scope != "all" {
        return Err(BackupError::Invalid(
            "this archive holds a single tenant; a whole-installation restore needs an archive made without --tenant".into(),
        ));
    }
    let report = check_unpacked(&unpacked)?;
    if !report.ok {
        let first = report
            .files
            .iter()
            .find(|f| !f.ok())
            .map(|f| f.label.clone())
            .unwrap_or_default();
        return Err(BackupError::Invalid(format!(
            "the archive does not verify ({first}); nothing was restored"
        )));
    }
    // From here on the archive is known good.
    use std::os::unix::fs::PermissionsExt;
    crate::fsutil::create_private_dir(data_dir)
        .map_err(io_err(format!("create {}", data_dir.display())))?;
    let lock = app::lock_file(data_dir)?;
    lock.try_lock()
        .map_err(|_| app::AppError::InUse(data_dir.display().to_string()))?;
    let mut moved_aside = None;
    if live {
        let aside = data_dir.join(format!("pre-restore-{}", unpacked.manifest.created_us));
        std::fs::create_dir(&aside).map_err(io_err(format!("create {}", aside.display())))?;
        for name in [
            "system.db",
            "system.db-wal",
            "system.db-shm",
            "system.key",
            "tenants",
        ] {
            let from = data_dir.join(name);
            if from.exists() {
                std::fs::rename(&from, aside.join(name))
                    .map_err(io_err(format!("move {name} aside")))?;
            }
        }
        moved_aside = Some(aside);
    }
    crate::fsutil::create_private_dir(&data_dir.join("tenants"))
        .map_err(io_err("create tenants/"))?;
    let staged = unpacked.dir.path();
    for m in &unpacked.manifest.members {
        if m.name == "root.key" {
            continue;
        }
        let to = data_dir.join(&m.name);
        std::fs::rename(staged.join(&m.name), &to).map_err(io_err(format!("place {}", m.name)))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("set the mode of {}", m.name)))?;
    }
    crate::fsutil::sync_dir(data_dir).map_err(io_err("sync the data directory"))?;
    crate::fsutil::sync_dir(&data_dir.join("tenants")).map_err(io_err("sync tenants/"))?;
    // The root key: wherever the configuration (or --root-key-file's copy) expects it.
    let key_file = root_key_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app::root_key_file(config, data_dir));
    let mut wrote_root_key = false;
    if app::credentials_dir().is_none() && !key_file.exists() {
        crate::keyring::write_root_key_file(&key_file, &unpacked.keyring.root_key_copy())
            .map_err(io_err(format!("write {}", key_file.display())))?;
        wrote_root_key = true;
    }
    drop(lock);

    let app = App::open(config, data_dir)?;
    let n = unpacked.manifest.tenants.len();
    let params = serde_json::json!({
        "archive_created_us": unpacked.manifest.created_us,
        "tenants": n,
        "replaced_live_data": live,
    });
    let journal = |store: &store::Store, target: &str| {
        let (actor, params, target) = (actor.clone(), params.clone(), target.to_string());
        store
            .writer()
            .submit(move |tx| {
                tx.audit(NewEntry::new(actor, "backup.restore", &target).params(params))
            })
            .wait()
    };
    journal(app.system(), "system")?;
    for t in &unpacked.manifest.tenants {
        let id = TenantId::parse(&t.id)?;
        let store = crate::tenants::open_store(&app, &id)?;
        journal(&store, id.as_str())?;
    }
    app.close();
    Ok(Restored {
        data_dir: data_dir.to_path_buf(),
        tenants: n,
        moved_aside,
        wrote_root_key,
    })
}

/// Maps `f` over `items` on as many threads as there are cores (at most 4), in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    if items.len() < 2 || threads == 1 {
        return items.iter().map(&f).collect();
    }
    let size = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(size)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// What a single-tenant restore did.
#[derive(Debug, Serialize)]
pub struct TenantRestored {
    pub tenant: String,
    pub key_version: u32,
    pub replaced_live_tenant: bool,
}

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
    let start = std::time::Instant::now();
    let unpacked = unpack(archive_path, options.opening, app.data_dir(), progress)?;
    let entry = unpacked
        .manifest
        .tenants
        .iter()
        .find(|t| t.id == id.as_str())
        .cloned()
        .ok_or_else(|| BackupError::Invalid(format!("the archive does not hold tenant {id}")))?;
    let report = check_unpacked(&unpacked)?;
    if let Some(bad) = report.files.iter().find(|f| !f.ok()) {
        return Err(BackupError::Invalid(format!(
            "the archive does not verify ({}); nothing was restored",
            bad.label
        )));
    }
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
    let mut foreign = system::signing_keys(&sys_conn).map_err(err)?;
    let archive_signer = crate::keyring::Signer::from_system_dek(&system_dek)?;
    foreign.push((
        archive_signer.signing_key_id(),
        archive_signer.signing_public_key(),
    ));
    foreign.retain(|(kid, _)| *kid != app.signer().signing_key_id());
    drop(sys_conn);

    let live = match crate::tenants::get(app, id) {
        Ok(t) => Some(t),
        Err(crate::tenants::TenantError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let live_active = live
        .as_ref()
        .is_some_and(|t| t.status != crate::tenants::TenantStatus::Deleted);
    if live_active && !options.force {
        return Err(BackupError::LiveData(format!("tenant {id}")));
    }
    let exclusive = app
        .tenant_stores()
        .take_exclusive(id)
        .map_err(|e| match e {
            StoreError::Busy { .. } => {
                BackupError::App(app::AppError::InUse(format!("tenant {id}")))
            }
            other => other.into(),
        })?;
    let outcome = (|| -> Result<u32, BackupError> {
        crate::tenants::settle(app, id)?;
        let version = live
            .as_ref()
            .map(|t| t.key_version)
            .unwrap_or(0)
            .max(entry.key_version)
            + 1;
        let staged = crate::keys::rekey_path(app.data_dir(), id);
        let _ = std::fs::remove_file(&staged);
        std::fs::copy(staged_dir.join(format!("tenants/{id}.db")), &staged)
            .map_err(io_err("stage the tenant file"))?;
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(io_err("stage the tenant file"))?;
        let row = system::KeyRow {
            tenant_id: id.clone(),
            version,
            root_key_id: app.keyring().root_key_id().to_string(),
            wrapped: app.keyring().wrap_dek(id.as_str(), version, &dek)?,
            created_us: app.clock().now_us(),
        };
        let head_hash = hex::decode(&entry.journal_head_hash).unwrap_or_default();
        let params = serde_json::json!({
            "archive_created_us": unpacked.manifest.created_us,
            "key_version": version,
            "journal_head_seq": entry.journal_head_seq,
            "trusted_signing_keys": foreign.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        });
        let (tid, a, existed, name) = (
            id.clone(),
            actor.clone(),
            live.is_some(),
            entry.name.clone(),
        );
        let head_seq = entry.journal_head_seq;
        app.system()
            .writer()
            .submit(move |tx| -> Result<(), crate::tenants::TenantError> {
                let e = |e: rusqlite::Error| crate::tenants::TenantError::from(tx.err(&e));
                if system::name_in_use(tx.conn(), &name).map_err(e)?
                    && system::get(tx.conn(), &tid).map_err(e)?.is_none_or(|t| {
                        t.status == crate::tenants::TenantStatus::Deleted || t.name != name
                    })
                {
                    return Err(crate::tenants::TenantError::NameTaken(name));
                }
                if existed {
                    system::revive(tx.conn(), &tid, &name, version, tx.now_us()).map_err(e)?;
                } else {
                    let t = crate::tenants::Tenant {
                        id: tid.clone(),
                        name: name.clone(),
                        region: None,
                        status: crate::tenants::TenantStatus::Active,
                        key_version: version,
                        created_us: tx.now_us(),
                    };
                    system::insert(tx.conn(), &t, &row.root_key_id, &row.wrapped, tx.now_us())
                        .map_err(e)?;
                }
                system::insert_key_row(tx.conn(), &row).map_err(e)?;
                system::set_anchor(tx.conn(), &tid, head_seq, &head_hash).map_err(e)?;
                for (kid, public) in &foreign {
                    system::trust_signing_key(
                        tx.conn(),
                        kid,
                        public,
                        "backup.restore",
                        tx.now_us(),
                    )
                    .map_err(e)?;
                }
                tx.audit(
                    NewEntry::new(a, "backup.restore", tid.as_str())
                        .params(params)
                        .since(start),
                )?;
                Ok(())
            })
            .wait()?;
        crate::keys::finish_tenant_rekey(app.data_dir(), id)
            .map_err(io_err("place the tenant file"))?;
        let keep = version;
        let tid = id.clone();
        app.system()
            .writer()
            .submit(move |tx| -> Result<(), StoreError> {
                system::delete_key_versions_below(tx.conn(), &tid, keep).map_err(|e| tx.err(&e))?;
                Ok(())
            })
            .wait()?;
        app.system().fold_wal();
        Ok(version)
    })();
    drop(exclusive);
    app.tenant_stores().reopen_allowed(id);
    let version = outcome?;
    let store = crate::tenants::open_store(app, id)?;
    let (a, tid) = (actor.clone(), id.clone());
    store
        .writer()
        .submit(move |tx| {
            tx.audit(
                NewEntry::new(a, "backup.restore", tid.as_str())
                    .params(serde_json::json!({ "key_version": version })),
            )
        })
        .wait()?;
    Ok(TenantRestored {
        tenant: id.to_string(),
        key_version: version,
        replaced_live_tenant: live_active,
    })
}
