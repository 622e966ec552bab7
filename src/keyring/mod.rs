//! The keyring owns every key Strongroom holds.
//!
//! - The **root key** (32 random bytes) comes from a systemd credential
//!   (`$CREDENTIALS_DIRECTORY/root-key`) or from a key file (mode 0600). Nothing is ever stored
//!   in clear next to the data it protects, except that key file, which the operator controls.
//! - Each tenant has a random 256-bit **data key** (DEK): the SQLCipher raw key of its file.
//!   DEKs are stored only wrapped with AES-256-GCM under a **key-encryption key** (KEK) derived
//!   by HKDF-SHA256 from the root key with the tenant id and the key version in `info`; the same
//!   tenant id and version are the AEAD associated data, so a wrapped DEK moved to another
//!   tenant or version fails to unwrap.
//! - A **sealing key** derived from each DEK seals secrets stored inside a tenant file
//!   (connector credentials), so they stay sealed even in a decrypted export of the file.
//! - The **system DEK** (SQLCipher key of `system.db`) is random too, and stored only wrapped
//!   under the root key in `system.key` ([`system_key`]). The **audit signing key** (Ed25519,
//!   for journal checkpoints) is derived from the system DEK, so rotating the root key changes
//!   neither the system file's key nor the key that verifies old checkpoints.
//!
//! Derivation labels are versioned (`strongroom/v1/...`) and must never change meaning.

mod root;
mod secret;
pub mod system_key;
mod wrap;

pub use root::{
    load_root_key, load_root_key_bytes, write_root_key_file, RootKeySource, ROOT_KEY_CREDENTIAL,
};
pub use secret::{Key32, SecretString};
pub use wrap::{Sealed, WrappedDek};

use ring::{hkdf, signature};

/// Errors from loading, deriving or unwrapping keys. Codes (`KEY-xxxx`) never change meaning.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("no root key: neither the systemd credential {credential} nor the key file {file} exists; run `strongroom init` or pass the key as a credential")]
    RootKeyMissing { credential: String, file: String },
    #[error("root key file {file} is readable by group or others (mode {mode:o}); fix it with `chmod 600 {file}`")]
    RootKeyFileMode { file: String, mode: u32 },
    #[error("root key in {source_name} is malformed: expected 32 raw bytes or 64 hex characters")]
    RootKeyMalformed { source_name: String },
    #[error("cannot read root key from {source_name}: {reason}")]
    RootKeyUnreadable { source_name: String, reason: String },
    #[error("cannot unwrap the data key of {owner} version {version}: wrong root key, or the wrapped key was altered")]
    Unwrap { owner: String, version: u32 },
    #[error("cannot open sealed value: wrong key, or the value was altered")]
    Unseal,
    #[error("the system random source failed")]
    Random,
    #[error("key derivation failed")]
    Derive,
}

impl KeyringError {
    /// Stable error code for logs and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RootKeyMissing { .. } => "KEY-0001",
            Self::RootKeyFileMode { .. } => "KEY-0002",
            Self::RootKeyMalformed { .. } => "KEY-0003",
            Self::RootKeyUnreadable { .. } => "KEY-0004",
            Self::Unwrap { .. } => "KEY-0005",
            Self::Unseal => "KEY-0006",
            Self::Random => "KEY-0007",
            Self::Derive => "KEY-0008",
        }
    }
}

const LABEL_KEK: &[u8] = b"strongroom/v1/kek";
const LABEL_AUDIT_SIGNING: &[u8] = b"strongroom/v1/audit-signing";
const LABEL_SEAL: &[u8] = b"strongroom/v1/seal";
const LABEL_KEY_ID: &[u8] = b"strongroom/v1/key-id";
const LABEL_BACKUP: &[u8] = b"strongroom/v1/backup";
const LABEL_IDENTITY: &[u8] = b"strongroom/v1/identity";

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF-SHA256 of `ikm` with a fixed, label-specific salt and the given `info` parts.
fn derive(ikm: &Key32, label: &[u8], info: &[&[u8]]) -> Result<Key32, KeyringError> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, label);
    let prk = salt.extract(ikm.expose());
    // 32 bytes is far below HKDF's limit, so this cannot fail; if it ever did, no key (rather
    // than an all-zero key) comes out.
    Key32::fill_with(|out| {
        prk.expand(info, Len32)
            .and_then(|okm| okm.fill(out))
            .map_err(|_| KeyringError::Derive)
    })
}

