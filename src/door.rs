//! The door: the one way domain code reaches a tenant.
//!
//! A [`TenantCtx`] is obtained through [`open`] (or [`open_blocking`]), which checks the
//! tenant's status: a suspended tenant is refused with [`TenantError::Suspended`], a deleted
//! or unknown one with [`TenantError::NotFound`]. The context carries the tenant id, its
//! store, the actor and the source address, and nothing else: no root keyring, no system key,
//! no other tenant. What a domain function may touch is visible in its signature.
//!
//! - Writes: [`TenantCtx::change`] takes a closure that makes the change and returns its
//!   output together with its [`Audit`] entry; the entry is appended in the same transaction,
//!   stamped with the context's actor and source address. There is no way through the door to
//!   commit a change without an entry, and the writer refuses any job that changed rows but
//!   appended nothing (see [`crate::store::writer`]).
//! - Reads: [`TenantCtx::read`] runs on a pooled reader connection opened with
//!   `PRAGMA query_only = ON`, so a read cannot write around the writer and the journal. The
//!   pool is bounded; a read that waits too long for a connection gets
//!   [`StoreError::ReadersBusy`].
//! - Both come in an async form for handlers (never blocking a runtime worker) and a
//!   `_blocking` form for the CLI. A write that finds its store closed under it (a concurrent
//!   key rotation or restore) reopens the tenant and runs again: a closed store means the job
//!   never ran, so running it again cannot apply it twice.

use crate::app::App;
use crate::audit::{Actor, NewEntry, Outcome};
use crate::identity::{Caller, Realm};
use crate::ids::TenantId;
use crate::store::{Store, StoreError, WriteTx};
use crate::tenants::{self, TenantError};
use rusqlite::Connection;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How often a write is tried against a store that keeps closing under it.
const ATTEMPTS: usize = 4;

/// What a change records: the action, what it acted on, and its parameters. The actor, the
/// source address, the time and the duration come from the context.
#[derive(Debug, Clone)]
pub struct Audit {
    action: String,
    target: String,
    params: serde_json::Value,
    outcome: Outcome,
}

impl Audit {
    /// `action` is dotted lower-case words (`user.create`); `target` names what it acted on.
    pub fn new(action: &str, target: &str) -> Self {
        Self {
            action: action.to_string(),
            target: target.to_string(),
            params: serde_json::Value::Object(Default::default()),
            outcome: Outcome::Success,
        }
    }

    /// Parameters worth keeping; secrets under key-like names are redacted on append.
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Records a refusal or a failure that still changed something (a lockout counter).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    fn into_entry(
        self,
        actor: Actor,
        source_ip: Option<IpAddr>,
        start: std::time::Instant,
    ) -> NewEntry {
        let mut e = NewEntry::new(actor, &self.action, &self.target)
            .params(self.params)
            .outcome(self.outcome)
            .since(start);
        e.source_ip = source_ip;
        e
    }
}

type Reopen = Arc<dyn Fn() -> Result<Arc<Store>, TenantError> + Send + Sync>;

/// One tenant, for one caller, for the length of one request or command.
pub struct TenantCtx {
    id: TenantId,
    store: Mutex<Arc<Store>>,
    caller: Caller,
    source_ip: Option<IpAddr>,
    /// Opens the tenant again after its store was closed under this context. Opaque on
    /// purpose: it reaches the registry and the keyring, which the context does not expose.
    reopen: Reopen,
}

impl std::fmt::Debug for TenantCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCtx")
            .field("id", &self.id)
            .field("actor", &self.caller.actor)
            .field("source_ip", &self.source_ip)
            .finish_non_exhaustive()
    }
}

/// The tenant's store, if its status allows use. The one status check of the door.
fn open_checked(app: &App, id: &TenantId) -> Result<Arc<Store>, TenantError> {
    let mark = app
        .standing()
        .mark(app.clock().now_us(), app.identity_epoch());
    tenants::usable(app, id)?;
    let store = tenants::open_store(app, id)?;
    app.standing().found_usable(id, mark);
    Ok(store)
}

/// The tenant's store without touching a file, when it is open here and its status was
/// read a moment ago (see [`tenants::Standing`]); `None` sends the caller to [`open_checked`].
fn open_known(app: &App, id: &TenantId) -> Option<Arc<Store>> {
    if !app
        .standing()
        .usable(id, app.clock().now_us(), app.identity_epoch())
    {
        return None;
    }
    app.tenant_stores().get_open(id)
}

fn context(
    app: &Arc<App>,
    id: &TenantId,
    store: Arc<Store>,
    caller: Caller,
    source_ip: Option<IpAddr>,
) -> TenantCtx {
    let reopen: Reopen = {
        let (app, id) = (app.clone(), id.clone());
        Arc::new(move || open_checked(&app, &id))
    };
    TenantCtx {
        id: id.clone(),
        store: Mutex::new(store),
        caller,
        source_ip,
        reopen,
    }
}

