//! Who is calling: a session cookie or a bearer token, resolved to a [`Principal`].
//!
//! Checks are served from memory: each resolved credential is cached under its keyed hash,
//! and the realm's file stays the truth. In this process, every change that takes power away
//! (sign-out, an ended session, a disabled account, a new role, a revoked token, a suspended
//! tenant) removes the affected entries at once, so it holds on the next request on every
//! thread. An entry is also read again from the file when it is older than
//! [`REVALIDATE_US`]; that read records when the session was last seen. A change made by
//! another process (the CLI) replaces the data directory's identity epoch file, and the
//! next request here, seeing it changed, forgets everything remembered.

use crate::app::App;
use crate::audit::{Actor, ActorKind};
use crate::door::{self, Door, UseMark};
use crate::identity::sessions::{self, Place, SessionSecret, Stage};
use crate::identity::tokens::{self, Presented};
use crate::identity::{Caller, Email, IdentityError, Permissions, Realm};
use crate::ids::{SessionId, TokenId, UserId};
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// How long a cached credential is trusted before the file is read again.
pub const REVALIDATE_US: i64 = 10_000_000;

/// Bound on cached credentials; past it, the cache is emptied of expired entries, then of
/// the oldest half (they are read again on use).
const MAX_ENTRIES: usize = 200_000;

/// What kind of caller, and which.
#[derive(Debug, Clone)]
pub enum Who {
    User {
        id: UserId,
        email: Email,
        name: String,
        session: SessionId,
        stage: Stage,
        /// The session's CSRF token: a keyed hash of its secret, so it is per session and
        /// needs no storage.
        csrf: String,
    },
    Token {
        id: TokenId,
        name: String,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub place: Place,
    pub who: Who,
    pub role: String,
    pub permissions: Permissions,
    /// A platform account acting in a tenant under that tenant's access grant.
    pub grant: Option<crate::ids::GrantId>,
}

impl Principal {
    /// The caller as domain functions see it. A session that has not reached its full
    /// stage carries no permission at all.
    pub fn caller(&self) -> Caller {
        let (kind, id, permissions) = match &self.who {
            Who::User { id, stage, .. } => (
                ActorKind::User,
                id.to_string(),
                if *stage == Stage::Full {
                    self.permissions
                } else {
                    Permissions::empty()
                },
            ),
            Who::Token { id, .. } => (ActorKind::Token, id.to_string(), self.permissions),
        };
        Caller::new(
            Actor {
                kind,
                id,
                role: self.role.clone(),
            },
            permissions,
        )
    }

    pub fn is_full(&self) -> bool {
        match &self.who {
            Who::User { stage, .. } => *stage == Stage::Full,
            Who::Token { .. } => true,
        }
    }

    /// A session's stage; `None` for a token.
    pub fn stage(&self) -> Option<Stage> {
        match &self.who {
            Who::User { stage, .. } => Some(*stage),
            Who::Token { .. } => None,
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match &self.who {
            Who::User { id, .. } => Some(id),
            Who::Token { .. } => None,
        }
    }
}

struct Entry {
    principal: Arc<Principal>,
    /// When the file was last read for this entry.
    checked_us: i64,
    /// Absolute end (session) or expiry (token); `i64::MAX` for none.
    ends_us: i64,
    last_seen_us: AtomicI64,
}

/// How a request authenticated, for the CSRF rule (cookies need it, bearer tokens do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// Why a request carrying credentials is not authenticated.
#[derive(Debug)]
pub enum Refused {
    /// Malformed, unknown, expired, revoked or ended: one answer.
    Invalid,
    /// The tenant is suspended (or gone).
    Tenant(crate::tenants::TenantError),
    Internal(IdentityError),
}

/// The credential caches, the sign-in throttle, and the session timeouts.
pub struct Auth {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
    /// Each tenant's policy as last read, with when.
    policies: RwLock<HashMap<crate::ids::TenantId, (Arc<crate::policy::Policy>, i64)>>,
    /// Platform sessions acting under a tenant's grant: the derived principal, when it was
    /// checked, and when the grant ends.
    grants: RwLock<HashMap<(SessionId, crate::ids::GrantId), GrantView>>,
    pub throttle: crate::identity::signin::Throttle,
    pub settings: crate::identity::signin::Settings,
    pub idle_us: i64,
    /// The identity epoch the caches were filled under (see [`crate::app::IDENTITY_EPOCH`]).
    epoch: std::sync::atomic::AtomicU64,
    /// Moved before anything is forgotten. A read of the files taken before a forgetting
    /// may hold what was just forgotten (a token revoked meanwhile): its finding is used for
    /// its own request, not remembered.
    generation: std::sync::atomic::AtomicU64,
    /// The data directory whose identity epoch this process replaces after a change of
    /// power or policy made here, so other servers on the same data forget theirs too.
    announce_in: Option<std::path::PathBuf>,
}

impl Auth {
    pub fn new(config: &crate::config::IdentityConfig) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            policies: RwLock::new(HashMap::new()),
            grants: RwLock::new(HashMap::new()),
            throttle: Default::default(),
            settings: crate::identity::signin::Settings::from_config(config),
            idle_us: i64::try_from(config.session_idle_secs).unwrap_or(i64::MAX / 2) * 1_000_000,
            epoch: std::sync::atomic::AtomicU64::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
            announce_in: None,
        }
    }

