//! The same limits as [`super::Limiter`], shared by every node through one Redis
//! (`rate_limit.redis_url`): each call's scopes are checked and taken in one Lua script
//! (`admit.lua`), so two nodes never both take the last request of a burst.
//!
//! Every exchange with Redis is bounded by `rate_limit.timeout_ms`. When Redis cannot be
//! reached in time (down, hung, refusing), the tenant's `on_shared_failure` decides: closed
//! refuses the call, open admits it under this node's own in-memory limiter. The connection
//! is made on first use and remade after a failure, so the server starts and serves while
//! Redis is down and shares again once it is back.
//!
//! A call in progress is a member of a sorted set per scope, scored by when its lease ends
//! (`rate_limit.lease_secs` after admission). Its permit removes it when dropped, on a task
//! of its own since a drop cannot wait; a node that dies first leaves the lease to run out.

use super::{Held, Limiter, Refusal, Scoped, DAY_US};
use crate::config::{RateLimitConfig, RedisUrl};
use crate::policy::limits::OnSharedFailure;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Keys live under this prefix, so a Redis shared with other software stays readable.
const PREFIX: &str = "strongroom:limits:";
/// A day's count outlives its day by a day, for nodes whose clocks disagree a little.
const DAY_TTL_SECS: u64 = 2 * 86_400;
/// At most one warning about Redis failing per this many seconds on a node.
const WARN_EVERY: Duration = Duration::from_secs(30);

static ADMIT: OnceLock<redis::Script> = OnceLock::new();

fn admit_script() -> &'static redis::Script {
    ADMIT.get_or_init(|| redis::Script::new(include_str!("admit.lua")))
}

/// Why Redis could not answer, for the log (never with the URL's password).
#[derive(Debug, thiserror::Error)]
enum SharedFault {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("the script answered {0:?}")]
    Reply(Vec<i64>),
}

/// What refused a call, shared or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A limit is reached.
    Limited(Refusal),
    /// The shared limits could not be checked and the tenant's policy is closed.
    Unavailable,
}

pub struct SharedLimiter {
    client: redis::Client,
    /// Made on first use, inside the runtime (the manager spawns tasks); it reconnects by
    /// itself after a failure.
    conn: OnceLock<ConnectionManager>,
    timeout: Duration,
    lease_us: i64,
    lease_secs: u64,
    /// Where calls go when Redis fails and the tenant's policy is open.
    fallback: Arc<Limiter>,
    shown: String,
    /// When the last warning was logged, and how many were held back since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("redis", &self.shown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A call admitted through Redis: while it lives, it is in progress in each scope.
pub struct SharedPermit {
    conn: ConnectionManager,
    timeout: Duration,
    flights: Vec<String>,
    id: String,
}

impl std::fmt::Debug for SharedPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPermit")
            .field("flights", &self.flights)
            .finish_non_exhaustive()
    }
}

impl Drop for SharedPermit {
    fn drop(&mut self) {
        if self.flights.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // No runtime left: the leases run out instead.
        };
        let mut conn = self.conn.clone();
        let flights = std::mem::take(&mut self.flights);
        let id = std::mem::take(&mut self.id);
        let timeout = self.timeout;
        rt.spawn(async move {
            let mut pipe = redis::pipe();
            for f in &flights {
                pipe.zrem(f, &id).ignore();
            }
            match tokio::time::timeout(timeout, pipe.exec_async(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "a call's end was not recorded in Redis; its lease will run out")
                }
                Err(_) => {
                    tracing::debug!("a call's end was not recorded in Redis in time; its lease will run out")
                }
            }
        });
    }
}

fn flag<T: Into<f64>>(v: Option<T>) -> f64 {
    v.map_or(-1.0, Into::into)
}

impl SharedLimiter {
    /// # Errors
    /// A URL the Redis client does not take (the config check refuses those first).
    pub fn new(url: &RedisUrl, config: &RateLimitConfig) -> Result<Self, String> {
        use redis::IntoConnectionInfo;
        let not_taken = |_| {
            format!(
                "rate_limit.redis_url ({}) is not a URL the Redis client takes",
                url.redacted()
            )
        };
        let mut info = url.expose().into_connection_info().map_err(not_taken)?;
        if let Some(path) = &config.redis_password_file {
            let password = crate::config::rate_limit::read_password(path)
                .map_err(|m| format!("rate_limit.redis_password_file: {m}"))?;
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(not_taken)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        Ok(Self {
            client,
            conn: OnceLock::new(),
            timeout,
            lease_us: (config.lease_secs as i64).saturating_mul(1_000_000),
            lease_secs: config.lease_secs,
            fallback: Limiter::new(),
            shown: url.redacted(),
            warned: Mutex::new((None, 0)),
        })
    }

    fn conn(&self) -> Result<ConnectionManager, SharedFault> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        // One attempt per connection, no retries inside the client: a failed call is
        // answered at once by the tenant's policy, and the next call connects afresh.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(0);
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        Ok(self.conn.get_or_init(|| made).clone())
    }

