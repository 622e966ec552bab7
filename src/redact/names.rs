//! People's names, best effort: a known first name followed by a surname, any capitalised
//! words after a title (`Dr.`, `Frau`, `Mme`), or after a cue that introduces a person
//! (`From:`, `Kind regards,`). Measured by `strongroom bench redact`, not promised.

use super::{Kind, Scan};
use std::collections::HashMap;
use std::sync::OnceLock;

/// First names across the languages the appliance's users write in. Lower case.
const FIRST_NAMES: &str = "
aaron abdul abdullah adam adaeze adebayo adeola aditya adriana adrian agnieszka ahmed ahmet aiko
aisha akira alain alejandro aleksander alessandro alessia alex alexander alexandra ali alice
alicia amanda amelie amina amir amit ana anders andrea andreas andrew andrzej angela angelika
anita anja anna anne annelies annika anouk antoine antonio anya arjun arnaud arthur astrid aurelie
ayumi aylin aysel ayşe baptiste barbara bart bastian beatriz bella ben benedikt benjamin bernd
bettina bianca bilal birgit björn bram brian bruno burak camille carla carlos carmen carolina
caroline catarina catherine cecile cedric celine charles charlotte chen chiara chidi chinedu
chioma christian christina christine christoph christopher claire clara claudia colin daan daniel
daniela david deepak deniz dennis diana diego dieter dimitri dirk dominik dorota dylan edith
eduardo elena elif elisa elisabeth elise ella ellen emeka emil emilia emily emma emre enrique eric
erik esra esther ethan eva evelyn ewa fabian fabienne fatima fatma felix femke fernando filip
finn florian francesca francesco francisco frank franziska françois frederic frédéric gabriel
gabriele gabriela georg george gerard gerrit giulia giuseppe giovanni grace gregor greta guillaume
gustavo hamza hana hannah hans haruto harry hasan heike heinrich helen helena helga hendrik henrik
henry hiroshi hugo ibrahim ida ifeoma ilse ines ingrid irene isabel isabella isabelle ivan jacob
jakob jakub james jan jana janine jannik jasper javier jean jennifer jens jeroen jessica joanna
joao joão johan johanna johannes john jonas jonathan jordi jorge jose josé josef joseph juan
judith julia julian julie julien jurgen jürgen justyna kai kamil karen karim karin karl karolina
katarzyna kateryna katharina kathrin katrin kemal kenji kevin khalid kim klaus koen krzysztof
kumar lars laura laurens lea leila lena leon leonie lieke lin linda lisa liam lotte louis louise
luca lucas lucia lucy ludwig luis luisa lukas łukasz maarten magdalena mahmoud manon manuel marc
marcel marco marek margaret maria marie marina mario marion mark marko marta martin martina
mary mateo mathieu mathilde matteo matthias max maxime maximilian mehmet melanie mia michael
michał michel michelle miguel mika milan miriam mohamed mohammed monika mustafa nadia naoki nathalie
nicolas niklas nina noah noor nora nuno oliver olivia olga omar oscar pablo paolo pascal patricia
patrick paul paula pauline pedro peter petra philipp piet pieter pierre pietro piotr pooja priya
rachel rafael rahul raj rajesh ralf ramón raphael raquel rebecca reinhard rene rené ricardo richard
rita robert roberto robin rosa ruben rui ruth ryan sabine sakura salma samuel sandra sanjay sara
sarah sascha sebastian selin sergio shreya simon simone sofia sophie sören stefan stefanie stephan
stephanie steven sunita susanne suzanne sven tanja tariq thomas thijs tim timo tobias tom tomasz
tuba ulrich ursula valentina vanessa vera victor vincent vikram wei werner willem wim wojciech
xavier yasmin yuki yusuf yves zainab zeynep zhang zofia zoe
";

/// Titles and forms of address; the capitalised words after one are a name.
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "dr", "prof", "herr", "frau", "m", "mme", "mlle", "sr", "sra",
    "srta", "dhr", "mevr", "sig", "sir", "dame", "madame", "monsieur", "señor", "señora",
];

/// Words after which the next capitalised words introduce a person.
const CUES: &[&str] = &[
    "from",
    "contact",
    "kontakt",
    "ansprechpartner",
    "ansprechpartnerin",
    "regards",
    "grüßen",
    "grüße",
    "groeten",
    "cordialement",
    "salutations",
    "saludos",
    "atentamente",
    "sincerely",
    "cheers",
    "signed",
    "assigned",
    "attn",
    "requester",
    "reporter",
    "customer",
    "kunde",
    "kundin",
    "client",
    "cliente",
    "klant",
    "patient",
    "patiënt",
    "name",
    "naam",
    "nom",
    "nombre",
    "contacto",
];

