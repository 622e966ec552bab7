//! Signing in and out, the first-password change, and sign-in throttling.
//!
//! Every attempt is journaled, never with the password: in the account's realm when the
//! address belongs to an account, in the system journal otherwise. An unknown address, a
//! wrong password and a disabled account get one answer and take the same time (a dummy
//! hash is checked when there is no real one).
//!
//! Throttling counts failures per account (by the address's keyed hash) and per source
//! address (an IPv6 client by its /64): from the third failure each further attempt waits
//! twice as long as the last (1 s, 2 s, 4 s, ...), and at `lockout_failures` within
//! `lockout_secs` the key is locked until the window has passed. A refused attempt is
//! answered at once, without hashing, so a flood costs the server nothing but the entry.

use super::accounts::{self, Account};
use super::directory::Home;
use super::password::{self, Password};
use super::permission::{Caller, Permissions};
use super::sessions::{self, Client, Place, SessionSecret, Stage};
use super::IdentityError;
use crate::app::App;
use crate::audit::{Actor, ActorKind, NewEntry, Outcome};
use crate::door::{self, Audit, Door};
use crate::ids::{SessionId, UserId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How sign-in is throttled and how long sessions last.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lockout_failures: u32,
    pub lockout_secs: u64,
    pub session_absolute_secs: u64,
}

impl Settings {
    pub fn from_config(c: &crate::config::IdentityConfig) -> Self {
        Self {
            lockout_failures: u32::try_from(c.lockout_failures).unwrap_or(u32::MAX),
            lockout_secs: c.lockout_secs,
            session_absolute_secs: c.session_absolute_secs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account([u8; 32]),
    Source(IpAddr),
    /// Second-factor codes tried for one account.
    Factor(String),
    /// Current passwords given to change one account's password.
    Current(String),
    /// Addresses a source asked single sign-on for that led to no provider.
    Discovery(IpAddr),
}

/// The client a source address stands for: an IPv6 client by its /64, which one client
/// usually holds whole.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }
}

fn source_key(ip: IpAddr) -> Key {
    Key::Source(source(ip))
}

/// A source that gave no address (not seen from a connection) counts as one with all such.
fn discovery_key(ip: Option<IpAddr>) -> Key {
    Key::Discovery(source(
        ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    ))
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first_us: i64,
    last_us: i64,
}

/// Bound on remembered keys, so a spray of addresses cannot grow memory without end.
const MAX_KEYS: usize = 100_000;

/// Failed sign-ins per account and per source, in memory.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Throttle {
    /// Seconds until `keys` may try again, if any of them must wait.
    fn wait_secs(&self, keys: &[Key], now_us: i64, s: &Settings) -> Option<u64> {
        let map = self.failures.lock().ok()?;
        Self::wait_in(&map, keys, now_us, s)
    }

    fn wait_in(
        map: &HashMap<Key, Failures>,
        keys: &[Key],
        now_us: i64,
        s: &Settings,
    ) -> Option<u64> {
        let window = i64::try_from(s.lockout_secs).unwrap_or(i64::MAX / 2) * 1_000_000;
        let mut wait = 0i64;
        for k in keys {
            let Some(f) = map.get(k) else { continue };
            if now_us - f.first_us >= window {
                continue;
            }
            if f.count >= s.lockout_failures {
                wait = wait.max(f.first_us + window - now_us);
            } else if f.count >= 3 {
                let delay = (1i64 << (f.count - 3).min(20)) * 1_000_000;
                wait = wait.max(f.last_us + delay.min(window) - now_us);
            }
        }
        (wait > 0).then(|| u64::try_from((wait + 999_999) / 1_000_000).unwrap_or(1))
    }

