//! Opening an archive: every chunk and member checked, then every journal.

use super::*;

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
    let (file, _) = crate::fsutil::open_regular(path).map_err(|e| BackupError::Io {
        what: format!("open {}", path.display()),
        reason: crate::fsutil::io_reason(&e),
    })?;
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
            if *iterations > 10_000_000 {
                return Err(ArchiveError::BadHeader(format!("{iterations} KDF iterations")).into());
            }
            if kdf != "pbkdf2-sha256" {
                return Err(ArchiveError::BadHeader(format!("unknown kdf {kdf}")).into());
            }
            archive::passphrase_key(p.expose().as_bytes(), &header.salt_bytes()?, *iterations)
        }
        (KeySpec::Passphrase { .. }, Opening::Root(_)) => return Err(BackupError::NeedsPassphrase),
    };
    let mut r = ArchiveReader::new(inp, header, &header_bytes, &key)?;
    let dir = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(staging_parent)
        .map_err(io_err("create a staging directory"))?;
    std::fs::create_dir(dir.path().join("tenants"))
        .map_err(io_err("create a staging directory"))?;
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut root_hex: Option<zeroize::Zeroizing<Vec<u8>>> = None;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut members: Vec<Member> = Vec::new();
    loop {
        let mut nlen = [0u8; 2];
        r.read_exact(&mut nlen)?;
        let nlen = u16::from_be_bytes(nlen) as usize;
        if nlen == 0 {
            break;
        }
        if nlen > 128 {
            return Err(BackupError::BadManifest(format!(
                "a member name of {nlen} bytes"
            )));
        }
        let mut name = vec![0u8; nlen];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name)
            .map_err(|_| BackupError::BadManifest("a member name is not UTF-8".into()))?;
        let valid_name = name == "system.key"
            || name == "system.db"
            || name == "root.key"
            || name
                .strip_prefix("tenants/")
                .and_then(|n| n.strip_suffix(".db"))
                .is_some_and(|id| TenantId::parse(id).is_ok());
        if !valid_name || members.iter().any(|m| m.name == name) {
            return Err(BackupError::BadManifest(format!(
                "unexpected member {name:?}"
            )));
        }
        let mut size = [0u8; 8];
        r.read_exact(&mut size)?;
        let size = u64::from_be_bytes(size);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        if name == "root.key" {
            if size > 256 {
                return Err(BackupError::MemberMismatch(name));
            }
            let mut v = zeroize::Zeroizing::new(vec![0u8; size as usize]);
            r.read_exact(&mut v)?;
            ctx.update(&v);
            root_hex = Some(v);
        } else {
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dir.path().join(&name))
                    .map_err(io_err(format!("write {name}")))?
            };
            let mut left = size;
            while left > 0 {
                let n = (left as usize).min(buf.len());
                r.read_exact(&mut buf[..n])?;
                ctx.update(&buf[..n]);
                f.write_all(&buf[..n])
                    .map_err(io_err(format!("write {name}")))?;
                left -= n as u64;
                done += n as u64;
                progress(done, total.max(done));
            }
            f.sync_all().map_err(io_err(format!("write {name}")))?;
        }
        members.push(Member {
            name,
            size,
            sha256: hex::encode(ctx.finish()),
        });
    }
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
    // Every member is exactly the one the manifest lists, in its order.
    if manifest.members.len() != members.len() {
        return Err(BackupError::BadManifest(format!(
            "the manifest lists {} members, the archive holds {}",
            manifest.members.len(),
            members.len()
        )));
    }
    if let Some((m, _)) = manifest.members.iter().zip(&members).find(|(a, b)| a != b) {
        return Err(BackupError::MemberMismatch(m.name.clone()));
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
    let own = verify::TrustedKey {
        id: signer.signing_key_id(),
        public_key: signer.signing_public_key(),
    };
    let mut files = vec![ops::verify_file(
        &sys_spec,
        "system",
        std::slice::from_ref(&own),
        None,
        false,
    )];
    let sys_conn = store::open_connection(&sys_spec, true)?;
    let err = |e: rusqlite::Error| StoreError::from_sqlite("system.db", 1, &e);
    let mut jobs = Vec::new();
    for t in &u.manifest.tenants {
        let id = TenantId::parse(&t.id).map_err(crate::tenants::TenantError::from)?;
        let wrapped = system::wrapped_dek(&sys_conn, &id, t.key_version, u.keyring.root_key_id())
            .map_err(err)?
            .ok_or_else(|| BackupError::MemberMismatch(format!("tenants/{}.db", t.id)))?;
        let dek = u.keyring.unwrap_dek(id.as_str(), t.key_version, &wrapped)?;
        let anchor = system::anchor(&sys_conn, &id).map_err(err)?;
        let mut keys = vec![own.clone()];
        keys.extend(
            system::signing_keys(&sys_conn, id.as_str())
                .map_err(err)?
                .into_iter()
                .map(|(id, public_key)| verify::TrustedKey { id, public_key }),
        );
        jobs.push((t, id, dek, anchor, keys));
    }
    drop(sys_conn);
    files.extend(par_map(&jobs, |(t, id, dek, anchor, keys)| {
        let path = dir.join(format!("tenants/{}.db", t.id));
        let label = store::tenants::tenant_label(id);
        let mut report = ops::verify_file(
            &spec(&path, &label, dek, t.key_version, FileKind::Tenant),
            &t.id,
            keys,
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
