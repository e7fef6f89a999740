"""The payments plugin's rules that a payment session's ``refund`` (protocol 25.7) takes
from the registry it runs in (:meth:`ProvidersPlugin.beside`): a session made before the
refund limit was kept on it takes the plugin's current limit (never none), and a refund
the server finds made offline (19.4: received more than ``offline_after_ms`` after its
HLC's time) needs a manager (``payment.offline``). Real sync: an SQLite terminal, the
server replica, the loopback transport; the server writes the session as its effects do."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin, PaymentsSettings
from fynlo_sync.domains.payments.attempts import OFFLINE_OVERRIDE
from fynlo_sync.domains.payments.providers.plugin import SESSIONS, ProvidersPlugin
from fynlo_sync.effects import Draft
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op
from fynlo_sync.plugins import CommandContext, Registry
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport

T0 = 1_700_000_000_000

#: A card payment of 8000 taken, as a session written before ``refund_limit`` was kept.
OLD_SESSION = {
    "order_id": "o1",
    "method": "card",
    "provider": "stripe",
    "provider_id": "pi_old",
    "status": "succeeded",
    "amount": 8000,
    "currency": "GBP",
    "received": 8000,
}


def _registry(limit: int = 2000) -> Registry:
    payments = PaymentsPlugin(PaymentsSettings(refund_manager_limit=limit))
    return conflict.registry([OrdersPlugin(), payments, ProvidersPlugin()])


def _world(tmp_path: Path, registry: Registry) -> tuple[Terminal, ServerReplica, ManualClock]:
    server_now = ManualClock(start_ms=T0)
    server = ServerReplica(MemoryServerStore(), registry, now_ms=server_now)
    till = Terminal(
        SqliteTerminalStore(tmp_path / "till.db", "till"),
        registry,
        LoopbackTransport(server, "t1", "till"),
        wall=ManualClock(start_ms=T0, tick_ms=1),
        rng=random.Random(7),
    )
    done = server.author("t1", [Draft.put(SESSIONS, "pay-1", OLD_SESSION)])
    assert [o.status for o in done.outcomes] == ["applied"]
    till.sync()
    return till, server, server_now


def _refunds(server: ServerReplica) -> dict[str, Any]:
    found = server.read("t1", SESSIONS, "pay-1")
    assert found is not None
    return dict(found.fields.get("refunds") or {})


def test_a_session_without_a_stored_limit_takes_the_plugins_current_limit(
    tmp_path: Path,
) -> None:
    till, server, _now = _world(tmp_path, _registry(limit=2000))
    seen = till.get(SESSIONS, "pay-1")
    assert seen is not None and "refund_limit" not in seen.fields
    with pytest.raises(RejectedOpError) as refused:
        till.command(SESSIONS, "pay-1", "refund", {"refund_id": "big", "amount": 2001})
    assert refused.value.extra["reason"] == "manager-required"
    till.command(SESSIONS, "pay-1", "refund", {"refund_id": "at", "amount": 2000})
    args = {"refund_id": "ok", "amount": 2001, "approved_by": "Mo"}
    till.command(SESSIONS, "pay-1", "refund", args)
    till.sync()
    assert till.outcomes() == []  # only ops not simply applied are listed
    asked = _refunds(server)
    assert sorted(asked) == ["at", "ok"]
    assert (asked["at"]["approved_by"], asked["ok"]["approved_by"]) == (None, "Mo")


def test_another_current_limit_is_the_one_applied(tmp_path: Path) -> None:
    """The limit is the payments plugin's, as configured now (not a constant)."""
    till, _server, _now = _world(tmp_path, _registry(limit=6000))
    till.command(SESSIONS, "pay-1", "refund", {"refund_id": "r", "amount": 6000})
    with pytest.raises(RejectedOpError) as refused:
        till.command(SESSIONS, "pay-1", "refund", {"refund_id": "s", "amount": 2001})
    assert refused.value.extra["reason"] == "refund-above-captured"  # 2000 left
    till.command(SESSIONS, "pay-1", "refund", {"refund_id": "s", "amount": 2000})
    till.sync()
    assert till.outcomes() == []  # only ops not simply applied are listed


def test_without_the_payments_plugin_there_is_no_limit(tmp_path: Path) -> None:
    registry = conflict.registry([OrdersPlugin(), ProvidersPlugin()])
    till, server, _now = _world(tmp_path, registry)
    till.command(SESSIONS, "pay-1", "refund", {"refund_id": "all", "amount": 8000})
    till.sync()
    assert till.outcomes() == []
    assert _refunds(server)["all"]["amount"] == 8000


def test_a_refund_the_server_finds_made_offline_needs_a_manager(tmp_path: Path) -> None:
    """The terminal claims nothing (there is no ``offline`` argument), but its requests
    reach the server ten minutes after their HLC's time: the one without an approval is
    refused ``manager-required``, the approved one is asked with its approver; one
    delivered at once is online."""
    till, server, server_now = _world(tmp_path, _registry(limit=5000))
    till.command(SESSIONS, "pay-1", "refund", {"refund_id": "prompt", "amount": 100})
    server_now.advance(1_000)
    till.sync()
    till.command(SESSIONS, "pay-1", "refund", {"refund_id": "late", "amount": 100})
    args = {"refund_id": "approved", "amount": 100, "approved_by": "Mo"}
    till.command(SESSIONS, "pay-1", "refund", args)
    server_now.advance(10 * 60_000)
    till.sync()
    assert [(o.status, o.reason) for o in till.outcomes()] == [("rejected", "manager-required")]
    asked = _refunds(server)
    assert sorted(asked) == ["approved", "prompt"]
    assert (asked["prompt"]["approved_by"], asked["approved"]["approved_by"]) == (None, "Mo")
    late = till.get(SESSIONS, "pay-1")
    assert late is not None and "late" not in late.fields["refunds"]


def test_with_actors_checked_the_offline_approver_is_the_actor() -> None:
    """With an actor policy the op's actor must hold ``payment.offline`` (``forbidden``
    names it) and becomes the refund's ``approved_by``; an ``approved_by`` argument is not
    an approval."""
    refund = _registry().collection(SESSIONS).commands["refund"]
    op = Op(
        op_id="till-op-9",
        node_id="till",
        seq=9,
        hlc=to_wire(pack(T0, 0)),
        base_seq=1,
        collection=SESSIONS,
        record_id="pay-1",
        kind="command",
        name="refund",
        args={},
        actor="emp-mo",
    )
    args = {"refund_id": "r", "amount": 100, "approved_by": "someone"}
    late = T0 + 120_001

    def run(permissions: frozenset[str]) -> dict[str, Any]:
        ctx = CommandContext(OLD_SESSION, args, op, late, permissions=permissions)
        return refund(ctx)

    with pytest.raises(RejectedOpError) as refused:
        run(frozenset())
    assert (refused.value.extra["reason"], refused.value.extra["permission"]) == (
        "forbidden",
        OFFLINE_OVERRIDE,
    )
    assert run(frozenset({OFFLINE_OVERRIDE}))["refunds"]["r"]["approved_by"] == "emp-mo"
    # Received at the window's edge: online, the argument is recorded as given.
    on_time = CommandContext(OLD_SESSION, args, op, T0 + 120_000, permissions=frozenset())
    assert refund(on_time)["refunds"]["r"]["approved_by"] == "someone"
