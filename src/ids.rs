//! Identifiers, as newtypes parsed at the edge. This module is a leaf: it depends on nothing
//! else in the crate, so the store, the audit journal and every domain module can name a
//! tenant (or, later, a user or a document) without importing one another.
//!
//! Every id is 128 random bits written as 32 lower-case hex characters, so a parsed id is
//! always safe to put in a file name, a URL path or a log line.

use serde::Serialize;

/// A string that is not a well-formed id; carries (a bounded prefix of) what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {given:?}: expected 32 lower-case hex characters")]
pub struct InvalidId {
    pub kind: &'static str,
    pub given: String,
}

fn well_formed(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// # Errors
            /// Anything but 32 lower-case hex characters.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if well_formed(s) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        given: s.chars().take(64).collect(),
                    })
                }
            }

            /// For values read back from our own files, which only ever store parsed ids,
            /// and for fresh random ids.
            #[allow(dead_code)] // each id type gets its reader with its table
            pub(crate) fn from_trusted(s: String) -> Self {
                debug_assert!(well_formed(&s));
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// In the API's OpenAPI document: a string of 32 lower-case hex characters.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[0-9a-f]{32}$"))
                    .description(Some(concat!("A ", $kind, " id: 32 lower-case hex characters.")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

hex_id!(
    /// A tenant: one encrypted file, one key, one journal.
    TenantId,
    "tenant"
);
hex_id!(
    /// A person or service account inside one tenant.
    UserId,
    "user"
);
hex_id!(
    /// An API token of one tenant; the public half of the token, never the secret.
    TokenId,
    "token"
);
hex_id!(
    /// A signed-in session; the public handle shown in a session list, never its secret.
    SessionId,
    "session"
);
hex_id!(
    /// A time-limited access grant a tenant gave a platform account.
    GrantId,
    "grant"
);
hex_id!(
    /// A document in one tenant's knowledge base.
    DocumentId,
    "document"
);

hex_id!(
    /// A conversation with the assistant, of one person in one tenant.
    ThreadId,
    "thread"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(TenantId::parse(&"a".repeat(32)).is_ok());
        for bad in [
            "",
            "../etc/passwd",
            &"A".repeat(32),
            &"a".repeat(31),
            &"a".repeat(33),
            &"g".repeat(32),
        ] {
            let e = TenantId::parse(bad).unwrap_err();
            assert_eq!(e.kind, "tenant", "{bad}");
        }
        let e = UserId::parse("x").unwrap_err();
        assert!(e.to_string().starts_with("invalid user id"), "{e}");
        // A hostile value is cut before it lands in a message.
        let e = DocumentId::parse(&"z".repeat(10_000)).unwrap_err();
        assert_eq!(e.given.len(), 64);
    }
}