    fn fail(&self, keys: &[Key], now_us: i64, s: &Settings) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        Self::fail_in(&mut map, keys, now_us, s);
    }

    /// An attempt of `key`: refused (seconds to wait) while it must wait, else counted as a
    /// failure at once, under one lock, until [`Throttle::succeed`] clears it. Checking first
    /// and counting when the answer is known let a burst of concurrent attempts all pass the
    /// check before any was counted.
    fn attempt(&self, key: Key, now_us: i64, s: &Settings) -> Result<(), u64> {
        let Ok(mut map) = self.failures.lock() else {
            return Err(1);
        };
        let keys = [key];
        if let Some(wait) = Self::wait_in(&map, &keys, now_us, s) {
            return Err(wait);
        }
        Self::fail_in(&mut map, &keys, now_us, s);
        Ok(())
    }

    fn fail_in(map: &mut HashMap<Key, Failures>, keys: &[Key], now_us: i64, s: &Settings) {
        let window = i64::try_from(s.lockout_secs).unwrap_or(i64::MAX / 2) * 1_000_000;
        if map.len() >= MAX_KEYS {
            map.retain(|_, f| now_us - f.first_us < window);
        }
        for k in keys {
            if map.len() >= MAX_KEYS && !map.contains_key(k) {
                continue;
            }
            let f = map.entry(k.clone()).or_insert(Failures {
                count: 0,
                first_us: now_us,
                last_us: now_us,
            });
            if now_us - f.first_us >= window {
                *f = Failures {
                    count: 0,
                    first_us: now_us,
                    last_us: now_us,
                };
            }
            f.count = f.count.saturating_add(1);
            f.last_us = now_us;
        }
    }

    /// Seconds until `user` may try another second-factor code, if it must wait: codes are
    /// throttled like passwords, so six digits cannot be walked through.
    /// Takes a second-factor attempt of `user`: `Err(seconds)` while it must wait; else it
    /// is counted as wrong until [`Throttle::factor_passed`].
    ///
    /// # Errors
    /// The seconds to wait.
    pub fn factor_attempt(&self, user: &UserId, now_us: i64, s: &Settings) -> Result<(), u64> {
        self.attempt(Key::Factor(user.to_string()), now_us, s)
    }

    pub fn factor_passed(&self, user: &UserId) {
        self.succeed(&Key::Factor(user.to_string()));
    }

    /// Takes an attempt to change `user`'s password, whose current password is checked (a
    /// hash of some 20 MiB and tens of milliseconds): `Err(seconds)` while it must wait;
    /// else counted as wrong until [`Throttle::password_passed`]. A stolen session cannot
    /// guess the password, nor keep the hashing threads busy.
    ///
    /// # Errors
    /// The seconds to wait.
    pub fn password_attempt(&self, user: &UserId, now_us: i64, s: &Settings) -> Result<(), u64> {
        self.attempt(Key::Current(user.to_string()), now_us, s)
    }

    pub fn password_passed(&self, user: &UserId) {
        self.succeed(&Key::Current(user.to_string()));
    }

    /// Seconds until `ip` may look up another address for single sign-on, if it must wait.
    /// A lookup that finds no provider answers as one for an address nobody has, so that
    /// whether an address has an account is not told; these are throttled as failed
    /// sign-ins are, so addresses cannot be tried by the thousand.
    pub fn discovery_wait(&self, ip: Option<IpAddr>, now_us: i64, s: &Settings) -> Option<u64> {
        self.wait_secs(&[discovery_key(ip)], now_us, s)
    }

    /// Counts a lookup from `ip` that led to no provider.
    pub fn discovery_missed(&self, ip: Option<IpAddr>, now_us: i64, s: &Settings) {
        self.fail(&[discovery_key(ip)], now_us, s);
    }

    fn succeed(&self, account: &Key) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(account);
        }
    }
}

/// A successful sign-in: the cookie's secret (set it, then forget it) and where it leads.
#[derive(Debug)]
pub struct SignedIn {
    pub place: Place,
    pub session: SessionId,
    pub secret: SessionSecret,
    pub stage: Stage,
    pub account: Account,
}