    /// As [`Auth::new`], announcing changes made here to the other servers on `data_dir`.
    pub fn announcing(config: &crate::config::IdentityConfig, data_dir: &std::path::Path) -> Self {
        Self {
            announce_in: Some(data_dir.to_path_buf()),
            ..Self::new(config)
        }
    }

    /// Tells every server on this data (other nodes, behind a load balancer) that people or
    /// policies changed, as the CLI does: each forgets what it remembers at its next request
    /// instead of trusting it for up to [`REVALIDATE_US`]. Called after every forgetting a
    /// change made here, and after an assistant policy change.
    pub fn announce(&self) {
        if let Some(dir) = &self.announce_in {
            if let Err(e) = crate::app::bump_identity_epoch(dir) {
                tracing::warn!(error = %e, "cannot tell other servers of a change; they follow it within 10 s");
            }
        }
    }

    /// Taken before reading the files for a cache; see [`Auth::remembers`].
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called before every forgetting, ahead of the write lock it takes.
    fn moved(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a read begun at generation `read_at` may be remembered: nothing was forgotten
    /// since. Asked under the cache's write lock, so a forgetting either comes after the
    /// insert (and removes it) or is seen here.
    fn remembers(&self, read_at: u64) -> bool {
        self.generation() == read_at
    }

    /// Forgets every remembered credential, policy and grant when another process (the
    /// CLI) has changed people since they were read: one `stat` per request.
    fn follow_epoch(&self, app: &App) {
        let now = app.identity_epoch();
        if self.epoch.swap(now, Ordering::AcqRel) != now {
            self.moved();
            if let Ok(mut m) = self.entries.write() {
                m.clear();
            }
            if let Ok(mut m) = self.policies.write() {
                m.clear();
            }
            if let Ok(mut m) = self.grants.write() {
                m.clear();
            }
        }
    }

    /// The identity epoch as the last authenticated request found it (each one looks).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The principal behind the request's credentials: `Ok(None)` when it carries none.
    ///
    /// # Errors
    /// [`Refused`] for credentials that do not hold.
    pub async fn authenticate(
        &self,
        app: &Arc<App>,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<Option<(Arc<Principal>, Via)>, Refused> {
        self.follow_epoch(app);
        if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
            let text = v.to_str().map_err(|_| Refused::Invalid)?;
            let token = text
                .strip_prefix("Bearer ")
                .or_else(|| text.strip_prefix("bearer "))
                .ok_or(Refused::Invalid)?;
            let p = Presented::parse(token.trim()).ok_or(Refused::Invalid)?;
            let key = app.directory().secret_hash("token", p.secret());
            return self
                .resolve(app, key, ip, Lookup::Token(p))
                .await
                .map(|p| Some((p, Via::Bearer)));
        }
        let Some(value) = session_cookie(headers) else {
            return Ok(None);
        };
        let (place, secret) = SessionSecret::parse_cookie(&value).ok_or(Refused::Invalid)?;
        let key = app.directory().secret_hash("session", secret.expose());
        let csrf = hex::encode(app.directory().secret_hash("csrf", secret.expose()));
        let p = self
            .resolve(app, key, ip, Lookup::Session { place, key, csrf })
            .await?;
        // A platform account that entered a tenant under its grant acts there, read-only.
        if let (Place::Platform, Some((tenant, grant))) = (&p.place, grant_cookie(headers)) {
            if let Some(acting) = self.under_grant(app, &p, &tenant, &grant).await {
                return Ok(Some((acting, Via::Cookie)));
            }
        }
        Ok(Some((p, Via::Cookie)))
    }

    /// The platform principal `p` acting in `tenant` under grant `grant`, if the grant is
    /// live and names `p`. A grant that ended (expired, revoked, a suspended tenant) leaves
    /// `p` on the platform.
    async fn under_grant(
        &self,
        app: &Arc<App>,
        p: &Arc<Principal>,
        tenant: &crate::ids::TenantId,
        grant: &crate::ids::GrantId,
    ) -> Option<Arc<Principal>> {
        let Who::User {
            id, session, stage, ..
        } = &p.who
        else {
            return None;
        };
        if *stage != Stage::Full {
            return None;
        }
        let now = app.clock().now_us();
        let key = (session.clone(), grant.clone());
        if let Ok(map) = self.grants.read() {
            if let Some((acting, checked, ends)) = map.get(&key) {
                if now < *ends && now - checked < REVALIDATE_US {
                    return Some(acting.clone());
                }
            }
        }
        let (app2, t, g, uid) = (app.clone(), tenant.clone(), grant.clone(), id.clone());
        let read_at = self.generation();
        let live = tokio::task::spawn_blocking(move || {
            let reader = Caller::new(Actor::system(), Permissions::empty());
            let ctx = door::open_blocking(&app2, &t, reader, None).ok()?;
            ctx.read_blocking(|c| crate::identity::grants::live_for(c, &g, &uid, now))
                .ok()
                .flatten()
        })
        .await
        .ok()
        .flatten();
        let Some(live) = live else {
            if let Ok(mut map) = self.grants.write() {
                map.remove(&key);
            }
            return None;
        };
        let acting = Arc::new(Principal {
            place: Place::Tenant(tenant.clone()),
            who: p.who.clone(),
            role: format!("vendor:{}", live.id),
            permissions: crate::identity::grants::permissions(),
            grant: Some(live.id.clone()),
        });
        if let Ok(mut map) = self.grants.write() {
            if self.remembers(read_at) {
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
                map.insert(key, (acting.clone(), now, live.expires_us));
            }
        }
        Some(acting)
    }

    /// After a grant was revoked.
    pub fn forget_grant(&self, grant: &crate::ids::GrantId) {
        self.moved();
        if let Ok(mut map) = self.grants.write() {
            map.retain(|(_, g), _| g != grant);
        }
        self.announce();
    }

    /// A tenant's policy, from memory when read less than [`REVALIDATE_US`] ago.
    ///
    /// # Errors
    /// The tenant cannot be opened (suspended, deleted) or read.
    pub async fn policy(
        &self,
        app: &Arc<App>,
        tenant: &crate::ids::TenantId,
    ) -> Result<Arc<crate::policy::Policy>, Refused> {
        let now = app.clock().now_us();
        if let Ok(map) = self.policies.read() {
            if let Some((p, at)) = map.get(tenant) {
                // A clock stepped back makes no old reading new.
                if (0..REVALIDATE_US).contains(&(now - at)) {
                    return Ok(p.clone());
                }
            }
        }
        let (app2, t) = (app.clone(), tenant.clone());
        let read_at = self.generation();
        let read = tokio::task::spawn_blocking(move || {
            let reader = Caller::new(Actor::system(), Permissions::empty());
            let ctx = door::open_blocking(&app2, &t, reader, None).map_err(Refused::Tenant)?;
            crate::policy::read_unchecked(&ctx).map_err(|e| match e {
                crate::policy::PolicyError::Tenant(e) => Refused::Tenant(e),
                other => Refused::Internal(IdentityError::Store(crate::store::StoreError::Io {
                    what: "policy".into(),
                    reason: other.to_string(),
                })),
            })
        })
        .await
        .map_err(|_| {
            Refused::Internal(IdentityError::Store(
                crate::store::StoreError::JobPanicked {
                    what: "policy".into(),
                },
            ))
        })??;
        let p = Arc::new(read);
        if let Ok(mut map) = self.policies.write() {
            if self.remembers(read_at) {
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
                map.insert(tenant.clone(), (p.clone(), now));
            }
        }
        Ok(p)
    }

    /// After a tenant's policy changed.
    pub fn forget_policy(&self, tenant: &crate::ids::TenantId) {
        self.moved();
        if let Ok(mut map) = self.policies.write() {
            map.remove(tenant);
        }
        self.announce();
    }

    /// The idle timeout of sessions of `place`: the installation's, or the tenant's tighter one.
    async fn idle_for(&self, app: &Arc<App>, place: &Place) -> Result<i64, Refused> {
        let Place::Tenant(t) = place else {
            return Ok(self.idle_us);
        };
        let p = self.policy(app, t).await?;
        Ok(p.session_idle_secs
            .and_then(|s| i64::try_from(s).ok())
            .map_or(self.idle_us, |s| {
                self.idle_us.min(s.saturating_mul(1_000_000))
            }))
    }

    async fn resolve(
        &self,
        app: &Arc<App>,
        key: [u8; 32],
        ip: Option<IpAddr>,
        lookup: Lookup,
    ) -> Result<Arc<Principal>, Refused> {
        let now = app.clock().now_us();
        let idle_us = match &lookup {
            Lookup::Session { place, .. } => self.idle_for(app, place).await?,
            Lookup::Token(_) => i64::MAX,
        };
        let mut seen_before = None;
        if let Ok(map) = self.entries.read() {
            if let Some(e) = map.get(&key) {
                let last = e.last_seen_us.load(Ordering::Relaxed);
                let idle_ok = matches!(e.principal.who, Who::Token { .. }) || now - last < idle_us;
                if now >= e.ends_us || !idle_ok {
                    drop(map);
                    self.forget_key(&key);
                    return Err(Refused::Invalid);
                }
                if now - e.checked_us < REVALIDATE_US {
                    e.last_seen_us.fetch_max(now, Ordering::Relaxed);
                    return Ok(e.principal.clone());
                }
                seen_before = Some(last);
            }
        }
        // Not cached, or cached too long ago: the file decides.
        let read_at = self.generation();
        let loaded = load(app, lookup, ip, now, idle_us, seen_before).await;
        match loaded {
            Ok(Some((principal, ends_us))) => {
                let principal = Arc::new(principal);
                self.insert(
                    key,
                    Entry {
                        principal: principal.clone(),
                        checked_us: now,
                        ends_us,
                        last_seen_us: AtomicI64::new(now),
                    },
                    now,
                    read_at,
                );
                Ok(principal)
            }
            Ok(None) => {
                self.forget_key(&key);
                Err(Refused::Invalid)
            }
            Err(e) => {
                self.forget_key(&key);
                Err(e)
            }
        }
    }

    fn insert(&self, key: [u8; 32], entry: Entry, now: i64, read_at: u64) {
        if let Ok(mut map) = self.entries.write() {
            if !self.remembers(read_at) {
                return;
            }
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, e| e.ends_us > now && now - e.checked_us < REVALIDATE_US);
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
            }
            map.insert(key, entry);
        }
    }

    /// Drops what a read found no longer holds. Not a change of anyone's power, so it does
    /// not move the generation (a stream of bad keys must not keep others from being
    /// remembered).
    fn forget_key(&self, key: &[u8; 32]) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(key);
        }
    }

    fn forget_where(&self, f: impl Fn(&Principal) -> bool) {
        self.moved();
        if let Ok(mut map) = self.entries.write() {
            map.retain(|_, e| !f(&e.principal));
        }
        self.announce();
    }

    /// After a session ended.
    pub fn forget_session(&self, session: &SessionId) {
        self.forget_where(|p| matches!(&p.who, Who::User { session: s, .. } if s == session));
    }

    /// After an account lost power (disabled, new role, password reset or changed).
    pub fn forget_user(&self, place: &Place, user: &UserId) {
        self.forget_where(|p| {
            p.place == *place && matches!(&p.who, Who::User { id, .. } if id == user)
        });
    }

    /// After a token was revoked (`None`: all of the place's tokens).
    pub fn forget_tokens(&self, place: &Place, token: Option<&TokenId>) {
        self.forget_where(|p| {
            p.place == *place
                && matches!(&p.who, Who::Token { id, .. } if token.is_none_or(|t| t == id))
        });
    }

    /// After a tenant was suspended or deleted, or a custom role changed.
    pub fn forget_place(&self, place: &Place) {
        self.forget_where(|p| p.place == *place);
    }
}

