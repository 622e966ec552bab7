//! The witness: signed heads of every journal, kept outside the data directory, in the spirit
//! of Certificate Transparency. A journal must always extend the head its witness recorded:
//! a `system.db` or tenant file put back from an older copy (which would undo a deletion or
//! hide what happened since) has a shorter chain, or another hash at the witnessed position,
//! and is refused.
//!
//! - Format: NDJSON, one [`Head`] per journal: `{"format":1,"journal":..,"seq":..,
//!   "hash":..,"time_us":..,"key_id":..,"signature":..}`; the signature is the installation's
//!   checkpoint key over the same message a checkpoint signs, so it verifies with the public
//!   key `audit checkpoints` prints. Lines signed by another installation's key are left
//!   alone: one file can serve several installations.
//! - Kept by [`Keeper`]: every process that writes notes each checkpoint's (seq, hash) and
//!   merges them into the file (under a lock, atomically) when it closes, and the server
//!   every few seconds. Heads only move forward; a restore, the one sanctioned step back,
//!   clears the heads it replaces.
//! - Checked when `system.db` opens (every command), when a tenant file opens, and by
//!   `audit verify` and `doctor`.

use super::entry::checkpoint_message;
use super::verify::{signature_ok, TrustedKey};
use crate::clock::Clock;
use crate::keyring::Signer;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FORMAT: u32 = 1;

/// One journal's signed head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub format: u32,
    /// `system`, or the tenant id.
    pub journal: String,
    pub seq: u64,
    /// The entry hash at `seq`, hex.
    pub hash: String,
    /// When the head was witnessed.
    pub time_us: i64,
    pub key_id: String,
    /// Ed25519 over the checkpoint message (journal, seq, hash, time), hex.
    pub signature: String,
}

impl Head {
    /// Signs (journal, seq, hash, time) with this installation's checkpoint key.
    pub fn sign(signer: &Signer, journal: &str, seq: u64, hash: &[u8; 32], time_us: i64) -> Self {
        let msg = checkpoint_message(journal, seq, hash, time_us);
        Self {
            format: FORMAT,
            journal: journal.to_string(),
            seq,
            hash: hex::encode(hash),
            time_us,
            key_id: signer.signing_key_id(),
            signature: hex::encode(signer.sign(&msg)),
        }
    }

    /// True when the signature verifies under one of `keys`.
    pub fn signed_by(&self, keys: &[TrustedKey]) -> bool {
        let (Ok(hash), Ok(sig)) = (hex::decode(&self.hash), hex::decode(&self.signature)) else {
            return false;
        };
        let msg = checkpoint_message(&self.journal, self.seq, &hash, self.time_us);
        signature_ok(keys, &self.key_id, &msg, &sig)
    }

    fn short(&self) -> String {
        format!(
            "seq {} (hash {})",
            self.seq,
            &self.hash[..self.hash.len().min(16)]
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness {path}: cannot {action}: {reason}")]
    Io {
        path: String,
        action: &'static str,
        reason: String,
    },
    #[error("witness {path}, line {line}: {reason}; the file must hold one JSON head per line, as `strongroom audit witness` writes them")]
    Malformed {
        path: String,
        line: usize,
        reason: String,
    },
}

impl WitnessError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "AUD-0101",
            Self::Malformed { .. } => "AUD-0102",
        }
    }
}

crate::domain_error!(WitnessError, |e| match e {
    WitnessError::Io { .. } => crate::error::ErrorKind::Internal,
    WitnessError::Malformed { .. } => crate::error::ErrorKind::Invalid,
});

fn io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> WitnessError + 'a {
    move |e| WitnessError::Io {
        path: path.display().to_string(),
        action,
        reason: crate::fsutil::io_reason(&e),
    }
}