fn user_actor(id: &str, role: &str) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: id.to_string(),
        role: role.to_string(),
    }
}

/// A failed attempt that belongs to no account: recorded in the system journal.
pub(crate) async fn journal_unattached(app: &App, reason: &'static str, ip: Option<IpAddr>) {
    let mut entry = NewEntry::new(user_actor("unknown", ""), "auth.sign_in", "unknown")
        .params(serde_json::json!({ "reason": reason }))
        .outcome(Outcome::Failure);
    entry.source_ip = ip;
    let done = app
        .system()
        .writer()
        .change_async(move |_tx| Ok::<_, crate::store::StoreError>(((), entry)))
        .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "cannot journal a failed sign-in");
    }
}

/// Signs in with address and password.
///
/// # Errors
/// [`IdentityError::BadCredentials`] for every wrong combination (unknown address, wrong
/// password, disabled account, unavailable tenant); [`IdentityError::Throttled`] while the
/// account or the source must wait; a storage fault (then no session exists).
pub async fn sign_in(
    app: &Arc<App>,
    throttle: &Throttle,
    settings: &Settings,
    email: &str,
    password: Password,
    client: Client,
) -> Result<SignedIn, IdentityError> {
    let now = app.clock().now_us();
    let dir = app.directory().clone();
    let email = super::Email::parse(email).ok();
    let mut keys = Vec::with_capacity(2);
    if let Some(e) = &email {
        keys.push(Key::Account(dir.mac(e)));
    }
    if let Some(ip) = client.ip {
        keys.push(source_key(ip));
    }
    if let Some(wait) = throttle.wait_secs(&keys, now, settings) {
        journal_unattached(app, "throttled", client.ip).await;
        return Err(IdentityError::Throttled(wait));
    }
    let listing = match &email {
        Some(e) => {
            let (dir, e) = (dir.clone(), e.clone());
            tokio::task::spawn_blocking(move || dir.find(&e))
                .await
                .map_err(|_| crate::store::StoreError::JobPanicked {
                    what: "sign-in".into(),
                })??
        }
        None => None,
    };
    let Some(listing) = listing else {
        if dir.hasher().verify_bounded(password, None).await.is_none() {
            journal_unattached(app, "busy", client.ip).await;
            return Err(IdentityError::Busy);
        }
        throttle.fail(&keys, now, settings);
        journal_unattached(app, "unknown_account", client.ip).await;
        return Err(IdentityError::BadCredentials);
    };
    let caller = Caller::new(
        user_actor(listing.user_id.as_str(), ""),
        Permissions::empty(),
    );
    // The realm's reads and writes run on a blocking thread; only the hash is awaited here.
    let (app2, home, uid, ip) = (
        app.clone(),
        listing.home.clone(),
        listing.user_id.clone(),
        client.ip,
    );
    let opened = tokio::task::spawn_blocking(move || -> Result<_, IdentityError> {
        let tenant = match &home {
            Home::Platform => None,
            Home::Tenant(t) => Some(t),
        };
        let opened = match door::open_realm_blocking(&app2, tenant, caller, ip) {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::info!(
                    code = crate::error::DomainError::code(&e),
                    "sign-in to an unusable tenant"
                );
                return Ok(None);
            }
        };
        let creds = opened
            .read_blocking(|conn| accounts::credentials(conn, &uid).map_err(accounts::store_err))?;
        Ok(Some((opened, creds)))
    })
    .await
    .map_err(|_| crate::store::StoreError::JobPanicked {
        what: "sign-in".into(),
    })??;
    let Some((opened, Some(creds))) = opened else {
        if dir.hasher().verify_bounded(password, None).await.is_none() {
            journal_unattached(app, "busy", client.ip).await;
            return Err(IdentityError::Busy);
        }
        throttle.fail(&keys, now, settings);
        journal_unattached(app, "unavailable", client.ip).await;
        return Err(IdentityError::BadCredentials);
    };
    let Some(ok) = dir
        .hasher()
        .verify_bounded(password, creds.password_hash.clone())
        .await
    else {
        journal_unattached(app, "busy", client.ip).await;
        return Err(IdentityError::Busy);
    };
    let account = creds.account;
    if !ok || account.disabled {
        throttle.fail(&keys, now, settings);
    } else if let Some(k) = keys.first() {
        throttle.succeed(k);
    }
    let (dir2, absolute) = (dir.clone(), settings.session_absolute_secs);
    tokio::task::spawn_blocking(move || {
        record_blocking(&opened, &dir2, account, ok, &client, absolute, "password")
    })
    .await
    .map_err(|_| crate::store::StoreError::JobPanicked {
        what: "sign-in".into(),
    })?
}

