//! Sessions: server-side, found by a keyed hash of a 256-bit random secret that only the
//! browser holds (in a `__Host-` cookie). The realm's file is the truth; the web keeps a
//! cache in front of it (see `web::auth`).
//!
//! A session has a stage: `full`, or `change_password` for an account that must replace its
//! one-time password first (such a session reaches nothing else). Reaching `full` from
//! another stage makes a new session with a new secret (no fixation across a privilege
//! change).

use super::accounts::{self, store_err, Account};
use super::directory::{Directory, Home};
use super::permission::{Permission, Permissions, Realm};
use super::IdentityError;
use crate::door::{Audit, Door};
use crate::ids::{SessionId, TenantId, UserId};
use crate::keyring::SecretString;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// The session cookie. `__Host-` makes the browser refuse it unless it is `Secure`, has no
/// `Domain` and has `Path=/`, so no sibling host can plant or read it.
pub const COOKIE: &str = "__Host-strongroom";

/// Where a session secret leads: which realm holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    Platform,
    Tenant(TenantId),
}

impl Place {
    pub fn realm(&self) -> Realm {
        match self {
            Place::Platform => Realm::Platform,
            Place::Tenant(_) => Realm::Tenant,
        }
    }

    pub fn of(home: &Home) -> Self {
        match home {
            Home::Platform => Place::Platform,
            Home::Tenant(id) => Place::Tenant(id.clone()),
        }
    }
}

/// The secret half of a session, as the browser holds it. Prints `[redacted]`.
pub struct SessionSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl SessionSecret {
    /// # Errors
    /// The random source failed.
    pub fn random() -> Result<Self, IdentityError> {
        let mut b = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b[..])
            .map_err(|_| crate::keyring::KeyringError::Random)?;
        Ok(Self(b))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The cookie's value: where the session lives, then the secret (`p.` or
    /// `<tenant id>.`, then 64 hex characters).
    pub fn cookie_value(&self, place: &Place) -> SecretString {
        let prefix = match place {
            Place::Platform => "p",
            Place::Tenant(id) => id.as_str(),
        };
        SecretString::new(format!("{prefix}.{}", hex::encode(&self.0[..])))
    }

    /// Reads a cookie value; `None` for anything malformed.
    pub fn parse_cookie(value: &str) -> Option<(Place, Self)> {
        let (prefix, secret) = value.split_once('.')?;
        let place = if prefix == "p" {
            Place::Platform
        } else {
            Place::Tenant(TenantId::parse(prefix).ok()?)
        };
        if secret.len() != 64 {
            return None;
        }
        let mut b = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret, &mut b[..]).ok()?;
        Some((place, Self(b)))
    }
}

/// What a session is for, as far as it has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Signed in: everything the role allows.
    Full,
    /// Must choose a new password before anything else.
    ChangePassword,
    /// Must give the second factor before anything else.
    Totp,
    /// Must set up a second factor (the tenant's policy requires one) before anything else.
    Enrol,
}

impl Stage {
    /// Where a session at this stage is sent before anything else.
    pub fn page(self) -> &'static str {
        match self {
            Stage::Full => "/",
            Stage::ChangePassword => "/password",
            Stage::Totp => "/login/totp",
            Stage::Enrol => "/security/totp",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Full => "full",
            Stage::ChangePassword => "change_password",
            Stage::Totp => "totp",
            Stage::Enrol => "enrol",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Stage::Full,
            Stage::ChangePassword,
            Stage::Totp,
            Stage::Enrol,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Where a request came from: shown to the person on their sessions page.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<IpAddr>,
    /// The user agent, bounded and stripped of control characters.
    pub device: String,
}

impl Client {
    pub fn new(ip: Option<IpAddr>, user_agent: &str) -> Self {
        let device: String = user_agent
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Self {
            ip,
            device: if device.is_empty() {
                "unknown".into()
            } else {
                device
            },
        }
    }
}

/// One session, as its owner sees it in their list.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub user_id: UserId,
    pub stage: Stage,
    pub created_us: i64,
    pub last_seen_us: i64,
    pub expires_us: i64,
    pub ip: Option<String>,
    pub device: String,
    pub ended_us: Option<i64>,
}

