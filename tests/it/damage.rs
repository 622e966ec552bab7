//! What an outside attack did to an installation's files and arguments, and how each is
//! refused clearly without making things worse.

use crate::support::{is_root, Env, Server};
use std::io::Read;

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// An emptied, cut or lost `system.db` is never silently recreated: every command refuses
/// it and names `backup restore`; the file is left as it was found.
#[test]
fn an_emptied_truncated_or_missing_system_db_is_refused_by_every_command() {
    let env = Env::init();
    env.create_tenant("Acme");
    let sys = env.dir.join("system.db");
    let archive = env.tmp.path().join("after.srbk");
    let a = archive.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["audit", "verify", "--all"],
        vec!["doctor"],
        vec!["tenant", "list"],
        vec!["tenant", "create", "Newco"],
        vec!["backup", "create", "--out", a],
        vec!["keys", "status"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ];
    let original = std::fs::read(&sys).unwrap();
    for (damage, expect) in [("empty", "is empty"), ("truncated", "is truncated")] {
        let cut = if damage == "empty" { 0 } else { 5000 };
        std::fs::write(&sys, &original[..cut]).unwrap();
        for args in &commands {
            let text = env.fails(args);
            assert!(
                text.contains(expect) && text.contains("backup restore"),
                "{damage} {args:?}: {text}"
            );
            assert_eq!(size(&sys), cut as u64, "{args:?} changed system.db");
        }
        assert!(!archive.exists());
    }
    // Emptied after a crash that left a WAL behind: SQLite would take the empty main file
    // for a new database and drop the WAL.
    std::fs::write(&sys, b"").unwrap();
    std::fs::write(env.dir.join("system.db-wal"), vec![7u8; 8192]).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(text.contains("is empty"), "{text}");
    assert_eq!(size(&sys), 0);
    std::fs::remove_file(env.dir.join("system.db-wal")).unwrap();
    std::fs::remove_file(&sys).unwrap();
    for args in commands.iter().chain([&vec!["init"]]) {
        let text = env.fails(args);
        assert!(
            text.contains("system.db is missing") && text.contains("backup restore"),
            "{args:?}: {text}"
        );
        assert!(!sys.exists(), "{args:?} recreated system.db");
    }
    let text = env.fails(&["serve", "--init", "--listen", "127.0.0.1:0"]);
    assert!(text.contains("system.db is missing"), "{text}");
    assert!(!sys.exists());
    // Put back, everything works again.
    std::fs::write(&sys, &original).unwrap();
    env.ok(&["audit", "verify", "--all"]);
}

/// A 0-byte tenant file is reported as empty by verify and doctor, and is not grown.
#[test]
fn an_emptied_tenant_file_is_named_and_left_alone() {
    let env = Env::init();
    let id = env.create_tenant("Hollow");
    let file = env.dir.join(format!("tenants/{id}.db"));
    std::fs::write(&file, b"").unwrap();
    let text = env.fails(&["audit", "verify", "--tenant", &id]);
    assert!(text.contains("is empty"), "{text}");
    let text = env.fails(&["audit", "verify", "--all"]);
    assert!(text.contains("is empty"), "{text}");
    let text = env.fails(&["doctor"]);
    assert!(text.contains("is empty"), "{text}");
    let text = env.fails(&["audit", "export", "--tenant", &id]);
    assert!(text.contains("is empty"), "{text}");
    assert_eq!(size(&file), 0, "the empty file was grown");
    for side in ["-wal", "-shm"] {
        assert!(
            !env.dir.join(format!("tenants/{id}.db{side}")).exists(),
            "{side}"
        );
    }
}

