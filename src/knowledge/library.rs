//! A tenant's documents in its own file: versions, passages, and their FTS5 index
//! (`unicode61`, diacritics removed, BM25). Adding a file of a name already present makes
//! a new version; the earlier ones stay citable until the document is removed. Removal
//! deletes the versions, passages and index entries in the transaction of its audit entry.
//!
//! A citation id names a passage for good: `<document id>:<version>:<start>-<end>` (byte
//! offsets into that version's text), the same however often the index is rebuilt. The
//! passages hold the text (a version's text is not stored a second time), so any span
//! inside one passage can be shown.

use super::chunk::{self, Sizes};
use crate::door::{Audit, Door};
use crate::identity::Permission;
use crate::ids::DocumentId;
use crate::store::StoreError;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// The tenant file's knowledge tables.
pub const SCHEMA: crate::store::migrate::Module = crate::store::migrate::Module {
    name: "knowledge",
    steps: &[
        "
CREATE TABLE documents (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    created_us INTEGER NOT NULL
) STRICT;
CREATE TABLE versions (
    document_id TEXT NOT NULL REFERENCES documents(id),
    version     INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    PRIMARY KEY (document_id, version)
) STRICT;
CREATE TABLE passages (
    id          INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    start_byte  INTEGER NOT NULL,
    end_byte    INTEGER NOT NULL,
    body        TEXT NOT NULL
) STRICT;
CREATE INDEX passages_by_document ON passages(document_id, version);
CREATE VIRTUAL TABLE passages_fts USING fts5(
    body, content = 'passages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
",
        "
CREATE VIRTUAL TABLE passages_vocab USING fts5vocab(passages_fts, 'row');
",
        // A version's text was kept whole besides its passages, which cover it: each byte
        // was written twice. The passages are the text now; a citation's span is found
        // through the index on its start.
        "
ALTER TABLE versions DROP COLUMN body;
DROP INDEX passages_by_document;
CREATE INDEX passages_by_document ON passages(document_id, version, start_byte);
",
        // FTS5 keeps a transaction's new terms in memory up to `hashsize` bytes and writes a
        // segment each time it is full: at its default of 1 MiB a 10 MiB file was indexed
        // as a dozen small segments, merged again later. 16 MiB holds a whole document's
        // terms, bounded by the document size limit. A persistent setting (in `%_config`).
        "
INSERT INTO passages_fts (passages_fts, rank) VALUES ('hashsize', 16777216);
",
        // A version's passages are one run of ids (they are inserted together, in the order
        // of their text), so the version keeps its run and an index entry per passage (a
        // fifth of a CSV row's ingest, for its 32-character key) is not needed: removal
        // takes the runs, a citation is found by searching its run on `start_byte`.
        "
ALTER TABLE versions ADD COLUMN first_passage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN last_passage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN passages INTEGER NOT NULL DEFAULT 0;
UPDATE versions SET (first_passage, last_passage, passages) = (
    SELECT coalesce(min(p.id), 0), coalesce(max(p.id), 0), count(*) FROM passages p
    WHERE p.document_id = versions.document_id AND p.version = versions.version
);
DROP INDEX passages_by_document;
",
        // The index numbers passage `id` as `INDEX_BASE - id` (2^35 - id), so the newest
        // passages come first in the order FTS5 walks its lists forwards: a phrase search
        // takes the newest matches, and walking backwards (each page scanned once to find
        // its entries, then read again in reverse) was a tenth of a slow phrase's time. Not
        // negated: a negative number is a varint of 9 bytes, these take 5. The content is
        // read through a view that gives those numbers. Leaf pages of 16,000 bytes (FTS5's
        // default is 4,050) are a quarter as many blobs to open per list walked.
        "
DROP TABLE passages_vocab;
DROP TABLE passages_fts;
CREATE VIEW passages_newest_first AS SELECT 34359738368 - id AS rid, body FROM passages;
CREATE VIRTUAL TABLE passages_fts USING fts5(
    body, content = 'passages_newest_first', content_rowid = 'rid',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE passages_vocab USING fts5vocab(passages_fts, 'row');
INSERT INTO passages_fts (passages_fts, rank) VALUES ('hashsize', 16777216);
INSERT INTO passages_fts (passages_fts, rank) VALUES ('pgsz', 16000);
INSERT INTO passages_fts (rowid, body)
    SELECT 34359738368 - id, body FROM passages ORDER BY id DESC;
",
    ],
};

/// A word in more than this share of the passages says little about any of them: it is left
/// out of a query that has rarer words (ranking by it would cost a pass over most of the
/// index and change little).
const COMMON_SHARE: f64 = 0.2;

/// Most matches of a query ranked by BM25, the newest: a word in more passages than this is
/// ranked among its newest that many, which bounds a search's work (each ranked match costs
/// a lookup of its length) whatever the word. Asked for more (filters that leave too few),
/// the index ranks more, up to all.
const RANKED_NEWEST: i64 = 2_000;

/// Most words of a query searched as pairs first (a query of `n` words is `n(n-1)/2` pairs).
const TWO_OF_MAX: usize = 4;

/// Largest file taken.
pub const MAX_BYTES: usize = 10 * 1024 * 1024;
/// Most documents a tenant holds.
pub const MAX_DOCUMENTS: i64 = 10_000;
/// Most versions a document keeps: each is a full copy of its text, kept until the
/// document is removed, so a file added again and again must not grow the tenant forever.
pub const MAX_VERSIONS: i64 = 100;
/// Most results a search returns.
pub const MAX_LIMIT: usize = 100;
/// The index numbers passage `id` as `INDEX_BASE - id`, newest first (see the schema step
/// that says so, which writes it out); passage ids stay below it.
const INDEX_BASE: i64 = 1 << 35;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("{0}: this type of file is not taken; give plain text (.txt), Markdown (.md), HTML (.html), PDF (.pdf), CSV (.csv) or JSON (.json)")]
    Unsupported(String),
    #[error("{name}: {detail}")]
    Unreadable { name: String, detail: String },
    #[error("{0}: reading it took too long; give its text, or split it")]
    TooSlow(String),
    #[error("other PDFs are being read; try again in a minute")]
    Busy,
    #[error("{0}")]
    BadFilter(String),
    #[error("{name}: {detail}")]
    Malformed { name: String, detail: String },
    #[error("{0}: the content is not text (binary data or not UTF-8), whatever its name says")]
    NotText(String),
    #[error("{name}: larger than the {limit} bytes a document may have")]
    TooLarge { name: String, limit: usize },
    #[error("{0}: the file holds no text")]
    Empty(String),
    #[error("{name}: {detail}; split the file, or shorten its longest field names")]
    Expands { name: String, detail: String },
    #[error("invalid document name: {0}")]
    BadName(String),
    #[error("the tenant already holds {MAX_DOCUMENTS} documents; remove some first")]
    TooMany,
    #[error("{0}: the document already has {MAX_VERSIONS} versions; remove it (its versions go with it) and add it again")]
    TooManyVersions(String),
    #[error("no document {0}")]
    NotFound(String),
    #[error(transparent)]
    InvalidId(#[from] crate::ids::InvalidId),
    #[error(transparent)]
    Denied(#[from] crate::identity::Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
}

impl KnowledgeError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "KNW-0001",
            Self::NotText(_) => "KNW-0002",
            Self::TooLarge { .. } => "KNW-0003",
            Self::Empty(_) => "KNW-0004",
            Self::BadName(_) => "KNW-0005",
            Self::TooMany => "KNW-0006",
            Self::NotFound(_) => "KNW-0007",
            Self::Malformed { .. } => "KNW-0011",
            Self::Unreadable { .. } => "KNW-0012",
            Self::TooSlow(_) => "KNW-0013",
            Self::Busy => "KNW-0014",
            Self::BadFilter(_) => "KNW-0015",
            Self::Expands { .. } => "KNW-0016",
            Self::TooManyVersions(_) => "KNW-0017",
            Self::InvalidId(e) => e.code(),
            Self::Denied(_) => "KNW-0008",
            Self::Store(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

crate::domain_error!(KnowledgeError, |e| {
    use crate::error::ErrorKind;
    match e {
        KnowledgeError::Unsupported(_)
        | KnowledgeError::NotText(_)
        | KnowledgeError::TooLarge { .. }
        | KnowledgeError::Expands { .. }
        | KnowledgeError::Empty(_)
        | KnowledgeError::BadName(_)
        | KnowledgeError::Malformed { .. }
        | KnowledgeError::Unreadable { .. }
        | KnowledgeError::TooSlow(_)
        | KnowledgeError::BadFilter(_)
        | KnowledgeError::InvalidId(_) => ErrorKind::Invalid,
        KnowledgeError::Busy => ErrorKind::Busy,
        KnowledgeError::TooMany | KnowledgeError::TooManyVersions(_) => ErrorKind::Conflict,
        KnowledgeError::NotFound(_) => ErrorKind::NotFound,
        KnowledgeError::Denied(_) => ErrorKind::Forbidden,
        KnowledgeError::Store(e) => crate::error::DomainError::kind(e),
        KnowledgeError::Tenant(e) => crate::error::DomainError::kind(e),
    }
});

/// What a file is, by its name; its content must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Markdown,
    /// Its readable text.
    Html,
    /// The text of its text layer.
    Pdf,
    /// Each row a passage, its values named by the header.
    Csv,
    /// Each record (element of a top-level array, or the object) a passage, values named
    /// by their path.
    Json,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Markdown => "markdown",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
            Kind::Csv => "csv",
            Kind::Json => "json",
        }
    }

    /// Every kind, in the order lists show them.
    pub const ALL: [Kind; 6] = [
        Kind::Text,
        Kind::Markdown,
        Kind::Html,
        Kind::Pdf,
        Kind::Csv,
        Kind::Json,
    ];

    /// The kind of a name (`html`, `pdf`...), as filters give it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn of(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        match ext.as_str() {
            "txt" | "text" | "log" => Some(Kind::Text),
            "md" | "markdown" => Some(Kind::Markdown),
            "html" | "htm" => Some(Kind::Html),
            "pdf" => Some(Kind::Pdf),
            "csv" => Some(Kind::Csv),
            "json" => Some(Kind::Json),
            _ => None,
        }
    }
}

fn db(e: rusqlite::Error) -> KnowledgeError {
    KnowledgeError::Store(StoreError::from_sqlite("knowledge", 0, &e))
}

/// The text of a file, checked against what its name says it is: the file as it is for
/// text kinds, the extracted text for HTML and PDF.
fn text_of<'a>(
    name: &str,
    bytes: &'a [u8],
) -> Result<(Kind, std::borrow::Cow<'a, str>), KnowledgeError> {
    use super::extract::{self, Unreadable};
    use std::borrow::Cow;
    let kind = Kind::of(name).ok_or_else(|| KnowledgeError::Unsupported(name.to_string()))?;
    if bytes.len() > MAX_BYTES {
        return Err(KnowledgeError::TooLarge {
            name: name.to_string(),
            limit: MAX_BYTES,
        });
    }
    let extracted = match kind {
        Kind::Pdf => Some(extract::pdf(bytes)),
        Kind::Html => Some(extract::html(plain_text(name, bytes)?.as_bytes())),
        _ => None,
    };
    let text: Cow<'a, str> = match extracted {
        None => Cow::Borrowed(plain_text(name, bytes)?),
        Some(Ok(text)) => Cow::Owned(text),
        Some(Err(e)) => {
            return Err(match e {
                Unreadable::Mismatch(detail) => KnowledgeError::Unreadable {
                    name: name.into(),
                    detail: detail.into(),
                },
                Unreadable::Broken(detail) => KnowledgeError::Unreadable {
                    name: name.into(),
                    detail,
                },
                Unreadable::Slow => KnowledgeError::TooSlow(name.into()),
                Unreadable::Busy => KnowledgeError::Busy,
            })
        }
    };
    if text.trim().is_empty() {
        return Err(KnowledgeError::Empty(name.into()));
    }
    Ok((kind, text))
}

