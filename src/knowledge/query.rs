//! A person's search text as an FTS5 query. User text never reaches FTS5's syntax: it is
//! cut into words (letters and digits), each word becomes a quoted string, and the words are
//! joined with `OR`, so BM25 ranks passages that hold more of them higher. Quotes, `*`,
//! `NEAR(`, `AND`/`OR`/`NOT` and column filters in the text are only characters or words.

/// Most words taken from one query.
pub const MAX_TERMS: usize = 32;
/// Longest word kept (in characters); longer ones are cut.
pub const MAX_TERM_CHARS: usize = 64;

/// The words of `text` that a search looks for, lower-cased, without repeats, in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in lowered(text) {
        if !out.contains(&word) {
            out.push(word);
        }
        if out.len() == MAX_TERMS {
            break;
        }
    }
    out
}

/// The words of `text` in order, lower-cased, repeats kept (a phrase is its words as
/// written: "the end of the day" is not "the end of day"), at most [`MAX_TERMS`].
pub fn words(text: &str) -> Vec<String> {
    lowered(text).take(MAX_TERMS).collect()
}

fn lowered(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.chars()
                .take(MAX_TERM_CHARS)
                .flat_map(char::to_lowercase)
                .collect()
        })
}

/// Words too common to say what a question is about (English question and function words).
const STOP: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "but", "by", "can", "could", "did", "do", "does", "doing", "for",
    "from", "get", "got", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its",
    "me", "much", "my", "need", "no", "not", "of", "on", "or", "our", "ours", "should", "so",
    "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "too", "us", "was", "we", "were", "what", "when", "where", "which", "while",
    "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// The words of `text` that say what it is about: [`terms`] without the common ones, or all
/// of them when every word is common (a query of only `the` still finds `the`).
pub fn content_terms(text: &str) -> Vec<String> {
    let all = terms(text);
    let content: Vec<String> = all
        .iter()
        .filter(|t| !STOP.contains(&t.as_str()))
        .cloned()
        .collect();
    if content.is_empty() {
        all
    } else {
        content
    }
}

/// A crude English stem, for comparing words (not for the index): plural and verb endings
/// dropped, so `backups`, `backed` and `backup` compare as one.
pub fn stem(word: &str) -> &str {
    for suffix in ["ing", "ies", "ied", "es", "ed", "ly", "s"] {
        if let Some(base) = word.strip_suffix(suffix) {
            if base.chars().count() >= 3 {
                return base;
            }
        }
    }
    word
}

/// The phrases a person put in double quotes (each as its words, at least one), in order;
/// an unclosed quote is only a character. The text outside them is returned as well.
pub fn phrases(text: &str) -> (Vec<Vec<String>>, String) {
    let parts: Vec<&str> = text.split('"').collect();
    // With an odd number of quotes the last one is unclosed: what follows it is loose text.
    let closed = if parts.len().is_multiple_of(2) {
        parts.len() - 1
    } else {
        parts.len()
    };
    let (mut found, mut loose) = (Vec::new(), String::new());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && i < closed {
            let words = words(part);
            if !words.is_empty() && found.len() < MAX_TERMS {
                found.push(words);
            }
        } else {
            loose.push_str(part);
            loose.push(' ');
        }
    }
    (found, loose)
}

/// The FTS5 `MATCH` expression that requires every phrase (words in this order, next to
/// one another), and, when `loose` holds words, at least one of them besides.
pub fn fts5_phrases(phrases: &[Vec<String>], loose: &[String]) -> Option<String> {
    if phrases.is_empty() {
        return None;
    }
    // Letters and digits only inside the quotes, as in `fts5_of`.
    let mut expr = phrases
        .iter()
        .map(|p| format!("\"{}\"", p.join(" ")))
        .collect::<Vec<_>>()
        .join(" AND ");
    if let Some(any) = fts5_of(loose) {
        expr = format!("{expr} AND ({any})");
    }
    Some(expr)
}

/// The FTS5 `MATCH` expression for `text`, or `None` when it holds no word to look for.
pub fn fts5(text: &str) -> Option<String> {
    fts5_of(&content_terms(text))
}