/// Encodes a tenant id and key version unambiguously, for HKDF `info` and AEAD associated data.
fn owner_context(owner: &str, version: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(owner.len() + 9);
    v.extend_from_slice(&(owner.len() as u32).to_be_bytes());
    v.extend_from_slice(owner.as_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v
}

/// The root key and the KEKs derived from it. Built once at start-up; shared by `Arc`.
pub struct Keyring {
    root: Key32,
    source: RootKeySource,
    key_id: String,
}

/// Owner name of the system DEK's wrapping; tenant ids are hex, so they never collide with it.
pub const SYSTEM_OWNER: &str = "system";

impl Keyring {
    pub fn new(root: Key32, source: RootKeySource) -> Result<Self, KeyringError> {
        let key_id = root_key_id(&root)?;
        Ok(Self {
            root,
            source,
            key_id,
        })
    }

    /// A non-secret fingerprint of the root key (8 bytes of an HKDF output), safe to print.
    pub fn root_key_id(&self) -> &str {
        &self.key_id
    }

    pub fn source(&self) -> &RootKeySource {
        &self.source
    }

    /// An independent copy (for a restore that outlives the caller's keyring).
    ///
    /// # Errors
    /// Only if key derivation fails.
    pub fn duplicate(&self) -> Result<Self, KeyringError> {
        Self::new(self.root.duplicate(), self.source.clone())
    }

    /// Writes this root key to a new key file (mode 0600, never replacing one): a restore
    /// onto a machine with no key. The key never leaves the keyring as a value.
    ///
    /// # Errors
    /// The file exists or cannot be written.
    pub fn write_key_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        root::write_root_key_file(path, &self.root)
    }

    /// Replaces `path` with this root key, atomically (mode 0600): step 1 of a rotation.
    ///
    /// # Errors
    /// The file cannot be written; the old one is then unchanged.
    pub fn replace_key_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        let hex = self.root.to_hex();
        // Sized up front: a reallocation would leave an unwiped copy of the key behind.
        let mut text = zeroize::Zeroizing::new(Vec::with_capacity(hex.len() + 1));
        text.extend_from_slice(hex.as_bytes());
        text.push(b'\n');
        crate::fsutil::replace_atomically(path, &text, 0o600)
    }

    /// The root key as a key file holds it, for the one place that must carry it: a
    /// passphrase-sealed archive, which restores with the passphrase alone.
    pub fn key_file_bytes_for_passphrase_archive(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let hex = self.root.to_hex();
        let mut text = zeroize::Zeroizing::new(Vec::with_capacity(hex.len() + 1));
        text.extend_from_slice(hex.as_bytes());
        text.push(b'\n');
        text
    }

    /// The key that seals one backup archive, from the root key and the archive's salt.
    ///
    /// # Errors
    /// Only if key derivation fails.
    pub fn backup_key(&self, salt: &[u8]) -> Result<Key32, KeyringError> {
        derive(&self.root, LABEL_BACKUP, &[salt])
    }

    /// Wraps a fresh DEK for `owner` (a tenant id) at `version`.
    pub fn wrap_dek(
        &self,
        owner: &str,
        version: u32,
        dek: &Key32,
    ) -> Result<WrappedDek, KeyringError> {
        let ctx = owner_context(owner, version);
        let kek = derive(&self.root, LABEL_KEK, &[&ctx])?;
        wrap::seal(&kek, &ctx, dek.expose()).map(WrappedDek)
    }

    /// Unwraps the DEK of `owner` at `version`; fails if the root key, owner or version differ.
    pub fn unwrap_dek(
        &self,
        owner: &str,
        version: u32,
        wrapped: &WrappedDek,
    ) -> Result<Key32, KeyringError> {
        let ctx = owner_context(owner, version);
        let kek = derive(&self.root, LABEL_KEK, &[&ctx])?;
        let plain = wrap::open(&kek, &ctx, &wrapped.0).map_err(|_| KeyringError::Unwrap {
            owner: owner.to_string(),
            version,
        })?;
        Key32::from_slice(plain.as_slice()).ok_or_else(|| KeyringError::Unwrap {
            owner: owner.to_string(),
            version,
        })
    }
}

