//! `doctor`: a self-check of an installation, for operators and for support. Each check says
//! ok, warn or fail, with a detail that names what to fix. It works on the read-only
//! [`Evidence`]: it takes no lock, starts no writer, settles nothing and creates no file, so
//! it runs on a read-only copy and on a full disk, and cannot change what it reports.
//! (`doctor --fix`, in the CLI, removes leftover tenant files before the checks run.)

use crate::audit::evidence::Evidence;
use crate::audit::ops;
use crate::keys;
use crate::tenants;
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Why a root key inside the data directory is worth a warning, and the ways out.
pub const ROOT_KEY_BESIDE_DATA: &str = "it is inside the data directory, so a copy of that \
directory carries the key that opens it; keep it elsewhere (keys.root_key_file, the systemd \
credential root-key, or a container secret)";

/// Runs every check. With `quick`, journals are checked against their last checkpoint
/// instead of walked in full.
pub fn run(ev: &Evidence, quick: bool, now_secs: i64) -> Vec<Check> {
    let loaded = format!("loaded from {} (id {})", ev.key_source(), ev.root_key_id());
    let root_key = if ev.root_key_beside_data() {
        check(
            "root_key",
            Status::Warn,
            format!("{loaded}; {ROOT_KEY_BESIDE_DATA}"),
        )
    } else {
        check("root_key", Status::Ok, loaded)
    };
    let mut out = vec![
        check("config", Status::Ok, "configuration is valid"),
        root_key,
    ];
    out.push(file_modes(ev));
    out.extend(journals(ev, quick));
    out.push(disk_space(ev.data_dir()));
    out.push(certificate(ev, now_secs));
    out.push(clock(ev, now_secs));
    out.push(key_ages(ev, now_secs));
    out.push(leftovers(ev));
    out
}

/// Mode bits that must be clear: nothing under the data directory is for group or others.
fn too_open(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| format!("{} is mode {mode:o}", path.display()))
}

/// Every entry under `dir` with its metadata; symbolic links are listed, never followed.
fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(e.path());
            }
            out.push((e.path(), meta));
        }
    }
    out
}

