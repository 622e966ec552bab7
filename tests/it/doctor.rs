//! `strongroom doctor` and `strongroom --version`.

use crate::support::{Env, BIN};
use std::os::unix::fs::PermissionsExt;

fn doctor(env: &Env, args: &[&str]) -> (bool, serde_json::Value) {
    let mut a = vec!["doctor", "--json"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", crate::support::stderr(&out)));
    assert_eq!(
        v["ok"],
        out.status.success(),
        "exit status follows the verdict"
    );
    (out.status.success(), v)
}

fn status<'a>(v: &'a serde_json::Value, name: &str) -> (&'a str, &'a str) {
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {v}"));
    (c["status"].as_str().unwrap(), c["detail"].as_str().unwrap())
}

#[test]
fn a_healthy_installation_passes_every_check() {
    let env = Env::init();
    env.create_tenant("Healthy");
    let (ok, v) = doctor(&env, &[]);
    assert!(ok, "{v}");
    for name in [
        "config",
        "root_key",
        "file_modes",
        "tenants_open",
        "audit_chains",
        "disk_space",
        "certificate",
        "clock",
        "key_age",
        "leftovers",
    ] {
        let (s, _) = status(&v, name);
        assert_ne!(s, "fail", "{name}: {v}");
    }
    assert_eq!(status(&v, "tenants_open").0, "ok");
    assert!(status(&v, "audit_chains").1.contains("2 journals"), "{v}");
    assert!(status(&v, "certificate").1.contains("expires in"), "{v}");
    let text = env.ok(&["doctor"]);
    assert!(
        text.contains("audit_chains") && text.contains("ok"),
        "{text}"
    );
}

