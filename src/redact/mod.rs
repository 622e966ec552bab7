//! Finding personal data and secrets in text before it leaves the appliance.
//!
//! One pass over the bytes finds candidates at word starts and checks each against the
//! shape of one kind (with the kind's own checksum where it has one: Luhn for cards, mod-97
//! for IBANs); a few passes with a fast substring search find what has a fixed marker (`@`,
//! `://`, `-----BEGIN`). Overlapping candidates are settled earliest-first, longest-first.
//! Hand-written rather than a set of regular expressions: the gateway runs this on every
//! upstream call, and the checks that keep look-alikes out (checksums, issuer prefixes,
//! octet ranges, entropy, placeholders) are code either way.
//!
//! A tenant may add its own patterns ([`Rule`]), validated and size-bounded when they are
//! set; the `regex` crate has no backtracking, so a pattern cannot take exponential time.

mod names;
mod numbers;
pub mod pseudonym;
mod secrets;

use serde::Serialize;

/// What a found value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Email,
    Phone,
    CreditCard,
    Iban,
    IpAddress,
    UsSsn,
    UkNino,
    ApiKey,
    PrivateKey,
    UrlPassword,
    Person,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::IpAddress,
        Kind::UsSsn,
        Kind::UkNino,
        Kind::ApiKey,
        Kind::PrivateKey,
        Kind::UrlPassword,
        Kind::Person,
    ];

    /// The name the CLI, the audit entry and placeholders use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::CreditCard => "CREDIT_CARD",
            Kind::Iban => "IBAN",
            Kind::IpAddress => "IP_ADDRESS",
            Kind::UsSsn => "US_SSN",
            Kind::UkNino => "UK_NINO",
            Kind::ApiKey => "API_KEY",
            Kind::PrivateKey => "PRIVATE_KEY",
            Kind::UrlPassword => "URL_PASSWORD",
            Kind::Person => "PERSON",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which detector found a value: a built-in kind or one of the tenant's rules (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Builtin(Kind),
    Rule(u16),
}

/// One found value: byte offsets into the text, end exclusive, on character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub label: Label,
}

/// Most rules a tenant may set, and the longest pattern: bounds on the work per call.
pub const MAX_RULES: usize = 32;
pub const MAX_PATTERN: usize = 512;
/// The compiled size a rule may take (the `regex` crate refuses larger programs).
const RULE_SIZE_LIMIT: usize = 256 * 1024;

/// A tenant's own pattern: a name used as its kind (`EMPLOYEE_ID`) and a regular expression.
#[derive(Debug, Clone)]
pub struct Rule {
    name: String,
    regex: regex::Regex,
}

/// Why a rule was refused, said so the operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "rule name {0:?} must be 1 to 32 characters of A-Z, 0-9 and _, starting with a letter"
    )]
    BadName(String),
    #[error("rule name {0} is a built-in kind; choose another name")]
    Builtin(String),
    #[error("rule {0} is set twice")]
    Duplicate(String),
    #[error("rule {name}: the pattern is longer than {MAX_PATTERN} characters")]
    TooLong { name: String },
    #[error("rule {name}: the pattern is not a valid regular expression: {message}")]
    Syntax { name: String, message: String },
    #[error("rule {name}: the pattern matches empty text, so it would match everywhere")]
    MatchesEmpty { name: String },
    #[error("at most {MAX_RULES} rules may be set")]
    TooMany,
}

