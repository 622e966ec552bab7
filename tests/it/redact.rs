//! `strongroom redact`, a tenant's own patterns, and redaction quality on the labelled corpus
//! that `tests/redact/corpus.py` writes, through the real binary.

use crate::support::{stderr, stdout, tool_missing, Env, BIN};
use std::io::Write;
use std::process::{Command, Stdio};

/// The kinds of one output line's spans, in order.
fn kinds(line: &serde_json::Value) -> Vec<&str> {
    line["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect()
}

/// Runs `strongroom redact` with `input` on stdin: (exit code, output lines as JSON).
fn redact(env: &Env, args: &[&str], input: &str) -> (i32, Vec<serde_json::Value>) {
    let mut child = env
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    // Written from a thread: output is read while input is still going in.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = stdout(&out);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn redact_reads_ndjson_and_reports_code_point_spans() {
    let env = Env::new();
    let (code, out) = redact(
        &env,
        &["redact"],
        concat!(
            "{\"id\": \"a\", \"text\": \"Grüße von Dr. Anna Müller, anna.mueller@example.de, IBAN DE89 3704 0044 0532 0130 00\"}\n",
            "{\"id\": 2, \"text\": \"order 550e8400-e29b-41d4-a716-446655440000 shipped, v1.2.3.4\"}\n",
        ),
    );
    assert_eq!(code, 0);
    assert_eq!(out.len(), 2);
    assert_eq!(kinds(&out[0]), ["PERSON", "EMAIL", "IBAN"]);
    // "Grüße von Dr. " is 14 code points (16 bytes).
    assert_eq!(out[0]["spans"][0]["start"], 14);
    assert_eq!(out[0]["spans"][0]["end"], 25);
    assert_eq!(out[1]["id"], 2);
    assert_eq!(out[1]["spans"], serde_json::json!([]));
}

#[test]
fn a_malformed_line_gets_an_error_line_and_the_rest_go_on() {
    let env = Env::new();
    let (code, out) = redact(
        &env,
        &["redact"],
        "{\"id\": 1, \"text\": \"x@y.io\"}\n{\"id\": 2, \"txt\": \"\"}\n[1,2\n{\"id\": 4, \"text\": \"z@y.io\"}\n",
    );
    assert_eq!(code, 1, "a refused line makes the exit status 1");
    assert_eq!(out.len(), 4);
    assert_eq!(out[1]["line"], 2);
    assert_eq!(out[1]["id"], 2);
    assert!(
        out[1]["error"].as_str().unwrap().contains("txt"),
        "{}",
        out[1]
    );
    assert_eq!(out[2]["line"], 3);
    assert_eq!(out[3]["id"], 4);
    assert_eq!(out[3]["spans"][0]["kind"], "EMAIL");
}

#[test]
fn a_tenants_own_patterns_are_checked_stored_audited_and_applied() {
    let env = Env::init();
    let t = env.create_tenant("Acme");
    // A broken pattern is refused with the rule named, and nothing is stored.
    let e = env.fails(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--rule",
        "EMPLOYEE_ID=EMP-([",
    ]);
    assert!(
        e.contains("rule EMPLOYEE_ID") && e.contains("regular expression"),
        "{e}"
    );
    let e = env.fails(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--rule",
        "EMPLOYEE_ID=x*",
    ]);
    assert!(e.contains("matches empty text"), "{e}");
    let e = env.fails(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--rule",
        "no equals sign",
    ]);
    assert!(e.contains("NAME=PATTERN"), "{e}");
    let e = env.fails(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--remove-rule",
        "NOPE",
    ]);
    assert!(e.contains("no rule named"), "{e}");
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&["assistant", "redaction", "--tenant", &t])).unwrap();
    assert_eq!(shown["rules"], serde_json::json!([]));
    assert_eq!(shown["all_endpoints"], false);

    let set = env.ok(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--rule",
        "EMPLOYEE_ID=EMP-[0-9]{6}",
        "--all-endpoints",
        "true",
    ]);
    let shown: serde_json::Value = serde_json::from_str(&set).unwrap();
    assert_eq!(shown["rules"][0]["name"], "EMPLOYEE_ID");
    assert_eq!(shown["all_endpoints"], true);
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    assert!(journal.contains("policy.redaction.update"), "{journal}");

    let input = "{\"id\": 1, \"text\": \"badge EMP-004211, mail a@b.io\"}\n";
    let (_, with) = redact(&env, &["redact", "--tenant", &t], input);
    assert_eq!(kinds(&with[0]), ["EMPLOYEE_ID", "EMAIL"]);
    let (_, without) = redact(&env, &["redact"], input);
    assert_eq!(kinds(&without[0]), ["EMAIL"]);

    env.ok(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--remove-rule",
        "EMPLOYEE_ID",
    ]);
    let (_, removed) = redact(&env, &["redact", "--tenant", &t], input);
    assert_eq!(kinds(&removed[0]), ["EMAIL"]);
    // An unknown tenant is an error, not an empty rule set.
    let e = env.fails(&["redact", "--tenant", "t_doesnotexist"]);
    assert!(e.contains("tenant"), "{e}");
}

/// The labelled corpus, generated by the repository's script, scored by the real binary:
/// the targets of the pattern kinds hold.
#[test]
fn quality_on_the_labelled_corpus_meets_the_targets() {
    let Ok(gen) = Command::new("python3")
        .args([
            "tests/redact/corpus.py",
            "--records",
            "2000",
            "--seed",
            "11",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    else {
        return tool_missing("python3");
    };
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(&corpus, &gen.stdout).unwrap();
    let out = Command::new(BIN)
        .args(["bench", "redact", "--seconds", "1", "--corpus"])
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut figures = std::collections::HashMap::new();
    for l in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        figures.insert(
            v["figure"].as_str().unwrap().to_string(),
            v["value"].as_f64().unwrap(),
        );
    }
    let f = |k: &str| {
        *figures
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {figures:?}"))
    };
    assert!(f("redact_recall_patterns") >= 97.0, "{figures:?}");
    assert!(f("redact_precision_patterns") >= 95.0, "{figures:?}");
    assert!(f("redact_hard_negatives_flagged") <= 2.0, "{figures:?}");
    // Every kind is in the corpus and measured.
    for kind in strongroom::redact::Kind::ALL {
        assert!(
            figures.contains_key(&format!("redact_recall_{}", kind.as_str())),
            "{kind:?}"
        );
    }
}