    /// Logs that Redis failed and with what `effect`, at most once per [`WARN_EVERY`].
    fn warn(&self, fault: &SharedFault, effect: &str) {
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            w.1 += 1;
            return;
        }
        let held_back = std::mem::take(&mut w.1);
        w.0 = Some(Instant::now());
        drop(w);
        tracing::warn!(
            redis = %self.shown,
            error = %fault,
            warnings_held_back = held_back,
            "the shared limits in Redis cannot be checked; {effect}"
        );
    }

    /// Admits a call in every scope, through Redis; when Redis fails, as `on_failure` says.
    ///
    /// # Errors
    /// A limit reached, or Redis failing under a closed policy.
    pub async fn admit(
        &self,
        now_us: i64,
        scopes: &[Scoped],
        on_failure: OnSharedFailure,
    ) -> Result<Held, Denied> {
        let live: Vec<&Scoped> = scopes.iter().filter(|(_, l, _)| !l.is_empty()).collect();
        if live.is_empty() {
            return self
                .fallback
                .admit(now_us, scopes)
                .map(Held::Local)
                .map_err(Denied::Limited);
        }
        let conn = match self.conn() {
            Ok(c) => c,
            Err(fault) => return self.failed(&fault, now_us, scopes, on_failure),
        };
        let day = now_us.div_euclid(DAY_US);
        let mut permit = SharedPermit {
            conn,
            timeout: self.timeout,
            flights: Vec::with_capacity(live.len()),
            id: super::permit_id(),
        };
        let script = admit_script();
        let mut call = script.prepare_invoke();
        call.arg(now_us)
            .arg(now_us.saturating_add(self.lease_us))
            .arg(&permit.id)
            .arg(self.lease_secs)
            .arg(live.len());
        for (key, limits, _) in &live {
            let flight = format!("{PREFIX}{key}:flight");
            call.key(format!("{PREFIX}{key}:bucket"))
                .key(&flight)
                .key(format!("{PREFIX}{key}:day:{day}"))
                .arg(flag(limits.rps))
                .arg(limits.bucket())
                .arg(flag(limits.concurrent))
                .arg(limits.tokens_per_day.map_or(-1, |t| t as i64));
            permit.flights.push(flight);
        }
        let mut conn = permit.conn.clone();
        let reply = tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut conn))
            .await
            .map_err(|_| SharedFault::Timeout(self.timeout.as_millis() as u64))
            .and_then(|r| r.map_err(SharedFault::from));
        let reply = match reply {
            Ok(r) => r,
            Err(fault) => {
                // The script may have run before the wait ran out: the permit, dropped
                // here, gives back whatever it took.
                drop(permit);
                return self.failed(&fault, now_us, scopes, on_failure);
            }
        };
        let refusal = match reply.as_slice() {
            [0, ..] => return Ok(Held::Shared(permit)),
            &[kind, i, retry] => {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| live.get(i))
                    .and_then(|(_, _, scope)| match kind {
                        1 => Some(Refusal::Tokens {
                            scope,
                            retry_after: ((day + 1) * DAY_US - now_us)
                                .unsigned_abs()
                                .div_ceil(1_000_000),
                        }),
                        2 => Some(Refusal::Concurrency { scope }),
                        3 => Some(Refusal::Rate {
                            scope,
                            retry_after: retry.max(0).unsigned_abs(),
                        }),
                        _ => None,
                    })
            }
            _ => None,
        };
        // A refusal took nothing, so there is nothing for the permit to give back.
        permit.flights.clear();
        match refusal {
            Some(r) => Err(Denied::Limited(r)),
            None => self.failed(&SharedFault::Reply(reply), now_us, scopes, on_failure),
        }
    }

    fn failed(
        &self,
        fault: &SharedFault,
        now_us: i64,
        scopes: &[Scoped],
        on_failure: OnSharedFailure,
    ) -> Result<Held, Denied> {
        self.warn(
            fault,
            match on_failure {
                OnSharedFailure::Closed => "a call of a tenant with on_shared_failure=closed is refused",
                OnSharedFailure::Open => {
                    "a call of a tenant with on_shared_failure=open goes on under this node's own limits"
                }
            },
        );
        match on_failure {
            OnSharedFailure::Closed => Err(Denied::Unavailable),
            OnSharedFailure::Open => self
                .fallback
                .admit(now_us, scopes)
                .map(Held::Local)
                .map_err(Denied::Limited),
        }
    }

    /// Counts `tokens` against each scope's daily budget in Redis; if Redis fails, against
    /// this node's fallback, so an open tenant's own node still sees them.
    pub async fn spend(&self, now_us: i64, scopes: &[Scoped], tokens: u64) {
        let day = now_us.div_euclid(DAY_US);
        let mut pipe = redis::pipe();
        let mut any = false;
        for (key, _, _) in scopes.iter().filter(|(_, l, _)| l.tokens_per_day.is_some()) {
            let k = format!("{PREFIX}{key}:day:{day}");
            pipe.incr(&k, tokens)
                .ignore()
                .expire(&k, DAY_TTL_SECS as i64)
                .ignore();
            any = true;
        }
        if !any {
            return;
        }
        let result = match self.conn() {
            Ok(mut conn) => tokio::time::timeout(self.timeout, pipe.atomic().exec_async(&mut conn))
                .await
                .map_err(|_| SharedFault::Timeout(self.timeout.as_millis() as u64))
                .and_then(|r| r.map_err(SharedFault::from)),
            Err(e) => Err(e),
        };
        if let Err(fault) = result {
            self.warn(
                &fault,
                "a call's model tokens are counted on this node only",
            );
            self.fallback.spend(now_us, scopes, tokens);
        }
    }
}
