"""Employees: the tenant's staff, their roles, and who may act.

One record per employee in ``employees`` (id = the employee id), synced to every terminal.
It holds no secret: a PIN's hash lives only in the server's accounts database
(``server/staff.py``); the record says only whether one is set (``pin_set``).

Commands, each needing ``employee.manage`` (the server's own ops need none: ``fynlo
employee add`` creates the first owner): ``add`` (name, role, wage_per_hour in minor units
with its currency, uk_opt_out), ``set_role``, ``set_wage``, ``deactivate``, ``reactivate``,
and ``pin_changed`` (the server marks ``pin_set``). The plugin's :class:`ActorPolicy` tells
the engine that an op's actor is an employee, active when ``active`` is true, with the
permissions of their role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Final

import msgspec

from fynlo_sync.domains.staff.roles import ROLES, permissions_of_role
from fynlo_sync.errors import IllegalTransitionError, RejectedOpError
from fynlo_sync.plugins import ActorPolicy, Collection, CommandContext, DomainPlugin, Field

__all__ = [
    "EMPLOYEES",
    "EMPLOYEES_COLLECTION",
    "StaffPlugin",
    "StaffSettings",
    "employee_permissions",
]

EMPLOYEES: Final = "employees"


def _bad(message: str, reason: str = "invalid-argument", **extra: Any) -> RejectedOpError:
    return RejectedOpError(message, reason=reason, **extra)


def _role(args: Mapping[str, Any]) -> str:
    role = args.get("role")
    if role not in ROLES:
        raise _bad(f"role must be one of {', '.join(ROLES)}", argument="role")
    assert isinstance(role, str)
    return role


def _wage(args: Mapping[str, Any]) -> dict[str, Any]:
    wage, currency = args.get("wage_per_hour"), args.get("currency")
    if wage is None and currency is None:
        return {}
    if type(wage) is not int or wage < 0:
        raise _bad("wage_per_hour is an integer >= 0 in minor units", argument="wage_per_hour")
    if type(currency) is not str or len(currency) != 3 or not currency.isupper():
        raise _bad("currency must be an ISO 4217 code", argument="currency")
    return {"wage_per_hour": wage, "currency": currency}


def _live(ctx: CommandContext) -> Mapping[str, Any]:
    if ctx.record is None:
        raise _bad("no such employee", reason="record-not-found")
    return ctx.record


def _add(ctx: CommandContext) -> dict[str, Any]:
    if ctx.record is not None:
        raise _bad(f"employee {ctx.op.record_id} exists", reason="duplicate-employee")
    name = ctx.args.get("name")
    if type(name) is not str or not 1 <= len(name) <= 200:
        raise _bad("name is a string of 1 to 200 characters", argument="name")
    opt_out = ctx.args.get("uk_opt_out", False)
    if type(opt_out) is not bool:
        raise _bad("uk_opt_out is a boolean", argument="uk_opt_out")
    return {
        "name": name,
        "role": _role(ctx.args),
        "active": True,
        "pin_set": False,
        "wage_per_hour": None,
        "currency": None,
        **_wage(ctx.args),
        "uk_opt_out": opt_out,
        "added_by": ctx.op.actor_id,
    }


def _set_role(ctx: CommandContext) -> dict[str, Any]:
    _live(ctx)
    return {"role": _role(ctx.args)}


def _set_wage(ctx: CommandContext) -> dict[str, Any]:
    _live(ctx)
    wage = _wage(ctx.args)
    if not wage:
        raise _bad("give wage_per_hour and currency", argument="wage_per_hour")
    return wage


def _active(value: bool) -> Any:
    def run(ctx: CommandContext) -> dict[str, Any]:
        record = _live(ctx)
        if record.get("active") is value:
            raise IllegalTransitionError(
                f"employee {ctx.op.record_id} is already {'active' if value else 'inactive'}",
                reason="illegal-transition",
            )
        return {"active": value}

    run.__name__ = "_reactivate" if value else "_deactivate"
    return run


def _pin_changed(ctx: CommandContext) -> dict[str, Any]:
    _live(ctx)
    pin_set = ctx.args.get("pin_set")
    if type(pin_set) is not bool:
        raise _bad("pin_set is a boolean", argument="pin_set")
    return {"pin_set": pin_set}


EMPLOYEES_COLLECTION: Final = Collection(
    name=EMPLOYEES,
    fields={
        "name": Field("str", required=True, command_only=True),
        "role": Field("str", required=True, command_only=True),
        "active": Field("bool", required=True, command_only=True),
        "pin_set": Field("bool", command_only=True),
        "wage_per_hour": Field("money", command_only=True),
        "currency": Field("str", command_only=True),
        "uk_opt_out": Field("bool", command_only=True),
        "added_by": Field("any", command_only=True),
    },
    strategy="server_wins",
    commands={
        "add": _add,
        "set_role": _set_role,
        "set_wage": _set_wage,
        "deactivate": _active(False),
        "reactivate": _active(True),
        "pin_changed": _pin_changed,
    },
    permissions={
        "add": "employee.manage",
        "set_role": "employee.manage",
        "set_wage": "employee.manage",
        "deactivate": "employee.manage",
        "reactivate": "employee.manage",
        "pin_changed": "employee.manage",
        "put": "employee.manage",
        "patch": "employee.manage",
        "delete": "employee.manage",
    },
)


def employee_permissions(fields: Mapping[str, Any]) -> frozenset[str]:
    return permissions_of_role(fields.get("role"))


class StaffSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``FYNLO_STAFF_OFFLINE_PIN_TTL_S``: how long a terminal may verify an employee's PIN
    offline after they signed in on it online (12 h); ``FYNLO_STAFF_SESSION_IDLE_S``: a
    signed-in employee is signed out after this long without a write (300 s)."""

    offline_pin_ttl_s: Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600)] = 12 * 3600
    session_idle_s: Annotated[int, msgspec.Meta(ge=10, le=24 * 3600)] = 300


class StaffPlugin(DomainPlugin):
    """The tenant's employees; their records decide who may act."""

    name = "staff"
    settings_model: ClassVar[type[msgspec.Struct] | None] = StaffSettings
    server_module: ClassVar[str | None] = "server.staff"

    def collections(self) -> Iterable[Collection]:
        return (EMPLOYEES_COLLECTION,)

    def actor_policy(self) -> ActorPolicy:
        return ActorPolicy(
            collection=EMPLOYEES,
            active=lambda fields: fields.get("active") is True,
            permissions=employee_permissions,
        )
