//! The text of files that are not text: HTML by html5ever's tokenizer, the text layer of a PDF by
//! `pdf-extract` with `lopdf`'s own extraction as the fallback.
//!
//! `pdf-extract` panics on some files by design, and a crafted file can do worse than panic:
//! a form that draws itself recurses until the stack overflows (which aborts a process; no
//! `catch_unwind` catches it), streams compressed twice expand to gigabytes, and forms that
//! draw each other ten times over keep a processor busy for hours. So where the program is
//! known ([`set_reader`], done by `main`), a PDF is read by a child process of the same
//! binary (`strongroom __pdf-text`) that limits its own memory and processor time, and is
//! killed after [`PDF_TIME`]: whatever the file does, it does to the child. Where it is not
//! (the library inside another program), a PDF is read on a thread of its own inside
//! `catch_unwind`. At most [`PDF_WORKERS`] are read at once; a new PDF waits up to
//! [`PDF_TIME`] for a place and is refused as busy after that.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

/// Longest a PDF is read for.
pub const PDF_TIME: Duration = Duration::from_secs(30);
/// Most PDFs read at once (overrunning ones included).
pub const PDF_WORKERS: usize = 2;
/// Most text taken out of one file.
pub const MAX_TEXT: usize = 10 * 1024 * 1024;

/// Why a file's text could not be had. The message is shown to the person who gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Not what the name says (no `%PDF-` header, say).
    Mismatch(&'static str),
    /// Could not be read: named in plain words, without the library's internals.
    Broken(String),
    /// Took longer than [`PDF_TIME`].
    Slow,
    /// [`PDF_WORKERS`] PDFs were being read for all of [`PDF_TIME`].
    Busy,
}

/// The readable text of an HTML page: scripts, styles and markup dropped, block elements on
/// lines of their own, link targets left out.
///
/// Read with html5ever's tokenizer, tag by tag, with no layout: a layout engine pads every
/// table cell to its column's widest and indents nested lists line by line, so a small page
/// of a long word over many rows, or of deep nesting, became gigabytes of spaces. Here the
/// text is at most the page's own characters and a line break or two per tag.
pub fn html(bytes: &[u8]) -> Result<String, Unreadable> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};
    let page = std::str::from_utf8(bytes)
        .map_err(|_| Unreadable::Broken("the page is not UTF-8 text".into()))?;
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(page));
    let tokenizer = Tokenizer::new(PageText::default(), TokenizerOpts::default());
    // Scripts are not run: a page's `<script>` is text to skip, never a pause.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    Ok(tidy(&tokenizer.sink.out.take()))
}

/// The text of a page as its tokens come: the sink of [`html`].
#[derive(Default)]
struct PageText {
    out: std::cell::RefCell<String>,
    /// The element whose raw content is being skipped (`script`, `style`, ...).
    skipping: std::cell::RefCell<Option<html5ever::LocalName>>,
    /// How many `pre` elements are open: white space inside them is kept.
    pre: std::cell::Cell<u32>,
}

impl PageText {
    fn push(&self, s: &str) {
        let mut out = self.out.borrow_mut();
        // Past what is kept of a page anyway, the rest is not gathered.
        if out.len() < 2 * MAX_TEXT {
            out.push_str(s);
        }
    }

    fn text(&self, t: &str) {
        if self.pre.get() > 0 {
            return self.push(t);
        }
        let mut out = self.out.borrow_mut();
        if out.len() >= 2 * MAX_TEXT {
            return;
        }
        for (i, word) in t.split_whitespace().enumerate() {
            let after_space = out.ends_with([' ', '\n']) || out.is_empty();
            if (i > 0 || t.starts_with(char::is_whitespace)) && !after_space {
                out.push(' ');
            }
            out.push_str(word);
        }
        if t.ends_with(char::is_whitespace) && !out.ends_with([' ', '\n']) && !out.is_empty() {
            out.push(' ');
        }
    }
}