impl Rule {
    /// # Errors
    /// A bad name, a pattern that is too long, does not compile within the size limit, or
    /// matches the empty string.
    pub fn new(name: &str, pattern: &str) -> Result<Rule, RuleError> {
        let good_name = (1..=32).contains(&name.len())
            && name.as_bytes()[0].is_ascii_uppercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !good_name {
            return Err(RuleError::BadName(name.into()));
        }
        if Kind::parse(name).is_some() {
            return Err(RuleError::Builtin(name.into()));
        }
        if pattern.chars().count() > MAX_PATTERN {
            return Err(RuleError::TooLong { name: name.into() });
        }
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(RULE_SIZE_LIMIT)
            .dfa_size_limit(RULE_SIZE_LIMIT)
            .nest_limit(32)
            .build()
            .map_err(|e| RuleError::Syntax {
                name: name.into(),
                // The crate's message spans lines with a caret diagram; the last line says it.
                message: e
                    .to_string()
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid pattern")
                    .trim()
                    .to_string(),
            })?;
        if regex.is_match("") {
            return Err(RuleError::MatchesEmpty { name: name.into() });
        }
        Ok(Rule {
            name: name.into(),
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }
}

/// The built-in detectors plus a tenant's rules.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    rules: Vec<Rule>,
}

impl Detector {
    /// # Errors
    /// More than [`MAX_RULES`] rules, or two with one name.
    pub fn new(rules: Vec<Rule>) -> Result<Detector, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError::TooMany);
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                return Err(RuleError::Duplicate(r.name.clone()));
            }
        }
        Ok(Detector { rules })
    }

    /// The name of what found a value: a kind's name or a rule's.
    pub fn label_name(&self, label: Label) -> &str {
        match label {
            Label::Builtin(k) => k.as_str(),
            Label::Rule(i) => self
                .rules
                .get(usize::from(i))
                .map_or("CUSTOM", |r| r.name.as_str()),
        }
    }

    /// Every value found in `text`, in order, none overlapping.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut scan = Scan::new(text);
        secrets::private_keys(&mut scan);
        secrets::url_passwords(&mut scan);
        secrets::emails(&mut scan);
        scan.words();
        for (i, rule) in self.rules.iter().enumerate() {
            let label = Label::Rule(u16::try_from(i).unwrap_or(u16::MAX));
            for m in rule.regex.find_iter(text) {
                if m.start() < m.end() {
                    scan.push(m.start(), m.end(), label);
                }
            }
        }
        scan.settle()
    }
}

/// Byte offsets to code-point offsets, for spans given in order (one pass over the text).
pub fn to_char_offsets(text: &str, found: &[Found]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(found.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut advance = |to: usize| {
        chars += text.get(byte..to).map_or(0, |s| s.chars().count());
        byte = to;
        chars
    };
    for f in found {
        let s = advance(f.start);
        let e = advance(f.end);
        out.push((s, e));
    }
    out
}

/// The state of one pass: the text and the candidates so far.
pub(crate) struct Scan<'a> {
    pub text: &'a str,
    pub b: &'a [u8],
    pub out: Vec<Found>,
    /// Byte ranges of URL authorities: an `@` inside one is not an e-mail address.
    pub authorities: Vec<(usize, usize)>,
    /// The last run of base64url bytes a JWT's header was looked for in, `start..end`.
    pub url_run: (usize, usize),
    /// The last header dot a JWT's rest was read after, and where that rest ended.
    pub jwt_after: Option<(usize, Option<usize>)>,
}

/// Bytes that continue a word: ASCII letters and digits, `_`, and anything non-ASCII (the
/// bytes of a multi-byte character, most of them letters).
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    WORD[usize::from(b)]
}

/// Where the run of word bytes from `i` ends, eight bytes at a time: the scan's inner loop.
fn word_run_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte set where `lo <= byte <= hi`, for bytes below 0x80.
    let within = |y: u64, lo: u8, hi: u8| {
        (y + u64::from(0x80 - lo) * ONES) & !(y + u64::from(0x7f - hi) * ONES) & HIGH
    };
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let y = x & !HIGH;
        let word = (x & HIGH)
            | within(y, b'0', b'9')
            | within(y, b'A', b'Z')
            | within(y, b'a', b'z')
            | within(y, b'_', b'_');
        let stop = !word & HIGH;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && is_word(b[i]) {
        i += 1;
    }
    i
}

const WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        i += 1;
    }
    t
};

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            b: text.as_bytes(),
            out: Vec::new(),
            authorities: Vec::new(),
            url_run: (0, 0),
            jwt_after: None,
        }
    }

    pub fn push(&mut self, start: usize, end: usize, label: Label) {
        if start < end
            && end <= self.b.len()
            && self.text.is_char_boundary(start)
            && self.text.is_char_boundary(end)
        {
            self.out.push(Found { start, end, label });
        }
    }

    pub fn kind(&mut self, start: usize, end: usize, kind: Kind) {
        self.push(start, end, Label::Builtin(kind));
    }

    /// Whether a value ending at `i` ends a word.
    #[inline]
    pub fn ends_word(&self, i: usize) -> bool {
        i >= self.b.len() || !is_word(self.b[i])
    }

    pub fn byte(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// The main pass: every word start, dispatched on its first byte. What the first passes
    /// claimed whole (private key blocks) is not looked into again.
    fn words(&mut self) {
        let n = self.b.len();
        let mut claimed: Vec<(usize, usize)> = self.out.iter().map(|f| (f.start, f.end)).collect();
        claimed.sort_unstable();
        let mut next_claim = 0;
        let mut i = 0;
        while i < n {
            if next_claim < claimed.len() && i >= claimed[next_claim].0 {
                i = i.max(claimed[next_claim].1);
                next_claim += 1;
                continue;
            }
            let c = self.b[i];
            if !is_word(c) {
                let end = match c {
                    b'+' | b'(' => numbers::at_phone_mark(self, i),
                    b':' => numbers::at_colon(self, i),
                    _ => None,
                };
                i = end.filter(|&e| e > i).unwrap_or(i + 1);
                continue;
            }
            // A word starts here (the byte before is not part of one).
            let we = word_run_end(self.b, i + 1);
            let end = if c.is_ascii_digit() {
                numbers::at_digit(self, i, we)
            } else {
                self.at_letter(i, we)
            };
            i = end.filter(|&e| e > i).unwrap_or(we);
        }
    }

    fn at_letter(&mut self, i: usize, we: usize) -> Option<usize> {
        let c = self.b[i];
        // IBANs and national insurance numbers start with two capitals.
        if c.is_ascii_uppercase() && self.byte(i + 1).is_ascii_uppercase() {
            if let Some(e) = numbers::iban(self, i).or_else(|| numbers::nino(self, i)) {
                return Some(e);
            }
        }
        // Only the first letters vendor prefixes and JWTs start with, and a token is long or
        // its prefix ends in `-` (`sk-`, `glpat-`, `xoxb-`).
        let long = we - i >= 10 || self.byte(we) == b'-';
        if long
            && matches!(
                c,
                b's' | b'g' | b'x' | b'A' | b'r' | b'w' | b'n' | b'h' | b'p' | b'd' | b'e'
            )
        {
            if let Some(e) = secrets::vendor_token(self, i) {
                return Some(e);
            }
        }
        // A hex group of an IPv6 address is at most four digits before its colon.
        if we - i <= 4 && self.byte(we) == b':' && c.is_ascii_hexdigit() {
            if let Some(e) = numbers::ipv6(self, i) {
                return Some(e);
            }
        }
        if let Some(e) = secrets::named_secret(self, i, we) {
            return Some(e);
        }
        if c.is_ascii_lowercase() && !matches!(c, b'd' | b'm') {
            return None;
        }
        names::at_word(self, i)
    }

    /// Earliest first, then longest; a candidate overlapping one kept is dropped.
    fn settle(mut self) -> Vec<Found> {
        self.out
            .sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut kept: Vec<Found> = Vec::with_capacity(self.out.len());
        for f in self.out {
            if kept.last().is_none_or(|k| f.start >= k.end) {
                kept.push(f);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests;
