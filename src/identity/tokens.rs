//! API tokens: per tenant, with a role, a name and an expiry; shown once, stored as a keyed
//! hash, compared in constant time, revocable, last use recorded.
//!
//! A token reads `srt_<tenant id>_<token id>_<64 hex>`: the tenant and the token id say
//! where to look (and are safe to log), the last part is the secret.

use super::accounts::{self, store_err};
use super::directory::Directory;
use super::permission::{Permission, Permissions, Realm};
use super::IdentityError;
use crate::door::{Audit, Door};
use crate::ids::{TenantId, TokenId};
use crate::keyring::SecretString;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PREFIX: &str = "srt_";

/// Longest lifetime a token may be given.
pub const MAX_LIFETIME_SECS: u64 = 10 * 366 * 86_400;

/// A token as shown in lists; never its secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_us: i64,
    pub expires_us: Option<i64>,
    pub last_used_us: Option<i64>,
    pub revoked_us: Option<i64>,
}

const COLUMNS: &str =
    "id, name, role, created_by, created_us, expires_us, last_used_us, revoked_us";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: TokenId::from_trusted(r.get(0)?),
        name: r.get(1)?,
        role: r.get(2)?,
        created_by: r.get(3)?,
        created_us: r.get(4)?,
        expires_us: r.get(5)?,
        last_used_us: r.get(6)?,
        revoked_us: r.get(7)?,
    })
}

/// A presented token, split into where it points and its secret.
pub struct Presented {
    pub tenant: TenantId,
    pub id: TokenId,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Presented({}/{}, [redacted])", self.tenant, self.id)
    }
}

impl Presented {
    /// `None` for anything that is not a well-formed token.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(PREFIX)?;
        let mut parts = rest.split('_');
        let (Some(t), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if secret.len() != 64 {
            return None;
        }
        let mut b = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret, &mut b[..]).ok()?;
        Some(Self {
            tenant: TenantId::parse(t).ok()?,
            id: TokenId::parse(id).ok()?,
            secret: b,
        })
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

/// What to make.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: Option<String>,
    pub role: String,
    /// Lifetime; `None` never expires.
    pub lifetime_secs: Option<u64>,
}

/// Parses a lifetime such as `30d`, `12h` or `1y`.
///
/// # Errors
/// Not a duration, zero, or longer than ten years.
pub fn parse_lifetime(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid expiry {s:?}: {e}; use e.g. 30d, 12h or 1y"))?;
    let secs = d.as_secs();
    if secs < 60 {
        return Err(format!("invalid expiry {s:?}: use at least one minute"));
    }
    if secs > MAX_LIFETIME_SECS {
        return Err(format!("invalid expiry {s:?}: use at most ten years"));
    }
    Ok(secs)
}

fn tenant_of<D: Door>(door: &D) -> Result<TenantId, IdentityError> {
    door.tenant_id().cloned().ok_or(IdentityError::NotFound(
        "no tokens outside a tenant: tokens belong to one tenant".into(),
    ))
}

/// Makes a token; returns it with its full text, shown once.
///
/// # Errors
/// Permission (a caller cannot make a token more powerful than itself), an unknown role, a
/// bad name, or a storage fault.
pub fn create_blocking<D: Door>(
    door: &D,
    dir: &std::sync::Arc<Directory>,
    input: &NewToken,
) -> Result<(TokenInfo, SecretString), IdentityError> {
    let caller = door.caller().clone();
    caller.require(Permission::TokensManage)?;
    let tenant = tenant_of(door)?;
    let name = crate::text::display_name(input.name.as_deref().unwrap_or("token"), 100)
        .map_err(|p| IdentityError::BadName(p.to_string()))?;
    if let Some(l) = input.lifetime_secs {
        if !(60..=MAX_LIFETIME_SECS).contains(&l) {
            return Err(IdentityError::BadName(
                "a token lives from one minute to ten years".into(),
            ));
        }
    }
    let (role, lifetime) = (input.role.clone(), input.lifetime_secs);
    let id = TokenId::from_trusted(crate::keyring::random_id()?);
    let secret = super::sessions::SessionSecret::random()?;
    let hash = dir.secret_hash("token", secret.expose());
    let text = SecretString::new(format!(
        "{PREFIX}{tenant}_{id}_{}",
        hex::encode(secret.expose())
    ));
    let info =
        door.change_blocking(move |tx| {
            let c = tx.conn();
            let now = tx.now_us();
            let perms = accounts::permissions_of(c, Realm::Tenant, &role)
                .map_err(store_err)?
                .ok_or_else(|| IdentityError::UnknownRole(role.clone()))?;
            accounts::require_holds(&caller, perms)?;
            let expires =
                lifetime.map(|l| now.saturating_add(i64::try_from(l).unwrap_or(0) * 1_000_000));
            c.execute(
            "INSERT INTO tokens (id, secret_hash, name, role, created_by, created_us, expires_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id.as_str(), &hash[..], name, role, caller.actor.id, now, expires],
        )
        .map_err(store_err)?;
            let info = TokenInfo {
                id: id.clone(),
                name: name.clone(),
                role: role.clone(),
                created_by: caller.actor.id.clone(),
                created_us: now,
                expires_us: expires,
                last_used_us: None,
                revoked_us: None,
            };
            let audit = Audit::new("token.create", id.as_str()).params(serde_json::json!({
                "name": name, "role": role, "expires_us": expires,
            }));
            Ok::<_, IdentityError>((info, audit))
        })?;
    Ok((info, text))
}

