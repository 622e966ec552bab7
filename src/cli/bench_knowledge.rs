//! `strongroom bench knowledge`: ingest throughput (Markdown, CSV), search latency over a
//! generated index of 100,000 passages (one-word, three-word and phrase queries), retrieval
//! quality on a question set against a plain FTS5 baseline, and the extractive answer end to
//! end (retrieve, select, cite, store, audit). One JSON line per figure; every loop bounded.

use super::bench::{figure, work_dir};
use super::{Cli, Failure};
use crate::app::App;
use crate::config::Config;
use crate::door;
use crate::identity::{Caller, Realm};
use crate::knowledge::library::{self, Filter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Queries timed per kind.
const QUERIES: usize = 300;
/// Questions answered end to end.
const ANSWERS: usize = 200;
/// Bytes of one generated document.
const DOC_BYTES: usize = 4 * 1024 * 1024;

fn fail(what: &str) -> impl Fn(String) -> Failure + '_ {
    move |e| Failure::new("BEN-0003", format!("{what}: {e}"))
}

/// Makes one query of a kind.
type QueryMaker<'a> = Box<dyn Fn(&mut Rng) -> String + 'a>;

/// A small deterministic generator (xorshift), so every run indexes the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Zipf-like: small indexes far more often, as words are in prose.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((n as f64).powf(u) - 1.0) as usize % n
    }
}

/// Words of the generated prose: common English words first, then made-up terms.
fn vocabulary() -> Vec<String> {
    let common = "the of and to in is for that on with as by be are this from at or an which \
        it we must all not can will have has been each any when our data access system key \
        team review policy record service request change within days customer incident \
        owner report time control process security audit log backup";
    let mut v: Vec<String> = common.split_whitespace().map(str::to_string).collect();
    let syllables = [
        "ka", "lo", "mi", "ren", "dor", "ta", "vel", "sun", "bri", "pol", "nex", "ar", "io", "mar",
        "tek", "sal", "quo", "zen", "fir", "gal",
    ];
    let mut rng = Rng(0x5eed);
    while v.len() < 5000 {
        let n = 2 + rng.below(3);
        let w: String = (0..n)
            .map(|_| syllables[rng.below(syllables.len())])
            .collect();
        if !v.contains(&w) {
            v.push(w);
        }
    }
    v
}

/// A Markdown document of about `bytes`: headings, paragraphs of sentences.
fn markdown(rng: &mut Rng, vocab: &[String], bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 1024);
    while out.len() < bytes {
        out.push_str(&format!(
            "## {} {}\n\n",
            vocab[60 + rng.below(4000)],
            vocab[60 + rng.below(4000)]
        ));
        for _ in 0..3 + rng.below(4) {
            for _ in 0..3 + rng.below(4) {
                let n = 8 + rng.below(14);
                let words: Vec<&str> = (0..n)
                    .map(|_| vocab[rng.zipf(vocab.len())].as_str())
                    .collect();
                let mut s = words.join(" ");
                if let Some(f) = s.get_mut(0..1) {
                    f.make_ascii_uppercase();
                }
                out.push_str(&s);
                out.push_str(". ");
            }
            out.push_str("\n\n");
        }
    }
    out
}

fn csv(rng: &mut Rng, vocab: &[String], bytes: usize) -> String {
    let mut out = String::from("system,owner,region,data_class,rto_hours,notes\n");
    let mut i = 0;
    while out.len() < bytes {
        i += 1;
        let notes: Vec<&str> = (0..10)
            .map(|_| vocab[rng.zipf(vocab.len())].as_str())
            .collect();
        out.push_str(&format!(
            "sys-{i},{},{},{},{},{}\n",
            vocab[60 + rng.below(500)],
            ["eu-west", "eu-central", "us-east"][rng.below(3)],
            ["public", "internal", "confidential"][rng.below(3)],
            1 + rng.below(72),
            notes.join(" ")
        ));
    }
    out
}

