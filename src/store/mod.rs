//! Encrypted storage: `system.db` (tenant registry, wrapped keys, the system journal) and one
//! `tenants/<id>.db` per tenant, all SQLCipher with a 256-bit raw key.
//!
//! - Every file has exactly one writer thread ([`writer`]) that drains its queue into a single
//!   transaction (group commit) with `synchronous=FULL`, so an acknowledged write is on disk.
//!   Readers use their own WAL connections. No SQLite call runs on an async worker thread.
//! - Schema migrations are embedded ([`migrate`]) and run at open; a file written by a newer
//!   build is refused.
//! - Faults map to [`StoreError`] variants that name the file and the fix, never SQL or keys.

pub mod archive;
pub mod migrate;
pub mod snapshot;
pub mod staged;
pub mod system;
pub mod tenants;
pub mod writer;

use crate::keyring::Key32;
use rusqlite::{ffi, Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

pub use writer::{Pending, Receipt, WriteTx, Writer};

/// Storage faults. Each names the file it concerns ("system.db", "tenant <id>").
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: file {path} does not exist")]
    Missing { what: String, path: String },
    #[error("cannot decrypt {what} with key version {version}: wrong key, or not a Strongroom file of this installation")]
    Decrypt { what: String, version: u32 },
    #[error("{what} was written by a newer Strongroom (schema version {found}, this build knows up to {known}); upgrade the strongroom binary")]
    TooNew {
        what: String,
        found: i64,
        known: i64,
    },
    #[error(
        "{what} is corrupt: {detail}; run `strongroom audit verify` and restore from a backup"
    )]
    Corrupt { what: String, detail: String },
    #[error("{what}: disk full; the write was not applied. Free space and retry")]
    DiskFull { what: String },
    #[error("{what} is locked by another writer for too long; retry")]
    Busy { what: String },
    #[error("{what}: the store is closed")]
    Closed { what: String },
    #[error("{what}: I/O error: {reason}")]
    Io { what: String, reason: String },
    #[error("{what}: storage error: {detail}")]
    Sqlite { what: String, detail: String },
    #[error("{what}: a write changed rows without an audit entry, so it was rolled back; every change must go through a change that returns its entry")]
    Unaudited { what: String },
    #[error("{what}: a write failed unexpectedly and was rolled back; see the server log")]
    JobPanicked { what: String },
    #[error("{what} ({path}) is empty. Nothing is recreated in its place, because that would lose what it held; restore it from a backup with `strongroom backup restore`")]
    Emptied { what: String, path: String },
    #[error("{what} ({path}) is truncated: {size} bytes is not a whole number of pages; restore it from a backup with `strongroom backup restore`")]
    Truncated {
        what: String,
        path: String,
        size: u64,
    },
    #[error("{detail}")]
    RolledBack { what: String, detail: String },
    #[error("{what} was written by a newer Strongroom (its {module} schema is at step {found}, this build knows up to {known}); upgrade the strongroom binary")]
    TooNewModule {
        what: String,
        module: String,
        found: i64,
        known: i64,
    },
    #[error("{what}: a write tried a statement the writer does not allow inside a change (transaction control, attaching a file, a schema change or a pragma); it was rolled back")]
    NotAllowed { what: String },
    #[error("{what}: every reader is in use and none came free within {waited_ms} ms; retry")]
    ReadersBusy { what: String, waited_ms: u64 },
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "STO-0001",
            Self::Decrypt { .. } => "STO-0002",
            Self::TooNew { .. } => "STO-0003",
            Self::Corrupt { .. } => "STO-0004",
            Self::DiskFull { .. } => "STO-0005",
            Self::Busy { .. } => "STO-0006",
            Self::Closed { .. } => "STO-0007",
            Self::Io { .. } => "STO-0008",
            Self::Sqlite { .. } => "STO-0009",
            Self::Unaudited { .. } => "STO-0010",
            Self::JobPanicked { .. } => "STO-0011",
            Self::ReadersBusy { .. } => "STO-0012",
            Self::Emptied { .. } => "STO-0013",
            Self::Truncated { .. } => "STO-0014",
            Self::RolledBack { .. } => "STO-0015",
            Self::TooNewModule { .. } => "STO-0016",
            Self::NotAllowed { .. } => "STO-0017",
        }
    }

    /// An I/O failure on a filesystem with no room left is a full disk, whatever SQLite
    /// called it: it reports a failed write of its WAL index or journal as a generic I/O
    /// error (SQLITE_IOERR), not SQLITE_FULL. `path` is the file concerned.
    #[must_use]
    pub fn on_full_disk(self, path: Option<&Path>) -> Self {
        let what = match &self {
            Self::Io { what, .. } => what.clone(),
            _ => return self,
        };
        let dir = path
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty());
        let full = dir
            .and_then(|d| rustix::fs::statvfs(d).ok())
            .is_some_and(|s| {
                s.f_bavail.saturating_mul(s.f_frsize) < DISK_FULL_BELOW || s.f_favail == 0
            });
        if full {
            Self::DiskFull { what }
        } else {
            self
        }
    }

    /// An I/O error on file `what`: ENOSPC is a full disk, anything else is named by kind.
    pub fn from_io(what: &str, context: &str, e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            return Self::DiskFull {
                what: what.to_string(),
            };
        }
        Self::Io {
            what: what.to_string(),
            reason: format!("{context}: {}", crate::fsutil::io_reason(e)),
        }
    }

    /// Classifies a SQLite error for the file `what`.
    pub fn from_sqlite(what: &str, version: u32, e: &rusqlite::Error) -> Self {
        let what = what.to_string();
        if let rusqlite::Error::SqliteFailure(f, msg) = e {
            // Unit tests only (the message may quote a statement): a failing test shows what
            // SQLite said.
            #[cfg(test)]
            #[allow(clippy::print_stderr)]
            {
                eprintln!("sqlite error in {what}: {f:?} {msg:?}");
            }
            return match f.code {
                rusqlite::ErrorCode::NotADatabase => Self::Decrypt { what, version },
                rusqlite::ErrorCode::DiskFull => Self::DiskFull { what },
                rusqlite::ErrorCode::DatabaseCorrupt => Self::Corrupt {
                    what,
                    detail: msg.clone().unwrap_or_else(|| "malformed page".into()),
                },
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                    Self::Busy { what }
                }
                rusqlite::ErrorCode::AuthorizationForStatementDenied => Self::NotAllowed { what },
                rusqlite::ErrorCode::CannotOpen => Self::Io {
                    what,
                    reason: "cannot open file".into(),
                },
                rusqlite::ErrorCode::SystemIoFailure => Self::Io {
                    what,
                    reason: msg.clone().unwrap_or_else(|| "I/O failure".into()),
                },
                // SQLite's message is left out on purpose: a syntax error quotes the statement,
                // and a statement may be a `PRAGMA key`. The extended code says enough.
                _ => Self::Sqlite {
                    what,
                    detail: format!("{:?} (extended code {})", f.code, f.extended_code),
                },
            };
        }
        Self::Sqlite {
            what,
            detail: safe_detail(e),
        }
    }
}

