//! The backup archive container: a header, then the payload sealed with AES-256-GCM in
//! chunks of at most 1 MiB.
//!
//! ```text
//! "SRBACKUP"  u32 BE header length  header (JSON)  SHA-256(magic || header)
//! chunk*:     u32 BE (ciphertext length | 0x8000_0000 on the last chunk)  ciphertext+tag
//! ```
//!
//! Chunk `i` uses the nonce `nonce_prefix (4 bytes) || i (u64 BE)`, and its associated data
//! is `SHA-256(magic || header) || i || last-flag`. So the header is authenticated by every
//! chunk, chunks cannot be reordered, dropped or duplicated, and a cut-off archive (no chunk
//! marked last) is detected. The archive key comes from the root key (HKDF with the header's
//! random salt) or from a passphrase (PBKDF2-HMAC-SHA256, iterations in the header); a key
//! check value in the header tells a wrong key or passphrase apart from damage.

use crate::keyring::Key32;
use ring::aead;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

pub const MAGIC: &[u8; 8] = b"SRBACKUP";
pub const FORMAT: u32 = 1;
pub const CHUNK_SIZE: usize = 1 << 20;
const LAST: u32 = 0x8000_0000;
const MAX_HEADER: usize = 64 * 1024;
pub const PBKDF2_ITERATIONS: u32 = 600_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeySpec {
    /// Sealed under a key derived from the installation's root key.
    Root { root_key_id: String },
    /// Sealed under a key derived from a passphrase.
    Passphrase { kdf: String, iterations: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: u32,
    pub created_us: i64,
    pub key: KeySpec,
    /// Hex, 32 bytes: salt of the key derivation.
    pub salt: String,
    /// Hex, 4 bytes.
    pub nonce_prefix: String,
    /// Hex, 16 bytes: HMAC-SHA256(archive key, "strongroom backup key check"), truncated.
    pub key_check: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a Strongroom backup archive")]
    NotAnArchive,
    #[error("the archive has format {0}; this build reads format {FORMAT}: upgrade strongroom to restore it")]
    TooNew(u32),
    #[error("the archive header is malformed: {0}")]
    BadHeader(String),
    #[error("wrong key or passphrase for this archive")]
    WrongKey,
    #[error("the archive is truncated (it ends before its final chunk)")]
    Truncated,
    #[error("chunk {0} of the archive fails authentication: the archive was altered or damaged")]
    Corrupt(u64),
    #[error("the archive has data after its final chunk")]
    Trailing,
    #[error("archive I/O: {0}")]
    Io(String),
}

impl ArchiveError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnArchive => "BAK-0001",
            Self::TooNew(_) => "BAK-0002",
            Self::BadHeader(_) => "BAK-0003",
            Self::WrongKey => "BAK-0004",
            Self::Truncated => "BAK-0005",
            Self::Corrupt(_) => "BAK-0006",
            Self::Trailing => "BAK-0007",
            Self::Io(_) => "BAK-0008",
        }
    }
}

fn header_digest(header: &[u8]) -> [u8; 32] {
    let mut v = Vec::with_capacity(MAGIC.len() + header.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(header);
    crate::audit::entry::sha256(&v)
}

fn io(e: std::io::Error) -> ArchiveError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ArchiveError::Truncated
    } else {
        ArchiveError::Io(e.kind().to_string())
    }
}

fn random<const N: usize>() -> Result<[u8; N], ArchiveError> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| ArchiveError::Io("random source failed".into()))?;
    Ok(b)
}

/// Derives the archive key from a passphrase.
pub fn passphrase_key(passphrase: &[u8], salt: &[u8], iterations: u32) -> Key32 {
    let mut out = [0u8; 32];
    let iters = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        salt,
        passphrase,
        &mut out,
    );
    let k = Key32::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    k
}

fn key_check(key: &Key32) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose());
    hex::encode(&ring::hmac::sign(&k, b"strongroom backup key check").as_ref()[..16])
}

impl Header {
    /// A fresh header (new salt and nonce prefix) for `key`.
    ///
    /// # Errors
    /// Only a random-source failure.
    pub fn new(created_us: i64, key: KeySpec) -> Result<Self, ArchiveError> {
        Ok(Self {
            format: FORMAT,
            created_us,
            key,
            salt: hex::encode(random::<32>()?),
            nonce_prefix: hex::encode(random::<4>()?),
            key_check: String::new(),
        })
    }

