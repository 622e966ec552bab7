//! What ships: one statically linked binary under 30 MiB stripped, and the .deb around it.

use crate::support::BIN;
use std::process::Command;

#[test]
fn the_binary_is_static_and_small() {
    let ldd = Command::new("ldd").arg(BIN).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    // The exact wording packaging checks and operators look for. A static PIE would say
    // "statically linked" instead, and a dynamic binary lists its libraries.
    assert!(text.contains("not a dynamic executable"), "{text}");
    assert!(!text.contains("=>"), "{text}");
    // The check packaging/build-static runs on what it ships: passes this binary, refuses a
    // dynamic one.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/check-static");
    let ok = Command::new("bash").arg(script).arg(BIN).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dynamic = Command::new("bash")
        .arg(script)
        .arg("/bin/sh")
        .output()
        .unwrap();
    assert!(!dynamic.status.success());
    assert!(String::from_utf8_lossy(&dynamic.stderr).contains("not a static executable"));
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("static:    yes"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("strongroom");
    std::fs::copy(BIN, &copy).unwrap();
    let strip = Command::new("strip").arg(&copy).status().unwrap();
    assert!(strip.success());
    let size = std::fs::metadata(&copy).unwrap().len();
    assert!(size < 30 << 20, "stripped binary is {size} bytes");
    // Still runs after stripping.
    let v = Command::new(&copy).arg("--version").output().unwrap();
    assert!(v.status.success());
}

/// Files and sockets through which glibc's name service (NSS) would act. A static glibc
/// binary that reaches any of them would try to `dlopen` a `libnss_*` module that need not
/// match, or exist: inside the OCI image there is none.
const NSS_PATHS: &[&str] = &[
    "nsswitch.conf",
    "libnss_",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/services",
    "/run/nscd",
    "/var/run/nscd",
    "/run/systemd/userdb",
];

/// The paths a traced run touched that belong to the name service, plus any DNS connect.
fn nss_use(trace: &str) -> Vec<&str> {
    trace
        .lines()
        .filter(|l| {
            NSS_PATHS.iter().any(|p| l.contains(p))
                || (l.contains("connect(") && l.contains("htons(53)"))
        })
        .collect()
}

/// Whether `strace` is here; outside CI a test that needs it is skipped without it.
fn have_strace() -> bool {
    if Command::new("strace").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "strace is missing; .ci/run installs it"
    );
    eprintln!("strace is not installed; skipping");
    false
}

