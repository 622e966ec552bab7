//! Values made mostly of digits: payment cards, IBANs, phone numbers, IP addresses, US
//! social security numbers and UK national insurance numbers. Each checker looks at one
//! start position and returns where its value ends, or `None`.

use super::{Kind, Scan};
use std::net::Ipv6Addr;

/// At a digit that starts a word: the kinds that begin with one, most specific first.
///
/// The length of the first digit group and the byte after it say which checkers can match,
/// so a plain number (`2024`, `15,5`) costs one look.
pub(super) fn at_digit(s: &mut Scan<'_>, i: usize, we: usize) -> Option<usize> {
    let (g, d) = digits(s.b, i, 20);
    let sep = s.byte(g);
    let spaced = matches!(sep, b'-' | b' ');
    if d == 3 && spaced {
        if let Some(e) = ssn(s, i) {
            s.kind(i, e, Kind::UsSsn);
            return Some(e);
        }
    }
    if d == 4 && spaced || (13..=19).contains(&d) {
        if let Some((e, valid)) = card(s, i) {
            // Card-shaped but failing the check: skipped whole, so no part of it is taken
            // for something else.
            if valid {
                s.kind(i, e, Kind::CreditCard);
            }
            return Some(e);
        }
    }
    if d <= 3 && sep == b'.' {
        if let Some(e) = ipv4(s, i) {
            s.kind(i, e, Kind::IpAddress);
            return Some(e);
        }
    }
    if we - i <= 4 && s.byte(we) == b':' {
        if let Some(e) = ipv6(s, i) {
            return Some(e);
        }
    }
    let phone_like = matches!(sep, b'-' | b'.' | b' ' | b'/');
    if phone_like && (d == 3 || d == 1 && s.b[i] == b'1' || (2..=5).contains(&d) && s.b[i] == b'0')
    {
        if let Some(e) = us_phone(s, i).or_else(|| national_phone(s, i)) {
            // A payment reference in groups (`Verwendungszweck: 0343 9160 3510`) is
            // skipped whole.
            if named_before(s.b, i) != Named::Reference {
                s.kind(i, e, Kind::Phone);
            }
            return Some(e);
        }
    }
    if g == we && clean_end(s, g) && bare_phone(&s.b[i..g]) && named_before(s.b, i) == Named::Phone
    {
        s.kind(i, g, Kind::Phone);
        return Some(g);
    }
    None
}

/// Digits written without separators that have a phone number's shape: a national number
/// of 10 to 12 digits after a trunk `0` (UK, DE, FR, NL), or a US number of 10 digits
/// (area code and exchange from 2 to 9), with its trunk `1` or without. Order, tracking
/// and invoice numbers have these shapes too, so only the words before one tell (see
/// [`named_before`]).
fn bare_phone(ds: &[u8]) -> bool {
    let us = |d: &[u8]| d.len() == 10 && d[0] >= b'2' && d[3] >= b'2';
    match ds {
        [b'0', second, ..] => *second != b'0' && (10..=12).contains(&ds.len()),
        [b'1', rest @ ..] if rest.len() == 10 => us(rest),
        _ => us(ds),
    }
}

/// What the words just before a number say it is.
#[derive(Debug, PartialEq, Eq)]
enum Named {
    /// A phone number (`Tel.`, `call me on`, `Handynummer`, `bel me even terug op`).
    Phone,
    /// A payment reference (`reference`, `betalingskenmerk`, `Verwendungszweck`).
    Reference,
    /// Another kind of number (`order`, `Rechnung`, `facture`, `DHL`).
    Other,
    /// Nothing, or another number comes first.
    Nothing,
}