    pub fn salt_bytes(&self) -> Result<Vec<u8>, ArchiveError> {
        hex::decode(&self.salt).map_err(|_| ArchiveError::BadHeader("salt is not hex".into()))
    }
}

struct Sealer {
    key: aead::LessSafeKey,
    prefix: [u8; 4],
    aad_base: [u8; 32],
}

impl Sealer {
    fn new(key: &Key32, header: &Header, header_bytes: &[u8]) -> Result<Self, ArchiveError> {
        let prefix: [u8; 4] = hex::decode(&header.nonce_prefix)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ArchiveError::BadHeader("nonce_prefix is not 4 hex bytes".into()))?;
        let mut base = Vec::with_capacity(MAGIC.len() + header_bytes.len());
        base.extend_from_slice(MAGIC);
        base.extend_from_slice(header_bytes);
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, key.expose())
            .map_err(|_| ArchiveError::Io("bad key length".into()))?;
        Ok(Self {
            key: aead::LessSafeKey::new(unbound),
            prefix,
            aad_base: crate::audit::entry::sha256(&base),
        })
    }

    fn nonce_aad(&self, index: u64, last: bool) -> (aead::Nonce, [u8; 41]) {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.prefix);
        n[4..].copy_from_slice(&index.to_be_bytes());
        let mut aad = [0u8; 41];
        aad[..32].copy_from_slice(&self.aad_base);
        aad[32..40].copy_from_slice(&index.to_be_bytes());
        aad[40] = u8::from(last);
        (aead::Nonce::assume_unique_for_key(n), aad)
    }
}

/// Writes an archive; call [`ArchiveWriter::finish`] to seal the final chunk.
pub struct ArchiveWriter<W: Write> {
    out: W,
    sealer: Sealer,
    index: u64,
    buf: Vec<u8>,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the magic and header (with its key check) and returns the payload writer.
    ///
    /// # Errors
    /// Write failures.
    pub fn new(mut out: W, mut header: Header, key: &Key32) -> Result<Self, ArchiveError> {
        header.key_check = key_check(key);
        let bytes =
            serde_json::to_vec(&header).map_err(|e| ArchiveError::BadHeader(e.to_string()))?;
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&(bytes.len() as u32).to_be_bytes())
            .map_err(io)?;
        out.write_all(&bytes).map_err(io)?;
        // Lets a damaged header be told apart from a wrong key before any chunk is read.
        out.write_all(&header_digest(&bytes)).map_err(io)?;
        let sealer = Sealer::new(key, &header, &bytes)?;
        Ok(Self {
            out,
            sealer,
            index: 0,
            buf: Vec::with_capacity(CHUNK_SIZE),
        })
    }

    fn seal(&mut self, last: bool) -> Result<(), ArchiveError> {
        let (nonce, aad) = self.sealer.nonce_aad(self.index, last);
        self.sealer
            .key
            .seal_in_place_append_tag(nonce, aead::Aad::from(aad), &mut self.buf)
            .map_err(|_| ArchiveError::Io("seal failed".into()))?;
        let mut len = self.buf.len() as u32;
        if last {
            len |= LAST;
        }
        self.out.write_all(&len.to_be_bytes()).map_err(io)?;
        self.out.write_all(&self.buf).map_err(io)?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Appends payload bytes.
    ///
    /// # Errors
    /// Write failures.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), ArchiveError> {
        while !data.is_empty() {
            let room = CHUNK_SIZE - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK_SIZE {
                self.seal(false)?;
            }
        }
        Ok(())
    }

    /// Seals the last chunk and returns the underlying writer.
    ///
    /// # Errors
    /// Write failures.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        self.seal(true)?;
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }
}

/// Reads an archive's header, then its payload, checking every chunk.
pub struct ArchiveReader<R: Read> {
    inp: R,
    sealer: Sealer,
    index: u64,
    plain: Vec<u8>,
    pos: usize,
    done: bool,
    pub header: Header,
}

