//! A tenant's redaction rules, in its policy table under `redact.*` keys: whether values are
//! also replaced before calls to loopback endpoints (they always are before upstream ones),
//! and the tenant's own patterns, each checked and size-bounded when it is set.

use super::PolicyError;
use crate::door::{Audit, Door};
use crate::identity::Permission;
use crate::redact::{Detector, Rule, RuleError};
use crate::store::StoreError;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// One of the tenant's own patterns, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub name: String,
    pub pattern: String,
}

/// A tenant's redaction rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RedactionPolicy {
    /// Replace values before calls to every endpoint, loopback ones included.
    pub all_endpoints: bool,
    pub rules: Vec<RuleSpec>,
    /// Set when the stored rules cannot be read: no call that needs redaction may go out
    /// until they are set again (a damaged rule must not silently stop redacting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

fn invalid(e: &RuleError) -> PolicyError {
    PolicyError::Invalid {
        key: "redact.rules",
        message: e.to_string(),
    }
}

/// `NAME=PATTERN`, as the CLI takes a rule.
///
/// # Errors
/// No `=`, or a name or pattern the detector refuses.
pub fn parse_rule(text: &str) -> Result<RuleSpec, PolicyError> {
    let Some((name, pattern)) = text.split_once('=') else {
        return Err(PolicyError::Invalid {
            key: "redact.rules",
            message: format!(
                "{:?} is not NAME=PATTERN (for example EMPLOYEE_ID=EMP-[0-9]{{6}})",
                text.chars().take(60).collect::<String>()
            ),
        });
    };
    let spec = RuleSpec {
        name: name.trim().to_string(),
        pattern: pattern.to_string(),
    };
    Rule::new(&spec.name, &spec.pattern).map_err(|e| invalid(&e))?;
    Ok(spec)
}

impl RedactionPolicy {
    /// The detector for these rules.
    ///
    /// # Errors
    /// The stored rules are damaged or no longer compile.
    pub fn detector(&self) -> Result<Detector, PolicyError> {
        if let Some(why) = &self.damaged {
            return Err(PolicyError::Invalid {
                key: "redact.rules",
                message: format!("the stored rules cannot be read ({why}); set them again"),
            });
        }
        let rules = self
            .rules
            .iter()
            .map(|r| Rule::new(&r.name, &r.pattern))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        Detector::new(rules).map_err(|e| invalid(&e))
    }

    /// [`Self::detector`], built once per set of rules in this process and shared: a call
    /// that needs redaction would otherwise compile every one of the tenant's patterns
    /// again (up to 32 of them, each up to 256 KiB compiled).
    ///
    /// # Errors
    /// As [`Self::detector`].
    pub fn shared_detector(&self) -> Result<Arc<Detector>, PolicyError> {
        type Built = HashMap<Vec<(String, String)>, Arc<Detector>>;
        /// Sets of rules kept; past this the cache starts again (a set is rebuilt on use).
        const KEPT: usize = 256;
        static BUILT: LazyLock<Mutex<Built>> = LazyLock::new(Mutex::default);
        if self.damaged.is_some() {
            return self.detector().map(Arc::new);
        }
        let key: Vec<(String, String)> = self
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.pattern.clone()))
            .collect();
        if let Some(d) = BUILT.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(d);
        }
        let d = Arc::new(self.detector()?);
        if let Ok(mut m) = BUILT.lock() {
            if m.len() >= KEPT {
                m.clear();
            }
            m.insert(key, d.clone());
        }
        Ok(d)
    }

    /// The rules stored in a tenant file.
    ///
    /// # Errors
    /// A storage fault.
    pub fn read(c: &Connection) -> rusqlite::Result<Self> {
        let get = |k: &str| super::stored(c, k);
        let mut p = RedactionPolicy::default();
        if let Some(v) = get("redact.all_endpoints")? {
            // Fail closed: a value that cannot be read redacts more, not less.
            p.all_endpoints = v != "false";
        }
        if let Some(v) = get("redact.rules")? {
            match serde_json::from_str::<Vec<RuleSpec>>(&v) {
                Ok(rules) => p.rules = rules,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable redact.rules policy; calls that need redaction are refused");
                    p.damaged = Some("not a list of rules".into());
                }
            }
        }
        Ok(p)
    }
}