/// The FTS5 `MATCH` expression for words made by [`terms`].
pub fn fts5_of(terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    // Letters and digits only, so no `"` can occur inside; quoting makes each a plain string.
    Some(
        terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// The FTS5 `MATCH` expression for passages that hold at least two of `terms`: every pair
/// of them OR-ed.
pub fn fts5_two_of(terms: &[String]) -> Option<String> {
    if terms.len() < 2 {
        return None;
    }
    let mut pairs = Vec::new();
    for (i, a) in terms.iter().enumerate() {
        for b in &terms[i + 1..] {
            pairs.push(format!("(\"{a}\" AND \"{b}\")"));
        }
    }
    Some(pairs.join(" OR "))
}

/// A word as the index compares it: lower case, diacritics removed.
pub fn fold(word: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if word.is_ascii() {
        return word.to_ascii_lowercase();
    }
    // Composed again after the marks are gone: decomposition also splits what is no letter
    // plus mark (a Hangul syllable into its jamo), and the index keeps those whole.
    word.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .nfc()
        .flat_map(char::to_lowercase)
        .collect()
}

/// The words of `text` as the index cuts and folds them: a word starts at a letter or digit
/// and runs on through letters, digits and combining marks (as FTS5's `unicode61` does, so
/// `cafe\u{301}s` is one word), folded by [`fold`].
pub fn folded_words(text: &str) -> impl Iterator<Item = String> + '_ {
    use unicode_normalization::char::is_combining_mark;
    let mut rest = text;
    std::iter::from_fn(move || {
        let word = &rest[rest.find(char::is_alphanumeric)?..];
        let end = word
            .find(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
            .unwrap_or(word.len());
        let (w, after) = word.split_at(end);
        rest = after;
        Some(fold(w))
    })
}

/// The best window of about `words` words of `text` for `terms` (the one holding most of
/// them), matched words between `**`, `…` where text was left out.
pub fn snippet(text: &str, terms: &[String], words: usize) -> String {
    let wanted: Vec<String> = terms.iter().map(|t| fold(t)).collect();
    let all: Vec<&str> = text.split_whitespace().collect();
    let hit = |w: &str| {
        let bare = w.trim_matches(|c: char| !c.is_alphanumeric());
        !bare.is_empty() && wanted.contains(&fold(bare))
    };
    let hits: Vec<bool> = all.iter().map(|w| hit(w)).collect();
    let n = words.max(1).min(all.len());
    let (mut best, mut best_at, mut now) = (0, 0, 0);
    for i in 0..all.len() {
        now += usize::from(hits[i]);
        if i >= n {
            now -= usize::from(hits[i - n]);
        }
        if i + 1 >= n && now > best {
            best = now;
            best_at = i + 1 - n;
        }
    }
    let mut out = String::new();
    if best_at > 0 {
        out.push('…');
    }
    for (i, w) in all.iter().enumerate().skip(best_at).take(n) {
        if i > best_at {
            out.push(' ');
        }
        if hits[i] {
            let start = w.find(char::is_alphanumeric).unwrap_or(0);
            let end = w.rfind(char::is_alphanumeric).map_or(w.len(), |e| {
                e + w[e..].chars().next().map_or(1, char::len_utf8)
            });
            out.push_str(&format!(
                "{}**{}**{}",
                &w[..start],
                &w[start..end],
                &w[end..]
            ));
        } else {
            out.push_str(w);
        }
    }
    if best_at + n < all.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_phrases_are_found_and_unclosed_quotes_are_characters() {
        let (p, loose) = phrases(r#"fees "Harbour  pilot" berth "" "open"#);
        assert_eq!(p, vec![vec!["harbour".to_string(), "pilot".to_string()]]);
        assert_eq!(terms(&loose), ["fees", "berth", "open"]);
        let expr = fts5_phrases(&p, &terms("fees")).unwrap();
        assert_eq!(expr, r#""harbour pilot" AND ("fees")"#);
        // Syntax inside quotes is only words.
        let (p, _) = phrases(r#""NEAR(a b) OR x*""#);
        assert_eq!(fts5_phrases(&p, &[]).unwrap(), r#""near a b or x""#);
        assert!(phrases("no quotes").0.is_empty());
        let words = terms("tide harbour pilot");
        assert_eq!(
            fts5_two_of(&words).unwrap(),
            r#"("tide" AND "harbour") OR ("tide" AND "pilot") OR ("harbour" AND "pilot")"#
        );
        assert_eq!(fts5_two_of(&words[..1]), None);
        // A phrase is its words as written, a repeated word too.
        let (p, _) = phrases(r#""the end of the day""#);
        assert_eq!(p, vec![vec!["the", "end", "of", "the", "day"]]);
        assert_eq!(terms("the end of the day"), ["the", "end", "of", "day"]);
    }

    #[test]
    fn snippets_mark_the_words_in_the_best_window() {
        let text = "Intro words here. The pilot boards at the outer buoy, said the Pilot. More text follows on.";
        let s = snippet(text, &["pilot".into(), "buoy".into()], 8);
        assert_eq!(s, "…here. The **pilot** boards at the outer **buoy**,…");
        assert_eq!(
            snippet("Café au lait", &["cafe".into()], 24),
            "**Café** au lait"
        );
        assert_eq!(snippet("", &["x".into()], 24), "");
    }

    #[test]
    fn common_words_are_dropped_unless_nothing_else_is_left() {
        assert_eq!(
            content_terms("How long do we keep the backups?"),
            ["long", "keep", "backups"]
        );
        assert_eq!(content_terms("the"), ["the"]);
        assert_eq!(stem("backups"), "backup");
        assert_eq!(stem("rotating"), "rotat");
        assert_eq!(stem("rotated"), "rotat");
        assert_eq!(stem("is"), "is");
    }

    #[test]
    fn words_are_taken_plainly() {
        assert_eq!(
            terms("Harbour pilot, HARBOUR fees?"),
            ["harbour", "pilot", "fees"]
        );
        assert_eq!(
            fts5("pilot NEAR(fees)").unwrap(),
            "\"pilot\" OR \"near\" OR \"fees\""
        );
        assert_eq!(fts5("\"*\" -- ; () ^ :"), None);
        assert_eq!(terms(&"w ".repeat(100)).len(), 1);
        let many: String = (0..100).map(|i| format!("t{i} ")).collect();
        assert_eq!(terms(&many).len(), MAX_TERMS);
        assert_eq!(terms(&"a".repeat(500))[0].chars().count(), MAX_TERM_CHARS);
    }

    /// Against SQLite's own FTS5 (compiled into the bundled SQLCipher): hostile text is
    /// answered, never an error, and finds what its words find.
    #[test]
    fn hostile_queries_are_answered_by_real_fts5() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE VIRTUAL TABLE idx USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
             INSERT INTO idx(body) VALUES ('The harbour pilot boards every vessel.');
             INSERT INTO idx(body) VALUES ('Fees are paid to the café OR the port office.');
             INSERT INTO idx(body) VALUES ('Nothing here.');",
        )
        .unwrap();
        let run = |q: &str| -> Result<Vec<String>, rusqlite::Error> {
            let Some(m) = fts5(q) else {
                return Ok(Vec::new());
            };
            let mut st = c.prepare("SELECT body FROM idx WHERE idx MATCH ?1 ORDER BY bm25(idx)")?;
            let rows = st.query_map([m], |r| r.get(0))?;
            rows.collect()
        };
        let punctuation: String = "\"*()^:-+{}[];,.'!?~`@#$%&|\\/<>=".repeat(330);
        assert!(punctuation.len() > 10_000);
        for hostile in [
            "\"",
            "*",
            "NEAR(",
            "OR",
            "AND NOT",
            "body:pilot",
            "pilot*",
            "\"unterminated",
            "^pilot",
            "pilot NEAR(vessel, 2",
            punctuation.as_str(),
        ] {
            assert!(run(hostile).is_ok(), "{hostile:?} failed");
        }
        // The words still count: `OR` is a word here, and diacritics do not matter.
        assert_eq!(
            run("OR").unwrap(),
            ["Fees are paid to the café OR the port office."]
        );
        assert_eq!(run("cafe").unwrap().len(), 1);
        assert_eq!(
            run("body:pilot").unwrap(),
            ["The harbour pilot boards every vessel."]
        );
        // More matching words rank first.
        let ranked = run("harbour pilot fees").unwrap();
        assert_eq!(ranked[0], "The harbour pilot boards every vessel.");
        assert_eq!(ranked.len(), 2);
    }

    #[test]
    fn words_are_cut_and_folded_as_the_index_cuts_and_folds_them() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE VIRTUAL TABLE idx USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
             CREATE VIRTUAL TABLE inst USING fts5vocab(idx, 'instance');",
        )
        .unwrap();
        for text in [
            "To be, or NOT to be: that is the question.",
            "Café déjà-vu; naïve l'été à Zürich",
            "cafe\u{301}s of the cafe\u{301} (combining accents)",
            "Straße ÆON Ωmega ÉCOLE",
            "x1 2y 3.14 1,000,000 v2.0-rc1",
            "日本語のテキスト 中文 한국어",
            "e-mail: ops@example.com\thttps://example.com/a_b?c=d",
            "   ",
            "",
        ] {
            c.execute("DELETE FROM idx", []).unwrap();
            c.execute("INSERT INTO idx (rowid, body) VALUES (1, ?1)", [text])
                .unwrap();
            let index: Vec<String> = c
                .prepare("SELECT term FROM inst ORDER BY offset")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(folded_words(text).collect::<Vec<_>>(), index, "{text:?}");
        }
    }
}
