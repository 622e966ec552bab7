//! Accounts of either realm: create, list, disable, re-role, reset and change passwords.
//!
//! One piece of code for tenant users and platform accounts: each function takes a
//! [`Door`] (a tenant's file or `system.db`), checks its caller's permission, and writes its
//! audit entry in the same transaction as its change. Every change that takes power away
//! (disable, reset, a new role) ends the account's sessions in that same transaction.

use super::directory::{self, Directory, Home};
use super::email::Email;
use super::password::{self, Password};
use super::permission::{self, Permission, Permissions, Realm};
use super::IdentityError;
use crate::door::{Audit, Door};
use crate::ids::UserId;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// An account as the admin pages and the CLI show it; never its password hash.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    #[serde(serialize_with = "email_str")]
    pub email: Email,
    pub name: String,
    pub role: String,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_us: i64,
}

fn email_str<S: serde::Serializer>(e: &Email, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.as_str())
}

pub(crate) const COLUMNS: &str = "id, email, name, role, must_change, disabled, created_us";

pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: UserId::from_trusted(r.get(0)?),
        email: Email::from_trusted(r.get(1)?),
        name: r.get(2)?,
        role: r.get(3)?,
        must_change_password: r.get::<_, i64>(4)? != 0,
        disabled: r.get::<_, i64>(5)? != 0,
        created_us: r.get(6)?,
    })
}

/// What a new account needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub email: String,
    /// Shown in the UI; the address's local part when not given.
    pub name: Option<String>,
    pub role: String,
}

fn manage(realm: Realm) -> Permission {
    match realm {
        Realm::Platform => Permission::PlatformUsersManage,
        Realm::Tenant => Permission::UsersManage,
    }
}

fn read_perm(realm: Realm) -> Permission {
    match realm {
        Realm::Platform => Permission::PlatformUsersRead,
        Realm::Tenant => Permission::UsersRead,
    }
}

fn realm_word(realm: Realm) -> &'static str {
    match realm {
        Realm::Platform => "platform",
        Realm::Tenant => "tenant",
    }
}

/// What `role` allows in the realm: a built-in role, or a tenant's custom role. `None` for a
/// role that does not exist (any more).
pub(crate) fn permissions_of(
    c: &Connection,
    realm: Realm,
    role: &str,
) -> rusqlite::Result<Option<Permissions>> {
    if let Some(p) = permission::built_in(realm, role) {
        return Ok(Some(p));
    }
    if realm == Realm::Platform {
        return Ok(None);
    }
    let names: Option<String> = c
        .query_row(
            "SELECT permissions FROM roles WHERE name = ?1",
            [role],
            |r| r.get(0),
        )
        .optional()?;
    // A stored name this build no longer knows grants nothing rather than failing the role.
    Ok(names.map(|n| {
        n.split(',')
            .filter_map(Permission::parse)
            .fold(Permissions::empty(), |acc, p| acc | Permissions::of(&[p]))
    }))
}

/// Refuses `caller` unless it holds every permission `role` grants: nobody gives an account
/// more power than they hold, or acts for an account that has more (resets its password,
/// changes its role, removes its second factor, ends its sessions). Owners are the case
/// everybody knows; a tenant's own roles can be made as strong. A role that does not exist
/// grants nothing.
pub(crate) fn require_covers(
    c: &Connection,
    caller: &permission::Caller,
    realm: Realm,
    role: &str,
) -> Result<(), IdentityError> {
    match permissions_of(c, realm, role).map_err(store_err)? {
        Some(perms) => require_holds(caller, perms),
        None => Ok(()),
    }
}

/// Refuses `caller` unless it holds every one of `perms`, naming the first it lacks.
pub(crate) fn require_holds(
    caller: &permission::Caller,
    perms: Permissions,
) -> Result<(), IdentityError> {
    match perms.iter().find(|p| !caller.permissions.contains(*p)) {
        Some(missing) => Err(IdentityError::Denied(permission::Denied(missing.name()))),
        None => Ok(()),
    }
}

/// [`require_covers`] for the role of the account `user`, unless the caller is that account.
pub(crate) fn require_may_act_for(
    c: &Connection,
    caller: &permission::Caller,
    realm: Realm,
    user: &UserId,
) -> Result<(), IdentityError> {
    if caller.actor.id == user.as_str() {
        return Ok(());
    }
    match resolve(c, user.as_str()).map_err(store_err)? {
        Some(a) => require_covers(c, caller, realm, &a.role),
        None => Ok(()),
    }
}