/// What the nearest telling word among the five before `i`, in the same sentence, says.
fn named_before(b: &[u8], i: usize) -> Named {
    let mut end = i;
    for nth in 0..5 {
        // Back over the marks between words (`: `, `#`), never across a line, nor across
        // the end of a sentence (a dot right before the number is `Tel. `).
        while end > 0 && !super::is_word(b[end - 1]) {
            let ends_sentence = nth > 0
                && match b[end - 1] {
                    b'!' | b'?' | b';' => true,
                    // After a short word a dot marks an abbreviation (`Tel.`, `no.`, `Nr.`).
                    b'.' => {
                        b[..end - 1]
                            .iter()
                            .rev()
                            .take_while(|c| super::is_word(**c))
                            .count()
                            > 4
                    }
                    _ => false,
                };
            if matches!(b[end - 1], b'\n' | b'\r') || ends_sentence || i - end > 48 {
                return Named::Nothing;
            }
            end -= 1;
        }
        let mut start = end;
        while start > 0 && super::is_word(b[start - 1]) {
            start -= 1;
        }
        if start == end || end - start > 24 {
            return Named::Nothing;
        }
        let word = String::from_utf8_lossy(&b[start..end]).to_lowercase();
        if word.bytes().any(|c| c.is_ascii_digit()) {
            return Named::Nothing;
        }
        if REFERENCE_STEMS.iter().any(|w| word.starts_with(w))
            || REFERENCE_PARTS.iter().any(|w| word.contains(w))
        {
            return Named::Reference;
        }
        if OTHER_NUMBERS.iter().any(|w| word.contains(w)) || CARRIERS.contains(&word.as_str()) {
            return Named::Other;
        }
        if PHONE_WORDS.contains(&word.as_str())
            || PHONE_STEMS
                .iter()
                .any(|w| word.starts_with(w) || word.ends_with(w))
        {
            return Named::Phone;
        }
        end = start;
    }
    Named::Nothing
}

/// Words that say a phone number follows (or that someone is reached at it), in English,
/// German, French, Dutch and Spanish.
const PHONE_WORDS: &[&str] = &[
    "tel",
    "tél",
    "ph",
    "mob",
    "cell",
    "fax",
    "call",
    "calls",
    "ring",
    "bel",
    "gsm",
    "sms",
    "appel",
    "appelez",
    "appelle",
    "appeler",
    "rappeler",
    "rappelez",
    "bellen",
    "anrufen",
    "rufen",
    "reach",
    "dial",
    "portable",
    "handy",
    "whatsapp",
    "erreichen",
    "erreichbar",
    "bereikbaar",
    "bereiken",
    "joindre",
    "joignable",
    "astreinte",
    "llamada",
    "llamar",
    "llámame",
    "llame",
    "móvil",
    "movil",
];

/// Parts of longer words that say so (`telephone`, `Telefonnummer`, `Handynummer`,
/// `mobiel`, `callback`, `Rufbereitschaft`).
const PHONE_STEMS: &[&str] = &[
    "phone",
    "telef",
    "teleph",
    "téléph",
    "teléf",
    "telefoon",
    "mobil",
    "mobiel",
    "handy",
    "rufnummer",
    "callback",
    "hotline",
    "bereitschaft",
    "storingsdienst",
];

/// Words for payment references, which are written in groups of digits as phone numbers
/// are: their beginnings (`Referenz`, `référence`; not `preferred`) and parts of compounds
/// (`betalingskenmerk`, `Verwendungszweck`).
const REFERENCE_STEMS: &[&str] = &["ref", "réf"];
const REFERENCE_PARTS: &[&str] = &["kenmerk", "zweck", "betreff"];

/// Parcel carriers, whose name before a number makes it a tracking number.
const CARRIERS: &[&str] = &[
    "dhl",
    "ups",
    "usps",
    "fedex",
    "gls",
    "dpd",
    "tnt",
    "postnl",
    "hermes",
    "colissimo",
    "chronopost",
    "correos",
    "seur",
];

