//! A tenant's rules for the assistant, in the tenant's policy table under `ai.*` keys: the
//! model its assistant uses, the model endpoints it may use at all, the hosts its data may
//! be sent to, whether an answer must cite its documents, and how much of a prompt and an
//! answer the audit entry keeps.

use super::PolicyError;
use crate::door::{Audit, Door};
use crate::identity::Permission;
use crate::store::StoreError;
use rusqlite::{params, Connection};
use serde::Serialize;

/// Most endpoints or hosts a list may hold.
pub const MAX_LIST: usize = 64;

/// How much of a prompt and an answer an AI turn's audit entry keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// A bounded preview and the SHA-256 of the whole.
    Preview,
    /// The whole text.
    Full,
}

impl Retention {
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::Preview => "preview",
            Retention::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Retention::Preview, Retention::Full]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A tenant's assistant rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiPolicy {
    /// `extractive`, or the name of a configured endpoint listed in `endpoints`.
    pub model: String,
    /// Configured endpoints this tenant may use.
    pub endpoints: Vec<String>,
    /// Hosts an upstream (non-loopback) endpoint may be reached at for this tenant.
    pub egress_allow: Vec<String>,
    /// An answer that cites none of the tenant's documents is refused.
    pub grounded_only: bool,
    pub retention: Retention,
    /// The gateway adds passages of the tenant's documents to calls for models other than
    /// `extractive`. Off: the gateway passes the caller's messages and nothing else.
    pub gateway_context: bool,
    /// Fields of a gateway call that the gateway does not read (`temperature`, `top_p`,
    /// `metadata`, ...) go to an endpoint of the caller's API. Off: they are left out and
    /// the call's audit entry names them.
    pub gateway_passthrough: bool,
}

impl Default for AiPolicy {
    fn default() -> Self {
        Self {
            model: crate::ai::extractive::MODEL.into(),
            endpoints: Vec::new(),
            egress_allow: Vec::new(),
            grounded_only: true,
            retention: Retention::Preview,
            gateway_context: false,
            gateway_passthrough: false,
        }
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        key,
        message: message.into(),
    }
}

/// A list of names: letters, digits, `.`, `-` and `_`, separated by commas or white space.
///
/// # Errors
/// The first entry that is not a name, or more than [`MAX_LIST`] entries.
pub fn parse_names(key: &'static str, text: &str) -> Result<Vec<String>, PolicyError> {
    let mut out: Vec<String> = Vec::new();
    for item in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let ok = item.len() <= 253
            && item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !ok {
            return Err(invalid(
                key,
                format!(
                    "{:?} is not a name or address (letters, digits, '.', '-', '_', ':')",
                    item.chars().take(60).collect::<String>()
                ),
            ));
        }
        let item = item.to_ascii_lowercase();
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.len() > MAX_LIST {
        return Err(invalid(key, format!("at most {MAX_LIST} entries")));
    }
    Ok(out)
}

impl AiPolicy {
    /// The rules stored in a tenant file. A value that cannot be read is logged and read
    /// as the strict choice: answers must be grounded, prompts kept as previews, no upstream.
    ///
    /// # Errors
    /// A storage fault.
    pub fn read(c: &Connection) -> rusqlite::Result<Self> {
        let get = |k: &str| super::stored(c, k);
        let mut p = AiPolicy::default();
        if let Some(v) = get("ai.model")? {
            p.model = v;
        }
        if let Some(v) = get("ai.endpoints")? {
            p.endpoints = parse_names("ai.endpoints", &v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable ai.endpoints policy; no endpoint allowed");
                Vec::new()
            });
        }
        if let Some(v) = get("ai.egress_allow")? {
            p.egress_allow = parse_names("ai.egress_allow", &v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable ai.egress_allow policy; no host allowed");
                Vec::new()
            });
        }
        if let Some(v) = get("ai.grounded_only")? {
            p.grounded_only = v != "false";
        }
        if let Some(v) = get("ai.gateway_context")? {
            p.gateway_context = v == "true";
        }
        if let Some(v) = get("ai.gateway_passthrough")? {
            p.gateway_passthrough = v == "true";
        }
        if let Some(v) = get("ai.retention")? {
            p.retention = Retention::parse(&v).unwrap_or(Retention::Preview);
        }
        Ok(p)
    }
}