/// `bytes` as text, refused when it is not: not UTF-8, or with the NULs and control
/// characters of a binary file renamed.
fn plain_text<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, KnowledgeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KnowledgeError::NotText(name.into()))?;
    if memchr::memchr(0, bytes).is_some() || controls(bytes) * 100 > bytes.len().max(1) {
        return Err(KnowledgeError::NotText(name.into()));
    }
    Ok(text)
}

/// The control characters (Unicode `Cc`) of UTF-8 text other than line breaks, tabs and form
/// feeds, counted on its bytes: C0 and DEL are single bytes, C1 (U+0080 to U+009F) are
/// 0xC2 followed by 0x80 to 0x9F. Counted on bytes: decoding each character cost several
/// times the UTF-8 check itself.
fn controls(utf8: &[u8]) -> usize {
    let c0 = utf8
        .iter()
        .filter(|&&b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f))
        .count();
    let c1 = memchr::memchr_iter(0xc2, utf8)
        .filter(|&i| matches!(utf8.get(i + 1), Some(0x80..=0x9f)))
        .count();
    c0 + c1
}

/// Most bytes of one passage (a CSV row or JSON record longer than this is cut).
const PASSAGE_MAX: usize = 1200;

/// Most bytes of text a table's rows or records may come to, each value with its field's
/// name: a file is at most [`MAX_BYTES`], but a long header repeated on every short row
/// (or a long key over a long array) would otherwise render gigabytes from it.
const MAX_RENDERED: usize = 64 * 1024 * 1024;

/// Most rows or records of one file, each a passage.
const MAX_ROWS: usize = 1_000_000;

/// The text a version stores and its passages: prose as it is, cut on sentences; rows and
/// records rendered one per line as `field: value; field: value`, one passage each, so the
/// field names are searched and cited with their values.
fn render(
    name: &str,
    kind: Kind,
    text: &str,
) -> Result<(String, Vec<chunk::Span>), KnowledgeError> {
    let rows = match kind {
        Kind::Text | Kind::Html | Kind::Pdf => {
            let text = crate::text::without_controls(text).into_owned();
            let spans = chunk::passages(&text, Sizes::default());
            return Ok((text, spans));
        }
        Kind::Markdown => {
            let plain = markdown_text(text).ok_or_else(|| KnowledgeError::Expands {
                name: name.to_string(),
                detail: "its tables have far more cells than the file has characters (short \
                         rows under a wide header)"
                    .into(),
            })?;
            let plain = crate::text::without_controls(&plain).into_owned();
            if plain.trim().is_empty() {
                return Err(KnowledgeError::Empty(name.to_string()));
            }
            let spans = chunk::passages(&plain, Sizes::default());
            return Ok((plain, spans));
        }
        Kind::Csv => {
            let mut rows = Rows::for_csv(text);
            csv_records(name, text, |r| rows.push(r))?;
            rows
        }
        Kind::Json => {
            // Records name their fields already; a path adds its parents' names.
            let mut rows = Rows::for_table(text, text.len() / 2);
            json_records(name, text, |r| rows.push(r))?;
            rows
        }
    };
    if rows.full {
        return Err(expands(name));
    }
    if rows.spans.is_empty() {
        return Err(KnowledgeError::Empty(name.to_string()));
    }
    Ok((rows.body, rows.spans))
}

/// The refusal of a table whose rows or records would pass their bounds.
fn expands(name: &str) -> KnowledgeError {
    KnowledgeError::Expands {
        name: name.to_string(),
        detail: format!(
            "its rows or records come to more than {} MiB of text with their field names, or \
             are more than {MAX_ROWS}",
            MAX_RENDERED >> 20
        ),
    }
}

/// The text of rows or records, one per line, and their passages.
struct Rows {
    body: String,
    spans: Vec<chunk::Span>,
    /// A row was refused: the text or the rows would have passed their bounds.
    full: bool,
}

impl Rows {
    /// Room for the rows of table `text`, which come out longer than they went in (each
    /// value gets its field's name): `extra` bytes more, at most twice the text's length
    /// more. A buffer that runs out is copied into one twice its size, on fresh pages the
    /// kernel must clear: for a 4 MiB CSV that was half the time spent before the write.
    fn for_table(text: &str, extra: usize) -> Self {
        Self {
            body: String::with_capacity((text.len() + extra.min(2 * text.len())).min(MAX_RENDERED)),
            spans: Vec::new(),
            full: false,
        }
    }

    /// [`Rows::for_table`] for a CSV file: each row gains at most the header line's length
    /// and three bytes per field (`: ` after the name, `; ` for `,`).
    fn for_csv(text: &str) -> Self {
        let header = text.lines().next().unwrap_or_default();
        let fields = memchr::memchr_iter(b',', header.as_bytes()).count() + 1;
        let rows = memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1;
        let mut rows_out = Self::for_table(
            text,
            rows.saturating_mul(header.len().saturating_add(3 * fields)),
        );
        // A span is 16 bytes: at most one for every 16 bytes of the file is reserved, so a
        // file of line breaks alone does not ask for sixteen times its size.
        rows_out.spans.reserve(rows.min(text.len() / 16));
        rows_out
    }

    /// Adds a row as one passage (cut on sentences when it is longer than a passage may
    /// be); a row with nothing in it adds nothing. False, and nothing added, when the rows
    /// have reached their bounds ([`MAX_RENDERED`], [`MAX_ROWS`]): the caller stops.
    fn push(&mut self, r: &str) -> bool {
        if r.trim().is_empty() {
            return !self.full;
        }
        if self.full
            || self.body.len().saturating_add(r.len()) >= MAX_RENDERED
            || self.spans.len() >= MAX_ROWS
        {
            self.full = true;
            return false;
        }
        let start = self.body.len();
        // One line each, and no control character (a JSON value's `\u001b` is an escape
        // once read) in what is stored and shown.
        if memchr::memchr2(b'\n', b'\r', r.as_bytes()).is_some() {
            let r = r.replace(['\n', '\r'], " ");
            self.body.push_str(&crate::text::without_controls(&r));
        } else {
            self.body.push_str(&crate::text::without_controls(r));
        }
        let end = self.body.len();
        self.body.push('\n');
        if end - start <= PASSAGE_MAX {
            self.spans.push(chunk::Span { start, end });
        } else {
            let sizes = Sizes {
                max: PASSAGE_MAX,
                overlap: 0,
            };
            let line = &self.body[start..end];
            let cut = chunk::passages(line, sizes);
            self.spans.extend(cut.into_iter().map(|s| chunk::Span {
                start: start + s.start,
                end: start + s.end,
            }));
        }
        true
    }
}

/// The prose of a Markdown document: text, code and link texts kept, markup dropped; each
/// block (heading, paragraph, list item, table row, code block) on lines of its own, so
/// passages are cut between blocks. `None` when its tables would be far larger than the
/// file: the parser pads every short row with empty cells up to the header's width, a node
/// each, so a few bytes of rows under a wide header became gigabytes.
fn markdown_text(source: &str) -> Option<String> {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    if table_cells(source) > source.len() + MAX_PADDED_CELLS {
        return None;
    }
    let mut out = String::with_capacity(source.len());
    let block_end = |out: &mut String| {
        while out.ends_with([' ', '\n']) {
            out.pop();
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
    };
    // An HTML block's lines, read together as a page once it ends (a `<script>` over many
    // lines is skipped whole, as on any page).
    let mut html = String::new();
    for event in Parser::new_ext(
        source,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    ) {
        match event {
            Event::Html(t) => html.push_str(&t),
            Event::End(TagEnd::HtmlBlock) => {
                if let Ok(text) = super::extract::html(html.as_bytes()) {
                    out.push_str(&text);
                }
                html.clear();
                block_end(&mut out);
            }
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::Start(Tag::Item) => out.push_str("- "),
            Event::End(TagEnd::TableCell) => out.push_str(" | "),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableRow
                | TagEnd::TableHead
                | TagEnd::BlockQuote(_),
            ) => block_end(&mut out),
            _ => {}
        }
    }
    Some(out.trim_end().to_string())
}

/// Table cells a Markdown file may have beyond one per byte: a cell written costs at least
/// a byte, so only padding goes past that.
const MAX_PADDED_CELLS: usize = 1 << 16;

/// At most how many cells the tables of `source` have once padded: each table's width (the
/// cells of its delimiter row) times its rows. Counted on lines, after any block-quote
/// markers and indentation, so a table inside a quote or a list counts too; it may count a
/// line that is not a table, never miss one that is.
fn table_cells(source: &str) -> usize {
    let lines: Vec<&str> = source
        .lines()
        .map(|l| l.trim_start_matches(|c: char| c == '>' || c.is_whitespace()))
        .collect();
    // The non-blank lines from each line on, counted from the end: one pass, however many
    // delimiter rows follow each other.
    let mut run = vec![0usize; lines.len() + 1];
    for i in (0..lines.len()).rev() {
        run[i] = if lines[i].trim().is_empty() {
            0
        } else {
            run[i + 1] + 1
        };
    }
    let mut total = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let delimiter = line.contains('-')
            && line.contains('|')
            && line
                .chars()
                .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'));
        if !delimiter {
            continue;
        }
        let width = line
            .trim_matches(|c| c == '|' || c == ' ' || c == '\t')
            .split('|')
            .count();
        let rows = 1 + run[i + 1];
        total = total.saturating_add(width.saturating_mul(rows));
    }
    total
}

fn malformed(name: &str, detail: impl Into<String>) -> KnowledgeError {
    KnowledgeError::Malformed {
        name: name.to_string(),
        detail: detail.into(),
    }
}

/// Each row of a CSV file as `field: value; field: value`, handed to `emit` in order.
fn csv_records(
    name: &str,
    text: &str,
    mut emit: impl FnMut(&str) -> bool,
) -> Result<(), KnowledgeError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| malformed(name, format!("the header line cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    // One record and one line reused for every row (a large file has many small rows),
    // read until the end.
    let (mut row, mut line, mut rows) = (csv::StringRecord::new(), String::new(), 0u64);
    let mut read = |row: &mut csv::StringRecord, rows: u64| {
        reader.read_record(row).map_err(|e| {
            let at = e.position().map_or(rows + 2, csv::Position::line);
            malformed(name, format!("line {at}: {}", csv_reason(&e)))
        })
    };
    while read(&mut row, rows)? {
        rows += 1;
        line.clear();
        for (h, v) in headers.iter().zip(row.iter()) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if !line.is_empty() {
                line.push_str("; ");
            }
            line.push_str(h);
            line.push_str(": ");
            line.push_str(v);
        }
        if !emit(&line) {
            break;
        }
    }
    Ok(())
}

/// The reason of a CSV error without the byte positions the library adds.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
        _ => "cannot be read as CSV".into(),
    }
}