/// Opens a tenant for `caller`, from a blocking context (the CLI).
///
/// # Errors
/// [`TenantError::NotFound`] for an unknown or deleted tenant, [`TenantError::Suspended`] for
/// a suspended one, or a key or storage fault.
pub fn open_blocking(
    app: &Arc<App>,
    id: &TenantId,
    caller: Caller,
    source_ip: Option<IpAddr>,
) -> Result<TenantCtx, TenantError> {
    let store = match open_known(app, id) {
        Some(store) => store,
        None => open_checked(app, id)?,
    };
    Ok(context(app, id, store, caller, source_ip))
}

/// [`open_blocking`] for async code: the open (which may read the registry, unwrap a key,
/// settle an interrupted rotation or wait for one) runs on a blocking thread, unless the
/// tenant is open here and its status was read a moment ago.
///
/// # Errors
/// As [`open_blocking`].
pub async fn open(
    app: &Arc<App>,
    id: &TenantId,
    caller: Caller,
    source_ip: Option<IpAddr>,
) -> Result<TenantCtx, TenantError> {
    if let Some(store) = open_known(app, id) {
        return Ok(context(app, id, store, caller, source_ip));
    }
    let (app, id) = (app.clone(), id.clone());
    tokio::task::spawn_blocking(move || open_blocking(&app, &id, caller, source_ip))
        .await
        .map_err(|_| {
            TenantError::Store(StoreError::JobPanicked {
                what: "tenant open".into(),
            })
        })?
}

/// The job error, or what kept the job from running.
enum Attempt<E> {
    Store(StoreError),
    Job(E),
}

impl<E> From<StoreError> for Attempt<E> {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The job as the writer runs it: the domain closure, then its entry, stamped with the
/// caller and the source address.
#[allow(clippy::type_complexity)]
fn job<T, E, F>(
    f: &Arc<F>,
    caller: &Caller,
    ip: Option<IpAddr>,
    start: std::time::Instant,
) -> impl FnOnce(&mut WriteTx<'_>) -> Result<(T, NewEntry), Attempt<E>> + Send + 'static
where
    F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let (f, actor) = (f.clone(), caller.actor.clone());
    move |tx: &mut WriteTx<'_>| {
        let (out, audit) = f(tx).map_err(Attempt::Job)?;
        Ok((out, audit.into_entry(actor, ip, start)))
    }
}

impl TenantCtx {
    pub fn tenant(&self) -> &TenantId {
        &self.id
    }

    pub fn actor(&self) -> &Actor {
        &self.caller.actor
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    fn current(&self) -> Result<Arc<Store>, StoreError> {
        self.store
            .lock()
            .map(|s| s.clone())
            .map_err(|_| StoreError::Closed {
                what: crate::store::tenants::tenant_label(&self.id),
            })
    }

    fn replace(&self, fresh: Arc<Store>) {
        if let Ok(mut s) = self.store.lock() {
            *s = fresh;
        }
    }

    /// Makes a change and records it, from a blocking context (the CLI). `f` returns its
    /// output together with the [`Audit`] entry, appended in the same transaction; if `f`
    /// fails, or the entry cannot be written, nothing of it is committed.
    ///
    /// # Errors
    /// `f`'s error, or a storage fault (the change did not happen).
    pub fn change_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        let (f, start) = (Arc::new(f), std::time::Instant::now());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let store = self.current()?;
            match store
                .writer()
                .change(job(&f, &self.caller, self.source_ip, start))
                .wait()
            {
                Ok(out) => return Ok(out),
                Err(Attempt::Job(e)) => return Err(e),
                Err(Attempt::Store(StoreError::Closed { .. })) if attempt < ATTEMPTS => {
                    self.replace((self.reopen)()?);
                }
                Err(Attempt::Store(e)) => return Err(e.into()),
            }
        }
    }

    /// [`TenantCtx::change_blocking`] for handlers: awaits the commit without blocking a
    /// runtime worker; reopening after a rotation runs on a blocking thread.
    ///
    /// # Errors
    /// As [`TenantCtx::change_blocking`].
    pub async fn change<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        let (f, start) = (Arc::new(f), std::time::Instant::now());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let store = self.current()?;
            match store
                .writer()
                .change_async(job(&f, &self.caller, self.source_ip, start))
                .await
            {
                Ok(out) => return Ok(out),
                Err(Attempt::Job(e)) => return Err(e),
                Err(Attempt::Store(StoreError::Closed { .. })) if attempt < ATTEMPTS => {
                    let reopen = self.reopen.clone();
                    let fresh = tokio::task::spawn_blocking(move || reopen())
                        .await
                        .map_err(|_| StoreError::JobPanicked {
                            what: crate::store::tenants::tenant_label(&self.id),
                        })??;
                    self.replace(fresh);
                }
                Err(Attempt::Store(e)) => return Err(e.into()),
            }
        }
    }

    /// The store to read from: the current one, or a fresh one if it was closed under this
    /// context (its old key may be gone).
    fn readable(&self) -> Result<Arc<Store>, TenantError> {
        let store = self.current()?;
        if store.writer().is_running() {
            return Ok(store);
        }
        let fresh = (self.reopen)()?;
        self.replace(fresh.clone());
        Ok(fresh)
    }

    /// Reads on a query-only connection from the tenant's bounded pool, from a blocking
    /// context. A write attempted in `f` fails.
    ///
    /// # Errors
    /// `f`'s error, [`StoreError::ReadersBusy`] when no connection came free in time, or a
    /// storage fault.
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<StoreError> + From<TenantError>,
    {
        self.readable()?.read(f)
    }

    /// [`TenantCtx::read_blocking`] for handlers: runs on a blocking thread.
    ///
    /// # Errors
    /// As [`TenantCtx::read_blocking`].
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        let store = self.current()?;
        let reopen = self.reopen.clone();
        let label = crate::store::tenants::tenant_label(&self.id);
        let (out, fresh) = tokio::task::spawn_blocking(move || {
            let (store, fresh) = if store.writer().is_running() {
                (store, None)
            } else {
                match reopen() {
                    Ok(s) => (s.clone(), Some(s)),
                    Err(e) => return (Err(E::from(e)), None),
                }
            };
            (store.read(f), fresh)
        })
        .await
        .map_err(|_| StoreError::JobPanicked { what: label })?;
        if let Some(fresh) = fresh {
            self.replace(fresh);
        }
        out
    }
}

