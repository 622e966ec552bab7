//! Permissions and roles: what a caller may do, as a set of named permissions.
//!
//! Every domain operation asks its context for the permission it needs
//! ([`Caller::require`]), so the CLI and the web reach the same answer. Built-in roles are
//! fixed sets; a tenant's custom roles are sets of the same names, stored in its file.

use serde::Serialize;

macro_rules! permissions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One thing a caller may be allowed to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Permission {
            $($(#[$doc])* $variant,)*
        }

        impl Permission {
            /// Every permission, in a stable order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The permission's stable name (`users.manage`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }

            /// The permission named `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Permission::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

permissions! {
    /// See the people of the tenant and their roles.
    UsersRead = "users.read",
    /// Create, disable and re-role people; reset their passwords; end their sessions.
    UsersManage = "users.manage",
    /// Give or take away the owner role.
    OwnersManage = "owners.manage",
    /// Define custom roles.
    RolesManage = "roles.manage",
    /// See API tokens (never their secrets).
    TokensRead = "tokens.read",
    /// Make and revoke API tokens.
    TokensManage = "tokens.manage",
    /// Read the audit journal.
    AuditRead = "audit.read",
    /// Export the audit journal.
    AuditExport = "audit.export",
    /// Verify the audit journal.
    AuditVerify = "audit.verify",
    /// Read the tenant's settings and policy.
    SettingsRead = "settings.read",
    /// Change the tenant's settings and policy (2FA rule, IP lists, timeouts, SSO).
    SettingsManage = "settings.manage",
    /// Grant the vendor time-limited access.
    GrantsManage = "grants.manage",
    /// See status and usage.
    StatusRead = "status.read",
    /// Read the tenant's documents and search them.
    KnowledgeRead = "knowledge.read",
    /// Add and remove documents.
    KnowledgeWrite = "knowledge.write",
    /// Ask the assistant.
    AssistantUse = "assistant.use",
    /// Platform: see tenants (their metadata, never their data).
    TenantsRead = "tenants.read",
    /// Platform: create, suspend, resume and delete tenants.
    TenantsManage = "tenants.manage",
    /// Platform: see platform accounts.
    PlatformUsersRead = "platform.users.read",
    /// Platform: manage platform accounts.
    PlatformUsersManage = "platform.users.manage",
}

/// A set of permissions, as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u64);

impl Permissions {
    pub const fn empty() -> Self {
        Self(0)
    }

    pub fn of(list: &[Permission]) -> Self {
        Self(list.iter().fold(0, |acc, p| acc | (1u64 << (*p as u8))))
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & (1u64 << (p as u8)) != 0
    }

    /// Whether every permission of `other` is also in `self`.
    pub fn covers(self, other: Permissions) -> bool {
        other.0 & !self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::name).collect()
    }

    /// Parses a list of permission names.
    ///
    /// # Errors
    /// The first name that is not a permission.
    pub fn parse_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut set = Self::empty();
        for n in names {
            let p = Permission::parse(n.trim()).ok_or_else(|| n.trim().to_string())?;
            set = set | Self::of(&[p]);
        }
        Ok(set)
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// Where an account lives: the platform (in `system.db`) or one tenant (in its file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    Platform,
    Tenant,
}

/// The built-in roles. Tenant roles and platform roles share names; what they allow
/// depends on the realm.
pub const BUILT_IN: &[&str] = &["owner", "admin", "operator", "auditor"];

/// What a built-in role allows in a realm; `None` if `role` is not built in.
pub fn built_in(realm: Realm, role: &str) -> Option<Permissions> {
    use Permission::*;
    let set = match (realm, role) {
        (Realm::Tenant, "owner") => Permissions::of(&[
            UsersRead,
            UsersManage,
            OwnersManage,
            RolesManage,
            TokensRead,
            TokensManage,
            AuditRead,
            AuditExport,
            AuditVerify,
            SettingsRead,
            SettingsManage,
            GrantsManage,
            StatusRead,
            KnowledgeRead,
            KnowledgeWrite,
            AssistantUse,
        ]),
        (Realm::Tenant, "admin") => Permissions::of(&[
            UsersRead,
            UsersManage,
            RolesManage,
            TokensRead,
            TokensManage,
            AuditRead,
            AuditExport,
            AuditVerify,
            SettingsRead,
            SettingsManage,
            StatusRead,
            KnowledgeRead,
            KnowledgeWrite,
            AssistantUse,
        ]),
        (Realm::Tenant, "operator") => Permissions::of(&[
            UsersRead,
            StatusRead,
            KnowledgeRead,
            KnowledgeWrite,
            AssistantUse,
        ]),
        (Realm::Tenant, "auditor") => Permissions::of(&[
            UsersRead,
            TokensRead,
            AuditRead,
            AuditExport,
            AuditVerify,
            SettingsRead,
            StatusRead,
        ]),
        (Realm::Platform, "owner") => Permissions::of(&[
            TenantsRead,
            TenantsManage,
            PlatformUsersRead,
            PlatformUsersManage,
            OwnersManage,
            AuditRead,
            AuditExport,
            AuditVerify,
            StatusRead,
        ]),
        (Realm::Platform, "admin") => Permissions::of(&[
            TenantsRead,
            TenantsManage,
            PlatformUsersRead,
            PlatformUsersManage,
            AuditRead,
            AuditExport,
            AuditVerify,
            StatusRead,
        ]),
        (Realm::Platform, "operator") => {
            Permissions::of(&[TenantsRead, TenantsManage, PlatformUsersRead, StatusRead])
        }
        (Realm::Platform, "auditor") => Permissions::of(&[
            TenantsRead,
            PlatformUsersRead,
            AuditRead,
            AuditExport,
            AuditVerify,
            StatusRead,
        ]),
        _ => return None,
    };
    Some(set)
}

/// Everything a realm knows: what the operator at the machine's console may do there.
pub fn everything(realm: Realm) -> Permissions {
    built_in(realm, "owner").unwrap_or_default()
}

/// Who is asking, and what they may do. Every domain operation checks it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: crate::audit::Actor,
    pub permissions: Permissions,
}

/// The caller lacks a permission the operation needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not allowed: this needs the permission {0}")]
pub struct Denied(pub &'static str);

impl Caller {
    pub fn new(actor: crate::audit::Actor, permissions: Permissions) -> Self {
        Self { actor, permissions }
    }

    /// The operator at the command line: root of the machine, every permission of the realm.
    pub fn operator(realm: Realm) -> Self {
        Self::new(crate::audit::Actor::cli(), everything(realm))
    }

    /// The server itself (first-start provisioning, scheduled work).
    pub fn system(realm: Realm) -> Self {
        Self::new(crate::audit::Actor::system(), everything(realm))
    }

    /// # Errors
    /// [`Denied`] naming the missing permission.
    pub fn require(&self, p: Permission) -> Result<(), Denied> {
        if self.permissions.contains(p) {
            Ok(())
        } else {
            Err(Denied(p.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_the_bit_set() {
        assert!(Permission::ALL.len() <= 64);
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(*p));
        }
        let set = Permissions::parse_names(["users.read", " audit.read "]).unwrap();
        assert_eq!(set.names(), ["users.read", "audit.read"]);
        assert_eq!(
            Permissions::parse_names(["users.read", "users.delete_everything"]),
            Err("users.delete_everything".into())
        );
    }

    #[test]
    fn the_auditor_reads_and_changes_nothing() {
        let a = built_in(Realm::Tenant, "auditor").unwrap();
        for p in a.iter() {
            let n = p.name();
            assert!(
                n.ends_with(".read") || n.starts_with("audit."),
                "auditor may {n}"
            );
        }
        assert!(!a.contains(Permission::UsersManage));
        assert!(a.contains(Permission::AuditExport));
    }

    #[test]
    fn roles_nest_and_only_owners_manage_owners() {
        let owner = built_in(Realm::Tenant, "owner").unwrap();
        let admin = built_in(Realm::Tenant, "admin").unwrap();
        let operator = built_in(Realm::Tenant, "operator").unwrap();
        assert!(owner.covers(admin) && admin.covers(operator));
        assert!(!admin.covers(owner));
        assert!(!admin.contains(Permission::OwnersManage));
        assert!(!admin.contains(Permission::GrantsManage));
        // Tenant roles never carry platform powers, nor platform roles tenant data.
        for role in BUILT_IN {
            let t = built_in(Realm::Tenant, role).unwrap();
            assert!(!t.contains(Permission::TenantsManage), "{role}");
            let p = built_in(Realm::Platform, role).unwrap();
            assert!(!p.contains(Permission::KnowledgeRead), "{role}");
            assert!(!p.contains(Permission::UsersManage), "{role}");
        }
        assert!(built_in(Realm::Tenant, "root").is_none());
    }

    #[test]
    fn require_names_the_missing_permission() {
        let c = Caller::new(
            crate::audit::Actor::system(),
            built_in(Realm::Tenant, "auditor").unwrap(),
        );
        assert!(c.require(Permission::AuditRead).is_ok());
        assert_eq!(
            c.require(Permission::TokensManage).unwrap_err().to_string(),
            "not allowed: this needs the permission tokens.manage"
        );
    }
}