/// Reads a witness file; a missing file is an empty witness.
///
/// # Errors
/// Unreadable, not a regular file, or a line that is not a head.
pub fn read(path: &Path) -> Result<Vec<Head>, WitnessError> {
    let raw = match crate::fsutil::read_regular(path, 256 << 20) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path, "read it")(e)),
    };
    let malformed = |line: usize, reason: String| WitnessError::Malformed {
        path: path.display().to_string(),
        line,
        reason,
    };
    let text = std::str::from_utf8(&raw).map_err(|_| malformed(1, "not UTF-8".into()))?;
    let mut heads = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let head: Head = serde_json::from_str(line).map_err(|e| malformed(i + 1, e.to_string()))?;
        if head.format > FORMAT {
            return Err(malformed(
                i + 1,
                format!(
                    "format {} is newer than this build knows ({FORMAT}); upgrade strongroom",
                    head.format
                ),
            ));
        }
        if head.hash.len() != 64 || hex::decode(&head.hash).is_err() {
            return Err(malformed(i + 1, "hash is not 64 hex characters".into()));
        }
        heads.push(head);
    }
    Ok(heads)
}

/// Writes heads as NDJSON, atomically.
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, heads: &[Head]) -> Result<(), WitnessError> {
    let mut out = Vec::new();
    for h in heads {
        // A Head always serializes.
        out.extend_from_slice(serde_json::to_string(h).unwrap_or_default().as_bytes());
        out.push(b'\n');
    }
    std::fs::create_dir_all(crate::fsutil::dir_of(path))
        .map_err(io(path, "create its directory"))?;
    crate::fsutil::replace_atomically(path, &out, 0o600).map_err(io(path, "write it"))
}

/// What a journal says about a witnessed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extends {
    /// The journal holds the witnessed entry: it extends the head.
    Yes,
    /// The journal ends before the witnessed head.
    Shorter { head: u64 },
    /// Another entry sits at the witnessed position.
    Diverged { hash: String },
}