/// Each record of a JSON file (an element of its top-level array, or the object it is) as
/// `path: value; path: value`, handed to `emit` in order.
fn json_records(
    name: &str,
    text: &str,
    emit: impl FnMut(&str) -> bool,
) -> Result<(), KnowledgeError> {
    use serde::Deserializer as _;
    let bad = |e: serde_json::Error| {
        malformed(
            name,
            format!("line {}, column {}: not valid JSON", e.line(), e.column()),
        )
    };
    // The records are read one at a time, each rendered and dropped before the next: a file
    // read whole into one tree takes many times its size in memory.
    let mut records = Records {
        fields: Vec::new(),
        line: String::new(),
        emit,
        room: MAX_RENDERED,
    };
    // Windows tools write a byte order mark before UTF-8 JSON; the parser reads it as junk.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let shape = de.deserialize_any(&mut records).map_err(bad)?;
    de.end().map_err(bad)?;
    if records.room == 0 {
        return Err(expands(name));
    }
    match shape {
        Shape::Records => Ok(()),
        Shape::Other => Err(malformed(name, "give an array of records or one object")),
    }
}

/// What the top of a JSON file was.
enum Shape {
    /// An array of records, or one object (a record).
    Records,
    /// A number, string, boolean or null.
    Other,
}

/// Renders each record of a JSON file as `path: value; path: value` as it is read, for
/// `emit`; one list of fields and one line serve every record.
struct Records<F> {
    fields: Vec<String>,
    line: String,
    emit: F,
    /// Bytes of names and values the records may still be rendered into (see
    /// [`flatten`]); at none, no more records are rendered.
    room: usize,
}

impl<F: FnMut(&str) -> bool> Records<F> {
    fn record(&mut self, r: &serde_json::Value) {
        if self.room == 0 {
            return;
        }
        self.fields.clear();
        flatten("", r, &mut self.fields, &mut self.room);
        if self.room == 0 {
            // Cut short: the record is not whole; the file is refused.
            return;
        }
        self.line.clear();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                self.line.push_str("; ");
            }
            self.line.push_str(f);
        }
        if !(self.emit)(&self.line) {
            self.room = 0;
        }
    }
}

impl<'de, F: FnMut(&str) -> bool> serde::de::Visitor<'de> for &mut Records<F> {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of records or one object")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while let Some(r) = seq.next_element::<serde_json::Value>()? {
            self.record(&r);
        }
        Ok(Shape::Records)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
        use serde::Deserialize;
        let r = serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.record(&r);
        Ok(Shape::Records)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
}

/// `path: value` for every scalar under `v`, nested names joined with dots, within `room`
/// bytes: each path made and each value taken is counted against it (a path is made for
/// every member, so a long key over a long array of nulls costs its length each time), and
/// at none the walk stops with `room` at zero.
fn flatten(path: &str, v: &serde_json::Value, out: &mut Vec<String>, room: &mut usize) {
    use serde_json::Value;
    if *room == 0 {
        return;
    }
    let nested = |k: &str, v: &Value, out: &mut Vec<String>, room: &mut usize| {
        let cost = path.len() + 1 + k.len();
        if cost >= *room {
            *room = 0;
            return;
        }
        *room -= cost;
        let p = if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        };
        flatten(&p, v, out, room);
    };
    let take = |line: String, out: &mut Vec<String>, room: &mut usize| {
        if line.len() >= *room {
            *room = 0;
        } else {
            *room -= line.len();
            out.push(line);
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                nested(k, v, out, room);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                nested(&i.to_string(), v, out, room);
            }
        }
        Value::Null => {}
        Value::String(s) if path.is_empty() => take(s.clone(), out, room),
        Value::String(s) => take(format!("{path}: {s}"), out, room),
        other if path.is_empty() => take(other.to_string(), out, room),
        other => take(format!("{path}: {other}"), out, room),
    }
}

/// A document added (or a new version of one).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Added {
    pub id: DocumentId,
    pub name: String,
    pub version: i64,
    pub passages: usize,
}

/// Adds a file: a new document, or a new version of the document of the same name.
///
/// # Errors
/// Permission (`knowledge.write`); an unsupported type, content that is not what the name
/// says, too large, empty; too many documents; a storage fault (then nothing is added).
pub fn add_blocking<D: Door>(door: &D, name: &str, bytes: &[u8]) -> Result<Added, KnowledgeError> {
    door.caller().require(Permission::KnowledgeWrite)?;
    let name =
        crate::text::display_name(name, 255).map_err(|p| KnowledgeError::BadName(p.to_string()))?;
    let (kind, text) = text_of(&name, bytes)?;
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    let (text, spans) = render(&name, kind, &text)?;
    let (text, fresh_id) = (
        text,
        DocumentId::from_trusted(crate::keyring::random_id().map_err(|e| StoreError::Io {
            what: "knowledge".into(),
            reason: e.to_string(),
        })?),
    );
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        let existing: Option<String> = c
            .query_row("SELECT id FROM documents WHERE name = ?1", [&name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let id = match existing {
            Some(id) => DocumentId::from_trusted(id),
            None => {
                let count: i64 = c
                    .query_row("SELECT count(*) FROM documents", [], |r| r.get(0))
                    .map_err(db)?;
                if count >= MAX_DOCUMENTS {
                    return Err(KnowledgeError::TooMany);
                }
                c.execute(
                    "INSERT INTO documents (id, name, kind, created_us) VALUES (?1, ?2, ?3, ?4)",
                    params![fresh_id.as_str(), name, kind.as_str(), now],
                )
                .map_err(db)?;
                fresh_id.clone()
            }
        };
        let latest: Option<(i64, String, i64)> = c
            .query_row(
                "SELECT version, sha256, passages FROM versions WHERE document_id = ?1 \
                 ORDER BY version DESC LIMIT 1",
                [id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)?;
        // The same bytes again are the latest version already: no copy of them is kept.
        if let Some((version, _, passages)) = latest.as_ref().filter(|l| l.1 == sha) {
            let added = Added {
                id: id.clone(),
                name: name.clone(),
                version: *version,
                passages: usize::try_from(*passages).unwrap_or(0),
            };
            let audit = Audit::new("knowledge.add", id.as_str()).params(serde_json::json!({
                "name": name, "kind": kind.as_str(), "version": version, "sha256": sha,
                "unchanged": true,
            }));
            return Ok((added, audit));
        }
        let versions: i64 = c
            .query_row(
                "SELECT count(*) FROM versions WHERE document_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .map_err(db)?;
        if versions >= MAX_VERSIONS {
            return Err(KnowledgeError::TooManyVersions(name.clone()));
        }
        let version = latest.map_or(1, |l| l.0 + 1);
        let run = put_passages(c, &id, version, &text, &spans).map_err(db)?;
        c.execute(
            "INSERT INTO versions (document_id, version, sha256, bytes, created_us, \
               first_passage, last_passage, passages) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id.as_str(),
                version,
                sha,
                text.len() as i64,
                now,
                run.first,
                run.last,
                spans.len() as i64
            ],
        )
        .map_err(db)?;
        let added = Added {
            id: id.clone(),
            name: name.clone(),
            version,
            passages: spans.len(),
        };
        let audit = Audit::new("knowledge.add", id.as_str()).params(serde_json::json!({
            "name": name, "kind": kind.as_str(), "version": version, "bytes": text.len(),
            "sha256": sha, "passages": spans.len(),
        }));
        Ok((added, audit))
    })
}

/// The ids a version's passages were given: `first..=last`, none when `last < first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: i64,
    last: i64,
}

/// Stores and indexes a version's passages, the `spans` of its `text`, in the order of the
/// text; gives the run of ids they got, which the version's row keeps.
fn put_passages(
    c: &rusqlite::Connection,
    id: &DocumentId,
    version: i64,
    text: &str,
    spans: &[chunk::Span],
) -> rusqlite::Result<Run> {
    let mut put = c.prepare_cached(
        "INSERT INTO passages (document_id, version, start_byte, end_byte, body) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    // A citation is found by a binary search of the run on `start_byte`.
    let mut ordered: Vec<&chunk::Span> = spans.iter().collect();
    ordered.sort_by_key(|s| s.start);
    let mut run = Run { first: 0, last: 0 };
    for (i, s) in ordered.into_iter().enumerate() {
        put.execute(params![
            id.as_str(),
            version,
            s.start as i64,
            s.end as i64,
            &text[s.start..s.end]
        ])?;
        let row = c.last_insert_rowid();
        if row >= INDEX_BASE {
            // Numbered in the index as `INDEX_BASE - id`: an id at or past it has no number.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                Some("passage ids are used up".into()),
            ));
        }
        if i == 0 {
            run.first = row;
        } else if row != run.last + 1 {
            // A new row takes the largest id plus one: within one transaction the ids of
            // a run follow each other. Anything else would break every lookup by run.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                Some("passage ids are not consecutive".into()),
            ));
        }
        run.last = row;
    }
    // Indexed in one statement: one call into FTS5 for the lot costs less than one per
    // passage. In the index's order (`INDEX_BASE - id`, newest first): FTS5 writes out what
    // it holds in memory each time a number is lower than the one before.
    if !spans.is_empty() {
        c.execute(
            "INSERT INTO passages_fts (rowid, body) \
             SELECT ?3 - id, body FROM passages WHERE id BETWEEN ?1 AND ?2 ORDER BY id DESC",
            [run.first, run.last, INDEX_BASE],
        )?;
    }
    Ok(run)
}

/// Deletes every passage of every version of `id`, and their index entries; gives how
/// many passages there were.
fn take_passages(c: &rusqlite::Connection, id: &DocumentId) -> rusqlite::Result<usize> {
    // The index holds no copy of its own (external content): each entry is taken out with
    // the text it was made from. Each version's run, checked against its owner all the
    // same, so that a wrong run can only leave rows behind, never take another's.
    let runs = "SELECT first_passage, last_passage FROM versions WHERE document_id = ?1";
    c.execute(
        &format!(
            "INSERT INTO passages_fts (passages_fts, rowid, body) \
             SELECT 'delete', {INDEX_BASE} - p.id, p.body FROM ({runs}) r \
             JOIN passages p ON p.id BETWEEN r.first_passage AND r.last_passage \
             WHERE p.document_id = ?1 ORDER BY p.id DESC"
        ),
        [id.as_str()],
    )?;
    c.execute(
        &format!(
            "DELETE FROM passages WHERE id IN (SELECT p.id FROM ({runs}) r \
             JOIN passages p ON p.id BETWEEN r.first_passage AND r.last_passage \
             WHERE p.document_id = ?1)"
        ),
        [id.as_str()],
    )
}

/// A document as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Document {
    pub id: DocumentId,
    pub name: String,
    #[schema(value_type = Kind)]
    pub kind: String,
    pub versions: i64,
    pub latest_bytes: i64,
    pub passages: i64,
    pub created_us: i64,
}

/// Every document, by name.
///
/// # Errors
/// Permission (`knowledge.read`) or a storage fault.
pub fn list_blocking<D: Door>(door: &D) -> Result<Vec<Document>, KnowledgeError> {
    door.caller().require(Permission::KnowledgeRead)?;
    door.read_blocking(|c| documents(c, None))
}

