//! Calls the gateway refused (a limit reached, or limits that could not be checked), counted
//! for the journal. Each refused call is counted in an audit entry, but a flood of them must
//! not become a flood of entries (each a durable write): a caller's first refusal for a
//! reason is written at once, and the ones after it within [`WINDOW_US`] are counted and
//! written together when that window ends.

use super::gateway::GatewayError;
use crate::audit::Outcome;
use crate::door::{Audit, TenantCtx};
use crate::identity::Caller;
use crate::tenants::TenantId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How long a caller's refusals for one reason are counted before they are written.
pub const WINDOW_US: i64 = 5_000_000;

/// Callers (with a reason) kept at most; past it, records with nothing left to write go.
const MOST: usize = 100_000;

/// A caller of a tenant, and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    tenant: String,
    actor: String,
    reason: &'static str,
    /// The scope whose limit refused, for a limit.
    scope: Option<&'static str>,
}

impl Key {
    /// The caller of `ctx`, refused for `e`; `None` when `e` is no refusal.
    pub fn of(ctx: &TenantCtx, e: &GatewayError) -> Option<Self> {
        let (reason, scope) = match e {
            GatewayError::Limited(r) => (r.reason(), Some(r.scope())),
            GatewayError::LimitsUnavailable => ("limits_unavailable", None),
            _ => return None,
        };
        let actor = ctx.actor();
        Some(Self {
            tenant: ctx.tenant().as_str().to_string(),
            actor: format!("{}:{}", actor.kind.as_str(), actor.id),
            reason,
            scope,
        })
    }
}

/// What to do with a refusal just counted.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Write an entry now, counting this many refusals (this one and any not yet written).
    Now(u64),
    /// Write what is counted by then at this time (see [`Refusals::take`]).
    At(i64),
    /// Counted; an entry already due will carry it.
    Counted,
}

#[derive(Debug)]
struct Seen {
    /// When the last entry was written.
    written_us: i64,
    /// Refusals counted since.
    pending: u64,
    /// Whether a later write is already due.
    due: bool,
    /// Whom a later entry is written for.
    who: Option<Who>,
}

/// Whom a count of refusals is written for: the tenant, the caller, where it called from.
#[derive(Debug, Clone)]
pub struct Who {
    pub tenant: TenantId,
    pub caller: Caller,
    pub ip: Option<IpAddr>,
}

impl Who {
    pub fn of(ctx: &TenantCtx) -> Self {
        Self {
            tenant: ctx.tenant().clone(),
            caller: ctx.caller().clone(),
            ip: ctx.source_ip(),
        }
    }
}

/// The refusals of every caller of this process, by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    seen: Mutex<HashMap<Key, Seen>>,
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a refusal of `key` at `now_us`.
    pub fn note(&self, key: Key, now_us: i64) -> Due {
        let mut seen = self.lock();
        if seen.len() >= MOST && !seen.contains_key(&key) {
            seen.retain(|_, s| s.pending > 0 || now_us - s.written_us < WINDOW_US);
            if seen.len() >= MOST {
                // Too many callers refused at once to count: each refusal is written.
                return Due::Now(1);
            }
        }
        match seen.get_mut(&key) {
            None => {
                seen.insert(
                    key,
                    Seen {
                        written_us: now_us,
                        pending: 0,
                        due: false,
                        who: None,
                    },
                );
                Due::Now(1)
            }
            Some(s) if now_us - s.written_us >= WINDOW_US && !s.due => {
                let n = s.pending + 1;
                s.written_us = now_us;
                s.pending = 0;
                Due::Now(n)
            }
            Some(s) => {
                s.pending += 1;
                if s.due {
                    Due::Counted
                } else {
                    s.due = true;
                    Due::At(s.written_us + WINDOW_US)
                }
            }
        }
    }

    /// The refusals of `key` counted and not yet written, taken at `now_us` to be written.
    pub fn take(&self, key: &Key, now_us: i64) -> u64 {
        let mut seen = self.lock();
        let Some(s) = seen.get_mut(key) else {
            return 0;
        };
        s.due = false;
        let n = std::mem::take(&mut s.pending);
        if n > 0 {
            s.written_us = now_us;
        }
        n
    }

    /// Records whom the refusals of `key` still to be written are for.
    pub fn remember(&self, key: &Key, who: Who) {
        if let Some(s) = self.lock().get_mut(key) {
            s.who = Some(who);
        }
    }

    /// Every count not yet written, taken (at shutdown: nothing is left for later).
    pub fn drain(&self) -> Vec<(Key, u64, Who)> {
        self.lock()
            .iter_mut()
            .filter_map(|(k, s)| {
                let who = s.who.clone()?;
                let n = std::mem::take(&mut s.pending);
                s.due = false;
                (n > 0).then(|| (k.clone(), n, who))
            })
            .collect()
    }

    /// Puts back `n` refusals of `key` whose entry could not be written, for the next one.
    pub fn restore(&self, key: &Key, n: u64) {
        if let Some(s) = self.lock().get_mut(key) {
            s.pending += n;
        }
    }
}

