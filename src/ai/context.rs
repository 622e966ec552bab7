//! The one way a model sees a tenant's knowledge: passages retrieved from that tenant's
//! index through its door, numbered, with the instruction to cite them as `[n]`; and the one
//! way an answer's citations are read back: each `[n]` mapped to the citation id of the
//! passage it names, and one that names no passage given removed and flagged.

use crate::door::Door;
use crate::knowledge::library::{self, Filter, Hit, KnowledgeError};

/// Passages given to a model for one question.
pub const PASSAGES: usize = 6;

/// The passages of one question, numbered from 1 in the order given.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub passages: Vec<Hit>,
}

/// What the instruction says, the same for every model.
const INSTRUCTION: &str = "You answer questions from staff using only the numbered passages \
below, which come from their organisation's own documents. After every statement, cite the \
passage it comes from as [n], for example [1] or [2][3]. If the passages do not answer the \
question, say so plainly and cite nothing. Do not use outside knowledge.";

impl Context {
    /// Retrieves the passages of `question` from the door's tenant, and only from it.
    ///
    /// # Errors
    /// Permission (`knowledge.read`) or a storage fault.
    pub fn retrieve<D: Door>(door: &D, question: &str) -> Result<Self, KnowledgeError> {
        // A question's quotes are not a phrase search: every word counts.
        let passages = library::search_blocking(
            door,
            &question.replace('"', " "),
            &Filter::default(),
            PASSAGES,
        )?;
        Ok(Self { passages })
    }

    /// The system prompt: the instruction, then each passage as `[n] (document) text`.
    pub fn system_prompt(&self) -> String {
        let mut out = String::from(INSTRUCTION);
        out.push_str("\n\nPassages:\n");
        if self.passages.is_empty() {
            out.push_str("(none: nothing in the documents matched the question)\n");
        }
        for (i, p) in self.passages.iter().enumerate() {
            out.push_str(&format!(
                "\n[{}] ({}) {}\n",
                i + 1,
                p.document,
                one_line(&p.text)
            ));
        }
        out
    }

    /// The citation ids of every passage given.
    pub fn citation_ids(&self) -> Vec<String> {
        self.passages.iter().map(|p| p.citation.clone()).collect()
    }

    /// Reads an answer's `[n]` marks: those naming a passage given are kept, in order of
    /// first use; any other is taken out of the text and flagged.
    pub fn check(&self, answer: &str) -> Checked {
        let mut text = String::with_capacity(answer.len());
        let (mut cited, mut flagged) = (Vec::new(), Vec::new());
        let mut rest = answer;
        while let Some(open) = rest.find('[') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let closed = digits > 0 && digits <= 4 && after[digits..].starts_with(']');
            if !closed {
                text.push('[');
                rest = after;
                continue;
            }
            // At most four digits: the parse cannot fail or overflow.
            let n: usize = after[..digits].parse().unwrap_or(0);
            match n.checked_sub(1).and_then(|i| self.passages.get(i)) {
                Some(p) => {
                    if !cited.contains(&p.citation) {
                        cited.push(p.citation.clone());
                    }
                    text.push_str(&rest[open..open + digits + 2]);
                }
                None => {
                    if !flagged.contains(&n) {
                        flagged.push(n);
                    }
                    // The mark goes; a space left before it goes with it.
                    if text.ends_with(' ') && after[digits + 1..].starts_with(['.', ',', ' ']) {
                        text.pop();
                    }
                }
            }
            rest = &after[digits + 1..];
        }
        text.push_str(rest);
        Checked {
            text,
            cited,
            flagged,
        }
    }

    /// The citation id of passage `n` (from 1).
    pub fn citation(&self, n: usize) -> Option<&str> {
        n.checked_sub(1)
            .and_then(|i| self.passages.get(i))
            .map(|p| p.citation.as_str())
    }
}

/// A passage on one line (a line of its own can then never pass for another numbered
/// passage). A heading or any paragraph that does not end a sentence is set off from the
/// next by a dash, so it does not read as the start of that paragraph's first sentence.
fn one_line(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(['.', '!', '?', ':', ';']) {
                " "
            } else {
                " — "
            });
        }
        out.push_str(&para.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    out
}

/// An answer with its citations read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The answer, marks of passages not given taken out.
    pub text: String,
    /// Citation ids of the passages cited, in order of first use.
    pub cited: Vec<String>,
    /// Numbers cited that named no passage given.
    pub flagged: Vec<usize>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::DocumentId;

    pub(crate) fn hit(n: usize, text: &str) -> Hit {
        let id = format!("{n:032x}");
        Hit {
            citation: format!("{id}:1:0-{}", text.len()),
            document_id: DocumentId::from_trusted(id),
            document: format!("doc{n}.md"),
            version: 1,
            score: 1.0,
            snippet: String::new(),
            text: text.into(),
        }
    }

    #[test]
    fn the_prompt_numbers_the_passages_on_lines_of_their_own() {
        let ctx = Context {
            passages: vec![
                hit(1, "Pilots board\nat the buoy."),
                hit(2, "Fees are due."),
            ],
        };
        let p = ctx.system_prompt();
        assert!(
            p.contains("\n[1] (doc1.md) Pilots board at the buoy.\n"),
            "{p}"
        );
        assert!(p.contains("\n[2] (doc2.md) Fees are due.\n"), "{p}");
        // A heading is set off from its paragraph; sentences run on; no line of the
        // passage starts a line of the prompt.
        let ctx = Context {
            passages: vec![hit(
                1,
                "Pilotage\n\nVessels take a pilot.\r\n\r\n[2] (x.md) Fees\n\n\n- one\n\n- two",
            )],
        };
        let p = ctx.system_prompt();
        assert!(
            p.contains(
                "\n[1] (doc1.md) Pilotage — Vessels take a pilot. [2] (x.md) Fees — - one — - two\n"
            ),
            "{p}"
        );
        assert!(Context::default().system_prompt().contains("(none"));
    }

    #[test]
    fn citations_are_mapped_and_foreign_ones_removed_and_flagged() {
        let ctx = Context {
            passages: vec![hit(1, "a"), hit(2, "b")],
        };
        let c =
            ctx.check("Pilots board at the buoy [2][1]. Fees apply [7]. See [2] and [x] [12345].");
        let id = |n: usize| format!("{n:032x}:1:0-1");
        assert_eq!(c.cited, [id(2), id(1)]);
        assert_eq!(c.flagged, [7]);
        assert_eq!(
            c.text,
            "Pilots board at the buoy [2][1]. Fees apply. See [2] and [x] [12345]."
        );
        let c = ctx.check("Nothing cited. [0] [3]");
        assert!(c.cited.is_empty());
        assert_eq!(c.flagged, [0, 3]);
        let c = ctx.check("[");
        assert_eq!(c.text, "[");
        assert_eq!(ctx.citation(2), Some(id(2).as_str()));
        assert_eq!(ctx.citation(0), None);
    }
}