/// Parts of words for numbers that are not phone numbers: such a word between the phone
/// word and the number (`call about order 0612345678`) says the number is something else.
const OTHER_NUMBERS: &[&str] = &[
    "order",
    "invoice",
    "ticket",
    "track",
    "ref",
    "case",
    "account",
    "customer",
    "iban",
    "card",
    "bestell",
    "rechnung",
    "kunden",
    "auftrag",
    "sendung",
    "commande",
    "facture",
    "client",
    "colis",
    "bestelling",
    "factuur",
    "klant",
    "zending",
    "konto",
    "compte",
    "rekening",
    "serial",
    "serie",
    "série",
    "contract",
    "vertrag",
    "contrat",
    "policy",
    "police",
    "polis",
    "postcode",
    "zip",
    "pedido",
    "factura",
    "cuenta",
    "envío",
];

/// At `+` (an international number) or `(` (a US area code).
pub(super) fn at_phone_mark(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    // `+` or `(` glued to a word is arithmetic or a call, not a number's start.
    if i > 0 && (super::is_word(s.b[i - 1]) || s.b[i - 1] == b'+') {
        return None;
    }
    let e = if s.b[i] == b'+' {
        international_phone(s, i)
    } else {
        us_phone(s, i)
    }?;
    s.kind(i, e, Kind::Phone);
    Some(e)
}

/// At `:`: an IPv6 address that starts with `::`.
pub(super) fn at_colon(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    if s.byte(i + 1) == b':' && (i == 0 || !(s.b[i - 1] == b':' || super::is_word(s.b[i - 1]))) {
        ipv6(s, i)
    } else {
        None
    }
}

/// Digits from `i`, at most `max`: (end, count).
fn digits(b: &[u8], i: usize, max: usize) -> (usize, usize) {
    let mut j = i;
    while j < b.len() && b[j].is_ascii_digit() && j - i < max {
        j += 1;
    }
    (j, j - i)
}

fn digit_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

/// A value made of digit groups must not run on into more digits or letters.
fn clean_end(s: &Scan<'_>, e: usize) -> bool {
    if !s.ends_word(e) {
        return false;
    }
    // `1.5` or `1,5` after it: the groups were the start of a longer number.
    !(matches!(s.byte(e), b'.' | b',') && digit_at(s.b, e + 1))
}

fn luhn(ds: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in ds.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A card number from a known issuer range, Luhn-valid: bare, in groups of four, or grouped
/// 4-6-5 / 4-6-4 (American Express, Diners), by spaces or dashes. Returns the end of a
/// card-shaped number and whether it passes.
fn card(s: &Scan<'_>, i: usize) -> Option<(usize, bool)> {
    let b = s.b;
    let mut ds: [u8; 20] = [0; 20];
    let mut n = 0usize;
    let mut groups: [usize; 8] = [0; 8];
    let mut ng = 0usize;
    let mut sep = 0u8;
    let mut j = i;
    loop {
        let (e, c) = digits(b, j, 20);
        if c == 0 || n + c > 19 || ng == groups.len() {
            return None;
        }
        for (k, d) in b[j..e].iter().enumerate() {
            ds[n + k] = d - b'0';
        }
        n += c;
        groups[ng] = c;
        ng += 1;
        j = e;
        let next = s.byte(j);
        if (next == b' ' || next == b'-') && digit_at(b, j + 1) && (sep == 0 || sep == next) {
            sep = next;
            j += 1;
        } else {
            break;
        }
    }
    if !(13..=19).contains(&n) || !clean_end(s, j) {
        return None;
    }
    let g = &groups[..ng];
    let grouped_ok = ng == 1
        || g[..ng - 1].iter().all(|&x| x == 4) && (1..=4).contains(&g[ng - 1])
        || g == [4, 6, 5]
        || g == [4, 6, 4];
    if !grouped_ok {
        return None;
    }
    Some((j, issuer(&ds[..n]) && luhn(&ds[..n])))
}

/// Issuer prefix and length: Visa, Mastercard, American Express, Discover, JCB, Diners,
/// UnionPay, Maestro.
fn issuer(ds: &[u8]) -> bool {
    let n = ds.len();
    let p = |k: usize| ds[..k].iter().fold(0u32, |a, d| a * 10 + u32::from(*d));
    match ds[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&p(2)) && n == 16 || matches!(p(2), 50 | 56..=58) && n >= 12,
        2 => (2221..=2720).contains(&p(4)) && n == 16,
        3 => {
            matches!(p(2), 34 | 37) && n == 15
                || p(2) == 35 && (16..=19).contains(&n)
                || (matches!(p(2), 36 | 38 | 39) || (300..=305).contains(&p(3))) && n >= 14
        }
        6 => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62 || p(2) == 67)
                && (16..=19).contains(&n)
        }
        _ => false,
    }
}