/// A SQLite error as text that never carries the statement or SQLite's own message: some
/// variants embed the SQL, a `PRAGMA key` statement holds a key, and messages name tables and
/// paths. The code and extended code say enough to diagnose.
pub fn safe_detail(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqlInputError { error, .. } => {
            format!("invalid statement ({:?})", error.code)
        }
        // SQLite's own message is left out: it can quote a table, a column or a path.
        rusqlite::Error::SqliteFailure(f, _) => {
            format!("{:?} (extended code {})", f.code, f.extended_code)
        }
        other => other.to_string(),
    }
}

/// Which schema a file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    System,
    Tenant,
}

/// How a file's pages are encrypted and authenticated. SQLCipher keeps no plaintext record
/// of it, so a tenant file is opened with the current profile first and, when its page 1
/// does not authenticate under it, with the earlier one: files made before keep working
/// unchanged, and a key rotation writes them anew in the current profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// 16 KiB pages authenticated with HMAC-SHA256 (AES-256-CBC as ever): a quarter of the
    /// per-page work of 4 KiB pages, and SHA-256 runs on the processors' SHA extensions.
    /// New tenant files.
    Current,
    /// SQLCipher 4's defaults, 4 KiB pages and HMAC-SHA512: `system.db`, and tenant files
    /// made before the current profile.
    Legacy,
}

