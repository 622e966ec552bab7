//! Splitting a document's text into passages for the index: on paragraph and sentence
//! boundaries, each passage a contiguous span of the text (so a citation is the document,
//! its version and a byte range), with the last sentences of one passage repeated at the
//! start of the next, so an answer that straddles a boundary is found whole in one of them.

/// A passage: `text[start..end]` of the document's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// How passages are cut.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// A passage is at most this many bytes, unless one word is longer.
    pub max: usize,
    /// At most this many bytes of the previous passage's last sentences start the next one.
    pub overlap: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            max: 1200,
            overlap: 200,
        }
    }
}

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»')
}

/// Sentences of `text` as spans, blank space between them left out. A sentence ends after
/// `.`, `!` or `?` (and closing quotes or brackets) followed by white space, and at every
/// blank line (a paragraph boundary) or line that starts a list item or heading.
///
/// The text is scanned byte by byte for the few bytes that can end a sentence (a stop, a
/// line break, the lead byte of a full-width stop); only those are looked at as characters.
/// Walking every character was a tenth of a Markdown file's ingest.
pub fn sentences(text: &str) -> Vec<Span> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    'sentences: loop {
        // The sentence starts at the first character that is not white space.
        let rest = &text[from..];
        let s = from + (rest.len() - rest.trim_start().len());
        if s >= text.len() {
            break;
        }
        let mut at = s;
        while let Some(found) = bytes[at..]
            .iter()
            .position(|b| matches!(b, b'.' | b'!' | b'?' | b'\n' | 0xe3 | 0xef))
        {
            let i = at + found;
            let Some(c) = text.get(i..).and_then(|r| r.chars().next()) else {
                // Not the first byte of a character: 0xe3 and 0xef only ever lead one, so
                // this does not happen; stepping over the byte keeps the scan going anyway.
                at = i + 1;
                continue;
            };
            let after = i + c.len_utf8();
            if c == '\n' {
                let next_line = &text[after..];
                let ends_paragraph = next_line
                    .chars()
                    .take_while(|n| *n != '\n')
                    .all(char::is_whitespace)
                    && next_line.contains('\n');
                let next_line_starts_block = matches!(
                    next_line.trim_start_matches([' ', '\t']).chars().next(),
                    Some('#' | '-' | '*' | '+' | '|' | '>')
                );
                if ends_paragraph || next_line_starts_block {
                    out.push(Span {
                        start: s,
                        end: s + text[s..i].trim_end().len(),
                    });
                    from = after;
                    continue 'sentences;
                }
            } else if matches!(c, '.' | '!' | '?' | '。' | '！' | '？')
                && text[after..]
                    .chars()
                    .find(|n| !is_closer(*n))
                    .is_none_or(char::is_whitespace)
            {
                // Closing quotes and brackets belong to the sentence they end.
                let closers: usize = text[after..]
                    .chars()
                    .take_while(|n| is_closer(*n))
                    .map(char::len_utf8)
                    .sum();
                out.push(Span {
                    start: s,
                    end: after + closers,
                });
                from = after + closers;
                continue 'sentences;
            }
            at = after;
        }
        out.push(Span {
            start: s,
            end: s + text[s..].trim_end().len(),
        });
        break;
    }
    out
}

/// Cuts a span longer than `max` at white space (or, inside one long word, at a character
/// boundary) into pieces of at most `max` bytes.
fn split_long(text: &str, span: Span, max: usize) -> Vec<Span> {
    let mut out = Vec::new();
    let mut start = span.start;
    while span.end - start > max {
        let mut cut = start + max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &text[start..cut];
        if let Some(ws) = window.rfind(char::is_whitespace) {
            if ws > 0 {
                cut = start + ws;
            }
        }
        out.push(Span { start, end: cut });
        start = cut;
        // The next piece starts at its first non-space character.
        while start < span.end {
            match text[start..].chars().next() {
                Some(c) if c.is_whitespace() => start += c.len_utf8(),
                _ => break,
            }
        }
    }
    if start < span.end {
        out.push(Span {
            start,
            end: span.end,
        });
    }
    out
}