/// The tenant's redaction rules, for a caller who may read settings.
///
/// # Errors
/// Permission or a storage fault.
pub fn read_blocking<D: Door>(door: &D) -> Result<RedactionPolicy, PolicyError> {
    door.caller().require(Permission::SettingsRead)?;
    read_unchecked(door)
}

/// The tenant's redaction rules, for anyone the server acts for (a call to a model).
///
/// # Errors
/// A storage fault.
pub fn read_unchecked<D: Door>(door: &D) -> Result<RedactionPolicy, PolicyError> {
    if door.tenant_id().is_none() {
        return Ok(RedactionPolicy::default());
    }
    door.read_blocking(|c| {
        RedactionPolicy::read(c)
            .map_err(|e| PolicyError::Store(StoreError::from_sqlite("policy", 0, &e)))
    })
}

/// Replaces the tenant's redaction rules; every rule is compiled first, so a stored rule
/// always compiles.
///
/// # Errors
/// Permission (`settings.manage`), a rule the detector refuses, or a storage fault.
pub fn update_blocking<D: Door>(
    door: &D,
    new: &RedactionPolicy,
) -> Result<RedactionPolicy, PolicyError> {
    door.caller().require(Permission::SettingsManage)?;
    if door.tenant_id().is_none() {
        return Err(PolicyError::Invalid {
            key: "policy",
            message: "policies belong to a tenant".into(),
        });
    }
    let new = RedactionPolicy {
        damaged: None,
        ..new.clone()
    };
    new.detector()?;
    let rules = serde_json::to_string(&new.rules).map_err(|e| PolicyError::Invalid {
        key: "redact.rules",
        message: e.to_string(),
    })?;
    crate::policy::change(door, move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        for (k, v) in [
            ("redact.all_endpoints", new.all_endpoints.to_string()),
            ("redact.rules", rules.clone()),
        ] {
            c.execute(
                "INSERT INTO policy (key, value, changed_us) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(key) DO UPDATE SET value = ?2, changed_us = ?3",
                params![k, v, now],
            )
            .map_err(|e| PolicyError::Store(tx.err(&e)))?;
        }
        // The audit entry names the rules, never a sample of what they match.
        let audit = Audit::new("policy.redaction.update", "policy")
            .params(serde_json::to_value(&new).unwrap_or_default());
        Ok((new.clone(), audit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_broken_ones_say_why() {
        let r = parse_rule("EMPLOYEE_ID=EMP-[0-9]{6}").unwrap();
        assert_eq!(
            (r.name.as_str(), r.pattern.as_str()),
            ("EMPLOYEE_ID", "EMP-[0-9]{6}")
        );
        let e = parse_rule("EMPLOYEE_ID").unwrap_err().to_string();
        assert!(e.contains("NAME=PATTERN"), "{e}");
        let e = parse_rule("X=(").unwrap_err().to_string();
        assert!(
            e.contains("rule X") && e.contains("regular expression"),
            "{e}"
        );
        let e = parse_rule("IBAN=x").unwrap_err().to_string();
        assert!(e.contains("built-in"), "{e}");
    }

    #[test]
    fn damaged_rules_refuse_to_build_a_detector() {
        let p = RedactionPolicy {
            damaged: Some("x".into()),
            ..Default::default()
        };
        assert!(p.detector().is_err());
        assert!(p.shared_detector().is_err());
        assert!(RedactionPolicy::default().detector().is_ok());
    }

    #[test]
    fn a_set_of_rules_is_compiled_once_and_a_changed_set_again() {
        let rule = |pattern: &str| RuleSpec {
            name: "EMPLOYEE_ID".into(),
            pattern: pattern.into(),
        };
        let p = RedactionPolicy {
            rules: vec![rule("EMP-[0-9]{6}")],
            ..Default::default()
        };
        let a = p.shared_detector().unwrap();
        let again = p.clone().shared_detector().unwrap();
        assert!(
            Arc::ptr_eq(&a, &again),
            "the same rules were compiled twice"
        );
        let changed = RedactionPolicy {
            rules: vec![rule("STAFF-[0-9]{6}")],
            ..Default::default()
        };
        let b = changed.shared_detector().unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        // Each finds what its own pattern says.
        let text = "badge STAFF-123456 issued";
        let kinds = |d: &Detector| {
            d.find(text)
                .iter()
                .map(|f| d.label_name(f.label).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&b), ["EMPLOYEE_ID"]);
        assert!(kinds(&a).is_empty(), "{:?}", kinds(&a));
    }
}