/// A non-secret fingerprint of a root key.
///
/// # Errors
/// Only if key derivation fails.
pub fn root_key_id(root: &Key32) -> Result<String, KeyringError> {
    let id = derive(root, LABEL_KEY_ID, &[])?;
    Ok(hex::encode(&id.expose()[..8]))
}

/// The Ed25519 key that signs journal checkpoints, derived from the system DEK.
pub struct Signer {
    pair: signature::Ed25519KeyPair,
    key_id: String,
}

impl Signer {
    /// # Errors
    /// Only if the derived seed is rejected, which does not happen for 32-byte seeds.
    pub fn from_system_dek(system_dek: &Key32) -> Result<Self, KeyringError> {
        let seed = derive(system_dek, LABEL_AUDIT_SIGNING, &[b"ed25519"])?;
        let pair = signature::Ed25519KeyPair::from_seed_unchecked(seed.expose())
            .map_err(|_| KeyringError::Random)?;
        let key_id = signing_key_id(signature::KeyPair::public_key(&pair).as_ref());
        Ok(Self { pair, key_id })
    }

    /// Signs a journal checkpoint message.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The Ed25519 public key that verifies checkpoints; safe to publish.
    pub fn signing_public_key(&self) -> Vec<u8> {
        signature::KeyPair::public_key(&self.pair).as_ref().to_vec()
    }

    /// Id of the signing key, recorded beside each checkpoint signature.
    pub fn signing_key_id(&self) -> String {
        self.key_id.clone()
    }
}

/// A key for one identity purpose (the e-mail lookup, token and session hashing), derived
/// from the system DEK: it lives as long as the installation and survives root rotation.
///
/// # Errors
/// Only if key derivation fails.
pub fn identity_key(system_dek: &Key32, purpose: &str) -> Result<Key32, KeyringError> {
    derive(system_dek, LABEL_IDENTITY, &[purpose.as_bytes()])
}

/// A sealing key for one purpose of the installation (identity secrets such as TOTP seeds),
/// derived from the system DEK, so a sealed value read out of a file is useless without it.
pub struct Sealer(Key32);

impl Sealer {
    /// # Errors
    /// Only if key derivation fails.
    pub fn derive(system_dek: &Key32, purpose: &str) -> Result<Self, KeyringError> {
        identity_key(system_dek, purpose).map(Self)
    }

    /// Seals `plain`, bound to `context` (e.g. the account it belongs to).
    ///
    /// # Errors
    /// The random source failed.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyringError> {
        wrap::seal(&self.0, context, plain)
    }

    /// # Errors
    /// [`KeyringError::Unseal`] if the value was changed, moved to another context, or
    /// sealed under another key.
    pub fn unseal(
        &self,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyringError> {
        wrap::open(&self.0, context, sealed).map_err(|_| KeyringError::Unseal)
    }
}

/// A random 128-bit identifier in hex (tenant ids, operation ids): unguessable and, in
/// practice, unique.
///
/// # Errors
/// The system random source failed.
pub fn random_id() -> Result<String, KeyringError> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| KeyringError::Random)?;
    Ok(hex::encode(b))
}

/// First 8 bytes (hex) of SHA-256 over an Ed25519 public key.
pub fn signing_key_id(public_key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&d.as_ref()[..8])
}

/// Checks an Ed25519 checkpoint signature against a public key.
pub fn verify_signature(public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .is_ok()
}

/// Keys of one open tenant: its DEK (the SQLCipher key) and the sealing key derived from it.
pub struct TenantKeys {
    pub version: u32,
    dek: Key32,
    seal: Key32,
}

impl TenantKeys {
    /// # Errors
    /// Only if key derivation fails.
    pub fn new(version: u32, dek: Key32) -> Result<Self, KeyringError> {
        let seal = derive(&dek, LABEL_SEAL, &[])?;
        Ok(Self { version, dek, seal })
    }

