"""``actors.json``: roles, permissions and the actor check (protocol sections 20.1, 20.2).

Built by ``generate_vectors.py``. The first vector is the table as data: every permission,
the roles in order with what each grants (``fynlo_sync.domains.staff.roles``), and the
permission each collection names for a command or a write kind (the collections of the
orders, payments, staff and timeclock plugins and ``conflicts``). The others are cases of
the actor check, each decided by :func:`fynlo_sync.engine.authorize` with the real
registry and confirmed through :func:`fynlo_sync.engine.apply_op` (a refused case is
rejected ``forbidden``; an allowed one is not refused for its actor).
"""

from __future__ import annotations

from typing import Any

import msgspec

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin
from fynlo_sync.domains.payments.attempts import derive_money
from fynlo_sync.domains.staff.plugin import StaffPlugin
from fynlo_sync.domains.staff.roles import PERMISSIONS, ROLE_ORDER, ROLES
from fynlo_sync.domains.timeclock.plugin import TimeclockPlugin
from fynlo_sync.engine import apply_op, authorize
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op, Record, Stamp
from fynlo_sync.plugins import Registry
from tests.payments.fixtures import attempt_in, order_with

__all__ = ["TABLE_NAME", "actors_vectors", "registry"]

T0 = 1_700_000_000_000
TABLE_NAME = "the roles, their permissions, and the permission each command needs"
STAMP = Stamp(hlc=to_wire(pack(T0, 0)), node_id="server", seq=1)


def registry() -> Registry:
    return conflict.registry([OrdersPlugin(), PaymentsPlugin(), StaffPlugin(), TimeclockPlugin()])


def _employee(employee_id: str, role: str, *, active: bool = True, deleted: bool = False) -> Record:
    fields = {
        "name": employee_id,
        "role": role,
        "active": active,
        "pin_set": True,
        "wage_per_hour": None,
        "currency": "GBP",
        "uk_opt_out": False,
        "added_by": "emp-owner",
    }
    return Record(
        collection="employees",
        record_id=employee_id,
        fields={} if deleted else fields,
        stamps={} if deleted else {name: STAMP for name in sorted(fields)},
        deleted=deleted,
        deleted_stamp=STAMP if deleted else None,
        version=1,
    )


EMPLOYEES = {
    "emp-staff": _employee("emp-staff", "staff"),
    "emp-super": _employee("emp-super", "supervisor"),
    "emp-manager": _employee("emp-manager", "manager"),
    "emp-owner": _employee("emp-owner", "owner"),
    "emp-gone": _employee("emp-gone", "manager", active=False),
    "emp-chef": _employee("emp-chef", "chef"),
    "emp-deleted": _employee("emp-deleted", "owner", deleted=True),
}

#: (what, collection, kind, command name or None, fields, args): one op of each need.
OPS: list[tuple[str, str, str, str | None, Any, Any]] = [
    ("punch in", "timecards", "command", "punch", None, {"punch_id": "p1", "type": "in"}),
    ("close a drawer", "drawers", "command", "drawer_close", None, {"counted": 5000}),
    ("resolve a conflict", "conflicts", "command", "resolve", None, {"take": "server"}),
    ("decide on overtime", "timecards", "command", "decide", None, {"decision": "approve"}),
    ("add an employee", "employees", "command", "add", None, {"name": "Ann", "role": "staff"}),
    ("patch an employee", "employees", "patch", None, {"name": "Ann B"}, None),
    (
        "add a line (no permission)",
        "orders",
        "command",
        "add_line",
        None,
        {"line_id": "l1", "item": "Fish", "qty": 1, "unit_price": 1000},
    ),
]


def _op(
    n: int,
    collection: str,
    kind: str,
    name: str | None,
    fields: Any,
    args: Any,
    *,
    actor: str | None,
    node: str = "till-a",
) -> Op:
    return Op(
        op_id=f"{node}-op-{n}",
        node_id=node,
        seq=n,
        hlc=to_wire(pack(T0 + n * 1000, 0)),
        base_seq=0,
        collection=collection,
        record_id=f"{collection[:3]}-1",
        kind=kind,  # type: ignore[arg-type]
        fields=fields,
        name=name,
        args=args,
        **({} if actor is None else {"actor": actor}),
    )


def _decide(reg: Registry, op: Op, actor: Record | None) -> dict[str, Any]:
    try:
        authorize(op, reg, actor)
    except RejectedOpError as exc:
        assert exc.extra["reason"] == "forbidden", exc
        result = apply_op(None, op, reg, 7, actor=actor)
        assert result.status == "rejected" and result.reason == "forbidden", result
        return {
            "status": "rejected",
            "reason": "forbidden",
            "permission": exc.extra.get("permission"),
        }
    result = apply_op(None, op, reg, 7, actor=actor)
    assert result.reason != "forbidden", result
    return {"status": "allowed"}


