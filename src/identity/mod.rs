//! Identity: the people and programs that use Strongroom, and what each may do.
//!
//! - Tenant users live in their tenant's file (crypto-shredding a tenant removes its
//!   people); platform accounts (who create and manage tenants) live in `system.db`. Both
//!   have the same tables, so one piece of code serves both through a [`crate::door::Door`].
//! - `system.db` also holds the e-mail directory: HMAC-SHA256 of the normalised address
//!   under a key derived from the system DEK, mapped to the realm that holds the account,
//!   so a person signs in with address and password alone, the address is unique per
//!   installation, and no address is kept in clear outside its own realm.
//! - Every domain operation checks its caller's permission ([`permission::Caller`]) and
//!   writes its audit entry through the door, so the CLI and the web cannot differ.

pub mod accounts;
pub mod directory;
pub mod email;
pub mod grants;
pub mod password;
pub mod permission;
pub mod roles;
pub mod sessions;
pub mod signin;
pub mod sso;
pub mod tokens;
pub mod totp;

pub use directory::Directory;
pub use email::{BadEmail, Email};
pub use password::{Hasher, Password, Weak};
pub use permission::{Caller, Denied, Permission, Permissions, Realm};

use crate::store::StoreError;
use crate::tenants::TenantError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    BadEmail(#[from] BadEmail),
    #[error("{0}")]
    WeakPassword(#[from] Weak),
    #[error("the e-mail address {0} is already used by an account of this installation")]
    EmailInUse(String),
    #[error(
        "unknown role {0:?}: use owner, admin, operator, auditor or a custom role of the tenant"
    )]
    UnknownRole(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    /// What was not found, said in full ("no account x@example.com").
    #[error("{0}")]
    NotFound(String),
    #[error("wrong e-mail address or password")]
    BadCredentials,
    #[error("{0} is already {1}")]
    AlreadyInState(String, &'static str),
    #[error("invalid name: {0}")]
    BadName(String),
    #[error("{0}")]
    Hash(#[from] password::HashFailed),
    #[error("this would leave the {0} without an active owner; make someone else owner first")]
    LastOwner(&'static str),
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the new password must differ from the current one")]
    SamePassword,
    #[error("too many failed sign-ins; try again in {0} seconds")]
    Throttled(u64),
    #[error("the code is wrong or was already used; enter the current code from your app, or a recovery code")]
    WrongCode,
    #[error("signing in from this address is not allowed by your organisation's policy")]
    AddressRefused,
    #[error("too many sign-ins at once; try again in a few seconds")]
    Busy,
    #[error("{0} exports of this journal are running already; try again when one ends")]
    ExportsRunning(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
}

impl IdentityError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadEmail(_) => "IDN-0001",
            Self::WeakPassword(_) => "IDN-0002",
            Self::EmailInUse(_) => "IDN-0003",
            Self::UnknownRole(_) => "IDN-0004",
            Self::Denied(_) => "IDN-0005",
            Self::NotFound(_) => "IDN-0006",
            Self::BadCredentials => "IDN-0007",
            Self::AlreadyInState(..) => "IDN-0008",
            Self::BadName(_) => "IDN-0009",
            Self::Hash(_) => "IDN-0010",
            Self::LastOwner(_) => "IDN-0011",
            Self::WrongCurrentPassword => "IDN-0012",
            Self::SamePassword => "IDN-0013",
            Self::Throttled(_) => "IDN-0014",
            Self::WrongCode => "IDN-0015",
            Self::AddressRefused => "IDN-0016",
            Self::Busy => "IDN-0017",
            Self::ExportsRunning(_) => "IDN-0018",
            Self::Store(e) => e.code(),
            Self::Tenant(e) => e.code(),
            Self::Keyring(e) => e.code(),
        }
    }
}

crate::domain_error!(IdentityError, |e| {
    use crate::error::ErrorKind;
    match e {
        IdentityError::BadEmail(_)
        | IdentityError::WeakPassword(_)
        | IdentityError::UnknownRole(_)
        | IdentityError::BadName(_)
        | IdentityError::WrongCurrentPassword
        | IdentityError::SamePassword
        | IdentityError::WrongCode => ErrorKind::Invalid,
        IdentityError::EmailInUse(_)
        | IdentityError::AlreadyInState(..)
        | IdentityError::LastOwner(_) => ErrorKind::Conflict,
        IdentityError::Denied(_) | IdentityError::AddressRefused => ErrorKind::Forbidden,
        IdentityError::NotFound(_) => ErrorKind::NotFound,
        IdentityError::BadCredentials => ErrorKind::Unauthenticated,
        IdentityError::Throttled(_) => ErrorKind::Throttled,
        IdentityError::Busy | IdentityError::ExportsRunning(_) => ErrorKind::Busy,
        IdentityError::Hash(_) => ErrorKind::Internal,
        IdentityError::Store(e) => e.kind(),
        IdentityError::Tenant(e) => e.kind(),
        IdentityError::Keyring(e) => e.kind(),
    }
});

/// The tables of accounts and their sessions; the same in a tenant file (its users) and in
/// `system.db` (platform accounts). A macro, so `concat!` can join it with each realm's own.
macro_rules! account_tables {
    () => {
        "
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    must_change   INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_us    INTEGER NOT NULL,
    changed_us    INTEGER NOT NULL
) STRICT;
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    secret_hash  BLOB NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id),
    stage        TEXT NOT NULL,
    created_us   INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    expires_us   INTEGER NOT NULL,
    ip           TEXT,
    device       TEXT NOT NULL,
    ended_us     INTEGER
) STRICT;
CREATE INDEX sessions_by_user ON sessions(user_id);
"
    };
}

