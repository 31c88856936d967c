//! The role → permission tables of `RULES.md`, as data in one place. The policy asks
//! "does any role carry this permission", never "is this role X".

use crate::vocab::Permission;
use crate::RoleId;

/// An Entra (directory) role template and what it permits.
pub struct EntraRole {
    pub id: &'static str,
    pub name: &'static str,
    pub permissions: &'static [Permission],
}

/// An Azure RBAC role and whether it may open Azure support requests (R8).
pub struct AzureRole {
    pub id: &'static str,
    pub name: &'static str,
    pub may_open_support_requests: bool,
}

pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";

pub const ENTRA_ROLES: &[EntraRole] = &[
    EntraRole {
        id: GLOBAL_ADMINISTRATOR,
        name: "Global Administrator",
        permissions: &[Permission::SupportTickets, Permission::ServiceHealth],
    },
    EntraRole {
        id: "f023fd81-a637-4b56-95fd-791ac0226033",
        name: "Service Support Administrator",
        permissions: &[Permission::SupportTickets, Permission::ServiceHealth],
    },
    EntraRole {
        id: "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        name: "Helpdesk Administrator",
        permissions: &[Permission::SupportTickets, Permission::ServiceHealth],
    },
    EntraRole {
        id: "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
        name: "Global Reader",
        permissions: &[Permission::ServiceHealth],
    },
    EntraRole { id: "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", name: "Directory Readers", permissions: &[] },
];

pub const AZURE_ROLES: &[AzureRole] = &[
    AzureRole { id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", name: "Owner", may_open_support_requests: true },
    AzureRole { id: "b24988ac-6180-42a0-ab88-20f7382dd24c", name: "Contributor", may_open_support_requests: true },
    AzureRole {
        id: "cfd33db0-3dd1-45e3-aa9d-cdbdf3b6f24e",
        name: "Support Request Contributor",
        may_open_support_requests: true,
    },
    AzureRole { id: "acdd72a7-3385-48ef-bd42-f606fba81ae7", name: "Reader", may_open_support_requests: false },
];

/// Whether an Entra role carries a permission. Unknown roles carry nothing.
pub fn entra_role_permits(role: &str, permission: Permission) -> bool {
    ENTRA_ROLES.iter().any(|r| r.id == role && r.permissions.contains(&permission))
}

/// Whether an Azure role may open support requests. Unknown roles may not.
pub fn azure_role_may_open_support(role: &RoleId) -> bool {
    AZURE_ROLES.iter().any(|r| r.id == role.as_str() && r.may_open_support_requests)
}

/// A role's display name, for messages.
pub fn role_name(role: &RoleId) -> &'static str {
    ENTRA_ROLES
        .iter()
        .map(|r| (r.id, r.name))
        .chain(AZURE_ROLES.iter().map(|r| (r.id, r.name)))
        .find(|(id, _)| *id == role.as_str())
        .map_or("unknown role", |(_, n)| n)
}