/// Journals the attempt in the account's realm, and opens the session of a good one.
/// `method` names how the person proved who they are (`password`, `sso`).
pub(crate) fn record_blocking<D: Door>(
    ctx: &D,
    dir: &Arc<super::Directory>,
    account: Account,
    password_ok: bool,
    client: &Client,
    absolute_secs: u64,
    method: &'static str,
) -> Result<SignedIn, IdentityError> {
    let place = match ctx.tenant_id() {
        Some(t) => Place::Tenant(t.clone()),
        None => Place::Platform,
    };
    let policy = read_policy(ctx)?;
    let refused_here = password_ok && !account.disabled && !policy.admits(client.ip);
    if !password_ok || account.disabled || refused_here {
        let reason = if refused_here {
            "address_refused"
        } else if password_ok {
            "disabled"
        } else {
            "wrong_password"
        };
        let (id, role) = (account.id.clone(), account.role.clone());
        ctx.change_blocking(move |_tx| {
            let audit = Audit::new("auth.sign_in", id.as_str())
                .params(serde_json::json!({ "reason": reason, "role": role, "method": method }))
                .outcome(Outcome::Failure);
            Ok::<_, IdentityError>(((), audit))
        })?;
        return Err(if refused_here {
            IdentityError::AddressRefused
        } else {
            IdentityError::BadCredentials
        });
    }
    let absolute_secs = policy
        .session_absolute_secs
        .map_or(absolute_secs, |p| p.min(absolute_secs));
    let realm = ctx.realm();
    let (uid, dir, client2, role) = (
        account.id.clone(),
        dir.clone(),
        client.clone(),
        account.role.clone(),
    );
    let (session, secret, unfamiliar, stage) = ctx.change_blocking(move |tx| {
        let c = tx.conn();
        let (before, known): (i64, i64) = c
            .query_row(
                "SELECT count(*), count(CASE WHEN ip IS ?2 AND device = ?3 THEN 1 END) \
                 FROM sessions WHERE user_id = ?1",
                rusqlite::params![
                    uid.as_str(),
                    client2.ip.map(|i| i.to_string()),
                    client2.device
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(accounts::store_err)?;
        let unfamiliar = before > 0 && known == 0;
        let stage = next_stage(c, realm, &uid, false)?;
        let (sid, secret) =
            sessions::insert(c, &dir, &uid, stage, tx.now_us(), absolute_secs, &client2)?;
        let audit = Audit::new("auth.sign_in", uid.as_str()).params(serde_json::json!({
            "session": sid.as_str(),
            "stage": stage.as_str(),
            "role": role,
            "device": client2.device,
            "unfamiliar": unfamiliar,
            "method": method,
        }));
        Ok::<_, IdentityError>(((sid, secret, unfamiliar, stage), audit))
    })?;
    if unfamiliar {
        // Its own entry, so a security team can alert on the action alone.
        let (uid, ip, device) = (account.id.clone(), client.ip, client.device.clone());
        ctx.change_blocking(move |_tx| {
            let audit = Audit::new("auth.unfamiliar_sign_in", uid.as_str())
                .params(serde_json::json!({ "ip": ip.map(|i| i.to_string()), "device": device }));
            Ok::<_, IdentityError>(((), audit))
        })?;
    }
    Ok(SignedIn {
        place,
        session,
        secret,
        stage,
        account,
    })
}

/// Replaces the password of the signed-in account (the one-time password at first sign-in,
/// or by choice), ends all its sessions, and opens a new full session with a new secret.
///
/// # Errors
/// A wrong current password, a weak or unchanged new one, or a storage fault (then nothing
/// changed).
pub fn change_password_blocking<D: Door>(
    door: &D,
    dir: &Arc<super::Directory>,
    user: &UserId,
    current: &Password,
    new: &Password,
    client: &Client,
    settings: &Settings,
) -> Result<(SessionId, SessionSecret, Stage), IdentityError> {
    if door.caller().actor.id != user.as_str() {
        return Err(super::Denied("one's own password").into());
    }
    let uid = user.clone();
    let creds = door
        .read_blocking(|c| accounts::credentials(c, &uid).map_err(accounts::store_err))?
        .ok_or_else(|| IdentityError::NotFound(format!("no account {user}")))?;
    if !password::verify_blocking(current, creds.password_hash.as_deref()) {
        return Err(IdentityError::WrongCurrentPassword);
    }
    if current.expose() == new.expose() {
        return Err(IdentityError::SamePassword);
    }
    password::check_strength(new, Some(&creds.account.email))?;
    let hash = password::hash_blocking(new)?;
    let policy = read_policy(door)?;
    let absolute = policy
        .session_absolute_secs
        .map_or(settings.session_absolute_secs, |p| {
            p.min(settings.session_absolute_secs)
        });
    let (dir, client, realm) = (dir.clone(), client.clone(), door.realm());
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        c.execute(
            "UPDATE users SET password_hash = ?2, must_change = 0, changed_us = ?3 WHERE id = ?1",
            rusqlite::params![uid.as_str(), hash, now],
        )
        .map_err(accounts::store_err)?;
        let ended = accounts::end_sessions_of(c, &uid, now).map_err(accounts::store_err)?;
        let stage = next_stage(c, realm, &uid, true)?;
        let (sid, secret) = sessions::insert(c, &dir, &uid, stage, now, absolute, &client)?;
        let audit = Audit::new("user.password_change", uid.as_str())
            .params(serde_json::json!({ "sessions_ended": ended, "new_session": sid.as_str() }));
        Ok(((sid, secret, stage), audit))
    })
}

