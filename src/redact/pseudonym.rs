//! Reversible pseudonyms for one call: each found value becomes a placeholder such as
//! `<EMAIL_1>` before the text leaves, the same value getting the same placeholder in every
//! message of the call, and the placeholders in the answer are put back. The mapping lives in
//! this value only: it is never logged, stored or printed (its `Debug` shows counts), and its
//! values are wiped from memory when it is dropped.

use super::{Detector, Found};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use zeroize::Zeroize;

/// The longest placeholder: `<`, a label of at most 32 characters, `_`, a number, `>`.
const MAX_PLACEHOLDER: usize = 48;

/// A found value, wiped when dropped.
#[derive(PartialEq, Eq, Hash)]
struct Value(String);

impl Drop for Value {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Default)]
pub struct Pseudonyms {
    by_value: HashMap<Value, String>,
    by_placeholder: HashMap<String, Value>,
    next: HashMap<String, u32>,
    counts: BTreeMap<String, u32>,
    /// Placeholder-shaped text already in the call (`<EMAIL_1>` typed by someone): never
    /// issued, so an answer that repeats it gets no value put in its place.
    reserved: HashSet<String>,
}

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonyms")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Pseudonyms {
    pub fn new() -> Self {
        Self::default()
    }

    /// `text` with every value the detector finds replaced by its placeholder.
    pub fn redact(&mut self, detector: &Detector, text: &str) -> String {
        let found = detector.find(text);
        self.replace(detector, text, &found)
    }

    /// As [`Self::redact`], with the values already found.
    pub fn replace(&mut self, detector: &Detector, text: &str, found: &[Found]) -> String {
        if found.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + found.len() * 8);
        let mut at = 0;
        for f in found {
            out.push_str(&text[at..f.start]);
            let label = detector.label_name(f.label);
            out.push_str(&self.placeholder(label, &text[f.start..f.end]));
            *self.counts.entry(label.to_owned()).or_default() += 1;
            at = f.end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn placeholder(&mut self, label: &str, value: &str) -> String {
        let key = Value(value.to_owned());
        if let Some(p) = self.by_value.get(&key) {
            return p.clone();
        }
        let n = self.next.entry(label.to_owned()).or_default();
        let mut p;
        loop {
            *n += 1;
            p = format!("<{label}_{n}>");
            if !self.reserved.contains(&p) {
                break;
            }
        }
        self.by_placeholder
            .insert(p.clone(), Value(value.to_owned()));
        self.by_value.insert(key, p.clone());
        p
    }

    /// Notes the placeholder-shaped text in `text` (`<EMAIL_1>`), so no value of this call
    /// is given that placeholder. Called on every part of a call before any is redacted.
    pub fn reserve(&mut self, text: &str) {
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            let tail = &rest[open..];
            if let Some(close) = placeholder_end(tail) {
                let inner = &tail[1..close];
                let shaped = inner.rsplit_once('_').is_some_and(|(label, n)| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                        && !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                });
                if shaped {
                    self.reserved.insert(tail[..=close].to_owned());
                }
            }
            rest = &tail[1..];
        }
    }

    /// Values replaced, by kind (occurrences, not distinct values): for the audit entry.
    pub fn counts(&self) -> &BTreeMap<String, u32> {
        &self.counts
    }

    /// `text` with every placeholder of this call put back; anything else is left as it is.
    pub fn restore(&self, text: &str) -> String {
        if self.by_placeholder.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            let tail = &rest[open..];
            let close = placeholder_end(tail);
            match close.and_then(|c| self.by_placeholder.get(&tail[..=c]).map(|v| (c, v))) {
                Some((c, value)) => {
                    out.push_str(&value.0);
                    rest = &tail[c + 1..];
                }
                None => {
                    out.push('<');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// A restorer for an answer that arrives in pieces.
    pub fn stream(&self) -> Restorer<'_> {
        Restorer {
            names: self,
            pending: String::new(),
        }
    }
}

/// Where the `>` that may close a placeholder starting `tail` (at its `<`) is: within the
/// longest a placeholder can be. Searched on bytes, as `>` is one, so that text after the
/// `<` in any script is looked at without cutting it inside a character.
fn placeholder_end(tail: &str) -> Option<usize> {
    tail.bytes().take(MAX_PLACEHOLDER).position(|b| b == b'>')
}

/// Puts placeholders back in a streamed answer: a piece that ends in what may be the start
/// of a placeholder (`<EMA`) is held back until the next piece says what it is.
pub struct Restorer<'a> {
    names: &'a Pseudonyms,
    pending: String,
}

impl fmt::Debug for Restorer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer").finish_non_exhaustive()
    }
}

impl Restorer<'_> {
    /// The text that can be shown now.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let cut = self.hold_from();
        let ready: String = self.pending.drain(..cut).collect();
        self.names.restore(&ready)
    }

    /// The rest, at the end of the answer.
    pub fn finish(mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.names.restore(&rest)
    }

    /// Where a possible unfinished placeholder starts (or the end: nothing to hold).
    fn hold_from(&self) -> usize {
        let p = &self.pending;
        let Some(open) = p.rfind('<') else {
            return p.len();
        };
        let tail = &p[open + 1..];
        let could_be = tail.len() < MAX_PLACEHOLDER
            && tail
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if could_be {
            open
        } else {
            p.len()
        }
    }
}
