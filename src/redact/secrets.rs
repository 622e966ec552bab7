//! Secrets and addresses: PEM private keys, passwords in URLs, e-mail addresses, vendor
//! tokens (by their published prefixes), JWTs, and random-looking values written right after
//! a key-like name (`api_key=…`, `"client_secret": "…"`, `Authorization: Bearer …`).

use super::{Kind, Scan};
use memchr::memmem;

/// The longest value we look at after a key-like name, and the longest PEM block.
const MAX_VALUE: usize = 512;
const MAX_PEM: usize = 64 * 1024;

/// `-----BEGIN … PRIVATE KEY-----` through its END line, whatever sits between: real
/// newlines, JSON's `\n`, YAML's indentation. A block cut off before its END line is taken
/// up to the end of its base64 body.
pub(super) fn private_keys(s: &mut Scan<'_>) {
    let b = s.b;
    static BEGIN: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    let finder = BEGIN.get_or_init(|| memmem::Finder::new(b"-----BEGIN "));
    let mut from = 0;
    while let Some(p) = finder.find(&b[from..]) {
        let start = from + p;
        let label_at = start + 11;
        let window = &b[label_at..b.len().min(label_at + 64)];
        let Some(close) = memmem::find(window, b"-----") else {
            from = label_at;
            continue;
        };
        if memmem::find(&window[..close], b"PRIVATE KEY").is_none() {
            from = label_at;
            continue;
        }
        let body = label_at + close + 5;
        let limit = b.len().min(body + MAX_PEM);
        let end = match memmem::find(&b[body..limit], b"-----END ") {
            Some(q) => {
                let e = body + q + 9;
                let tail = &b[e..b.len().min(e + 64)];
                memmem::find(tail, b"-----").map_or(e, |r| e + r + 5)
            }
            None => base64_body_end(b, body, limit),
        };
        s.kind(start, end, Kind::PrivateKey);
        from = end.max(label_at);
    }
}

/// Where a PEM body cut off before its END line ends: the last of the lines (real or
/// JSON-escaped line breaks, any indentation) made only of base64 characters.
fn base64_body_end(b: &[u8], from: usize, limit: usize) -> usize {
    let mut j = from;
    let mut last = from;
    loop {
        // One line break, real or escaped, then indentation.
        if b[j..limit].starts_with(b"\\n") || b[j..limit].starts_with(b"\r\n") {
            j += 2;
        } else if j < limit && b[j] == b'\n' {
            j += 1;
        } else {
            return last;
        }
        while j < limit && matches!(b[j], b' ' | b'\t') {
            j += 1;
        }
        let line = j;
        while j < limit && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'+' | b'/' | b'=')) {
            j += 1;
        }
        let ends_line = j == limit
            || b[j] == b'\n'
            || b[j] == b'\r'
            || b[j..limit].starts_with(b"\\n")
            || b[j] == b'"';
        if j == line || !ends_line {
            return last;
        }
        last = j;
    }
}

/// The password in `scheme://user:password@host`; every URL authority is remembered so its
/// `@` is not taken for an e-mail address.
pub(super) fn url_passwords(s: &mut Scan<'_>) {
    let b = s.b;
    static SCHEME: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    for p in SCHEME
        .get_or_init(|| memmem::Finder::new(b"://"))
        .find_iter(b)
    {
        let mut k = p;
        while k > 0 && (b[k - 1].is_ascii_alphanumeric() || matches!(b[k - 1], b'+' | b'.' | b'-'))
        {
            k -= 1;
        }
        if p - k < 2 || !b[k].is_ascii_alphabetic() {
            continue;
        }
        let user = p + 3;
        let mut j = user;
        let mut colon = None;
        while j < b.len() && j - user < 256 {
            match b[j] {
                b'@' | b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'[' | b']' | b'\\' => {
                    break
                }
                c if c.is_ascii_whitespace() => break,
                b':' if colon.is_none() => {
                    colon = Some(j);
                    j += 1;
                }
                _ => j += 1,
            }
        }
        if b.get(j) != Some(&b'@') {
            continue;
        }
        s.authorities.push((user, j + 1));
        if let Some(c) = colon {
            let password = &s.text[c + 1..j];
            if !password.is_empty() && !placeholder(password.as_bytes()) {
                s.kind(c + 1, j, Kind::UrlPassword);
            }
        }
    }
}