/// Reads and checks the magic and header without needing a key.
///
/// # Errors
/// Not an archive, a newer format, or a malformed header.
pub fn read_header<R: Read>(inp: &mut R) -> Result<(Header, Vec<u8>), ArchiveError> {
    let mut magic = [0u8; 8];
    inp.read_exact(&mut magic).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ArchiveError::NotAnArchive,
        _ => io(e),
    })?;
    if &magic != MAGIC {
        return Err(ArchiveError::NotAnArchive);
    }
    let mut len = [0u8; 4];
    inp.read_exact(&mut len).map_err(io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(ArchiveError::BadHeader(format!("header of {len} bytes")));
    }
    let mut bytes = vec![0u8; len];
    inp.read_exact(&mut bytes).map_err(io)?;
    // The format comes first: a newer format may lay out what follows differently.
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
    }
    if let Ok(probe) = serde_json::from_slice::<Probe>(&bytes) {
        if probe.format > FORMAT {
            return Err(ArchiveError::TooNew(probe.format));
        }
    }
    let mut digest = [0u8; 32];
    inp.read_exact(&mut digest).map_err(io)?;
    if digest != header_digest(&bytes) {
        return Err(ArchiveError::BadHeader(
            "its checksum does not match: the archive was altered or damaged".into(),
        ));
    }
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::BadHeader(e.to_string()))?;
    Ok((header, bytes))
}

impl<R: Read> ArchiveReader<R> {
    /// Opens the payload with `key`, after checking it against the header's key check.
    ///
    /// # Errors
    /// Wrong key, or a malformed header.
    pub fn new(
        inp: R,
        header: Header,
        header_bytes: &[u8],
        key: &Key32,
    ) -> Result<Self, ArchiveError> {
        // The check value is public (it sits in the header), so a plain comparison is fine.
        if key_check(key) != header.key_check {
            return Err(ArchiveError::WrongKey);
        }
        let sealer = Sealer::new(key, &header, header_bytes)?;
        Ok(Self {
            inp,
            sealer,
            index: 0,
            plain: Vec::new(),
            pos: 0,
            done: false,
            header,
        })
    }

    fn next_chunk(&mut self) -> Result<bool, ArchiveError> {
        if self.done {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        self.inp.read_exact(&mut len).map_err(io)?;
        let word = u32::from_be_bytes(len);
        let last = word & LAST != 0;
        let len = (word & !LAST) as usize;
        if len < aead::AES_256_GCM.tag_len() || len > CHUNK_SIZE + aead::AES_256_GCM.tag_len() {
            return Err(ArchiveError::Corrupt(self.index));
        }
        self.plain.resize(len, 0);
        self.inp.read_exact(&mut self.plain).map_err(io)?;
        let (nonce, aad) = self.sealer.nonce_aad(self.index, last);
        let n = self
            .sealer
            .key
            .open_in_place(nonce, aead::Aad::from(aad), &mut self.plain)
            .map_err(|_| ArchiveError::Corrupt(self.index))?
            .len();
        self.plain.truncate(n);
        self.pos = 0;
        self.index += 1;
        if last {
            self.done = true;
            let mut probe = [0u8; 1];
            match self.inp.read(&mut probe) {
                Ok(0) => {}
                Ok(_) => return Err(ArchiveError::Trailing),
                Err(e) => return Err(io(e)),
            }
        }
        Ok(true)
    }

    /// Fills `out` entirely from the payload.
    ///
    /// # Errors
    /// Damage, truncation, or a payload shorter than asked.
    pub fn read_exact(&mut self, mut out: &mut [u8]) -> Result<(), ArchiveError> {
        while !out.is_empty() {
            if self.pos == self.plain.len() && !self.next_chunk()? {
                return Err(ArchiveError::Truncated);
            }
            let n = (self.plain.len() - self.pos).min(out.len());
            out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
            self.pos += n;
            out = &mut out[n..];
        }
        Ok(())
    }

    /// Checks that the payload ends here, with its final chunk.
    ///
    /// # Errors
    /// More payload follows, or the final chunk is missing.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        if self.pos < self.plain.len() {
            return Err(ArchiveError::Trailing);
        }
        while self.next_chunk()? {
            if !self.plain.is_empty() {
                return Err(ArchiveError::Trailing);
            }
        }
        Ok(())
    }
}