enum Lookup {
    Session {
        place: Place,
        key: [u8; 32],
        csrf: String,
    },
    Token(Presented),
}

type GrantView = (Arc<Principal>, i64, i64);

/// The cookie a platform account carries after entering a tenant under a grant.
pub const GRANT_COOKIE: &str = "__Host-strongroom-grant";

/// `<tenant id>.<grant id>` from the grant cookie, if present and well formed.
fn grant_cookie(headers: &HeaderMap) -> Option<(crate::ids::TenantId, crate::ids::GrantId)> {
    let v = cookie(headers, GRANT_COOKIE)?;
    let (t, g) = v.split_once('.')?;
    Some((
        crate::ids::TenantId::parse(t).ok()?,
        crate::ids::GrantId::parse(g).ok()?,
    ))
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, sessions::COOKIE)
}

pub(crate) fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    for v in headers.get_all(axum::http::header::COOKIE) {
        let Ok(text) = v.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == wanted {
                    return Some(value.to_string());
                }
            }
        }
    }
    None
}

/// Reads a credential from its realm's file (and records the last use of a revalidated one).
async fn load(
    app: &Arc<App>,
    lookup: Lookup,
    ip: Option<IpAddr>,
    now: i64,
    idle_us: i64,
    seen_before: Option<i64>,
) -> Result<Option<(Principal, i64)>, Refused> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || -> Result<_, Refused> {
        let reader = Caller::new(Actor::system(), Permissions::empty());
        match lookup {
            Lookup::Token(p) => {
                let ctx =
                    door::open_blocking(&app, &p.tenant, reader, ip).map_err(Refused::Tenant)?;
                let dir = app.directory().clone();
                let live = ctx
                    .read_blocking(|c| tokens::load(c, &dir, &p, now))
                    .map_err(Refused::Internal)?;
                let Some(live) = live else { return Ok(None) };
                let stale = live
                    .info
                    .last_used_us
                    .is_none_or(|u| now - u > REVALIDATE_US);
                if stale {
                    let mark = UseMark::TokenUsed {
                        id: live.info.id.to_string(),
                        at_us: now,
                    };
                    if let Err(e) = ctx.mark_used_blocking(mark) {
                        tracing::warn!(error = %e, "cannot record a token's last use");
                    }
                }
                let ends = live.info.expires_us.unwrap_or(i64::MAX);
                Ok(Some((
                    Principal {
                        place: Place::Tenant(p.tenant.clone()),
                        who: Who::Token {
                            id: live.info.id,
                            name: live.info.name,
                        },
                        role: live.info.role,
                        permissions: live.permissions,
                        grant: None,
                    },
                    ends,
                )))
            }
            Lookup::Session { place, key, csrf } => {
                let live = match &place {
                    Place::Platform => {
                        let ctx = door::platform(&app, reader, ip);
                        let live = ctx
                            .read_blocking(|c| sessions::load(c, Realm::Platform, &key, now))
                            .map_err(Refused::Internal)?;
                        mark_seen(&ctx, live.as_ref(), seen_before);
                        live
                    }
                    Place::Tenant(t) => {
                        let ctx =
                            door::open_blocking(&app, t, reader, ip).map_err(Refused::Tenant)?;
                        let live = ctx
                            .read_blocking(|c| sessions::load(c, Realm::Tenant, &key, now))
                            .map_err(Refused::Internal)?;
                        mark_seen(&ctx, live.as_ref(), seen_before);
                        live
                    }
                };
                let Some(live) = live else { return Ok(None) };
                // Idle by the file's record (a restarted server has no memory of use).
                let last = seen_before
                    .unwrap_or(live.session.last_seen_us)
                    .max(live.session.last_seen_us);
                if now - last >= idle_us {
                    return Ok(None);
                }
                Ok(Some((
                    Principal {
                        place,
                        who: Who::User {
                            id: live.account.id.clone(),
                            email: live.account.email.clone(),
                            name: live.account.name.clone(),
                            session: live.session.id.clone(),
                            stage: live.session.stage,
                            csrf,
                        },
                        role: live.account.role.clone(),
                        permissions: live.permissions,
                        grant: None,
                    },
                    live.session.expires_us,
                )))
            }
        }
    })
    .await
    .map_err(|_| {
        Refused::Internal(IdentityError::Store(
            crate::store::StoreError::JobPanicked {
                what: "authentication".into(),
            },
        ))
    })?
}

