//! The built-in answerer (model id `extractive`), for a tenant with no model: it picks the
//! sentences of the retrieved passages that share the most of the question's words, quotes
//! them with their citations, and says plainly when nothing relevant was found. It invents
//! nothing, so every answer it gives is grounded.

use super::context::Context;
use crate::knowledge::chunk::sentences;
use crate::knowledge::query::{content_terms, stem, terms};

/// The model id of this answerer.
pub const MODEL: &str = "extractive";
/// Most sentences quoted.
const MAX_SENTENCES: usize = 3;
/// The answer when no sentence shares a word with the question.
pub const NOTHING_FOUND: &str =
    "I found nothing in your documents that answers this. Try other words, or add the document that holds the answer.";

/// A sentence worth quoting.
struct Candidate {
    passage: usize,
    text: String,
    score: f64,
    order: usize,
}

/// The answer to `question` from the passages of `ctx`, as quoted sentences each followed
/// by the `[n]` of its passage; [`NOTHING_FOUND`] when none is relevant.
pub fn answer(question: &str, ctx: &Context) -> String {
    let wanted: Vec<String> = content_terms(question)
        .iter()
        .map(|t| stem(t).to_string())
        .collect();
    if wanted.is_empty() {
        return NOTHING_FOUND.to_string();
    }
    let mut candidates = Vec::new();
    for (i, p) in ctx.passages.iter().enumerate() {
        for span in sentences(&p.text) {
            let text = p.text[span.start..span.end].trim();
            let words: Vec<String> = terms(text).iter().map(|t| stem(t).to_string()).collect();
            let matched = wanted.iter().filter(|w| words.contains(w)).count();
            if matched == 0 || text.len() < 12 {
                continue;
            }
            // Share of the question's words, a little for the passage's rank, and a little
            // against long sentences that match by being long.
            let score = matched as f64 / wanted.len() as f64
                - 0.02 * i as f64
                - 0.0005 * words.len() as f64;
            candidates.push(Candidate {
                passage: i + 1,
                text: text.split_whitespace().collect::<Vec<_>>().join(" "),
                score,
                order: candidates.len(),
            });
        }
    }
    let Some(best) = candidates.iter().map(|c| c.score).reduce(f64::max) else {
        return NOTHING_FOUND.to_string();
    };
    // Only sentences nearly as well supported as the best one; the overlap between passages
    // repeats sentences, which are quoted once.
    candidates.retain(|c| c.score >= best * 0.6);
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.order.cmp(&b.order)));
    let mut chosen: Vec<&Candidate> = Vec::new();
    for c in &candidates {
        if chosen.len() == MAX_SENTENCES {
            break;
        }
        if !chosen.iter().any(|o| o.text == c.text) {
            chosen.push(c);
        }
    }
    chosen.sort_by_key(|c| (c.passage, c.order));
    let quotes: Vec<String> = chosen
        .iter()
        .map(|c| format!("“{}” [{}]", unmarked(&c.text), c.passage))
        .collect();
    format!("From your documents:\n\n{}", quotes.join("\n\n"))
}

/// A quoted sentence with its own `[n]` (a document's footnote marks, or a planted one) as
/// `(n)`: only the answer's own marks may cite, or a document could have its sentence shown
/// as another passage's.
fn unmarked(sentence: &str) -> std::borrow::Cow<'_, str> {
    let b = sentence.as_bytes();
    let marks: Vec<(usize, usize)> = memchr::memchr_iter(b'[', b)
        .filter_map(|open| {
            let digits = b[open + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            (digits > 0 && b.get(open + 1 + digits) == Some(&b']'))
                .then_some((open, open + 1 + digits))
        })
        .collect();
    if marks.is_empty() {
        return std::borrow::Cow::Borrowed(sentence);
    }
    let mut out = sentence.to_string().into_bytes();
    for (open, close) in marks {
        out[open] = b'(';
        out[close] = b')';
    }
    // ASCII bytes replaced by ASCII bytes: still the same UTF-8.
    std::borrow::Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| sentence.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::context::tests::hit;

    #[test]
    fn a_documents_own_marks_cite_nothing_in_a_quote() {
        let ctx = Context {
            passages: vec![
                hit(
                    1,
                    "Refunds are never given [2]. Refunds take [x] days [12345] to pay.",
                ),
                hit(2, "The canteen opens at noon."),
            ],
        };
        let a = answer("Are refunds given?", &ctx);
        assert!(a.contains("“Refunds are never given (2).” [1]"), "{a}");
        let checked = ctx.check(&a);
        assert_eq!(checked.cited, [ctx.passages[0].citation.clone()], "{a}");
        assert!(checked.flagged.is_empty(), "{a}");
    }

    #[test]
    fn the_best_supported_sentences_are_quoted_with_their_passage() {
        let ctx = Context {
            passages: vec![
                hit(
                    1,
                    "The harbour opens at six. Daily backups are kept for 35 days in the vault.",
                ),
                hit(
                    2,
                    "Backups of the ledger are kept for seven years. Lunch is at noon.",
                ),
            ],
        };
        let a = answer("How long are backups kept?", &ctx);
        assert!(
            a.contains("“Daily backups are kept for 35 days in the vault.” [1]"),
            "{a}"
        );
        assert!(
            a.contains("“Backups of the ledger are kept for seven years.” [2]"),
            "{a}"
        );
        assert!(!a.contains("harbour") && !a.contains("Lunch"), "{a}");
        let checked = ctx.check(&a);
        assert_eq!(checked.cited.len(), 2);
        assert!(checked.flagged.is_empty());
    }

    #[test]
    fn nothing_relevant_is_said_plainly() {
        let ctx = Context {
            passages: vec![hit(1, "The harbour opens at six.")],
        };
        assert_eq!(answer("Who signs the invoices?", &ctx), NOTHING_FOUND);
        assert_eq!(answer("???", &ctx), NOTHING_FOUND);
        assert_eq!(answer("harbour", &Context::default()), NOTHING_FOUND);
    }

    #[test]
    fn a_sentence_repeated_by_overlapping_passages_is_quoted_once() {
        let s = "Pilots board at the outer buoy.";
        let ctx = Context {
            passages: vec![hit(1, s), hit(2, s)],
        };
        let a = answer("where do pilots board", &ctx);
        assert_eq!(a.matches("outer buoy").count(), 1, "{a}");
        assert!(a.contains("[1]"), "{a}");
    }
}