crate::domain_error!(ArchiveError, |e| match e {
    ArchiveError::Io(_) => crate::error::ErrorKind::Internal,
    _ => crate::error::ErrorKind::Invalid,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8], key: &Key32) -> Vec<u8> {
        let header = Header::new(
            1,
            KeySpec::Root {
                root_key_id: "r".into(),
            },
        )
        .unwrap();
        let mut w = ArchiveWriter::new(Vec::new(), header, key).unwrap();
        w.write_all(payload).unwrap();
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8], key: &Key32, len: usize) -> Result<Vec<u8>, ArchiveError> {
        let mut inp = bytes;
        let (h, hb) = read_header(&mut inp)?;
        let mut r = ArchiveReader::new(inp, h, &hb, key)?;
        let mut out = vec![0u8; len];
        r.read_exact(&mut out)?;
        r.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trip_across_chunk_boundaries() {
        let key = Key32::random().unwrap();
        for len in [
            0usize,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE + 7,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let a = sample(&payload, &key);
            assert_eq!(read_all(&a, &key, len).unwrap(), payload, "len {len}");
            if len >= 64 {
                assert!(
                    !a.windows(64).any(|w| w == &payload[..64]),
                    "payload in clear"
                );
            }
        }
    }

    #[test]
    fn damage_of_every_kind_is_named() {
        let key = Key32::random().unwrap();
        let payload = vec![7u8; 2 * CHUNK_SIZE + 100];
        let a = sample(&payload, &key);
        let n = payload.len();
        // Wrong key.
        assert!(matches!(
            read_all(&a, &Key32::random().unwrap(), n),
            Err(ArchiveError::WrongKey)
        ));
        // Truncated anywhere.
        for cut in [4, 20, a.len() / 2, a.len() - 1] {
            let e = read_all(&a[..cut], &key, n).unwrap_err();
            assert!(
                matches!(
                    e,
                    ArchiveError::Truncated
                        | ArchiveError::NotAnArchive
                        | ArchiveError::BadHeader(_)
                ),
                "cut {cut}: {e}"
            );
        }
        // A flipped byte in each chunk, and in the header.
        let header_end = 12 + u32::from_be_bytes([a[8], a[9], a[10], a[11]]) as usize + 32;
        for at in [a.len() - 10, a.len() / 2, header_end + 10] {
            let mut bent = a.clone();
            bent[at] ^= 1;
            let e = read_all(&bent, &key, n).unwrap_err();
            assert!(matches!(e, ArchiveError::Corrupt(_)), "at {at}: {e}");
        }
        for at in [20, header_end - 5] {
            let mut bent = a.clone();
            bent[at] ^= 0x01; // inside the JSON header, then inside its checksum
            let e = read_all(&bent, &key, n).unwrap_err();
            assert!(matches!(e, ArchiveError::BadHeader(_)), "at {at}: {e}");
        }
        // Trailing garbage, wrong magic, newer format.
        let mut longer = a.clone();
        longer.push(0);
        assert!(matches!(
            read_all(&longer, &key, n),
            Err(ArchiveError::Trailing)
        ));
        assert!(matches!(
            read_all(b"PK\x03\x04 zip file", &key, n),
            Err(ArchiveError::NotAnArchive)
        ));
        // A newer format is named before the checksum is looked at.
        let newer =
            String::from_utf8_lossy(&a[12..12 + 40]).replace("\"format\":1", "\"format\":9");
        let mut future = a[..12].to_vec();
        future.extend_from_slice(newer.as_bytes());
        future.extend_from_slice(&a[52..]);
        assert!(matches!(
            read_all(&future, &key, n),
            Err(ArchiveError::TooNew(9))
        ));
        // Asking for less than there is: data after the end.
        assert!(matches!(
            read_all(&a, &key, n - 1),
            Err(ArchiveError::Trailing)
        ));
    }

    #[test]
    fn passphrase_keys_depend_on_salt_and_passphrase() {
        let a = passphrase_key(b"correct horse", b"salt-1", 1000);
        assert_eq!(
            a.expose(),
            passphrase_key(b"correct horse", b"salt-1", 1000).expose()
        );
        assert_ne!(
            a.expose(),
            passphrase_key(b"correct horsE", b"salt-1", 1000).expose()
        );
        assert_ne!(
            a.expose(),
            passphrase_key(b"correct horse", b"salt-2", 1000).expose()
        );
    }
}
