"""Staff: employees, roles and permissions (who may act)."""

from fynlo_sync.domains.staff.plugin import (
    EMPLOYEES,
    EMPLOYEES_COLLECTION,
    StaffPlugin,
    StaffSettings,
    employee_permissions,
)
from fynlo_sync.domains.staff.roles import PERMISSIONS, ROLE_ORDER, ROLES, permissions_of_role

__all__ = [
    "EMPLOYEES",
    "EMPLOYEES_COLLECTION",
    "PERMISSIONS",
    "ROLES",
    "ROLE_ORDER",
    "StaffPlugin",
    "StaffSettings",
    "employee_permissions",
    "permissions_of_role",
]