/// Whether the journal in `conn` extends `head`.
///
/// # Errors
/// The journal cannot be read.
pub fn extends(conn: &Connection, head: &Head) -> Result<Extends, rusqlite::Error> {
    if head.seq == 0 {
        return Ok(Extends::Yes);
    }
    let at = conn
        .query_row(
            "SELECT hash FROM audit_entries WHERE seq = ?1",
            [i64::try_from(head.seq).unwrap_or(i64::MAX)],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .optional()?;
    Ok(match at {
        Some(h) if hex::encode(&h) == head.hash => Extends::Yes,
        Some(h) => Extends::Diverged {
            hash: hex::encode(h),
        },
        None => {
            let last: i64 =
                conn.query_row("SELECT coalesce(max(seq), 0) FROM audit_entries", [], |r| {
                    r.get(0)
                })?;
            Extends::Shorter {
                head: last.max(0) as u64,
            }
        }
    })
}

/// A sentence naming the journal, the witness and both heads, for a journal that does not
/// extend its witnessed head.
pub fn describe(label: &str, witness: &Path, head: &Head, found: &Extends) -> String {
    let now = match found {
        Extends::Yes => return format!("{label} extends the witnessed {}", head.short()),
        Extends::Shorter { head } => format!("the journal now ends at seq {head}"),
        Extends::Diverged { hash } => format!(
            "seq {} now has hash {}",
            head.seq,
            &hash[..hash.len().min(16)]
        ),
    };
    format!(
        "{label} does not extend the head recorded in the witness {}: witnessed {}, but {now}. \
         It was rolled back or replaced by an older copy; put the current file back, or restore \
         it with `strongroom backup restore` (which records the restore)",
        witness.display(),
        head.short()
    )
}

/// Notes checkpoint positions as they commit and merges them into the witness file.
pub struct Keeper {
    path: PathBuf,
    signer: Arc<Signer>,
    clock: Arc<dyn Clock>,
    pending: Mutex<BTreeMap<String, (u64, [u8; 32])>>,
}

impl Keeper {
    pub fn new(path: PathBuf, signer: Arc<Signer>, clock: Arc<dyn Clock>) -> Self {
        Self {
            path,
            signer,
            clock,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `journal` reached (seq, hash). Cheap: called on a writer thread.
    pub fn note(&self, journal: &str, seq: u64, hash: [u8; 32]) {
        if let Ok(mut p) = self.pending.lock() {
            let e = p.entry(journal.to_string()).or_insert((0, [0; 32]));
            if seq >= e.0 {
                *e = (seq, hash);
            }
        }
    }

    fn trusted(&self) -> Vec<TrustedKey> {
        vec![TrustedKey {
            id: self.signer.signing_key_id(),
            public_key: self.signer.signing_public_key(),
        }]
    }

    /// This installation's witnessed head of `journal`, if any.
    ///
    /// # Errors
    /// The witness file cannot be read.
    pub fn head_of(&self, journal: &str) -> Result<Option<Head>, WitnessError> {
        let mine = self.signer.signing_key_id();
        Ok(read(&self.path)?
            .into_iter()
            .find(|h| h.journal == journal && h.key_id == mine && h.signed_by(&self.trusted())))
    }

    /// Merges what was noted into the file: a head moves only forward. Under an exclusive
    /// lock beside the file, so the server and a command never lose each other's heads.
    ///
    /// # Errors
    /// The witness cannot be read or written (the noted heads stay for the next flush).
    pub fn flush(&self) -> Result<(), WitnessError> {
        let noted: Vec<(String, (u64, [u8; 32]))> = match self.pending.lock() {
            Ok(p) if !p.is_empty() => p.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            _ => return Ok(()),
        };
        let trusted = self.trusted();
        self.rewrite(|heads, signer, now| {
            for (journal, (seq, hash)) in &noted {
                let mine = signer.signing_key_id();
                // Only a head this installation signed holds a journal back: a line forged
                // with a huge position would otherwise freeze its witness for good. The
                // forged line stays, for `audit verify` to report.
                match heads
                    .iter_mut()
                    .find(|h| &h.journal == journal && h.key_id == mine && h.signed_by(&trusted))
                {
                    Some(h) if h.seq > *seq => {}
                    Some(h) => *h = Head::sign(signer, journal, *seq, hash, now),
                    None => heads.push(Head::sign(signer, journal, *seq, hash, now)),
                }
            }
        })?;
        if let Ok(mut p) = self.pending.lock() {
            for (journal, (seq, _)) in noted {
                if p.get(&journal).is_some_and(|(s, _)| *s == seq) {
                    p.remove(&journal);
                }
            }
        }
        Ok(())
    }

    /// Drops this installation's heads of the given journals (`None`: all of them): a
    /// restore has replaced those journals with older ones, on purpose and on the record.
    ///
    /// # Errors
    /// The witness cannot be read or written.
    pub fn forget(&self, journals: Option<&[String]>) -> Result<(), WitnessError> {
        if let Ok(mut p) = self.pending.lock() {
            match journals {
                None => p.clear(),
                Some(js) => js.iter().for_each(|j| {
                    p.remove(j);
                }),
            }
        }
        self.rewrite(|heads, signer, _| {
            let mine = signer.signing_key_id();
            heads.retain(|h| {
                h.key_id != mine || journals.is_some_and(|js| !js.contains(&h.journal))
            });
        })
    }

    fn rewrite(
        &self,
        change: impl FnOnce(&mut Vec<Head>, &Signer, i64),
    ) -> Result<(), WitnessError> {
        let mut lock_path = self.path.as_os_str().to_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        std::fs::create_dir_all(crate::fsutil::dir_of(&self.path))
            .map_err(io(&self.path, "create its directory"))?;
        let lock = crate::fsutil::open_lock_file(&lock_path).map_err(io(&self.path, "lock it"))?;
        lock.lock().map_err(io(&self.path, "lock it"))?;
        let mut heads = read(&self.path)?;
        change(&mut heads, &self.signer, self.clock.now_us());
        heads.sort_by(|a, b| {
            (a.key_id.as_str(), a.journal.as_str()).cmp(&(b.key_id.as_str(), b.journal.as_str()))
        });
        write(&self.path, &heads)
    }
}