/// `--data-dir` naming a file, an unreadable directory or an absurdly long path: each is
/// named as what it is, never as an interrupted restore.
#[test]
fn a_bad_data_dir_is_named_for_what_it_is() {
    let env = Env::init();
    let file = env.tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let long = format!("/tmp/{}", "d".repeat(5000));
    let mut cases = vec![
        (file.to_str().unwrap().to_string(), "is not a directory"),
        (format!("{}/below", file.display()), "not a directory"),
        (long, "too long"),
    ];
    let locked = env.tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        cases.push((locked.to_str().unwrap().to_string(), "permission denied"));
    }
    for (dir, expect) in cases {
        for args in [vec!["tenant", "list"], vec!["init"], vec!["doctor"]] {
            let mut full = args.clone();
            full.extend(["--data-dir", dir.as_str()]);
            let text = env.fails(&full);
            assert!(
                text.contains(expect)
                    && !text.contains("interrupted")
                    && !text.contains("APP-0007"),
                "{args:?} on {}: {text}",
                &dir[..dir.len().min(60)]
            );
            assert!(text.len() < 2000, "the message echoes the whole path");
        }
    }
}

/// Log lines on a stderr that is not a terminal carry no colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let env = Env::init();
    let mut server = Server::start(&env, &[]);
    let mut stderr = server.child.stderr.take().unwrap();
    assert!(server.terminate().success());
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("INFO") || text.contains("WARN"),
        "no log lines: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in piped logs: {text:?}"
    );
}

fn tenant_files(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.dir.join("tenants"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A tenant create killed between its file and its registry row leaves files no tenant owns:
/// doctor lists every one of them, and `doctor --fix` or the next create removes them.
#[test]
fn files_of_a_killed_create_are_listed_and_removed() {
    let env = Env::init();
    let a = env.create_tenant("Alpha");
    env.kill_at(&["tenant", "create", "Killed"], 51);
    let files = tenant_files(&env);
    let orphans: Vec<&String> = files.iter().filter(|f| !f.starts_with(&a)).collect();
    assert!(
        !orphans.is_empty(),
        "the killed create left nothing: {files:?}"
    );
    let doctor = crate::support::stdout(&env.run(&["doctor", "--json"]));
    for f in &orphans {
        assert!(
            doctor.contains(f.as_str()),
            "doctor does not list {f}: {doctor}"
        );
    }
    assert!(
        env.ok(&["tenant", "list"]).lines().count() == 2,
        "one tenant and the header"
    );
    env.ok(&["doctor", "--fix"]);
    assert!(
        tenant_files(&env).iter().all(|f| f.starts_with(&a)),
        "{:?}",
        tenant_files(&env)
    );
    // Again, and this time the next create cleans up.
    env.kill_at(&["tenant", "create", "Killed again"], 51);
    let b = env.create_tenant("Bravo");
    assert!(
        tenant_files(&env)
            .iter()
            .all(|f| f.starts_with(&a) || f.starts_with(&b)),
        "{:?}",
        tenant_files(&env)
    );
    env.ok(&["audit", "verify", "--all"]);
}

/// A full disk is named as such by create and rotate-tenant, and neither leaves files behind.
#[test]
fn a_full_disk_is_named_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let at = tmp.path().join("small");
    std::fs::create_dir(&at).unwrap();
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root");
        eprintln!("not root: full-disk test skipped");
        return;
    }
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&at)
        .status()
        .unwrap()
        .success();
    assert!(mounted);
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(at.clone());
    let mut env = Env::new();
    env.dir = at.join("data");
    env.ok(&["init"]);
    let a = env.create_tenant("Alpha");
    let before = tenant_files(&env);
    let filler = at.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    for args in [
        vec!["tenant", "create", "Bravo"],
        vec!["keys", "rotate-tenant", &a],
    ] {
        let text = env.fails(&args);
        assert!(
            text.contains("disk full") && !text.contains("disk I/O error"),
            "{args:?}: {text}"
        );
        // No file of a tenant that does not exist, and no staged copy; a live tenant's own
        // -wal/-shm are SQLite's, not leftovers.
        let now: Vec<String> = tenant_files(&env)
            .into_iter()
            .filter(|f| !(f.starts_with(&a) && (f.ends_with("-wal") || f.ends_with("-shm"))))
            .collect();
        assert_eq!(now, before, "{args:?} left files");
    }
    std::fs::remove_file(&filler).unwrap();
    env.ok(&["audit", "verify", "--all"]);
    env.create_tenant("Bravo");
    env.ok(&["keys", "rotate-tenant", &a]);
}