/// The tenant's assistant rules, for a caller who may read settings.
///
/// # Errors
/// Permission or a storage fault.
pub fn read_blocking<D: Door>(door: &D) -> Result<AiPolicy, PolicyError> {
    door.caller().require(Permission::SettingsRead)?;
    read_unchecked(door)
}

/// The tenant's assistant rules, for anyone the server acts for (an AI turn).
///
/// # Errors
/// A storage fault.
pub fn read_unchecked<D: Door>(door: &D) -> Result<AiPolicy, PolicyError> {
    if door.tenant_id().is_none() {
        return Ok(AiPolicy::default());
    }
    door.read_blocking(|c| {
        AiPolicy::read(c).map_err(|e| PolicyError::Store(StoreError::from_sqlite("policy", 0, &e)))
    })
}

/// Replaces the tenant's assistant rules. `known` names the endpoints configured on this
/// installation: the model must be `extractive` or one of the allowed endpoints, and every
/// allowed endpoint must be configured.
///
/// # Errors
/// Permission (`settings.manage`), invalid values, or a storage fault.
pub fn update_blocking<D: Door>(
    door: &D,
    new: &AiPolicy,
    known: &[String],
) -> Result<AiPolicy, PolicyError> {
    door.caller().require(Permission::SettingsManage)?;
    if door.tenant_id().is_none() {
        return Err(invalid("policy", "policies belong to a tenant"));
    }
    if let Some(unknown) = new.endpoints.iter().find(|e| !known.contains(e)) {
        return Err(invalid(
            "ai.endpoints",
            format!(
                "{unknown:?} is not a configured endpoint; configured: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    if new.model != crate::ai::extractive::MODEL && !new.endpoints.contains(&new.model) {
        return Err(invalid(
            "ai.model",
            format!(
                "{:?} is neither extractive nor an endpoint this tenant may use",
                new.model.chars().take(60).collect::<String>()
            ),
        ));
    }
    if new.endpoints.len() > MAX_LIST || new.egress_allow.len() > MAX_LIST {
        return Err(invalid(
            "ai.endpoints",
            format!("at most {MAX_LIST} entries"),
        ));
    }
    let new = new.clone();
    crate::policy::change(door, move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        for (k, v) in [
            ("ai.model", new.model.clone()),
            ("ai.endpoints", new.endpoints.join(",")),
            ("ai.egress_allow", new.egress_allow.join(",")),
            ("ai.grounded_only", new.grounded_only.to_string()),
            ("ai.retention", new.retention.as_str().to_string()),
            ("ai.gateway_context", new.gateway_context.to_string()),
            (
                "ai.gateway_passthrough",
                new.gateway_passthrough.to_string(),
            ),
        ] {
            c.execute(
                "INSERT INTO policy (key, value, changed_us) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(key) DO UPDATE SET value = ?2, changed_us = ?3",
                params![k, v, now],
            )
            .map_err(|e| PolicyError::Store(tx.err(&e)))?;
        }
        let audit = Audit::new("policy.ai.update", "policy")
            .params(serde_json::to_value(&new).unwrap_or_default());
        Ok((new.clone(), audit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lists_parse_and_broken_ones_name_the_entry() {
        assert_eq!(
            parse_names("k", "Local, api.openai.com\nlocal").unwrap(),
            ["local", "api.openai.com"]
        );
        let e = parse_names("ai.egress_allow", "ok, https://x.test/").unwrap_err();
        assert!(e.to_string().contains("\"https://x.test/\""), "{e}");
        let many = (0..70)
            .map(|i| format!("h{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_names("k", &many).is_err());
    }

    #[test]
    fn defaults_are_the_strict_choices() {
        let p = AiPolicy::default();
        assert_eq!(p.model, "extractive");
        assert!(p.grounded_only && p.endpoints.is_empty() && p.egress_allow.is_empty());
        assert!(
            !p.gateway_context,
            "no document goes to another model unasked"
        );
        assert_eq!(p.retention, Retention::Preview);
    }
}
