//! Permissions, the built-in roles, role assignments and the authorization decision.
//!
//! The permission catalogue is IoT Central's custom-role catalogue (`howto-manage-users-roles`):
//! one [`Permission`] per checkbox, "Full" being all of an area's boxes. IoT Central never shows
//! these names on the wire, so the stable string names are Gyre's: `<area>.<action>` in
//! kebab-case, e.g. `devices.execute-commands`. They appear in logs, in 403 messages and in the
//! OpenAPI document; never rename one.
//!
//! The built-in roles carry IoT Central's ids and its documented semantics:
//! - administrator: everything;
//! - builder: everything except administration (users, roles, API tokens, application settings,
//!   branding, billing, file upload configuration, enrollment groups, which IoT Central kept under
//!   Administration > Device connection) and data export;
//! - operator: monitor devices, add and delete them and manage their credentials, device groups,
//!   jobs, analytics (raw data) and personal dashboards; device templates read-only; no rules.
//!
//! Decisions where IoT Central is silent: builders and operators get device connectivity at the
//! *instance* level (a device's own credentials and attestation, which adding a device needs) but
//! not at the *global* level (enrollment groups, whose keys derive every device's key).
//!
//! Not owned here: custom roles and organizations. Gyre serves only the three built-in roles, and
//! a role assignment scoped to an organization is refused when a token is issued (see
//! `token::issue`), so [`authorize`] only ever sees application-wide assignments.

use std::fmt;

/// One thing a role may allow. The string form ([`Permission::name`]) is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    DeviceTemplatesView,
    DeviceTemplatesManage,
    DevicesView,
    DevicesUpdate,
    DevicesCreate,
    DevicesDelete,
    DevicesExecuteCommands,
    DevicesViewRawData,
    DeviceGroupsView,
    DeviceGroupsUpdate,
    DeviceGroupsCreate,
    DeviceGroupsDelete,
    /// A device's own connection details: `GET /devices/{id}/credentials` and its attestation.
    DeviceConnectivityReadInstance,
    /// Set or revoke a device's own keys (its individual enrollment).
    DeviceConnectivityManageInstance,
    /// The application's enrollment groups and their group keys.
    DeviceConnectivityReadGlobal,
    DeviceConnectivityManageGlobal,
    JobsView,
    JobsUpdate,
    JobsCreate,
    JobsDelete,
    JobsExecute,
    RulesView,
    RulesUpdate,
    RulesCreate,
    RulesDelete,
    AppSettingsView,
    AppSettingsUpdate,
    AppSettingsCopy,
    AppSettingsDelete,
    AppTemplateExport,
    DeviceFileUpload,
    Billing,
    /// Read the roles (`GET /roles`).
    RolesView,
    /// Create and edit custom roles.
    RolesManage,
    UsersView,
    UsersAdd,
    UsersDelete,
    AppDashboards,
    PersonalDashboards,
    Branding,
    HelpLinks,
    DataExportView,
    DataExportUpdate,
    DataExportCreate,
    DataExportDelete,
    ApiTokensView,
    ApiTokensCreate,
    ApiTokensDelete,
}

