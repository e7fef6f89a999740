"""Drawers, the till, the ledger and the money invariants, over real sync."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.domains.payments.drawers import z_report
from fynlo_sync.domains.payments.invariants import check_money
from fynlo_sync.domains.payments.ledger import correction, posting_sets, set_id, unbalanced
from fynlo_sync.domains.payments.till import Till
from fynlo_sync.engine import apply_op
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from tests.core.conftest import mkop
from tests.payments.fixtures import attempt_in, order_with, payments_registry


@pytest.fixture
def world(tmp_path: Path) -> Any:
    registry = payments_registry()
    server = ServerReplica(MemoryServerStore(), registry)
    clock = ManualClock(tick_ms=1)
    counter = itertools.count(1)

    def terminal(node: str) -> tuple[Terminal, Till]:
        store = SqliteTerminalStore(tmp_path / f"{node}.db", node)
        t = Terminal(
            store,
            registry,
            LoopbackTransport(server, "t1", node),
            wall=clock,
            rng=random.Random(node),
        )
        return t, Till(t, f"drawer-{node}", lambda: f"{node}-{next(counter)}")

    return server, terminal


def records(terminal: Terminal) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        name: {r.record_id: r.fields for r in terminal.records(name)}
        for name in ("orders", "drawers", "ledger")
    }


def order(terminal: Terminal, order_id: str, *prices: int) -> None:
    terminal.command("orders", order_id, "open", {"currency": "GBP"})
    for k, price in enumerate(prices):
        terminal.command(
            "orders",
            order_id,
            "add_line",
            {"line_id": f"l{k}", "item": "dish", "qty": 1, "unit_price": price},
        )


def test_a_night_at_the_till_reconciles(world: Any) -> None:
    _, terminal = world
    t, till = terminal("till-a")
    till.open_drawer(10000, "GBP")
    order(t, "o1", 1250, 600)
    paid = till.take_cash("o1", 1850, 5000, tip=150)  # change 3000
    till.move("out", 2000, reason="safe drop")
    till.move("in", 500, reason="coins from the bank")
    order(t, "o2", 3000)
    first = till.take_cash("o2", 1500, 1500)  # a split bill: two halves in cash
    till.take_cash("o2", 1500, 2000)
    with pytest.raises(RejectedOpError) as info:
        till.take_cash("o2", 1, 1)
    assert info.value.extra["reason"] == "amount-above-balance"
    till.refund("o2", first, 500, approved_by=None)
    with pytest.raises(RejectedOpError) as info:
        till.refund("o2", first, 1001)
    assert info.value.extra["reason"] == "refund-above-captured"
    drawer = t.get("drawers", "drawer-till-a")
    assert drawer is not None
    # 10000 float + 2000 + 1500 + 1500 sales + 500 in - 2000 out - 500 refund
    assert drawer.fields["expected"] == 13000
    till.close_drawer(12990)
    t.sync()
    closed = t.get("drawers", "drawer-till-a")
    assert closed is not None
    z = z_report("drawer-till-a", closed.fields)
    assert (z["expected"], z["counted"], z["difference"]) == (13000, 12990, -10)
    assert z["totals"] == {"in": 500, "out": 2000, "refund": 500, "sale": 5000}
    assert check_money(records(t)) == []
    o1 = t.get("orders", "o1")
    assert o1 is not None and o1.fields["payments"][paid]["change"] == 3000
    with pytest.raises(RejectedOpError) as info:
        till.move("in", 1, reason="late")
    assert info.value.extra["reason"] == "illegal-transition"


def test_drawer_rules(world: Any) -> None:
    _, terminal = world
    _t, till = terminal("till-b")
    till.open_drawer(1000, "GBP")
    for kind, amount, reason, why in [
        ("out", 1001, "float", "insufficient-cash"),
        ("out", 10, None, "invalid-argument"),
        ("in", 10, "  ", "invalid-argument"),
        ("tip", 10, "x", "invalid-argument"),
        ("in", 0, "x", "invalid-argument"),
    ]:
        with pytest.raises(RejectedOpError) as info:
            till.move(kind, amount, reason=reason)
        assert info.value.extra["reason"] == why, kind
    with pytest.raises(RejectedOpError) as info:
        till.open_drawer(1000, "GBP")
    assert info.value.extra["reason"] == "illegal-transition"


def test_every_payment_posts_a_balanced_set() -> None:
    cash = attempt_in("captured", "cash") | {"captured": 2000, "change": 900, "tendered": 2000}
    order = order_with({"a1": attempt_in("refunded_partial"), "a2": cash})
    sets = posting_sets("o-1", order.fields)
    assert [s.set_id for s in sets] == ["o-1:a1:capture", "o-1:a1:refund:r1", "o-1:a2:capture"]
    assert unbalanced(sets) == []
    legs = {(p.account, p.kind): p.amount for p in sets[0].postings}
    assert legs == {
        ("customer", "gross"): -1100,
        ("processor", "processor_fee"): 35,
        ("platform", "platform_fee"): 10,
        ("tips:emp-1", "tip"): 100,
        ("restaurant:card", "net"): 955,
    }
    assert {(p.account, p.kind): p.amount for p in sets[2].postings}[("customer", "change")] == 900
    fixed = correction(sets[0], "bt_1", 37)
    assert fixed.total() == 0 and fixed.set_id == "o-1:a1:correction:bt_1"
    assert set_id("o" * 60, "a" * 60, "refund", "r" * 20).startswith("ps:")


def test_the_ledger_collection_takes_a_set_once_and_only_balanced() -> None:
    registry = payments_registry()
    good = posting_sets("o-1", order_with({"a1": attempt_in("captured")}).fields)[0]

    def post(fields: dict[str, Any], current: Any = None, node: str = "server") -> Any:
        op = mkop(
            1,
            "command",
            node=node,
            collection="ledger",
            record=good.set_id,
            name="post",
            args=fields,
        )
        return apply_op(current, op, registry, 3)

    # Only the server posts: a terminal's balanced set under a capture's id is refused.
    assert post(good.to_fields(), node="till-1").reason == "server-only"
    first = post(good.to_fields())
    assert first.status == "applied"
    assert post(good.to_fields(), first.record).reason == "posting-exists"
    bad = good.to_fields()
    bad["postings"] = [*bad["postings"], {"account": "x", "kind": "net", "amount": 1}]
    assert post(bad).reason == "unbalanced"
    assert post({"event": "capture"}).reason == "invalid-argument"
    assert post({**good.to_fields(), "currency": 826}).reason == "invalid-argument"
    patch = mkop(2, "patch", collection="ledger", record=good.set_id, fields={"day": "x"})
    assert apply_op(first.record, patch, registry, 4).reason == "command-only-field"


def test_invariants_catch_what_breaks_the_money() -> None:
    ok = order_with({"a1": attempt_in("captured")}).fields
    assert check_money({"orders": {"o-1": ok}}) == []
    wrong_fee = dict(ok)
    a1 = dict(ok["payments"]["a1"])
    a1["fees"] = {**a1["fees"], "platform": 11}  # 1 % of the gross, tip included
    wrong_fee["payments"] = {"a1": a1}
    assert any("platform fee 11" in v for v in check_money({"orders": {"o-1": wrong_fee}}))
    over = dict(ok)
    a2 = dict(
        a1,
        refunded=1200,
        refunds={"r": {"amount": 1200}},
        state="refunded",
        fees=ok["payments"]["a1"]["fees"],
    )
    over["payments"] = {"a1": a2}
    assert any("above captured" in v for v in check_money({"orders": {"o-1": over}}))


def test_a_late_failure_reverses_the_capture_in_the_ledger() -> None:
    """payment_reverse (captured -> failed): the capture set stays, a reversal set
    negates it, the order owes its balance again and every invariant holds."""
    registry = payments_registry()
    paid = order_with({"a1": attempt_in("captured", "open_banking")})
    op = mkop(
        5,
        "command",
        collection="orders",
        record="o-1",
        name="payment_reverse",
        args={"attempt_id": "a1", "reason": "payment_returned"},
    )
    result = apply_op(paid, op, registry, 6)
    assert result.status == "applied" and result.record is not None
    fields = result.record.fields
    a1 = fields["payments"]["a1"]
    assert a1["state"] == "failed" and a1["reversed"]["by"] == "n1"
    assert (fields["collected"], fields["paid"], fields["balance_due"]) == (0, 0, 1000)
    sets = posting_sets("o-1", fields)
    assert [s.set_id for s in sets] == ["o-1:a1:capture", "o-1:a1:reversal"]
    assert unbalanced(sets) == []
    capture, reversal = sets
    assert reversal.event == "reversal"
    assert [(p.account, p.kind, -p.amount) for p in reversal.postings] == [
        (p.account, p.kind, p.amount) for p in capture.postings
    ]
    ledger = {s.set_id: s.to_fields() for s in sets}
    assert check_money({"orders": {"o-1": fields}, "ledger": ledger}) == []
    # A written capture set without its reversal is still one the payment calls for; a
    # reversal of an attempt that was not reversed records no payment.
    assert check_money({"orders": {"o-1": paid.fields}, "ledger": ledger}) != []
    again = apply_op(result.record, op, registry, 7)
    assert (again.status, again.reason) == ("rejected", "illegal-transition")


def test_a_fee_correction_is_a_command_and_a_new_balanced_set() -> None:
    """payment_fee_correction records the processor's actual fee; the capture set stays,
    each correction posts the difference from the fee before it, and a later reversal
    undoes the capture and its corrections together."""
    registry = payments_registry()
    seq = itertools.count(5)

    def run(record: Any, name: str, args: dict[str, Any]) -> Any:
        op = mkop(next(seq), "command", collection="orders", record="o-1", name=name, args=args)
        return apply_op(record, op, registry, 9)

    paid = order_with({"a1": attempt_in("captured"), "a2": attempt_in("pending")})
    fix = {"attempt_id": "a1", "correction_id": "bt_1", "processing_fee": 38}
    first = run(paid, "payment_fee_correction", fix)
    assert first.status == "applied", first
    again = run(
        first.record,
        "payment_fee_correction",
        {**fix, "correction_id": "bt_2", "processing_fee": 36},
    )
    assert again.status == "applied", again
    refusals = [
        ({**fix, "correction_id": "bt_9", "processing_fee": 36}, "fee-unchanged"),
        ({**fix, "processing_fee": 40}, "duplicate-correction"),
        ({**fix, "attempt_id": "a2", "correction_id": "x"}, "not-captured"),
        ({**fix, "correction_id": "bt_3", "processing_fee": -1}, "invalid-argument"),
    ]
    for args, reason in refusals:
        result = run(again.record, "payment_fee_correction", args)
        assert (result.status, result.reason) == ("rejected", reason), args
    fields = again.record.fields
    assert fields["collected"] == paid.fields["collected"]  # money collected is unchanged
    sets = posting_sets("o-1", fields)
    assert [s.set_id for s in sets] == [
        "o-1:a1:capture",
        "o-1:a1:correction:bt_1",
        "o-1:a1:correction:bt_2",
    ]
    by_id = {s.set_id: s for s in sets}
    assert unbalanced(sets) == []

    def legs(name: str) -> dict[tuple[str, str], int]:
        return {(p.account, p.kind): p.amount for p in by_id[name].postings}

    assert legs("o-1:a1:correction:bt_1") == {
        ("processor", "processor_fee"): 3,  # 35 estimated, 38 actual
        ("restaurant:card", "net"): -3,
    }
    assert legs("o-1:a1:correction:bt_2") == {  # 38 -> 36: from the fee before it
        ("processor", "processor_fee"): -2,
        ("restaurant:card", "net"): 2,
    }
    ledger = {s.set_id: s.to_fields() for s in sets}
    assert check_money({"orders": {"o-1": fields}, "ledger": ledger}) == []
    reversed_ = run(
        again.record,
        "payment_reverse",
        {"attempt_id": "a1", "reason": "payment_returned"},
    )
    after = posting_sets("o-1", reversed_.record.fields)
    assert unbalanced(after) == []
    undone: dict[tuple[str, str], int] = {}
    for s in after:
        for p in s.postings:
            undone[(p.account, p.kind)] = undone.get((p.account, p.kind), 0) + p.amount
    assert set(undone.values()) == {0}  # capture + corrections + reversal move nothing