def _table(reg: Registry) -> dict[str, Any]:
    needs = {}
    for name in sorted(reg.collection_names):
        permissions = dict(sorted(reg.collection(name).permissions.items()))
        if permissions:
            needs[name] = permissions
    return {
        "name": TABLE_NAME,
        "permissions": sorted(PERMISSIONS),
        "roles": [{"role": role, "grants": sorted(ROLES[role])} for role in ROLE_ORDER],
        "needs": needs,
    }


def actors_vectors() -> list[dict[str, Any]]:
    reg = registry()
    table = _table(reg)
    out: list[dict[str, Any]] = [table]
    cases: list[tuple[str, Op, Record | None]] = []
    n = 0
    for employee_id in ("emp-staff", "emp-super", "emp-manager", "emp-owner", "emp-chef"):
        role = EMPLOYEES[employee_id].fields["role"]
        for what, collection, kind, name, fields, args in OPS:
            n += 1
            op = _op(n, collection, kind, name, fields, args, actor=employee_id)
            cases.append((f"{role}: {what}", op, EMPLOYEES[employee_id]))
    punch, close, _, _, _, _, line = OPS
    for what, spec in (("a needed permission", close), ("no permission needed", line)):
        n += 1
        op = _op(n, *spec[1:], actor=None)
        cases.append((f"no actor, {what}", op, None))
        n += 1
        op = _op(n, *spec[1:], actor=None, node="server")
        cases.append((f"the server's own op without an actor, {what}", op, None))
        n += 1
        op = _op(n, *spec[1:], actor="emp-nobody")
        cases.append((f"an unknown actor, {what}", op, None))
        n += 1
        op = _op(n, *spec[1:], actor="emp-gone")
        cases.append((f"an inactive manager, {what}", op, EMPLOYEES["emp-gone"]))
        n += 1
        op = _op(n, *spec[1:], actor="emp-deleted")
        cases.append((f"a deleted owner, {what}", op, EMPLOYEES["emp-deleted"]))
        n += 1
        op = _op(n, *spec[1:], actor="emp-staff", node="server")
        cases.append(
            (
                f"the server's own op with a staff actor is checked, {what}",
                op,
                EMPLOYEES["emp-staff"],
            )
        )
    for name, op, actor in cases:
        out.append(
            {
                "name": name,
                "op": msgspec.to_builtins(op),
                "actor": None if actor is None else msgspec.to_builtins(actor),
                "expect": _decide(reg, op, actor),
            }
        )
    # "actor": null on the wire is the same as no actor.
    n += 1
    nulled = msgspec.to_builtins(_op(n, *punch[1:], actor=None))
    nulled["actor"] = None
    out.append(
        {
            "name": '"actor": null is no actor, a needed permission',
            "op": nulled,
            "actor": None,
            "expect": _decide(reg, msgspec.convert(nulled, Op), None),
        }
    )
    out.extend(_rule_vectors(reg))
    _check(out)
    return out


def _order(total: int, attempt: dict[str, Any] | None) -> Record:
    """Order ``o-1`` of one line of ``total``, with ``attempt`` as ``a1`` (if any)."""
    row = order_with({} if attempt is None else {"a1": attempt})
    fields = dict(row.fields)
    fields["lines"] = {"l1": {"item": "Fish", "qty": 1, "unit_price": total, "sent": True}}
    fields["total"] = total
    fields.update(derive_money(fields))
    return msgspec.structs.replace(row, fields=fields)


def _paid(total: int) -> Record:
    attempt = attempt_in("captured")
    attempt.update(amount=total, tip=0, captured=total)
    return _order(total, attempt)


