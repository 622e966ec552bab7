//! The installation's e-mail directory and identity keys.
//!
//! An address is found by its keyed hash (HMAC-SHA256 under a key derived from the system
//! DEK), never stored in clear outside the realm that owns the account. A row says which
//! realm holds the account and which account it is; the account row itself is the truth. A
//! row whose account is gone (a create that died between the two files) is taken over by
//! the next create of the same address in the same realm.

use super::email::Email;
use super::password::Hasher;
use super::IdentityError;
use crate::audit::{Actor, NewEntry};
use crate::ids::{TenantId, UserId};
use crate::keyring::{identity_key, Key32, KeyringError};
use crate::store::Store;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::sync::Arc;

/// Where an account lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    Platform,
    Tenant(TenantId),
}

impl Home {
    fn column(&self) -> &str {
        match self {
            Home::Platform => "platform",
            Home::Tenant(id) => id.as_str(),
        }
    }

    fn from_column(s: String) -> Option<Self> {
        if s == "platform" {
            Some(Home::Platform)
        } else {
            TenantId::parse(&s).ok().map(Home::Tenant)
        }
    }
}

/// What the directory knows of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub home: Home,
    pub user_id: UserId,
}

/// A reservation made for a create in a tenant: how to undo it if the create fails.
#[derive(Debug, Clone)]
pub(crate) enum Reserved {
    New,
    TakenOver { previous: UserId },
}

/// The identity keys and the directory in `system.db`.
pub struct Directory {
    system: Arc<Store>,
    lookup: ring::hmac::Key,
    secrets: ring::hmac::Key,
    sealer: crate::keyring::Sealer,
    hasher: Hasher,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Directory { [redacted] }")
    }
}

fn hmac_key(k: &Key32) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k.expose())
}

impl Directory {
    /// # Errors
    /// Only if key derivation fails.
    pub fn new(system: Arc<Store>, system_dek: &Key32) -> Result<Self, KeyringError> {
        Ok(Self {
            system,
            lookup: hmac_key(&identity_key(system_dek, "email-lookup")?),
            secrets: hmac_key(&identity_key(system_dek, "secret-hash")?),
            sealer: crate::keyring::Sealer::derive(system_dek, "identity-seal")?,
            hasher: Hasher::default(),
        })
    }