/// Every token of the tenant, newest first.
///
/// # Errors
/// Permission or a storage fault.
pub fn list_blocking<D: Door>(door: &D) -> Result<Vec<TokenInfo>, IdentityError> {
    door.caller().require(Permission::TokensRead)?;
    door.read_blocking(|c| {
        let mut st = c
            .prepare(&format!(
                "SELECT {COLUMNS} FROM tokens ORDER BY created_us DESC, id"
            ))
            .map_err(store_err)?;
        let rows = st
            .query_map([], from_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(store_err)?;
        Ok(rows)
    })
}

/// Revokes one token, or (with `None`) every token not yet revoked. Returns how many.
///
/// # Errors
/// Permission, no such live token, or a storage fault.
pub fn revoke_blocking<D: Door>(door: &D, id: Option<&TokenId>) -> Result<usize, IdentityError> {
    door.caller().require(Permission::TokensManage)?;
    let id = id.cloned();
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        let n = match &id {
            Some(id) => c.execute(
                "UPDATE tokens SET revoked_us = ?2 WHERE id = ?1 AND revoked_us IS NULL",
                params![id.as_str(), now],
            ),
            None => c.execute(
                "UPDATE tokens SET revoked_us = ?1 WHERE revoked_us IS NULL",
                [now],
            ),
        }
        .map_err(store_err)?;
        if let (Some(id), 0) = (&id, n) {
            return Err(IdentityError::NotFound(format!("no live token {id}")));
        }
        let target = id.as_ref().map_or("all", |i| i.as_str());
        let audit = Audit::new("token.revoke", target).params(serde_json::json!({ "revoked": n }));
        Ok((n, audit))
    })
}

/// A token that may be used now, with what its role allows now.
#[derive(Debug, Clone)]
pub struct LiveToken {
    pub info: TokenInfo,
    pub permissions: Permissions,
}

/// The token `p` names, if its secret matches (compared in constant time), it is not revoked
/// or expired, and its role still exists; `None` otherwise (one answer for every reason).
///
/// # Errors
/// A storage fault.
pub(crate) fn load(
    c: &Connection,
    dir: &Directory,
    p: &Presented,
    now_us: i64,
) -> Result<Option<LiveToken>, IdentityError> {
    let row: Option<(Vec<u8>, TokenInfo)> = c
        .query_row(
            &format!("SELECT secret_hash, {COLUMNS} FROM tokens WHERE id = ?1"),
            [p.id.as_str()],
            |r| {
                let hash: Vec<u8> = r.get(0)?;
                let info = TokenInfo {
                    id: TokenId::from_trusted(r.get(1)?),
                    name: r.get(2)?,
                    role: r.get(3)?,
                    created_by: r.get(4)?,
                    created_us: r.get(5)?,
                    expires_us: r.get(6)?,
                    last_used_us: r.get(7)?,
                    revoked_us: r.get(8)?,
                };
                Ok((hash, info))
            },
        )
        .optional()
        .map_err(store_err)?;
    let Some((stored, info)) = row else {
        return Ok(None);
    };
    let presented = dir.secret_hash("token", p.secret());
    if !bool::from(stored.as_slice().ct_eq(&presented[..])) {
        return Ok(None);
    }
    if info.revoked_us.is_some() || info.expires_us.is_some_and(|e| e <= now_us) {
        return Ok(None);
    }
    let Some(permissions) =
        accounts::permissions_of(c, Realm::Tenant, &info.role).map_err(store_err)?
    else {
        return Ok(None);
    };
    Ok(Some(LiveToken { info, permissions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_malformed_ones_do_not() {
        let t = "ab".repeat(16);
        let id = "cd".repeat(16);
        let secret = "ef".repeat(32);
        let p = Presented::parse(&format!("srt_{t}_{id}_{secret}")).unwrap();
        assert_eq!(p.tenant.as_str(), t);
        assert_eq!(p.id.as_str(), id);
        assert_eq!(p.secret(), &[0xef; 32]);
        assert!(!format!("{p:?}").contains("efef"));
        for bad in [
            String::new(),
            "srt_".into(),
            format!("srx_{t}_{id}_{secret}"),
            format!("srt_{t}_{id}_{secret}_x"),
            format!("srt_{t}_{id}_{}", &secret[..62]),
            format!("srt_{t}_{id}_{}", "zz".repeat(32)),
            format!("srt_{}_{id}_{secret}", "AB".repeat(16)),
            format!("srt_{t}_{id}"),
        ] {
            assert!(Presented::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(parse_lifetime("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_lifetime("12h").unwrap(), 12 * 3600);
        assert!(parse_lifetime("1y").is_ok());
        for bad in ["", "soon", "30", "10s", "11y", "-5d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