impl Cipher {
    /// The statements that set this profile on `schema` (`main`, or an attached file), after
    /// its key and before its first read.
    pub(crate) fn pragmas(self, schema: &str) -> String {
        format!(
            "PRAGMA {schema}.cipher_page_size = {}; \
             PRAGMA {schema}.cipher_hmac_algorithm = {};",
            self.page_size(),
            self.hmac()
        )
    }

    /// Bytes of one page.
    pub fn page_size(self) -> usize {
        match self {
            Self::Current => 16384,
            Self::Legacy => 4096,
        }
    }

    fn hmac(self) -> &'static str {
        match self {
            Self::Current => "HMAC_SHA256",
            Self::Legacy => "HMAC_SHA512",
        }
    }

    /// The profile a new file of `spec`'s kind is made in.
    pub(crate) fn for_new(spec: &OpenSpec<'_>) -> Self {
        Self::candidates(spec)[0]
    }

    /// The profiles to try for a file, in order.
    fn candidates(spec: &OpenSpec<'_>) -> &'static [Self] {
        match spec.kind {
            FileKind::System => &[Self::Legacy],
            FileKind::Tenant => &[Self::Current, Self::Legacy],
        }
    }

    /// The profile an open connection reads its file with.
    ///
    /// # Errors
    /// The connection cannot be queried.
    pub fn of(conn: &Connection) -> Result<Self, rusqlite::Error> {
        use rusqlite::OptionalExtension;
        // A plain file (the benchmark's) answers nothing.
        let hmac: Option<String> = conn
            .query_row("PRAGMA cipher_hmac_algorithm", [], |r| r.get(0))
            .optional()?;
        Ok(if hmac.as_deref() == Some(Self::Current.hmac()) {
            Self::Current
        } else {
            Self::Legacy
        })
    }
}

/// Bytes of one page of `conn`'s main file (SQLCipher answers its own pragma, as text).
/// Asked of the file rather than taken from [`Cipher::of`]: the benchmark's plain file has
/// no cipher profile but its encrypted twin's pages.
///
/// # Errors
/// The connection cannot be queried.
pub fn page_size(conn: &Connection) -> Result<usize, rusqlite::Error> {
    use rusqlite::types::Value;
    let v: Value = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(match v {
        Value::Integer(n) => usize::try_from(n).unwrap_or(4096),
        Value::Text(t) => t.parse().unwrap_or(4096),
        _ => 4096,
    })
}

/// Page 1 did not authenticate (or decrypt): a wrong key, a damaged page, or another profile.
fn not_a_database(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase)
}

/// How to open one encrypted file.
#[derive(Clone, Copy)]
pub struct OpenSpec<'a> {
    pub path: &'a Path,
    /// "system.db" or "tenant <id>", used in every message about this file.
    pub label: &'a str,
    pub key: &'a Key32,
    pub key_version: u32,
    pub kind: FileKind,
    pub create: bool,
    pub busy_timeout: Duration,
    /// Skip encryption. Only the benchmark that compares SQLCipher with plain SQLite sets it.
    pub plaintext: bool,
}

/// Opens a SQLCipher file with its raw key and the durability settings every file uses.
/// Does not migrate; see [`migrate::migrate`].
///
/// # Errors
/// Missing file (unless `create`), wrong key, corrupt header, I/O.
pub fn open_connection(spec: &OpenSpec<'_>, read_only: bool) -> Result<Connection, StoreError> {
    open_connection_as(spec, read_only, None)
}

