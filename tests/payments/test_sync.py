"""Payments over real sync: two offline terminals take cash for one order (SQLite
terminals, the server replica, the loopback transport)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.domains.payments.invariants import check_money
from fynlo_sync.domains.payments.ledger import LEDGER
from fynlo_sync.effects import SERVER_NODE
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from tests.payments.fixtures import payments_registry


def test_two_offline_cash_payments_are_detected_at_sync(tmp_path: Path) -> None:
    registry = payments_registry()
    server = ServerReplica(MemoryServerStore(), registry)
    clock = ManualClock(start_ms=1_700_000_000_000, tick_ms=1)

    def terminal(node: str) -> Terminal:
        store = SqliteTerminalStore(tmp_path / f"{node}.db", node)
        link = LoopbackTransport(server, "t1", node)
        return Terminal(store, registry, link, wall=clock, rng=random.Random(node))

    a, b = terminal("till-a"), terminal("till-b")
    a.command("orders", "o1", "open", {"currency": "GBP", "table": "T1"})
    a.command(
        "orders", "o1", "add_line", {"line_id": "l1", "item": "Fish", "qty": 2, "unit_price": 600}
    )
    a.sync()
    b.sync()
    # Both offline now: each takes cash for the whole 1200 from its own view.
    a.command(
        "orders",
        "o1",
        "payment_cash",
        {"attempt_id": "pa", "amount": 1200, "tendered": 2000, "offline": True},
    )
    b.command(
        "orders",
        "o1",
        "payment_cash",
        {"attempt_id": "pb", "amount": 1200, "tip": 100, "tendered": 1300, "offline": True},
    )
    view_b = b.get("orders", "o1")
    assert view_b is not None and view_b.fields["refunds_due"] == {}  # b cannot know yet
    # A card payment is refused at once on the terminal, and nothing is queued.
    pending = len(b.pending())
    with pytest.raises(RejectedOpError) as info:
        b.command(
            "orders",
            "o1",
            "payment_start",
            {"attempt_id": "pc", "method": "card", "amount": 100, "offline": True},
        )
    assert info.value.extra["reason"] == "method-needs-network"
    assert len(b.pending()) == pending
    a.sync()
    b.sync()
    a.sync()
    for t in (a, b):
        order = t.get("orders", "o1")
        assert order is not None
        fields = order.fields
        assert fields["payments"]["pb"]["overpaid"] == 1200
        assert fields["refunds_due"] == {
            "pb": {"amount": 1200, "reason": "overpayment", "method": "cash"}
        }
        assert (fields["paid"], fields["tips"], fields["collected"]) == (2400, 100, 2500)
    # A manager refunds the overpayment; every replica sees the entry clear.
    b.command(
        "orders",
        "o1",
        "payment_refund",
        {"attempt_id": "pb", "refund_id": "over", "amount": 1200, "approved_by": "mgr-1"},
    )
    b.sync()
    a.sync()
    order = a.get("orders", "o1")
    assert order is not None and order.fields["refund_due"] == 0
    assert order.fields["collected"] == 1300 and order.fields["balance_due"] == 0
    # The server's ledger effect wrote every posting set once, balanced; terminals have them.
    ledger = {r.record_id: r for r in a.records(LEDGER)}
    assert sorted(ledger) == ["o1:pa:capture", "o1:pb:capture", "o1:pb:refund:over"]
    assert all(r.stamps["postings"].node_id == SERVER_NODE for r in ledger.values())
    rows = {c: {r.record_id: r.fields for r in a.records(c)} for c in ("orders", "drawers", LEDGER)}
    assert check_money(rows) == []
    server.run_effects()  # nothing new to post: writing again changes nothing
    assert len(server.store.records("t1", LEDGER)) == 3


def test_a_paid_order_cannot_be_deleted_on_push_or_on_the_terminal(tmp_path: Path) -> None:
    """Terminal a, not having seen b's offline cash, deletes the paid order in one batch
    with other writes: the server refuses that one op (payment-recorded), applies the rest,
    and both terminals keep syncing; an unpaid order is still deleted. Once a knows the
    payment its own terminal refuses the delete at once (the same engine rule)."""
    registry = payments_registry()
    server = ServerReplica(SqliteServerStore(tmp_path / "server.db"), registry)
    clock = ManualClock(start_ms=1_700_000_000_000, tick_ms=1)

    def terminal(node: str) -> Terminal:
        store = SqliteTerminalStore(tmp_path / f"{node}.db", node)
        link = LoopbackTransport(server, "t1", node)
        return Terminal(store, registry, link, wall=clock, rng=random.Random(node))

    a, b = terminal("till-a"), terminal("till-b")
    for order_id in ("paid", "unpaid"):
        a.command("orders", order_id, "open", {"currency": "GBP"})
        a.command(
            "orders",
            order_id,
            "add_line",
            {"line_id": "l1", "item": "Fish", "qty": 1, "unit_price": 900},
        )
    a.sync()
    b.sync()
    b.command(
        "orders",
        "paid",
        "payment_cash",
        {"attempt_id": "c1", "amount": 900, "tendered": 1000, "offline": True},
    )
    delete_paid = a.delete("orders", "paid")  # a cannot know: its view has no payment
    a.delete("orders", "unpaid")
    a.command("orders", "next", "open", {"currency": "GBP"})
    b.sync()
    before = {r.record_id: r for r in server.store.records("t1", "orders")}
    a.sync()
    (refused,) = [o for o in a.outcomes() if o.status == "rejected"]
    assert (refused.op_id, refused.reason) == (delete_paid.op_id, "payment-recorded")
    after = {r.record_id: r for r in server.store.records("t1", "orders")}
    assert after["paid"] == before["paid"]  # not deleted, not touched, no feed entry for it
    assert after["unpaid"].deleted and not after["next"].deleted
    feed = server.store.changes("t1", 0, 1000)
    assert delete_paid.op_id not in {c.op_id for c in feed}
    assert a.pending() == []
    b.sync()  # the other terminal keeps syncing: it sees the deletion and the new order
    b.command(
        "orders", "next", "add_line", {"line_id": "l1", "item": "Tea", "qty": 1, "unit_price": 300}
    )
    b.sync()
    a.sync()
    for t in (a, b):
        paid, unpaid, upcoming = (t.get("orders", k) for k in ("paid", "unpaid", "next"))
        assert paid is not None and not paid.deleted and paid.fields["collected"] == 900
        assert unpaid is None or unpaid.deleted
        assert upcoming is not None and upcoming.fields["total"] == 300
    # Now a knows: its own engine refuses the delete, and nothing is queued.
    with pytest.raises(RejectedOpError) as info:
        a.delete("orders", "paid")
    assert info.value.extra["reason"] == "payment-recorded"
    assert a.pending() == []


def test_offline_is_also_what_the_server_finds_from_its_receive_time(tmp_path: Path) -> None:
    """A terminal that claims to be online but whose cash op reaches the server long after
    its HLC's time took it offline: the offline risk limit applies (manager-required), and
    the attempt the server keeps says offline. Delivered at once, the same op is online."""
    registry = payments_registry()
    device = ManualClock(start_ms=1_700_000_000_000, tick_ms=1)
    server_now = ManualClock(start_ms=1_700_000_000_000)
    server = ServerReplica(MemoryServerStore(), registry, now_ms=server_now)
    store = SqliteTerminalStore(tmp_path / "till.db", "till")
    till = Terminal(
        store,
        registry,
        LoopbackTransport(server, "t1", "till"),
        wall=device,
        rng=random.Random(3),
    )
    for order_id in ("late", "prompt", "approved"):
        till.command("orders", order_id, "open", {"currency": "GBP"})
        till.command(
            "orders",
            order_id,
            "add_line",
            {"line_id": "l1", "item": "Party", "qty": 1, "unit_price": 20000},
        )
    till.sync()
    cash = {"attempt_id": "c1", "amount": 20000, "tendered": 20000}  # above the offline limit
    till.command("orders", "prompt", "payment_cash", cash)
    server_now.advance(1_000)
    till.sync()
    till.command("orders", "late", "payment_cash", cash)  # the terminal believes it is online
    till.command("orders", "approved", "payment_cash", {**cash, "approved_by": "mgr-1"})
    server_now.advance(10 * 60_000)  # ... but the ops reach the server ten minutes later
    till.sync()
    refused = [o for o in till.outcomes() if o.status == "rejected"]
    assert [o.reason for o in refused] == ["manager-required"]
    attempts = {
        r.record_id: (r.fields.get("payments") or {}).get("c1")
        for r in server.store.records("t1", "orders")
    }
    assert attempts["late"] is None
    assert attempts["prompt"] is not None and attempts["prompt"]["offline"] is False
    assert attempts["approved"] is not None and attempts["approved"]["offline"] is True
    late = till.get("orders", "late")
    assert late is not None and late.fields["balance_due"] == 20000