impl Permission {
    /// Every permission, in catalogue order.
    pub const ALL: &'static [Permission] = &[
        Permission::DeviceTemplatesView,
        Permission::DeviceTemplatesManage,
        Permission::DevicesView,
        Permission::DevicesUpdate,
        Permission::DevicesCreate,
        Permission::DevicesDelete,
        Permission::DevicesExecuteCommands,
        Permission::DevicesViewRawData,
        Permission::DeviceGroupsView,
        Permission::DeviceGroupsUpdate,
        Permission::DeviceGroupsCreate,
        Permission::DeviceGroupsDelete,
        Permission::DeviceConnectivityReadInstance,
        Permission::DeviceConnectivityManageInstance,
        Permission::DeviceConnectivityReadGlobal,
        Permission::DeviceConnectivityManageGlobal,
        Permission::JobsView,
        Permission::JobsUpdate,
        Permission::JobsCreate,
        Permission::JobsDelete,
        Permission::JobsExecute,
        Permission::RulesView,
        Permission::RulesUpdate,
        Permission::RulesCreate,
        Permission::RulesDelete,
        Permission::AppSettingsView,
        Permission::AppSettingsUpdate,
        Permission::AppSettingsCopy,
        Permission::AppSettingsDelete,
        Permission::AppTemplateExport,
        Permission::DeviceFileUpload,
        Permission::Billing,
        Permission::RolesView,
        Permission::RolesManage,
        Permission::UsersView,
        Permission::UsersAdd,
        Permission::UsersDelete,
        Permission::AppDashboards,
        Permission::PersonalDashboards,
        Permission::Branding,
        Permission::HelpLinks,
        Permission::DataExportView,
        Permission::DataExportUpdate,
        Permission::DataExportCreate,
        Permission::DataExportDelete,
        Permission::ApiTokensView,
        Permission::ApiTokensCreate,
        Permission::ApiTokensDelete,
    ];

    /// The stable name, `<area>.<action>`.
    pub fn name(self) -> &'static str {
        match self {
            Permission::DeviceTemplatesView => "device-templates.view",
            Permission::DeviceTemplatesManage => "device-templates.manage",
            Permission::DevicesView => "devices.view",
            Permission::DevicesUpdate => "devices.update",
            Permission::DevicesCreate => "devices.create",
            Permission::DevicesDelete => "devices.delete",
            Permission::DevicesExecuteCommands => "devices.execute-commands",
            Permission::DevicesViewRawData => "devices.view-raw-data",
            Permission::DeviceGroupsView => "device-groups.view",
            Permission::DeviceGroupsUpdate => "device-groups.update",
            Permission::DeviceGroupsCreate => "device-groups.create",
            Permission::DeviceGroupsDelete => "device-groups.delete",
            Permission::DeviceConnectivityReadInstance => "device-connectivity.read-instance",
            Permission::DeviceConnectivityManageInstance => "device-connectivity.manage-instance",
            Permission::DeviceConnectivityReadGlobal => "device-connectivity.read-global",
            Permission::DeviceConnectivityManageGlobal => "device-connectivity.manage-global",
            Permission::JobsView => "jobs.view",
            Permission::JobsUpdate => "jobs.update",
            Permission::JobsCreate => "jobs.create",
            Permission::JobsDelete => "jobs.delete",
            Permission::JobsExecute => "jobs.execute",
            Permission::RulesView => "rules.view",
            Permission::RulesUpdate => "rules.update",
            Permission::RulesCreate => "rules.create",
            Permission::RulesDelete => "rules.delete",
            Permission::AppSettingsView => "app-settings.view",
            Permission::AppSettingsUpdate => "app-settings.update",
            Permission::AppSettingsCopy => "app-settings.copy",
            Permission::AppSettingsDelete => "app-settings.delete",
            Permission::AppTemplateExport => "app-template.export",
            Permission::DeviceFileUpload => "device-file-upload.manage",
            Permission::Billing => "billing.manage",
            Permission::RolesView => "roles.view",
            Permission::RolesManage => "roles.manage",
            Permission::UsersView => "users.view",
            Permission::UsersAdd => "users.add",
            Permission::UsersDelete => "users.delete",
            Permission::AppDashboards => "app-dashboards.manage",
            Permission::PersonalDashboards => "personal-dashboards.manage",
            Permission::Branding => "branding.manage",
            Permission::HelpLinks => "help-links.manage",
            Permission::DataExportView => "data-export.view",
            Permission::DataExportUpdate => "data-export.update",
            Permission::DataExportCreate => "data-export.create",
            Permission::DataExportDelete => "data-export.delete",
            Permission::ApiTokensView => "api-tokens.view",
            Permission::ApiTokensCreate => "api-tokens.create",
            Permission::ApiTokensDelete => "api-tokens.delete",
        }
    }

    /// The permission with this stable name.
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .find(|permission| permission.name() == name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role: a named set of permissions. `GET /roles` shows `{id, displayName}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Role {
    /// IoT Central's id: a lower-case GUID.
    pub id: &'static str,
    pub display_name: &'static str,
    pub permissions: &'static [Permission],
}

impl Role {
    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// The built-in role with this id.
    pub fn built_in(role_id: &RoleId) -> Option<&'static Role> {
        BUILT_IN_ROLES
            .iter()
            .copied()
            .find(|role| role.id == role_id.as_str())
    }

    /// This role's id as a [`RoleId`], for role assignments.
    pub fn role_id(&self) -> RoleId {
        RoleId(self.id.to_owned())
    }
}

/// Everything, including administration.
pub const ADMINISTRATOR: Role = Role {
    id: "ca310b8d-2f4a-44e0-a36e-957c202cd8d4",
    display_name: "Administrator",
    permissions: Permission::ALL,
};

/// Builds the application: templates, devices, groups, jobs, rules, dashboards.
pub const BUILDER: Role = Role {
    id: "344138e9-8de4-4497-8c54-5237e96d6aaf",
    display_name: "Builder",
    permissions: &[
        Permission::DeviceTemplatesView,
        Permission::DeviceTemplatesManage,
        Permission::DevicesView,
        Permission::DevicesUpdate,
        Permission::DevicesCreate,
        Permission::DevicesDelete,
        Permission::DevicesExecuteCommands,
        Permission::DevicesViewRawData,
        Permission::DeviceGroupsView,
        Permission::DeviceGroupsUpdate,
        Permission::DeviceGroupsCreate,
        Permission::DeviceGroupsDelete,
        Permission::DeviceConnectivityReadInstance,
        Permission::DeviceConnectivityManageInstance,
        Permission::JobsView,
        Permission::JobsUpdate,
        Permission::JobsCreate,
        Permission::JobsDelete,
        Permission::JobsExecute,
        Permission::RulesView,
        Permission::RulesUpdate,
        Permission::RulesCreate,
        Permission::RulesDelete,
        Permission::AppDashboards,
        Permission::PersonalDashboards,
    ],
};

/// Runs the fleet: devices, device groups, jobs, analytics.
pub const OPERATOR: Role = Role {
    id: "ae2c9854-393b-4f97-8c42-479d70ce626e",
    display_name: "Operator",
    permissions: &[
        Permission::DeviceTemplatesView,
        Permission::DevicesView,
        Permission::DevicesUpdate,
        Permission::DevicesCreate,
        Permission::DevicesDelete,
        Permission::DevicesExecuteCommands,
        Permission::DevicesViewRawData,
        Permission::DeviceGroupsView,
        Permission::DeviceGroupsUpdate,
        Permission::DeviceGroupsCreate,
        Permission::DeviceGroupsDelete,
        Permission::DeviceConnectivityReadInstance,
        Permission::DeviceConnectivityManageInstance,
        Permission::JobsView,
        Permission::JobsUpdate,
        Permission::JobsCreate,
        Permission::JobsDelete,
        Permission::JobsExecute,
        Permission::PersonalDashboards,
    ],
};

/// The roles `GET /roles` lists, in IoT Central's order.
pub const BUILT_IN_ROLES: &[&Role] = &[&ADMINISTRATOR, &BUILDER, &OPERATOR];

/// Identifies a role in role assignments and `/roles/{roleId}`.
/// Invariant: a GUID in lower case (`8-4-4-4-12` hex digits), as IoT Central's role ids are;
/// upper-case input is folded, so ids compare by value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("role id must be a GUID (8-4-4-4-12 hexadecimal digits)")]
pub struct InvalidRoleId;

impl RoleId {
    pub fn parse(raw: &str) -> Result<RoleId, InvalidRoleId> {
        const GROUP_LENS: [usize; 5] = [8, 4, 4, 4, 12];
        let groups: Vec<&str> = raw.split('-').collect();
        let valid = groups.len() == GROUP_LENS.len()
            && groups.iter().zip(GROUP_LENS).all(|(group, len)| {
                group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit())
            });
        if !valid {
            return Err(InvalidRoleId);
        }
        Ok(RoleId(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies an organization. IoT Central's rule: `^(?!-)[a-z0-9-]{1,48}[a-z0-9]$` with at
/// most 48 characters, i.e. 2..=48 of lower-case letters, digits and `-`, neither first nor
/// last being `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrganizationId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "organization id must be 2 to 48 lower-case letters, digits or '-', not starting or ending \
     with '-'"
)]
pub struct InvalidOrganizationId;