    /// Seals identity secrets that must be read back (TOTP seeds).
    pub fn sealer(&self) -> &crate::keyring::Sealer {
        &self.sealer
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The keyed hash an address is found by.
    pub fn mac(&self, email: &Email) -> [u8; 32] {
        tag(&self.lookup, &[email.as_str().as_bytes()])
    }

    /// The keyed hash a secret (session id, API token, recovery code) is stored as; the
    /// purpose is mixed in, so a session id never verifies as a token.
    pub fn secret_hash(&self, purpose: &str, secret: &[u8]) -> [u8; 32] {
        tag(&self.secrets, &[purpose.as_bytes(), b"\0", secret])
    }

    /// Which realm and account an address belongs to, if any.
    ///
    /// # Errors
    /// A storage fault.
    pub fn find(&self, email: &Email) -> Result<Option<Listing>, IdentityError> {
        let mac = self.mac(email);
        self.system
            .read(|c| find_in(c, &mac).map_err(|e| IdentityError::Store(self.system.err(&e))))
    }

    /// Reserves an address for a new account of a tenant, in `system.db`, with its entry in
    /// the system journal.
    ///
    /// # Errors
    /// [`IdentityError::EmailInUse`] if another realm holds it, or this realm holds it for an
    /// account that still exists (the caller checked that before); a storage fault.
    pub(crate) fn reserve(
        &self,
        actor: &Actor,
        ip: Option<IpAddr>,
        email: &Email,
        tenant: &TenantId,
        user_id: &UserId,
        realm_still_has_it: bool,
    ) -> Result<Reserved, IdentityError> {
        let (mac, home) = (self.mac(email), Home::Tenant(tenant.clone()));
        let (actor, uid, shown) = (actor.clone(), user_id.clone(), email.to_string());
        self.system
            .writer()
            .change(move |tx| -> Result<_, IdentityError> {
                let r = reserve_in(
                    tx.conn(),
                    &mac,
                    &home,
                    &uid,
                    tx.now_us(),
                    realm_still_has_it,
                )
                .map_err(|e| IdentityError::Store(tx.err(&e)))?
                .ok_or_else(|| IdentityError::EmailInUse(shown.clone()))?;
                let mut entry =
                    NewEntry::new(actor.clone(), "identity.email.reserve", uid.as_str())
                        .params(serde_json::json!({ "tenant": home.column() }));
                entry.source_ip = ip;
                Ok((r, entry))
            })
            .wait()
    }

    /// Undoes [`Directory::reserve`] after the tenant refused the account, if the row is still
    /// this account's (a concurrent create may have taken it over since).
    ///
    /// # Errors
    /// A storage fault.
    pub(crate) fn release(
        &self,
        actor: &Actor,
        email: &Email,
        user_id: &UserId,
        how: Reserved,
    ) -> Result<(), IdentityError> {
        let (mac, actor, uid) = (self.mac(email), actor.clone(), user_id.clone());
        self.system
            .writer()
            .change_or_nothing(move |tx| -> Result<_, IdentityError> {
                let c = tx.conn();
                let n = match &how {
                    Reserved::New => c.execute(
                        "DELETE FROM email_directory WHERE mac = ?1 AND user_id = ?2",
                        params![&mac[..], uid.as_str()],
                    ),
                    Reserved::TakenOver { previous } => c.execute(
                        "UPDATE email_directory SET user_id = ?3 WHERE mac = ?1 AND user_id = ?2",
                        params![&mac[..], uid.as_str(), previous.as_str()],
                    ),
                }
                .map_err(|e| IdentityError::Store(tx.err(&e)))?;
                let entry = (n > 0)
                    .then(|| NewEntry::new(actor.clone(), "identity.email.release", uid.as_str()));
                Ok(((), entry))
            })
            .wait()
    }
}

fn tag(key: &ring::hmac::Key, parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::hmac::Context::with_key(key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

pub(crate) fn find_in(c: &Connection, mac: &[u8; 32]) -> rusqlite::Result<Option<Listing>> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT realm, user_id FROM email_directory WHERE mac = ?1",
            [&mac[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(realm, uid)| {
        Some(Listing {
            home: Home::from_column(realm)?,
            user_id: UserId::parse(&uid).ok()?,
        })
    }))
}

/// Claims `mac` for `user_id` in `home`, inside the caller's transaction. `None` if another
/// realm holds it, or this realm does and `realm_still_has_it`.
pub(crate) fn reserve_in(
    c: &Connection,
    mac: &[u8; 32],
    home: &Home,
    user_id: &UserId,
    now_us: i64,
    realm_still_has_it: bool,
) -> rusqlite::Result<Option<Reserved>> {
    match find_in(c, mac)? {
        None => {
            c.execute(
                "INSERT INTO email_directory (mac, realm, user_id, created_us) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![&mac[..], home.column(), user_id.as_str(), now_us],
            )?;
            Ok(Some(Reserved::New))
        }
        Some(l) if l.home == *home && !realm_still_has_it => {
            c.execute(
                "UPDATE email_directory SET user_id = ?2 WHERE mac = ?1",
                params![&mac[..], user_id.as_str()],
            )?;
            Ok(Some(Reserved::TakenOver {
                previous: l.user_id,
            }))
        }
        Some(_) => Ok(None),
    }
}

/// Forgets every address of a tenant (it is being deleted), inside the caller's transaction.
pub(crate) fn forget_tenant(c: &Connection, tenant: &TenantId) -> rusqlite::Result<usize> {
    c.execute(
        "DELETE FROM email_directory WHERE realm = ?1",
        [tenant.as_str()],
    )
}