/// SQLite is built to sync with `fdatasync` (see `.cargo/config.toml`): a commit syncs its
/// log without also journaling the file's new timestamps.
#[test]
fn commits_sync_their_log_with_fdatasync() {
    if !have_strace() {
        return;
    }
    let env = crate::support::Env::init();
    let trace = env.tmp.path().join("trace");
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-y",
        "-o",
        trace.to_str().unwrap(),
        "-e",
        "trace=fsync,fdatasync",
    ];
    let out = env
        .command_under(&wrapper, &["tenant", "create", "Synced"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let log_syncs: Vec<&str> = trace.lines().filter(|l| l.contains("-wal>")).collect();
    assert!(
        log_syncs.iter().any(|l| l.contains("fdatasync(")),
        "no log synced with fdatasync:\n{trace}"
    );
    let full: Vec<&&str> = log_syncs
        .iter()
        .filter(|l| l.contains(" fsync(") || l.starts_with("fsync("))
        .collect();
    assert!(full.is_empty(), "logs synced with fsync: {full:?}");
}

#[test]
fn the_server_and_cli_never_use_the_name_service() {
    if !have_strace() {
        return;
    }
    let env = crate::support::Env::new();
    let trace = env.tmp.path().join("trace");
    let trace_arg = trace.to_str().unwrap();
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-o",
        trace_arg,
        "-e",
        "trace=open,openat,stat,newfstatat,statx,access,faccessat,faccessat2,connect",
    ];
    let mut traces = String::new();

    let out = env.command_under(&wrapper, &["init"]).output().unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    traces.push_str(&std::fs::read_to_string(&trace).unwrap());
    let tenant = env.create_tenant("acme");

    let server = crate::support::Server::start_under(&env, &wrapper, &[]);
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/status").status, 200);
    stop_traced(server);
    traces.push_str(&std::fs::read_to_string(&trace).unwrap());

    for args in [
        vec!["tenant", "list"],
        vec!["audit", "verify", "--tenant", &tenant],
        vec!["keys", "status"],
    ] {
        let out = env.command_under(&wrapper, &args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            crate::support::stderr(&out)
        );
        traces.push_str(&std::fs::read_to_string(&trace).unwrap());
    }

    // The trace did capture the runs: the root key and the system store were opened.
    assert!(traces.contains("root.key"), "{traces}");
    assert!(traces.contains("system.db"), "{traces}");
    let used = nss_use(&traces);
    assert!(used.is_empty(), "name service used:\n{}", used.join("\n"));

    // A model endpoint given by name is resolved by the server's own resolver, which reads
    // /etc/hosts and resolv.conf itself: those files, and never the name service behind
    // the C library (nsswitch.conf, libnss_*, nscd, the user database).
    let host = "model.strongroom-test.invalid";
    std::fs::write(
        &env.config,
        format!("[[ai.endpoints]]\nname = \"named\"\nprotocol = \"openai\"\nurls = [\"https://{host}\"]\nmodel = \"m\"\n"),
    )
    .unwrap();
    env.ok(&[
        "assistant",
        "policy",
        "--tenant",
        &tenant,
        "--model",
        "named",
        "--endpoints",
        "named",
        "--egress-allow",
        host,
    ]);
    let token = env.ok(&["token", "create", "--tenant", &tenant, "--role", "operator"]);
    let bearer = format!("Bearer {}", token.trim());
    let server = crate::support::Server::start_under(&env, &wrapper, &[]);
    let auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let made = crate::support::https(
        server.addr,
        &server.cert,
        "POST",
        "/api/v1/conversations",
        &auth,
        b"",
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let thread: serde_json::Value = serde_json::from_str(&made.body).unwrap();
    let asked = crate::support::https(
        server.addr,
        &server.cert,
        "POST",
        &format!(
            "/api/v1/conversations/{}/ask",
            thread["id"].as_str().unwrap()
        ),
        &auth,
        br#"{"question": "anything"}"#,
    );
    assert_eq!(asked.status, 403, "{}", asked.body);
    assert!(
        asked.body.contains("AI-0003") && asked.body.contains(host),
        "{}",
        asked.body
    );
    stop_traced(server);
    resolved_by_own_resolver(&std::fs::read_to_string(&trace).unwrap());

    // So is a single sign-on provider given by name: starting a sign-in discovers it.
    let idp = "idp.strongroom-test.invalid";
    {
        use strongroom::identity::sso::{self, Settings, Update};
        use strongroom::identity::{Caller, Realm};
        let app = std::sync::Arc::new(env.app());
        let t = strongroom::ids::TenantId::parse(&tenant).unwrap();
        let door = strongroom::door::open_blocking(&app, &t, Caller::operator(Realm::Tenant), None)
            .unwrap();
        let settings = Settings {
            enabled: true,
            issuer: format!("https://{idp}"),
            client_id: "strongroom".into(),
            ..Settings::default()
        };
        let secret = strongroom::keyring::SecretString::new("client-secret-1".into());
        sso::update_blocking(
            &door,
            app.directory(),
            Update {
                settings,
                client_secret: Some(secret),
            },
        )
        .unwrap();
    }
    let server = crate::support::Server::start_under(&env, &wrapper, &[]);
    let started = server.get(&format!("/login/sso/{tenant}"));
    // The provider cannot be found; the page says so without naming its network.
    assert!(
        started.body.contains("SSO-0005") && !started.body.contains("does not resolve"),
        "{}: {}",
        started.status,
        started.body
    );
    stop_traced(server);
    resolved_by_own_resolver(&std::fs::read_to_string(&trace).unwrap());
}

/// Stops a server run under strace with SIGTERM to the server itself (killing strace would
/// leave it running, detached), so its shutdown is traced too and it is gone on return.
fn stop_traced(mut server: crate::support::Server) {
    let strace_pid = server.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap();
    let pid = children
        .split_whitespace()
        .next()
        .expect("no traced server");
    assert!(Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .unwrap()
        .success());
    assert!(server.child.wait().unwrap().success());
}

/// Asserts that a trace resolved a name through the server's own resolver (which reads
/// `/etc/hosts` and `resolv.conf`) and never reached the name service behind the C library.
fn resolved_by_own_resolver(trace: &str) {
    assert!(
        trace.contains("/etc/resolv.conf") || trace.contains("/etc/hosts"),
        "the name was not resolved by the server's own resolver:\n{trace}"
    );
    let nss: Vec<&str> = trace
        .lines()
        .filter(|l| {
            NSS_PATHS
                .iter()
                .filter(|p| !matches!(**p, "/etc/hosts" | "/etc/resolv.conf"))
                .any(|p| l.contains(p))
        })
        .collect();
    assert!(nss.is_empty(), "name service used:\n{}", nss.join("\n"));
}

#[test]
fn name_service_use_is_detected_in_a_trace() {
    // The filter above must catch what a resolver or user lookup would do.
    let trace = "12 openat(AT_FDCWD, \"/etc/nsswitch.conf\", O_RDONLY|O_CLOEXEC) = 3\n\
                 12 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"10.0.0.1\")}, 16) = 0\n\
                 12 openat(AT_FDCWD, \"/data/root.key\", O_RDONLY|O_CLOEXEC) = 3\n";
    assert_eq!(nss_use(trace).len(), 2);
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the .deb around the binary under test (no second build), inspects it, and — as
/// root in CI, on a throwaway machine — installs, upgrades and purges it for real.
#[test]
fn the_deb_installs_a_locked_down_service_and_purges_cleanly() {
    let have_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_cargo_deb {
        crate::support::tool_missing("cargo-deb");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let staged = std::path::Path::new(root).join("target/static");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::copy(BIN, staged.join("strongroom")).unwrap();
    run(Command::new("strip").arg(staged.join("strongroom")));
    let out_dir = tempfile::tempdir().unwrap();
    run(Command::new("cargo")
        .current_dir(root)
        .args([
            "deb",
            "--no-build",
            "--no-strip",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--output",
        ])
        .arg(out_dir.path()));
    let deb = out_dir.path().join(format!(
        "strongroom_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(deb.exists(), "no {}", deb.display());

    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Package: strongroom"), "{info}");
    assert!(info.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))));
    for script in ["postinst", "postrm", "prerm", "conffiles"] {
        assert!(info.contains(script), "{script} missing: {info}");
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .arg("Package"));
    assert_eq!(conffiles.trim(), "strongroom");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/strongroom"),
        ("-rw-r--r--", "./lib/systemd/system/strongroom.service"),
        ("-rw-r--r--", "./etc/strongroom/config.toml"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{mode} {path} not in:\n{contents}"
        );
    }
    let ctrl = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(ctrl.path()));
    assert_eq!(
        std::fs::read_to_string(ctrl.path().join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/strongroom/config.toml"
    );
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(ctrl.path().join(script)));
    }
    // No systemd runs as PID 1 here, so the restart on upgrade is checked in the script:
    // only when a version is being replaced, and only a service that is running.
    let postinst = std::fs::read_to_string(ctrl.path().join("postinst")).unwrap();
    let upgrade = postinst
        .find("if [ -n \"$2\" ]; then")
        .expect("postinst does not tell an upgrade from a first install");
    assert!(
        postinst[upgrade..].contains("systemctl try-restart strongroom.service"),
        "{postinst}"
    );

    if std::env::var_os("CI").is_none() {
        eprintln!("not in CI: the package was inspected, not installed");
        return;
    }
    assert!(
        crate::support::is_root(),
        "CI runs as root: the package must be installed, not only inspected"
    );
    install_upgrade_purge(&deb);
}

