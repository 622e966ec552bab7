//! A tenant's policy, stored in its own file: the second-factor rule, the source addresses
//! its users and tokens may come from, and session timeouts tighter than the installation's.
//! More settings (models, egress, redaction, retention) join here as their parts land.

pub mod ai;
pub mod limits;
pub mod redaction;

use crate::door::{Audit, Door};
use crate::identity::{Permission, Permissions};
use crate::store::StoreError;
use crate::tenants::TenantError;
use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::net::IpAddr;

/// The tenant file's policy table.
pub const SCHEMA: crate::store::migrate::Module = crate::store::migrate::Module {
    name: "policy",
    steps: &["
CREATE TABLE policy (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    changed_us INTEGER NOT NULL
) STRICT;
"],
};

/// Most entries an address list may hold.
pub const MAX_NETS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Denied(#[from] crate::identity::Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "POL-0001",
            Self::Denied(_) => "POL-0002",
            Self::Store(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

crate::domain_error!(PolicyError, |e| match e {
    PolicyError::Invalid { .. } => crate::error::ErrorKind::Invalid,
    PolicyError::Denied(_) => crate::error::ErrorKind::Forbidden,
    PolicyError::Store(e) => crate::error::DomainError::kind(e),
    PolicyError::Tenant(e) => crate::error::DomainError::kind(e),
});

/// Who must sign in with a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactor {
    Off,
    /// Owners, admins, and anyone whose role manages people, tokens or settings.
    Admins,
    Everyone,
}

impl TwoFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            TwoFactor::Off => "off",
            TwoFactor::Admins => "admins",
            TwoFactor::Everyone => "everyone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [TwoFactor::Off, TwoFactor::Admins, TwoFactor::Everyone]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A tenant's policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub two_factor: TwoFactor,
    #[serde(serialize_with = "nets_str")]
    pub ip_allow: Vec<IpNet>,
    #[serde(serialize_with = "nets_str")]
    pub ip_deny: Vec<IpNet>,
    /// Tighter than the installation's, or `None` for the installation's.
    pub session_idle_secs: Option<u64>,
    pub session_absolute_secs: Option<u64>,
}

fn nets_str<S: serde::Serializer>(n: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(n.iter().map(ToString::to_string))
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            two_factor: TwoFactor::Off,
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
            session_idle_secs: None,
            session_absolute_secs: None,
        }
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Policy {
    /// Whether a second factor is required of an account with this role.
    pub fn requires_two_factor(&self, role: &str, permissions: Permissions) -> bool {
        match self.two_factor {
            TwoFactor::Off => false,
            TwoFactor::Everyone => true,
            TwoFactor::Admins => {
                matches!(role, "owner" | "admin")
                    || [
                        Permission::UsersManage,
                        Permission::TokensManage,
                        Permission::SettingsManage,
                        Permission::GrantsManage,
                    ]
                    .iter()
                    .any(|p| permissions.contains(*p))
            }
        }
    }

    /// Whether a request from `ip` may proceed: a denied range refuses, and a non-empty
    /// allow-list admits only what it lists. An unknown source passes only when nothing is
    /// listed as allowed.
    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip.map(unmap) else {
            return self.ip_allow.is_empty();
        };
        if self.ip_deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.ip_allow.is_empty() || self.ip_allow.iter().any(|n| n.contains(&ip))
    }

    /// This policy with every address refused.
    fn admitting_nobody(mut self) -> Self {
        self.ip_deny = ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        self
    }

    /// The policy stored in a tenant file. A value this build cannot read is ignored with a
    /// warning, so a damaged row weakens nothing silently: the rule it held is logged.
    ///
    /// # Errors
    /// A storage fault.
    pub fn read(c: &Connection) -> rusqlite::Result<Self> {
        let get = |k: &str| stored(c, k);
        let mut p = Policy::default();
        if let Some(v) = get("two_factor")? {
            // Fail closed: a damaged rule asks more of people, not less.
            p.two_factor = TwoFactor::parse(&v).unwrap_or_else(|| {
                tracing::warn!(value = %v, "unreadable two_factor policy; treated as everyone");
                TwoFactor::Everyone
            });
        }
        if let Some(v) = get("ip_allow")? {
            match parse_nets("ip_allow", &v) {
                Ok(n) => p.ip_allow = n,
                Err(e) => {
                    // Fail closed: an allow-list that cannot be read admits nobody.
                    tracing::warn!(error = %e, "unreadable ip_allow policy; nothing is admitted");
                    return Ok(p.admitting_nobody());
                }
            }
        }
        if let Some(v) = get("ip_deny")? {
            match parse_nets("ip_deny", &v) {
                Ok(n) => p.ip_deny = n,
                Err(e) => {
                    // Fail closed, as for the allow-list: a refusal that cannot be read
                    // refuses everyone rather than no one.
                    tracing::warn!(error = %e, "unreadable ip_deny policy; nothing is admitted");
                    return Ok(p.admitting_nobody());
                }
            }
        }
        // A timeout that cannot be read is the shortest allowed, never the looser default.
        let timeout = |key, shortest: u64| -> rusqlite::Result<Option<u64>> {
            Ok(get(key)?.map(|v| {
                v.parse().unwrap_or_else(|_| {
                    tracing::warn!(
                        key,
                        "unreadable session timeout policy; the shortest allowed applies"
                    );
                    shortest
                })
            }))
        };
        p.session_idle_secs = timeout("session_idle_secs", 60)?;
        p.session_absolute_secs = timeout("session_absolute_secs", 300)?;
        Ok(p)
    }
}