/// Every document by name, or the one `only` names.
fn documents(
    c: &rusqlite::Connection,
    only: Option<&DocumentId>,
) -> Result<Vec<Document>, KnowledgeError> {
    let mut st = c
        .prepare_cached(
            "SELECT d.id, d.name, d.kind, d.created_us, \
               (SELECT count(*) FROM versions v WHERE v.document_id = d.id), \
               (SELECT bytes FROM versions v WHERE v.document_id = d.id \
                  ORDER BY version DESC LIMIT 1), \
               (SELECT coalesce(sum(passages), 0) FROM versions v WHERE v.document_id = d.id) \
             FROM documents d WHERE ?1 IS NULL OR d.id = ?1 ORDER BY d.name",
        )
        .map_err(db)?;
    let rows = st
        .query_map([only.map(DocumentId::as_str)], |r| {
            Ok(Document {
                id: DocumentId::from_trusted(r.get(0)?),
                name: r.get(1)?,
                kind: r.get(2)?,
                created_us: r.get(3)?,
                versions: r.get(4)?,
                latest_bytes: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                passages: r.get(6)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// A version of a document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Version {
    pub version: i64,
    pub sha256: String,
    pub bytes: i64,
    pub passages: i64,
    pub created_us: i64,
}

/// A document with its versions, newest first.
///
/// # Errors
/// Permission (`knowledge.read`), no such document, or a storage fault.
pub fn versions_blocking<D: Door>(
    door: &D,
    id: &DocumentId,
) -> Result<(Document, Vec<Version>), KnowledgeError> {
    door.caller().require(Permission::KnowledgeRead)?;
    let id = id.clone();
    // The document and its versions in one read, so they agree.
    door.read_blocking(move |c| {
        let doc = documents(c, Some(&id))?
            .pop()
            .ok_or_else(|| KnowledgeError::NotFound(id.to_string()))?;
        let mut st = c
            .prepare(
                "SELECT v.version, v.sha256, v.bytes, v.created_us, v.passages \
                 FROM versions v WHERE v.document_id = ?1 ORDER BY v.version DESC",
            )
            .map_err(db)?;
        let rows = st
            .query_map([id.as_str()], |r| {
                Ok(Version {
                    version: r.get(0)?,
                    sha256: r.get(1)?,
                    bytes: r.get(2)?,
                    created_us: r.get(3)?,
                    passages: r.get(4)?,
                })
            })
            .map_err(db)?;
        let versions = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
        Ok((doc, versions))
    })
}

/// Removes a document: every version, passage and index entry, with its audit entry.
///
/// # Errors
/// Permission (`knowledge.write`), no such document, or a storage fault (then nothing
/// is removed).
pub fn remove_blocking<D: Door>(door: &D, id: &DocumentId) -> Result<(), KnowledgeError> {
    door.caller().require(Permission::KnowledgeWrite)?;
    let id = id.clone();
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let name: Option<String> = c
            .query_row(
                "SELECT name FROM documents WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        let name = name.ok_or_else(|| KnowledgeError::NotFound(id.to_string()))?;
        let passages = take_passages(c, &id).map_err(db)?;
        let versions = c
            .execute("DELETE FROM versions WHERE document_id = ?1", [id.as_str()])
            .map_err(db)?;
        c.execute("DELETE FROM documents WHERE id = ?1", [id.as_str()])
            .map_err(db)?;
        let audit = Audit::new("knowledge.remove", id.as_str()).params(serde_json::json!({
            "name": name, "versions": versions, "passages": passages,
        }));
        Ok(((), audit))
    })
}

/// A passage found by a search.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub citation: String,
    pub document_id: DocumentId,
    pub document: String,
    pub version: i64,
    /// BM25, higher is better.
    pub score: f64,
    /// The passage's best fragment, matched words between `**`.
    pub snippet: String,
    pub text: String,
}

/// What a search is narrowed to; each part left empty does not narrow it.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub document: Option<DocumentId>,
    pub kind: Option<Kind>,
    /// Only versions added at or after this time (microseconds since the epoch).
    pub since_us: Option<i64>,
    /// Only versions added before this time.
    pub until_us: Option<i64>,
}

impl Filter {
    /// A filter from the words a person gives (CLI flags, form fields, query parameters):
    /// a document id, a type name, and dates as `YYYY-MM-DD` or RFC 3339. Empty strings
    /// count as not given; anything else is taken as given, not trimmed, so what the API
    /// documents is exactly what it takes.
    ///
    /// # Errors
    /// A malformed id, an unknown type, a date that is not one, or `since` after `until`;
    /// the message names the field and the form it takes.
    pub fn parse(
        document: Option<&str>,
        kind: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Self, KnowledgeError> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.filter(|v| !v.is_empty())
        }
        let document = given(document).map(DocumentId::parse).transpose()?;
        let kind = given(kind)
            .map(|k| {
                Kind::parse(k).ok_or_else(|| {
                    KnowledgeError::BadFilter(format!(
                        "type {k:?} is not one; give text, markdown, html, pdf, csv or json"
                    ))
                })
            })
            .transpose()?;
        let date = |field: &str, v: Option<&str>| -> Result<Option<i64>, KnowledgeError> {
            given(v)
                .map(|v| {
                    let full = if v.len() == 10 {
                        format!("{v}T00:00:00Z")
                    } else {
                        v.to_string()
                    };
                    humantime::parse_rfc3339_weak(&full)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_micros()).ok())
                        .ok_or_else(|| {
                            KnowledgeError::BadFilter(format!(
                                "{field} {v:?} is not a date; give YYYY-MM-DD or an RFC 3339 time"
                            ))
                        })
                })
                .transpose()
        };
        let (since_us, until_us) = (date("since", since)?, date("until", until)?);
        if let (Some(s), Some(u)) = (since_us, until_us) {
            if s >= u {
                return Err(KnowledgeError::BadFilter(
                    "since must be before until".into(),
                ));
            }
        }
        Ok(Self {
            document,
            kind,
            since_us,
            until_us,
        })
    }
}

