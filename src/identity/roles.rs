//! A tenant's custom roles: named sets of permissions, beside the built-in ones.

use super::accounts::store_err;
use super::permission::{self, Permission, Permissions, Realm};
use super::IdentityError;
use crate::door::{Audit, Door};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// A role as the roles page lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub built_in: bool,
    pub permissions: Permissions,
    /// Accounts holding it.
    pub holders: i64,
}

/// A custom role's name: 2 to 32 of `a-z`, `0-9` and `-`, starting with a letter, and not a
/// built-in name.
///
/// # Errors
/// Anything else, with the rule.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok = (2..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(IdentityError::BadName(
            "a role name is 2 to 32 lower-case letters, digits and dashes, starting with a letter"
                .into(),
        ));
    }
    if permission::BUILT_IN.contains(&name) {
        return Err(IdentityError::BadName(format!("{name} is a built-in role")));
    }
    Ok(())
}

/// Every role of the tenant, built-in first.
///
/// # Errors
/// Permission, not a tenant, or a storage fault.
pub fn list_blocking<D: Door>(door: &D) -> Result<Vec<Role>, IdentityError> {
    door.caller().require(Permission::UsersRead)?;
    let realm = door.realm();
    door.read_blocking(move |c| {
        let holders = |name: &str| -> Result<i64, IdentityError> {
            c.query_row("SELECT count(*) FROM users WHERE role = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(store_err)
        };
        let mut out = Vec::new();
        for name in permission::BUILT_IN {
            out.push(Role {
                name: (*name).to_string(),
                built_in: true,
                permissions: permission::built_in(realm, name).unwrap_or_default(),
                holders: holders(name)?,
            });
        }
        if realm == Realm::Tenant {
            let mut st = c
                .prepare("SELECT name, permissions FROM roles ORDER BY name")
                .map_err(store_err)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(store_err)?;
            for (name, perms) in rows {
                let permissions = perms
                    .split(',')
                    .filter_map(Permission::parse)
                    .fold(Permissions::empty(), |a, p| a | Permissions::of(&[p]));
                let holders = holders(&name)?;
                out.push(Role {
                    name,
                    built_in: false,
                    permissions,
                    holders,
                });
            }
        }
        Ok(out)
    })
}

/// Defines a custom role. A caller cannot define a role stronger than itself.
///
/// # Errors
/// Permission, a bad or taken name, no permissions, platform-only permissions, or a storage
/// fault.
pub fn create_blocking<D: Door>(
    door: &D,
    name: &str,
    permissions: Permissions,
) -> Result<Role, IdentityError> {
    let caller = door.caller().clone();
    caller.require(Permission::RolesManage)?;
    if door.realm() != Realm::Tenant {
        return Err(IdentityError::BadName(
            "custom roles belong to a tenant".into(),
        ));
    }
    check_name(name)?;
    if permissions == Permissions::empty() {
        return Err(IdentityError::BadName(
            "choose at least one permission".into(),
        ));
    }
    let tenant_wide = permission::everything(Realm::Tenant);
    if let Some(p) = permissions.iter().find(|p| !tenant_wide.contains(*p)) {
        return Err(IdentityError::BadName(format!(
            "{} is a platform permission, not a tenant's",
            p.name()
        )));
    }
    if let Some(p) = permissions
        .iter()
        .find(|p| !caller.permissions.contains(*p))
    {
        return Err(IdentityError::Denied(super::Denied(p.name())));
    }
    let name = name.to_string();
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let taken = c
            .query_row("SELECT 1 FROM roles WHERE name = ?1", [&name], |_| Ok(()))
            .optional()
            .map_err(store_err)?
            .is_some();
        if taken {
            return Err(IdentityError::AlreadyInState(
                format!("role {name}"),
                "defined",
            ));
        }
        let names = permissions.names().join(",");
        c.execute(
            "INSERT INTO roles (name, permissions, created_us) VALUES (?1, ?2, ?3)",
            params![name, names, tx.now_us()],
        )
        .map_err(store_err)?;
        let role = Role {
            name: name.clone(),
            built_in: false,
            permissions,
            holders: 0,
        };
        let audit = Audit::new("role.create", &name)
            .params(serde_json::json!({ "permissions": permissions.names() }));
        Ok((role, audit))
    })
}

/// Removes a custom role nobody holds (and no token uses).
///
/// # Errors
/// Permission, no such role, still held, or a storage fault.
pub fn delete_blocking<D: Door>(door: &D, name: &str) -> Result<(), IdentityError> {
    door.caller().require(Permission::RolesManage)?;
    let name = name.to_string();
    door.change_blocking(move |tx| {
        let c = tx.conn();
        let held: i64 = c
            .query_row(
                "SELECT (SELECT count(*) FROM users WHERE role = ?1) + \
                 (SELECT count(*) FROM tokens WHERE role = ?1 AND revoked_us IS NULL)",
                [&name],
                |r| r.get(0),
            )
            .map_err(store_err)?;
        if held > 0 {
            return Err(IdentityError::AlreadyInState(
                format!("role {name}"),
                "held by an account or a live token; give them another role first",
            ));
        }
        let n = c
            .execute("DELETE FROM roles WHERE name = ?1", [&name])
            .map_err(store_err)?;
        if n == 0 {
            return Err(IdentityError::NotFound(format!("no custom role {name}")));
        }
        Ok(((), Audit::new("role.delete", &name)))
    })
}
