//! Backups end to end with the real binary: online create, verify, restore onto a fresh
//! directory (root key or passphrase), and every kind of bad archive.

use crate::support::{contains, Env, Server};
use std::path::{Path, PathBuf};

const PASS: &str = "correct horse battery staple\n";

fn journal(env: &Env, id: &str) -> Vec<serde_json::Value> {
    env.ok(&["audit", "export", "--tenant", id])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A restore target: an empty environment whose data directory does not exist yet.
fn fresh() -> Env {
    Env::new()
}

/// A backup of tenant `id` alone.
fn single_tenant_archive(env: &Env, id: &str) -> PathBuf {
    let out = archive(env, "one.srb");
    let path = out.to_str().unwrap();
    env.ok(&["backup", "create", "--out", path, "--tenant", id]);
    out
}

/// Restores tenant `id` from `from`'s archive into another installation, `to`, opening the
/// archive with `from`'s root key.
fn restore_tenant_elsewhere(from: &Env, out: &Path, id: &str, to: &Env) {
    let key = from.dir.join("root.key");
    let (out, key) = (out.to_str().unwrap(), key.to_str().unwrap());
    to.ok(&[
        "backup",
        "restore",
        out,
        "--tenant",
        id,
        "--root-key-file",
        key,
    ]);
}

fn archive(env: &Env, name: &str) -> PathBuf {
    env.tmp.path().join(name)
}

#[test]
fn an_online_backup_restores_onto_a_fresh_machine_and_chains_continue() {
    let env = Env::init();
    let a = env.create_tenant("Alpha Freight");
    let b = env.create_tenant("Bravo Clinic");
    let server = Server::start(&env, &[]);
    let out = archive(&env, "full.srb");
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    assert!(server.terminate().success());

    let bytes = std::fs::read(&out).unwrap();
    for clear in [
        "Alpha Freight",
        "Bravo Clinic",
        "tenant.create",
        "SQLite format 3",
    ] {
        assert!(
            !contains(&bytes, clear.as_bytes()),
            "{clear} in clear in the archive"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", "verify", out.to_str().unwrap(), "--json"]))
            .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    // Unpacked where the operator says, and cleaned up after; a missing folder is named.
    let stage = env.tmp.path().join("stage");
    std::fs::create_dir(&stage).unwrap();
    let path = out.to_str().unwrap();
    let stage_arg = stage.to_str().unwrap();
    env.ok(&["backup", "verify", path, "--staging-dir", stage_arg]);
    assert_eq!(std::fs::read_dir(&stage).unwrap().count(), 0);
    let missing = env.tmp.path().join("nowhere");
    let text = env.fails(&[
        "backup",
        "verify",
        path,
        "--staging-dir",
        missing.to_str().unwrap(),
    ]);
    assert!(
        text.contains("nowhere") && text.contains("does not exist"),
        "{text}"
    );

    let before_a = journal(&env, &a);
    let target = fresh();
    let key = env.dir.join("root.key");
    target.ok(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--root-key-file",
        key.to_str().unwrap(),
    ]);
    let list: serde_json::Value =
        serde_json::from_str(&target.ok(&["tenant", "list", "--json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Alpha Freight", "Bravo Clinic"]);
    let after_a = journal(&target, &a);
    assert_eq!(
        &after_a[..before_a.len()],
        &before_a[..],
        "history survives byte for byte"
    );
    let last = after_a.last().unwrap();
    assert_eq!(last["action"], "backup.restore");
    assert_eq!(
        last["seq"],
        before_a.len() as u64 + 1,
        "the chain continues where it was"
    );
    assert_eq!(last["prev_hash"], before_a.last().unwrap()["hash"]);
    target.ok(&["audit", "verify"]);
    assert_eq!(
        journal(&target, &b).last().unwrap()["action"],
        "backup.restore"
    );
    let system = target.ok(&["audit", "export", "--system"]);
    assert!(system.lines().last().unwrap().contains("backup.restore"));
    assert!(env
        .ok(&["audit", "export", "--system"])
        .contains("backup.create"));
}

fn private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_passphrase_archive_restores_with_the_passphrase_alone() {
    let env = Env::init();
    let id = env.create_tenant("Passphrase Co");
    let pw = env.tmp.path().join("pw");
    std::fs::write(&pw, PASS).unwrap();
    let out = archive(&env, "pw.srb");
    // Readable by others, the passphrase (and so the root key it seals) is refused.
    let open = env.fails(&[
        "backup",
        "create",
        "--out",
        out.to_str().unwrap(),
        "--passphrase-file",
        pw.to_str().unwrap(),
    ]);
    assert!(
        open.contains("chmod 600") && !open.contains(PASS.trim()),
        "{open}"
    );
    assert!(!out.exists());
    private(&pw);
    env.ok(&[
        "backup",
        "create",
        "--out",
        out.to_str().unwrap(),
        "--passphrase-file",
        pw.to_str().unwrap(),
    ]);

    let target = fresh();
    let wrong = target.tmp.path().join("wrong");
    std::fs::write(&wrong, "incorrect horse battery staple\n").unwrap();
    private(&wrong);
    let text = target.fails(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(text.contains("wrong key or passphrase"), "{text}");
    assert!(!target.dir.exists(), "a failed restore touches nothing");
    let short = target.tmp.path().join("short");
    std::fs::write(&short, "hunter2\n").unwrap();
    private(&short);
    assert!(target
        .fails(&[
            "backup",
            "create",
            "--out",
            "/nonexistent/x.srb",
            "--passphrase-file",
            short.to_str().unwrap()
        ])
        .contains("too short"));

    let needs = target.fails(&["backup", "verify", out.to_str().unwrap()]);
    assert!(
        needs.contains("passphrase") || needs.contains("no root key"),
        "{needs}"
    );
    target.ok(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--passphrase-file",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(target.dir.join("root.key")).unwrap(),
        std::fs::read_to_string(env.dir.join("root.key")).unwrap(),
        "the archive carried the root key"
    );
    assert!(target.ok(&["tenant", "list"]).contains("Passphrase Co"));
    target.ok(&["audit", "verify", "--tenant", &id]);
}

fn bad_archive(mutate: impl FnOnce(&mut Vec<u8>), expect: &str) {
    let env = Env::init();
    env.create_tenant("Fragile");
    let out = archive(&env, "a.srb");
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    let mut bytes = std::fs::read(&out).unwrap();
    mutate(&mut bytes);
    std::fs::write(&out, &bytes).unwrap();
    let text = env.fails(&["backup", "verify", out.to_str().unwrap()]);
    assert!(text.contains(expect), "verify: {text}");
    let target = fresh();
    let key = env.dir.join("root.key");
    let text = target.fails(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--root-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(text.contains(expect), "restore: {text}");
    assert!(!target.dir.exists(), "a failed restore touches nothing");
    let leftovers: Vec<_> = std::fs::read_dir(target.tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "staging was cleaned up");
}

#[test]
fn a_truncated_archive_is_refused() {
    bad_archive(|b| b.truncate(b.len() - 20), "truncated");
}

#[test]
fn a_flipped_byte_is_refused() {
    bad_archive(
        |b| {
            let i = b.len() / 2;
            b[i] ^= 0x04;
        },
        "fails authentication",
    );
}

#[test]
fn an_archive_from_a_newer_version_is_refused() {
    bad_archive(
        |b| {
            let text = String::from_utf8_lossy(&b[12..40]).replace("\"format\":1", "\"format\":7");
            b[12..12 + text.len()].copy_from_slice(text.as_bytes());
        },
        "upgrade strongroom",
    );
}

#[test]
fn something_that_is_not_an_archive_is_refused() {
    bad_archive(
        |b| b[..8].copy_from_slice(b"PK\x03\x04abcd"),
        "not a Strongroom backup",
    );
}

#[test]
fn restore_refuses_live_data_unless_forced_and_keeps_it_aside() {
    let env = Env::init();
    env.create_tenant("Original");
    let out = archive(&env, "a.srb");
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    env.create_tenant("Created Later");
    let text = env.fails(&["backup", "restore", out.to_str().unwrap()]);
    assert!(text.contains("--force"), "{text}");
    assert!(
        env.ok(&["tenant", "list"]).contains("Created Later"),
        "nothing changed"
    );

    let server = Server::start(&env, &[]);
    let text = env.fails(&["backup", "restore", out.to_str().unwrap(), "--force"]);
    assert!(text.contains("stop them first"), "{text}");
    assert!(server.terminate().success());

    env.ok(&["backup", "restore", out.to_str().unwrap(), "--force"]);
    let list = env.ok(&["tenant", "list"]);
    assert!(
        list.contains("Original") && !list.contains("Created Later"),
        "{list}"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(&env.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pre-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(
        Path::new(&aside[0]).join("system.db").exists(),
        "the old data is kept, not deleted"
    );
    env.ok(&["audit", "verify"]);
}

#[test]
fn a_single_tenant_backup_and_another_root_key_are_handled() {
    let env = Env::init();
    let a = env.create_tenant("Only Me");
    env.create_tenant("Not Me");
    let out = single_tenant_archive(&env, &a);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", "verify", out.to_str().unwrap(), "--json"]))
            .unwrap();
    assert_eq!(
        v["files"].as_array().unwrap().len(),
        2,
        "system.db and the one tenant"
    );
    let again = env.fails(&["backup", "create", "--out", out.to_str().unwrap()]);
    assert!(again.contains("exists"), "{again}");

    let other = Env::init();
    let text = other.fails(&["backup", "verify", out.to_str().unwrap()]);
    assert!(text.contains("sealed under root key"), "{text}");
}

#[test]
fn a_single_tenant_archive_does_not_pose_as_a_whole_installation() {
    let env = Env::init();
    let a = env.create_tenant("Solo");
    env.create_tenant("Other");
    let out = single_tenant_archive(&env, &a);
    let target = fresh();
    let key = env.dir.join("root.key");
    let text = target.fails(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--root-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(text.contains("single tenant"), "{text}");
    assert!(!target.dir.exists());
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let env = Env::init();
    env.create_tenant("Quiet");
    let out = archive(&env, "q.srb");
    let o = env.run(&["backup", "create", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = env.run(&["backup", "verify", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn one_tenant_restores_into_a_live_installation() {
    let env = Env::init();
    let a = env.create_tenant("Rewound");
    let b = env.create_tenant("Bystander");
    let out = archive(&env, "a.srb");
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    let at_backup = journal(&env, &a);
    // Tenant A moves on after the backup; B changes too.
    env.ok(&["keys", "rotate-tenant", &a]);
    env.ok(&["keys", "rotate-tenant", &b]);
    let b_before = journal(&env, &b);

    let text = env.fails(&["backup", "restore", out.to_str().unwrap(), "--tenant", &a]);
    assert!(text.contains("--force"), "{text}");
    env.ok(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--tenant",
        &a,
        "--force",
    ]);
    let after = journal(&env, &a);
    assert_eq!(
        &after[..at_backup.len()],
        &at_backup[..],
        "back to the backup's history"
    );
    assert_eq!(after.len(), at_backup.len() + 1);
    assert_eq!(after.last().unwrap()["action"], "backup.restore");
    assert_eq!(journal(&env, &b), b_before, "the other tenant is untouched");
    env.ok(&["audit", "verify"]);
    let actions = env.system_actions();
    assert_eq!(
        actions[actions.len() - 2..],
        ["backup.restore", "keys.destroy_tenant_keys"]
    );

    // A deleted tenant comes back the same way, without --force.
    env.ok(&["tenant", "delete", &b, "--yes"]);
    env.ok(&["backup", "restore", out.to_str().unwrap(), "--tenant", &b]);
    assert!(env.ok(&["tenant", "list"]).contains("Bystander"));
    env.ok(&["audit", "verify"]);

    // Into another installation with another root key: re-wrapped under that one.
    let other = Env::init();
    restore_tenant_elsewhere(&env, &out, &a, &other);
    assert!(other.ok(&["tenant", "list"]).contains("Rewound"));
    other.ok(&["audit", "verify"]);
    // The archive's checkpoint key vouches for the restored journal only, not for the
    // installation's own journals.
    let native = other.create_tenant("Native");
    let app = other.app();
    let trusted = |journal: &str| {
        app.system()
            .read(|c| {
                strongroom::store::system::signing_keys(c, journal)
                    .map_err(|e| app.system().err(&e))
            })
            .unwrap()
            .len()
    };
    assert_eq!(trusted(&a), 1);
    assert_eq!(trusted(&native), 0);
    assert_eq!(trusted("system"), 0);
    drop(app);
    let missing = "0123456789abcdef0123456789abcdef";
    let key = env.dir.join("root.key");
    let text = other.fails(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--tenant",
        missing,
        "--root-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(text.contains("does not hold tenant"), "{text}");
}

#[test]
fn a_restore_that_would_not_open_is_refused_before_anything_moves() {
    let env = Env::init();
    env.create_tenant("Keyed");
    let out = archive(&env, "a.srb");
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    // A target whose configured root key is another one: restoring would seal the data
    // away from the key the installation opens with.
    let target = Env::init();
    target.create_tenant("Stays");
    let key = env.dir.join("root.key");
    let text = target.fails(&[
        "backup",
        "restore",
        out.to_str().unwrap(),
        "--force",
        "--root-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(
        text.contains("is not the archive's") && text.contains("nothing was restored"),
        "{text}"
    );
    assert!(
        target.ok(&["tenant", "list"]).contains("Stays"),
        "the live data did not move"
    );

    // One tenant's archive cannot carry the root key of all of them.
    let pw = env.tmp.path().join("pw");
    std::fs::write(&pw, PASS).unwrap();
    private(&pw);
    let id = env.create_tenant("Solo");
    let text = env.fails(&[
        "backup",
        "create",
        "--out",
        archive(&env, "solo.srb").to_str().unwrap(),
        "--tenant",
        &id,
        "--passphrase-file",
        pw.to_str().unwrap(),
    ]);
    assert!(
        text.contains("cannot be sealed with a passphrase"),
        "{text}"
    );
}

#[test]
fn a_tenant_restore_killed_at_any_step_leaves_the_old_or_the_restored_tenant() {
    // Restoring from this installation's own archive, with no key rotation since: the staged
    // copy opens under the tenant's current key whether or not the restore committed.
    for step in [21, 22] {
        let env = Env::init();
        let a = env.create_tenant("Restored");
        let out = archive(&env, "a.srb");
        env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
        let at_backup = journal(&env, &a);
        env.ok(&[
            "bench",
            "append-loop",
            "--tenant",
            &a,
            "--threads",
            "1",
            "--max",
            "5",
        ]);
        let live = journal(&env, &a);
        assert!(live.len() > at_backup.len());

        let path = out.to_str().unwrap();
        env.kill_at(
            &["backup", "restore", path, "--tenant", &a, "--force"],
            step,
        );
        env.ok(&["audit", "verify"]);
        // The server writes what the tenant's journal is still owed as it starts.
        assert!(Server::start(&env, &[]).terminate().success());
        let now = journal(&env, &a);
        if step == 21 {
            assert_eq!(
                now, live,
                "step {step}: not committed, the live tenant stays"
            );
        } else {
            assert_eq!(
                &now[..at_backup.len()],
                &at_backup[..],
                "step {step}: committed, the archive's tenant is in place"
            );
            // ... and its journal records the restore, though the process died first.
            assert_eq!(now.len(), at_backup.len() + 1);
            assert_eq!(now.last().unwrap()["action"], "backup.restore");
            assert_eq!(env.system_actions().last().unwrap(), "backup.restore");
        }
        // Verify and export only read; the server settles what a crash left as it starts.
        assert!(crate::support::Server::start(&env, &[])
            .terminate()
            .success());
        assert_eq!(crate::keys::staged_files(&env), Vec::<String>::new());
        // The next restore goes through.
        env.ok(&["backup", "restore", path, "--tenant", &a, "--force"]);
        env.ok(&["audit", "verify"]);
    }
}

fn pre_restore_dirs(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(&env.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pre-restore-")
        })
        .collect()
}

#[test]
fn a_whole_restore_killed_midway_leaves_a_directory_nothing_opens_until_it_is_rerun() {
    let env = Env::init();
    env.create_tenant("Archived");
    let out = archive(&env, "all.srb");
    let path = out.to_str().unwrap();
    env.ok(&["backup", "create", "--out", path]);
    env.create_tenant("Newer");

    // Killed after the live data moved aside and before the archive's took its place.
    env.kill_at(&["backup", "restore", path, "--force"], 31);
    for args in [
        vec!["tenant", "list"],
        vec!["init"],
        vec!["serve", "--init", "--listen", "127.0.0.1:0"],
    ] {
        let text = env.fails(&args);
        assert!(
            text.contains("restore into") && text.contains("interrupted"),
            "{args:?}: {text}"
        );
        assert!(text.contains("pre-restore-"), "{args:?}: {text}");
    }
    assert!(
        !env.dir.join("system.db").exists(),
        "nothing initialized a fresh installation in its place"
    );
    let first = pre_restore_dirs(&env);
    assert_eq!(first.len(), 1);
    assert!(first[0].join("system.db").exists(), "the live data is kept");

    // Run again, and killed once more, after the archive's files are in place: the
    // directory now holds system.db, and is still closed.
    env.kill_at(&["backup", "restore", path, "--force"], 33);
    assert!(env.dir.join("system.db").exists());
    assert!(env.fails(&["tenant", "list"]).contains("interrupted"));
    // A run that fails puts back what it found, the marker included.
    let failed = env
        .command(&["backup", "restore", path])
        .env("SR_FAULT_FAIL_STEP", "32")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let text = env.fails(&["tenant", "list"]);
    assert!(text.contains("interrupted"), "{text}");
    assert!(
        text.contains(first[0].file_name().unwrap().to_str().unwrap()),
        "the first run's folder is still named: {text}"
    );

    // Running it again completes it; a half-restored directory needs no --force.
    env.ok(&["backup", "restore", path]);
    let list = env.ok(&["tenant", "list"]);
    assert!(
        list.contains("Archived") && !list.contains("Newer"),
        "{list}"
    );
    env.ok(&["audit", "verify"]);
    assert!(!env.dir.join("restore.pending").exists());
    assert!(first[0].join("system.db").exists());
}

#[test]
fn a_whole_restore_that_fails_midway_puts_the_live_data_back() {
    let env = Env::init();
    env.create_tenant("Archived");
    let out = archive(&env, "all.srb");
    let path = out.to_str().unwrap();
    env.ok(&["backup", "create", "--out", path]);
    env.create_tenant("Newer");
    let before = env.ok(&["audit", "export", "--system"]);

    // Fails after the archive's files are in place, before the restore is journaled.
    let failed = env
        .command(&["backup", "restore", path, "--force"])
        .env("SR_FAULT_FAIL_STEP", "32")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let text = crate::support::stderr(&failed);
    assert!(text.contains("cannot journal the restore"), "{text}");

    let list = env.ok(&["tenant", "list"]);
    assert!(
        list.contains("Archived") && list.contains("Newer"),
        "{list}"
    );
    assert_eq!(env.ok(&["audit", "export", "--system"]), before);
    env.ok(&["audit", "verify"]);
    assert!(!env.dir.join("restore.pending").exists());
    assert_eq!(pre_restore_dirs(&env), Vec::<PathBuf>::new());

    // Fails later, once the restored installation has recorded itself and its heads went
    // to the witness: the witness is put back with the live data, which opens and verifies.
    let witness = std::fs::read(env.dir.join("witness.ndjson")).unwrap();
    let failed = env
        .command(&["backup", "restore", path, "--force"])
        .env("SR_FAULT_FAIL_STEP", "34")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert_eq!(
        std::fs::read(env.dir.join("witness.ndjson")).unwrap(),
        witness
    );
    let list = env.ok(&["tenant", "list"]);
    assert!(list.contains("Newer"), "{list}");
    env.ok(&["audit", "verify", "--all"]);
    assert_eq!(env.ok(&["audit", "export", "--system"]), before);
}

#[test]
fn a_restore_marker_that_cannot_be_read_still_closes_the_directory() {
    let env = Env::init();
    // Unreadable as a file (here: a directory in its place; in life, root's file read by
    // the service user).
    std::fs::create_dir(env.dir.join("restore.pending")).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(text.contains("interrupted"), "{text}");
    std::fs::remove_dir(env.dir.join("restore.pending")).unwrap();
    env.ok(&["tenant", "list"]);
}

#[test]
fn what_a_tenant_journal_is_owed_travels_with_its_backup() {
    let env = Env::init();
    let a = env.create_tenant("Travels");
    // A rotation that committed, then died before writing to the tenant's own journal.
    env.kill_at(&["keys", "rotate-tenant", &a], 14);
    let out = single_tenant_archive(&env, &a);
    assert!(
        !journal(&env, &a)
            .iter()
            .any(|e| e["action"] == "keys.rotate_tenant"),
        "still owed when the archive was made"
    );

    let other = Env::init();
    restore_tenant_elsewhere(&env, &out, &a, &other);
    let restored = journal(&other, &a);
    let actions: Vec<&str> = restored
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[actions.len() - 2..],
        ["keys.rotate_tenant", "backup.restore"],
        "{actions:?}"
    );
    let rotation = &restored[restored.len() - 2];
    assert_eq!(rotation["params"]["new_version"], 2);
    assert!(rotation["params"]["op_id"].is_string());
    assert!(rotation["params"]["queued_us"].as_i64().unwrap() > 0);
    other.ok(&["audit", "verify"]);
}

#[test]
fn a_backup_that_never_reached_its_place_is_not_journaled() {
    let env = Env::init();
    env.create_tenant("Unplaced");
    let out = archive(&env, "never.srbk");
    let failed = env
        .command(&["backup", "create", "--out", out.to_str().unwrap()])
        .env("SR_FAULT_FAIL_STEP", "41")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(!out.exists(), "no archive");
    let leftovers: Vec<_> = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("never"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        !env.system_actions().iter().any(|a| a == "backup.create"),
        "a backup that does not exist is on the record"
    );
    // The same command without the fault places the archive and records it.
    env.ok(&["backup", "create", "--out", out.to_str().unwrap()]);
    assert!(out.exists());
    assert_eq!(env.system_actions().last().unwrap(), "backup.create");
}

/// A FIFO or a directory where a file is expected is named at once: nothing waits for a
/// writer that never comes.
#[test]
fn key_passphrase_and_archive_arguments_must_be_regular_files() {
    let env = Env::init();
    let fifo = env.tmp.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let dir = env.tmp.path().join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let (f, d) = (fifo.to_str().unwrap(), dir.to_str().unwrap());
    let out = archive(&env, "x.srbk");
    let o = out.to_str().unwrap();
    for args in [
        vec!["backup", "verify", f],
        vec!["backup", "verify", d],
        vec!["backup", "create", "--out", o, "--passphrase-file", f],
        vec!["backup", "verify", f, "--root-key-file", f],
        vec!["backup", "verify", f, "--passphrase-file", d],
    ] {
        let mut child = env
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?} blocked");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let text = crate::support::stderr(&output);
        assert!(text.contains("not a regular file"), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    assert!(!out.exists());
    // The installation's own root key, configured to be a FIFO: every command says so.
    std::fs::write(&env.config, format!("[keys]\nroot_key_file = {f:?}\n")).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(text.contains("a FIFO, not a regular file"), "{text}");
    std::fs::write(&env.config, format!("[keys]\nroot_key_file = {d:?}\n")).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(
        text.contains("a directory, not a regular file") && !text.contains("chmod"),
        "{text}"
    );
    // The TLS key too: serve names it instead of waiting on the FIFO forever.
    let cert = env.dir.join("tls/cert.pem");
    std::fs::write(
        &env.config,
        format!("[server]\ntls_cert = {cert:?}\ntls_key = {f:?}\n"),
    )
    .unwrap();
    let text = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(text.contains("a FIFO, not a regular file"), "{text}");
}
