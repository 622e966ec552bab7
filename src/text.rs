//! Names that people type and other people read: tenant names now, user and document names
//! later. One rule for all of them, so a name displays as what it is.
//!
//! A name is trimmed and normalised to NFC (so two spellings of "é" are one name), and it may
//! not contain control characters (Unicode category Cc) or format characters (Cf): a
//! right-to-left override (U+202E), a zero-width space (U+200B) or a direction mark (U+200F)
//! makes a name display as something it is not.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why a name was refused, said so the person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {0} characters")]
    TooLong(usize),
    #[error("it contains a control character (U+{0:04X})")]
    Control(u32),
    #[error("it contains an invisible formatting character (U+{0:04X}), which can make it display as something else")]
    Format(u32),
}

/// Default-ignorable code points outside category Cf: they render as nothing, so a name
/// made of them, or one with them inside, is not what it looks like (Unicode's
/// Default_Ignorable_Code_Point, less the Cf ones already refused).
fn invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x034F | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x3164
            | 0xFE00..=0xFE0F | 0xFFA0 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF
    )
}

/// The name as it will be stored: trimmed, NFC, at most `max_chars` characters.
///
/// # Errors
/// Empty, too long, or a control or format character anywhere in it.
pub fn display_name(raw: &str, max_chars: usize) -> Result<String, NameProblem> {
    let name: String = raw.trim().nfc().collect();
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    for c in name.chars() {
        match c.general_category() {
            GeneralCategory::Control
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator => return Err(NameProblem::Control(c as u32)),
            GeneralCategory::Format => return Err(NameProblem::Format(c as u32)),
            _ if invisible(c) => return Err(NameProblem::Format(c as u32)),
            _ => {}
        }
    }
    if name.chars().count() > max_chars {
        return Err(NameProblem::TooLong(max_chars));
    }
    Ok(name)
}

/// A name made from free text (a conversation's first question): what [`display_name`]
/// would refuse (control, format and invisible characters, line and paragraph separators)
/// taken out, white space runs as one space, at most `max_chars` characters; `None` when
/// nothing is left.
pub fn name_from(raw: &str, max_chars: usize) -> Option<String> {
    let kept: String = raw
        .nfc()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|&c| {
            !invisible(c)
                && !matches!(
                    c.general_category(),
                    GeneralCategory::Control
                        | GeneralCategory::Format
                        | GeneralCategory::LineSeparator
                        | GeneralCategory::ParagraphSeparator
                )
        })
        .collect();
    let name: String = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    let name: String = name.chars().take(max_chars).collect();
    let name = name.trim_end().to_string();
    display_name(&name, max_chars).ok()
}

/// Whether `s` holds a control character (Unicode Cc: C0, DEL or C1) other than a line
/// break or tab when `breaks_too` is false, found on its bytes: C0 and DEL are single
/// bytes, C1 is 0xC2 then 0x80 to 0x9F.
fn has_control(s: &str, breaks_too: bool) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        (c < 0x20 && (breaks_too || !matches!(c, b'\n' | b'\t')))
            || c == 0x7f
            || (c == 0xc2 && matches!(b.get(i + 1), Some(0x80..=0x9f)))
    })
}