impl html5ever::tokenizer::TokenSink for PageText {
    type Handle = ();

    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        use html5ever::tokenizer::states::RawKind;
        use html5ever::tokenizer::{TagKind, Token, TokenSinkResult};
        let tag = match token {
            Token::CharacterTokens(t) => {
                if self.skipping.borrow().is_none() {
                    self.text(&t);
                }
                return TokenSinkResult::Continue;
            }
            Token::TagToken(tag) => tag,
            _ => return TokenSinkResult::Continue,
        };
        let name: &str = &tag.name;
        if self.skipping.borrow().is_some() {
            // Only the end of the skipped element comes as a tag inside it.
            if tag.kind == TagKind::EndTag && self.skipping.borrow().as_ref() == Some(&tag.name) {
                *self.skipping.borrow_mut() = None;
            }
            return TokenSinkResult::Continue;
        }
        let start = tag.kind == TagKind::StartTag;
        let raw = match name {
            "script" => Some(RawKind::ScriptData),
            "style" | "noscript" | "iframe" | "noembed" | "noframes" | "xmp" | "template" => {
                Some(RawKind::Rawtext)
            }
            "title" | "textarea" => Some(RawKind::Rcdata),
            _ => None,
        };
        if let Some(kind) = raw {
            if start && !tag.self_closing {
                *self.skipping.borrow_mut() = Some(tag.name.clone());
                return TokenSinkResult::RawData(kind);
            }
            return TokenSinkResult::Continue;
        }
        match name {
            "pre" if start => self.pre.set(self.pre.get() + 1),
            "pre" => self.pre.set(self.pre.get().saturating_sub(1)),
            _ => {}
        }
        match name {
            "br" => self.push("\n"),
            "td" | "th" if start => self.push(" "),
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "pre" | "blockquote" | "table"
            | "ul" | "ol" | "dl" | "hr" | "section" | "article" | "header" | "footer" | "nav"
            | "aside" | "main" | "figure" | "form" | "fieldset" | "details" | "address" => {
                self.push("\n\n");
            }
            "li" | "tr" | "dt" | "dd" | "div" | "caption" | "figcaption" | "summary" | "thead"
            | "tbody" | "tfoot" | "option" => self.push("\n"),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The text layer of a PDF.
pub fn pdf(bytes: &[u8]) -> Result<String, Unreadable> {
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(Unreadable::Mismatch(
            "the content is not a PDF (no %PDF- header)",
        ));
    }
    let place = Place::take().ok_or(Unreadable::Busy)?;
    match READER.get() {
        Some(program) => {
            let read = in_child(program, bytes);
            drop(place);
            read
        }
        None => on_thread(place, bytes),
    }
}

/// The program that reads PDFs in a child process: this binary, set once by `main`.
static READER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// The first argument that makes the binary a PDF reader: the bytes on standard input, the
/// answer on standard output (see [`serve_reader`]). Not a command of the CLI.
pub const READER_ARG: &str = "__pdf-text";

/// Reads PDFs with `program READER_ARG` from now on. The first call wins.
pub fn set_reader(program: std::path::PathBuf) {
    let _ = READER.set(program);
}

/// Most memory a reading child may have: enough for any PDF within the upload limit whose
/// text is within [`MAX_TEXT`], far from what a decompression bomb asks for.
const READER_MEMORY: u64 = 1024 * 1024 * 1024;

/// Most bytes a child's answer may have: its text is at most [`MAX_TEXT`], and JSON escapes
/// each byte into at most six.
const MAX_ANSWER: u64 = 6 * MAX_TEXT as u64 + 4096;

/// The exit code of a child that could not limit itself (a system call filter that refuses
/// `setrlimit`, say): it reads nothing.
const UNLIMITED: u8 = 3;

/// What a reading child answers, as JSON on its standard output.
#[derive(serde::Serialize, serde::Deserialize)]
enum Answer {
    Text(String),
    Broken(String),
}

/// Reads `bytes` in a child process, killed after [`PDF_TIME`]. A child that dies (its
/// stack overflowed, it ran out of memory or processor time) leaves a damaged file.
fn in_child(program: &std::path::Path, bytes: &[u8]) -> Result<String, Unreadable> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let damaged = || Unreadable::Broken("the file is damaged or not a PDF that can be read".into());
    let mut child = Command::new(program)
        .arg(READER_ARG)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the PDF reader");
            Unreadable::Busy
        })?;
    let started = std::time::Instant::now();
    // Written and read on threads of their own, so neither pipe can stall the other and the
    // wait below stays bounded whatever the child does.
    let mut stdin = child.stdin.take();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut w) = stdin.take() {
            let _ = w.write_all(&input);
        }
    });
    let stdout = child.stdout.take();
    let (tx, rx) = mpsc::sync_channel(1);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(r) = stdout {
            let _ = r.take(MAX_ANSWER + 1).read_to_end(&mut out);
        }
        let _ = tx.send(out);
    });
    let answer = rx.recv_timeout(PDF_TIME.saturating_sub(started.elapsed()));
    let status = match answer {
        Ok(_) => child.wait().ok(),
        Err(_) => None,
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = writer.join();
    let _ = reader.join();
    let out = match answer {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(Unreadable::Slow),
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(damaged()),
    };
    if status.and_then(|s| s.code()) == Some(i32::from(UNLIMITED)) {
        tracing::error!("the PDF reader cannot limit its memory and time (setrlimit refused; a service's SystemCallFilter must allow setrlimit and prlimit64)");
        return Err(Unreadable::Broken(
            "PDFs cannot be read on this installation; the service's log says why".into(),
        ));
    }
    if !status.is_some_and(|s| s.success()) || out.len() as u64 > MAX_ANSWER {
        tracing::warn!(status = ?status, "the PDF reader ended without an answer");
        return Err(damaged());
    }
    match serde_json::from_slice::<Answer>(&out) {
        Ok(Answer::Text(t)) => Ok(t),
        Ok(Answer::Broken(m)) => Err(Unreadable::Broken(m)),
        Err(_) => Err(damaged()),
    }
}

