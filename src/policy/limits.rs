//! A tenant's limits on calls to models, in its policy table under the `limits` key: for
//! the tenant as a whole and for each of its tokens (or signed-in people), requests per
//! second with a burst, concurrent calls, and tokens per day. Unset means unlimited. Where
//! the limits are shared through Redis (`rate_limit.redis_url`), `on_shared_failure` says
//! what happens to the tenant's calls while Redis cannot be reached.

use super::PolicyError;
use crate::door::{Audit, Door};
use crate::identity::Permission;
use crate::store::StoreError;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// The limits of one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per second, refilled continuously.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// Requests that may come at once after a quiet spell (default: the rate, at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Calls in progress at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
    /// Model tokens (prompt and answer) per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
}

impl Limits {
    /// The bucket size: the burst, or the rate rounded up, at least 1.
    pub fn bucket(&self) -> f64 {
        match (self.burst, self.rps) {
            (Some(b), _) => f64::from(b),
            (None, Some(r)) => r.ceil().max(1.0),
            (None, None) => 1.0,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// What a call meets while the shared limits (Redis) cannot be checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSharedFailure {
    /// Refused (503, retry in a second): no call goes past limits nobody could check.
    #[default]
    Closed,
    /// Let through under this node's own in-memory limits, which see only its own calls.
    Open,
}

impl OnSharedFailure {
    pub fn is_closed(&self) -> bool {
        *self == OnSharedFailure::Closed
    }
}

/// A tenant's limits: on the tenant as a whole, and on each caller within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    #[serde(default)]
    pub tenant: Limits,
    #[serde(default)]
    pub token: Limits,
    /// Written only when open: a node not yet upgraded reads a policy without it.
    #[serde(default, skip_serializing_if = "OnSharedFailure::is_closed")]
    pub on_shared_failure: OnSharedFailure,
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        key: "limits",
        message: message.into(),
    }
}

impl LimitPolicy {
    /// Applies `SCOPE.LIMIT=VALUE` (`tenant.rps=5`, `token.tokens_per_day=100000`,
    /// `tenant.burst=off`) or `on_shared_failure=closed|open`.
    ///
    /// # Errors
    /// An unknown scope or limit, or a value out of its range.
    pub fn set(&mut self, assignment: &str) -> Result<(), PolicyError> {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(invalid(format!(
                "{:?} is not SCOPE.LIMIT=VALUE (for example token.rps=5) or on_shared_failure=closed|open",
                assignment.chars().take(60).collect::<String>()
            )));
        };
        if name.trim() == "on_shared_failure" {
            self.on_shared_failure = match value.trim().to_ascii_lowercase().as_str() {
                "closed" => OnSharedFailure::Closed,
                "open" => OnSharedFailure::Open,
                _ => {
                    return Err(invalid(
                        "on_shared_failure must be closed (refuse calls while the shared limits cannot be checked) or open (go on under each node's own limits)",
                    ))
                }
            };
            return Ok(());
        }
        let (scope, limit) = name.trim().split_once('.').unwrap_or((name.trim(), ""));
        let target = match scope {
            "tenant" => &mut self.tenant,
            "token" => &mut self.token,
            _ => {
                return Err(invalid(format!(
                "unknown scope {scope:?}; use tenant or token (or on_shared_failure=closed|open)"
            )))
            }
        };
        let value = value.trim();
        let off = value.eq_ignore_ascii_case("off");
        let whole = |max: u64| -> Result<u64, PolicyError> {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| (1..=max).contains(v))
                .ok_or_else(|| {
                    invalid(format!(
                        "{name} must be a whole number from 1 to {max}, or off"
                    ))
                })
        };
        match limit {
            "rps" => {
                target.rps = if off {
                    None
                } else {
                    let r = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && (0.001..=100_000.0).contains(r))
                        .ok_or_else(|| {
                            invalid(format!(
                                "{name} must be a number from 0.001 to 100000, or off"
                            ))
                        })?;
                    Some(r)
                };
            }
            "burst" => {
                target.burst = if off {
                    None
                } else {
                    Some(whole(100_000)? as u32)
                }
            }
            "concurrent" => {
                target.concurrent = if off {
                    None
                } else {
                    Some(whole(10_000)? as u32)
                };
            }
            "tokens_per_day" => {
                target.tokens_per_day = if off {
                    None
                } else {
                    Some(whole(1_000_000_000_000)?)
                };
            }
            _ => {
                return Err(invalid(format!(
                    "unknown limit {limit:?}; use rps, burst, concurrent or tokens_per_day"
                )))
            }
        }
        Ok(())
    }

    /// Applies every assignment, in order.
    ///
    /// # Errors
    /// The first assignment that cannot be applied.
    pub fn set_all(&mut self, assignments: &[String]) -> Result<(), PolicyError> {
        assignments.iter().try_for_each(|a| self.set(a))
    }

    /// The limits stored in a tenant file. Limits that cannot be read are logged and read as
    /// one request at a time, one per second: a damaged row must not lift every limit.
    ///
    /// # Errors
    /// A storage fault.
    pub fn read(c: &Connection) -> rusqlite::Result<Self> {
        let v = super::stored(c, "limits")?;
        Ok(match v {
            None => LimitPolicy::default(),
            Some(v) => serde_json::from_str(&v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable limits policy; one call per second per tenant");
                LimitPolicy {
                    tenant: Limits {
                        rps: Some(1.0),
                        burst: Some(1),
                        concurrent: Some(1),
                        tokens_per_day: None,
                    },
                    token: Limits::default(),
                    on_shared_failure: OnSharedFailure::Closed,
                }
            }),
        })
    }
}

