//! The operator CLI end to end: init, tenants, configuration, and every kind of bad input.

use crate::support::{stderr, stdout, Env};
use std::os::unix::fs::PermissionsExt;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_locked_down_data_directory_once() {
    let env = Env::init();
    assert_eq!(mode(&env.dir), 0o700);
    assert_eq!(mode(&env.dir.join("root.key")), 0o600);
    assert_eq!(mode(&env.dir.join("system.db")), 0o600);
    assert_eq!(mode(&env.dir.join("system.key")), 0o600);
    assert_eq!(mode(&env.dir.join("tls/key.pem")), 0o600);
    assert!(env.cert().exists());
    let key = std::fs::read_to_string(env.dir.join("root.key")).unwrap();
    assert_eq!(key.trim().len(), 64);

    let again = env.fails(&["init"]);
    assert!(again.contains("already initialized"), "{again}");
    assert_eq!(
        std::fs::read_to_string(env.dir.join("root.key")).unwrap(),
        key
    );

    let out = env.ok(&["audit", "verify", "--system", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    // system.init and the platform owner's user.create.
    assert_eq!(v["files"][0]["chain"]["entries"], 2);

    // An installer's init makes no account, so no one-time password reaches its logs.
    let quiet = Env::new();
    let out = quiet.run(&["init", "--no-owner"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!said.contains("one-time password"), "{said}");
    let accounts = quiet.ok(&["user", "list", "--platform", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&accounts).unwrap(),
        serde_json::json!([]),
        "{accounts}"
    );
    let owner = quiet.ok(&[
        "user",
        "create",
        "--platform",
        "--email",
        "ops@example.org",
        "--role",
        "owner",
    ]);
    assert!(!owner.trim().is_empty());
}

#[test]
fn tenant_lifecycle_is_journaled() {
    let env = Env::init();
    let out = env.ok(&[
        "tenant",
        "create",
        "Acme Logistics",
        "--region",
        "eu-central",
    ]);
    assert_eq!(out.lines().count(), 1, "only the id on stdout: {out:?}");
    let id = out.trim().to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "list", "--json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "Acme Logistics");
    assert_eq!(list[0]["region"], "eu-central");
    assert_eq!(list[0]["status"], "active");

    let dup = env.fails(&["tenant", "create", "Acme Logistics"]);
    assert!(dup.contains("already exists"), "{dup}");

    env.ok(&["tenant", "suspend", &id]);
    let again = env.fails(&["tenant", "suspend", &id]);
    assert!(again.contains("already suspended"), "{again}");
    env.ok(&["tenant", "resume", &id]);
    // Nobody at a terminal to confirm: refused unless the command says --yes itself.
    let unasked = env.fails(&["tenant", "delete", &id]);
    assert!(
        unasked.contains("--yes") && unasked.contains("not deleted"),
        "{unasked}"
    );
    assert!(env.dir.join(format!("tenants/{id}.db")).exists());
    env.ok(&["tenant", "delete", &id, "--yes"]);
    assert!(!env.dir.join(format!("tenants/{id}.db")).exists());
    let gone = env.fails(&["tenant", "delete", &id, "--yes"]);
    assert!(gone.contains("no tenant"), "{gone}");
    assert!(
        !env.dir.join(format!("tenants/{id}.lock")).exists(),
        "a refused second delete leaves nothing behind"
    );
    assert_eq!(env.ok(&["tenant", "list", "--json"]).trim(), "[]");
    assert!(env.ok(&["tenant", "list", "--all"]).contains("deleted"));

    // The name is free again after deletion; the old id stays dead.
    env.create_tenant("Acme Logistics");

    let export = env.ok(&["audit", "export", "--system"]);
    let actions = env.system_actions();
    assert_eq!(
        actions,
        [
            "system.init",
            "user.create",
            "tenant.create",
            "tenant.suspend",
            "tenant.resume",
            "tenant.delete",
            "tenant.create"
        ]
    );
    let delete: serde_json::Value = serde_json::from_str(export.lines().nth(5).unwrap()).unwrap();
    assert_eq!(delete["target"], id.as_str());
    assert_eq!(delete["actor"]["kind"], "cli");
    assert_eq!(delete["params"]["key_versions_destroyed"], 1);
    env.ok(&["audit", "verify"]);
}

#[test]
fn deleting_a_tenant_destroys_its_key() {
    let env = Env::init();
    let id = env.create_tenant("Shredded");
    let file = env.dir.join(format!("tenants/{id}.db"));
    let saved = std::fs::read(&file).unwrap();
    env.ok(&["tenant", "delete", &id, "--yes"]);
    // Even with the file put back, nothing can open it: the wrapped key is gone.
    std::fs::write(&file, saved).unwrap();
    let app = env.app();
    let tid = strongroom::tenants::TenantId::parse(&id).unwrap();
    let err = strongroom::tenants::open_store(&app, &tid).err().unwrap();
    assert!(
        matches!(err, strongroom::tenants::TenantError::NotFound(_)),
        "{err}"
    );
    let keys: i64 = app
        .system()
        .read(|c| {
            c.query_row(
                "SELECT count(*) FROM tenant_keys WHERE tenant_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .map_err(|e| app.system().err(&e))
        })
        .unwrap();
    assert_eq!(keys, 0);
    app.close();
}

#[test]
fn export_formats_and_since() {
    let env = Env::init();
    let id = env.create_tenant("Exporter");
    env.create_tenant("Other");
    let all = env.ok(&["audit", "export", "--system", "--format", "ndjson"]);
    assert_eq!(all.lines().count(), 4);
    let since = env.ok(&["audit", "export", "--system", "--since", "2"]);
    assert_eq!(since.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(since.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 2);
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    // Past the end: nothing. Past what a sequence number can be: a clear error, not the
    // whole journal from seq 1.
    assert_eq!(
        env.ok(&[
            "audit",
            "export",
            "--system",
            "--since",
            "9223372036854775807"
        ]),
        ""
    );
    for bad in [
        "9223372036854775808",
        "18446744073709551615",
        "0",
        "-3",
        "x",
    ] {
        let text = env.fails(&["audit", "export", "--system", &format!("--since={bad}")]);
        assert!(text.contains("--since"), "{bad}: {text}");
    }
    let csv = env.ok(&["audit", "export", "--tenant", &id, "--format", "csv"]);
    let mut lines = csv.lines();
    // Every cell quoted, so no spreadsheet splits one into a formula.
    assert!(lines
        .next()
        .unwrap()
        .starts_with(r#""journal","seq","format","time""#));
    assert!(lines
        .next()
        .unwrap()
        .starts_with(&format!(r#""{id}","1","1","#)));
    let cps = env.ok(&["audit", "checkpoints", "--tenant", &id]);
    let cp: serde_json::Value = serde_json::from_str(cps.lines().next().unwrap()).unwrap();
    assert_eq!(cp["seq"], 1);
    assert_eq!(cp["public_key"].as_str().unwrap().len(), 64);
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let env = Env::init();
    let before = env.ok(&["audit", "export", "--system"]);
    for (args, expect) in [
        (vec!["tenant", "create", "   "], "invalid tenant name"),
        (vec!["tenant", "create", "gpj.\u{202E}exe"], "U+202E"),
        (vec!["tenant", "create", "Acme\u{200B}"], "U+200B"),
        (vec!["tenant", "create", "\u{200F}Acme"], "U+200F"),
        (
            vec!["tenant", "create", "x", "--region", "EU Central"],
            "invalid region",
        ),
        (
            vec!["tenant", "suspend", "../../etc/passwd"],
            "invalid tenant id",
        ),
        (
            vec!["tenant", "delete", "0123456789abcdef0123456789abcdef"],
            "no tenant",
        ),
        (
            vec!["audit", "verify", "--tenant", "nope"],
            "invalid tenant id",
        ),
        (
            vec![
                "audit",
                "export",
                "--tenant",
                "0123456789abcdef0123456789abcdef",
            ],
            "no tenant",
        ),
        (
            vec!["audit", "export", "--system", "--format", "xml"],
            "invalid value",
        ),
        (vec!["audit", "export"], "--tenant"),
        (vec!["tenant", "frobnicate"], "unrecognized subcommand"),
    ] {
        let text = env.fails(&args);
        assert!(text.contains(expect), "{args:?}: {text}");
    }
    assert_eq!(
        env.ok(&["audit", "export", "--system"]),
        before,
        "nothing was journaled"
    );
}

#[test]
fn missing_uninitialized_and_wrong_keys_fail_closed() {
    let env = Env::new();
    let text = env.fails(&["tenant", "list"]);
    assert!(
        text.contains("not initialized") && text.contains("strongroom init"),
        "{text}"
    );

    let env = Env::init();
    let key = env.dir.join("root.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(text.contains("chmod 600"), "{text}");
    let text = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(text.contains("chmod 600"), "{text}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let original = std::fs::read(&key).unwrap();
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(
        text.contains("is not one this data directory was sealed with"),
        "{text}"
    );
    assert!(
        !text.contains(&"ab".repeat(32)),
        "the key must not be printed: {text}"
    );

    std::fs::write(&key, "garbage").unwrap();
    assert!(env.fails(&["tenant", "list"]).contains("malformed"));
    std::fs::remove_file(&key).unwrap();
    let text = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(text.contains("no root key"), "{text}");

    // A systemd credential takes the place of the key file.
    let creds = env.tmp.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("root-key"), &original).unwrap();
    let out = env
        .command(&["tenant", "list"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
}

#[test]
fn config_check_names_bad_keys() {
    let env = Env::new();
    std::fs::write(&env.config, "[server]\nlisten = \"127.0.0.1:9443\"\n").unwrap();
    let out = env.ok(&["config", "check"]);
    assert!(out.contains("configuration is valid"), "{out}");
    let shown = env.ok(&["config", "show"]);
    assert!(shown.contains("listen = \"127.0.0.1:9443\""), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["config", "show", "--json"])).unwrap();
    assert_eq!(json["server"]["listen"], "127.0.0.1:9443", "{json}");
    // Every section of the TOML rendering is in the JSON one too.
    let sections = shown.lines().filter(|l| l.starts_with('[')).count();
    let tables = json.as_object().unwrap().values().filter(|v| v.is_object());
    assert_eq!(tables.count(), sections, "{json}\n{shown}");

    std::fs::write(
        &env.config,
        "[server]\nlisten = \"127.0.0.1:9443\"\nport = 1\n",
    )
    .unwrap();
    let text = env.fails(&["config", "check"]);
    assert!(text.contains("port") && text.contains("line 3"), "{text}");

    std::fs::write(&env.config, "[server\n").unwrap();
    assert!(env.fails(&["config", "check"]).contains("config.toml"));

    std::fs::write(&env.config, "").unwrap();
    let out = env
        .command(&["config", "check"])
        .env("STRONGROOM_STORE__MAX_OPEN_TENANTS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(crate::support::stderr(&out).contains("store.max_open_tenants"));
    let out = env
        .command(&["config", "check"])
        .env("STRONGROOM_SERVER__LISTN", "1")
        .output()
        .unwrap();
    assert!(crate::support::stderr(&out).contains("STRONGROOM_SERVER__LISTN"));

    let mut absent = Env::new();
    absent.config = absent.tmp.path().join("absent.toml");
    let text = absent.fails(&["config", "check"]);
    assert!(
        text.contains("absent.toml") && text.contains("cannot be read"),
        "{text}"
    );
}

#[test]
fn deleting_an_open_tenant_stops_its_writer_before_the_file_goes() {
    use strongroom::audit::{Actor, NewEntry};
    let env = Env::init();
    let id = env.create_tenant("Busy");
    let app = env.app();
    let tid = strongroom::tenants::TenantId::parse(&id).unwrap();
    let held = strongroom::tenants::open_store(&app, &tid).unwrap();
    strongroom::tenants::delete(&app, &Actor::cli(), &tid).unwrap();
    // A handle a request still held cannot acknowledge a write into the deleted file.
    let late = held
        .writer()
        .change(|_tx| -> Result<_, strongroom::store::StoreError> {
            Ok(((), NewEntry::new(Actor::system(), "record.late", "x")))
        })
        .wait();
    assert!(late.is_err(), "a write was acknowledged after deletion");
    assert!(strongroom::tenants::open_store(&app, &tid).is_err());
    assert!(!env.dir.join(format!("tenants/{id}.db")).exists());
    assert!(!env.dir.join(format!("tenants/{id}.lock")).exists());
    drop(held);
    app.close();
}

#[test]
fn a_tenant_open_in_another_process_is_not_deleted_under_it() {
    let env = Env::init();
    let id = env.create_tenant("Held");
    let mut child = env
        .command(&[
            "bench",
            "append-loop",
            "--tenant",
            &id,
            "--threads",
            "1",
            "--max",
            "100000000",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the child has the tenant open (its first acknowledged append).
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.trim().parse::<u64>().is_ok(), "{line}");
    let text = env.fails(&["tenant", "delete", &id, "--yes"]);
    assert!(
        text.contains("open in another strongroom process"),
        "{text}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(out);
    env.ok(&["tenant", "delete", &id, "--yes"]);
    assert!(!env.dir.join(format!("tenants/{id}.db")).exists());
}

#[test]
fn files_are_private_whatever_the_inherited_umask() {
    // A shell or container runtime may hand down umask 022; nothing written may follow it.
    let wide = ["sh", "-c", "umask 022; exec \"$0\" \"$@\""];
    let env = Env::new();
    let out = env.command_under(&wide, &["init"]).output().unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let out = env
        .command_under(&wide, &["tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let server = crate::support::Server::start_under(&env, &wide, &[]);
    assert_eq!(server.get("/healthz").status, 200);
    assert!(server.terminate().success());
    let archive = env.tmp.path().join("out.srbk");
    let out = env
        .command_under(
            &wide,
            &["backup", "create", "--out", archive.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));

    let mut files = crate::support::all_files(&env.dir);
    files.push(archive);
    assert!(
        files.iter().any(|p| p.starts_with(env.dir.join("logs"))),
        "the server wrote no log file: {files:?}"
    );
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", f.display());
    }
}

#[test]
fn what_root_creates_in_a_service_owned_data_directory_belongs_to_the_service() {
    use std::os::unix::fs::MetadataExt;
    if !crate::support::is_root() {
        eprintln!("not running as root; skipping");
        return;
    }
    let env = Env::init();
    // As a packaged install has it: the service user owns the data directory.
    let (uid, gid) = (64_123, 64_124);
    for p in crate::support::all_entries(&env.dir)
        .into_iter()
        .chain([env.dir.clone()])
    {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
    }
    // Root administers it directly: new tenant files, a re-keyed file, a new root key.
    let id = env.create_tenant("acme");
    env.ok(&["keys", "rotate-tenant", &id]);
    env.ok(&["keys", "rotate-root"]);
    let all = crate::support::all_entries(&env.dir);
    assert!(all.iter().any(|p| p.ends_with(format!("tenants/{id}.db"))));
    for p in all {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (uid, gid),
            "{} does not belong to the service",
            p.display()
        );
    }
    env.ok(&["audit", "verify"]);

    // A data directory root owns (a fresh restore target, a development install) is left
    // as it is.
    let mine = Env::init();
    mine.create_tenant("acme");
    assert!(crate::support::all_entries(&mine.dir)
        .iter()
        .all(|p| std::fs::symlink_metadata(p).unwrap().uid() == 0));
}