/// [`open_connection`] with the profile given (a copy made in its source's profile), or
/// found by trying each for the file's kind.
pub(crate) fn open_connection_as(
    spec: &OpenSpec<'_>,
    read_only: bool,
    cipher: Option<Cipher>,
) -> Result<Connection, StoreError> {
    let err = |e: rusqlite::Error| {
        StoreError::from_sqlite(spec.label, spec.key_version, &e).on_full_disk(Some(spec.path))
    };
    if !spec.create {
        refuse_emptied(spec)?;
    }
    let tried: &[Cipher] = match cipher {
        Some(Cipher::Current) => &[Cipher::Current],
        Some(Cipher::Legacy) => &[Cipher::Legacy],
        None => Cipher::candidates(spec),
    };
    let conn = under_first_profile(spec, tried, |profile| connect(spec, read_only, profile))?;
    let mode = if read_only {
        "PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = ON;"
    } else {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; \
         PRAGMA foreign_keys = ON;"
    };
    conn.execute_batch(mode).map_err(err)?;
    if spec.kind == FileKind::System && !read_only {
        // Crypto-shredding: a deleted wrapped DEK must not survive in a free page.
        conn.execute_batch("PRAGMA secure_delete = ON;")
            .map_err(err)?;
    }
    Ok(conn)
}

/// Why one attempt to open a file failed.
enum Failed {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// What `open` gives under the first profile of `tried` whose page 1 authenticates. Any
/// other failure ends the trial at once; a file no profile opens is reported with the last
/// refusal (for a wrong key, that is what it is).
fn under_first_profile<T>(
    spec: &OpenSpec<'_>,
    tried: &[Cipher],
    mut open: impl FnMut(Cipher) -> Result<T, Failed>,
) -> Result<T, StoreError> {
    let err = |e: &rusqlite::Error| {
        StoreError::from_sqlite(spec.label, spec.key_version, e).on_full_disk(Some(spec.path))
    };
    let mut refused = None;
    for profile in tried {
        match open(*profile) {
            Ok(found) => return Ok(found),
            Err(Failed::Sqlite(e)) if not_a_database(&e) => refused = Some(e),
            Err(Failed::Sqlite(e)) => return Err(err(&e)),
            Err(Failed::Store(e)) => return Err(e),
        }
    }
    Err(refused.map_or_else(
        || StoreError::Io {
            what: spec.label.to_string(),
            reason: "no cipher profile to open it with".into(),
        },
        |e| err(&e),
    ))
}

/// Opens `spec`'s file with one cipher profile, up to its first read (which authenticates
/// page 1: a wrong key, a foreign file or another profile fails there).
fn connect(spec: &OpenSpec<'_>, read_only: bool, profile: Cipher) -> Result<Connection, Failed> {
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else if spec.create {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(spec.path, flags)?;
    if spec.create {
        // SQLite creates files 0644 and gives -wal/-shm the main file's mode: fix it before
        // they exist. The data directory is 0700 as well; this is the second wall.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(spec.path, std::fs::Permissions::from_mode(0o600)).map_err(
            |e| {
                Failed::Store(StoreError::Io {
                    what: spec.label.to_string(),
                    reason: e.kind().to_string(),
                })
            },
        )?;
    }
    quiet_cipher_log(&conn);
    if spec.plaintext {
        // The benchmark's plain file has the pages of its encrypted twin, so the two differ
        // by encryption alone.
        conn.execute_batch(&format!("PRAGMA page_size = {};", profile.page_size()))?;
    } else {
        set_key(&conn, spec.key).and_then(|()| conn.execute_batch(&profile.pragmas("main")))?;
    }
    conn.busy_timeout(spec.busy_timeout)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    if !spec.create && !read_only {
        whole_pages(spec, profile).map_err(Failed::Store)?;
    }
    Ok(conn)
}

/// Refuses a file that is not a whole number of its profile's pages and has no log to
/// complete it, once page 1 has said which profile it is: [`refuse_emptied`] can only
/// check the smallest page size before that, and a file cut at a 4 KiB boundary inside a
/// 16 KiB page would open and fail later, on whichever read reached its last page.
///
/// The main file may end inside a page while its write-ahead log holds that page: a
/// checkpoint copying it in moves the size in steps of 4 KiB, and one cut short by a crash
/// leaves the size there until the next checkpoint writes the page again from the log. So
/// a log with content lets the file be, and a size between pages is read a second time
/// before it is called truncated. Asked by the writer's open and by evidence opens of a
/// file no process is writing (a reader beside a running writer is not asked).
fn whole_pages(spec: &OpenSpec<'_>, profile: Cipher) -> Result<(), StoreError> {
    let page = profile.page_size() as u64;
    if file_size(spec)? % page == 0 || wal_has_content(spec.path) {
        return Ok(());
    }
    match file_size(spec)? {
        again if again % page == 0 => Ok(()),
        again => Err(truncated(spec, again)),
    }
}

/// Opens a file for reading evidence (verify, export, backup checks) without changing
/// anything: no write, no WAL or shared-memory file created, no file grown. Works on a
/// read-only filesystem.
///
/// `quiet` says no other process can be writing the file (the caller checked: an unpacked
/// archive, or no process holds the data directory's lock). Then a file whose write-ahead
/// log is empty or absent is opened `immutable`, which reads the main file alone and creates
/// nothing. Otherwise the file is opened read-only through its WAL and its locks, so a
/// writer's commits and checkpoints are seen consistently; where that cannot work (a
/// read-only filesystem, a full disk) and the WAL is empty, `immutable` is the fallback.
///
/// # Errors
/// Missing, empty or truncated file, wrong key, or a WAL that cannot be read without writing.
pub fn open_evidence_with(spec: &OpenSpec<'_>, quiet: bool) -> Result<Connection, StoreError> {
    refuse_emptied(spec)?;
    let first_read = |conn: Connection| -> Result<Connection, rusqlite::Error> {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;")?;
        Ok(conn)
    };
    let wal_empty = !wal_has_content(spec.path);
    let immutable = quiet && wal_empty;
    let open =
        |profile: Cipher| match connect_read_only(spec, immutable, profile).and_then(first_read) {
            Err(e) if !immutable && wal_empty && is_cannot_share(&e) => {
                connect_read_only(spec, true, profile).and_then(first_read)
            }
            other => other,
        };
    under_first_profile(spec, Cipher::candidates(spec), |profile| {
        let conn = open(profile)?;
        // As in `connect`: not beside a writer.
        if quiet {
            whole_pages(spec, profile).map_err(Failed::Store)?;
        }
        Ok(conn)
    })
}

/// [`open_evidence_with`] for a file no process can be writing.
///
/// # Errors
/// As [`open_evidence_with`].
pub fn open_evidence(spec: &OpenSpec<'_>) -> Result<Connection, StoreError> {
    open_evidence_with(spec, true)
}

/// A read-only open that failed because the WAL index could not be made or shared.
fn is_cannot_share(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DiskFull
        )
    )
}