/// Second factors, added after the first release of the account tables: TOTP seeds
/// (sealed) with the last time step used, and hashed one-time recovery codes.
macro_rules! second_factor_tables {
    () => {
        "
CREATE TABLE totp (
    user_id      TEXT PRIMARY KEY REFERENCES users(id),
    secret       BLOB NOT NULL,
    confirmed_us INTEGER,
    last_step    INTEGER NOT NULL DEFAULT 0,
    created_us   INTEGER NOT NULL
) STRICT;
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id),
    code_hash BLOB NOT NULL UNIQUE,
    used_us   INTEGER
) STRICT;
CREATE INDEX recovery_codes_by_user ON recovery_codes(user_id);
"
    };
}

/// A tenant file's identity tables: its users and their sessions, custom roles, API tokens.
pub const TENANT_SCHEMA: crate::store::migrate::Module = crate::store::migrate::Module {
    name: "identity",
    steps: &[
        concat!(
            account_tables!(),
            "
CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    permissions TEXT NOT NULL,
    created_us  INTEGER NOT NULL
) STRICT;
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    secret_hash  BLOB NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_us   INTEGER NOT NULL,
    expires_us   INTEGER,
    last_used_us INTEGER,
    revoked_us   INTEGER
) STRICT;
"
        ),
        second_factor_tables!(),
        "
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    email       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    expires_us  INTEGER NOT NULL,
    revoked_us  INTEGER
) STRICT;
CREATE INDEX grants_by_account ON grants(account_id);
",
        sso::TENANT_TABLES,
        // Whether a provider's addresses count as verified when its tokens do not say.
        "ALTER TABLE sso ADD COLUMN trust_email INTEGER NOT NULL DEFAULT 0;",
    ],
};

/// `system.db`'s identity tables: platform accounts, their sessions, and the e-mail
/// directory (keyed hash of an address to the realm and account that own it).
pub const PLATFORM_SCHEMA: crate::store::migrate::Module = crate::store::migrate::Module {
    name: "identity",
    steps: &[
        concat!(
            account_tables!(),
            "
CREATE TABLE email_directory (
    mac        BLOB PRIMARY KEY,
    realm      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_us INTEGER NOT NULL
) STRICT;
CREATE INDEX email_directory_by_realm ON email_directory(realm);
"
        ),
        second_factor_tables!(),
    ],
};
