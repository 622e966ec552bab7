//! Limits on calls to models, kept in memory on this node: a token bucket for requests per
//! second with a burst, a count of calls in progress, and the model tokens used per UTC day,
//! each for the tenant as a whole and for each caller within it. Time comes from the
//! caller, so tests move it instead of waiting for it.
//!
//! [`CallLimiter`] is what the gateway holds: this limiter, or [`shared::SharedLimiter`],
//! the same limits kept in Redis for every node when `rate_limit.redis_url` is set.

pub mod shared;

use crate::config::RateLimitConfig;
use crate::policy::limits::{Limits, OnSharedFailure};
pub use shared::Denied;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

const DAY_US: i64 = 86_400_000_000;

/// Why a call was refused, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Rate {
        scope: &'static str,
        retry_after: u64,
    },
    Concurrency {
        scope: &'static str,
    },
    Tokens {
        scope: &'static str,
        retry_after: u64,
    },
}

impl Refusal {
    /// The scope whose limit refused: `tenant` or `token`.
    pub fn scope(&self) -> &'static str {
        match self {
            Refusal::Rate { scope, .. }
            | Refusal::Concurrency { scope }
            | Refusal::Tokens { scope, .. } => scope,
        }
    }

    /// The reason as metrics and logs name it.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate",
            Refusal::Concurrency { .. } => "concurrency",
            Refusal::Tokens { .. } => "tokens",
        }
    }

    /// Whole seconds until a call may succeed, at least 1.
    pub fn retry_after(&self) -> u64 {
        match self {
            Refusal::Rate { retry_after, .. } | Refusal::Tokens { retry_after, .. } => {
                (*retry_after).max(1)
            }
            Refusal::Concurrency { .. } => 1,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Rate { scope, .. } => write!(
                f,
                "too many requests: the {scope}'s limit of requests per second is reached; retry in {} s",
                self.retry_after()
            ),
            Refusal::Concurrency { scope } => write!(
                f,
                "too many requests: the {scope}'s limit of concurrent calls is reached; retry when one ends"
            ),
            Refusal::Tokens { scope, .. } => write!(
                f,
                "the {scope}'s limit of model tokens per day is used up; it resets at midnight UTC, in {} s",
                self.retry_after()
            ),
        }
    }
}

/// One scope's state.
#[derive(Debug, Default)]
struct Scope {
    tokens: f64,
    at_us: i64,
    filled: bool,
    in_flight: u32,
    day: i64,
    used: u64,
}

impl Scope {
    fn refill(&mut self, limits: &Limits, now_us: i64) {
        let cap = limits.bucket();
        if !self.filled {
            self.tokens = cap;
            self.filled = true;
        } else if let Some(rate) = limits.rps {
            let elapsed = (now_us - self.at_us).max(0) as f64 / 1e6;
            self.tokens = (self.tokens + elapsed * rate).min(cap);
        }
        self.tokens = self.tokens.min(cap);
        self.at_us = now_us;
        let day = now_us.div_euclid(DAY_US);
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
    }
}

/// One scope of a call: its key (`tenant:ID`, `caller:ID:KIND:ID`), its limits, its name.
pub type Scoped = (String, Limits, &'static str);

#[derive(Debug, Default)]
pub struct Limiter {
    scopes: Mutex<HashMap<String, Scope>>,
}

/// A call admitted: while it lives, it counts as in progress in each of its scopes.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    keys: Vec<String>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut map = self.limiter.lock();
        for k in &self.keys {
            if let Some(s) = map.get_mut(k) {
                s.in_flight = s.in_flight.saturating_sub(1);
            }
        }
    }
}

impl Limiter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Scope>> {
        // The map holds counters only; one left half-updated by a panic is still usable.
        self.scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a call in every scope, or refuses it in the first scope that is full; a
    /// refusal takes nothing from any scope.
    ///
    /// # Errors
    /// The refusal, with when to try again.
    pub fn admit(self: &Arc<Self>, now_us: i64, scopes: &[Scoped]) -> Result<Permit, Refusal> {
        let mut map = self.lock();
        for (key, limits, scope) in scopes.iter().filter(|(_, l, _)| !l.is_empty()) {
            let s = map.entry(key.clone()).or_default();
            s.refill(limits, now_us);
            if limits.tokens_per_day.is_some_and(|max| s.used >= max) {
                let next_day_us = (s.day + 1) * DAY_US;
                return Err(Refusal::Tokens {
                    scope,
                    retry_after: ((next_day_us - now_us) as u64).div_ceil(1_000_000),
                });
            }
            if limits.concurrent.is_some_and(|max| s.in_flight >= max) {
                return Err(Refusal::Concurrency { scope });
            }
            if let Some(rate) = limits.rps {
                if s.tokens < 1.0 {
                    return Err(Refusal::Rate {
                        scope,
                        retry_after: ((1.0 - s.tokens) / rate).ceil() as u64,
                    });
                }
            }
        }
        let mut keys = Vec::new();
        for (key, limits, _) in scopes.iter().filter(|(_, l, _)| !l.is_empty()) {
            if let Some(s) = map.get_mut(key) {
                if limits.rps.is_some() {
                    s.tokens -= 1.0;
                }
                s.in_flight += 1;
                keys.push(key.clone());
            }
        }
        Ok(Permit {
            limiter: self.clone(),
            keys,
        })
    }

    /// Counts `tokens` model tokens against each scope's daily budget.
    pub fn spend(&self, now_us: i64, scopes: &[Scoped], tokens: u64) {
        let mut map = self.lock();
        for (key, limits, _) in scopes.iter().filter(|(_, l, _)| l.tokens_per_day.is_some()) {
            let s = map.entry(key.clone()).or_default();
            s.refill(limits, now_us);
            s.used = s.used.saturating_add(tokens);
        }
    }
}