/// `n` runs of three words in a row from the sentences of `text` (headings left out).
fn sample_phrases(rng: &mut Rng, text: &str, n: usize) -> Vec<String> {
    let sentences: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split(". "))
        .map(|s| {
            s.split_whitespace()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .collect::<Vec<_>>()
        })
        .filter(|w| w.len() >= 3)
        .collect();
    if sentences.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|_| {
            let s = &sentences[rng.below(sentences.len())];
            let at = rng.below(s.len() - 2);
            s[at..at + 3].join(" ")
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| ms(*d))
    };
    (at(0.5), at(0.99))
}

/// Lower-cased with runs of white space as one space, for comparing phrases.
fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(serde::Deserialize)]
struct Question {
    question: String,
    expect: String,
}

pub fn bench_knowledge(
    _cli: &Cli,
    dir: Option<&Path>,
    corpus: &Path,
    chunks: usize,
) -> Result<ExitCode, Failure> {
    super::logging::init_cli();
    let questions: Vec<Question> = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("questions.json")).map_err(|e| {
            Failure::new(
                "BEN-0004",
                format!(
                    "cannot read {}/questions.json: {}; give --corpus DIR",
                    corpus.display(),
                    e.kind()
                ),
            )
        })?,
    )
    .map_err(|e| Failure::new("BEN-0004", format!("questions.json: {e}")))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("corpus"))
        .map_err(|e| {
            Failure::new(
                "BEN-0004",
                format!("cannot read {}/corpus: {}", corpus.display(), e.kind()),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();

    let work = work_dir(dir)?;
    let config = Config::default();
    App::init(&config, work.path(), &crate::audit::Actor::system())?;
    let app = Arc::new(App::open(&config, work.path())?);
    let actor = crate::audit::Actor::system();
    let open = |name: &str| -> Result<door::TenantCtx, Failure> {
        let t = crate::tenants::create(&app, &actor, name, None)?;
        Ok(door::open_blocking(
            &app,
            &t.id,
            Caller::operator(Realm::Tenant),
            None,
        )?)
    };

    // Ingest: Markdown and CSV documents of 4 MiB, timed add by add.
    let vocab = vocabulary();
    let mut rng = Rng(42);
    let big = open("bench-search")?;
    let mut passages = 0usize;
    // Phrases people search for are ones they saw in a document: three words in a row of
    // the indexed text.
    let mut phrases: Vec<String> = Vec::new();
    let (mut md_bytes, mut md_time) = (0usize, Duration::ZERO);
    let mut n = 0;
    while passages < chunks {
        n += 1;
        let text = markdown(&mut rng, &vocab, DOC_BYTES.min(chunks * 1100));
        phrases.extend(sample_phrases(&mut rng, &text, 20));
        let start = Instant::now();
        let added = library::add_blocking(&big, &format!("doc-{n}.md"), text.as_bytes())?;
        md_time += start.elapsed();
        md_bytes += text.len();
        passages += added.passages;
        if n > 500 {
            break;
        }
    }
    figure(
        "ingest_markdown",
        md_bytes as f64 / 1_048_576.0 / md_time.as_secs_f64(),
        "MB/s",
    );
    figure("index_passages", passages as f64, "passages");
    let csv_tenant = open("bench-csv")?;
    let (mut csv_bytes, mut csv_time) = (0usize, Duration::ZERO);
    for i in 0..4 {
        let text = csv(&mut rng, &vocab, DOC_BYTES);
        let start = Instant::now();
        library::add_blocking(&csv_tenant, &format!("rows-{i}.csv"), text.as_bytes())?;
        csv_time += start.elapsed();
        csv_bytes += text.len();
    }
    figure(
        "ingest_csv",
        csv_bytes as f64 / 1_048_576.0 / csv_time.as_secs_f64(),
        "MB/s",
    );

    // Search latency, per query kind.
    let mid = |rng: &mut Rng| vocab[200 + rng.below(3000)].clone();
    let kinds: [(&str, QueryMaker); 3] = [
        ("one_word", Box::new(|r: &mut Rng| mid(r))),
        (
            "three_words",
            Box::new(|r: &mut Rng| format!("{} {} {}", mid(r), mid(r), mid(r))),
        ),
        (
            "phrase",
            Box::new(|r: &mut Rng| {
                let p = phrases.get(r.below(phrases.len())).cloned();
                format!("\"{}\"", p.unwrap_or_default())
            }),
        ),
    ];
    for (kind, make) in &kinds {
        let mut times = Vec::with_capacity(QUERIES);
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..QUERIES {
            let q = make(&mut rng);
            let start = Instant::now();
            library::search_blocking(&big, &q, &Filter::default(), 10)?;
            times.push(start.elapsed());
            if Instant::now() > deadline {
                break;
            }
        }
        let (p50, p99) = percentiles(times);
        figure(&format!("search_{kind}_p50"), p50, "ms");
        figure(&format!("search_{kind}_p99"), p99, "ms");
    }
    drop(big);

    // Retrieval quality: the product's search against a plain FTS5 index of single lines.
    let q_tenant = open("bench-quality")?;
    let mut lines: Vec<String> = Vec::new();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let bytes = std::fs::read(f).map_err(|e| fail("corpus")(e.to_string()))?;
        library::add_blocking(&q_tenant, name, &bytes)?;
        lines.extend(
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|l| {
                    l.replace(['*', '`'], "")
                        .trim_start_matches(['#', '-', ' '])
                        .to_string()
                })
                .filter(|l| !l.trim().is_empty()),
        );
    }
    let base =
        rusqlite::Connection::open_in_memory().map_err(|e| fail("baseline")(e.to_string()))?;
    base.execute_batch("CREATE VIRTUAL TABLE lines USING fts5(line)")
        .map_err(|e| fail("baseline")(e.to_string()))?;
    for l in &lines {
        base.execute("INSERT INTO lines (line) VALUES (?1)", [l])
            .map_err(|e| fail("baseline")(e.to_string()))?;
    }
    let (mut hit1, mut hit3, mut base1, mut base3) = (0, 0, 0, 0);
    for q in &questions {
        let want = norm(&q.expect);
        let hits = library::search_blocking(&q_tenant, &q.question, &Filter::default(), 3)?;
        let found: Vec<bool> = hits.iter().map(|h| norm(&h.text).contains(&want)).collect();
        hit1 += usize::from(found.first() == Some(&true));
        hit3 += usize::from(found.contains(&true));
        let words = crate::knowledge::query::terms(&q.question);
        let expr = words
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut st = base
            .prepare("SELECT line FROM lines WHERE lines MATCH ?1 ORDER BY bm25(lines) LIMIT 3")
            .map_err(|e| fail("baseline")(e.to_string()))?;
        let got: Vec<String> = st
            .query_map([expr], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| fail("baseline")(e.to_string()))?;
        let found: Vec<bool> = got.iter().map(|l| norm(l).contains(&want)).collect();
        base1 += usize::from(found.first() == Some(&true));
        base3 += usize::from(found.contains(&true));
    }
    let pct = |n: usize| 100.0 * n as f64 / questions.len().max(1) as f64;
    figure("questions", questions.len() as f64, "questions");
    figure("hit_at_1", pct(hit1), "%");
    figure("hit_at_3", pct(hit3), "%");
    figure("baseline_hit_at_1", pct(base1), "%");
    figure("baseline_hit_at_3", pct(base3), "%");

    // The extractive answer end to end, through the assistant as a person would ask.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail("runtime")(e.to_string()))?;
    let tenant = q_tenant.tenant().clone();
    drop(q_tenant);
    let times = runtime.block_on(async {
        let ctx = door::open(&app, &tenant, Caller::operator(Realm::Tenant), None).await?;
        let models = crate::ai::assistant::Models::default();
        let mut times = Vec::with_capacity(ANSWERS);
        let mut thread = crate::ai::assistant::create(&ctx, None).await?;
        for i in 0..ANSWERS {
            if i % 20 == 19 {
                thread = crate::ai::assistant::create(&ctx, None).await?;
            }
            let q = &questions[i % questions.len()].question;
            let start = Instant::now();
            crate::ai::assistant::ask(&ctx, &models, &thread.id, q, false, &mut |_| {}).await?;
            times.push(start.elapsed());
        }
        Ok::<_, crate::ai::assistant::AssistantError>(times)
    })?;
    let (p50, p99) = percentiles(times);
    figure("extractive_answer_p50", p50, "ms");
    figure("extractive_answer_p99", p99, "ms");
    drop(runtime);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    Ok(ExitCode::SUCCESS)
}
