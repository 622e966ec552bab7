//! Knowledge from the command line, on real tenant files: add, version, list, search
//! (JSON lines), remove, broken input, hostile queries, and one tenant's documents never
//! found from another.

use crate::support::Env;
use std::path::PathBuf;

fn write(dir: &std::path::Path, name: &str, body: &[u8]) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn search(env: &Env, tenant: &str, q: &str) -> Vec<serde_json::Value> {
    env.ok(&["knowledge", "search", "--tenant", tenant, q, "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn documents_are_added_versioned_searched_and_removed() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let files = tempfile::tempdir().unwrap();
    let pilot = write(
        files.path(),
        "pilotage.md",
        "# Pilotage\n\nEvery vessel above ninety metres takes a harbour pilot.\n\nThe pilot boards at the outer buoy.\n".as_bytes(),
    );
    let fees = write(
        files.path(),
        "fees.txt",
        b"Berth fees are charged per metre per day. Fees for the cafe terrace are separate.",
    );
    let out = env.ok(&["knowledge", "add", "--tenant", &t, &pilot, &fees]);
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 2, "one id per file: {out}");
    assert!(ids.iter().all(|id| id.len() == 32), "{out}");

    // Best first, with citation, document, score, snippet and the passage's full text.
    let hits = search(&env, &t, "harbour pilot");
    assert!(!hits.is_empty());
    let top = &hits[0];
    assert_eq!(top["document"], "pilotage.md");
    assert_eq!(top["document_id"], ids[0]);
    let citation = top["citation"].as_str().unwrap();
    assert!(
        citation.starts_with(&format!("{}:1:", ids[0])),
        "{citation}"
    );
    assert!(
        top["snippet"].as_str().unwrap().contains("**pilot**"),
        "{top}"
    );
    assert!(top["text"].as_str().unwrap().contains("harbour pilot"));
    assert!(top["score"].as_f64().unwrap() > 0.0);
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // Diacritics do not matter; the citation's span is the passage in the stored text.
    assert_eq!(search(&env, &t, "café")[0]["document"], "fees.txt");
    let (span, text) = (
        citation.rsplit(':').next().unwrap(),
        top["text"].as_str().unwrap(),
    );
    let (a, b) = span.split_once('-').unwrap();
    let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
    assert_eq!(b - a, text.len());

    // The same name again is a new version; search reads the latest.
    let pilot2 = write(
        files.path(),
        "pilotage.md",
        b"# Pilotage\n\nFrom June, vessels above seventy metres take a pilot.\n",
    );
    let again = env.ok(&["knowledge", "add", "--tenant", &t, &pilot2, "--json"]);
    let added: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(
        (added["id"].as_str().unwrap(), added["version"].as_i64()),
        (ids[0], Some(2))
    );
    let hits = search(&env, &t, "seventy");
    assert!(hits[0]["citation"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:2:", ids[0])));
    assert!(
        search(&env, &t, "ninety").is_empty(),
        "the old version is not searched"
    );
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["knowledge", "list", "--tenant", &t, "--json"])).unwrap();
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let p = listed.iter().find(|d| d["name"] == "pilotage.md").unwrap();
    assert_eq!(p["versions"], 2);
    // The same bytes again are the latest version already, not a third copy.
    let same = env.ok(&["knowledge", "add", "--tenant", &t, &pilot2, "--json"]);
    let same: serde_json::Value = serde_json::from_str(same.trim()).unwrap();
    assert_eq!(same["version"], 2, "{same}");
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["knowledge", "list", "--tenant", &t, "--json"])).unwrap();
    let p = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "pilotage.md")
        .unwrap();
    assert_eq!(p["versions"], 2);

    // Removed: gone from search and list, in one step with its audit entry.
    env.ok(&["knowledge", "remove", "--tenant", &t, ids[0]]);
    assert!(search(&env, &t, "pilot").is_empty());
    let list = env.ok(&["knowledge", "list", "--tenant", &t, "--json"]);
    assert!(!list.contains("pilotage.md"), "{list}");
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    // Three adds, and the unchanged one, journaled as such.
    assert_eq!(journal.matches("\"knowledge.add\"").count(), 4);
    assert_eq!(journal.matches("\"unchanged\":true").count(), 1);
    assert_eq!(journal.matches("\"knowledge.remove\"").count(), 1);
    let again = env.fails(&["knowledge", "remove", "--tenant", &t, ids[0]]);
    assert!(
        again.contains("no document") && again.contains("KNW-0007"),
        "{again}"
    );
}