/// A mark of use that is not a change worth an entry: when a session was last seen, when a
/// token was last used. The only unaudited write the door offers, with fixed statements.
#[derive(Debug, Clone)]
pub enum UseMark {
    SessionSeen { id: String, at_us: i64 },
    TokenUsed { id: String, at_us: i64 },
}

fn apply_mark(tx: &mut WriteTx<'_>, mark: &UseMark) -> Result<(), StoreError> {
    let (sql, id, at) = match mark {
        UseMark::SessionSeen { id, at_us } => (
            "UPDATE sessions SET last_seen_us = max(last_seen_us, ?2) WHERE id = ?1",
            id,
            at_us,
        ),
        UseMark::TokenUsed { id, at_us } => (
            "UPDATE tokens SET last_used_us = max(coalesce(last_used_us, 0), ?2) WHERE id = ?1",
            id,
            at_us,
        ),
    };
    tx.conn()
        .execute(sql, rusqlite::params![id, at])
        .map(|_| ())
        .map_err(|e| tx.err(&e))
}

/// What identity code (and any code that serves both realms) needs from a context: who is
/// calling, from where, audited writes and query-only reads. Implemented by [`TenantCtx`]
/// (a tenant's file) and [`PlatformCtx`] (`system.db`, for platform accounts).
pub trait Door: Send + Sync {
    fn realm(&self) -> Realm;

    /// The tenant, for a tenant context.
    fn tenant_id(&self) -> Option<&TenantId>;

    fn caller(&self) -> &Caller;

    fn source_ip(&self) -> Option<IpAddr>;

    /// As [`TenantCtx::change_blocking`].
    ///
    /// # Errors
    /// `f`'s error, or a storage fault (the change did not happen).
    fn change_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static;

    /// As [`TenantCtx::change`].
    fn change<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + Send
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static;

    /// As [`TenantCtx::read_blocking`].
    ///
    /// # Errors
    /// `f`'s error, or a storage fault.
    fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<StoreError> + From<TenantError>;

    /// As [`TenantCtx::read`].
    fn read<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + Send
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static;

    /// Records a [`UseMark`], from a blocking context.
    ///
    /// # Errors
    /// A storage fault.
    fn mark_used_blocking(&self, mark: UseMark) -> Result<(), StoreError>;
}

impl Door for TenantCtx {
    fn realm(&self) -> Realm {
        Realm::Tenant
    }

    fn tenant_id(&self) -> Option<&TenantId> {
        Some(&self.id)
    }

    fn caller(&self) -> &Caller {
        &self.caller
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    fn change_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        TenantCtx::change_blocking(self, f)
    }

    fn change<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + Send
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        TenantCtx::change(self, f)
    }

    fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<StoreError> + From<TenantError>,
    {
        TenantCtx::read_blocking(self, f)
    }

    fn read<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + Send
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        TenantCtx::read(self, f)
    }

    fn mark_used_blocking(&self, mark: UseMark) -> Result<(), StoreError> {
        self.current()?
            .writer()
            .bookkeeping(move |tx| apply_mark(tx, &mark))
            .wait()
    }
}