fn wal_has_content(path: &Path) -> bool {
    let mut p = path.as_os_str().to_os_string();
    p.push("-wal");
    std::fs::metadata(std::path::PathBuf::from(p)).is_ok_and(|m| m.len() > 0)
}

/// A read-only connection with the key set, not yet read from (so a file whose page 1 does
/// not decrypt can still be page-checked).
fn connect_read_only(
    spec: &OpenSpec<'_>,
    immutable: bool,
    profile: Cipher,
) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let uri = format!(
        "file:{}{}",
        uri_path(spec.path),
        if immutable { "?immutable=1" } else { "" }
    );
    let conn = Connection::open_with_flags(uri, flags)?;
    quiet_cipher_log(&conn);
    if !spec.plaintext {
        set_key(&conn, spec.key)?;
        conn.execute_batch(&profile.pragmas("main"))?;
    }
    conn.busy_timeout(spec.busy_timeout)?;
    Ok(conn)
}

/// A path for a `file:` URI: the characters a URI gives meaning to are percent-encoded.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sets the SQLCipher key. The statement is built in a buffer sized up front and wiped on
/// drop, so no copy of the key is left in freed memory.
fn set_key(conn: &Connection, key: &Key32) -> Result<(), rusqlite::Error> {
    let hex = key.to_hex();
    let mut pragma = Zeroizing::new(String::with_capacity(32 + hex.len()));
    pragma.push_str("PRAGMA key = \"x'");
    pragma.push_str(hex.as_str());
    pragma.push_str("'\";");
    conn.execute_batch(&pragma)
}

