//! `system.key`: the system DEK, wrapped under the root key. It sits beside `system.db`, which
//! it unlocks, and is useless without the root key.
//!
//! It normally holds one wrapping. During a root-key rotation it holds two (old and new root
//! key), so that a crash at any point leaves a file that one of the two keys opens.
//!
//! Format 1, JSON: `{"format": 1, "wrappings": [{"root_key_id": "…", "wrapped": "<hex>"}]}`.

use super::{Key32, Keyring, KeyringError, WrappedDek, SYSTEM_OWNER};
use serde::{Deserialize, Serialize};
use std::path::Path;

const FORMAT: u32 = 1;
/// The system DEK's version; it is not rotated (only re-wrapped), so it stays 1.
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Wrapping {
    pub root_key_id: String,
    pub wrapped: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SystemKeyFile {
    pub format: u32,
    pub wrappings: Vec<Wrapping>,
}

#[derive(Debug, thiserror::Error)]
pub enum SystemKeyError {
    #[error(
        "{path} is missing; it holds the key of system.db and is created by `strongroom init`"
    )]
    Missing { path: String },
    #[error("{path} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is malformed ({reason}); restore it from a backup")]
    Malformed { path: String, reason: String },
    #[error("{path} has format {found}; this build reads format {FORMAT}: upgrade strongroom")]
    TooNew { path: String, found: u32 },
    #[error("the root key (id {key_id}) is not one this data directory was sealed with (it knows {known}); use the matching root key")]
    WrongRootKey { key_id: String, known: String },
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

impl SystemKeyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "KEY-0101",
            Self::Unreadable { .. } => "KEY-0102",
            Self::Malformed { .. } => "KEY-0103",
            Self::TooNew { .. } => "KEY-0104",
            Self::WrongRootKey { .. } => "KEY-0105",
            Self::Keyring(e) => e.code(),
            Self::Write { .. } => "KEY-0106",
        }
    }
}

impl SystemKeyFile {
    /// A new file holding `system_dek` wrapped under `keyring`'s root key.
    ///
    /// # Errors
    /// Only a random-source failure.
    pub fn seal(keyring: &Keyring, system_dek: &Key32) -> Result<Self, KeyringError> {
        Ok(Self {
            format: FORMAT,
            wrappings: vec![wrapping(keyring, system_dek)?],
        })
    }

    /// Adds a wrapping under another root key (the first step of a rotation).
    ///
    /// # Errors
    /// Only a random-source failure.
    pub fn add(&mut self, keyring: &Keyring, system_dek: &Key32) -> Result<(), KeyringError> {
        self.wrappings
            .retain(|w| w.root_key_id != keyring.root_key_id());
        self.wrappings.push(wrapping(keyring, system_dek)?);
        Ok(())
    }

    /// Keeps only the wrapping under `root_key_id` (the last step of a rotation).
    pub fn keep_only(&mut self, root_key_id: &str) {
        self.wrappings.retain(|w| w.root_key_id == root_key_id);
    }

    /// Unwraps the system DEK with the keyring's root key.
    ///
    /// # Errors
    /// No wrapping for this root key, or one that does not open.
    pub fn unwrap(&self, keyring: &Keyring) -> Result<Key32, SystemKeyError> {
        let w = self
            .wrappings
            .iter()
            .find(|w| w.root_key_id == keyring.root_key_id())
            .ok_or_else(|| SystemKeyError::WrongRootKey {
                key_id: keyring.root_key_id().to_string(),
                known: self
                    .wrappings
                    .iter()
                    .map(|w| w.root_key_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let bytes = hex::decode(&w.wrapped).map_err(|_| KeyringError::Unwrap {
            owner: SYSTEM_OWNER.into(),
            version: VERSION,
        })?;
        Ok(keyring.unwrap_dek(SYSTEM_OWNER, VERSION, &WrappedDek(bytes))?)
    }

    /// # Errors
    /// Missing, unreadable, malformed or too new.
    pub fn read(path: &Path) -> Result<Self, SystemKeyError> {
        let p = path.display().to_string();
        let text = match crate::fsutil::read_regular(path, 64 * 1024) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SystemKeyError::Missing { path: p })
            }
            Err(e) => {
                return Err(SystemKeyError::Unreadable {
                    path: p,
                    reason: crate::fsutil::io_reason(&e),
                })
            }
        };
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe =
            serde_json::from_slice(&text).map_err(|e| SystemKeyError::Malformed {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        if probe.format > FORMAT {
            return Err(SystemKeyError::TooNew {
                path: p,
                found: probe.format,
            });
        }
        let file: Self = serde_json::from_slice(&text).map_err(|e| SystemKeyError::Malformed {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        if file.wrappings.is_empty() {
            return Err(SystemKeyError::Malformed {
                path: p,
                reason: "no wrapping".into(),
            });
        }
        Ok(file)
    }

    /// Writes the file atomically (mode 0600).
    ///
    /// # Errors
    /// I/O failure; the previous file is then unchanged.
    pub fn write(&self, path: &Path) -> Result<(), SystemKeyError> {
        let err = |reason: String| SystemKeyError::Write {
            path: path.display().to_string(),
            reason,
        };
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        text.push(b'\n');
        crate::fsutil::replace_atomically(path, &text, 0o600).map_err(|e| err(e.kind().to_string()))
    }
}

fn wrapping(keyring: &Keyring, system_dek: &Key32) -> Result<Wrapping, KeyringError> {
    let w = keyring.wrap_dek(SYSTEM_OWNER, VERSION, system_dek)?;
    Ok(Wrapping {
        root_key_id: keyring.root_key_id().to_string(),
        wrapped: hex::encode(&w.0),
    })
}

crate::domain_error!(SystemKeyError, |_e| crate::error::ErrorKind::Internal);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::RootKeySource;

    fn kr(b: u8) -> Keyring {
        Keyring::new(Key32::from_bytes([b; 32]), RootKeySource::Test).unwrap()
    }

    #[test]
    fn round_trip_and_rotation_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("system.key");
        let dek = Key32::random().unwrap();
        let (old, new) = (kr(1), kr(2));
        let f = SystemKeyFile::seal(&old, &dek).unwrap();
        f.write(&path).unwrap();
        let mut f = SystemKeyFile::read(&path).unwrap();
        assert_eq!(f.unwrap(&old).unwrap().expose(), dek.expose());
        let e = f.unwrap(&new).unwrap_err();
        assert!(matches!(e, SystemKeyError::WrongRootKey { .. }), "{e}");
        f.add(&new, &dek).unwrap();
        assert_eq!(f.unwrap(&new).unwrap().expose(), dek.expose());
        assert_eq!(f.unwrap(&old).unwrap().expose(), dek.expose());
        f.keep_only(new.root_key_id());
        assert!(f.unwrap(&old).is_err());
        assert_eq!(f.wrappings.len(), 1);
    }

    #[test]
    fn broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("system.key");
        assert!(matches!(
            SystemKeyFile::read(&path),
            Err(SystemKeyError::Missing { .. })
        ));
        for (text, want) in [
            ("{", "malformed"),
            ("{\"format\":1,\"wrappings\":[]}", "no wrapping"),
            ("{\"format\":9,\"wrappings\":[]}", "format 9"),
            ("{\"format\":1,\"wrappings\":[],\"extra\":1}", "malformed"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = SystemKeyFile::read(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let mut f = SystemKeyFile::seal(&kr(1), &Key32::random().unwrap()).unwrap();
        f.wrappings[0].wrapped = "zz".into();
        assert!(matches!(f.unwrap(&kr(1)), Err(SystemKeyError::Keyring(_))));
    }
}