#[test]
fn each_kind_of_damage_fails_its_check() {
    let env = Env::init();
    let id = env.create_tenant("Damaged");
    let file = env.dir.join(format!("tenants/{id}.db"));

    // A certificate whose key is another's, or gone, keeps the server from starting: the
    // check fails however far off the expiry is.
    let key = env.dir.join("tls/key.pem");
    let own = std::fs::read(&key).unwrap();
    let other = Env::init();
    std::fs::write(&key, std::fs::read(other.dir.join("tls/key.pem")).unwrap()).unwrap();
    let (ok, v) = doctor(&env, &["--quick"]);
    assert!(!ok);
    let (s, d) = status(&v, "certificate");
    assert_eq!(s, "fail", "{v}");
    assert!(d.contains("does not match"), "{d}");
    std::fs::remove_file(&key).unwrap();
    assert_eq!(
        status(&doctor(&env, &["--quick"]).1, "certificate").0,
        "fail"
    );
    std::fs::write(&key, own).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(status(&doctor(&env, &["--quick"]).1, "certificate").0, "ok");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, v) = doctor(&env, &["--quick"]);
    assert!(!ok);
    let (s, d) = status(&v, "file_modes");
    assert_eq!(s, "fail");
    assert!(
        d.contains(&format!("{id}.db")) && d.contains("chmod"),
        "{d}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::write(env.dir.join("root.key.next"), "x").unwrap();
    std::fs::set_permissions(
        env.dir.join("root.key.next"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (ok, v) = doctor(&env, &["--quick"]);
    assert!(ok, "a leftover is a warning: {v}");
    assert_eq!(status(&v, "leftovers").0, "warn");
    std::fs::remove_file(env.dir.join("root.key.next")).unwrap();

    // Work folders of a killed backup or restore, and the data a restore replaced.
    for name in [".backup-x1", ".restore-x2", "pre-restore-x3"] {
        std::fs::create_dir(env.dir.join(name)).unwrap();
        std::fs::set_permissions(env.dir.join(name), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let (ok, v) = doctor(&env, &["--quick"]);
        assert!(ok, "{v}");
        let (s, d) = status(&v, "leftovers");
        assert_eq!(s, "warn", "{name}: {v}");
        assert!(d.contains(name), "{d}");
        std::fs::remove_dir(env.dir.join(name)).unwrap();
    }
    assert_eq!(status(&doctor(&env, &["--quick"]).1, "leftovers").0, "ok");

    let saved = std::fs::read(&file).unwrap();
    let mut bent = saved.clone();
    let last = bent.len() - 100;
    bent[last] ^= 0x10;
    std::fs::write(&file, &bent).unwrap();
    let (ok, v) = doctor(&env, &[]);
    assert!(!ok);
    // A flipped byte fails SQLCipher's page check: in the journal's pages the chain walk
    // reports it, in another table's pages opening the tenant does.
    let chains = status(&v, "audit_chains").0;
    let (open, detail) = status(&v, "tenants_open");
    assert!(
        chains == "fail" || (open == "fail" && detail.contains("corrupt")),
        "{v}"
    );

    std::fs::remove_file(&file).unwrap();
    let (ok, v) = doctor(&env, &["--quick"]);
    assert!(!ok);
    let (s, d) = status(&v, "tenants_open");
    assert_eq!(s, "fail");
    assert!(d.contains("does not exist"), "{d}");
}

#[test]
fn old_keys_are_flagged_by_policy() {
    let env = Env::init();
    env.create_tenant("Aged");
    let app = crate::support::app_days_later(&env, 400, 90);
    let later = crate::support::now_us() + 400 * 86_400_000_000;
    let keys = strongroom::keys::status(&app).unwrap();
    assert!(keys.iter().all(|k| k.too_old), "{keys:?}");
    assert!(keys.iter().all(|k| k.age_days >= Some(399)), "{keys:?}");
    app.close();
    let mut cfg = strongroom::config::Config::default();
    cfg.keys.max_age_days = Some(90);
    let ev = strongroom::audit::evidence::Evidence::open(&cfg, &env.dir).unwrap();
    let checks = strongroom::doctor::run(&ev, true, later / 1_000_000);
    let age = checks.iter().find(|c| c.name == "key_age").unwrap();
    assert_eq!(age.status, strongroom::doctor::Status::Warn);
    assert!(age.detail.contains("rotate"), "{}", age.detail);
    // Today, the same keys are within policy.
    let checks = strongroom::doctor::run(&ev, true, crate::support::now_us() / 1_000_000);
    let age = checks.iter().find(|c| c.name == "key_age").unwrap();
    assert_eq!(age.status, strongroom::doctor::Status::Ok, "{}", age.detail);
}

#[test]
fn version_names_the_build() {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("strongroom {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for field in [
        "commit:",
        "built:",
        "sqlcipher: 4.",
        "openssl:   OpenSSL 3.",
        "static:",
    ] {
        assert!(text.contains(field), "{field}: {text}");
    }
}

#[test]
fn a_root_key_inside_the_data_directory_is_a_warning() {
    let env = Env::init();
    let (ok, v) = doctor(&env, &[]);
    assert!(ok, "{v}");
    let (s, detail) = status(&v, "root_key");
    assert_eq!(s, "warn", "{v}");
    assert!(detail.contains("inside the data directory"), "{v}");

    // Moved out of the data directory, as the .deb and the systemd credential arrange it.
    let key = env.tmp.path().join("keys/root.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::rename(env.dir.join("root.key"), &key).unwrap();
    std::fs::write(
        &env.config,
        format!("[keys]\nroot_key_file = {:?}\n", key.to_str().unwrap()),
    )
    .unwrap();
    let (ok, v) = doctor(&env, &[]);
    assert!(ok, "{v}");
    assert_eq!(status(&v, "root_key").0, "ok", "{v}");
}

#[test]
fn files_not_owned_by_the_data_directorys_owner_are_a_warning() {
    use std::os::unix::fs::MetadataExt;
    if !crate::support::is_root() {
        eprintln!("not running as root; skipping");
        return;
    }
    let env = Env::init();
    let id = env.create_tenant("Owned");
    let file = env.dir.join(format!("tenants/{id}.db"));
    // Deep inside the directory, and as root: doctor still sees it.
    std::os::unix::fs::lchown(&file, Some(54_321), Some(54_321)).unwrap();
    let (ok, v) = doctor(&env, &["--quick"]);
    assert!(ok, "{v}");
    let (s, d) = status(&v, "file_modes");
    assert_eq!(s, "warn", "{v}");
    assert!(
        d.contains(&format!("{id}.db")) && d.contains("uid 54321") && d.contains("chown"),
        "{d}"
    );
    std::os::unix::fs::lchown(&file, Some(0), Some(0)).unwrap();
    assert_eq!(status(&doctor(&env, &["--quick"]).1, "file_modes").0, "ok");
    assert_eq!(std::fs::metadata(&env.dir).unwrap().uid(), 0);
}