/// Lists at most a few items, then how many more there are.
fn some_of(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// Everything in the data directory is private to its owner and belongs to the directory's
/// owner (the service user on a packaged install), or the service may not open it.
fn file_modes(ev: &Evidence) -> Check {
    let dir = ev.data_dir();
    // The directory may be a link the operator configured; what it points to is checked.
    let Ok(top) = std::fs::metadata(dir) else {
        return check(
            "file_modes",
            Status::Fail,
            format!("cannot read {}", dir.display()),
        );
    };
    let mut entries = vec![(dir.to_path_buf(), top.clone())];
    entries.extend(
        walk(dir)
            .into_iter()
            .filter(|(_, m)| !m.file_type().is_symlink()),
    );
    let mut checked: Vec<(PathBuf, std::fs::Metadata)> = entries.clone();
    if let crate::keyring::RootKeySource::KeyFile(p) = ev.key_source() {
        if let Ok(m) = std::fs::metadata(p) {
            checked.push((p.clone(), m));
        }
    }
    let bad: Vec<String> = checked.iter().filter_map(|(p, m)| too_open(p, m)).collect();
    // The key file may rightly belong to root (a packaged install keeps it in /etc), so only
    // what is inside the data directory is held to the directory's owner.
    let owner = top.uid();
    let foreign: Vec<String> = entries
        .iter()
        .filter(|(_, m)| m.uid() != owner)
        .map(|(p, m)| format!("{} is owned by uid {}", p.display(), m.uid()))
        .collect();
    if !bad.is_empty() {
        check(
            "file_modes",
            Status::Fail,
            format!("{}; fix with chmod go-rwx", some_of(&bad)),
        )
    } else if !foreign.is_empty() {
        check(
            "file_modes",
            Status::Warn,
            format!(
                "{}, not by the data directory's owner (uid {owner}); fix with chown -R \
                 {owner}:{} {}",
                some_of(&foreign),
                top.gid(),
                dir.display()
            ),
        )
    } else {
        check(
            "file_modes",
            Status::Ok,
            format!("{} paths private to uid {owner}", checked.len()),
        )
    }
}

fn journals(ev: &Evidence, quick: bool) -> Vec<Check> {
    let tenants = match ev.tenants(false) {
        Ok(t) => t,
        Err(e) => return vec![check("tenants_open", Status::Fail, e.to_string())],
    };
    let mut unopenable = Vec::new();
    let mut bad = Vec::new();
    let mut entries = 0u64;
    let mut reports = vec![ops::verify_system_with(ev, quick)];
    for t in &tenants {
        match ops::verify_tenant_with(ev, &t.id, quick) {
            Ok(r) => reports.push(r),
            Err(e) => unopenable.push(format!("{}: {e}", t.id)),
        }
    }
    for r in &reports {
        if let Some(e) = &r.error {
            unopenable.push(e.clone());
        } else if !r.ok() {
            let why = r
                .chain
                .as_ref()
                .and_then(|c| c.problem.as_ref())
                .map(|p| format!("entry {} {}", p.seq, p.kind.as_str()))
                .or_else(|| r.integrity.first().cloned())
                .unwrap_or_default();
            bad.push(format!("{}: {why}", r.label));
        }
        entries += r.chain.as_ref().map(|c| c.entries).unwrap_or(0);
    }
    let open = if unopenable.is_empty() {
        check(
            "tenants_open",
            Status::Ok,
            format!("{} tenant files open with their keys", tenants.len()),
        )
    } else {
        check("tenants_open", Status::Fail, unopenable.join("; "))
    };
    let audit = if !bad.is_empty() {
        check(
            "audit_chains",
            Status::Fail,
            format!(
                "{}; run `strongroom audit verify` for details",
                bad.join("; ")
            ),
        )
    } else if quick {
        check(
            "audit_chains",
            Status::Ok,
            format!("{} journals match their last checkpoint", reports.len()),
        )
    } else {
        check(
            "audit_chains",
            Status::Ok,
            format!("{} journals, {entries} entries verified", reports.len()),
        )
    };
    let kept = crate::app::witness_path(ev.config(), ev.data_dir());
    let witness = match ops::check_witness(ev, &kept, None) {
        Ok(w) if w.ok() && w.checked == 0 => check(
            "witness",
            Status::Warn,
            format!("{} holds no journal heads yet", kept.display()),
        ),
        Ok(w) if w.ok() => check(
            "witness",
            Status::Ok,
            format!(
                "every journal extends its head in {} ({} heads)",
                kept.display(),
                w.checked
            ),
        ),
        Ok(w) => check("witness", Status::Fail, w.problems.join("; ")),
        Err(e) => check("witness", Status::Fail, e.to_string()),
    };
    vec![open, audit, witness]
}

fn disk_space(dir: &Path) -> Check {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let total = s.f_blocks.saturating_mul(s.f_frsize).max(1);
            let pct = free as f64 * 100.0 / total as f64;
            let detail = format!("{} MiB free ({pct:.1} %)", free / (1 << 20));
            if free < 100 << 20 {
                check(
                    "disk_space",
                    Status::Fail,
                    format!("{detail}: writes will fail soon"),
                )
            } else if free < 1 << 30 || pct < 5.0 {
                check("disk_space", Status::Warn, detail)
            } else {
                check("disk_space", Status::Ok, detail)
            }
        }
        Err(e) => check("disk_space", Status::Warn, format!("cannot read: {e}")),
    }
}

fn certificate(ev: &Evidence, now_secs: i64) -> Check {
    let server = &ev.config().server;
    let (path, key) = match (&server.tls_cert, &server.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => crate::web::tls::default_cert_paths(ev.data_dir()),
    };
    // What the server does at start: a key that is missing, unreadable or not the
    // certificate's keeps it from serving, however far off the expiry is.
    if let Err(e) = crate::web::tls::server_config(&path, &key) {
        return check("certificate", Status::Fail, e.to_string());
    }
    match crate::web::tls::not_after(&path) {
        Ok(not_after) => {
            let days = (not_after - now_secs) / 86_400;
            let detail = format!("{} expires in {days} days", path.display());
            if days < 0 {
                check(
                    "certificate",
                    Status::Fail,
                    format!("{} has expired", path.display()),
                )
            } else if days < 30 {
                check("certificate", Status::Warn, detail)
            } else {
                check("certificate", Status::Ok, detail)
            }
        }
        Err(e) => check("certificate", Status::Fail, e.to_string()),
    }
}