impl OrganizationId {
    pub fn parse(raw: &str) -> Result<OrganizationId, InvalidOrganizationId> {
        let valid_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        let valid = (2..=48).contains(&raw.len())
            && raw.bytes().all(valid_char)
            && !raw.starts_with('-')
            && !raw.ends_with('-');
        if valid {
            Ok(OrganizationId(raw.to_owned()))
        } else {
            Err(InvalidOrganizationId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A role granted to a token (or, later, a user), optionally within one organization:
/// IoT Central's `{role, organization}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleAssignment {
    pub role: RoleId,
    pub organization: Option<OrganizationId>,
}

impl RoleAssignment {
    /// An application-wide assignment of `role`.
    pub fn app_wide(role: &Role) -> RoleAssignment {
        RoleAssignment {
            role: role.role_id(),
            organization: None,
        }
    }
}

/// A caller lacks the permission a route requires: answer 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the caller's roles do not grant the `{required}` permission")]
pub struct Forbidden {
    pub required: Permission,
}

/// Decides whether a caller holding `roles` may do what `requirement` guards.
///
/// A permission is granted when any application-wide assignment of a built-in role allows it.
/// Fails closed: an unknown role id and an organization-scoped assignment grant nothing (Gyre has
/// neither custom roles nor organizations yet, and issuing refuses both).
pub fn authorize(
    roles: &[RoleAssignment],
    requirement: super::Requirement,
) -> Result<(), Forbidden> {
    let required = match requirement {
        super::Requirement::Public => return Ok(()),
        super::Requirement::Permission(permission) => permission,
    };
    let granted = roles.iter().any(|assignment| {
        assignment.organization.is_none()
            && Role::built_in(&assignment.role).is_some_and(|role| role.allows(required))
    });
    if granted {
        Ok(())
    } else {
        Err(Forbidden { required })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Requirement;

    #[test]
    fn permission_names_are_unique_kebab_case_and_round_trip() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        for (permission, name) in Permission::ALL.iter().zip(&names) {
            assert_eq!(Permission::from_name(name), Some(*permission));
            let (area, action) = name.split_once('.').expect(name);
            for part in [area, action] {
                assert!(
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                    "{name}"
                );
            }
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len(), "duplicate names");
        assert_eq!(Permission::from_name("devices.fly"), None);
    }

    /// The role × permission matrix, one row per permission: (permission, builder, operator).
    /// The administrator has every permission; that is checked separately.
    #[test]
    fn built_in_roles_grant_what_iot_central_documents() {
        use Permission::*;
        #[rustfmt::skip]
        let rows: &[(Permission, bool, bool)] = &[
            (DeviceTemplatesView,              true,  true),
            (DeviceTemplatesManage,            true,  false),
            (DevicesView,                      true,  true),
            (DevicesUpdate,                    true,  true),
            (DevicesCreate,                    true,  true),
            (DevicesDelete,                    true,  true),
            (DevicesExecuteCommands,           true,  true),
            (DevicesViewRawData,               true,  true),
            (DeviceGroupsView,                 true,  true),
            (DeviceGroupsUpdate,               true,  true),
            (DeviceGroupsCreate,               true,  true),
            (DeviceGroupsDelete,               true,  true),
            (DeviceConnectivityReadInstance,   true,  true),
            (DeviceConnectivityManageInstance, true,  true),
            (DeviceConnectivityReadGlobal,     false, false),
            (DeviceConnectivityManageGlobal,   false, false),
            (JobsView,                         true,  true),
            (JobsUpdate,                       true,  true),
            (JobsCreate,                       true,  true),
            (JobsDelete,                       true,  true),
            (JobsExecute,                      true,  true),
            (RulesView,                        true,  false),
            (RulesUpdate,                      true,  false),
            (RulesCreate,                      true,  false),
            (RulesDelete,                      true,  false),
            (AppSettingsView,                  false, false),
            (AppSettingsUpdate,                false, false),
            (AppSettingsCopy,                  false, false),
            (AppSettingsDelete,                false, false),
            (AppTemplateExport,                false, false),
            (DeviceFileUpload,                 false, false),
            (Billing,                          false, false),
            (RolesView,                        false, false),
            (RolesManage,                      false, false),
            (UsersView,                        false, false),
            (UsersAdd,                         false, false),
            (UsersDelete,                      false, false),
            (AppDashboards,                    true,  false),
            (PersonalDashboards,               true,  true),
            (Branding,                         false, false),
            (HelpLinks,                        false, false),
            (DataExportView,                   false, false),
            (DataExportUpdate,                 false, false),
            (DataExportCreate,                 false, false),
            (DataExportDelete,                 false, false),
            (ApiTokensView,                    false, false),
            (ApiTokensCreate,                  false, false),
            (ApiTokensDelete,                  false, false),
        ];
        assert_eq!(
            rows.len(),
            Permission::ALL.len(),
            "every permission has a row"
        );
        for &(permission, builder, operator) in rows {
            assert!(
                ADMINISTRATOR.allows(permission),
                "administrator {permission}"
            );
            assert_eq!(BUILDER.allows(permission), builder, "builder {permission}");
            assert_eq!(
                OPERATOR.allows(permission),
                operator,
                "operator {permission}"
            );
        }
    }

    #[test]
    fn built_in_roles_have_iot_centrals_ids() {
        let ids: Vec<(&str, &str)> = BUILT_IN_ROLES
            .iter()
            .map(|role| (role.id, role.display_name))
            .collect();
        assert_eq!(
            ids,
            [
                ("ca310b8d-2f4a-44e0-a36e-957c202cd8d4", "Administrator"),
                ("344138e9-8de4-4497-8c54-5237e96d6aaf", "Builder"),
                ("ae2c9854-393b-4f97-8c42-479d70ce626e", "Operator"),
            ]
        );
        for role in BUILT_IN_ROLES {
            assert_eq!(RoleId::parse(role.id).unwrap().as_str(), role.id);
            assert_eq!(Role::built_in(&role.role_id()), Some(*role));
        }
    }

    #[test]
    fn role_ids_are_guids() {
        let check = |raw: &str, expected: Option<&str>| {
            assert_eq!(
                RoleId::parse(raw).ok().as_ref().map(RoleId::as_str),
                expected,
                "{raw:?}"
            );
        };
        check(
            "ca310b8d-2f4a-44e0-a36e-957c202cd8d4",
            Some("ca310b8d-2f4a-44e0-a36e-957c202cd8d4"),
        );
        check(
            "CA310B8D-2F4A-44E0-A36E-957C202CD8D4",
            Some("ca310b8d-2f4a-44e0-a36e-957c202cd8d4"),
        );
        check("", None);
        check("administrator", None);
        check("ca310b8d2f4a44e0a36e957c202cd8d4", None);
        check("ca310b8d-2f4a-44e0-a36e-957c202cd8d", None);
        check("ca310b8d-2f4a-44e0-a36e-957c202cd8d4-", None);
        check("ca310b8d-2f4a-44e0-a36e-957c202cd8d4-0000", None);
        check("ga310b8d-2f4a-44e0-a36e-957c202cd8d4", None);
        check("ca310b8d-2f4a-44e0-a36e-957c202cd8d\u{e9}", None);
    }

    #[test]
    fn organization_ids_follow_iot_centrals_pattern() {
        let check = |raw: &str, valid: bool| {
            assert_eq!(OrganizationId::parse(raw).is_ok(), valid, "{raw:?}");
        };
        check("seattle", true);
        check("a1", true);
        check("north-america", true);
        check(&"a".repeat(48), true);
        check(&"a".repeat(49), false);
        check("a", false);
        check("", false);
        check("-seattle", false);
        check("seattle-", false);
        check("Seattle", false);
        check("sea_ttle", false);
    }

    #[test]
    fn authorize_grants_what_some_app_wide_built_in_role_allows() {
        let operator = RoleAssignment::app_wide(&OPERATOR);
        let builder = RoleAssignment::app_wide(&BUILDER);
        let needs = |permission| Requirement::Permission(permission);

        assert_eq!(authorize(&[], Requirement::Public), Ok(()));
        assert_eq!(
            authorize(&[], needs(Permission::DevicesView)),
            Err(Forbidden {
                required: Permission::DevicesView
            })
        );
        assert_eq!(
            authorize(
                std::slice::from_ref(&operator),
                needs(Permission::DevicesDelete)
            ),
            Ok(())
        );
        assert_eq!(
            authorize(
                std::slice::from_ref(&operator),
                needs(Permission::DeviceTemplatesManage)
            ),
            Err(Forbidden {
                required: Permission::DeviceTemplatesManage
            })
        );
        // Roles add up.
        assert_eq!(
            authorize(
                &[operator, builder],
                needs(Permission::DeviceTemplatesManage)
            ),
            Ok(())
        );
    }

    #[test]
    fn authorize_fails_closed_on_unknown_roles_and_organization_scopes() {
        let unknown = RoleAssignment {
            role: RoleId::parse("c495eb57-eb18-489e-9802-62c474e5645c").unwrap(),
            organization: None,
        };
        let scoped = RoleAssignment {
            role: ADMINISTRATOR.role_id(),
            organization: Some(OrganizationId::parse("seattle").unwrap()),
        };
        let requirement = Requirement::Permission(Permission::DevicesView);
        assert!(authorize(&[unknown], requirement).is_err());
        assert!(authorize(&[scoped], requirement).is_err());
    }
}