/// `ddd-dd-dddd` or `ddd dd dddd`, with the area, group and serial SSA never issues left
/// out; the spaced form only next to words that say what it is.
fn ssn(s: &Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    let (e1, c1) = digits(b, i, 4);
    let sep = s.byte(e1);
    if c1 != 3 || !(sep == b'-' || sep == b' ') {
        return None;
    }
    let (e2, c2) = digits(b, e1 + 1, 3);
    if c2 != 2 || s.byte(e2) != sep {
        return None;
    }
    let (e3, c3) = digits(b, e2 + 1, 5);
    if c3 != 4 || !clean_end(s, e3) || s.byte(e3) == sep && digit_at(b, e3 + 1) {
        return None;
    }
    let num = |a: usize, e: usize| {
        b[a..e]
            .iter()
            .fold(0u32, |x, d| x * 10 + u32::from(d - b'0'))
    };
    let area = num(i, e1);
    if area == 0 || area == 666 || area >= 900 || num(e1 + 1, e2) == 0 || num(e2 + 1, e3) == 0 {
        return None;
    }
    // Without the words, a dashed 3-2-4 group is still taken; a spaced one is not.
    if sep == b' ' && !near_ssn_words(s, i) {
        return None;
    }
    Some(e3)
}

fn near_ssn_words(s: &Scan<'_>, i: usize) -> bool {
    let from = i.saturating_sub(48);
    let mut from = from;
    while !s.text.is_char_boundary(from) {
        from += 1;
    }
    let before = s.text[from..i].to_ascii_lowercase();
    [
        "ssn",
        "social security",
        "soc. sec",
        "soc sec",
        "socsec",
        "sozialversicherung",
    ]
    .iter()
    .any(|w| before.contains(w))
}

/// A dotted quad with octets 0-255 and no leading zeros, not part of a version string.
fn ipv4(s: &Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    let mut j = i;
    for k in 0..4 {
        let (e, c) = digits(b, j, 4);
        if c == 0 || c > 3 || c > 1 && b[j] == b'0' {
            return None;
        }
        let v = b[j..e]
            .iter()
            .fold(0u32, |x, d| x * 10 + u32::from(d - b'0'));
        if v > 255 {
            return None;
        }
        j = e;
        if k < 3 {
            if s.byte(j) != b'.' {
                return None;
            }
            j += 1;
        }
    }
    if !s.ends_word(j) || s.byte(j) == b'.' && digit_at(b, j + 1) {
        return None;
    }
    // `Chrome/120.0.0.1`, `build 4.12.0.1`, `version 1.2.3.4`: a version, not an address.
    if i > 0 && b[i - 1] == b'/' && i > 1 && b[i - 2].is_ascii_alphabetic() {
        return None;
    }
    if previous_word_is(
        s,
        i,
        &[
            "v", "version", "build", "release", "ver", "firmware", "versie",
        ],
    ) {
        return None;
    }
    Some(j)
}

/// Whether the word before `i` (across spaces, a colon or a dot) is one of `words`.
fn previous_word_is(s: &Scan<'_>, i: usize, words: &[&str]) -> bool {
    let b = s.b;
    let mut j = i;
    while j > 0 && matches!(b[j - 1], b' ' | b':' | b'.' | b'\t') {
        j -= 1;
    }
    let e = j;
    while j > 0 && b[j - 1].is_ascii_alphabetic() {
        j -= 1;
    }
    e > j
        && words
            .iter()
            .any(|w| w.len() == e - j && b[j..e].eq_ignore_ascii_case(w.as_bytes()))
}

