//! Secret bytes that never print. Every key, token and password in Strongroom lives in one of
//! these: the memory is zeroized on drop and `Debug`/`Display` print `[redacted]`, so a stray
//! `{:?}` in a log line or a panic message cannot leak key material.

use std::fmt;
use zeroize::Zeroizing;

/// A fixed-size 256-bit key. Deliberately not `Clone`: copies of key material are explicit.
pub struct Key32(Zeroizing<[u8; 32]>);

impl Key32 {
    /// Wraps bytes that the caller has already generated or derived.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Fresh random key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// Fails only if the system random source fails.
    pub fn random() -> Result<Self, super::KeyringError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes.as_mut())
            .map_err(|_| super::KeyringError::Random)?;
        Ok(Self(bytes))
    }

    /// The raw bytes, for handing to a cipher. Never format or log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// An explicit copy, for the few places (a writer thread, a rotation) that need their own.
    pub fn duplicate(&self) -> Self {
        Self(Zeroizing::new(*self.0))
    }

    /// Lower-case hex, zeroized on drop; used to build `PRAGMA key` and the key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret string (a passphrase, a token) with the same guarantees as [`Key32`].
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let k = Key32::from_bytes([0xab; 32]);
        let shown = format!("{k:?} {k} {:?}", Some(&k));
        assert!(!shown.contains("ab"), "{shown}");
        assert_eq!(shown.matches("[redacted]").count(), 3);
        let s = SecretString::new("hunter2".into());
        assert_eq!(format!("{s:?}/{s}"), "[redacted]/[redacted]");
    }

    #[test]
    fn random_keys_differ() {
        let a = Key32::random().unwrap();
        let b = Key32::random().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.to_hex().len(), 64);
    }
}