#[test]
fn broken_files_and_hostile_queries_get_clear_answers() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let files = tempfile::tempdir().unwrap();
    let good = write(files.path(), "good.txt", b"Anchors are inspected yearly.");
    let png = write(
        files.path(),
        "photo.txt",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0",
    );
    let pdf = write(files.path(), "report.docx", b"PK\x03\x04");
    let empty = write(files.path(), "empty.md", b"  \n");
    let missing = files.path().join("missing.txt").display().to_string();
    let out = env.run(&[
        "knowledge",
        "add",
        "--tenant",
        &t,
        &png,
        &good,
        &pdf,
        &empty,
        &missing,
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.lines().count(),
        1,
        "the good file is added: {stdout}"
    );
    for needle in [
        "photo.txt: the content is not text",
        "report.docx: this type of file is not taken",
        "empty.md: the file holds no text",
        "cannot read",
        "4 of 5 files were not added",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    // Queries never reach FTS5's syntax: each is answered.
    let punctuation = "\"*()^:-+{}[];,.'!?~".repeat(600);
    for q in [
        "\"",
        "*",
        "NEAR(",
        "OR",
        "anchors*",
        "body:anchors",
        punctuation.as_str(),
    ] {
        env.ok(&["knowledge", "search", "--tenant", &t, q, "--json"]);
    }
    assert_eq!(search(&env, &t, "ANCHORS*").len(), 1);
    for (args, needle) in [
        (
            vec!["knowledge", "search", "--tenant", "nope", "x"],
            "TEN-0001",
        ),
        (
            vec!["knowledge", "remove", "--tenant", &t, "../etc"],
            "DOC-0001",
        ),
        (
            vec!["knowledge", "search", "--tenant", &t, "x", "--limit", "0"],
            "limit",
        ),
    ] {
        let e = env.fails(&args);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn rows_and_records_are_found_with_their_field_names() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let files = tempfile::tempdir().unwrap();
    let csv = write(
        files.path(),
        "ships.csv",
        b"name,length_m,flag\nAurora,92,NL\nLark,48,DE\n",
    );
    let json = write(
        files.path(),
        "crew.json",
        br#"[{"name": "Ines", "role": {"title": "pilot"}}, {"name": "Tom", "role": {"title": "deckhand"}}]"#,
    );
    let broken = write(files.path(), "broken.csv", b"a,b\n1,2\n3,4,5\n");
    let out = env.run(&["knowledge", "add", "--tenant", &t, &csv, &json, &broken]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.csv: line 3: 3 fields where the header has 2"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let hits = search(&env, &t, "flag DE");
    assert_eq!(hits[0]["text"], "name: Lark; length_m: 48; flag: DE");
    let hits = search(&env, &t, "deckhand");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["text"], "name: Tom; role.title: deckhand");
    assert_eq!(hits[0]["document"], "crew.json");
}

#[test]
fn one_tenant_never_finds_anothers_documents() {
    let env = Env::init();
    let (a, b) = (env.create_tenant("alpha"), env.create_tenant("beta"));
    let files = tempfile::tempdir().unwrap();
    let fa = write(
        files.path(),
        "a.txt",
        b"The vault code rotates every quarter at alpha.",
    );
    let fb = write(
        files.path(),
        "b.txt",
        b"The vault code rotates every month at beta.",
    );
    env.ok(&["knowledge", "add", "--tenant", &a, &fa]);
    env.ok(&["knowledge", "add", "--tenant", &b, &fb]);
    for (t, own, other) in [(&a, "a.txt", "b.txt"), (&b, "b.txt", "a.txt")] {
        let hits = search(&env, t, "vault code rotates");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0]["document"], own);
        let all = serde_json::to_string(&hits).unwrap();
        assert!(
            !all.contains(other) && !all.contains(if own == "a.txt" { "beta" } else { "alpha" })
        );
    }
}