/// An IPv6 address (also one ending in a dotted quad), parsed by the standard library.
pub(super) fn ipv6(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    // Cheap refusal first: an address has a colon within its first five bytes.
    if !b[i..b.len().min(i + 6)].contains(&b':') {
        return None;
    }
    let mut j = i;
    let mut colons = 0;
    while j < b.len() && j - i < 45 && (b[j].is_ascii_hexdigit() || b[j] == b':' || b[j] == b'.') {
        colons += usize::from(b[j] == b':');
        j += 1;
    }
    // A sentence may end right after it.
    while j > i && matches!(b[j - 1], b'.' | b':') && !b[i..j].ends_with(b"::") {
        j -= 1;
    }
    if colons < 2 || !s.ends_word(j) {
        return None;
    }
    let text = std::str::from_utf8(&b[i..j]).ok()?;
    text.parse::<Ipv6Addr>().ok()?;
    s.kind(i, j, Kind::IpAddress);
    Some(j)
}

/// `(415) 555-0132`, `415-555-0132`, `415.555.0132`, `415 555 0132`, optionally after `1-`:
/// area and exchange codes never start with 0 or 1.
fn us_phone(s: &Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    let mut j = i;
    // A leading trunk `1` with the separator the rest uses.
    if s.byte(j) == b'1' && matches!(s.byte(j + 1), b'-' | b' ' | b'.') && s.byte(j + 2) != b' ' {
        if let Some(e) = us_phone_body(s, j + 2) {
            return Some(e);
        }
    }
    let paren = s.byte(j) == b'(';
    if paren {
        j += 1;
    }
    let (e, c) = digits(b, j, 4);
    if c != 3 || !(b'2'..=b'9').contains(&b[j]) {
        return None;
    }
    j = e;
    let sep = if paren {
        if s.byte(j) != b')' {
            return None;
        }
        j += 1;
        if s.byte(j) == b' ' {
            j += 1;
        }
        b'-'
    } else {
        let c = s.byte(j);
        if !matches!(c, b'-' | b'.' | b' ') {
            return None;
        }
        j += 1;
        c
    };
    let (e, c) = digits(b, j, 4);
    if c != 3 || !(b'2'..=b'9').contains(&b[j]) {
        return None;
    }
    j = e;
    let next = s.byte(j);
    if !(next == sep || paren && matches!(next, b'-' | b'.' | b' ')) {
        return None;
    }
    let (e, c) = digits(b, j + 1, 5);
    (c == 4 && clean_end(s, e) && !(matches!(s.byte(e), b'-' | b' ') && digit_at(b, e + 1)))
        .then_some(e)
}

fn us_phone_body(s: &Scan<'_>, i: usize) -> Option<usize> {
    if s.byte(i) == b'(' || s.byte(i).is_ascii_digit() {
        us_phone(s, i)
    } else {
        None
    }
}

/// Groups of digits split by single separators, as phone numbers are written: returns the
/// end of the longest run whose digit count lies in `min..=max`, and whether any separator
/// or `(0)` was seen. Stops at a time (`10:22`) or a decimal (`1,5`).
fn groups(
    s: &Scan<'_>,
    mut j: usize,
    already: usize,
    min: usize,
    max: usize,
) -> Option<(usize, bool, usize)> {
    let b = s.b;
    let mut count = already;
    let mut best = None;
    let mut separated = false;
    let mut first_len = 0;
    loop {
        // `(0)` is the trunk prefix written into an international number.
        if b[j..].starts_with(b"(0)") {
            j += 3;
            separated = true;
            if s.byte(j) == b' ' {
                j += 1;
            }
            continue;
        }
        let (e, c) = digits(b, j, 16);
        if c == 0 {
            break;
        }
        if first_len == 0 {
            first_len = c;
        }
        count += c;
        j = e;
        if count > max {
            break;
        }
        let next = s.byte(j);
        if count >= min && clean_end(s, j) && next != b':' {
            best = Some((j, separated, first_len));
        }
        if matches!(next, b' ' | b'-' | b'.' | b'/')
            && (digit_at(b, j + 1) || b[j + 1..].starts_with(b"(0)"))
        {
            separated = true;
            j += 1;
        } else {
            break;
        }
    }
    best
}

