"""The orders state table, tested whole: every (state, command) pair."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fynlo_sync.domains.orders import STATES, TRANSITIONS, next_state, order_total
from fynlo_sync.domains.orders.states import COMMANDS, TERMINAL_STATES
from fynlo_sync.engine import apply_op
from fynlo_sync.ops import Record
from fynlo_sync.plugins import Registry
from tests.core.conftest import mkop

ARGS: dict[str, dict[str, Any]] = {
    "open": {"currency": "GBP"},
    "add_line": {"line_id": "new", "item": "tea", "qty": 1, "unit_price": 250},
    "remove_line": {"line_id": "l1"},
    "void": {"reason": "walked out"},
}


def order_in(state: str | None, registry: Registry) -> Record | None:
    if state is None:
        return None
    fields = {
        "status": state,
        "currency": "GBP",
        "lines": {"l1": {"item": "soup", "qty": 2, "unit_price": 450, "sent": False}},
        "total": 900,
        "opened_by": "n0",
    }
    return Record(collection="orders", record_id="o1", fields=fields, stamps={})


@pytest.mark.parametrize(("state", "command"), list(itertools.product([None, *STATES], COMMANDS)))
def test_every_pair_follows_the_table(registry: Registry, state: str | None, command: str) -> None:
    op = mkop(
        1, "command", collection="orders", record="o1", name=command, args=ARGS.get(command, {})
    )
    result = apply_op(order_in(state, registry), op, registry, 1)
    expected = TRANSITIONS.get((state, command))
    if expected is None:
        assert (result.status, result.reason) == ("rejected", "illegal-transition")
    else:
        assert result.status == "applied", result.detail
        assert result.record is not None
        assert result.record.fields["status"] == expected


def test_terminal_states_allow_nothing() -> None:
    for state, command in itertools.product(sorted(TERMINAL_STATES), COMMANDS):
        assert next_state(state, command) is None


def test_every_state_is_reachable_from_nothing() -> None:
    reached: set[str | None] = {None}
    frontier: list[str | None] = [None]
    while frontier:
        state = frontier.pop()
        for command in COMMANDS:
            target = next_state(state, command)
            if target is not None and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == {None, *STATES}


def test_totals_are_the_sum_of_lines_in_minor_units(registry: Registry) -> None:
    record = order_in("open", registry)
    for seq, (line, qty, price) in enumerate([("a", 3, 333), ("b", 1, 1), ("c", 2, 1999)], 1):
        op = mkop(
            seq,
            "command",
            collection="orders",
            record="o1",
            name="add_line",
            args={"line_id": line, "item": line, "qty": qty, "unit_price": price},
        )
        result = apply_op(record, op, registry, seq)
        assert result.status == "applied"
        record = result.record
    assert record is not None
    assert record.fields["total"] == 900 + 999 + 1 + 3998 == order_total(record.fields)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"line_id": "x", "item": "tea", "qty": 0, "unit_price": 1}, "invalid-argument"),
        ({"line_id": "x", "item": "tea", "qty": 1, "unit_price": -1}, "invalid-argument"),
        ({"line_id": "x", "item": "tea", "qty": 1}, "invalid-argument"),
        ({"line_id": "l1", "item": "tea", "qty": 1, "unit_price": 1}, "duplicate-line"),
    ],
)
def test_bad_lines_are_rejected(registry: Registry, args: dict[str, Any], reason: str) -> None:
    op = mkop(1, "command", collection="orders", record="o1", name="add_line", args=args)
    result = apply_op(order_in("open", registry), op, registry, 1)
    assert (result.status, result.reason) == ("rejected", reason)


def test_a_sent_line_cannot_be_removed(registry: Registry) -> None:
    send = mkop(1, "command", collection="orders", record="o1", name="send_to_kitchen", args={})
    sent = apply_op(order_in("open", registry), send, registry, 1).record
    assert sent is not None and sent.fields["lines"]["l1"]["sent"] is True
    remove = mkop(
        2, "command", collection="orders", record="o1", name="remove_line", args={"line_id": "l1"}
    )
    result = apply_op(sent, remove, registry, 2)
    assert (result.status, result.reason) == ("rejected", "line-already-sent")


@pytest.mark.parametrize("currency", ["pounds", "gbp", "EU1", "ÉUR", "EU"])
def test_open_needs_an_iso_currency(registry: Registry, currency: str) -> None:
    op = mkop(
        1, "command", collection="orders", record="o1", name="open", args={"currency": currency}
    )
    assert apply_op(None, op, registry, 1).reason == "invalid-argument"


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_closed_orders_refuse_direct_edits(registry: Registry, state: str) -> None:
    op = mkop(1, "patch", collection="orders", record="o1", fields={"note": "late"})
    result = apply_op(order_in(state, registry), op, registry, 1)
    assert (result.status, result.reason) == ("rejected", "order-closed")
    still_open = apply_op(order_in("served", registry), op, registry, 1)
    assert still_open.status == "applied"