const SESSION_COLUMNS: &str =
    "s.id, s.user_id, s.stage, s.created_us, s.last_seen_us, s.expires_us, s.ip, s.device, s.ended_us";

fn info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionInfo> {
    let stage: String = r.get(2)?;
    Ok(SessionInfo {
        id: SessionId::from_trusted(r.get(0)?),
        user_id: UserId::from_trusted(r.get(1)?),
        // A stage this build does not know leads nowhere but the second-factor check.
        stage: Stage::parse(&stage).unwrap_or(Stage::Totp),
        created_us: r.get(3)?,
        last_seen_us: r.get(4)?,
        expires_us: r.get(5)?,
        ip: r.get(6)?,
        device: r.get(7)?,
        ended_us: r.get(8)?,
    })
}

/// A new session row, inside the caller's transaction. The secret never touches the file.
///
/// # Errors
/// The random source or a storage fault.
pub(crate) fn insert(
    c: &Connection,
    dir: &Directory,
    user: &UserId,
    stage: Stage,
    now_us: i64,
    absolute_secs: u64,
    client: &Client,
) -> Result<(SessionId, SessionSecret), IdentityError> {
    let id = SessionId::from_trusted(crate::keyring::random_id()?);
    let secret = SessionSecret::random()?;
    let hash = dir.secret_hash("session", secret.expose());
    let expires = now_us.saturating_add(
        i64::try_from(absolute_secs)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1_000_000),
    );
    c.execute(
        "INSERT INTO sessions (id, secret_hash, user_id, stage, created_us, last_seen_us, \
         expires_us, ip, device) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
        params![
            id.as_str(),
            &hash[..],
            user.as_str(),
            stage.as_str(),
            now_us,
            expires,
            client.ip.map(|i| i.to_string()),
            client.device,
        ],
    )
    .map_err(store_err)?;
    Ok((id, secret))
}

/// A live session with its account and what the account's role allows now.
#[derive(Debug, Clone)]
pub struct Live {
    pub session: SessionInfo,
    pub account: Account,
    pub permissions: Permissions,
}

/// The session whose secret hashes to `hash`, if it is open, unexpired, and its account is
/// enabled and still has a role; `None` otherwise (one answer for every reason).
///
/// # Errors
/// A storage fault.
pub(crate) fn load(
    c: &Connection,
    realm: Realm,
    hash: &[u8; 32],
    now_us: i64,
) -> Result<Option<Live>, IdentityError> {
    let session = c
        .query_row(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.secret_hash = ?1 \
                 AND s.ended_us IS NULL AND s.expires_us > ?2"
            ),
            params![&hash[..], now_us],
            info_from_row,
        )
        .optional()
        .map_err(store_err)?;
    let Some(session) = session else {
        return Ok(None);
    };
    let Some(account) = accounts::resolve(c, session.user_id.as_str()).map_err(store_err)? else {
        return Ok(None);
    };
    if account.disabled {
        return Ok(None);
    }
    let Some(permissions) = accounts::permissions_of(c, realm, &account.role).map_err(store_err)?
    else {
        return Ok(None);
    };
    Ok(Some(Live {
        session,
        account,
        permissions,
    }))
}

/// An account's sessions, newest first, open ones and the last ended ones.
///
/// # Errors
/// Permission (one's own, or `users.manage`), or a storage fault.
pub fn list_blocking<D: Door>(door: &D, user: &UserId) -> Result<Vec<SessionInfo>, IdentityError> {
    may_act_for(door, user)?;
    let user = user.clone();
    door.read_blocking(move |c| {
        let mut st = c
            .prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = ?1 \
                 ORDER BY s.ended_us IS NOT NULL, s.created_us DESC LIMIT 50"
            ))
            .map_err(store_err)?;
        let rows = st
            .query_map([user.as_str()], info_from_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(store_err)?;
        Ok(rows)
    })
}