fn role_exists(c: &Connection, realm: Realm, role: &str) -> rusqlite::Result<bool> {
    permissions_of(c, realm, role).map(|p| p.is_some())
}

/// The account named by `key`: its id, or its e-mail address.
pub(crate) fn resolve(c: &Connection, key: &str) -> rusqlite::Result<Option<Account>> {
    let sql = if UserId::parse(key).is_ok() {
        format!("SELECT {COLUMNS} FROM users WHERE id = ?1")
    } else {
        format!("SELECT {COLUMNS} FROM users WHERE email = ?1")
    };
    let key = match Email::parse(key) {
        Ok(e) if UserId::parse(key).is_err() => e.to_string(),
        _ => key.to_string(),
    };
    c.query_row(&sql, [key], from_row).optional()
}

fn active_owners(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row(
        "SELECT count(*) FROM users WHERE role = 'owner' AND disabled = 0",
        [],
        |r| r.get(0),
    )
}

/// Ends every open session of an account, inside the caller's transaction.
pub(crate) fn end_sessions_of(
    c: &Connection,
    user: &UserId,
    now_us: i64,
) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE sessions SET ended_us = ?2 WHERE user_id = ?1 AND ended_us IS NULL",
        params![user.as_str(), now_us],
    )
}

/// Creates an account with a one-time password, which it returns (shown once; it must be
/// changed at first sign-in).
///
/// # Errors
/// Permission, a bad address or name, an unknown role, an address already used anywhere in
/// the installation, or a storage fault (then no account exists and no address is held).
pub fn create_blocking<D: Door>(
    door: &D,
    dir: &Directory,
    input: &NewAccount,
) -> Result<(Account, Password), IdentityError> {
    let one_time = password::one_time()?;
    let hash = password::hash_blocking(&one_time)?;
    let account = create_with(door, dir, input, Some(hash))?;
    Ok((account, one_time))
}

/// Creates an account that signs in through the tenant's identity provider only: it has no
/// password (a password sign-in fails as for a wrong one) and nothing to change first.
///
/// # Errors
/// As [`create_blocking`].
pub fn create_sso_blocking<D: Door>(
    door: &D,
    dir: &Directory,
    input: &NewAccount,
) -> Result<Account, IdentityError> {
    create_with(door, dir, input, None)
}

