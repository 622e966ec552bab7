//! Root-key rotation: the happy path, refusal while in use, and a SIGKILL at every step.

use crate::support::{Env, Server};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn key(env: &Env) -> String {
    std::fs::read_to_string(env.dir.join("root.key")).unwrap()
}

fn system_key_ids(env: &Env) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.join("system.key")).unwrap()).unwrap();
    v["wrappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["root_key_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every tenant opens with whatever key is now in root.key, and every journal verifies.
fn everything_opens(env: &Env) {
    let out = env.ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["files"].as_array().unwrap().len(), 4);
}

fn three_tenants() -> (Env, Vec<String>) {
    let env = Env::init();
    let ids = (0..3)
        .map(|i| env.create_tenant(&format!("T{i}")))
        .collect();
    (env, ids)
}

#[test]
fn rotate_root_rewraps_every_key_and_retires_the_old_one() {
    let (env, ids) = three_tenants();
    let old = key(&env);
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["keys", "rotate-root", "--json"])).unwrap();
    assert_eq!(out["rewrapped"], 3);
    let new = key(&env);
    assert_ne!(old, new);
    assert_eq!(
        system_key_ids(&env),
        [out["new_root_key_id"].as_str().unwrap()]
    );
    assert!(!env.dir.join("root.key.next").exists());
    everything_opens(&env);
    // The tenant files were not rewritten: same DEK, only re-wrapped.
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["keys", "status", "--json"])).unwrap();
    assert_eq!(status[0]["key_id"], out["new_root_key_id"]);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(status[i + 1]["owner"], id.as_str());
        assert_eq!(status[i + 1]["version"], 1);
    }
    let actions = env.system_actions();
    assert_eq!(
        &actions[actions.len() - 2..],
        ["keys.rotate_root", "keys.retire_root"]
    );
    let export = env.ok(&["audit", "export", "--system"]);
    assert!(
        !export.contains(old.trim()) && !export.contains(new.trim()),
        "no key material in the journal"
    );

    // The old key opens nothing any more.
    std::fs::write(env.dir.join("root.key"), &old).unwrap();
    let text = env.fails(&["tenant", "list"]);
    assert!(
        text.contains("is not one this data directory was sealed with"),
        "{text}"
    );
    std::fs::write(env.dir.join("root.key"), &new).unwrap();
    env.ok(&["tenant", "list"]);
}

#[test]
fn rotate_root_refuses_while_the_directory_is_in_use() {
    let (env, _) = three_tenants();
    let old = key(&env);
    let server = Server::start(&env, &[]);
    let text = env.fails(&["keys", "rotate-root"]);
    assert!(text.contains("stop them first"), "{text}");
    assert_eq!(key(&env), old, "nothing changed");
    // A second server on the same directory is refused too.
    let text = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(text.contains("another strongroom server"), "{text}");
    assert!(server.terminate().success());
    env.ok(&["keys", "rotate-root"]);
}

#[test]
fn a_sigkill_at_any_step_leaves_a_key_that_opens_everything() {
    for step in 1..=5 {
        let (env, _) = three_tenants();
        let old = key(&env);
        let mut child = env
            .command(&["keys", "rotate-root"])
            .env("SR_FAULT_ROTATE_STEP", step.to_string())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut reached = false;
        for line in BufReader::new(stderr).lines() {
            if line.unwrap().contains("fault point reached") {
                reached = true;
                break;
            }
        }
        assert!(
            reached,
            "step {step}: the rotation never reached its fault point"
        );
        child.kill().unwrap();
        child.wait().unwrap();

        let now = key(&env);
        if step < 4 {
            assert_eq!(now, old, "step {step}: the old key stays until the switch");
        } else {
            assert_ne!(now, old, "step {step}: the switch happened");
        }
        everything_opens(&env);
        // A later rotation completes and cleans up whatever the crash left behind.
        env.ok(&["keys", "rotate-root"]);
        assert_eq!(system_key_ids(&env).len(), 1, "step {step}");
        assert!(!env.dir.join("root.key.next").exists(), "step {step}");
        everything_opens(&env);
    }
}
