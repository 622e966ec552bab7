//! AES-256-GCM sealing with a random 96-bit nonce per message: `nonce || ciphertext || tag`.
//! Each sealing key seals few messages (one per DEK version, one per stored secret), far below
//! the 2^32 bound for random nonces.

use super::{Key32, KeyringError};
use ring::aead;
use zeroize::Zeroizing;

/// A DEK wrapped under its tenant's KEK, as stored in `system.db`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek(pub Vec<u8>);

/// A secret sealed under a tenant's sealing key, as stored in the tenant file.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedDek({} bytes)", self.0.len())
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

fn key(k: &Key32) -> Result<aead::LessSafeKey, KeyringError> {
    aead::UnboundKey::new(&aead::AES_256_GCM, k.expose())
        .map(aead::LessSafeKey::new)
        .map_err(|_| KeyringError::Random)
}

pub(super) fn seal(k: &Key32, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let mut nonce = [0u8; aead::NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| KeyringError::Random)?;
    let mut buf = plain.to_vec();
    key(k)?
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| KeyringError::Random)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

pub(super) fn open(k: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    if sealed.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
        return Err(());
    }
    let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
    let mut buf = Zeroizing::new(body.to_vec());
    let plain_len = key(k)
        .map_err(|_| ())?
        .open_in_place(nonce, aead::Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| ())?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}