/// The child's side: limits itself, reads the PDF on standard input and writes its
/// [`Answer`]. Exits non-zero only when it cannot answer at all.
pub fn serve_reader() -> std::process::ExitCode {
    use rustix::process::{setrlimit, Resource, Rlimit};
    use std::io::{Read, Write};
    let cpu = PDF_TIME.as_secs() + 5;
    for (resource, limit) in [
        (Resource::Data, READER_MEMORY),
        (Resource::As, 4 * READER_MEMORY),
        (Resource::Cpu, cpu),
        (Resource::Fsize, 0),
        (Resource::Core, 0),
    ] {
        let limit = Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        if setrlimit(resource, limit).is_err() {
            return std::process::ExitCode::from(UNLIMITED);
        }
    }
    // Nothing on stderr (it is closed); a panic is an expected answer.
    std::panic::set_hook(Box::new(|_| {}));
    let mut bytes = Vec::new();
    if std::io::stdin()
        .take(super::library::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return std::process::ExitCode::FAILURE;
    }
    let answer = match pdf_text(&bytes) {
        Ok(t) => Answer::Text(t),
        Err(Unreadable::Broken(m)) => Answer::Broken(m),
        Err(_) => Answer::Broken("the file is damaged or not a PDF that can be read".into()),
    };
    let Ok(json) = serde_json::to_vec(&answer) else {
        return std::process::ExitCode::FAILURE;
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&json).and_then(|()| out.flush()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// Reads `bytes` on a thread of its own holding `place` until it ends, waited for no longer
/// than [`PDF_TIME`]. A thread cannot be killed: one that overruns keeps its place.
fn on_thread(place: Place, bytes: &[u8]) -> Result<String, Unreadable> {
    quiet_panics();
    let (tx, rx) = mpsc::sync_channel(1);
    let owned = bytes.to_vec();
    let spawned = std::thread::Builder::new()
        .name("pdf-text".into())
        .spawn(move || {
            let _place = place;
            // The receiver may be gone (the wait ran out): nobody is left to tell.
            let _ = tx.send(pdf_text(&owned));
        });
    if spawned.is_err() {
        return Err(Unreadable::Busy);
    }
    match rx.recv_timeout(PDF_TIME) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Unreadable::Slow),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(Unreadable::Broken("the PDF cannot be read".into()))
        }
    }
}

/// PDF readers running (overrunning ones included), and the wait for a free place.
static PLACES: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// One of the [`PDF_WORKERS`] places, held by a reading thread until it ends.
struct Place;

impl Place {
    /// Waits up to [`PDF_TIME`] for a free place.
    fn take() -> Option<Self> {
        let (lock, freed) = &PLACES;
        let busy = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut busy, _) = freed
            .wait_timeout_while(busy, PDF_TIME, |n| *n >= PDF_WORKERS)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *busy >= PDF_WORKERS {
            return None;
        }
        *busy += 1;
        Some(Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let (lock, freed) = &PLACES;
        let mut busy = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        freed.notify_one();
    }
}