#[test]
fn html_and_pdf_are_read_for_their_text_and_broken_pdfs_are_named() {
    use strongroom::knowledge::extract::sample_pdf;
    let env = Env::init();
    let t = env.create_tenant("acme");
    let files = tempfile::tempdir().unwrap();
    let html = write(
        files.path(),
        "berths.html",
        b"<html><head><script>var token='zz';</script></head><body><h2>Berths</h2>\
          <p>Berth <b>seven</b> is kept for <a href='https://x.test'>tankers</a>.</p></body></html>",
    );
    let pdf = write(
        files.path(),
        "tides.pdf",
        &sample_pdf(&["Spring tides reach 5.2 metres at the lock gate."], false),
    );
    // A file the primary extractor panics on: read by the fallback, the command survives.
    let quirky = write(
        files.path(),
        "quirky.pdf",
        &sample_pdf(&["Dredging closes the north channel in March."], true),
    );
    let broken = write(files.path(), "broken.pdf", b"%PDF-1.7\n1 0 obj <<");
    let renamed = write(files.path(), "notes.pdf", b"just some words");
    // A form that draws itself overflows the primary extractor's stack, which aborts the
    // process that reads it: that is a child of the command's, and the command goes on.
    let recursive = write(
        files.path(),
        "recursive.pdf",
        &strongroom::knowledge::extract::self_drawing_pdf(),
    );
    let out = env.run(&[
        "knowledge",
        "add",
        "--tenant",
        &t,
        &html,
        &recursive,
        &pdf,
        &quirky,
        &broken,
        &renamed,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        3,
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.pdf: the file is damaged") && stderr.contains("[KNW-0012]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("notes.pdf: the content is not a PDF"),
        "{stderr}"
    );
    assert!(
        stderr.contains("recursive.pdf: the file is damaged"),
        "{stderr}"
    );
    // The reader of that file did die: read in the command's own process, it would have
    // taken the command (or the server) with it.
    let mut reader = std::process::Command::new(crate::support::BIN)
        .arg(strongroom::knowledge::extract::READER_ARG)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = reader.stdin.take().unwrap();
        stdin
            .write_all(&strongroom::knowledge::extract::self_drawing_pdf())
            .unwrap();
    }
    let died = reader.wait_with_output().unwrap();
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&died.status).is_some(),
        "{:?}",
        died.status
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("lopdf"),
        "{stderr}"
    );

    let hits = search(&env, &t, "tankers berth");
    assert_eq!(hits[0]["document"], "berths.html");
    let text = hits[0]["text"].as_str().unwrap();
    assert!(text.contains("Berth seven is kept for tankers."), "{text}");
    assert!(
        !text.contains("token") && !text.contains("https://"),
        "{text}"
    );
    assert_eq!(
        search(&env, &t, "spring tides lock")[0]["document"],
        "tides.pdf"
    );
    assert_eq!(
        search(&env, &t, "dredging channel")[0]["document"],
        "quirky.pdf"
    );

    // Filters: by type, by document, by date; bad ones are named.
    let filtered = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["knowledge", "search", "--tenant", &t, "the is", "--json"];
        args.extend_from_slice(extra);
        env.ok(&args)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["document"].to_string())
            .collect()
    };
    let pdfs = filtered(&["--type", "pdf"]);
    assert!(
        !pdfs.is_empty() && pdfs.iter().all(|d| d.ends_with(".pdf\"")),
        "{pdfs:?}"
    );
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["knowledge", "list", "--tenant", &t, "--json"])).unwrap();
    let html_id = list.iter().find(|d| d["name"] == "berths.html").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(filtered(&["--document", &html_id]), ["\"berths.html\""]);
    assert!(filtered(&["--since", "2999-01-01"]).is_empty());
    assert_eq!(filtered(&["--until", "2999-01-01"]).len(), 3);
    let e = env.fails(&["knowledge", "search", "--tenant", &t, "x", "--type", "docx"]);
    assert!(
        e.contains("type \"docx\" is not one") && e.contains("KNW-0015"),
        "{e}"
    );
    let e = env.fails(&[
        "knowledge",
        "search",
        "--tenant",
        &t,
        "x",
        "--since",
        "soon",
    ]);
    assert!(e.contains("since \"soon\" is not a date"), "{e}");
}