/// Below this much free space, an I/O failure is reported as a full disk.
const DISK_FULL_BELOW: u64 = 1 << 20;

/// Every SQLCipher file is a whole number of pages of this size (its default).
const PAGE_SIZE: u64 = 4096;

/// Refuses a file that is missing, empty or cut short, before SQLite sees it: SQLite would
/// take an empty file for a new database and build a fresh, empty store in its place, and a
/// fresh `system.db` holds none of the tenant keys.
///
/// # Errors
/// [`StoreError::Missing`], [`StoreError::Emptied`] or [`StoreError::Truncated`].
pub fn refuse_emptied(spec: &OpenSpec<'_>) -> Result<(), StoreError> {
    let size = file_size(spec)?;
    if size == 0 {
        // Never a good file: switching to WAL writes page 1 into the main file first, and
        // SQLite takes a 0-byte main file for a new database whatever its WAL holds.
        return Err(StoreError::Emptied {
            what: spec.label.to_string(),
            path: spec.path.display().to_string(),
        });
    } else if size % PAGE_SIZE != 0 {
        return Err(truncated(spec, size));
    }
    Ok(())
}

/// The size of `spec`'s main file.
fn file_size(spec: &OpenSpec<'_>) -> Result<u64, StoreError> {
    std::fs::metadata(spec.path)
        .map(|m| m.len())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing {
                what: spec.label.to_string(),
                path: spec.path.display().to_string(),
            },
            _ => StoreError::Io {
                what: spec.label.to_string(),
                reason: crate::fsutil::io_reason(&e),
            },
        })
}

fn truncated(spec: &OpenSpec<'_>, size: u64) -> StoreError {
    StoreError::Truncated {
        what: spec.label.to_string(),
        path: spec.path.display().to_string(),
        size,
    }
}

/// SQLCipher logs decryption failures to stderr by itself; Strongroom reports them as typed
/// errors that name the file, so the library's own log stays off.
fn quiet_cipher_log(conn: &Connection) {
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
}

/// Runs SQLCipher's page HMAC check and SQLite's structural check; returns one line per
/// problem (empty when the file is sound). Works on files whose page 1 cannot be decrypted.
pub fn integrity_problems(spec: &OpenSpec<'_>) -> Vec<String> {
    integrity_problems_with(spec, true)
}

/// [`integrity_problems`]; `quiet` as in [`open_evidence_with`].
pub fn integrity_problems_with(spec: &OpenSpec<'_>, quiet: bool) -> Vec<String> {
    if let Err(e) = refuse_emptied(spec) {
        return vec![e.to_string()];
    }
    let immutable = quiet && !wal_has_content(spec.path);
    let candidates = Cipher::candidates(spec);
    // The profile whose page 1 authenticates; with page 1 itself damaged, none does, and the
    // profile under which fewest pages fail is the file's.
    let readable = under_first_profile(spec, candidates, |profile| {
        let conn = connect_read_only(spec, immutable, profile)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(conn)
    });
    match readable {
        Ok(conn) => integrity_of(spec, &conn),
        Err(_) => candidates
            .iter()
            .map(|p| match connect_read_only(spec, immutable, *p) {
                Ok(conn) => integrity_of(spec, &conn),
                Err(e) => {
                    vec![StoreError::from_sqlite(spec.label, spec.key_version, &e).to_string()]
                }
            })
            .min_by_key(Vec::len)
            .unwrap_or_default(),
    }
}

/// SQLCipher's page check, then (when every page authenticates) SQLite's own, on `conn`.
fn integrity_of(spec: &OpenSpec<'_>, conn: &Connection) -> Vec<String> {
    let mut problems = Vec::new();
    let rows = conn
        .prepare("PRAGMA cipher_integrity_check")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        });
    match rows {
        Ok(rows) => problems.extend(rows.into_iter().map(|r| format!("{}: {r}", spec.label))),
        Err(e) => {
            problems.push(StoreError::from_sqlite(spec.label, spec.key_version, &e).to_string())
        }
    }
    if problems.is_empty() {
        let rows = conn.prepare("PRAGMA quick_check").and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        });
        match rows {
            Ok(rows) => problems.extend(
                rows.into_iter()
                    .filter(|r| r != "ok")
                    .map(|r| format!("{}: {r}", spec.label)),
            ),
            Err(e) => {
                problems.push(StoreError::from_sqlite(spec.label, spec.key_version, &e).to_string())
            }
        }
    }
    problems
}

