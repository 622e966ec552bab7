//! Evidence is verifiable read-only: `audit verify`, `export` and `checkpoints` on a
//! read-only filesystem and on a full one, creating nothing and changing nothing.

use crate::support::{all_files, is_root, Env};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for one test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    /// `None` when this machine cannot mount (not root): then the test cannot run here, which
    /// is a failure under CI.
    fn tmpfs(at: &Path, size: &str) -> Option<Self> {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run as root to test read-only verification on a mount"
            );
            eprintln!("not root: read-only mount test skipped");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs");
        Some(Self(at.to_path_buf()))
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<_> = all_files(dir)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect();
    v.sort();
    v
}

/// An installation with two tenants and some history, copied onto a fresh tmpfs; the root
/// key stays outside, as on a packaged install.
fn copied_onto(env: &Env, mount: &Path) -> Env {
    let copy = Env::new();
    let data = mount.join("data");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&env.dir)
        .arg(&data)
        .status()
        .unwrap()
        .success());
    let key = copy.tmp.path().join("root.key");
    std::fs::copy(data.join("root.key"), &key).unwrap();
    std::fs::remove_file(data.join("root.key")).unwrap();
    std::fs::write(
        &copy.config,
        format!("data_dir = {data:?}\n[keys]\nroot_key_file = {key:?}\n"),
    )
    .unwrap();
    Env { dir: data, ..copy }
}

fn installation() -> (Env, String) {
    let env = Env::init();
    let id = env.create_tenant("Evidence");
    env.create_tenant("Other");
    env.ok(&["tenant", "suspend", &id]);
    env.ok(&["tenant", "resume", &id]);
    (env, id)
}

#[test]
fn verify_export_and_checkpoints_work_on_a_read_only_copy() {
    let (env, id) = installation();
    let at = env.tmp.path().join("ro");
    let Some(mount) = Mount::tmpfs(&at, "2g") else {
        return;
    };
    let copy = copied_onto(&env, &at);
    mount.remount_read_only();
    let before = listing(&copy.dir);
    let out = copy.ok(&["audit", "verify", "--all"]);
    // system.db, two tenants, and the witness kept beside them.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK")).count(),
        4,
        "{out}"
    );
    assert!(out.contains("OK    witness"), "{out}");
    assert_eq!(
        copy.ok(&["audit", "export", "--tenant", &id]),
        env.ok(&["audit", "export", "--tenant", &id])
    );
    copy.ok(&["audit", "export", "--system", "--format", "csv"]);
    copy.ok(&["audit", "checkpoints", "--tenant", &id]);
    // doctor too: before, it failed at once ("cannot open strongroom.lock").
    let doctor = copy.ok(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&doctor).unwrap();
    assert_eq!(v["ok"], true, "{doctor}");
    assert_eq!(listing(&copy.dir), before, "verification changed the copy");
}

#[test]
fn verify_works_on_a_full_disk_and_leaves_nothing_behind() {
    let (env, _) = installation();
    let at = env.tmp.path().join("full");
    let Some(_mount) = Mount::tmpfs(&at, "16m") else {
        return;
    };
    let copy = copied_onto(&env, &at);
    // Fill what is left of the filesystem.
    let filler = at.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let before = listing(&copy.dir);
    let out = copy.ok(&["audit", "verify", "--all"]);
    // system.db, two tenants, and the witness kept beside them.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK")).count(),
        4,
        "{out}"
    );
    assert!(out.contains("OK    witness"), "{out}");
    // doctor runs, and says the disk is full rather than failing on it.
    let doctor = crate::support::stdout(&copy.run(&["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&doctor).unwrap();
    let journals = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "audit_chains")
        .unwrap();
    assert_eq!(journals["status"], "ok", "{doctor}");
    assert_eq!(listing(&copy.dir), before, "verify wrote to a full disk");
}