/// A panic on a PDF thread is an expected outcome, caught and answered: it goes to the log
/// as one line instead of a backtrace on stderr. Other threads keep the hook they had.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("pdf-text") {
                tracing::warn!(
                    "a PDF could not be read by the primary extractor; trying the fallback"
                );
            } else {
                before(info);
            }
        }));
    });
}

/// Both extractors in turn, each inside `catch_unwind`; the first that yields text wins.
fn pdf_text(bytes: &[u8]) -> Result<String, Unreadable> {
    let primary = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    }));
    if let Ok(Ok(text)) = &primary {
        let text = tidy(text);
        if !text.is_empty() {
            return Ok(text);
        }
    }
    let fallback = catch_unwind(AssertUnwindSafe(|| -> Result<String, Unreadable> {
        let doc = lopdf::Document::load_mem(bytes).map_err(|e| {
            Unreadable::Broken(match e {
                lopdf::Error::Decryption(_) | lopdf::Error::UnsupportedSecurityHandler(_) => {
                    "the PDF is encrypted; give a copy without a password".into()
                }
                _ => "the file is damaged or not a PDF that can be read".into(),
            })
        })?;
        if doc.is_encrypted() {
            return Err(Unreadable::Broken(
                "the PDF is encrypted; give a copy without a password".into(),
            ));
        }
        let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
        let mut out = String::new();
        for chunk in doc.extract_text_chunks(&pages).into_iter().flatten() {
            out.push_str(&chunk);
            if out.len() > MAX_TEXT {
                break;
            }
        }
        Ok(tidy(&out))
    }));
    match fallback {
        Ok(Ok(text)) if !text.is_empty() => Ok(text),
        Ok(Ok(_)) => Err(Unreadable::Broken(
            "the PDF has no text layer (a scan?); give a PDF with text, or its text".into(),
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Unreadable::Broken(
            "the file is damaged or not a PDF that can be read".into(),
        )),
    }
}

/// Extracted text made fit to index: control characters dropped, spaces at line ends and
/// runs of blank lines folded, at most [`MAX_TEXT`] bytes.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    let mut blank = 0;
    for line in text.lines() {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        if out.len() + line.len() > MAX_TEXT {
            break;
        }
        out.push_str(line);
    }
    out
}

/// A one-page PDF of `lines` in a standard Type 1 font, for tests. With `quirky`, the font
/// is a Type 3 font whose widths table is empty: valid enough for `lopdf`, and one of the
/// files `pdf-extract` panics on, so the fallback is exercised.
#[doc(hidden)]
pub fn sample_pdf(lines: &[&str], quirky: bool) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = if quirky {
        dictionary! {
            "Type" => "Font", "Subtype" => "Type3", "Encoding" => "WinAnsiEncoding",
            "FirstChar" => 0, "LastChar" => 0, "Widths" => vec![0.into()],
        }
    } else {
        dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"}
    };
    let font_id = doc.add_object(font);
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let mut operations = vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 11.into()]),
        Operation::new("TL", vec![14.into()]),
        Operation::new("Td", vec![72.into(), 770.into()]),
    ];
    for line in lines {
        operations.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
        operations.push(Operation::new("T*", vec![]));
    }
    operations.push(Operation::new("ET", vec![]));
    let content = Content { operations }.encode().unwrap_or_default();
    one_page(doc, pages_id, content, resources_id)
}

/// `doc` made a one-page PDF: the page draws `content` with `resources`.
fn one_page(
    mut doc: lopdf::Document,
    pages_id: lopdf::ObjectId,
    content: Vec<u8>,
    resources_id: lopdf::ObjectId,
) -> Vec<u8> {
    use lopdf::{dictionary, Object, Stream};
    let content_id = doc.add_object(Stream::new(dictionary! {}, content));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "Resources" => resources_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = doc.save_to(&mut out);
    out
}