/// `local@domain.tld`: a local part of the usual characters, a domain of two or more labels
/// whose last is letters only.
pub(super) fn emails(s: &mut Scan<'_>) {
    let b = s.b;
    for at in memchr::memchr_iter(b'@', b) {
        // The authorities were found in order and cannot overlap (one ends at its first
        // `@`, before any later `://`): the one that may hold `at` is found by bisection,
        // so a text of many URLs and `@`s costs no more than its length times a logarithm.
        let before = s.authorities.partition_point(|&(a, _)| a <= at);
        if before > 0 && at < s.authorities[before - 1].1 {
            continue;
        }
        let mut l = at;
        while l > 0
            && at - l < 64
            && (b[l - 1].is_ascii_alphanumeric()
                || matches!(b[l - 1], b'.' | b'_' | b'%' | b'+' | b'-'))
        {
            l -= 1;
        }
        while l < at && b[l] == b'.' {
            l += 1;
        }
        if l == at || l > 0 && super::is_word(b[l - 1]) {
            continue;
        }
        let mut r = at + 1;
        while r < b.len()
            && r - at < 254
            && (b[r].is_ascii_alphanumeric() || matches!(b[r], b'.' | b'-'))
        {
            r += 1;
        }
        while r > at + 1 && matches!(b[r - 1], b'.' | b'-') {
            r -= 1;
        }
        let domain = &b[at + 1..r];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            continue;
        }
        if r < b.len() && super::is_word(b[r]) {
            continue;
        }
        s.kind(l, r, Kind::Email);
    }
}

/// Characters a token may hold.
#[derive(Clone, Copy)]
enum Chars {
    /// `A-Za-z0-9`
    Alnum,
    /// `A-Za-z0-9_-`
    Url,
    /// `A-Z2-7`, AWS key ids
    Base32,
}

impl Chars {
    fn has(self, c: u8) -> bool {
        match self {
            Chars::Alnum => c.is_ascii_alphanumeric(),
            Chars::Url => c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
            Chars::Base32 => c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c),
        }
    }
}

/// Published prefixes of vendor tokens: the prefix, what follows it, its shortest length.
const VENDOR: &[(&[u8], Chars, usize)] = &[
    (b"sk-ant-", Chars::Url, 32),
    (b"sk-proj-", Chars::Url, 32),
    (b"sk-svcacct-", Chars::Url, 32),
    (b"sk-", Chars::Url, 20),
    (b"ghp_", Chars::Alnum, 30),
    (b"gho_", Chars::Alnum, 30),
    (b"ghs_", Chars::Alnum, 30),
    (b"ghu_", Chars::Alnum, 30),
    (b"ghr_", Chars::Alnum, 30),
    (b"github_pat_", Chars::Url, 22),
    (b"glpat-", Chars::Url, 20),
    (b"xoxb-", Chars::Url, 10),
    (b"xoxp-", Chars::Url, 10),
    (b"xoxa-", Chars::Url, 10),
    (b"xoxr-", Chars::Url, 10),
    (b"xoxs-", Chars::Url, 10),
    (b"AKIA", Chars::Base32, 16),
    (b"ASIA", Chars::Base32, 16),
    (b"AIza", Chars::Url, 30),
    (b"sk_live_", Chars::Alnum, 16),
    (b"rk_live_", Chars::Alnum, 16),
    (b"sk_test_", Chars::Alnum, 16),
    (b"rk_test_", Chars::Alnum, 16),
    (b"whsec_", Chars::Alnum, 24),
    (b"npm_", Chars::Alnum, 30),
    (b"hf_", Chars::Alnum, 30),
    (b"pypi-", Chars::Url, 50),
    (b"dop_v1_", Chars::Alnum, 40),
    (b"shpat_", Chars::Alnum, 30),
];

/// A vendor token or a JWT starting at `i`.
pub(super) fn vendor_token(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    let rest = &b[i..];
    if rest.starts_with(b"eyJ") {
        return jwt(s, i);
    }
    let (prefix, chars, min) = VENDOR
        .iter()
        .filter(|(p, _, _)| p[0] == rest[0] && p.get(1) == rest.get(1))
        .find(|(p, _, _)| rest.starts_with(p))?;
    let body = i + prefix.len();
    let mut j = body;
    while j < b.len() && j - body <= MAX_VALUE && chars.has(b[j]) {
        j += 1;
    }
    if j - body < *min || j < b.len() && super::is_word(b[j]) || !looks_random(&b[body..j]) {
        return None;
    }
    s.kind(i, j, Kind::ApiKey);
    Some(j)
}