/// The tenant's limits, for a caller who may read settings.
///
/// # Errors
/// Permission or a storage fault.
pub fn read_blocking<D: Door>(door: &D) -> Result<LimitPolicy, PolicyError> {
    door.caller().require(Permission::SettingsRead)?;
    door.read_blocking(|c| {
        LimitPolicy::read(c)
            .map_err(|e| PolicyError::Store(StoreError::from_sqlite("policy", 0, &e)))
    })
}

/// Replaces the tenant's limits.
///
/// # Errors
/// Permission (`settings.manage`) or a storage fault.
pub fn update_blocking<D: Door>(door: &D, new: &LimitPolicy) -> Result<LimitPolicy, PolicyError> {
    door.caller().require(Permission::SettingsManage)?;
    if door.tenant_id().is_none() {
        return Err(invalid("policies belong to a tenant"));
    }
    let new = *new;
    // A burst is the size of a rate's bucket: without the rate it would limit nothing.
    for (scope, l) in [("tenant", &new.tenant), ("token", &new.token)] {
        if l.burst.is_some() && l.rps.is_none() {
            return Err(invalid(format!(
                "{scope}.burst is set without {scope}.rps, and limits nothing alone; set {scope}.rps too, or {scope}.burst=off"
            )));
        }
    }
    let text = serde_json::to_string(&new).map_err(|e| invalid(e.to_string()))?;
    crate::policy::change(door, move |tx| {
        tx.conn()
            .execute(
                "INSERT INTO policy (key, value, changed_us) VALUES ('limits', ?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = ?1, changed_us = ?2",
                params![text, tx.now_us()],
            )
            .map_err(|e| PolicyError::Store(tx.err(&e)))?;
        // Named apart from the policy's own `token` scope: the journal blanks the value of
        // any key that names a secret, and `token` does.
        let audit = Audit::new("policy.limits.update", "policy").params(serde_json::json!({
            "tenant": new.tenant,
            "per_caller": new.token,
            "on_shared_failure": new.on_shared_failure,
        }));
        Ok((new, audit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name_and_broken_ones_say_why() {
        let mut p = LimitPolicy::default();
        p.set("tenant.rps=2.5").unwrap();
        p.set("token.burst=3").unwrap();
        p.set("token.tokens_per_day=1000").unwrap();
        p.set("tenant.concurrent=4").unwrap();
        assert_eq!(p.tenant.rps, Some(2.5));
        assert_eq!(p.tenant.bucket(), 3.0);
        assert_eq!(p.token.bucket(), 3.0);
        assert_eq!(p.token.tokens_per_day, Some(1000));
        p.set("tenant.rps=off").unwrap();
        assert_eq!(p.tenant.rps, None);
        assert_eq!(
            p.on_shared_failure,
            OnSharedFailure::Closed,
            "closed unless set"
        );
        p.set(" on_shared_failure = Open ").unwrap();
        assert_eq!(p.on_shared_failure, OnSharedFailure::Open);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""on_shared_failure":"open""#), "{json}");
        p.set("on_shared_failure=closed").unwrap();
        assert_eq!(p.on_shared_failure, OnSharedFailure::Closed);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("on_shared_failure"), "{json}");
        for (bad, says) in [
            ("tenant.rps", "SCOPE.LIMIT=VALUE"),
            ("team.rps=1", "unknown scope"),
            ("token.speed=1", "unknown limit"),
            ("token.rps=0", "0.001"),
            ("token.rps=NaN", "0.001"),
            ("token.burst=-1", "whole number"),
            ("token.concurrent=0", "whole number"),
            ("on_shared_failure=maybe", "closed (refuse"),
            ("on_shared_failure=", "or open"),
            ("on_shared_failure", "SCOPE.LIMIT=VALUE"),
            ("on_shared_failure.x=open", "unknown scope"),
            ("shared.on_failure=open", "on_shared_failure=closed|open"),
        ] {
            let e = p.set(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn stored_limits_round_trip_and_a_damaged_row_still_limits() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::SCHEMA.steps[0]).unwrap();
        assert_eq!(LimitPolicy::read(&c).unwrap(), LimitPolicy::default());
        c.execute(
            "INSERT INTO policy VALUES ('limits', '{\"tenant\": {\"rps\": 5.0}}', 0)",
            [],
        )
        .unwrap();
        let read = LimitPolicy::read(&c).unwrap();
        assert_eq!(read.tenant.rps, Some(5.0));
        assert_eq!(read.on_shared_failure, OnSharedFailure::Closed);
        c.execute(
            "UPDATE policy SET value = '{\"on_shared_failure\": \"open\"}' WHERE key = 'limits'",
            [],
        )
        .unwrap();
        assert_eq!(
            LimitPolicy::read(&c).unwrap().on_shared_failure,
            OnSharedFailure::Open
        );
        c.execute(
            "UPDATE policy SET value = 'not json' WHERE key = 'limits'",
            [],
        )
        .unwrap();
        let damaged = LimitPolicy::read(&c).unwrap();
        assert_eq!(damaged.tenant.concurrent, Some(1));
        assert_eq!(damaged.on_shared_failure, OnSharedFailure::Closed);
    }
}