fn create_with<D: Door>(
    door: &D,
    dir: &Directory,
    input: &NewAccount,
    hash: Option<String>,
) -> Result<Account, IdentityError> {
    let caller = door.caller();
    let realm = door.realm();
    caller.require(manage(realm))?;
    if input.role == "owner" {
        caller.require(Permission::OwnersManage)?;
    }
    let email = Email::parse(&input.email)?;
    let name_raw = input.name.clone().unwrap_or_else(|| {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    let name = crate::text::display_name(&name_raw, 100)
        .map_err(|p| IdentityError::BadName(p.to_string()))?;
    let role = input.role.clone();
    let must_change = hash.is_some();
    let id = UserId::from_trusted(crate::keyring::random_id()?);
    let mac = dir.mac(&email);

    let insert = {
        let (id, email, name, role) = (id.clone(), email.clone(), name.clone(), role.clone());
        let caller = caller.clone();
        move |tx: &mut crate::store::WriteTx<'_>| -> Result<(Account, Audit), IdentityError> {
            let c = tx.conn();
            let now = tx.now_us();
            let db = |e: rusqlite::Error| IdentityError::Store(tx.err(&e));
            if !role_exists(c, realm, &role).map_err(db)? {
                return Err(IdentityError::UnknownRole(role.clone()));
            }
            require_covers(c, &caller, realm, &role)?;
            if resolve(c, email.as_str()).map_err(db)?.is_some() {
                return Err(IdentityError::EmailInUse(email.to_string()));
            }
            if realm == Realm::Platform
                && directory::reserve_in(c, &mac, &Home::Platform, &id, now, false)
                    .map_err(db)?
                    .is_none()
            {
                return Err(IdentityError::EmailInUse(email.to_string()));
            }
            c.execute(
                "INSERT INTO users (id, email, name, role, password_hash, must_change, \
                 disabled, created_us, changed_us) VALUES (?1, ?2, ?3, ?4, ?5, ?7, 0, ?6, ?6)",
                params![
                    id.as_str(),
                    email.as_str(),
                    name,
                    role,
                    hash,
                    now,
                    must_change
                ],
            )
            .map_err(db)?;
            let account = Account {
                id: id.clone(),
                email: email.clone(),
                name: name.clone(),
                role: role.clone(),
                must_change_password: must_change,
                disabled: false,
                created_us: now,
            };
            let audit = Audit::new("user.create", id.as_str()).params(serde_json::json!({
                "realm": realm_word(realm),
                "email": email.as_str(),
                "name": name,
                "role": role,
                "sign_in": if must_change { "password" } else { "sso" },
            }));
            Ok((account, audit))
        }
    };

    let account = match door.tenant_id() {
        None => door.change_blocking(insert)?,
        Some(tenant) => {
            // A tenant's account and its directory row live in two files: the row first (so
            // two tenants cannot both take an address), the account second, and the row given
            // back if the tenant refuses the account.
            let (taken, known_role) = door.read_blocking(|c| {
                Ok::<_, IdentityError>((
                    resolve(c, email.as_str()).map_err(store_err)?.is_some(),
                    role_exists(c, realm, &input.role).map_err(store_err)?,
                ))
            })?;
            if !known_role {
                return Err(IdentityError::UnknownRole(input.role.clone()));
            }
            if taken {
                return Err(IdentityError::EmailInUse(email.to_string()));
            }
            let reserved =
                dir.reserve(&caller.actor, door.source_ip(), &email, tenant, &id, false)?;
            match door.change_blocking(insert) {
                Ok(a) => a,
                Err(e) => {
                    if let Err(undo) = dir.release(&caller.actor, &email, &id, reserved) {
                        tracing::warn!(code = undo.code(), error = %undo,
                            "an e-mail reservation of a failed create stays; the next create of the address takes it over");
                    }
                    return Err(e);
                }
            }
        }
    };
    Ok(account)
}

/// Every account of the realm, in creation order.
///
/// # Errors
/// Permission or a storage fault.
pub fn list_blocking<D: Door>(door: &D) -> Result<Vec<Account>, IdentityError> {
    door.caller().require(read_perm(door.realm()))?;
    door.read_blocking(|c| {
        let mut st = c
            .prepare(&format!(
                "SELECT {COLUMNS} FROM users ORDER BY created_us, id"
            ))
            .map_err(store_err)?;
        let rows = st
            .query_map([], from_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(store_err)?;
        Ok(rows)
    })
}

pub(crate) fn store_err(e: rusqlite::Error) -> IdentityError {
    IdentityError::Store(crate::store::StoreError::from_sqlite("identity", 0, &e))
}

/// The account named by its id or e-mail address, for a caller who may read accounts.
///
/// # Errors
/// Permission, no such account, or a storage fault.
pub fn get_blocking<D: Door>(door: &D, key: &str) -> Result<Account, IdentityError> {
    door.caller().require(read_perm(door.realm()))?;
    door.read_blocking(|c| resolve(c, key).map_err(store_err))?
        .ok_or_else(|| {
            IdentityError::NotFound(format!(
                "no account {}",
                key.chars().take(254).collect::<String>()
            ))
        })
}

/// What a change to one existing account does, given the account as it is.
type Edit = dyn Fn(&Connection, &Account, i64) -> Result<(serde_json::Value, Account), IdentityError>
    + Send
    + Sync;

/// Runs `edit` on the account named `key`, with the permission checks every edit shares:
/// managing accounts, and managing owners when the account is an owner.
fn edit_blocking<D: Door>(
    door: &D,
    key: &str,
    action: &'static str,
    edit: Box<Edit>,
) -> Result<Account, IdentityError> {
    let caller = door.caller().clone();
    let realm = door.realm();
    caller.require(manage(realm))?;
    let key = key.to_string();
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        let before = resolve(c, &key)
            .map_err(|e| IdentityError::Store(tx.err(&e)))?
            .ok_or_else(|| {
                IdentityError::NotFound(format!(
                    "no account {}",
                    key.chars().take(254).collect::<String>()
                ))
            })?;
        if before.role == "owner" {
            caller.require(Permission::OwnersManage)?;
        }
        require_covers(c, &caller, realm, &before.role)?;
        let (params, after) = edit(c, &before, now)?;
        Ok((after, Audit::new(action, before.id.as_str()).params(params)))
    })
}

fn refuse_last_owner(c: &Connection, realm: Realm, a: &Account) -> Result<(), IdentityError> {
    if a.role == "owner" && !a.disabled && active_owners(c).map_err(store_err)? <= 1 {
        return Err(IdentityError::LastOwner(realm_word(realm)));
    }
    Ok(())
}