fn install_upgrade_purge(deb: &std::path::Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = Command::new("dpkg")
        .env("STRONGROOM_PURGE_DATA", "yes")
        .args(["--purge", "strongroom"])
        .output();
    let installed = Command::new("dpkg").arg("-i").arg(deb).output().unwrap();
    assert!(installed.status.success(), "{installed:?}");
    // No one-time password in what the installer prints (apt keeps it in its logs).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(!said.contains("one-time password:"), "{said}");
    assert!(said.contains("user create --platform"), "{said}");
    let passwd = run(Command::new("getent").args(["passwd", "strongroom"]));
    assert!(
        passwd
            .trim_end()
            .ends_with(":/var/lib/strongroom:/usr/sbin/nologin"),
        "{passwd}"
    );
    let uid = passwd.split(':').nth(2).unwrap().parse::<u32>().unwrap();
    for dir in ["/var/lib/strongroom", "/var/log/strongroom"] {
        let m = std::fs::metadata(dir).unwrap();
        assert_eq!(
            (m.permissions().mode() & 0o777, m.uid()),
            (0o700, uid),
            "{dir}"
        );
    }
    let key = std::fs::metadata("/etc/strongroom/root.key").unwrap();
    assert_eq!((key.permissions().mode() & 0o777, key.uid()), (0o600, 0));
    assert!(std::path::Path::new("/var/lib/strongroom/system.db").exists());

    // The service user works only through the credential, as under systemd.
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy("/etc/strongroom/root.key", creds.path().join("root-key")).unwrap();
    run(Command::new("chown")
        .arg("-R")
        .arg("strongroom:strongroom")
        .arg(creds.path()));
    let as_service = |args: &[&str]| {
        let mut c = Command::new("runuser");
        c.args(["-u", "strongroom", "--", "env"])
            .arg(format!("CREDENTIALS_DIRECTORY={}", creds.path().display()))
            .arg("/usr/bin/strongroom")
            .args(args);
        run(&mut c)
    };
    let doctor = as_service(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&doctor).unwrap();
    assert_eq!(v["ok"], true, "{doctor}");
    let id = as_service(&["tenant", "create", "Installed"]);

    // Upgrade (reinstall): data and configuration stay.
    std::fs::write("/etc/strongroom/config.toml", "# edited by the operator\ndata_dir = \"/var/lib/strongroom\"\n[keys]\nroot_key_file = \"/etc/strongroom/root.key\"\n").unwrap();
    run(Command::new("dpkg")
        .args(["-i", "--force-confold"])
        .arg(deb));
    assert!(std::fs::read_to_string("/etc/strongroom/config.toml")
        .unwrap()
        .contains("edited by the operator"));
    assert!(as_service(&["tenant", "list"]).contains(id.trim()));
    as_service(&["audit", "verify"]);

    // Remove keeps the data, and so does a plain purge: the data and the only root key are
    // not configuration. A reinstall finds them as they were.
    run(Command::new("dpkg").args(["-r", "strongroom"]));
    assert!(std::path::Path::new("/var/lib/strongroom/system.db").exists());
    let purged = Command::new("dpkg")
        .args(["--purge", "strongroom"])
        .output()
        .unwrap();
    assert!(purged.status.success());
    assert!(
        String::from_utf8_lossy(&purged.stderr).contains("STRONGROOM_PURGE_DATA=yes"),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    for kept in ["/var/lib/strongroom/system.db", "/etc/strongroom/root.key"] {
        assert!(std::path::Path::new(kept).exists(), "{kept} was purged");
    }
    run(Command::new("dpkg").arg("-i").arg(deb));
    assert!(as_service(&["tenant", "list"]).contains(id.trim()));
    // Asked for in so many words, purge takes it all.
    run(Command::new("dpkg")
        .env("STRONGROOM_PURGE_DATA", "yes")
        .args(["--purge", "strongroom"]));
    for gone in [
        "/var/lib/strongroom",
        "/var/log/strongroom",
        "/etc/strongroom/root.key",
        "/usr/bin/strongroom",
    ] {
        assert!(
            !std::path::Path::new(gone).exists(),
            "{gone} survived the purge"
        );
    }
    let user = Command::new("getent")
        .args(["passwd", "strongroom"])
        .output()
        .unwrap();
    assert!(!user.status.success(), "the user survived the purge");
}

/// Builds the OCI archive around the binary under test, checks its layout and digests, has
/// skopeo read it and umoci unpack it when they are installed, and runs the unpacked binary.
#[test]
fn the_oci_image_is_valid_and_its_binary_serves() {
    if Command::new("python3").arg("--version").output().is_err() {
        crate::support::tool_missing("python3");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("strongroom");
    std::fs::copy(BIN, &bin).unwrap();
    run(Command::new("strip").arg(&bin));
    let archive = dir.path().join("strongroom.oci.tar");
    run(Command::new("python3")
        .arg(format!("{root}/packaging/oci-image.py"))
        .arg("--binary")
        .arg(&bin)
        .args([
            "--version",
            env!("CARGO_PKG_VERSION"),
            "--revision",
            "test",
            "--out",
        ])
        .arg(&archive));

    // The layout, by hand: every blob is named by its digest, and the chain index ->
    // manifest -> config/layer holds together.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));
    let blobs = layout.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let digest = hex_sha256(&data);
        assert_eq!(
            digest,
            e.file_name().to_string_lossy(),
            "blob named by its digest"
        );
    }
    let read = |digest: &str| -> serde_json::Value {
        let name = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(blobs.join(name)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["config"]["User"], "10001:10001");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["serve", "--init"])
    );
    assert!(config["config"]["ExposedPorts"]["8443/tcp"].is_object());
    assert!(config["config"]["Volumes"]["/var/lib/strongroom"].is_object());
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(config["history"].as_array().unwrap().len(), 1);

    if let Ok(out) = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["Labels"]["org.opencontainers.image.title"], "strongroom");
    } else {
        crate::support::tool_missing("skopeo");
    }

    let rootfs = dir.path().join("bundle/rootfs");
    let unpacked_by_umoci = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!(
            "{}:{}",
            layout.display(),
            env!("CARGO_PKG_VERSION")
        ))
        .arg(dir.path().join("bundle"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !unpacked_by_umoci {
        crate::support::tool_missing("umoci");
        std::fs::create_dir_all(&rootfs).unwrap();
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()
            .to_string();
        run(Command::new("tar")
            .arg("-xzf")
            .arg(blobs.join(layer))
            .arg("-C")
            .arg(&rootfs));
    }
    for f in [
        "etc/passwd",
        "etc/group",
        "etc/hosts",
        "etc/nsswitch.conf",
        "etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(rootfs.join(f).exists(), "{f} missing from the image");
    }
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .contains(":10001:10001:"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/nsswitch.conf")).unwrap(),
        "hosts: files dns\n"
    );

    // The image's own binary, as the image would start it (serve --init), on loopback.
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let child = Command::new(rootfs.join("usr/bin/strongroom"))
        .args(["serve", "--init", "--listen", "127.0.0.1:0"])
        .env("STRONGROOM_DATA_DIR", &data)
        .env("STRONGROOM_CONFIG", dir.path().join("none.toml"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    assert_eq!(crate::support::healthz_of(&mut guard.0, &data), 200);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}