/// A one-page PDF whose page draws a form that draws itself, for tests: `pdf-extract`
/// follows it until its stack overflows, which no `catch_unwind` catches.
#[doc(hidden)]
pub fn self_drawing_pdf() -> Vec<u8> {
    use lopdf::{dictionary, Document, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let form_id = doc.add_object(Stream::new(
        dictionary! {"Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 10.into(), 10.into()]},
        b"/X0 Do".to_vec(),
    ));
    let resources_id = doc.add_object(dictionary! {"XObject" => dictionary! {"X0" => form_id}});
    one_page(doc, pages_id, b"/X0 Do".to_vec(), resources_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_prose_and_drops_markup_scripts_and_links() {
        let page = br#"<!doctype html><html><head><title>T</title><style>p{color:red}</style>
<script>var secret = "x";</script></head><body><h1>Pilotage</h1>
<p>Every <b>vessel</b> above <a href="https://x.test/a">ninety metres</a> takes a pilot.</p>
<ul><li>Board at the outer buoy</li><li>Radio on channel&nbsp;12</li></ul>
<table><tr><td>90 m</td><td>400</td></tr></table></body></html>"#;
        let text = html(page).unwrap();
        assert!(text.contains("Pilotage"), "{text}");
        assert!(
            text.contains("Every vessel above ninety metres takes a pilot."),
            "{text}"
        );
        assert!(text.contains("Board at the outer buoy"), "{text}");
        assert!(text.contains("400"), "{text}");
        for gone in ["secret", "color", "https://", "<b>", "<p>"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
    }

    #[test]
    fn html_text_is_the_pages_own_characters_however_it_is_laid_out() {
        // A long word over many table rows, and deep nesting: nothing padded or indented.
        let rows = "<tr><td>y<td>x".repeat(50_000);
        let page = format!("<table><tr><td>{}<td>x{rows}</table>", "w".repeat(50_000));
        let text = html(page.as_bytes()).unwrap();
        assert!(
            text.len() < page.len(),
            "{} from {}",
            text.len(),
            page.len()
        );
        assert!(text.contains(&format!("{} x", "w".repeat(50_000))));
        let deep = format!(
            "{}<li>item{}",
            "<ul><li>".repeat(20_000),
            "</ul>".repeat(20_000)
        );
        let text = html(deep.as_bytes()).unwrap();
        assert!(text.len() < deep.len());
        assert!(text.contains("item"));
        // Scripts, styles and titles say nothing even when they hold tags; `pre` keeps its
        // spacing; entities are read.
        let page = "<title>Tab</title><script>if (a < b) { x = '</p>'; }</script>\
            <style>p > b { color: red }</style><p>Caf&eacute;   &amp; <b>bar</b></p>\
            <pre>  a\n    b</pre><p>end<br>line</p>";
        let text = html(page.as_bytes()).unwrap();
        assert_eq!(text, "Café & bar\n\n  a\n    b\n\nend\nline");
    }

    #[test]
    fn a_pdf_without_its_header_is_refused_before_any_parsing() {
        assert_eq!(
            pdf(b"hello, not a pdf"),
            Err(Unreadable::Mismatch(
                "the content is not a PDF (no %PDF- header)"
            ))
        );
    }

    #[test]
    fn damaged_pdfs_are_clear_errors_never_panics() {
        for bytes in [
            &b"%PDF-1.7\n"[..],
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
            b"%PDF-1.4\n\xff\xfe\x00\x01garbage\x00\x00 xref 0 999999999\ntrailer<</Size -1>>startxref 5\n%%EOF",
        ] {
            match pdf(bytes) {
                Err(Unreadable::Broken(m)) => assert!(!m.is_empty() && !m.contains("lopdf")),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_pdf_text_layer_is_read() {
        let text = pdf(&sample_pdf(
            &[
                "The pilot boards at the outer buoy.",
                "Fees are due in 30 days.",
            ],
            false,
        ))
        .unwrap();
        assert!(text.contains("pilot boards at the outer buoy"), "{text}");
        assert!(text.contains("Fees are due in 30 days"), "{text}");
    }

    #[test]
    fn a_file_that_makes_pdf_extract_panic_is_read_by_the_fallback() {
        let bytes = sample_pdf(&["Tide tables are kept in the harbour office."], true);
        let primary = catch_unwind(|| pdf_extract::extract_text_from_mem(&bytes));
        assert!(
            primary.is_err(),
            "the primary extractor is expected to panic here"
        );
        let text = pdf(&bytes).unwrap();
        assert!(text.contains("Tide tables are kept"), "{text}");
    }

    #[test]
    fn tidy_folds_blank_runs_and_drops_controls() {
        assert_eq!(tidy("a  \n\n\n\nb\x07c\n \nd\0"), "a\n\nbc\n\nd");
    }
}