/// Writes the entry of `n` refusals of `ctx`'s caller (the caller of `key`).
///
/// # Errors
/// A storage fault: the entry could not be written.
pub async fn journal(ctx: &TenantCtx, key: &Key, n: u64) -> Result<(), GatewayError> {
    let audit = Audit::new("gateway.refused", key.reason)
        .params(serde_json::json!({
            "reason": key.reason,
            "scope": key.scope,
            "refused": n,
            "window_s": WINDOW_US / 1_000_000,
        }))
        .outcome(Outcome::Denied);
    ctx.change(move |_| Ok::<_, GatewayError>(((), audit.clone())))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reason: &'static str) -> Key {
        Key {
            tenant: "t".into(),
            actor: "token:1".into(),
            reason,
            scope: Some("token"),
        }
    }

    #[test]
    fn a_flood_of_refusals_is_a_few_entries_that_count_them_all() {
        let r = Refusals::default();
        let (rate, t0) = (key("rate"), 1_000_000_000);
        assert_eq!(r.note(rate.clone(), t0), Due::Now(1));
        // The next ones in the window are counted; the first of them sets the write.
        assert_eq!(r.note(rate.clone(), t0 + 1), Due::At(t0 + WINDOW_US));
        for i in 2..100 {
            assert_eq!(r.note(rate.clone(), t0 + i), Due::Counted);
        }
        // Another reason, or another caller, is counted apart.
        assert_eq!(r.note(key("tokens"), t0 + 5), Due::Now(1));
        // At the window's end the 99 counted are taken once.
        assert_eq!(r.take(&rate, t0 + WINDOW_US), 99);
        assert_eq!(r.take(&rate, t0 + WINDOW_US), 0);
        // A refusal within the next window waits for it; one after it is written at once.
        assert_eq!(
            r.note(rate.clone(), t0 + WINDOW_US + 10),
            Due::At(t0 + 2 * WINDOW_US)
        );
        assert_eq!(r.take(&rate, t0 + 2 * WINDOW_US), 1);
        assert_eq!(r.note(rate.clone(), t0 + 3 * WINDOW_US), Due::Now(1));
        // A count whose entry failed is carried by the next.
        assert_eq!(
            r.note(rate.clone(), t0 + 3 * WINDOW_US + 1),
            Due::At(t0 + 4 * WINDOW_US)
        );
        let n = r.take(&rate, t0 + 4 * WINDOW_US);
        r.restore(&rate, n);
        assert_eq!(r.note(rate.clone(), t0 + 5 * WINDOW_US), Due::Now(2));
        // At shutdown, what is counted and not yet written is taken whole, once; a count
        // with no one to write it for (never due later) is not.
        assert_eq!(
            r.note(rate.clone(), t0 + 5 * WINDOW_US + 1),
            Due::At(t0 + 6 * WINDOW_US)
        );
        assert_eq!(r.note(rate.clone(), t0 + 5 * WINDOW_US + 2), Due::Counted);
        assert!(r.drain().is_empty(), "no one remembered");
        r.remember(&rate, who());
        let drained = r.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!((&drained[0].0, drained[0].1), (&rate, 2));
        assert!(r.drain().is_empty());
        assert_eq!(r.take(&rate, t0 + 6 * WINDOW_US), 0);
    }

    fn who() -> Who {
        Who {
            tenant: TenantId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            caller: Caller::operator(crate::identity::Realm::Tenant),
            ip: None,
        }
    }
}