/// The caller acts for `user`: it is them, or it manages accounts.
fn may_act_for<D: Door>(door: &D, user: &UserId) -> Result<(), IdentityError> {
    let caller = door.caller();
    if caller.actor.id == user.as_str() {
        return Ok(());
    }
    let manage = match door.realm() {
        Realm::Platform => Permission::PlatformUsersManage,
        Realm::Tenant => Permission::UsersManage,
    };
    Ok(caller.require(manage)?)
}

/// Ends one session of `user`. Returns whether it was open.
///
/// # Errors
/// Permission, no such session of that account, or a storage fault.
pub fn end_blocking<D: Door>(
    door: &D,
    user: &UserId,
    session: &SessionId,
    why: &'static str,
) -> Result<(), IdentityError> {
    may_act_for(door, user)?;
    let (user, session) = (user.clone(), session.clone());
    let (caller, realm) = (door.caller().clone(), door.realm());
    door.change_blocking(move |tx| {
        accounts::require_may_act_for(tx.conn(), &caller, realm, &user)?;
        let n = tx
            .conn()
            .execute(
                "UPDATE sessions SET ended_us = ?3 WHERE id = ?1 AND user_id = ?2 \
                 AND ended_us IS NULL",
                params![session.as_str(), user.as_str(), tx.now_us()],
            )
            .map_err(|e| IdentityError::Store(tx.err(&e)))?;
        if n == 0 {
            return Err(IdentityError::NotFound(format!(
                "no open session {session}"
            )));
        }
        let audit = Audit::new("auth.session_end", session.as_str())
            .params(serde_json::json!({ "user": user.as_str(), "why": why }));
        Ok(((), audit))
    })
}

/// Ends every open session of `user` (an admin ending someone's sessions, or oneself
/// everywhere). Returns how many were open.
///
/// # Errors
/// Permission, or a storage fault.
pub fn end_all_blocking<D: Door>(door: &D, user: &UserId) -> Result<usize, IdentityError> {
    may_act_for(door, user)?;
    let user = user.clone();
    let (caller, realm) = (door.caller().clone(), door.realm());
    door.change_blocking(move |tx| {
        accounts::require_may_act_for(tx.conn(), &caller, realm, &user)?;
        if accounts::resolve(tx.conn(), user.as_str())
            .map_err(store_err)?
            .is_none()
        {
            return Err(IdentityError::NotFound(format!("no account {user}")));
        }
        let n = accounts::end_sessions_of(tx.conn(), &user, tx.now_us())
            .map_err(|e| IdentityError::Store(tx.err(&e)))?;
        let audit = Audit::new("auth.sessions_end_all", user.as_str())
            .params(serde_json::json!({ "sessions_ended": n }));
        Ok((n, audit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_round_trip_and_malformed_ones_are_refused() {
        let s = SessionSecret::random().unwrap();
        let t = TenantId::parse(&"ab".repeat(16)).unwrap();
        for place in [Place::Platform, Place::Tenant(t)] {
            let v = s.cookie_value(&place);
            let (p, back) = SessionSecret::parse_cookie(v.expose()).unwrap();
            assert_eq!(p, place);
            assert_eq!(back.expose(), s.expose());
        }
        assert_eq!(format!("{s:?}"), "[redacted]");
        for bad in [
            "",
            "p",
            "p.",
            "p.zz",
            &format!("q.{}", "a".repeat(64)),
            &format!("p.{}", "a".repeat(63)),
            &format!("p.{}", "g".repeat(64)),
            &format!("{}.{}", "A".repeat(32), "a".repeat(64)),
        ] {
            assert!(SessionSecret::parse_cookie(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn devices_are_bounded_and_clean() {
        let c = Client::new(None, &format!("Mozilla\u{1b}[31m\n{}", "x".repeat(500)));
        assert_eq!(c.device.chars().count(), 200);
        assert!(!c.device.contains('\u{1b}') && !c.device.contains('\n'));
        assert_eq!(Client::new(None, "").device, "unknown");
    }
}