/// The gateway's limiter: this node's memory, or Redis shared by every node.
#[derive(Debug, Clone)]
pub enum CallLimiter {
    Local(Arc<Limiter>),
    Shared(Arc<shared::SharedLimiter>),
}

/// A call admitted by a [`CallLimiter`]; it is in progress until dropped.
#[derive(Debug)]
pub enum Held {
    /// By this node's limiter (also a shared limiter's fallback while Redis fails).
    Local(Permit),
    Shared(shared::SharedPermit),
}

impl CallLimiter {
    /// In memory, or through Redis when `rate_limit.redis_url` is set. Nothing is
    /// connected here: the server starts whether Redis is up or not.
    ///
    /// # Errors
    /// A Redis URL the client does not take.
    pub fn new(config: &RateLimitConfig) -> Result<Self, String> {
        Ok(match &config.redis_url {
            None => CallLimiter::Local(Limiter::new()),
            Some(url) => CallLimiter::Shared(Arc::new(shared::SharedLimiter::new(url, config)?)),
        })
    }

    /// Admits a call in every scope or refuses it; a refusal takes nothing from any scope.
    /// `on_failure` is the tenant's choice for when shared limits cannot be checked.
    ///
    /// # Errors
    /// A limit reached, or the shared limits unavailable under a closed policy.
    pub async fn admit(
        &self,
        now_us: i64,
        scopes: &[Scoped],
        on_failure: OnSharedFailure,
    ) -> Result<Held, Denied> {
        match self {
            CallLimiter::Local(l) => l
                .admit(now_us, scopes)
                .map(Held::Local)
                .map_err(Denied::Limited),
            CallLimiter::Shared(s) => s.admit(now_us, scopes, on_failure).await,
        }
    }

    /// Counts `tokens` model tokens against each scope's daily budget.
    pub async fn spend(&self, now_us: i64, scopes: &[Scoped], tokens: u64) {
        match self {
            CallLimiter::Local(l) => l.spend(now_us, scopes, tokens),
            CallLimiter::Shared(s) => s.spend(now_us, scopes, tokens).await,
        }
    }
}

/// A fresh random id for a call in progress in Redis: two nodes must never pick the same.
fn permit_id() -> String {
    let mut b = [0u8; 16];
    // The system's generator does not fail on Linux; were it to, the clock's nanoseconds
    // and a counter still tell this node's calls apart.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[8..].copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(limits: Limits) -> Vec<Scoped> {
        vec![("tenant:t".into(), limits, "tenant")]
    }

    #[test]
    fn the_bucket_refuses_past_its_burst_and_refills_with_time() {
        let l = Limiter::new();
        let s = scope(Limits {
            rps: Some(2.0),
            burst: Some(3),
            ..Limits::default()
        });
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(l.admit(0, &s).unwrap());
        }
        let e = l.admit(0, &s).unwrap_err();
        assert_eq!(
            e,
            Refusal::Rate {
                scope: "tenant",
                retry_after: 1
            }
        );
        // Half a second at two per second is one more call, not two.
        assert!(l.admit(500_000, &s).is_ok());
        assert!(l.admit(500_000, &s).is_err());
        // Long quiet: back to the burst, no more.
        for _ in 0..3 {
            assert!(l.admit(60_000_000, &s).is_ok());
        }
        assert!(l.admit(60_000_000, &s).is_err());
    }

    #[test]
    fn calls_in_progress_are_counted_until_their_permit_drops() {
        let l = Limiter::new();
        let s = scope(Limits {
            concurrent: Some(2),
            ..Limits::default()
        });
        let a = l.admit(0, &s).unwrap();
        let _b = l.admit(0, &s).unwrap();
        assert_eq!(
            l.admit(0, &s).unwrap_err(),
            Refusal::Concurrency { scope: "tenant" }
        );
        drop(a);
        assert!(l.admit(0, &s).is_ok());
    }

    #[test]
    fn a_days_tokens_run_out_until_midnight_utc() {
        let l = Limiter::new();
        let s = scope(Limits {
            tokens_per_day: Some(100),
            ..Limits::default()
        });
        let noon = 20_000 * DAY_US + DAY_US / 2;
        assert!(l.admit(noon, &s).is_ok());
        l.spend(noon, &s, 150);
        let e = l.admit(noon, &s).unwrap_err();
        assert_eq!(
            e,
            Refusal::Tokens {
                scope: "tenant",
                retry_after: 43_200
            }
        );
        assert!(
            l.admit(noon + DAY_US / 2, &s).is_ok(),
            "a new day, a new budget"
        );
    }

    #[test]
    fn a_refusal_in_one_scope_takes_nothing_from_another() {
        let l = Limiter::new();
        let tenant = Limits {
            rps: Some(1.0),
            burst: Some(5),
            ..Limits::default()
        };
        let caller = Limits {
            rps: Some(1.0),
            burst: Some(1),
            ..Limits::default()
        };
        let both = vec![
            ("tenant:t".to_string(), tenant, "tenant"),
            ("caller:a".to_string(), caller, "token"),
        ];
        assert!(l.admit(0, &both).is_ok());
        assert!(matches!(
            l.admit(0, &both),
            Err(Refusal::Rate { scope: "token", .. })
        ));
        // Another caller of the same tenant still has the tenant's remaining four.
        let other = vec![
            ("tenant:t".to_string(), tenant, "tenant"),
            ("caller:b".to_string(), Limits::default(), "token"),
        ];
        for _ in 0..4 {
            assert!(l.admit(0, &other).is_ok());
        }
        assert!(l.admit(0, &other).is_err());
    }
}