/// One open encrypted file: its writer thread and a small pool of reader connections.
pub struct Store {
    path: PathBuf,
    label: String,
    key: Key32,
    key_version: u32,
    kind: FileKind,
    busy_timeout: Duration,
    plaintext: bool,
    writer: Writer,
    readers: ReaderPool,
}

/// How many idle reader connections a store keeps; more are opened under load and dropped.
const IDLE_READERS: usize = 4;

/// Decrypted pages a reader keeps, in KiB (SQLite's default is 2 MiB). A search walks the
/// same index pages query after query, and each page read again from the file is an HMAC
/// check and a decryption: on a large index that was a fifth of a slow phrase's time.
pub const READER_CACHE_KIB: i64 = 64 * 1024;

/// Pages the writer keeps, in KiB: adding a large document touches the index's pages
/// again and again within one transaction.
pub const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// The statements that give a connection a page cache of `kib` within the process budget.
fn cache_pragmas(kib: i64) -> String {
    format!(
        "PRAGMA cache_size = -{kib}; PRAGMA soft_heap_limit = {};",
        PAGE_CACHE_BUDGET.load(Ordering::Relaxed)
    )
}

/// What all page caches of the process may hold together, in bytes (SQLite's soft heap
/// limit): past it a cache reuses its oldest page instead of growing, so many tenants'
/// readers cannot add up to more than this. Set from `store.page_cache_mib`.
static PAGE_CACHE_BUDGET: AtomicU64 = AtomicU64::new(512 << 20);

/// Sets the memory budget of every SQLite page cache in the process, from the next
/// connection a store opens on.
pub fn set_page_cache_budget(bytes: u64) {
    PAGE_CACHE_BUDGET.store(bytes.max(1 << 20), Ordering::Relaxed);
}
/// How many reads may run on one file at once; more wait, up to the busy timeout.
pub const MAX_READERS: usize = 8;

/// A bounded set of reader connections: at most `max` in use at once, each opened with
/// `PRAGMA query_only = ON`.
struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    /// Permits left; waited on with `freed`.
    permits: Mutex<usize>,
    freed: Condvar,
}