#: (name, order, actor id or None, command, args): the manager rules of 19.4 that need a
#: permission only in some cases (refund limit 5000, offline cash limit 10000 by default).
RULES: list[tuple[str, Record, str | None, str, dict[str, Any]]] = [
    (
        "rule: a refund above the limit by staff needs refund.above_limit",
        _paid(9000),
        "emp-staff",
        "refund",
        {"attempt_id": "a1", "refund_id": "r1", "amount": 6000},
    ),
    (
        "rule: a refund above the limit by a manager: the manager is its approver",
        _paid(9000),
        "emp-manager",
        "refund",
        {"attempt_id": "a1", "refund_id": "r1", "amount": 6000},
    ),
    (
        "rule: a refund above the limit without an actor needs refund.above_limit",
        _paid(9000),
        None,
        "refund",
        {"attempt_id": "a1", "refund_id": "r1", "amount": 6000, "approved_by": "Sam"},
    ),
    (
        "rule: a refund within the limit by staff needs no permission",
        _paid(9000),
        "emp-staff",
        "refund",
        {"attempt_id": "a1", "refund_id": "r1", "amount": 300},
    ),
    (
        "rule: a refund made offline by a supervisor needs payment.offline",
        _paid(9000),
        "emp-super",
        "refund",
        {"attempt_id": "a1", "refund_id": "r1", "amount": 300, "offline": True},
    ),
    (
        "rule: a refund made offline by a manager",
        _paid(9000),
        "emp-manager",
        "refund",
        {"attempt_id": "a1", "refund_id": "r1", "amount": 300, "offline": True},
    ),
    (
        "rule: cash above the offline limit taken offline by staff needs payment.offline",
        _order(20000, None),
        "emp-staff",
        "cash",
        {"attempt_id": "a1", "amount": 15000, "tendered": 15000, "offline": True},
    ),
    (
        "rule: cash above the offline limit taken offline by an owner",
        _order(20000, None),
        "emp-owner",
        "cash",
        {"attempt_id": "a1", "amount": 15000, "tendered": 15000, "offline": True},
    ),
    (
        "rule: a void made offline by staff needs payment.offline",
        _order(1000, attempt_in("authorised")),
        "emp-staff",
        "cancel",
        {"attempt_id": "a1", "reason": "requested_by_customer", "offline": True},
    ),
    (
        "rule: a void made offline by a manager",
        _order(1000, attempt_in("authorised")),
        "emp-manager",
        "cancel",
        {"attempt_id": "a1", "reason": "requested_by_customer", "offline": True},
    ),
]


def _rule_vectors(reg: Registry) -> list[dict[str, Any]]:
    out = []
    for n, (name, row, actor_id, command, args) in enumerate(RULES, start=100):
        op = _op(n, "orders", "command", f"payment_{command}", None, args, actor=actor_id)
        op = msgspec.structs.replace(op, record_id="o-1")
        actor = None if actor_id is None else EMPLOYEES[actor_id]
        result = apply_op(row, op, reg, 9, actor=actor)
        if result.status == "applied":
            assert result.record is not None
            expect: dict[str, Any] = {
                "status": "applied",
                "payments": result.record.fields["payments"],
            }
        else:
            assert result.reason == "forbidden" and result.error is not None, result
            expect = {
                "status": "rejected",
                "reason": "forbidden",
                "permission": result.error.extra.get("permission"),
            }
        out.append(
            {
                "name": name,
                "op": msgspec.to_builtins(op),
                "actor": None if actor is None else msgspec.to_builtins(actor),
                "order": msgspec.to_builtins(row.fields),
                "expect": expect,
            }
        )
    return out


def _check(vectors: list[dict[str, Any]]) -> None:
    """Hand-written expectations for 20.1 and 20.2."""
    table = vectors[0]
    grants = {r["role"]: set(r["grants"]) for r in table["roles"]}
    assert [r["role"] for r in table["roles"]] == ["staff", "supervisor", "manager", "owner"]
    assert grants["staff"] == {"timeclock.punch"}
    assert grants["supervisor"] == grants["staff"] | {"drawer.close", "conflict.resolve"}
    assert grants["manager"] == grants["supervisor"] | {
        "refund.above_limit",
        "payment.offline",
        "timeclock.approve",
        "employee.manage",
    }
    assert grants["owner"] == set(table["permissions"])
    assert table["needs"]["drawers"]["drawer_close"] == "drawer.close"
    assert table["needs"]["employees"]["patch"] == "employee.manage"
    by_name = {v["name"]: v["expect"] for v in vectors[1:]}
    allowed = {k for k, e in by_name.items() if e["status"] == "allowed"}
    assert "staff: punch in" in allowed and "staff: close a drawer" not in allowed
    assert by_name["staff: close a drawer"]["permission"] == "drawer.close"
    assert "supervisor: close a drawer" in allowed
    assert by_name["supervisor: add an employee"]["permission"] == "employee.manage"
    assert "manager: decide on overtime" in allowed and "owner: patch an employee" in allowed
    assert by_name["chef: punch in"]["permission"] == "timeclock.punch"
    assert "chef: add a line (no permission)" in allowed
    assert "no actor, no permission needed" in allowed
    assert "the server's own op without an actor, a needed permission" in allowed
    assert by_name["no actor, a needed permission"]["permission"] == "drawer.close"
    for who in ("an unknown actor", "an inactive manager", "a deleted owner"):
        assert by_name[f"{who}, no permission needed"] == {
            "status": "rejected",
            "reason": "forbidden",
            "permission": None,
        }
    checked = "the server's own op with a staff actor is checked, a needed permission"
    assert by_name[checked]["permission"] == "drawer.close"
    assert by_name['"actor": null is no actor, a needed permission']["permission"] == (
        "timeclock.punch"
    )
