//! One shape for every domain error: a stable code that never changes meaning, and a kind
//! that says what sort of failure it is. The web door maps the kind to a status and a safe
//! message, the CLI door prints the message and the code; both conversions are generic, so a
//! new module implements [`DomainError`] and maps nothing by hand.

/// What sort of failure an error is, as a client needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is wrong; the message says how to fix it.
    Invalid,
    /// What was named does not exist (or is deleted).
    NotFound,
    /// The request conflicts with the current state (a name in use, already suspended).
    Conflict,
    /// Not allowed in this state (a suspended tenant), or not allowed to this caller.
    Forbidden,
    /// No valid credentials came with the request.
    Unauthenticated,
    /// Too many attempts; the message says when to try again.
    Throttled,
    /// Something is busy or briefly unavailable; retrying later may work.
    Busy,
    /// A fault on our side (storage, keys, I/O); details go to the log only.
    Internal,
}

/// Implemented by every domain error enum.
pub trait DomainError: std::error::Error {
    /// A stable code such as `TEN-0006`; never reused for another meaning.
    fn code(&self) -> &'static str;
    fn kind(&self) -> ErrorKind;
}

/// Implements [`DomainError`] for a type whose inherent `code()` already exists, with the
/// kind given by a match.
#[macro_export]
#[doc(hidden)]
macro_rules! domain_error {
    ($t:ty, |$e:ident| $kind:expr) => {
        impl $crate::error::DomainError for $t {
            fn code(&self) -> &'static str {
                <$t>::code(self)
            }
            fn kind(&self) -> $crate::error::ErrorKind {
                let $e = self;
                $kind
            }
        }
    };
}

impl crate::ids::InvalidId {
    pub fn code(&self) -> &'static str {
        match self.kind {
            "tenant" => "TEN-0001",
            "user" => "USR-0001",
            "token" => "TOK-0001",
            "session" => "SES-0001",
            "grant" => "GRT-0001",
            _ => "DOC-0001",
        }
    }
}
crate::domain_error!(crate::ids::InvalidId, |_e| ErrorKind::Invalid);