/// Disables (or enables again) an account. Disabling ends its sessions.
///
/// # Errors
/// Permission, no such account, already in that state, the last active owner, or a storage
/// fault.
pub fn set_disabled_blocking<D: Door>(
    door: &D,
    key: &str,
    disabled: bool,
) -> Result<Account, IdentityError> {
    let realm = door.realm();
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    edit_blocking(
        door,
        key,
        action,
        Box::new(move |c, a, now| {
            if a.disabled == disabled {
                let state = if disabled { "disabled" } else { "enabled" };
                return Err(IdentityError::AlreadyInState(
                    format!("the account {}", a.email),
                    state,
                ));
            }
            if disabled {
                refuse_last_owner(c, realm, a)?;
            }
            c.execute(
                "UPDATE users SET disabled = ?2, changed_us = ?3 WHERE id = ?1",
                params![a.id.as_str(), i64::from(disabled), now],
            )
            .map_err(store_err)?;
            let ended = if disabled {
                end_sessions_of(c, &a.id, now).map_err(store_err)?
            } else {
                0
            };
            let after = Account {
                disabled,
                ..a.clone()
            };
            Ok((serde_json::json!({ "sessions_ended": ended }), after))
        }),
    )
}

/// Gives an account another role, and ends its sessions (its power changed).
///
/// # Errors
/// Permission (owners manage owners), no such account or role, the last active owner, or a
/// storage fault.
pub fn set_role_blocking<D: Door>(
    door: &D,
    key: &str,
    role: &str,
) -> Result<Account, IdentityError> {
    let realm = door.realm();
    if role == "owner" {
        door.caller().require(Permission::OwnersManage)?;
    }
    let role = role.to_string();
    let caller = door.caller().clone();
    edit_blocking(
        door,
        key,
        "user.role",
        Box::new(move |c, a, now| {
            if !role_exists(c, realm, &role).map_err(store_err)? {
                return Err(IdentityError::UnknownRole(role.clone()));
            }
            require_covers(c, &caller, realm, &role)?;
            if a.role == role {
                return Err(IdentityError::AlreadyInState(
                    format!("the account {}", a.email),
                    "in that role",
                ));
            }
            refuse_last_owner(c, realm, a)?;
            c.execute(
                "UPDATE users SET role = ?2, changed_us = ?3 WHERE id = ?1",
                params![a.id.as_str(), role, now],
            )
            .map_err(store_err)?;
            let ended = end_sessions_of(c, &a.id, now).map_err(store_err)?;
            let after = Account {
                role: role.clone(),
                ..a.clone()
            };
            Ok((
                serde_json::json!({ "from": a.role, "to": role, "sessions_ended": ended }),
                after,
            ))
        }),
    )
}

/// Replaces an account's password with a new one-time password (returned, shown once) and
/// ends its sessions.
///
/// # Errors
/// Permission, no such account, or a storage fault.
pub fn reset_password_blocking<D: Door>(
    door: &D,
    key: &str,
) -> Result<(Account, Password), IdentityError> {
    door.caller().require(manage(door.realm()))?;
    let one_time = password::one_time()?;
    let hash = password::hash_blocking(&one_time)?;
    let account = edit_blocking(
        door,
        key,
        "user.reset_password",
        Box::new(move |c, a, now| {
            c.execute(
                "UPDATE users SET password_hash = ?2, must_change = 1, changed_us = ?3 \
                 WHERE id = ?1",
                params![a.id.as_str(), hash, now],
            )
            .map_err(store_err)?;
            let ended = end_sessions_of(c, &a.id, now).map_err(store_err)?;
            let after = Account {
                must_change_password: true,
                ..a.clone()
            };
            Ok((serde_json::json!({ "sessions_ended": ended }), after))
        }),
    )?;
    Ok((account, one_time))
}

/// The stored password hash and state of an account, for signing in.
pub(crate) struct Credentials {
    pub account: Account,
    pub password_hash: Option<String>,
}

pub(crate) fn credentials(c: &Connection, id: &UserId) -> rusqlite::Result<Option<Credentials>> {
    c.query_row(
        &format!("SELECT {COLUMNS}, password_hash FROM users WHERE id = ?1"),
        [id.as_str()],
        |r| {
            Ok(Credentials {
                account: from_row(r)?,
                password_hash: r.get(7)?,
            })
        },
    )
    .optional()
}