/// `text` with its control characters dropped, line breaks and tabs kept: stored text that
/// people read, on a page or a terminal, carries no escape sequence, bell or carriage
/// return, whatever the file held (a JSON `\u001b` is an escape once decoded). The other
/// ways of ending a line (CR LF, a lone CR of old Mac files, NEL, form and line feeds) become
/// line breaks, so the words on either side never run together.
pub fn without_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !has_control(text, false) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\u{85}' | '\u{0b}' | '\u{0c}' => out.push('\n'),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` to print on a terminal as one line: line breaks and tabs as spaces, any other
/// control character as U+FFFD, so that text from a document cannot drive the terminal.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !has_control(text, true) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' | '\t' | '\r' => ' ',
                c if c.is_control() => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_display_misleadingly_are_refused() {
        for (bad, code) in [
            ("evil\u{202E}gpj.exe", 0x202E),
            ("a\u{200B}b", 0x200B),
            ("admin\u{200F}", 0x200F),
            ("x\u{2066}y", 0x2066),
            ("\u{FEFF}bom", 0xFEFF),
            ("soft\u{00AD}hyphen", 0x00AD),
        ] {
            assert_eq!(
                display_name(bad, 100),
                Err(NameProblem::Format(code)),
                "{bad:?}"
            );
        }
        assert_eq!(display_name("a\u{0}b", 100), Err(NameProblem::Control(0)));
        assert_eq!(
            display_name("a\u{2028}b", 100),
            Err(NameProblem::Control(0x2028))
        );
        assert_eq!(
            display_name("a\u{2029}b", 100),
            Err(NameProblem::Control(0x2029))
        );
        for (bad, code) in [
            ("Ac\u{034F}me", 0x034F),
            ("\u{3164}", 0x3164),
            ("x\u{FE0F}", 0xFE0F),
            ("\u{115F}a", 0x115F),
        ] {
            assert_eq!(
                display_name(bad, 100),
                Err(NameProblem::Format(code)),
                "{bad:?}"
            );
        }
        assert_eq!(display_name("a\nb", 100), Err(NameProblem::Control(10)));
        assert_eq!(display_name("  \t ", 100), Err(NameProblem::Empty));
        assert_eq!(
            display_name(&"x".repeat(101), 100),
            Err(NameProblem::TooLong(100))
        );
        let e = display_name("a\u{202E}b", 100).unwrap_err().to_string();
        assert!(e.contains("U+202E"), "{e}");
    }

    #[test]
    fn names_are_trimmed_and_normalised() {
        assert_eq!(
            display_name("  Acme Logistics ", 100).unwrap(),
            "Acme Logistics"
        );
        // "e" + combining acute becomes the single precomposed character.
        let composed = display_name("Caf\u{0065}\u{0301}", 100).unwrap();
        assert_eq!(composed, "Caf\u{00E9}");
        assert_eq!(composed, display_name("Caf\u{00E9}", 100).unwrap());
        // Scripts and emoji that are not format characters stay.
        assert!(display_name("Zürich Ωmega 東京 🚚", 100).is_ok());
        // The length limit counts characters after normalisation.
        assert!(display_name(&"e\u{0301}".repeat(100), 100).is_ok());
    }

    #[test]
    fn a_name_made_from_free_text_displays_as_what_it_is() {
        assert_eq!(
            super::name_from("  Who \u{202e}signs\u{200b} the\n\tlog?\u{7} ", 80).as_deref(),
            Some("Who signs the log?")
        );
        assert_eq!(super::name_from("ab cd", 3).as_deref(), Some("ab"));
        assert_eq!(super::name_from("\u{200b}\u{202e} \n", 80), None);
    }

    #[test]
    fn control_characters_are_dropped_or_shown_and_other_text_is_left_alone() {
        let plain = "Café — 東京\tline\nnext \u{a0}\u{bf}";
        assert!(matches!(
            super::without_controls(plain),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(matches!(
            super::one_line("Café — 東京"),
            std::borrow::Cow::Borrowed(_)
        ));
        let hostile = "pilot \u{1b}]52;c;ZXZpbA==\u{7}\r\nnext\u{85}\u{9b}31m\u{7f}end";
        assert_eq!(
            super::without_controls(hostile),
            "pilot ]52;c;ZXZpbA==\nnext\n31mend"
        );
        // Every way of ending a line ends one: old Mac files, form feeds, NEL.
        assert_eq!(
            super::without_controls("First line\rSecond\r\nThird\u{c}Fourth\u{b}Fifth"),
            "First line\nSecond\nThird\nFourth\nFifth"
        );
        assert_eq!(
            super::one_line(hostile),
            "pilot \u{fffd}]52;c;ZXZpbA==\u{fffd}  next\u{fffd}\u{fffd}31m\u{fffd}end"
        );
    }
}