/// The passages of the latest versions that best match `query` and `filter`, best first, at
/// most `limit` (1 to 100). Earlier versions stay citable, but are not searched.
///
/// # Errors
/// Permission (`knowledge.read`) or a storage fault. Any query text is answered: a query
/// with no word finds nothing.
pub fn search_blocking<D: Door>(
    door: &D,
    query: &str,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Hit>, KnowledgeError> {
    door.caller().require(Permission::KnowledgeRead)?;
    door.read_blocking(|c| search_in(c, query, filter, limit))
}

/// [`search_blocking`] on a connection the caller has already opened through the door (the
/// assistant reads its thread, policy and passages in one read). Checks no permission.
///
/// # Errors
/// A storage fault.
pub fn search_in(
    c: &rusqlite::Connection,
    query: &str,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Hit>, KnowledgeError> {
    let terms = super::query::content_terms(query);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    // The highest row id: as many passages as were ever indexed, a bound on how many there
    // are, read from the end of the table instead of counted page by page.
    let total: i64 = c
        .query_row("SELECT coalesce(max(id), 0) FROM passages", [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    // Quoted phrases are required as written.
    let (phrases, loose) = super::query::phrases(query);
    if !phrases.is_empty() {
        let loose = super::query::content_terms(&loose);
        let hits = phrase_search(c, &phrases, &loose, filter, limit, total)?;
        return Ok(snippets(hits, &terms));
    }
    let counted = passage_counts(c, &terms)?;
    // The rare words, when one of them occurs at all (in an index big enough for a share to
    // mean something); otherwise every word. A word the index does not hold costs nothing.
    let rare: Vec<&(String, i64)> = counted
        .iter()
        .filter(|(_, n)| total < 100 || (*n as f64) <= COMMON_SHARE * total as f64)
        .collect();
    let used: Vec<String> = if rare.iter().any(|(_, n)| *n > 0) {
        rare.iter().map(|(t, _)| t.clone()).collect()
    } else if total >= 100 && counted.len() > 3 {
        // Every word is common: the three least common carry the ranking.
        let mut by_count = counted.clone();
        by_count.sort_by_key(|(_, n)| *n);
        by_count.into_iter().take(3).map(|(t, _)| t).collect()
    } else {
        terms.clone()
    };
    let Some(expr) = super::query::fts5_of(&used) else {
        return Ok(Vec::new());
    };
    // Passages that hold at least two of the words, when enough do: their intersections
    // are found by skipping through the words' lists, where ranking every passage that holds
    // any of them scores a large share of the index. BM25 counts a word once for each pair
    // it completes in a passage: a passage with two of the words scores as with the words
    // OR-ed, one with more of them higher (as a coordination factor would).
    if (2..=TWO_OF_MAX).contains(&used.len()) {
        if let Some(two) = super::query::fts5_two_of(&used) {
            let hits = widening(c, &two, filter, limit, total, Order::Rank)?;
            if hits.len() >= limit.clamp(1, MAX_LIMIT) {
                return Ok(snippets(hits, &terms));
            }
        }
    }
    let hits = widening(c, &expr, filter, limit, total, Order::Rank)?;
    Ok(snippets(hits, &terms))
}

/// Each word with the number of passages that hold it.
fn passage_counts(
    c: &rusqlite::Connection,
    words: &[String],
) -> Result<Vec<(String, i64)>, KnowledgeError> {
    let mut df = c
        .prepare_cached("SELECT doc FROM passages_vocab WHERE term = ?1")
        .map_err(db)?;
    let mut counted = Vec::with_capacity(words.len());
    for t in words {
        let n: i64 = df
            .query_row([super::query::fold(t)], |r| r.get(0))
            .optional()
            .map_err(db)?
            .unwrap_or(0);
        counted.push((t.clone(), n));
    }
    Ok(counted)
}

/// The passages that hold every phrase (and one of the `loose` words, if any), the newest
/// matches first, ranked among themselves. A phrase of common words can match a large share
/// of the index, so this takes the first few hundred matches from the newest, and ranks
/// those here ([`PhraseRank`]): FTS5's BM25 would first count every passage that holds the
/// phrase, a walk over most of the index for such a phrase. Where there are no more matches
/// than are taken (most phrases), every match is ranked.
fn phrase_search(
    c: &rusqlite::Connection,
    phrases: &[Vec<String>],
    loose: &[String],
    filter: &Filter,
    limit: usize,
    total: i64,
) -> Result<Vec<Hit>, KnowledgeError> {
    let Some(exact) = super::query::fts5_phrases(phrases, loose) else {
        return Ok(Vec::new());
    };
    let fold = |words: &[String]| words.iter().map(|w| super::query::fold(w)).collect();
    let rank = PhraseRank {
        phrases: phrases.iter().map(|p| fold(p)).collect(),
        loose: passage_counts(c, loose)?
            .into_iter()
            .map(|(w, n)| (super::query::fold(&w), n))
            .collect(),
        total,
    };
    widening(c, &exact, filter, limit, total, Order::Newest(&rank))
}

/// BM25 (as FTS5 computes it: k1 1.2, b 0.75) of passages that hold every phrase, among
/// themselves: a phrase's passage count is taken as the number of matches handed over (a
/// lower bound when there are more), a loose word's from the index's vocabulary, and the
/// average length from the passages ranked.
#[cfg_attr(test, derive(Default))]
struct PhraseRank {
    /// Each phrase's words, folded as the index folds them.
    phrases: Vec<Vec<String>>,
    /// Loose words, folded, with the number of passages that hold each.
    loose: Vec<(String, i64)>,
    /// How many passages the index holds (at most).
    total: i64,
}

impl PhraseRank {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;

    fn idf(&self, holding: usize) -> f64 {
        let (n, total) = (holding as f64, self.total.max(1) as f64);
        ((total - n + 0.5) / (n + 0.5)).ln().max(1e-6)
    }

    /// Scores `hits` (every one holds the phrases; `matched` were handed over), best first.
    fn rank(&self, hits: &mut [Hit], matched: usize) {
        let words: Vec<Vec<String>> = hits
            .iter()
            .map(|h| super::query::folded_words(&h.text).collect())
            .collect();
        let average =
            (words.iter().map(Vec::len).sum::<usize>() as f64 / words.len().max(1) as f64).max(1.0);
        let phrase_idf = self.idf(matched);
        for (hit, words) in hits.iter_mut().zip(&words) {
            let norm = Self::K1 * (1.0 - Self::B + Self::B * words.len() as f64 / average);
            let part = |tf: usize, idf: f64| {
                let tf = tf as f64;
                idf * tf * (Self::K1 + 1.0) / (tf + norm)
            };
            let phrases: f64 = self
                .phrases
                .iter()
                .map(|p| {
                    let tf = words
                        .windows(p.len().max(1))
                        .filter(|w| w == &p.as_slice())
                        .count();
                    part(tf, phrase_idf)
                })
                .sum();
            let loose: f64 = self
                .loose
                .iter()
                .map(|(l, n)| {
                    let tf = words.iter().filter(|w| *w == l).count();
                    part(tf, self.idf(usize::try_from(*n).unwrap_or(0)))
                })
                .sum();
            hit.score = phrases + loose;
        }
        // Stable: equal scores stay newest first.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    }
}

/// Which matches the index hands over first, and who ranks them.
#[derive(Clone, Copy)]
enum Order<'a> {
    /// The best by FTS5's BM25 (every match is scored).
    Rank,
    /// The newest, as they come, ranked among themselves here.
    Newest(&'a PhraseRank),
}

/// The best `limit` hits of `expr` that pass `filter`. The index ranks alone first (FTS5's
/// fast `ORDER BY rank LIMIT`), a few times more passages than wanted; the versions and
/// filters are applied to those. When too few pass and the index had more, it is asked
/// again for many more, and at last for all (`total` bounds how many it holds).
fn widening(
    c: &rusqlite::Connection,
    expr: &str,
    filter: &Filter,
    limit: usize,
    total: i64,
    order: Order<'_>,
) -> Result<Vec<Hit>, KnowledgeError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut take = (limit * 5).max(100) as i64;
    loop {
        let (hits, matched) = ranked(c, expr, filter, limit, take, order)?;
        if hits.len() >= limit || take < 0 || take >= total || (matched as i64) < take {
            return Ok(hits);
        }
        take = if take.saturating_mul(10) >= total {
            -1
        } else {
            take * 10
        };
    }
}

/// Each hit's snippet, with `terms` marked.
fn snippets(hits: Vec<Hit>, terms: &[String]) -> Vec<Hit> {
    hits.into_iter()
        .map(|mut h| {
            h.snippet = super::query::snippet(&h.text, terms, 24);
            h
        })
        .collect()
}

/// The best `limit` passages among the index's first `take` matches (all when negative),
/// in `order`, that are of latest versions and pass `filter`; and how many matches the
/// index gave (fewer than `take`: it has no more).
fn ranked(
    c: &rusqlite::Connection,
    expr: &str,
    filter: &Filter,
    limit: usize,
    take: i64,
    order: Order<'_>,
) -> Result<(Vec<Hit>, usize), KnowledgeError> {
    // The index's matches are taken once (`MATERIALIZED`), counted, and joined to their
    // passages; the versions and filters narrow them. Matches taken newest first are not
    // scored by FTS5 (see `PhraseRank`): all that pass come back, newest first.
    let (score, first, then, outer) = match order {
        Order::Rank => ("rank", "rank", "t.rank", "h.rank"),
        Order::Newest(_) => ("0.0", "id DESC", "t.id DESC", "h.id DESC"),
    };
    // The newest matches the index walks: BM25 looks up each one's length, so a word in a
    // large share of the passages would cost a lookup per passage that holds it.
    let window = match order {
        Order::Rank if take >= 0 => take.max(RANKED_NEWEST),
        _ => take,
    };
    // The filtered passages are joined to one row of their own, so that the count of
    // matches comes back even when none passes (a row of nulls), and the caller does not
    // ask the index again for more of what it does not have.
    let sql = format!(
        "WITH t AS MATERIALIZED (SELECT id, rank FROM \
                                   (SELECT {INDEX_BASE} - rowid AS id, {score} AS rank FROM passages_fts \
                                    WHERE passages_fts MATCH ?1 ORDER BY rowid LIMIT ?8) \
                                 ORDER BY {first} LIMIT ?7), \
         h AS (SELECT p.document_id, d.name, p.version, p.start_byte, p.end_byte, \
                      t.rank AS rank, p.body, t.id AS id \
               FROM t \
               JOIN passages p ON p.id = t.id \
               JOIN documents d ON d.id = p.document_id \
               JOIN versions v ON v.document_id = p.document_id AND v.version = p.version \
               WHERE p.version = \
                   (SELECT max(version) FROM versions l WHERE l.document_id = p.document_id) \
                 AND (?3 IS NULL OR p.document_id = ?3) AND (?4 IS NULL OR d.kind = ?4) \
                 AND (?5 IS NULL OR v.created_us >= ?5) AND (?6 IS NULL OR v.created_us < ?6) \
               ORDER BY {then} LIMIT ?2) \
         SELECT h.document_id, h.name, h.version, h.start_byte, h.end_byte, h.rank, h.body, \
                (SELECT count(*) FROM t) \
         FROM (SELECT 1) LEFT JOIN h ORDER BY {outer}"
    );
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let mut rows = st
        .query(params![
            expr,
            // Newest first, ranked here: at most the newest RANKED_NEWEST that pass, since each
            // is read whole and ranked in memory (all of them was every passage of a phrase
            // that filters left, however many).
            match order {
                Order::Rank => limit as i64,
                Order::Newest(_) => RANKED_NEWEST,
            },
            filter.document.as_ref().map(DocumentId::as_str),
            filter.kind.map(Kind::as_str),
            filter.since_us,
            filter.until_us,
            take,
            window
        ])
        .map_err(db)?;
    let (mut hits, mut matched) = (Vec::new(), 0);
    while let Some(r) = rows.next().map_err(db)? {
        matched = usize::try_from(r.get::<_, i64>(7).map_err(db)?).unwrap_or(0);
        let Some(doc) = r.get::<_, Option<String>>(0).map_err(db)? else {
            continue;
        };
        let (version, start, end): (i64, i64, i64) = (
            r.get(2).map_err(db)?,
            r.get(3).map_err(db)?,
            r.get(4).map_err(db)?,
        );
        hits.push(Hit {
            citation: format!("{doc}:{version}:{start}-{end}"),
            document_id: DocumentId::from_trusted(doc),
            document: r.get(1).map_err(db)?,
            version,
            score: -r.get::<_, f64>(5).map_err(db)?,
            snippet: String::new(),
            text: r.get(6).map_err(db)?,
        });
    }
    if let Order::Newest(rank) = order {
        rank.rank(&mut hits, matched);
        hits.truncate(limit);
    }
    Ok((hits, matched))
}

/// A passage named by its citation id, from whichever version it cites.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Passage {
    pub citation: String,
    pub document_id: DocumentId,
    pub document: String,
    pub version: i64,
    /// Whether a later version has replaced the one cited.
    pub superseded: bool,
    pub text: String,
}

/// Parses `<document>:<version>:<start>-<end>`.
///
/// # Errors
/// Anything else, named.
pub fn parse_citation(s: &str) -> Result<(DocumentId, i64, usize, usize), KnowledgeError> {
    let bad = || {
        KnowledgeError::BadFilter(format!(
            "{:?} is not a citation id; they look like <document>:<version>:<start>-<end>",
            s.chars().take(80).collect::<String>()
        ))
    };
    let mut parts = s.splitn(3, ':');
    let (Some(doc), Some(version), Some(span)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    // Digits only: `parse` would also take a sign.
    fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    }
    let doc = DocumentId::parse(doc).map_err(|_| bad())?;
    let version: i64 = number(version).ok_or_else(bad)?;
    let (start, end) = span.split_once('-').ok_or_else(bad)?;
    let (start, end): (usize, usize) =
        (number(start).ok_or_else(bad)?, number(end).ok_or_else(bad)?);
    if version < 1 || start >= end {
        return Err(bad());
    }
    Ok((doc, version, start, end))
}

/// The text of `start..end` of a version, from the passage that starts nearest before it
/// and covers it (passages overlap, so a few are looked at), with the document's name and
/// latest version; `None` when no passage covers it.
fn passage_in(
    c: &rusqlite::Connection,
    doc: &DocumentId,
    version: i64,
    start: usize,
    end: usize,
) -> Result<Option<(String, String, i64)>, KnowledgeError> {
    let found = c
        .prepare_cached(
            "SELECT d.name, v.first_passage, v.last_passage, \
               (SELECT max(version) FROM versions l WHERE l.document_id = d.id) \
             FROM versions v JOIN documents d ON d.id = v.document_id \
             WHERE v.document_id = ?1 AND v.version = ?2",
        )
        .map_err(db)?
        .query_row(params![doc.as_str(), version], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(db)?;
    let Some((name, first, last, latest)) = found else {
        return Ok(None);
    };
    let (Ok(start_at), Ok(end_at)) = (i64::try_from(start), i64::try_from(end)) else {
        return Ok(None);
    };
    let Some(nearest) = last_starting_by(c, first, last, start_at)? else {
        return Ok(None);
    };
    let mut st = c
        .prepare_cached(
            "SELECT start_byte, end_byte, body FROM passages \
             WHERE id BETWEEN ?1 AND ?2 AND document_id = ?3 AND version = ?4 \
             ORDER BY id DESC LIMIT 4",
        )
        .map_err(db)?;
    let mut rows = st
        .query(params![first, nearest, doc.as_str(), version])
        .map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let (from, to): (i64, i64) = (r.get(0).map_err(db)?, r.get(1).map_err(db)?);
        if to < end_at || from > start_at {
            continue;
        }
        let body: String = r.get(2).map_err(db)?;
        let at = (start_at - from) as usize;
        return Ok(body
            .get(at..at + (end - start))
            .map(|t| (name.clone(), t.to_string(), latest)));
    }
    Ok(None)
}

/// The last id of the run `first..=last` whose passage starts at or before `at`: passages
/// of a run are in the order of their text, so a binary search of a few rows finds it.
fn last_starting_by(
    c: &rusqlite::Connection,
    first: i64,
    last: i64,
    at: i64,
) -> Result<Option<i64>, KnowledgeError> {
    let mut st = c
        .prepare_cached("SELECT start_byte FROM passages WHERE id = ?1")
        .map_err(db)?;
    let (mut lo, mut hi, mut found) = (first, last, None);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let starts: Option<i64> = st.query_row([mid], |r| r.get(0)).optional().map_err(db)?;
        match starts {
            Some(s) if s <= at => {
                found = Some(mid);
                lo = mid + 1;
            }
            Some(_) => hi = mid - 1,
            // A hole in the run: not written by this build; nothing is guessed.
            None => return Ok(None),
        }
    }
    Ok(found)
}

/// The passage a citation id names, as long as its document is kept.
///
/// # Errors
/// Permission (`knowledge.read`), a malformed id, no such passage (removed, or never
/// there), or a storage fault.
pub fn passage_blocking<D: Door>(door: &D, citation: &str) -> Result<Passage, KnowledgeError> {
    door.caller().require(Permission::KnowledgeRead)?;
    let (doc, version, start, end) = parse_citation(citation)?;
    let citation = citation.to_string();
    door.read_blocking(move |c| {
        let (name, text, latest) = passage_in(c, &doc, version, start, end)?
            .ok_or_else(|| KnowledgeError::NotFound(citation.clone()))?;
        Ok(Passage {
            citation: citation.clone(),
            document_id: doc.clone(),
            document: name,
            version,
            superseded: latest > version,
            text,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FTS5's own check, with the index compared against the passages it was made from.
    fn index_agrees(c: &rusqlite::Connection) -> rusqlite::Result<()> {
        c.execute(
            "INSERT INTO passages_fts (passages_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .map(drop)
    }

    fn found(c: &rusqlite::Connection, word: &str) -> Vec<String> {
        c.prepare(&format!(
            "SELECT p.body FROM passages_fts \
                 JOIN passages p ON p.id = {INDEX_BASE} - passages_fts.rowid \
                 WHERE passages_fts MATCH ?1"
        ))
        .unwrap()
        .query_map([word], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[test]
    fn every_passage_of_a_version_is_indexed_and_removal_takes_exactly_its_own() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for step in SCHEMA.steps {
            c.execute_batch(step).unwrap();
        }
        // New terms are held in memory up to a whole document's worth before a segment is
        // written; the setting is in the file, not the connection.
        let hashsize: i64 = c
            .query_row(
                "SELECT v FROM passages_fts_config WHERE k = 'hashsize'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hashsize, 16 * 1024 * 1024);
        // The schema writes out the base the code numbers passages from.
        let base = format!("{INDEX_BASE} - id");
        assert!(SCHEMA.steps.iter().any(|s| s.contains(&base)));
        let doc = |n: u8| DocumentId::from_trusted(format!("{:032x}", n));
        let text = |tag: &str, n: usize| -> (String, Vec<chunk::Span>) {
            let body: String = (0..n)
                .map(|i| format!("Paragraph {tag}word{i} about harbour dues.\n\n"))
                .collect();
            let spans = chunk::passages(
                &body,
                Sizes {
                    max: 60,
                    overlap: 0,
                },
            );
            (body, spans)
        };
        let (a1, a1_spans) = text("alpha", 300);
        let (a2, a2_spans) = text("beta", 40);
        let (b1, b1_spans) = text("gamma", 25);
        assert!(a1_spans.len() >= 300, "{}", a1_spans.len());
        let put = |id: u8, version: i64, text: &str, spans: &[chunk::Span]| {
            let run = put_passages(&c, &doc(id), version, text, spans).unwrap();
            c.execute(
                "INSERT OR IGNORE INTO documents VALUES (?1, ?1, 'text', 0)",
                [doc(id).as_str()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO versions VALUES (?1, ?2, 'sha', 0, 0, ?3, ?4, ?5)",
                params![
                    doc(id).as_str(),
                    version,
                    run.first,
                    run.last,
                    spans.len() as i64
                ],
            )
            .unwrap();
            run
        };
        let a1_run = put(1, 1, &a1, &a1_spans);
        let b1_run = put(2, 1, &b1, &b1_spans);
        put(1, 2, &a2, &a2_spans);
        assert_eq!(put(3, 1, "", &[]), Run { first: 0, last: 0 });
        assert_eq!(a1_run.last - a1_run.first + 1, a1_spans.len() as i64);
        assert_eq!(b1_run.first, a1_run.last + 1);
        index_agrees(&c).unwrap();
        // Every passage, and a word inside it, is found again by its span through its
        // version's run; a span no passage covers is not.
        for (text, spans, version) in [(&a1, &a1_spans, 1), (&a2, &a2_spans, 2)] {
            for s in spans.iter() {
                let (_, shown, latest) = passage_in(&c, &doc(1), version, s.start, s.end)
                    .unwrap()
                    .unwrap();
                assert_eq!((shown.as_str(), latest), (&text[s.start..s.end], 2));
                let inner = s.start + text[s.start..s.end].find("word").unwrap();
                let (_, shown, _) = passage_in(&c, &doc(1), version, inner, inner + 4)
                    .unwrap()
                    .unwrap();
                assert_eq!(shown, "word");
            }
            assert!(passage_in(&c, &doc(1), version, 0, text.len() + 1)
                .unwrap()
                .is_none());
        }
        assert!(passage_in(&c, &doc(1), 3, 0, 4).unwrap().is_none());
        assert!(passage_in(&c, &doc(3), 1, 0, 0).unwrap().is_none());
        for (tag, n) in [("alpha", 300), ("beta", 40), ("gamma", 25)] {
            for i in [0, n / 2, n - 1] {
                let word = format!("{tag}word{i}");
                let hits = found(&c, &word);
                assert_eq!(hits.len(), 1, "{word}: {hits:?}");
                assert!(hits[0].contains(&word), "{word}: {hits:?}");
            }
        }
        assert_eq!(found(&c, "harbour").len(), 365);

        let taken = take_passages(&c, &doc(1)).unwrap();
        assert_eq!(taken, a1_spans.len() + a2_spans.len());
        index_agrees(&c).unwrap();
        assert!(found(&c, "alphaword0").is_empty());
        assert!(found(&c, "betaword39").is_empty());
        assert_eq!(found(&c, "gammaword24").len(), 1);
        assert_eq!(found(&c, "harbour").len(), 25);
        assert_eq!(take_passages(&c, &doc(1)).unwrap(), 0);
    }

    #[test]
    fn documents_from_before_passages_held_the_text_stay_searchable_and_citable() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for step in &SCHEMA.steps[..2] {
            c.execute_batch(step).unwrap();
        }
        let id = "0123456789abcdef0123456789abcdef";
        let text = "Backups run nightly.\n\nRestores are tested every quarter by the operator.";
        let spans = chunk::passages(
            text,
            Sizes {
                max: 40,
                overlap: 0,
            },
        );
        assert!(spans.len() >= 2, "{spans:?}");
        c.execute(
            "INSERT INTO documents VALUES (?1, 'ops.md', 'markdown', 1)",
            [id],
        )
        .unwrap();
        c.execute(
            "INSERT INTO versions VALUES (?1, 1, 'sha', ?2, ?3, 1)",
            params![id, text.len() as i64, text],
        )
        .unwrap();
        for s in &spans {
            c.execute(
                "INSERT INTO passages (document_id, version, start_byte, end_byte, body) \
                 VALUES (?1, 1, ?2, ?3, ?4)",
                params![id, s.start as i64, s.end as i64, &text[s.start..s.end]],
            )
            .unwrap();
            c.execute(
                "INSERT INTO passages_fts (rowid, body) VALUES (?1, ?2)",
                params![c.last_insert_rowid(), &text[s.start..s.end]],
            )
            .unwrap();
        }
        for step in &SCHEMA.steps[2..] {
            c.execute_batch(step).unwrap();
        }
        let run: (i64, i64, i64) = c
            .query_row(
                "SELECT first_passage, last_passage, passages FROM versions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(run, (1, spans.len() as i64, spans.len() as i64));

        let columns: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info('versions')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!columns.contains(&"body".to_string()), "{columns:?}");
        let found: i64 = c
            .query_row(
                &format!("SELECT {INDEX_BASE} - rowid FROM passages_fts WHERE passages_fts MATCH 'quarter'"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 2);
        let doc = DocumentId::from_trusted(id.to_string());
        // Every passage, and a span inside one, is shown from the passages alone.
        for s in &spans {
            let (name, shown, latest) = passage_in(&c, &doc, 1, s.start, s.end).unwrap().unwrap();
            assert_eq!(
                (name.as_str(), shown.as_str(), latest),
                ("ops.md", &text[s.start..s.end], 1)
            );
        }
        let inner = text.find("tested").unwrap();
        let (_, shown, _) = passage_in(&c, &doc, 1, inner, inner + 6).unwrap().unwrap();
        assert_eq!(shown, "tested");
        // A span across two passages that do not overlap, or past the end, is not there.
        assert!(passage_in(&c, &doc, 1, spans[0].start, spans[1].end)
            .unwrap()
            .is_none());
        assert!(passage_in(&c, &doc, 1, 0, text.len() + 5)
            .unwrap()
            .is_none());
        assert!(passage_in(&c, &doc, 2, 0, 5).unwrap().is_none());
    }

    /// Stores and indexes `bodies` as passages of version 1 of their documents, in order.
    fn put_bodies(c: &rusqlite::Connection, bodies: &[(&str, String)]) {
        for (at, (id, b)) in bodies.iter().enumerate() {
            c.execute(
                "INSERT INTO passages (document_id, version, start_byte, end_byte, body) \
                 VALUES (?1, 1, ?2, ?2 + 1, ?3)",
                params![id, at as i64, b],
            )
            .unwrap();
            c.execute(
                "INSERT INTO passages_fts (rowid, body) VALUES (?1, ?2)",
                params![INDEX_BASE - c.last_insert_rowid(), b],
            )
            .unwrap();
        }
    }

    #[test]
    fn a_word_in_very_many_passages_is_ranked_among_its_newest_unless_filters_ask_for_more() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for step in SCHEMA.steps {
            c.execute_batch(step).unwrap();
        }
        let (old, new) = (
            "00000000000000000000000000000001",
            "00000000000000000000000000000002",
        );
        let mut bodies = vec![(old, "beacon beacon beacon beacon".to_string())];
        let newer = usize::try_from(RANKED_NEWEST).unwrap() + 50;
        bodies.extend((0..newer).map(|i| {
            let extra = if i == newer - 10 { " beacon" } else { "" };
            (
                new,
                format!("beacon {i} among more words of a longer passage{extra}"),
            )
        }));
        for (id, name) in [(old, "old.txt"), (new, "new.txt")] {
            c.execute(
                "INSERT INTO documents VALUES (?1, ?2, 'text', 1)",
                params![id, name],
            )
            .unwrap();
        }
        put_bodies(&c, &bodies);
        c.execute(
            "INSERT INTO versions VALUES (?1, 1, 'sha', 1, 1, 1, 1, 1), (?2, 1, 'sha', 1, 1, 2, ?3, ?4)",
            params![old, new, bodies.len() as i64, newer as i64],
        )
        .unwrap();
        // The oldest passage, which BM25 ranks first, is past the newest the index ranks;
        // among those, the one that says the word twice comes first.
        let hits = search_in(&c, "beacon", &Filter::default(), 5).unwrap();
        assert_eq!(hits.len(), 5);
        let twice = format!("beacon {} ", newer - 10);
        assert!(hits[0].text.starts_with(&twice), "{:?}", hits[0]);
        assert!(hits.iter().all(|h| h.document_id.as_str() == new));
        // Filters that leave too few of the newest make the index rank more, up to all.
        let only_old = Filter {
            document: Some(DocumentId::from_trusted(old.to_string())),
            ..Filter::default()
        };
        let hits = search_in(&c, "beacon", &only_old, 5).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].text, "beacon beacon beacon beacon");
    }

    /// A phrase whose newest matches all fail the filters makes the index hand over every
    /// match; of those that pass, only the newest RANKED_NEWEST are read and ranked.
    #[test]
    fn a_filtered_phrase_search_reads_a_bounded_number_of_passages() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for step in SCHEMA.steps {
            c.execute_batch(step).unwrap();
        }
        let (text, csv) = (
            "00000000000000000000000000000001",
            "00000000000000000000000000000002",
        );
        let passing = usize::try_from(RANKED_NEWEST).unwrap() + 100;
        // Oldest first: the passage that says it most, then the other text ones, then
        // newer CSV rows that the filter leaves out.
        let mut bodies = vec![(text, "beacon beacon beacon beacon".to_string())];
        bodies.extend((1..passing).map(|i| (text, format!("beacon {i} of a longer line"))));
        bodies.extend((0..500).map(|i| (csv, format!("beacon row {i}"))));
        for (id, name, kind) in [(text, "t.txt", "text"), (csv, "c.csv", "csv")] {
            c.execute(
                "INSERT INTO documents VALUES (?1, ?2, ?3, 1)",
                params![id, name, kind],
            )
            .unwrap();
            c.execute(
                "INSERT INTO versions VALUES (?1, 1, 'sha', 1, 1, 1, 1, 1)",
                params![id],
            )
            .unwrap();
        }
        put_bodies(&c, &bodies);
        let rank = PhraseRank {
            phrases: vec![vec!["beacon".to_string()]],
            loose: Vec::new(),
            total: bodies.len() as i64,
        };
        let only_text = Filter {
            kind: Some(Kind::Text),
            ..Filter::default()
        };
        let (hits, matched) =
            ranked(&c, "\"beacon\"", &only_text, 5, -1, Order::Newest(&rank)).unwrap();
        assert_eq!(matched, bodies.len());
        assert_eq!(hits.len(), 5);
        // The oldest passing passage lies past the newest that are read: not among them.
        assert!(hits.iter().all(|h| h.text != bodies[0].1), "{hits:?}");
        assert!(hits.iter().all(|h| h.document_id.as_str() == text));
    }

    #[test]
    fn passages_with_two_of_the_words_come_first_when_there_are_enough() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for step in SCHEMA.steps {
            c.execute_batch(step).unwrap();
        }
        let id = "0123456789abcdef0123456789abcdef";
        c.execute(
            "INSERT INTO documents VALUES (?1, 'notes.txt', 'text', 1)",
            [id],
        )
        .unwrap();
        let mut bodies: Vec<String> = (0..150).map(|i| format!("filler line {i}")).collect();
        // Twelve passages hold two of the words; one holds a single word many times, which
        // BM25 ranks first when the words are OR-ed.
        bodies.extend((0..12).map(|i| format!("harbour pilot notes {i} and more words here")));
        bodies.push("tide tide tide tide tide tide".into());
        bodies.extend((0..3).map(|i| format!("harbour tide {i}")));
        let mut at = 0;
        for b in &bodies {
            c.execute(
                "INSERT INTO passages (document_id, version, start_byte, end_byte, body) \
                 VALUES (?1, 1, ?2, ?3, ?4)",
                params![id, at, at + b.len() as i64, b],
            )
            .unwrap();
            c.execute(
                "INSERT INTO passages_fts (rowid, body) VALUES (?1, ?2)",
                params![INDEX_BASE - c.last_insert_rowid(), b],
            )
            .unwrap();
            at += b.len() as i64 + 1;
        }
        c.execute(
            "INSERT INTO versions VALUES (?1, 1, 'sha', 1, 1, 1, ?2, ?2)",
            params![id, bodies.len() as i64],
        )
        .unwrap();
        let search =
            |limit| search_in(&c, "harbour pilot tide", &Filter::default(), limit).unwrap();
        let ten = search(10);
        assert_eq!(ten.len(), 10);
        assert!(ten.iter().all(|h| h.text.contains("harbour")), "{ten:?}");
        // Asked for more than hold two words: every passage with any of them, ranked as ever.
        let all = search(50);
        assert_eq!(all.len(), 16, "{all:?}");
        let single = all.iter().position(|h| h.text.starts_with("tide tide"));
        // OR-ed, the single word's passage is among the best ten; it is not when enough
        // passages hold two of the words.
        assert!(single.is_some_and(|at| at < 10), "{all:?}");
        assert!(
            !ten.iter().any(|h| h.text.starts_with("tide tide")),
            "{ten:?}"
        );
        // A passage with two of the words has the same score either way.
        let pick = &ten[0];
        let same = all.iter().find(|h| h.citation == pick.citation).unwrap();
        assert!(
            (same.score - pick.score).abs() < 1e-9,
            "{} {}",
            same.score,
            pick.score
        );
        // When no match passes the filters, the count of matches still comes back (so
        // the index is not asked again for more than it has).
        let csv = Filter {
            kind: Some(Kind::Csv),
            ..Filter::default()
        };
        for order in [Order::Rank, Order::Newest(&PhraseRank::default())] {
            let (none, matched) = ranked(&c, "\"harbour\"", &csv, 10, 100, order).unwrap();
            assert!(none.is_empty());
            assert_eq!(matched, 15);
            let (some, matched) =
                ranked(&c, "\"harbour\"", &Filter::default(), 10, 100, order).unwrap();
            assert_eq!((some.len(), matched), (10, 15));
            let (some, matched) =
                ranked(&c, "\"harbour\"", &Filter::default(), 10, 4, order).unwrap();
            assert_eq!((some.len(), matched), (4, 4));
            if let Order::Newest(_) = order {
                // The first matches the index hands over are the newest passages.
                let mut texts: Vec<&str> = some.iter().map(|h| h.text.as_str()).collect();
                texts.sort_unstable();
                assert_eq!(
                    texts,
                    [
                        "harbour pilot notes 11 and more words here",
                        "harbour tide 0",
                        "harbour tide 1",
                        "harbour tide 2"
                    ]
                );
            }
        }
    }

    #[test]
    fn citation_ids_parse_and_others_are_named() {
        let id = "0123456789abcdef0123456789abcdef";
        let (d, v, s, e) = parse_citation(&format!("{id}:2:10-20")).unwrap();
        assert_eq!((d.as_str(), v, s, e), (id, 2, 10, 20));
        for bad in [
            "",
            "x",
            &format!("{id}:0:1-2"),
            &format!("{id}:1:5-5"),
            &format!("{id}:1:a-2"),
            &format!("{id}:1:2"),
            // Digits only, as the API documents: no sign, no spaces.
            &format!("{id}:+1:2-3"),
            &format!("{id}:1:+2-3"),
            &format!("{id}:1:2- 3"),
        ] {
            let e = parse_citation(bad).unwrap_err().to_string();
            assert!(e.contains("not a citation id"), "{e}");
        }
    }

    #[test]
    fn control_characters_are_counted_as_unicode_counts_them() {
        let by_chars = |t: &str| {
            t.chars()
                .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
                .count()
        };
        for t in [
            "plain words\r\n\ttabbed\u{c}",
            "\u{1}\u{8}\u{b}\u{e}\u{1f}\u{7f}",
            "C1: \u{80}\u{85}\u{9f} but not \u{a0}\u{c2}\u{bf}",
            "Â é ĂŸ ǿ \u{2028} €\u{9f}\u{80}",
            "\u{c2}\u{80}",
            "",
        ] {
            assert_eq!(controls(t.as_bytes()), by_chars(t), "{t:?}");
        }
        assert_eq!(controls("\u{85}x\u{7}".as_bytes()), 2);
    }

    #[test]
    fn a_file_must_be_what_its_name_says() {
        assert!(matches!(
            text_of("a.docx", b"PK\x03\x04"),
            Err(KnowledgeError::Unsupported(_))
        ));
        let e = text_of("a.pdf", b"plain words").unwrap_err();
        assert!(
            matches!(&e, KnowledgeError::Unreadable { .. }) && e.to_string().contains("not a PDF"),
            "{e}"
        );
        assert!(matches!(
            text_of("a.html", b"<p>\0\0\0\x01\x02</p>"),
            Err(KnowledgeError::NotText(_))
        ));
        assert!(matches!(
            text_of("a.html", b"<html><script>x()</script></html>"),
            Err(KnowledgeError::Empty(_))
        ));
        assert!(matches!(
            text_of("noext", b"hello"),
            Err(KnowledgeError::Unsupported(_))
        ));
        assert!(matches!(
            text_of("a.txt", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Err(KnowledgeError::NotText(_))
        ));
        assert!(matches!(
            text_of("a.md", &[0xff, 0xfe, 0x41]),
            Err(KnowledgeError::NotText(_))
        ));
        assert!(matches!(
            text_of("a.txt", b" \n\t "),
            Err(KnowledgeError::Empty(_))
        ));
        let big = vec![b'a'; MAX_BYTES + 1];
        assert!(matches!(
            text_of("a.txt", &big),
            Err(KnowledgeError::TooLarge { .. })
        ));
        assert_eq!(
            text_of("Notes.MD", "# Héllo\n".as_bytes())
                .map(|(k, t)| (k, t.into_owned()))
                .unwrap(),
            (Kind::Markdown, "# Héllo\n".to_string())
        );
    }

    #[test]
    fn filters_are_parsed_with_the_field_named() {
        let f = Filter::parse(None, Some("pdf"), Some("2026-01-02"), Some("")).unwrap();
        assert_eq!(f.kind, Some(Kind::Pdf));
        assert_eq!(f.since_us, Some(1_767_312_000_000_000));
        assert_eq!(f.until_us, None);
        let f = Filter::parse(None, None, None, Some("2026-01-02T03:04:05Z")).unwrap();
        assert_eq!(f.until_us, Some(1_767_323_045_000_000));
        for (args, word) in [
            ((None, Some("docx"), None, None), "type"),
            // Taken as given, as the API documents them: no case folding, no trimming.
            ((None, Some("PDF"), None, None), "type"),
            ((None, Some(" pdf"), None, None), "type"),
            ((None, None, Some(" 2026-01-02"), None), "since"),
            ((None, None, Some("yesterday"), None), "since"),
            ((None, None, None, Some("2026-13-01")), "until"),
            (
                (None, None, Some("2026-02-01"), Some("2026-01-01")),
                "before",
            ),
        ] {
            let e = Filter::parse(args.0, args.1, args.2, args.3).unwrap_err();
            assert!(e.to_string().contains(word), "{e}");
            assert_eq!(e.code(), "KNW-0015");
        }
        assert!(Filter::parse(Some("../x"), None, None, None).is_err());
        let id = "0123456789abcdef0123456789abcdef";
        assert!(Filter::parse(Some(&format!(" {id}")), None, None, None).is_err());
        assert!(Filter::parse(Some(id), None, None, None).is_ok());
    }

    #[test]
    fn rows_and_records_keep_their_field_names() {
        let (body, spans) = render(
            "ships.csv",
            Kind::Csv,
            "name,length_m,flag\nAurora,92,NL\n\"Sea, Lark\",48,\n",
        )
        .unwrap();
        let passages: Vec<&str> = spans.iter().map(|s| &body[s.start..s.end]).collect();
        assert_eq!(
            passages,
            [
                "name: Aurora; length_m: 92; flag: NL",
                "name: Sea, Lark; length_m: 48"
            ]
        );
        let (body, spans) = render(
            "crew.json",
            Kind::Json,
            r#"[{"name": "Ines", "role": {"title": "pilot"}, "certs": ["A", "B"]}, {"name": null}]"#,
        )
        .unwrap();
        assert_eq!(spans.len(), 1, "a record with nothing in it is no passage");
        assert_eq!(
            &body[spans[0].start..spans[0].end],
            "certs.0: A; certs.1: B; name: Ines; role.title: pilot"
        );
    }

    #[test]
    fn long_rows_are_cut_and_a_row_stays_on_its_line() {
        let long: String = (0..200)
            .map(|i| format!("Berth {i} is dredged. "))
            .collect();
        let csv = format!("id,notes\n1,\"two\nlines\"\n2,{long}\n3,short\n");
        let (body, spans) = render("berths.csv", Kind::Csv, &csv).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 3, "{body}");
        assert_eq!(lines[0], "id: 1; notes: two lines");
        assert!(spans.len() > 4, "{}", spans.len());
        assert!(spans.iter().all(|s| s.end - s.start <= PASSAGE_MAX));
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
        // The long row's passages cover it, nothing of another row in them.
        let second = body.find("id: 2").unwrap();
        let covered: String = spans
            .iter()
            .filter(|s| s.start >= second && s.end <= second + lines[1].len())
            .map(|s| body[s.start..s.end].trim())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(covered, lines[1].trim());
        assert_eq!(
            &body[spans[spans.len() - 1].start..],
            "id: 3; notes: short\n"
        );
        let empty = render("blank.csv", Kind::Csv, "id,notes\n,\n , \n");
        assert!(matches!(empty, Err(KnowledgeError::Empty(n)) if n == "blank.csv"));
    }

    #[test]
    fn a_csv_file_is_rendered_into_the_room_reserved_for_it() {
        // Rows of every field filled (the most a row can grow), CRLF lines, a quoted value
        // with a comma and a line break: the body is never copied into a larger buffer.
        let mut csv = String::from("system,owner,region,data_class,rto_hours,notes\r\n");
        for i in 0..5_000 {
            csv.push_str(&format!(
                "sys-{i},ops,eu-west,internal,{},\"quay {i}, berth\nnorth\"\r\n",
                i % 72
            ));
        }
        let mut rows = Rows::for_csv(&csv);
        let room = rows.body.capacity();
        csv_records("t.csv", &csv, |r| rows.push(r)).unwrap();
        assert_eq!(rows.spans.len(), 5_000);
        assert_eq!(rows.body.capacity(), room, "{} bytes", rows.body.len());
        assert!(
            rows.body.len() > csv.len() * 3 / 2,
            "the estimate was needed"
        );
        assert_eq!(
            rows.body.lines().nth(7),
            Some("system: sys-7; owner: ops; region: eu-west; data_class: internal; rto_hours: 7; notes: quay 7, berth north")
        );
        // A long header over many empty rows asks for no more than three times the file.
        let hostile = format!("{}\n{}", "field,".repeat(20_000), "\n".repeat(100_000));
        let rows = Rows::for_csv(&hostile);
        assert!(rows.body.capacity() <= 3 * hostile.len());
        let breaks = format!("a\n{}", "\n".repeat(1_000_000));
        let rows = Rows::for_csv(&breaks);
        assert!(rows.spans.capacity() * std::mem::size_of::<chunk::Span>() <= breaks.len());
        assert!(rows.body.capacity() <= 3 * breaks.len());
    }

    #[test]
    fn json_is_read_record_by_record_as_the_whole_tree_reads() {
        // The records as read from the whole tree (an array's elements, or the object).
        let whole = |text: &str| -> Vec<String> {
            let records = match serde_json::from_str::<serde_json::Value>(text).unwrap() {
                serde_json::Value::Array(a) => a,
                o => vec![o],
            };
            records
                .iter()
                .map(|r| {
                    let (mut fields, mut room) = (Vec::new(), usize::MAX);
                    flatten("", r, &mut fields, &mut room);
                    fields.join("; ")
                })
                .collect()
        };
        let streamed = |text: &str| -> Result<Vec<String>, KnowledgeError> {
            let mut out = Vec::new();
            json_records("t.json", text, |r| {
                out.push(r.to_string());
                true
            })?;
            Ok(out)
        };
        for text in [
            r#"[{"id": 1, "crew": {"master": "Ana", "mates": ["Bo", null, 2.5]}}, {"id": 2}]"#,
            r#"{"vessel": "Tide", "berths": [{"n": 4, "ok": true}, {"n": 5, "ok": false}]}"#,
            r#"["loose", 7, true, null, {"a": "b"}, [1, [2, {"c": "d"}]]]"#,
            "[]",
            "  [ {\"unicode\": \"K\\u00f8benhavn \\u2014 quay\"} ]  \n",
            r#"[{"esc": "line\nbreak \"quoted\" tab\t"}]"#,
        ] {
            assert_eq!(streamed(text).unwrap(), whole(text), "{text}");
        }
        // Anything but an array of records or one object, or anything after it, is named.
        for (text, want) in [
            ("\"text\"", "array of records"),
            ("null", "array of records"),
            ("true", "array of records"),
            ("-3.5", "array of records"),
            ("[{\"a\": 1}] x", "line 1, column 12: not valid JSON"),
            (
                "[{\"a\": 1}]\n[{\"b\": 2}]",
                "line 2, column 1: not valid JSON",
            ),
            ("{\"a\": 1}}", "not valid JSON"),
            (
                "[{\"a\": 1},\n {\"b\": 2,}]",
                "line 2, column 10: not valid JSON",
            ),
            ("", "not valid JSON"),
        ] {
            let e = streamed(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // Records are handed on as they are read: those before a broken one are out before
        // the error (a whole-tree reading hands on none).
        let mut before = Vec::new();
        let e = json_records("t.json", r#"[{"a": 1}, {"b": 2}, oops]"#, |r| {
            before.push(r.to_string());
            true
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 1, column 22: not valid JSON"), "{e}");
        assert_eq!(before, ["a: 1", "b: 2"]);
        // Nesting past the parser's bound is an error, not a blown stack.
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let e = streamed(&deep).unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn stored_text_holds_no_control_characters_whatever_the_file_held() {
        let json = r#"[{"a": "pilot \u001b]52;c;ZXZpbA==\u0007 boards", "b": "x\u0000y\u009bz"}]"#;
        let (body, _) = render("c.json", Kind::Json, json).unwrap();
        assert_eq!(body, "a: pilot ]52;c;ZXZpbA== boards; b: xyz\n");
        let csv = "a,b\n\"one\u{1b}[2J\",\"two\r\nlines\"\n";
        let (body, _) = render("c.csv", Kind::Csv, csv).unwrap();
        assert_eq!(body, "a: one[2J; b: two  lines\n");
        for kind in [Kind::Text, Kind::Markdown] {
            let (body, spans) = render("t", kind, "Bell\u{7} here.\r\n\nTab\tkept.").unwrap();
            assert!(
                !body
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "{body:?}"
            );
            assert!(
                body.contains("Bell here.") && body.contains("kept."),
                "{body:?}"
            );
            assert!(spans.iter().all(|s| body.is_char_boundary(s.end)));
        }
    }

    #[test]
    fn tables_that_would_render_into_far_more_than_the_file_are_refused() {
        let expands = |r: Result<(String, Vec<chunk::Span>), KnowledgeError>| {
            matches!(r, Err(KnowledgeError::Expands { .. }))
        };
        // A long header over many short rows: each row would carry the header's 1,100 bytes.
        let header = "h".repeat(1100);
        let csv = format!(
            "{header}
{}",
            "x\n".repeat(100_000)
        );
        assert!(expands(render("a.csv", Kind::Csv, &csv)));
        // The text inside an HTML block is read as a page's; its scripts are not.
        let (body, _) = render(
            "h.md",
            Kind::Markdown,
            "# Restore\n\n<details>\n<summary>Restore</summary>\nRun restore --verify first.\n<script>\nvar k = 1;\n</script>\n</details>\n\nAfter.\n",
        )
        .unwrap();
        assert!(body.contains("Run restore --verify first."), "{body}");
        assert!(body.contains("After.") && !body.contains("var k"), "{body}");
        // A byte order mark before JSON is no part of it.
        let (body, _) = render("b.json", Kind::Json, "\u{feff}[{\"berth\": 7}]").unwrap();
        assert_eq!(body, "berth: 7\n");
        // Short rows under a wide Markdown header: each is padded to the header's width.
        let table = format!(
            "{}a\n{}-\n{}\n",
            "a|".repeat(511),
            "-|".repeat(511),
            "a\n".repeat(513)
        );
        assert!(expands(render("t.md", Kind::Markdown, &table.repeat(40))));
        // The same inside a quote.
        let quoted: String = table.lines().map(|l| format!("> {l}\n")).collect();
        assert!(expands(render("q.md", Kind::Markdown, &quoted.repeat(40))));
        // A real table of the same shape, written out, is read.
        let full = format!("{}\n", "a|".repeat(511) + "a");
        let real = format!("{full}{}-\n{}", "-|".repeat(511), full.repeat(20));
        let (body, _) = render("r.md", Kind::Markdown, &real).unwrap();
        assert!(body.contains("a | a | a"), "{}", &body[..100]);
        // A million delimiter rows in one block are counted in one pass (and refused).
        let rows = "|-|\n".repeat(1_000_000);
        assert!(table_cells(&rows) > rows.len());
        // More rows than a file may have, however short.
        let csv = format!(
            "n
{}",
            "1\n".repeat(MAX_ROWS + 1)
        );
        assert!(expands(render("b.csv", Kind::Csv, &csv)));
        // A long key over a long array, of values or of nulls (each member is a path).
        let key = "k".repeat(5_000_000);
        for member in ["0", "null"] {
            let json = format!("{{\"{key}\": [{}]}}", vec![member; 20].join(","));
            let e = render("c.json", Kind::Json, &json).unwrap_err();
            assert!(matches!(e, KnowledgeError::Expands { .. }), "{e}");
            assert!(e.to_string().contains("64 MiB"), "{e}");
        }
        // Records past the bound after many that fit: refused whole, not cut.
        let record = format!("{{\"{}\": 1}}", "k".repeat(1000));
        let json = format!("[{}]", vec![record.as_str(); 70_000].join(","));
        assert!(expands(render("d.json", Kind::Json, &json)));
        // The same shapes within the bounds are taken.
        let (body, spans) = render(
            "e.csv",
            Kind::Csv,
            &format!("{}\n{}", "h".repeat(50), "x\n".repeat(1000)),
        )
        .unwrap();
        assert_eq!(spans.len(), 1000);
        assert!(body.len() < MAX_RENDERED);
        let (body, _) = render(
            "f.json",
            Kind::Json,
            &format!("{{\"{}\": [0, 1, null]}}", "k".repeat(1000)),
        )
        .unwrap();
        assert!(
            body.ends_with(&format!("{}.1: 1\n", "k".repeat(1000))),
            "{body}"
        );
    }

    #[test]
    fn markdown_is_indexed_as_its_prose() {
        let md = "# Pilotage\n\nEvery **vessel** above [ninety metres](https://x.test) takes a pilot.\n\n- Board at the `outer buoy`\n- Radio on channel 12\n\n| Size | Fee |\n|---|---|\n| 90 m | 400 |\n";
        let (body, spans) = render("p.md", Kind::Markdown, md).unwrap();
        assert_eq!(
            body,
            "Pilotage\n\nEvery vessel above ninety metres takes a pilot.\n\n- Board at the outer buoy\n\n- Radio on channel 12\n\nSize | Fee |\n\n90 m | 400 |"
        );
        assert!(!body.contains("https://") && !body.contains("**"));
        assert_eq!(spans.len(), 1, "short: one passage");
        assert!(matches!(
            render("e.md", Kind::Markdown, "<!-- only a comment -->\n"),
            Err(KnowledgeError::Empty(_))
        ));
    }

    #[test]
    fn broken_rows_and_records_are_named_by_line() {
        let e = render("s.csv", Kind::Csv, "a,b\n1,2\n3,4,5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.csv") && e.contains("line 3") && e.contains("3 fields"),
            "{e}"
        );
        let e = render("c.json", Kind::Json, "[{\"a\": 1},\n {\"b\": }]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.json") && e.contains("line 2"), "{e}");
        let e = render("n.json", Kind::Json, "42").unwrap_err().to_string();
        assert!(e.contains("array of records"), "{e}");
        assert!(matches!(
            render("h.csv", Kind::Csv, "a,b\n"),
            Err(KnowledgeError::Empty(_))
        ));
        let long = format!("k\n{}\n", "word ".repeat(600));
        let (body, spans) = render("l.csv", Kind::Csv, &long).unwrap();
        assert!(spans.len() > 1 && spans.iter().all(|s| s.end - s.start <= PASSAGE_MAX));
        assert!(spans.iter().all(|s| body.is_char_boundary(s.start)));
    }
}