/// Prepositions that introduce a person after one of [`VERBS`].
const PREPOSITIONS: &[&str] = &[
    "by", "to", "von", "an", "par", "à", "door", "aan", "por", "a",
];

const VERBS: &[&str] = &[
    "signed",
    "assigned",
    "written",
    "sent",
    "reported",
    "approved",
    "submitted",
    "forwarded",
    "escalated",
    "unterschrieben",
    "gesendet",
    "zugewiesen",
    "geschickt",
    "signé",
    "envoyé",
    "assigné",
    "ondertekend",
    "gestuurd",
    "toegewezen",
    "firmado",
    "enviado",
    "asignado",
];

/// Name particles that sit between a first name and the surname.
pub(super) const PARTICLES: &[&str] = &[
    "van", "der", "den", "de", "von", "zu", "di", "da", "du", "le", "la", "del", "della", "dos",
    "das", "ten", "ter", "al", "el", "bin", "ben", "mac", "st",
];

/// Whether a lower-case word is one of [`PARTICLES`], without a table lookup.
pub(super) fn particle(w: &[u8]) -> bool {
    matches!(
        w,
        b"van"
            | b"der"
            | b"den"
            | b"de"
            | b"von"
            | b"zu"
            | b"di"
            | b"da"
            | b"du"
            | b"le"
            | b"la"
            | b"del"
            | b"della"
            | b"dos"
            | b"das"
            | b"ten"
            | b"ter"
            | b"al"
            | b"el"
            | b"bin"
            | b"ben"
            | b"mac"
            | b"st"
    )
}

/// Capitalised words that follow a first name without being a surname.
const NOT_SURNAMES: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "montag",
    "dienstag",
    "mittwoch",
    "donnerstag",
    "freitag",
    "samstag",
    "sonntag",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "gmbh",
    "inc",
    "ltd",
    "bank",
    "street",
    "road",
    "team",
    "support",
    "group",
    "und",
    "and",
    "the",
    "der",
    "die",
    "das",
    "le",
    "la",
    "les",
    "el",
    "los",
    "het",
    "een",
];

/// A word of letters (with inner `-` or `'`, as in `Jean-Luc`, `O'Brien`): its end. ASCII
/// letters are taken a byte at a time; only other characters are decoded.
fn word_end(text: &str, i: usize) -> usize {
    let b = text.as_bytes();
    let letter_at = |k: usize| -> Option<usize> {
        match b.get(k) {
            Some(c) if c.is_ascii_alphabetic() => Some(1),
            Some(c) if *c >= 0x80 => text
                .get(k..)
                .and_then(|t| t.chars().next())
                .filter(|ch| ch.is_alphabetic())
                .map(char::len_utf8),
            _ => None,
        }
    };
    let mut j = i;
    loop {
        while j < b.len() && b[j].is_ascii_alphabetic() {
            j += 1;
        }
        if let Some(len) = letter_at(j) {
            j += len;
            continue;
        }
        // An inner hyphen or apostrophe between two letters.
        let sep = match b.get(j) {
            Some(b'-' | b'\'') => 1,
            _ if b[j..].starts_with("’".as_bytes()) => 3,
            _ => 0,
        };
        if sep > 0 && j > i && letter_at(j + sep).is_some() {
            j += sep;
            continue;
        }
        return j;
    }
}

/// Upper-case first letter and at least one lower-case letter (not an acronym).
fn capitalised(w: &str) -> bool {
    let mut cs = w.chars();
    cs.next().is_some_and(char::is_uppercase) && cs.any(char::is_lowercase)
}

/// What a word is to the name finder, as bits: one lookup per word answers every question.
const FIRST: u8 = 1;
const TITLE: u8 = 2;
const CUE: u8 = 4;
const PARTICLE: u8 = 8;
const NOT_SURNAME: u8 = 16;
const PREPOSITION: u8 = 32;
const VERB: u8 = 64;

/// FNV-1a: the word table is fixed at start and only looked up, so a keyed hash buys
/// nothing here and SipHash costs a fifth of the scan.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Table = HashMap<&'static [u8], u8, std::hash::BuildHasherDefault<Fnv>>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Table::default();
        let lists: [(&[&'static str], u8); 6] = [
            (TITLES, TITLE),
            (CUES, CUE),
            (PARTICLES, PARTICLE),
            (NOT_SURNAMES, NOT_SURNAME),
            (PREPOSITIONS, PREPOSITION),
            (VERBS, VERB),
        ];
        for w in FIRST_NAMES.split_whitespace() {
            *t.entry(w.as_bytes()).or_default() |= FIRST;
        }
        for (list, bit) in lists {
            for w in list {
                *t.entry(w.as_bytes()).or_default() |= bit;
            }
        }
        t
    })
}

