//! The systemd side: the unit's hardening, and the notification protocol spoken by `serve`.

use crate::support::{Env, Server};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/strongroom.service"
    ))
    .unwrap()
}

#[test]
fn the_unit_is_hardened() {
    let text = unit();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for directive in [
        "Type=notify",
        "DynamicUser=no",
        "User=strongroom",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "LogsDirectoryMode=0700",
        "SystemCallFilter=setrlimit prlimit64",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "RestrictNamespaces=yes",
        "ReadWritePaths=/var/lib/strongroom /var/log/strongroom",
        "UMask=0077",
    ] {
        assert!(lines.contains(&directive), "missing {directive}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("LoadCredential=root-key:")),
        "the root key must arrive as a credential"
    );
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/systemd/strongroom.service"
        ))
        .output()
    else {
        crate::support::tool_missing("systemd-analyze");
        return;
    };
    let report = String::from_utf8_lossy(&out.stdout);
    let level: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for strongroom.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(level <= 2.0, "exposure {level} is above 2.0:\n{report}");
}

#[test]
fn serve_notifies_ready_pings_the_watchdog_and_says_when_it_stops() {
    let mut env = Env::init();
    let path = env.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    env.extra_env
        .push(("NOTIFY_SOCKET".into(), path.to_string_lossy().into_owned()));
    env.extra_env
        .push(("WATCHDOG_USEC".into(), "200000".into()));
    let server = Server::start(&env, &[]);
    let mut buf = [0u8; 512];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("no notification arrived");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.starts_with("READY=1\n"), "{first}");
    assert!(
        first.contains(&format!("STATUS=listening on https://{}", server.addr)),
        "{first}"
    );
    let mut pings = 0;
    for _ in 0..50 {
        if recv() == "WATCHDOG=1" {
            pings += 1;
            if pings == 2 {
                break;
            }
        }
    }
    assert_eq!(pings, 2, "the watchdog was not pinged");
    assert!(server.terminate().success());
    let stopping = (0..100).map(|_| recv()).find(|m| m == "STOPPING=1");
    assert!(stopping.is_some(), "no STOPPING=1 before exit");
}
