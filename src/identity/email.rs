//! E-mail addresses as sign-in names: validated and normalised once, at the edge.
//!
//! Normalisation is deliberately plain: trimmed, NFC, lower-cased. No provider-specific
//! folding (dots or `+tags` in Gmail addresses): two addresses that differ there may belong to
//! two people, and guessing would let one take the other's account.

use unicode_normalization::UnicodeNormalization;

/// The longest address accepted (RFC 5321's path limit less the brackets).
pub const MAX_LEN: usize = 254;

/// A normalised e-mail address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused, said so the person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid e-mail address: {0}")]
pub struct BadEmail(pub &'static str);

impl Email {
    /// # Errors
    /// Empty, too long, no single `@`, an empty side, spaces or control characters, or a
    /// domain that is not dot-separated labels of letters, digits and hyphens.
    pub fn parse(raw: &str) -> Result<Self, BadEmail> {
        let s: String = raw.trim().nfc().collect::<String>().to_lowercase();
        if s.is_empty() {
            return Err(BadEmail("it is empty"));
        }
        if s.chars().count() > MAX_LEN {
            return Err(BadEmail("it is longer than 254 characters"));
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ','))
        {
            return Err(BadEmail(
                "it contains a space, a control character or one of < > \" ,",
            ));
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BadEmail("it must contain exactly one @"));
        };
        if local.is_empty() || local.chars().count() > 64 {
            return Err(BadEmail("the part before @ must be 1 to 64 characters"));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if domain.is_empty() || !domain.split('.').all(label_ok) {
            return Err(BadEmail(
                "the part after @ must be a domain such as example.com",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For values read back from our own files, which only ever store parsed addresses.
    pub(crate) fn from_trusted(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(
            Email::parse("  Ana.Lopez@Example.COM ").unwrap().as_str(),
            "ana.lopez@example.com"
        );
        // NFD and NFC spellings of the same address are one address.
        let nfd = Email::parse("jose\u{301}@example.com").unwrap();
        let nfc = Email::parse("jos\u{e9}@example.com").unwrap();
        assert_eq!(nfd, nfc);
        assert_eq!(
            Email::parse("owner@localhost").unwrap().as_str(),
            "owner@localhost"
        );
        // Tags are kept: they may be different people.
        assert_ne!(
            Email::parse("a+x@example.com").unwrap(),
            Email::parse("a@example.com").unwrap()
        );
    }

    #[test]
    fn broken_addresses_are_refused_with_the_reason() {
        for (raw, why) in [
            ("", "empty"),
            ("no-at.example.com", "exactly one @"),
            ("a@b@example.com", "exactly one @"),
            ("@example.com", "before @"),
            ("a@", "after @"),
            ("a@example..com", "after @"),
            ("a@-example.com", "after @"),
            ("a b@example.com", "space"),
            ("a\u{0}@example.com", "control"),
            ("<a@example.com>", "< >"),
        ] {
            let e = Email::parse(raw).unwrap_err();
            assert!(e.to_string().contains(why), "{raw:?}: {e}");
        }
        let long = format!("{}@example.com", "a".repeat(300));
        assert!(Email::parse(&long).unwrap_err().to_string().contains("254"));
        let local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&local).is_err());
    }
}