/// The platform realm (`system.db`): platform accounts and their sessions, for one caller.
/// It carries the system store and nothing else: no keyring, no tenant.
pub struct PlatformCtx {
    store: Arc<Store>,
    caller: Caller,
    source_ip: Option<IpAddr>,
}

impl std::fmt::Debug for PlatformCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCtx")
            .field("actor", &self.caller.actor)
            .field("source_ip", &self.source_ip)
            .finish_non_exhaustive()
    }
}

/// The platform realm for `caller`.
pub fn platform(app: &App, caller: Caller, source_ip: Option<IpAddr>) -> PlatformCtx {
    PlatformCtx {
        store: app.system_shared(),
        caller,
        source_ip,
    }
}

impl PlatformCtx {
    fn finish<T, E>(r: Result<T, Attempt<E>>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        r.map_err(|e| match e {
            Attempt::Job(e) => e,
            Attempt::Store(e) => e.into(),
        })
    }
}

impl Door for PlatformCtx {
    fn realm(&self) -> Realm {
        Realm::Platform
    }

    fn tenant_id(&self) -> Option<&TenantId> {
        None
    }

    fn caller(&self) -> &Caller {
        &self.caller
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    fn change_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        let f = Arc::new(f);
        let start = std::time::Instant::now();
        Self::finish(
            self.store
                .writer()
                .change(job(&f, &self.caller, self.source_ip, start))
                .wait(),
        )
    }

    fn change<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + Send
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        let f = Arc::new(f);
        let start = std::time::Instant::now();
        let pending =
            self.store
                .writer()
                .change_async(job(&f, &self.caller, self.source_ip, start));
        async move { Self::finish(pending.await) }
    }

    fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<StoreError> + From<TenantError>,
    {
        self.store.read(f)
    }

    fn read<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + Send
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        let store = self.store.clone();
        async move {
            tokio::task::spawn_blocking(move || store.read(f))
                .await
                .map_err(|_| {
                    E::from(StoreError::JobPanicked {
                        what: "system.db".into(),
                    })
                })?
        }
    }

    fn mark_used_blocking(&self, mark: UseMark) -> Result<(), StoreError> {
        self.store
            .writer()
            .bookkeeping(move |tx| apply_mark(tx, &mark))
            .wait()
    }
}

/// Either realm's context, for code that serves both (identity, the audit log) and is
/// reached by callers of either.
#[derive(Debug)]
pub enum RealmCtx {
    Platform(PlatformCtx),
    Tenant(TenantCtx),
}

/// Opens the realm `tenant` names (`None`: the platform) for `caller`, from a blocking
/// context.
///
/// # Errors
/// As [`open_blocking`] for a tenant.
pub fn open_realm_blocking(
    app: &Arc<App>,
    tenant: Option<&TenantId>,
    caller: Caller,
    source_ip: Option<IpAddr>,
) -> Result<RealmCtx, TenantError> {
    Ok(match tenant {
        None => RealmCtx::Platform(platform(app, caller, source_ip)),
        Some(t) => RealmCtx::Tenant(open_blocking(app, t, caller, source_ip)?),
    })
}

macro_rules! either {
    ($s:expr, |$c:ident| $body:expr) => {
        match $s {
            RealmCtx::Platform($c) => $body,
            RealmCtx::Tenant($c) => $body,
        }
    };
}

impl Door for RealmCtx {
    fn realm(&self) -> Realm {
        either!(self, |c| c.realm())
    }

    fn tenant_id(&self) -> Option<&TenantId> {
        either!(self, |c| c.tenant_id())
    }

    fn caller(&self) -> &Caller {
        either!(self, |c| Door::caller(c))
    }

    fn source_ip(&self) -> Option<IpAddr> {
        either!(self, |c| Door::source_ip(c))
    }

    fn change_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        either!(self, |c| Door::change_blocking(c, f))
    }

    async fn change<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut WriteTx<'_>) -> Result<(T, Audit), E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        match self {
            RealmCtx::Platform(c) => Door::change(c, f).await,
            RealmCtx::Tenant(c) => Door::change(c, f).await,
        }
    }

    fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<StoreError> + From<TenantError>,
    {
        either!(self, |c| Door::read_blocking(c, f))
    }

    async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<TenantError> + Send + 'static,
    {
        match self {
            RealmCtx::Platform(c) => Door::read(c, f).await,
            RealmCtx::Tenant(c) => Door::read(c, f).await,
        }
    }

    fn mark_used_blocking(&self, mark: UseMark) -> Result<(), StoreError> {
        either!(self, |c| c.mark_used_blocking(mark))
    }
}