fn clock(ev: &Evidence, now_secs: i64) -> Check {
    let built = crate::build_info::build_epoch();
    if now_secs < built - 86_400 {
        return check(
            "clock",
            Status::Fail,
            "the system clock is earlier than this build's date: set the time (NTP)",
        );
    }
    let last = ev
        .system()
        .query_row(
            "SELECT coalesce(max(time_us), 0) FROM audit_entries",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| crate::store::StoreError::from_sqlite("system.db", 1, &e));
    match last {
        Ok(last_us) if last_us / 1_000_000 > now_secs + 300 => check(
            "clock",
            Status::Fail,
            "the system clock is behind the newest journal entry: the clock went backwards",
        ),
        Ok(_) => check(
            "clock",
            Status::Ok,
            "after the build date and the newest journal entry",
        ),
        Err(e) => check("clock", Status::Warn, e.to_string()),
    }
}

fn key_ages(ev: &Evidence, now_secs: i64) -> Check {
    let now = now_secs.saturating_mul(1_000_000);
    match keys::status_in(
        ev.system(),
        ev.keyring(),
        now,
        ev.config().keys.max_age_days,
    ) {
        Ok(list) => {
            let old: Vec<String> = list
                .iter()
                .filter(|k| k.too_old)
                .map(|k| format!("{} ({} days)", k.owner, k.age_days.unwrap_or(0)))
                .collect();
            if old.is_empty() {
                check(
                    "key_age",
                    Status::Ok,
                    format!("{} keys within policy", list.len()),
                )
            } else {
                check(
                    "key_age",
                    Status::Warn,
                    format!(
                        "older than keys.max_age_days: {}; rotate them",
                        old.join(", ")
                    ),
                )
            }
        }
        Err(e) => check("key_age", Status::Fail, e.to_string()),
    }
}

/// Files a crash or an interrupted operation can leave behind.
fn leftovers(ev: &Evidence) -> Check {
    let mut found = Vec::new();
    if let crate::keyring::RootKeySource::KeyFile(p) = ev.key_source() {
        let next = keys::next_key_path(p);
        if next.exists() {
            found.push(format!(
                "{} (from an interrupted rotation; run `strongroom keys rotate-root` again)",
                next.display()
            ));
        }
    }
    let owed = crate::store::system::outbox_counts(ev.system());
    for (tenant, n) in owed.unwrap_or_default() {
        found.push(format!(
            "{n} entries owed to tenant {tenant}'s journal by an operation a crash interrupted \
             (written when the server next starts, or the tenant next opens)"
        ));
    }
    if keys::unfinished_root_rotation_in(ev.system(), ev.root_key_id())
        .is_ok_and(|old| old.is_some())
    {
        found.push(
            "a root-key rotation stopped after the new key took over; `strongroom serve` or \
             `strongroom keys rotate-root` finishes it"
                .to_string(),
        );
    }
    // Work folders of a backup or restore killed before it could clean up. They hold copies
    // of system.db, with wrapped keys of tenants that may have been deleted since.
    if let Ok(entries) = std::fs::read_dir(ev.data_dir()) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = ev.data_dir().join(&name);
            if name.starts_with(".backup-") || name.starts_with(".restore-") {
                found.push(format!(
                    "{} (work folder of a backup or restore that did not finish; remove it when \
                     none is running)",
                    path.display()
                ));
            } else if name.starts_with("pre-restore-") {
                found.push(format!(
                    "{} (the data a restore replaced, with the keys it held; remove it once it \
                     is no longer needed)",
                    path.display()
                ));
            }
        }
    }
    // Every file no live tenant owns, side files and lock files included.
    let orphans = ev
        .tenants(false)
        .ok()
        .and_then(|live| tenants::leftovers_in(ev.data_dir(), &live).ok())
        .unwrap_or_default();
    for p in &orphans {
        found.push(format!(
            "{} (no live tenant owns it; `strongroom doctor --fix`, the next tenant create or \
             the next server start removes it)",
            p.display()
        ));
    }
    if let Ok(entries) = std::fs::read_dir(ev.data_dir().join("tenants")) {
        for e in entries.flatten() {
            let p = e.path();
            if orphans.contains(&p) {
                continue;
            }
            if e.file_name().to_string_lossy().contains(".db.rekey") {
                found.push(format!(
                    "{} (copy of an interrupted key rotation or restore; settled when the \
                     tenant next opens)",
                    p.display()
                ));
            }
        }
    }
    if found.is_empty() {
        check("leftovers", Status::Ok, "none")
    } else {
        check("leftovers", Status::Warn, found.join("; "))
    }
}