/// Parses an address list: CIDR ranges or single addresses, separated by commas, spaces or
/// new lines.
///
/// # Errors
/// The first entry that is not an address or range, or more than [`MAX_NETS`] entries.
pub fn parse_nets(key: &'static str, text: &str) -> Result<Vec<IpNet>, PolicyError> {
    let mut out = Vec::new();
    for item in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let net = item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| PolicyError::Invalid {
                key,
                message: format!(
                    "{:?} is not an address or a range such as 10.0.0.0/8 or 2001:db8::/32",
                    item.chars().take(60).collect::<String>()
                ),
            })?;
        out.push(net.trunc());
    }
    if out.len() > MAX_NETS {
        return Err(PolicyError::Invalid {
            key,
            message: format!("at most {MAX_NETS} entries"),
        });
    }
    Ok(out)
}

/// A tenant's policy, for a caller who may read settings.
///
/// # Errors
/// Permission or a storage fault.
pub fn read_blocking<D: Door>(door: &D) -> Result<Policy, PolicyError> {
    door.caller().require(Permission::SettingsRead)?;
    read_unchecked(door)
}

/// The policy as the server enforces it, whoever is asking (sign-in, the request guard).
///
/// # Errors
/// A storage fault.
pub fn read_unchecked<D: Door>(door: &D) -> Result<Policy, PolicyError> {
    if door.tenant_id().is_none() {
        return Ok(Policy::default());
    }
    door.read_blocking(|c| {
        Policy::read(c).map_err(|e| PolicyError::Store(StoreError::from_sqlite("policy", 0, &e)))
    })
}

/// Replaces the tenant's policy. An allow-list that would shut out the caller's own address
/// is refused, so nobody locks themselves out by mistake.
///
/// # Errors
/// Permission, invalid values, or a storage fault.
pub fn update_blocking<D: Door>(door: &D, new: &Policy) -> Result<Policy, PolicyError> {
    door.caller().require(Permission::SettingsManage)?;
    if door.tenant_id().is_none() {
        return Err(PolicyError::Invalid {
            key: "policy",
            message: "policies belong to a tenant".into(),
        });
    }
    for (key, v, range) in [
        ("session_idle_secs", new.session_idle_secs, 60..=7 * 86_400),
        (
            "session_absolute_secs",
            new.session_absolute_secs,
            300..=30 * 86_400,
        ),
    ] {
        if let Some(v) = v {
            if !range.contains(&v) {
                return Err(PolicyError::Invalid {
                    key,
                    message: format!(
                        "use a whole number of seconds from {} to {}",
                        range.start(),
                        range.end()
                    ),
                });
            }
        }
    }
    if new.ip_allow.len() > MAX_NETS || new.ip_deny.len() > MAX_NETS {
        return Err(PolicyError::Invalid {
            key: "ip_allow",
            message: format!("at most {MAX_NETS} entries"),
        });
    }
    if let Some(ip) = door.source_ip() {
        if !new.admits(Some(ip)) {
            return Err(PolicyError::Invalid {
                key: "ip_allow",
                message: format!(
                    "this would refuse your own address {}; include it first",
                    unmap(ip)
                ),
            });
        }
    }
    let new = new.clone();
    crate::policy::change(door, move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        let nets = |n: &[IpNet]| {
            n.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let opt = |v: Option<u64>| v.map(|v| v.to_string());
        for (k, v) in [
            ("two_factor", Some(new.two_factor.as_str().to_string())),
            ("ip_allow", Some(nets(&new.ip_allow))),
            ("ip_deny", Some(nets(&new.ip_deny))),
            ("session_idle_secs", opt(new.session_idle_secs)),
            ("session_absolute_secs", opt(new.session_absolute_secs)),
        ] {
            match v {
                Some(v) => c.execute(
                    "INSERT INTO policy (key, value, changed_us) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(key) DO UPDATE SET value = ?2, changed_us = ?3",
                    params![k, v, now],
                ),
                None => c.execute("DELETE FROM policy WHERE key = ?1", [k]),
            }
            .map_err(|e| PolicyError::Store(tx.err(&e)))?;
        }
        let audit = Audit::new("policy.update", "policy")
            .params(serde_json::to_value(&new).unwrap_or_default());
        Ok((new.clone(), audit))
    })
}