/// Longest segment of a JWT looked at.
const JWT_SEGMENT: usize = 8192;

/// `header.payload.signature`, base64url, the header starting `eyJ` (`{"`).
///
/// Every `eyJ` after a `-` starts a word, so a text of `eyJ-eyJ-...` asks here at every
/// fourth byte: the run of base64url bytes a header is part of is found once for the whole
/// run, and what follows a header's dot once for every start that reaches it, so that such a
/// text costs its length and not its length times a segment's.
fn jwt(s: &mut Scan<'_>, i: usize) -> Option<usize> {
    let b = s.b;
    let (run_from, run_end) = s.url_run;
    let dot = if run_from <= i && i < run_end {
        run_end
    } else {
        let mut j = i;
        while j < b.len() && Chars::Url.has(b[j]) {
            j += 1;
        }
        s.url_run = (i, j);
        j
    };
    if dot - i > JWT_SEGMENT || dot - i < 10 || s.byte(dot) != b'.' {
        return None;
    }
    let end = match s.jwt_after {
        Some((at, end)) if at == dot => end,
        _ => {
            let end = jwt_rest(s, dot + 1);
            s.jwt_after = Some((dot, end));
            end
        }
    }?;
    s.kind(i, end, Kind::ApiKey);
    Some(end)
}

/// Where the payload and signature from `from` (after the header's dot) end, if they are.
fn jwt_rest(s: &Scan<'_>, from: usize) -> Option<usize> {
    let b = s.b;
    let mut j = from;
    for (part, min) in [10usize, 8].into_iter().enumerate() {
        let from = j;
        while j < b.len() && j - from < JWT_SEGMENT && Chars::Url.has(b[j]) {
            j += 1;
        }
        if j - from < min {
            return None;
        }
        if part == 0 {
            if s.byte(j) != b'.' {
                return None;
            }
            j += 1;
        }
    }
    if s.byte(j) == b'.' && s.byte(j + 1).is_ascii_alphanumeric() {
        return None;
    }
    Some(j)
}

/// Last segments of names whose value is a secret.
const SECRET_NAMES: &[&[u8]] = &[
    b"key",
    b"apikey",
    b"secret",
    b"token",
    b"password",
    b"passwd",
    b"pwd",
    b"passphrase",
    b"credential",
    b"credentials",
    b"auth",
    b"authorization",
    b"bearer",
    b"secretkey",
    b"accesskey",
    b"privatekey",
    b"signingkey",
    b"masterkey",
    b"encryptionkey",
    b"authtoken",
    b"accesstoken",
    b"refreshtoken",
    b"sessiontoken",
    b"clientsecret",
    b"apitoken",
    b"secretaccesskey",
    b"dbpassword",
];

/// A key-like name at `i` (its first word ends at `we`), then `=` or `:` (a quote may close
/// the name), then a value that looks random: the value is a secret.
#[inline]
pub(super) fn named_secret(s: &mut Scan<'_>, i: usize, we: usize) -> Option<usize> {
    // Most words are followed by a space and another word: they leave here, before the
    // frame of the full check is set up.
    let next = s.byte(we + 1);
    let may = match s.byte(we) {
        b'=' | b':' => true,
        b' ' | b'"' | b'\'' => matches!(next, b' ' | b'=' | b':'),
        b'.' | b'-' => next.is_ascii_alphanumeric() || next == b'_',
        _ => false,
    };
    if may {
        named_secret_at(s, i, we)
    } else {
        None
    }
}