/// The class bits of `w`, by its lower case; ASCII words are lower-cased on the stack.
fn class(w: &str) -> u8 {
    if w.len() > 24 {
        return 0;
    }
    if w.is_ascii() {
        let mut buf = [0u8; 24];
        let lower = &mut buf[..w.len()];
        lower.copy_from_slice(w.as_bytes());
        lower.make_ascii_lowercase();
        return table().get(&*lower).copied().unwrap_or(0);
    }
    let mut buf = [0u8; 48];
    let mut n = 0;
    for c in w.chars().flat_map(char::to_lowercase) {
        let len = c.len_utf8();
        if n + len > buf.len() {
            return 0;
        }
        c.encode_utf8(&mut buf[n..]);
        n += len;
    }
    table().get(&buf[..n]).copied().unwrap_or(0)
}

/// At a word start: a name that starts here (after a title or a cue, or with a known first
/// name), pushed as a PERSON; returns where the scan goes on.
pub(super) fn at_word(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    let first = s.b[i];
    if !(first.is_ascii_uppercase() || first >= 0x80 || first == b'd' || first == b'm') {
        return None;
    }
    let e = word_end(s.text, i);
    if e == i {
        return None;
    }
    // A name goes on after a space (or a title's dot and a space), with a word.
    let after = s.byte(e);
    let next = match after {
        b' ' => s.byte(e + 1),
        b'.' if s.byte(e + 1) == b' ' => s.byte(e + 2),
        _ => return None,
    };
    let next_capital = next.is_ascii_uppercase() || next >= 0x80;
    if !next_capital {
        // Only a particle (`Jan de Vries`) continues a name in lower case; most sentences
        // leave here, before any lookup.
        let from = if after == b' ' { e + 1 } else { e + 2 };
        let mut k = from;
        while k < s.b.len() && k - from <= 5 && s.b[k].is_ascii_lowercase() {
            k += 1;
        }
        if k == from || k - from > 5 || s.byte(k) != b' ' || !particle(&s.b[from..k]) {
            return None;
        }
    }
    let w = &s.text[i..e];
    let bits = class(w);
    if bits & TITLE != 0 && e - i <= 6 && w != "m" {
        if !next_capital {
            return None;
        }
        let from = if after == b' ' { e + 1 } else { e + 2 };
        let (from, end) = name_from(s, from, 1)?;
        s.kind(from, end, Kind::Person);
        return Some(end);
    }
    if after != b' ' || !capitalised(w) {
        return None;
    }
    if bits & FIRST == 0 && !after_cue(s, i) {
        return None;
    }
    let (from, end) = name_from(s, i, 2)?;
    s.kind(from, end, Kind::Person);
    Some(end)
}

/// Capitalised words (with particles between) from `i`: at least `min` of them, at most four.
fn name_from(s: &Scan<'_>, i: usize, min: usize) -> Option<(usize, usize)> {
    let text = s.text;
    let mut j = i;
    let mut words = 0;
    let mut end = i;
    while words < 4 && j < text.len() {
        let e = word_end(text, j);
        if e == j {
            break;
        }
        let w = &text[j..e];
        if capitalised(w) && !(words > 0 && class(w) & NOT_SURNAME != 0) {
            words += 1;
            end = e;
        } else if words == 0 || class(w) & PARTICLE == 0 {
            break;
        }
        // One space (not a line break) between the words of a name.
        if s.byte(e) != b' ' {
            break;
        }
        j = e + 1;
    }
    (words >= min).then_some((i, end))
}

/// The word before `i`, over spaces, a comma, a colon or a line break: (start, end).
fn previous_word(s: &Scan<'_>, i: usize) -> Option<(usize, usize)> {
    let b = s.b;
    let mut j = i;
    while j > 0 && matches!(b[j - 1], b' ' | b',' | b':' | b'\n' | b'\r' | b'\t') {
        j -= 1;
    }
    let e = j;
    while j > 0 && e - j < 32 && (b[j - 1].is_ascii_alphabetic() || b[j - 1] >= 0x80) {
        j -= 1;
    }
    (e > j && s.text.is_char_boundary(j)).then_some((j, e))
}

/// Whether a cue comes right before `i`: a word like `From:`, or a verb with its
/// preposition (`assigned to`, `signed by`).
fn after_cue(s: &Scan<'_>, i: usize) -> bool {
    let Some((j, e)) = previous_word(s, i) else {
        return false;
    };
    let bits = class(&s.text[j..e]);
    bits & CUE != 0
        || bits & PREPOSITION != 0
            && previous_word(s, j).is_some_and(|(a, z)| class(&s.text[a..z]) & VERB != 0)
}