impl ReaderPool {
    fn new(max: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            permits: Mutex::new(max.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Takes a permit, waiting up to `timeout`.
    fn acquire(&self, timeout: Duration) -> bool {
        let Ok(permits) = self.permits.lock() else {
            return false;
        };
        let Ok((mut permits, _)) = self.freed.wait_timeout_while(permits, timeout, |p| *p == 0)
        else {
            return false;
        };
        if *permits == 0 {
            return false;
        }
        *permits -= 1;
        true
    }

    fn release(&self, conn: Option<Connection>) {
        // A read that left a transaction open would pin an old snapshot (and the WAL) for
        // every later read on this connection: such a connection is dropped, not pooled.
        let conn = conn.filter(Connection::is_autocommit);
        if let (Some(conn), Ok(mut idle)) = (conn, self.idle.lock()) {
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        if let Ok(mut p) = self.permits.lock() {
            *p += 1;
        }
        self.freed.notify_one();
    }
}

/// Gives the permit (and the connection) back even if the read panics.
struct ReaderLease<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Drop for ReaderLease<'_> {
    fn drop(&mut self) {
        self.pool.release(self.conn.take());
    }
}

impl Store {
    /// Opens (or creates) the file, migrates it and starts its writer thread.
    ///
    /// # Errors
    /// See [`open_connection`] and [`migrate::migrate`].
    pub fn open(
        spec: &OpenSpec<'_>,
        journal: crate::audit::JournalConfig,
    ) -> Result<Self, StoreError> {
        let conn = open_connection(spec, false)?;
        conn.execute_batch(&cache_pragmas(WRITER_CACHE_KIB))
            .map_err(|e| StoreError::from_sqlite(spec.label, spec.key_version, &e))?;
        let full = |e: StoreError| e.on_full_disk(Some(spec.path));
        let pending = migrate::prepare(&conn, spec.kind, spec.label, spec.key_version, spec.create)
            .map_err(full)?;
        let writer = Writer::spawn(conn, spec.label.to_string(), spec.key_version, journal)?;
        migrate::finish(&writer, pending, spec.label).map_err(full)?;
        Ok(Self {
            path: spec.path.to_path_buf(),
            label: spec.label.to_string(),
            key: spec.key.duplicate(),
            key_version: spec.key_version,
            kind: spec.kind,
            busy_timeout: spec.busy_timeout,
            plaintext: spec.plaintext,
            writer,
            readers: ReaderPool::new(MAX_READERS),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Runs `f` on a query-only reader connection (a WAL snapshot) from the file's bounded
    /// pool. Call from a blocking context.
    ///
    /// # Errors
    /// Whatever `f` returns, [`StoreError::ReadersBusy`] when every reader stayed in use for
    /// the busy timeout, or a failure to open a reader.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        if !self.readers.acquire(self.busy_timeout) {
            return Err(StoreError::ReadersBusy {
                what: self.label.clone(),
                waited_ms: self.busy_timeout.as_millis() as u64,
            }
            .into());
        }
        let mut lease = ReaderLease {
            pool: &self.readers,
            conn: None,
        };
        let pooled = self.readers.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                // A read cannot write: changes go through the writer and its journal. The
                // connection is opened read-only, which no statement can undo (`query_only`
                // alone could be switched off by the read itself).
                let c = open_connection(&self.spec(false), true)?;
                c.execute_batch(&format!(
                    "PRAGMA query_only = ON; {}",
                    cache_pragmas(READER_CACHE_KIB)
                ))
                .map_err(|e| self.err(&e))?;
                c
            }
        };
        let out = f(lease.conn.insert(conn));
        drop(lease);
        out
    }

    fn spec(&self, create: bool) -> OpenSpec<'_> {
        OpenSpec {
            path: &self.path,
            label: &self.label,
            key: &self.key,
            key_version: self.key_version,
            kind: self.kind,
            create,
            busy_timeout: self.busy_timeout,
            plaintext: self.plaintext,
        }
    }

    /// Maps a SQLite error on this file.
    pub fn err(&self, e: &rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.label, self.key_version, e)
    }

    /// Moves committed pages from the WAL into the main file now. Best effort: a reader
    /// holding an old snapshot can delay it until the next checkpoint.
    ///
    /// Returns whether every committed page reached the main file.
    pub fn fold_wal(&self) -> bool {
        // Its own connection: readers are read-only, and a checkpoint writes the main file.
        let conn = match open_connection(&self.spec(false), false) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(file = %self.label, error = %e, "WAL checkpoint failed");
                return false;
            }
        };
        for _ in 0..50 {
            let r = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| self.err(&e));
            match r {
                Ok(0) => return true,
                Ok(_busy) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    tracing::warn!(file = %self.label, error = %e, "WAL checkpoint failed");
                    return false;
                }
            }
        }
        tracing::warn!(file = %self.label, "WAL checkpoint kept being blocked by readers; it completes at the next checkpoint");
        false
    }

    /// Stops the writer after it has committed everything queued, signs a final checkpoint and
    /// folds the WAL back into the file. Blocks; call from a blocking context.
    pub fn close(self) -> Result<(), StoreError> {
        if let Ok(mut v) = self.readers.idle.lock() {
            v.clear();
        }
        self.writer.shutdown()
    }
}

/// True when `e` is the "file is not a database" failure SQLCipher reports for a wrong key.
pub fn is_decrypt_failure(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == ffi::SQLITE_NOTADB)
}

crate::domain_error!(StoreError, |e| match e {
    StoreError::Busy { .. } | StoreError::ReadersBusy { .. } | StoreError::Closed { .. } => {
        crate::error::ErrorKind::Busy
    }
    _ => crate::error::ErrorKind::Internal,
});

#[cfg(test)]
mod tests;
