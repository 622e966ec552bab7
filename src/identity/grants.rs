//! Vendor break-glass: a tenant's owner grants a named platform account time-limited,
//! read-only access with a reason. Off by default: without a grant a platform account sees
//! a tenant's metadata (name, status) and never its data. The grant lives in the tenant's
//! file, expires by itself, can be revoked, and every request made under it is journaled in
//! the tenant's journal with the grant's id (see `web::auth`).

use super::accounts::store_err;
use super::directory::{Directory, Home};
use super::email::Email;
use super::permission::{Permission, Permissions, Realm};
use super::IdentityError;
use crate::door::{Audit, Door};
use crate::ids::{GrantId, UserId};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Longest a grant may last.
pub const MAX_SECS: u64 = 7 * 86_400;

/// What a grant lets the vendor do: look, never change.
pub fn permissions() -> Permissions {
    Permissions::of(&[
        Permission::UsersRead,
        Permission::TokensRead,
        Permission::AuditRead,
        Permission::AuditVerify,
        Permission::SettingsRead,
        Permission::StatusRead,
    ])
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub account_id: UserId,
    pub email: String,
    pub reason: String,
    pub created_by: String,
    pub created_us: i64,
    pub expires_us: i64,
    pub revoked_us: Option<i64>,
}

impl Grant {
    pub fn live(&self, now_us: i64) -> bool {
        self.revoked_us.is_none() && now_us < self.expires_us
    }
}

const COLUMNS: &str =
    "id, account_id, email, reason, created_by, created_us, expires_us, revoked_us";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: GrantId::from_trusted(r.get(0)?),
        account_id: UserId::from_trusted(r.get(1)?),
        email: r.get(2)?,
        reason: r.get(3)?,
        created_by: r.get(4)?,
        created_us: r.get(5)?,
        expires_us: r.get(6)?,
        revoked_us: r.get(7)?,
    })
}

/// Grants access to the platform account with address `email` for `secs` seconds.
///
/// # Errors
/// Permission (grants.manage, held by owners), not a platform account, no reason, a
/// duration out of bounds, or a storage fault.
pub fn create_blocking<D: Door>(
    door: &D,
    dir: &Directory,
    email: &str,
    reason: &str,
    secs: u64,
) -> Result<Grant, IdentityError> {
    let caller = door.caller().clone();
    caller.require(Permission::GrantsManage)?;
    if door.realm() != Realm::Tenant {
        return Err(IdentityError::BadName(
            "grants are given by a tenant".into(),
        ));
    }
    let email = Email::parse(email)?;
    let reason = crate::text::display_name(reason, 500)
        .map_err(|p| IdentityError::BadName(format!("the reason: {p}")))?;
    if !(300..=MAX_SECS).contains(&secs) {
        return Err(IdentityError::BadName(
            "a grant lasts from 5 minutes to 7 days".into(),
        ));
    }
    // Only a platform account can be granted access; a tenant's own people need none.
    let account = match dir.find(&email)? {
        Some(l) if l.home == Home::Platform => l.user_id,
        _ => {
            return Err(IdentityError::NotFound(format!(
                "no platform account {email}"
            )))
        }
    };
    let id = GrantId::from_trusted(crate::keyring::random_id()?);
    door.change_blocking(move |tx| {
        let now = tx.now_us();
        let expires = now.saturating_add(i64::try_from(secs).unwrap_or(0) * 1_000_000);
        tx.conn()
            .execute(
                "INSERT INTO grants (id, account_id, email, reason, created_by, created_us, \
                 expires_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id.as_str(),
                    account.as_str(),
                    email.as_str(),
                    reason,
                    caller.actor.id,
                    now,
                    expires
                ],
            )
            .map_err(store_err)?;
        let g = Grant {
            id: id.clone(),
            account_id: account.clone(),
            email: email.to_string(),
            reason: reason.clone(),
            created_by: caller.actor.id.clone(),
            created_us: now,
            expires_us: expires,
            revoked_us: None,
        };
        let audit = Audit::new("grant.create", id.as_str()).params(serde_json::json!({
            "account": account.as_str(), "email": email.as_str(), "reason": reason,
            "expires_us": expires, "permissions": permissions().names(),
        }));
        Ok((g, audit))
    })
}

/// The tenant's grants, newest first.
///
/// # Errors
/// Permission or a storage fault.
pub fn list_blocking<D: Door>(door: &D) -> Result<Vec<Grant>, IdentityError> {
    door.caller().require(Permission::GrantsManage)?;
    door.read_blocking(|c| {
        let mut st = c
            .prepare(&format!(
                "SELECT {COLUMNS} FROM grants ORDER BY created_us DESC LIMIT 200"
            ))
            .map_err(store_err)?;
        let rows = st
            .query_map([], from_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(store_err)?;
        Ok(rows)
    })
}

/// Ends a grant now.
///
/// # Errors
/// Permission, no such live grant, or a storage fault.
pub fn revoke_blocking<D: Door>(door: &D, id: &GrantId) -> Result<(), IdentityError> {
    door.caller().require(Permission::GrantsManage)?;
    let id = id.clone();
    door.change_blocking(move |tx| {
        let n = tx
            .conn()
            .execute(
                "UPDATE grants SET revoked_us = ?2 WHERE id = ?1 AND revoked_us IS NULL \
                 AND expires_us > ?2",
                params![id.as_str(), tx.now_us()],
            )
            .map_err(store_err)?;
        if n == 0 {
            return Err(IdentityError::NotFound(format!("no live grant {id}")));
        }
        Ok(((), Audit::new("grant.revoke", id.as_str())))
    })
}

/// The live grant `id` for platform account `account`, if there is one.
///
/// # Errors
/// A storage fault.
pub fn live_for(
    c: &Connection,
    id: &GrantId,
    account: &UserId,
    now_us: i64,
) -> Result<Option<Grant>, IdentityError> {
    let g = c
        .query_row(
            &format!("SELECT {COLUMNS} FROM grants WHERE id = ?1 AND account_id = ?2"),
            params![id.as_str(), account.as_str()],
            from_row,
        )
        .optional()
        .map_err(store_err)?;
    Ok(g.filter(|g| g.live(now_us)))
}

/// The newest live grant for platform account `account`, if any (entering a tenant).
///
/// # Errors
/// A storage fault.
pub fn newest_live_for(
    c: &Connection,
    account: &UserId,
    now_us: i64,
) -> Result<Option<Grant>, IdentityError> {
    c.query_row(
        &format!(
            "SELECT {COLUMNS} FROM grants WHERE account_id = ?1 AND revoked_us IS NULL \
             AND expires_us > ?2 ORDER BY expires_us DESC LIMIT 1"
        ),
        params![account.as_str(), now_us],
        from_row,
    )
    .optional()
    .map_err(store_err)
}

/// The newest live grant a tenant gave the calling platform account, if any: what entering
/// the tenant uses. The caller asks about itself only.
///
/// # Errors
/// Asking about another account, or a storage fault.
pub fn mine_blocking<D: Door>(
    door: &D,
    me: &UserId,
    now_us: i64,
) -> Result<Option<Grant>, IdentityError> {
    if door.caller().actor.id != me.as_str() {
        return Err(super::Denied("one's own grants").into());
    }
    let me = me.clone();
    door.read_blocking(move |c| newest_live_for(c, &me, now_us))
}