fn mark_seen<D: Door>(ctx: &D, live: Option<&sessions::Live>, seen: Option<i64>) {
    if let (Some(live), Some(at)) = (live, seen) {
        if at > live.session.last_seen_us {
            let mark = UseMark::SessionSeen {
                id: live.session.id.to_string(),
                at_us: at,
            };
            if let Err(e) = ctx.mark_used_blocking(mark) {
                tracing::warn!(error = %e, "cannot record when a session was last seen");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(place: &Place, id: &TokenId) -> Entry {
        Entry {
            principal: Arc::new(Principal {
                place: place.clone(),
                who: Who::Token {
                    id: id.clone(),
                    name: "t".into(),
                },
                role: "operator".into(),
                permissions: Permissions::empty(),
                grant: None,
            }),
            checked_us: 0,
            ends_us: i64::MAX,
            last_seen_us: AtomicI64::new(0),
        }
    }

    fn held(auth: &Auth, key: &[u8; 32]) -> bool {
        auth.entries.read().unwrap().contains_key(key)
    }

    /// A token read as live just before it was revoked here must not be remembered after
    /// the revocation: it would hold for another [`REVALIDATE_US`].
    #[test]
    fn a_read_taken_before_a_forgetting_is_not_remembered() {
        let auth = Auth::new(&crate::config::IdentityConfig::default());
        let place = Place::Tenant(crate::ids::TenantId::parse(&"a".repeat(32)).unwrap());
        let id = TokenId::parse(&"b".repeat(32)).unwrap();
        let key = [1u8; 32];
        let read_at = auth.generation();
        auth.forget_tokens(&place, Some(&id));
        auth.insert(key, token(&place, &id), 0, read_at);
        assert!(!held(&auth, &key), "a stale finding was remembered");
        // A read taken after the forgetting is remembered, until the next one.
        auth.insert(key, token(&place, &id), 0, auth.generation());
        assert!(held(&auth, &key));
        auth.forget_tokens(&place, Some(&id));
        assert!(!held(&auth, &key));
        // Other forgettings count too.
        let read_at = auth.generation();
        auth.forget_policy(&crate::ids::TenantId::parse(&"c".repeat(32)).unwrap());
        auth.insert(key, token(&place, &id), 0, read_at);
        assert!(!held(&auth, &key));
        // A bad key dropped after a read is not a change: others are still remembered.
        let read_at = auth.generation();
        auth.forget_key(&[9u8; 32]);
        auth.insert(key, token(&place, &id), 0, read_at);
        assert!(held(&auth, &key));
    }
}