    pub fn dek(&self) -> &Key32 {
        &self.dek
    }

    /// Seals a secret stored inside the tenant file; `context` binds it to its place (e.g. the
    /// connector id), so a sealed value copied elsewhere fails to open.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Result<Sealed, KeyringError> {
        wrap::seal(&self.seal, context, plain).map(Sealed)
    }

    pub fn unseal(
        &self,
        context: &[u8],
        sealed: &Sealed,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyringError> {
        wrap::open(&self.seal, context, &sealed.0).map_err(|_| KeyringError::Unseal)
    }
}

crate::domain_error!(KeyringError, |_e| crate::error::ErrorKind::Internal);

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(byte: u8) -> Keyring {
        Keyring::new(Key32::from_bytes([byte; 32]), RootKeySource::Test).unwrap()
    }

    #[test]
    fn dek_round_trips_and_is_bound_to_owner_version_and_root() {
        let kr = ring_with(1);
        let dek = Key32::random().unwrap();
        let w = kr.wrap_dek("t1", 1, &dek).unwrap();
        assert_eq!(kr.unwrap_dek("t1", 1, &w).unwrap().expose(), dek.expose());
        assert!(matches!(
            kr.unwrap_dek("t2", 1, &w),
            Err(KeyringError::Unwrap { .. })
        ));
        assert!(kr.unwrap_dek("t1", 2, &w).is_err());
        assert!(ring_with(2).unwrap_dek("t1", 1, &w).is_err());
        let mut bent = w.0.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert!(kr.unwrap_dek("t1", 1, &WrappedDek(bent)).is_err());
        assert!(kr.unwrap_dek("t1", 1, &WrappedDek(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn derived_keys_are_distinct_and_deterministic() {
        let a = ring_with(7);
        let b = ring_with(7);
        assert_eq!(a.root_key_id(), b.root_key_id());
        assert_ne!(a.root_key_id(), ring_with(8).root_key_id());
        assert_eq!(a.root_key_id().len(), 16);
        let s1 = Signer::from_system_dek(&Key32::from_bytes([1; 32])).unwrap();
        let s2 = Signer::from_system_dek(&Key32::from_bytes([1; 32])).unwrap();
        assert_eq!(s1.signing_public_key(), s2.signing_public_key());
        assert_eq!(
            s1.signing_key_id(),
            signing_key_id(&s1.signing_public_key())
        );
    }

    #[test]
    fn derivation_labels_are_pinned() {
        // Changing a label or the HKDF construction would orphan every stored key: pinned,
        // with values checked against an independent HKDF-SHA256 (RFC 5869) computation.
        let root = Key32::from_bytes([0x42; 32]);
        assert_eq!(root_key_id(&root).unwrap(), "caddefacc848c120");
        let kek = derive(&root, LABEL_KEK, &[&owner_context("t1", 1)]).unwrap();
        assert_eq!(
            hex::encode(kek.expose()),
            "89dc4ef19a9c60eead1d33c2a08707d27ddb9960989598bf4482f6da5f9687d3"
        );
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let s = Signer::from_system_dek(&Key32::from_bytes([3; 32])).unwrap();
        let other = Signer::from_system_dek(&Key32::from_bytes([4; 32])).unwrap();
        let sig = s.sign(b"checkpoint");
        assert!(verify_signature(
            &s.signing_public_key(),
            b"checkpoint",
            &sig
        ));
        assert!(!verify_signature(
            &s.signing_public_key(),
            b"checkpoinT",
            &sig
        ));
        assert!(!verify_signature(
            &other.signing_public_key(),
            b"checkpoint",
            &sig
        ));
    }

    #[test]
    fn sealing_binds_context() {
        let keys = TenantKeys::new(1, Key32::random().unwrap()).unwrap();
        let s = keys.seal(b"conn-1", b"api-token").unwrap();
        assert_eq!(keys.unseal(b"conn-1", &s).unwrap().as_slice(), b"api-token");
        assert!(matches!(
            keys.unseal(b"conn-2", &s),
            Err(KeyringError::Unseal)
        ));
        assert_ne!(keys.seal.expose(), keys.dek.expose());
    }
}