#[test]
fn the_knowledge_benchmark_prints_every_figure_and_beats_its_baseline() {
    let env = Env::new();
    let out = env.ok(&[
        "bench",
        "knowledge",
        "--chunks",
        "1000",
        "--corpus",
        concat!(env!("CARGO_MANIFEST_DIR"), "/benches/knowledge"),
    ]);
    let figures: std::collections::HashMap<String, f64> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["figure"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect();
    for f in [
        "ingest_markdown",
        "ingest_csv",
        "index_passages",
        "search_one_word_p99",
        "search_three_words_p99",
        "search_phrase_p99",
        "hit_at_1",
        "hit_at_3",
        "baseline_hit_at_1",
        "baseline_hit_at_3",
        "extractive_answer_p99",
    ] {
        assert!(figures.contains_key(f), "{f} missing: {out}");
    }
    assert!(figures["index_passages"] >= 1000.0);
    assert!(figures["questions"] >= 30.0);
    // The product's retrieval is better than single lines with the words OR-ed.
    assert!(figures["hit_at_3"] > figures["baseline_hit_at_3"], "{out}");
    assert!(figures["hit_at_1"] > figures["baseline_hit_at_1"], "{out}");
    let e = env.fails(&["bench", "knowledge", "--corpus", "/nonexistent"]);
    assert!(
        e.contains("questions.json") && e.contains("--corpus"),
        "{e}"
    );
}

#[test]
fn quoted_phrases_are_found_as_written() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let files = tempfile::tempdir().unwrap();
    // Enough passages (one per row) that common words are told from rare ones.
    let mut rows = String::from("id,note\n");
    for i in 0..150 {
        rows.push_str(&format!("{i},routine entry {i} of the log\n"));
    }
    rows.push_str("900,the harbour pilot boards at dawn\n");
    rows.push_str("901,a pilot for the harbour waits at dusk\n");
    rows.push_str("902,harbour pilot fees: each harbour pilot call is billed\n");
    rows.push_str("903,the end of the day and the end of the week\n");
    let f = write(files.path(), "log.csv", rows.as_bytes());
    env.ok(&["knowledge", "add", "--tenant", &t, &f]);

    let notes = |q: &str| -> Vec<String> {
        search(&env, &t, q)
            .iter()
            .map(|h| h["text"].as_str().unwrap().to_string())
            .collect()
    };
    let found = notes("\"Harbour pilot\"");
    assert_eq!(found.len(), 2, "{found:?}");
    // Ranked among themselves: the row that holds the phrase twice first.
    assert!(found[0].contains("each harbour pilot call"), "{found:?}");
    assert!(found[1].contains("harbour pilot boards"), "{found:?}");
    let scores: Vec<f64> = search(&env, &t, "\"harbour pilot\"")
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] > scores[1] && scores[1] > 0.0, "{scores:?}");
    // Unquoted, the same words find all three.
    assert_eq!(notes("harbour pilot").len(), 3);
    assert!(notes("\"pilot harbour\"").is_empty());
    // Words outside the quotes: at least one must be there too.
    assert_eq!(notes("\"harbour pilot\" dawn").len(), 1);
    // A repeated word is part of the phrase.
    let week = notes("\"the end of the week\"");
    assert_eq!(week.len(), 1, "{week:?}");
    assert!(notes("\"the end of the end\"").is_empty());
    assert!(notes("\"harbour pilot\" sunset").is_empty());
    // A phrase of words nearly every passage holds is still matched as a phrase.
    let common = notes("\"of the log\"");
    assert_eq!(common.len(), 10, "{common:?}");
    assert!(common.iter().all(|n| n.contains("of the log")));
    assert!(notes("\"the log of\"").is_empty());
    // An unclosed quote is a character: the words are searched as words.
    assert_eq!(notes("\"harbour pilot").len(), 3);
}

/// A document keeps at most 100 versions: the file added for the 101st time is refused,
/// naming the limit, and the others stay.
#[test]
fn a_document_keeps_a_bounded_number_of_versions() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let files = tempfile::tempdir().unwrap();
    let paths: Vec<String> = (0..101)
        .map(|i| {
            let dir = files.path().join(i.to_string());
            std::fs::create_dir(&dir).unwrap();
            write(
                &dir,
                "log.md",
                format!("Entry {i} of the harbour log.\n").as_bytes(),
            )
        })
        .collect();
    let mut args = vec!["knowledge", "add", "--tenant", t.as_str()];
    args.extend(paths.iter().map(String::as_str));
    let out = env.run(&args);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 100);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already has 100 versions") && stderr.contains("[KNW-0017]"),
        "{stderr}"
    );
    let hits = search(&env, &t, "entry harbour");
    assert!(
        hits[0]["text"].as_str().unwrap().contains("Entry 99"),
        "{hits:?}"
    );
}