/// `+44 20 7946 0958`, `+49 (0)30 1234567`, `+33 6 12 34 56 78`, `+1-415-555-0132`.
fn international_phone(s: &Scan<'_>, i: usize) -> Option<usize> {
    if !digit_at(s.b, i + 1) || s.byte(i + 1) == b'0' {
        return None;
    }
    let (e, _, _) = groups(s, i + 1, 0, 8, 15)?;
    Some(e)
}

/// A national number in Europe's format: a trunk `0`, an area or mobile code, then groups:
/// `020 7946 0958`, `030/1234567`, `06-12345678`, `01 23 45 67 89`.
fn national_phone(s: &Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    if b[i] != b'0' || !matches!(s.byte(i + 1), b'1'..=b'9') {
        return None;
    }
    let (e, separated, first) = groups(s, i, 0, 9, 12)?;
    (separated && (2..=5).contains(&first)).then_some(e)
}

/// IBAN lengths by country (ISO 13616 registry, the SEPA countries and a few more).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN of a listed country at its exact length, compact or in groups of four, whose
/// mod-97 check holds.
pub(super) fn iban(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    if b.len() < i + 4
        || !b[i + 1].is_ascii_uppercase()
        || !digit_at(b, i + 2)
        || !digit_at(b, i + 3)
    {
        return None;
    }
    let cc = [b[i], b[i + 1]];
    let len = IBAN_LENGTHS.iter().find(|(c, _)| **c == cc)?.1;
    let mut chars = [0u8; 34];
    chars[..4].copy_from_slice(&b[i..i + 4]);
    let mut n = 4;
    let mut j = i + 4;
    while n < len {
        let c = s.byte(j);
        if c.is_ascii_alphanumeric() {
            chars[n] = c.to_ascii_uppercase();
            n += 1;
            j += 1;
        } else if c == b' ' && n % 4 == 0 && s.byte(j + 1).is_ascii_alphanumeric() {
            j += 1;
        } else {
            return None;
        }
    }
    if !s.ends_word(j) {
        return None;
    }
    // Move the country and check digits to the end; letters count as 10..35.
    let mut rem = 0u32;
    for &c in chars[4..len].iter().chain(&chars[..4]) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(c - b'A') + 10) % 97;
        }
    }
    // A wrong check still skips the whole IBAN-shaped string.
    if rem == 1 {
        s.kind(i, j, Kind::Iban);
    }
    Some(j)
}

/// A UK national insurance number: two prefix letters HMRC issues, six digits (compact or
/// in pairs), a suffix A-D.
pub(super) fn nino(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    let (p1, p2) = (s.byte(i), s.byte(i + 1));
    let first_ok = p1.is_ascii_uppercase() && !b"DFIQUV".contains(&p1);
    let second_ok = p2.is_ascii_uppercase() && !b"DFIOQUV".contains(&p2);
    if !first_ok || !second_ok {
        return None;
    }
    if [b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"].contains(&&[p1, p2]) {
        return None;
    }
    let mut j = i + 2;
    let spaced = s.byte(j) == b' ';
    if spaced {
        j += 1;
    }
    for pair in 0..3 {
        if !digit_at(b, j) || !digit_at(b, j + 1) {
            return None;
        }
        j += 2;
        if spaced && pair < 2 {
            if s.byte(j) != b' ' {
                return None;
            }
            j += 1;
        }
    }
    if s.byte(j) == b' ' && (b'A'..=b'D').contains(&s.byte(j + 1)) {
        j += 1;
    } else if spaced {
        return None;
    }
    if !(b'A'..=b'D').contains(&s.byte(j)) {
        return None;
    }
    j += 1;
    if !s.ends_word(j) {
        return None;
    }
    s.kind(i, j, Kind::UkNino);
    Some(j)
}
