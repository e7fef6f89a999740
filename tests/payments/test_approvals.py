"""Manager approval with the staff plugin: a refund above the tenant's limit needs an
active employee holding ``refund.above_limit``, what the offline risk limits hold back
needs ``payment.offline``, and closing a drawer needs ``drawer.close`` -- decided by the
op's actor (the employee signed in for it), on the terminal and on the server alike. The
free-text ``approved_by`` counts only without the staff plugin (test_cash_ledger)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin
from fynlo_sync.domains.staff import StaffPlugin
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport

T0 = 1_700_000_000_000


def _push(server: ServerReplica, node: str, ops: list[dict[str, Any]]) -> list[Any]:
    """Push raw ops as ``node`` (no terminal in between: the server decides alone)."""
    first = server.store.high_water("t1", node) + 1
    built = [
        Op(
            op_id=f"{node}-{first + k}",
            node_id=node,
            seq=first + k,
            hlc=to_wire(pack(T0 + 10_000 + first + k, 0)),
            base_seq=server.store.cursor("t1"),
            kind="command",
            **spec,
        )
        for k, spec in enumerate(ops)
    ]
    return list(server.push("t1", Batch.of(node, built)).outcomes)


@pytest.fixture
def world(tmp_path: Path) -> tuple[ServerReplica, Terminal]:
    registry = conflict.registry([OrdersPlugin(), StaffPlugin(), PaymentsPlugin()])
    clock = ManualClock(start_ms=T0, tick_ms=1)
    server = ServerReplica(MemoryServerStore(), registry, now_ms=clock)  # online: no delay
    people = [("m1", "manager"), ("m2", "manager"), ("v1", "supervisor"), ("s1", "staff")]
    outcomes = _push(
        server,
        "server",
        [
            {
                "collection": "employees",
                "record_id": who,
                "name": "add",
                "args": {"name": who.upper(), "role": role},
            }
            for who, role in people
        ]
        + [{"collection": "employees", "record_id": "m2", "name": "deactivate", "args": {}}],
    )
    assert {o.status for o in outcomes} == {"applied"}
    store = SqliteTerminalStore(tmp_path / "till.db", "till")
    till = Terminal(
        store,
        registry,
        LoopbackTransport(server, "t1", "till"),
        wall=clock,
        rng=random.Random(1),
    )
    till.sync()
    till.actor = "s1"
    till.command("orders", "o1", "open", {"currency": "GBP"})
    till.command(
        "orders", "o1", "add_line", {"line_id": "l1", "item": "Wine", "qty": 1, "unit_price": 9000}
    )
    till.command(
        "orders", "o1", "payment_cash", {"attempt_id": "c1", "amount": 9000, "tendered": 9000}
    )
    till.sync()
    return server, till


def _refused(call: Any) -> tuple[str, Any]:
    with pytest.raises(RejectedOpError) as info:
        call()
    return info.value.extra["reason"], info.value.extra.get("permission")


def _refund(till: Terminal, refund_id: str, amount: int, **extra: Any) -> Any:
    args = {"attempt_id": "c1", "refund_id": refund_id, "amount": amount, **extra}
    return till.command("orders", "o1", "payment_refund", args)


def test_a_refund_above_the_limit_needs_an_employee_holding_the_permission(world: Any) -> None:
    server, till = world
    pending = len(till.pending())
    # Staff s1, even naming a manager in approved_by: refused at once, nothing queued.
    assert _refused(lambda: _refund(till, "r1", 6000, approved_by="m1")) == (
        "forbidden",
        "refund.above_limit",
    )
    assert len(till.pending()) == pending
    _refund(till, "small", 100)  # below the limit: no approval needed
    till.sync()
    # The server decides alone the same way: a raw op by staff is refused, naming it.
    (outcome,) = _push(
        server,
        "till-x",
        [
            {
                "collection": "orders",
                "record_id": "o1",
                "name": "payment_refund",
                "args": {"attempt_id": "c1", "refund_id": "r2", "amount": 6000},
                "actor": "s1",
            }
        ],
    )
    assert (outcome.status, outcome.reason) == ("rejected", "forbidden")
    assert "refund.above_limit" in (outcome.detail or "")
    # A device-level op (no actor) is refused too once employees decide.
    (anonymous,) = _push(
        server,
        "till-x",
        [
            {
                "collection": "orders",
                "record_id": "o1",
                "name": "payment_refund",
                "args": {
                    "attempt_id": "c1",
                    "refund_id": "r3",
                    "amount": 6000,
                    "approved_by": "m1",
                },
            }
        ],
    )
    assert (anonymous.status, anonymous.reason) == ("rejected", "forbidden")
    till.actor = "m2"  # a manager, but deactivated
    assert _refused(lambda: _refund(till, "r1", 6000))[0] == "forbidden"
    till.actor = "m1"  # the manager signs in for the refund: the approver is the actor
    _refund(till, "r1", 6000, approved_by="someone else")
    till.sync()
    order = till.get("orders", "o1")
    assert order is not None
    refunds = order.fields["payments"]["c1"]["refunds"]
    assert refunds["r1"]["approved_by"] == "m1" and refunds["small"]["approved_by"] is None
    assert [o for o in till.outcomes() if o.status == "rejected"] == []


def test_offline_risk_limits_need_payment_offline(world: Any) -> None:
    _, till = world
    assert _refused(lambda: _refund(till, "r1", 100, offline=True)) == (
        "forbidden",
        "payment.offline",
    )
    till.command("orders", "o2", "open", {"currency": "GBP"})
    till.command(
        "orders",
        "o2",
        "add_line",
        {"line_id": "l1", "item": "Party", "qty": 1, "unit_price": 20000},
    )
    cash = {"attempt_id": "c1", "amount": 20000, "tendered": 20000, "offline": True}
    assert _refused(lambda: till.command("orders", "o2", "payment_cash", cash)) == (
        "forbidden",
        "payment.offline",
    )
    till.actor = "m1"
    till.command("orders", "o2", "payment_cash", cash)
    order = till.get("orders", "o2")
    assert order is not None and order.fields["payments"]["c1"]["approved_by"] == "m1"


def test_closing_a_drawer_needs_drawer_close(world: Any) -> None:
    _, till = world
    till.command("drawers", "d1", "drawer_open", {"currency": "GBP", "float": 5000})
    assert _refused(lambda: till.command("drawers", "d1", "drawer_close", {"counted": 5000})) == (
        "forbidden",
        "drawer.close",
    )
    till.actor = "v1"  # a supervisor holds it
    till.command("drawers", "d1", "drawer_close", {"counted": 5000})
    till.sync()
    drawer = till.get("drawers", "d1")
    assert drawer is not None and drawer.fields["status"] == "closed"
    assert [o for o in till.outcomes() if o.status == "rejected"] == []