#[inline(never)]
fn named_secret_at(s: &mut Scan<'_>, i: usize, we: usize) -> Option<usize> {
    let b = s.b;
    let mut j = we;
    while j < b.len()
        && j - i < 64
        && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-' | b'.'))
    {
        j += 1;
    }
    let name_end = j;
    if matches!(s.byte(j), b'"' | b'\'') {
        j += 1;
    }
    while s.byte(j) == b' ' {
        j += 1;
    }
    if !matches!(s.byte(j), b'=' | b':') || s.byte(j + 1) == b'/' {
        return None;
    }
    if !secret_name(&b[i..name_end]) {
        return None;
    }
    j += 1;
    while matches!(s.byte(j), b' ' | b'\t') {
        j += 1;
    }
    let quote = s.byte(j);
    let quoted = matches!(quote, b'"' | b'\'');
    if quoted {
        j += 1;
    }
    // `Authorization: Bearer <token>`: the scheme is not the secret.
    for scheme in [&b"Bearer "[..], b"bearer ", b"Basic ", b"Token ", b"token "] {
        if b[j..].starts_with(scheme) {
            j += scheme.len();
            break;
        }
    }
    let start = j;
    while j < b.len() && j - start <= MAX_VALUE {
        let c = b[j];
        let stop = if quoted {
            c == quote || c == b'\n' || c == b'\\'
        } else {
            c.is_ascii_whitespace()
                || matches!(
                    c,
                    b',' | b';' | b'"' | b'\'' | b'}' | b')' | b']' | b'&' | b'<'
                )
        };
        if stop {
            break;
        }
        j += 1;
    }
    if !looks_random(&b[start..j]) || !s.text.is_char_boundary(j) {
        return None;
    }
    s.kind(start, j, Kind::ApiKey);
    Some(j)
}

/// The last three letters of every entry of [`SECRET_NAMES`]: most names (`Subject:`,
/// `"id":`) are refused by this alone.
const SECRET_ENDINGS: &[&[u8; 3]] = &[
    b"key", b"ret", b"ken", b"ord", b"swd", b"pwd", b"ase", b"ial", b"als", b"uth", b"ion", b"rer",
];

fn secret_name(name: &[u8]) -> bool {
    if name.len() < 3 {
        return false;
    }
    let t = &name[name.len() - 3..];
    let tail = [
        t[0].to_ascii_lowercase(),
        t[1].to_ascii_lowercase(),
        t[2].to_ascii_lowercase(),
    ];
    if !SECRET_ENDINGS.contains(&&tail) {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    // The last segment after `_`, `-` or `.`, and the whole name with those removed.
    let seg_start = name
        .iter()
        .rposition(|c| matches!(c, b'_' | b'-' | b'.'))
        .map_or(0, |p| p + 1);
    let last = &name[seg_start..];
    for &c in name {
        if c.is_ascii_alphanumeric() && n < buf.len() {
            buf[n] = c.to_ascii_lowercase();
            n += 1;
        }
    }
    let whole = &buf[..n];
    SECRET_NAMES.iter().any(|w| {
        last.eq_ignore_ascii_case(w)
            || (w.len() > 3 && whole.ends_with(w) && whole.len() >= w.len())
    })
}

/// Template and example values: `<YOUR_KEY>`, `${DB_PASSWORD}`, `{{ token }}`, `xxxx…`.
pub(super) fn placeholder(v: &[u8]) -> bool {
    if v.is_empty()
        || matches!(v[0], b'<' | b'{' | b'%' | b'$' | b'*')
        || v.windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"xxxx") || w == b"****" || w == b"....")
        || v.windows(3).any(|w| w == b"...")
    {
        return true;
    }
    // One pass: at each byte, the marker words that start with it.
    let mut buf = [0u8; MAX_VALUE + 1];
    let n = v.len().min(buf.len());
    let lower = &mut buf[..n];
    lower.copy_from_slice(&v[..n]);
    lower.make_ascii_lowercase();
    (0..n).any(|p| {
        let word: &[u8] = match lower[p] {
            b'y' => b"your",
            b'e' => b"example",
            b'p' => b"placeholder",
            b'c' => b"changeme",
            b'r' => b"redacted",
            b'd' => b"dummy",
            b's' => b"sample",
            b'i' => b"insert",
            _ => return false,
        };
        lower[p..].starts_with(word)
    })
}

/// Random enough to be a credential: long, letters and digits, and at least 3 bits of
/// Shannon entropy per character, and not a placeholder.
pub(super) fn looks_random(v: &[u8]) -> bool {
    if v.len() < 16 || v.len() > MAX_VALUE {
        return false;
    }
    let digits = v.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = v.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if digits == 0 || letters == 0 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &c in v {
        counts[usize::from(c)] += 1;
    }
    let n = v.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy >= 3.0 && !placeholder(v)
}
