//! Secret bytes that never print. Every key, token and password in Strongroom lives in one of
//! these: the memory is zeroized on drop and `Debug`/`Display` print `[redacted]`, so a stray
//! `{:?}` in a log line or a panic message cannot leak key material.

use std::fmt;
use zeroize::Zeroizing;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A fixed-size 256-bit key. Deliberately not `Clone`: copies of key material are explicit.
/// The bytes live on the heap and are written there in place (filled, derived, decoded or
/// copied into the buffer), so moving a key never leaves a copy of it on the stack.
pub struct Key32(Box<Zeroizing<[u8; 32]>>);

impl Key32 {
    fn zeroed() -> Self {
        Self(Box::new(Zeroizing::new([0u8; 32])))
    }

    /// Wraps bytes the caller already holds (tests, constants). Production code fills a key
    /// in place with [`Key32::from_slice`], [`Key32::from_hex`] or [`Key32::fill_with`].
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Box::new(Zeroizing::new(bytes)))
    }

    /// A key copied from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        let mut k = Self::zeroed();
        k.0.copy_from_slice(bytes);
        Some(k)
    }

    /// A key decoded from 64 hex characters, straight into its buffer.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut k = Self::zeroed();
        hex::decode_to_slice(text, &mut k.0[..]).ok()?;
        Some(k)
    }

    /// A key written by `fill` into its own buffer (a derivation).
    ///
    /// # Errors
    /// Whatever `fill` returns.
    pub fn fill_with<E>(fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Self, E> {
        let mut k = Self::zeroed();
        fill(&mut k.0[..])?;
        Ok(k)
    }

    /// Fresh random key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// Fails only if the system random source fails.
    pub fn random() -> Result<Self, super::KeyringError> {
        Self::fill_with(|b| {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), b)
                .map_err(|_| super::KeyringError::Random)
        })
    }

    /// The raw bytes, for handing to a cipher. Never format or log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// An explicit copy, for the few places (a writer thread, a rotation) that need their own.
    pub fn duplicate(&self) -> Self {
        let mut k = Self::zeroed();
        k.0.copy_from_slice(&self.0[..]);
        k
    }

    /// Lower-case hex, zeroized on drop; used to build `PRAGMA key` and the key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        // Sized up front, so encoding never reallocates and leaves a copy behind.
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in self.0.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
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

    #[test]
    fn keys_are_built_in_place_and_round_trip() {
        let k = Key32::random().unwrap();
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.as_str(), hex::encode(k.expose()));
        assert_eq!(Key32::from_hex(&hex).unwrap().expose(), k.expose());
        assert_eq!(Key32::from_slice(k.expose()).unwrap().expose(), k.expose());
        assert_eq!(k.duplicate().expose(), k.expose());
        assert!(Key32::from_slice(&[1; 31]).is_none());
        assert!(Key32::from_hex(&"zz".repeat(32)).is_none());
        assert!(Key32::from_hex("abcd").is_none());
        assert_ne!(Key32::random().unwrap().expose(), k.expose());
    }
}
