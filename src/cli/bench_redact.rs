//! `strongroom bench redact`: redaction quality on a labelled corpus (recall and precision
//! per kind and over the pattern kinds, the share of hard negatives flagged) and throughput
//! in MB/s on one core. The corpus is NDJSON, one record per line:
//! `{"id", "text", "spans": [{"start", "end", "kind"}], "negatives": [{"start", "end", "shape"}]}`
//! with code-point offsets; `tests/redact/corpus.py` writes one.

use super::bench::figure;
use super::Failure;
use crate::redact::{to_char_offsets, Detector, Kind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
struct Labelled {
    start: usize,
    end: usize,
    #[serde(alias = "shape")]
    kind: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Record {
    text: String,
    #[serde(default)]
    spans: Vec<Labelled>,
    #[serde(default)]
    negatives: Vec<Labelled>,
}

/// Counts for one kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Labelled values found (same kind, overlapping by at least half of the longer span).
    pub hit: u64,
    /// Labelled values.
    pub labelled: u64,
    /// Values found that match a labelled value.
    pub correct: u64,
    /// Values found.
    pub found: u64,
}

/// The scores of a corpus.
#[derive(Debug, Default)]
pub(crate) struct Score {
    pub by_kind: BTreeMap<String, Tally>,
    pub negatives: u64,
    pub negatives_flagged: u64,
    /// Labelled values found with exactly their boundaries.
    pub exact: u64,
}

/// Whether two spans match: they overlap by at least half of the longer one.
fn matches(a: (usize, usize), b: (usize, usize)) -> bool {
    let overlap = a.1.min(b.1).saturating_sub(a.0.max(b.0));
    let longer = (a.1 - a.0).max(b.1 - b.0);
    overlap * 2 >= longer && overlap > 0
}

impl Score {
    pub(crate) fn add(&mut self, detector: &Detector, record: &Record) {
        let found = detector.find(&record.text);
        let offsets = to_char_offsets(&record.text, &found);
        let got: Vec<(&str, (usize, usize))> = found
            .iter()
            .zip(offsets)
            .map(|(f, o)| (detector.label_name(f.label), o))
            .collect();
        for l in &record.spans {
            let t = self.by_kind.entry(l.kind.clone()).or_default();
            t.labelled += 1;
            if got
                .iter()
                .any(|(k, o)| *k == l.kind && matches(*o, (l.start, l.end)))
            {
                t.hit += 1;
            }
            if got
                .iter()
                .any(|(k, o)| *k == l.kind && *o == (l.start, l.end))
            {
                self.exact += 1;
            }
        }
        for (k, o) in &got {
            let t = self.by_kind.entry((*k).to_string()).or_default();
            t.found += 1;
            if record
                .spans
                .iter()
                .any(|l| l.kind == *k && matches(*o, (l.start, l.end)))
            {
                t.correct += 1;
            }
        }
        for n in &record.negatives {
            self.negatives += 1;
            if got.iter().any(|(_, o)| o.0 < n.end && n.start < o.1) {
                self.negatives_flagged += 1;
            }
        }
    }

    /// The pattern kinds together (every kind but PERSON, which is best effort).
    pub(crate) fn patterns(&self) -> Tally {
        let mut all = Tally::default();
        for (k, t) in &self.by_kind {
            if k != Kind::Person.as_str() {
                all.hit += t.hit;
                all.labelled += t.labelled;
                all.correct += t.correct;
                all.found += t.found;
            }
        }
        all
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Reads a corpus file; a broken line is an error naming it.
pub(crate) fn read_corpus(path: &Path) -> Result<Vec<Record>, Failure> {
    let file = std::fs::File::open(path).map_err(|e| {
        Failure::new(
            "BEN-0010",
            format!(
                "cannot open the corpus {}: {e}; write one with `python3 tests/redact/corpus.py > FILE`",
                path.display()
            ),
        )
    })?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| Failure::new("BEN-0010", format!("corpus line {}: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line).map_err(|e| {
            Failure::new(
                "BEN-0010",
                format!("corpus line {} is not a labelled record: {e}", n + 1),
            )
        })?;
        let len = r.text.chars().count();
        if let Some(bad) = r
            .spans
            .iter()
            .chain(&r.negatives)
            .find(|l| l.start >= l.end || l.end > len)
        {
            return Err(Failure::new(
                "BEN-0010",
                format!(
                    "corpus line {}: span {}..{} is outside the text",
                    n + 1,
                    bad.start,
                    bad.end
                ),
            ));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(Failure::new("BEN-0010", "the corpus holds no records"));
    }
    Ok(out)
}

pub fn bench_redact(corpus: &Path, seconds: u64) -> Result<ExitCode, Failure> {
    let records = read_corpus(corpus)?;
    let detector = Detector::default();
    let mut score = Score::default();
    for r in &records {
        score.add(&detector, r);
    }
    for (kind, t) in &score.by_kind {
        figure(
            &format!("redact_recall_{kind}"),
            pct(t.hit, t.labelled),
            "%",
        );
        figure(
            &format!("redact_precision_{kind}"),
            pct(t.correct, t.found),
            "%",
        );
    }
    let all = score.patterns();
    figure("redact_recall_patterns", pct(all.hit, all.labelled), "%");
    figure(
        "redact_precision_patterns",
        pct(all.correct, all.found),
        "%",
    );
    let labelled: u64 = score.by_kind.values().map(|t| t.labelled).sum();
    figure("redact_exact_boundaries", pct(score.exact, labelled), "%");
    figure(
        "redact_hard_negatives_flagged",
        pct(score.negatives_flagged, score.negatives),
        "%",
    );

    // Throughput: the whole corpus, over and over, on this thread, bounded in rounds and time.
    let bytes: usize = records.iter().map(|r| r.text.len()).sum();
    let budget = Duration::from_secs(seconds.max(1));
    let started = Instant::now();
    let mut rounds = 0u64;
    let mut spans = 0usize;
    while rounds < 10_000 && (rounds == 0 || started.elapsed() < budget) {
        for r in &records {
            spans += detector.find(&r.text).len();
        }
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(spans);
    figure(
        "redact_throughput_one_core",
        (bytes as f64 * rounds as f64) / secs / 1e6,
        "MB/s",
    );
    figure("redact_corpus_bytes", bytes as f64, "bytes");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, spans: &[(usize, usize, &str)], negatives: &[(usize, usize)]) -> Record {
        Record {
            text: text.into(),
            spans: spans
                .iter()
                .map(|&(start, end, kind)| Labelled {
                    start,
                    end,
                    kind: kind.into(),
                })
                .collect(),
            negatives: negatives
                .iter()
                .map(|&(start, end)| Labelled {
                    start,
                    end,
                    kind: "UUID".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn scoring_counts_hits_misses_and_false_alarms() {
        let d = Detector::default();
        let mut s = Score::default();
        // Found and labelled; labelled but missed (no such phone); found but not labelled.
        s.add(&d, &record("mail a@b.io now", &[(5, 11, "EMAIL")], &[]));
        s.add(&d, &record("call nobody", &[(5, 11, "PHONE")], &[]));
        s.add(&d, &record("see c@d.io", &[], &[(4, 10)]));
        let e = s.by_kind["EMAIL"];
        assert_eq!((e.hit, e.labelled, e.correct, e.found), (1, 1, 1, 2));
        let p = s.by_kind["PHONE"];
        assert_eq!((p.hit, p.labelled), (0, 1));
        assert_eq!((s.negatives, s.negatives_flagged), (1, 1));
        assert_eq!(s.exact, 1);
        let all = s.patterns();
        assert_eq!(
            (all.hit, all.labelled, all.correct, all.found),
            (1, 2, 1, 2)
        );
    }

    #[test]
    fn a_span_must_overlap_by_half_to_count() {
        assert!(matches((0, 10), (0, 10)));
        assert!(matches((0, 10), (2, 10)));
        assert!(!matches((0, 10), (8, 20)));
        assert!(!matches((0, 4), (4, 8)));
    }

    #[test]
    fn a_broken_corpus_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"text\": \"a\", \"spans\": []}\n{\"text\": 1}\n").unwrap();
        let e = read_corpus(&p).unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
        std::fs::write(
            &p,
            "{\"text\": \"ab\", \"spans\": [{\"start\": 1, \"end\": 5, \"kind\": \"EMAIL\"}]}\n",
        )
        .unwrap();
        let e = read_corpus(&p).unwrap_err();
        assert!(e.message.contains("outside"), "{}", e.message);
        let e = read_corpus(&dir.path().join("missing")).unwrap_err();
        assert!(e.message.contains("corpus.py"), "{}", e.message);
    }
}