/// Policy changes this process has made (or tried to make); see [`generation`].
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Every change of a tenant's policy: `f` through the door, then counted (see
/// [`generation`]) once it is over, committed or not, so rules read before it are stale.
///
/// # Errors
/// `f`'s error, or a storage fault (the change did not happen).
pub(crate) fn change<D, T, F>(door: &D, f: F) -> Result<T, PolicyError>
where
    D: Door,
    F: Fn(&mut crate::store::WriteTx<'_>) -> Result<(T, Audit), PolicyError>
        + Send
        + Sync
        + 'static,
    T: Send + 'static,
{
    let out = door.change_blocking(f);
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    out
}

/// A number that moves whenever this process changes any tenant's policy. Read before the
/// rules are read: what was read under a number that has not moved since is current (a
/// change made by another process is told by the data directory's identity epoch).
pub fn generation() -> u64 {
    GENERATION.load(std::sync::atomic::Ordering::SeqCst)
}

/// The stored value of one policy key, by a statement the connection keeps prepared: the
/// rules are read on every gateway call, and parsing the same SQL each time was a visible
/// share of a call's work.
///
/// # Errors
/// A storage fault.
pub fn stored(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT value FROM policy WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Damaged rows (a newer build's, a bad write) tighten the rule they held, never loosen it.
    #[test]
    fn damaged_rows_fail_closed() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE policy (key TEXT PRIMARY KEY, value TEXT NOT NULL, changed_us INTEGER);
             INSERT INTO policy VALUES ('ip_deny', '192.0.2.0/24 not-a-range', 0);
             INSERT INTO policy VALUES ('session_idle_secs', 'forever', 0);
             INSERT INTO policy VALUES ('session_absolute_secs', '-1', 0);",
        )
        .unwrap();
        let p = Policy::read(&c).unwrap();
        assert!(!p.admits(Some("198.51.100.7".parse().unwrap())));
        assert!(!p.admits(Some("2001:db8::1".parse().unwrap())));
        c.execute(
            "UPDATE policy SET value = '192.0.2.0/24' WHERE key = 'ip_deny'",
            [],
        )
        .unwrap();
        let p = Policy::read(&c).unwrap();
        assert!(p.admits(Some("198.51.100.7".parse().unwrap())));
        assert!(!p.admits(Some("192.0.2.9".parse().unwrap())));
        assert_eq!(p.session_idle_secs, Some(60));
        assert_eq!(p.session_absolute_secs, Some(300));
    }

    #[test]
    fn address_lists_parse_and_broken_ones_name_the_entry() {
        let n = parse_nets("ip_allow", "10.0.0.0/8, 192.0.2.7\n2001:db8::/32").unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(n[1].to_string(), "192.0.2.7/32");
        assert!(parse_nets("ip_allow", "").unwrap().is_empty());
        let e = parse_nets("ip_deny", "10.0.0.0/8 banana").unwrap_err();
        assert!(e.to_string().contains("\"banana\""), "{e}");
        assert!(parse_nets("ip_deny", "10.0.0.0/33").is_err());
        let many = (0..300)
            .map(|i| format!("10.0.{}.0/24", i % 250))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_nets("ip_allow", &many)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn deny_wins_and_an_allow_list_admits_only_its_ranges() {
        let p = Policy {
            ip_allow: parse_nets("a", "10.0.0.0/8").unwrap(),
            ip_deny: parse_nets("d", "10.9.0.0/16").unwrap(),
            ..Policy::default()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(p.admits(ip("10.1.2.3")));
        assert!(!p.admits(ip("10.9.2.3")));
        assert!(!p.admits(ip("192.0.2.1")));
        // An IPv4 client seen through an IPv6 socket is the same client.
        assert!(p.admits(ip("::ffff:10.1.2.3")));
        assert!(!p.admits(None));
        assert!(Policy::default().admits(None));
    }

    #[test]
    fn the_admins_rule_covers_roles_that_manage() {
        let p = Policy {
            two_factor: TwoFactor::Admins,
            ..Policy::default()
        };
        let none = Permissions::empty();
        assert!(p.requires_two_factor("admin", none));
        assert!(!p.requires_two_factor("operator", Permissions::of(&[Permission::KnowledgeRead])));
        assert!(p.requires_two_factor("custom", Permissions::of(&[Permission::TokensManage])));
        assert!(!Policy::default().requires_two_factor("owner", none));
    }
}
