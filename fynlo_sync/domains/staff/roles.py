"""Roles and the named permissions they grant: data, in one table.

A permission is a dotted name a collection's command asks for
(:attr:`fynlo_sync.plugins.Collection.permissions`); a role grants a set of them, each role
everything the one below it grants plus its own.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PERMISSIONS", "ROLES", "ROLE_ORDER", "permissions_of_role"]

#: Every permission, with what it allows.
PERMISSIONS: Final = {
    "timeclock.punch": "clock in and out, take breaks, propose a correction",
    "drawer.close": "close a cash drawer",
    "conflict.resolve": "resolve a parked sync conflict",
    "refund.above_limit": "refund above the tenant's unsupervised limit",
    "payment.offline": "approve what the offline risk limits hold back: cash above the "
    "offline limit, and refunds and voids, taken while the terminal is offline",
    "timeclock.approve": "approve or refuse overtime and punch adjustments",
    "employee.manage": "add, change and deactivate employees, set PINs",
}

ROLE_ORDER: Final = ("staff", "supervisor", "manager", "owner")

ROLES: Final[dict[str, frozenset[str]]] = {
    "staff": frozenset({"timeclock.punch"}),
    "supervisor": frozenset({"timeclock.punch", "drawer.close", "conflict.resolve"}),
    "manager": frozenset(
        {
            "timeclock.punch",
            "drawer.close",
            "conflict.resolve",
            "refund.above_limit",
            "payment.offline",
            "timeclock.approve",
            "employee.manage",
        }
    ),
    "owner": frozenset(PERMISSIONS),
}


def permissions_of_role(role: object) -> frozenset[str]:
    """The permissions ``role`` grants (none for an unknown role)."""
    return ROLES.get(role, frozenset()) if isinstance(role, str) else frozenset()
