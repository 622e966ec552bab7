//! A tenant's limits on calls to models, in its policy table under the `limits` key: for
//! the tenant as a whole and for each of its tokens (or signed-in people), requests per
//! second with a burst, concurrent calls, and tokens per day. Unset means unlimited.

use super::PolicyError;
use crate::door::{Audit, Door};
use crate::identity::Permission;
use crate::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
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

/// A tenant's limits: on the tenant as a whole, and on each caller within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    #[serde(default)]
    pub tenant: Limits,
    #[serde(default)]
    pub token: Limits,
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        key: "limits",
        message: message.into(),
    }
}

impl LimitPolicy {
    /// Applies `SCOPE.LIMIT=VALUE` (`tenant.rps=5`, `token.tokens_per_day=100000`,
    /// `tenant.burst=off`).
    ///
    /// # Errors
    /// An unknown scope or limit, or a value out of its range.
    pub fn set(&mut self, assignment: &str) -> Result<(), PolicyError> {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(invalid(format!(
                "{:?} is not SCOPE.LIMIT=VALUE (for example token.rps=5)",
                assignment.chars().take(60).collect::<String>()
            )));
        };
        let (scope, limit) = name.trim().split_once('.').unwrap_or((name.trim(), ""));
        let target = match scope {
            "tenant" => &mut self.tenant,
            "token" => &mut self.token,
            _ => {
                return Err(invalid(format!(
                    "unknown scope {scope:?}; use tenant or token"
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
        let v: Option<String> = c
            .query_row("SELECT value FROM policy WHERE key = 'limits'", [], |r| {
                r.get(0)
            })
            .optional()?;
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
    let text = serde_json::to_string(&new).map_err(|e| invalid(e.to_string()))?;
    door.change_blocking(move |tx| {
        tx.conn()
            .execute(
                "INSERT INTO policy (key, value, changed_us) VALUES ('limits', ?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = ?1, changed_us = ?2",
                params![text, tx.now_us()],
            )
            .map_err(|e| PolicyError::Store(tx.err(&e)))?;
        let audit = Audit::new("policy.limits.update", "policy")
            .params(serde_json::to_value(new).unwrap_or_default());
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
        for (bad, says) in [
            ("tenant.rps", "SCOPE.LIMIT=VALUE"),
            ("team.rps=1", "unknown scope"),
            ("token.speed=1", "unknown limit"),
            ("token.rps=0", "0.001"),
            ("token.rps=NaN", "0.001"),
            ("token.burst=-1", "whole number"),
            ("token.concurrent=0", "whole number"),
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
        assert_eq!(LimitPolicy::read(&c).unwrap().tenant.rps, Some(5.0));
        c.execute(
            "UPDATE policy SET value = 'not json' WHERE key = 'limits'",
            [],
        )
        .unwrap();
        let damaged = LimitPolicy::read(&c).unwrap();
        assert_eq!(damaged.tenant.concurrent, Some(1));
    }
}