/// Ends the caller's own session (sign out).
///
/// # Errors
/// A storage fault.
pub fn sign_out_blocking<D: Door>(
    door: &D,
    user: &UserId,
    session: &SessionId,
) -> Result<(), IdentityError> {
    match sessions::end_blocking(door, user, session, "sign_out") {
        Ok(()) | Err(IdentityError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The tenant's policy as sign-in enforces it (the platform has none).
fn read_policy<D: Door>(door: &D) -> Result<crate::policy::Policy, IdentityError> {
    crate::policy::read_unchecked(door).map_err(|e| match e {
        crate::policy::PolicyError::Store(e) => IdentityError::Store(e),
        crate::policy::PolicyError::Tenant(e) => IdentityError::Tenant(e),
        other => IdentityError::Store(crate::store::StoreError::Io {
            what: "policy".into(),
            reason: other.to_string(),
        }),
    })
}

/// The step an account's session must be at next: the second factor (unless given), a new
/// password, enrolment when the policy requires a second factor it lacks, or signed in.
fn next_stage(
    c: &rusqlite::Connection,
    realm: super::Realm,
    user: &UserId,
    second_factor_given: bool,
) -> Result<Stage, IdentityError> {
    let account = accounts::resolve(c, user.as_str())
        .map_err(accounts::store_err)?
        .ok_or_else(|| IdentityError::NotFound(format!("no account {user}")))?;
    let (enrolled, _) = super::totp::status(c, user).map_err(accounts::store_err)?;
    if enrolled && !second_factor_given {
        return Ok(Stage::Totp);
    }
    if account.must_change_password {
        return Ok(Stage::ChangePassword);
    }
    let policy = match realm {
        super::Realm::Tenant => crate::policy::Policy::read(c).map_err(accounts::store_err)?,
        super::Realm::Platform => crate::policy::Policy::default(),
    };
    let permissions = accounts::permissions_of(c, realm, &account.role)
        .map_err(accounts::store_err)?
        .unwrap_or_default();
    if !enrolled && policy.requires_two_factor(&account.role, permissions) {
        return Ok(Stage::Enrol);
    }
    Ok(Stage::Full)
}

/// Moves a session on after a step of signing in (the second factor given, a second factor
/// set up): the old session ends and a new one, with a new secret, takes the next stage.
///
/// # Errors
/// Not the caller's own session, or a storage fault.
pub fn advance_blocking<D: Door>(
    door: &D,
    dir: &Arc<super::Directory>,
    user: &UserId,
    old: &SessionId,
    client: &Client,
    settings: &Settings,
) -> Result<(SessionId, SessionSecret, Stage), IdentityError> {
    if door.caller().actor.id != user.as_str() {
        return Err(super::Denied("one's own session").into());
    }
    let policy = read_policy(door)?;
    let absolute = policy
        .session_absolute_secs
        .map_or(settings.session_absolute_secs, |p| {
            p.min(settings.session_absolute_secs)
        });
    let (uid, old, dir, client, realm) = (
        user.clone(),
        old.clone(),
        dir.clone(),
        client.clone(),
        door.realm(),
    );
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        let ended = c
            .execute(
                "UPDATE sessions SET ended_us = ?3 WHERE id = ?1 AND user_id = ?2 AND ended_us IS NULL",
                rusqlite::params![old.as_str(), uid.as_str(), now],
            )
            .map_err(accounts::store_err)?;
        if ended == 0 {
            return Err(IdentityError::NotFound("no open session".into()));
        }
        let stage = next_stage(c, realm, &uid, true)?;
        let (sid, secret) = sessions::insert(c, &dir, &uid, stage, now, absolute, &client)?;
        let audit = Audit::new("auth.session_advance", uid.as_str()).params(serde_json::json!({
            "from": old.as_str(), "to": sid.as_str(), "stage": stage.as_str(),
        }));
        Ok(((sid, secret, stage), audit))
    })
}

/// A sign-in from an address and device not seen before for the account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unfamiliar {
    pub time_us: i64,
    pub ip: Option<String>,
    pub device: Option<String>,
}

/// The account's most recent unfamiliar sign-ins (newest first, at most `limit`), for its
/// own security page: the signal of a taken-over account is shown to its owner.
///
/// # Errors
/// Asking about another account, or a storage fault.
pub fn unfamiliar_blocking<D: Door>(
    door: &D,
    user: &UserId,
    limit: usize,
) -> Result<Vec<Unfamiliar>, IdentityError> {
    if door.caller().actor.id != user.as_str() {
        return Err(super::Denied("one's own sign-ins").into());
    }
    let user = user.clone();
    door.read_blocking(move |c| {
        let mut st = c
            .prepare(
                "SELECT time_us, params FROM audit_entries WHERE action = 'auth.unfamiliar_sign_in' \
                 AND target = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(accounts::store_err)?;
        let rows = st
            .query_map(rusqlite::params![user.as_str(), limit.min(50) as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(accounts::store_err)?;
        Ok(rows
            .into_iter()
            .map(|(time_us, params)| {
                let v: serde_json::Value = serde_json::from_str(&params).unwrap_or_default();
                Unfamiliar {
                    time_us,
                    ip: v["ip"].as_str().map(str::to_string),
                    device: v["device"].as_str().map(str::to_string),
                }
            })
            .collect())
    })
}