/// The passages of `text`, in order. Empty or blank text has none.
pub fn passages(text: &str, sizes: Sizes) -> Vec<Span> {
    let max = sizes.max.max(16);
    let overlap = sizes.overlap.min(max / 2);
    let units: Vec<Span> = sentences(text)
        .into_iter()
        .flat_map(|s| split_long(text, s, max))
        .collect();
    let mut out: Vec<Span> = Vec::new();
    let mut first = 0;
    while first < units.len() {
        let start = units[first].start;
        let mut last = first;
        while last + 1 < units.len() && units[last + 1].end - start <= max {
            last += 1;
        }
        out.push(Span {
            start,
            end: units[last].end,
        });
        if last + 1 >= units.len() {
            break;
        }
        // Step back over whole sentences that fit in the overlap, but always move forward.
        let mut next = last + 1;
        while next > first + 1 && units[last].end - units[next - 1].start <= overlap {
            next -= 1;
        }
        first = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(text: &'a str, spans: &[Span]) -> Vec<&'a str> {
        spans.iter().map(|s| &text[s.start..s.end]).collect()
    }

    /// The character-by-character splitter this one replaced, kept as the oracle. Sentences of `text` as spans, blank space between them left out. A sentence ends after
    /// `.`, `!` or `?` (and closing quotes or brackets) followed by white space, and at every
    /// blank line (a paragraph boundary) or line that starts a list item or heading.
    fn reference_sentences(text: &str) -> Vec<Span> {
        let mut out = Vec::new();
        let mut start: Option<usize> = None;
        let mut chars = text.char_indices().peekable();
        let mut last_non_space = 0;
        while let Some((i, c)) = chars.next() {
            if !c.is_whitespace() {
                if start.is_none() {
                    start = Some(i);
                }
                last_non_space = i + c.len_utf8();
            }
            let Some(s) = start else { continue };
            // A stop ends a sentence when white space (or the end) follows it, after any
            // closing quotes and brackets.
            let ends_sentence = matches!(c, '.' | '!' | '?' | '。' | '！' | '？')
                && text[i + c.len_utf8()..]
                    .chars()
                    .find(|n| !is_closer(*n))
                    .is_none_or(char::is_whitespace);
            let ends_paragraph = c == '\n'
                && text[i + 1..]
                    .chars()
                    .take_while(|n| *n != '\n')
                    .all(char::is_whitespace)
                && text[i + 1..].contains('\n');
            let next_line_starts_block = c == '\n'
                && matches!(
                    text[i + 1..].trim_start_matches([' ', '\t']).chars().next(),
                    Some('#' | '-' | '*' | '+' | '|' | '>')
                );
            if ends_sentence || ends_paragraph || next_line_starts_block {
                let mut end = if ends_sentence {
                    i + c.len_utf8()
                } else {
                    last_non_space
                };
                // Closing quotes and brackets belong to the sentence they end.
                while let Some((j, n)) = chars.peek().copied() {
                    if ends_sentence && is_closer(n) {
                        end = j + n.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                if end > s {
                    out.push(Span { start: s, end });
                }
                start = None;
            }
        }
        if let Some(s) = start {
            if last_non_space > s {
                out.push(Span {
                    start: s,
                    end: last_non_space,
                });
            }
        }
        out
    }

    #[test]
    fn the_byte_scan_cuts_every_text_where_the_character_walk_did() {
        let pieces = [
            "a", "é", "x", " ", "  ", "\t", "\n", "\r", "\u{a0}", "\u{3000}", ".", "!", "?", "。",
            "！", "？", "\"", "'", ")", "]", "”", "’", "»", "#", "-", "*", "+", "|", ">", "word",
            "3.14", "あ", "Ａ", "ã", "ï",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            assert_eq!(sentences(&text), reference_sentences(&text), "{text:?}");
        }
    }

    #[test]
    fn sentences_end_at_stops_paragraphs_and_list_items() {
        let t = "First one. Second one! \"Quoted?\" Then\nwraps here.\n\nNew para\n- item one\n- item two";
        let s = sentences(t);
        assert_eq!(
            texts(t, &s),
            [
                "First one.",
                "Second one!",
                "\"Quoted?\"",
                "Then\nwraps here.",
                "New para",
                "- item one",
                "- item two"
            ]
        );
        // Version numbers and decimals do not end a sentence.
        let v = "Use version 2.4.1 now. Pi is 3.14 roughly.";
        assert_eq!(
            texts(v, &sentences(v)),
            ["Use version 2.4.1 now.", "Pi is 3.14 roughly."]
        );
    }

    #[test]
    fn passages_cover_the_text_within_the_size_and_overlap() {
        let sentence = "The harbour pilot boards every vessel above ninety metres. ";
        let t = sentence.repeat(60);
        let sizes = Sizes {
            max: 300,
            overlap: 120,
        };
        let p = passages(&t, sizes);
        assert!(p.len() > 10);
        for w in p.windows(2) {
            assert!(w[0].end - w[0].start <= 300);
            // Consecutive passages overlap, and each moves forward.
            assert!(w[1].start < w[0].end, "{w:?}");
            assert!(w[1].start > w[0].start);
            assert!(w[0].end - w[1].start <= 120);
        }
        assert_eq!(p[0].start, 0);
        assert_eq!(p.last().unwrap().end, t.trim_end().len());
        // Every passage starts and ends on a sentence.
        for s in &p {
            assert!(t[s.start..s.end].starts_with("The harbour"));
            assert!(t[s.start..s.end].ends_with("metres."));
        }
    }

    #[test]
    fn long_words_and_multibyte_text_are_cut_on_character_boundaries() {
        let t = format!(
            "{} and then ünïcödé wörds everywhere. {}",
            "x".repeat(100),
            "é".repeat(90)
        );
        let p = passages(
            &t,
            Sizes {
                max: 40,
                overlap: 10,
            },
        );
        assert!(!p.is_empty());
        for s in &p {
            assert!(s.end - s.start <= 40, "{s:?}");
            assert!(t.is_char_boundary(s.start) && t.is_char_boundary(s.end));
            assert!(!t[s.start..s.end].starts_with(char::is_whitespace));
        }
        assert_eq!(p.last().unwrap().end, t.len());
    }

    #[test]
    fn blank_text_has_no_passages() {
        assert!(passages("", Sizes::default()).is_empty());
        assert!(passages(" \n\n\t ", Sizes::default()).is_empty());
        let one = passages("Just one line", Sizes::default());
        assert_eq!(one, [Span { start: 0, end: 13 }]);
    }
}
