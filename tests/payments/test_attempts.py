"""The payment attempt state table, tested whole, and the rules of the payment commands."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fynlo_sync.domains.payments import PaymentsSettings
from fynlo_sync.domains.payments.attempts import PAYMENT_COMMANDS
from fynlo_sync.domains.payments.ledger import posting_sets
from fynlo_sync.domains.payments.money import MoneyError
from fynlo_sync.domains.payments.states import (
    COMMANDS,
    FINAL_STATES,
    LIVE_STATES,
    STATES,
    TRANSITIONS,
    next_state,
)
from fynlo_sync.domains.payments.tips import TipSettings
from fynlo_sync.engine import Applied, apply_op
from fynlo_sync.ops import Record
from fynlo_sync.plugins import Registry
from tests.core.conftest import mkop
from tests.payments.fixtures import ARGS, attempt_in, order_with, payments_registry

REGISTRY = payments_registry()


def run(
    order: Record | None,
    command: str,
    args: dict[str, Any],
    *,
    registry: Registry = REGISTRY,
    node: str = "till-b",
    seq: int = 1,
) -> Applied:
    op = mkop(
        seq,
        "command",
        node=node,
        collection="orders",
        record="o-1",
        name=f"payment_{command}",
        args=args,
    )
    return apply_op(order, op, registry, 10)


def attempt(result: Applied, attempt_id: str = "a1") -> dict[str, Any]:
    assert result.status == "applied", (result.reason, result.detail)
    assert result.record is not None
    got: dict[str, Any] = result.record.fields["payments"][attempt_id]
    return got


@pytest.mark.parametrize(("state", "command"), list(itertools.product([None, *STATES], COMMANDS)))
def test_every_state_and_command_follows_the_table(state: str | None, command: str) -> None:
    order = order_with({} if state is None else {"a1": attempt_in(state)})
    result = run(order, command, ARGS[command])
    expected = TRANSITIONS.get((state, command))
    if expected is None:
        assert (result.status, result.reason) == ("rejected", "illegal-transition")
    else:
        assert attempt(result)["state"] == expected


def test_the_table_itself() -> None:
    assert set(PAYMENT_COMMANDS.values()) == set(COMMANDS)
    assert len(TRANSITIONS) == 24  # with the late failure, captured -> failed (reverse)
    for state, command in itertools.product(sorted(FINAL_STATES), COMMANDS):
        assert next_state(state, command) is None
    for state in LIVE_STATES:  # every live attempt can end without money moving
        assert {next_state(state, c) for c in ("fail", "cancel", "expire")} == {
            "failed",
            "cancelled",
            "expired",
        }
    reached: set[str | None] = {None}
    frontier: list[str | None] = [None]
    while frontier:
        at = frontier.pop()
        for command in COMMANDS:
            target = next_state(at, command)
            if target is not None and target not in reached:
                reached.add(target)
                frontier.append(target)
    # every state but ``refunded`` is a table target; refund reaches it by amount
    assert reached == {None, *STATES} - {"refunded"}


def test_refund_of_everything_left_ends_refunded() -> None:
    order = order_with({"a1": attempt_in("refunded_partial")})  # 1100 captured, 200 refunded
    done = attempt(run(order, "refund", {"attempt_id": "a1", "refund_id": "r2", "amount": 900}))
    assert (done["state"], done["refunded"]) == ("refunded", 1100)


def test_a_card_payment_from_start_to_capture_and_its_fees() -> None:
    order = order_with({})
    steps: list[tuple[str, dict[str, Any]]] = [
        ("start", {"attempt_id": "a1", "method": "card", "amount": 1000, "tip": 100}),
        ("submit", {"attempt_id": "a1", "provider_ref": "pi_9"}),
        ("require_action", {"attempt_id": "a1"}),
        ("submit", {"attempt_id": "a1"}),
        ("authorise", {"attempt_id": "a1"}),
        ("capture", {"attempt_id": "a1"}),
    ]
    record: Record | None = order
    for command, args in steps:
        result = run(record, command, args)
        attempt(result)
        record = result.record
    assert record is not None
    a1 = record.fields["payments"]["a1"]
    assert (a1["state"], a1["captured"], a1["provider_ref"]) == ("captured", 1100, "pi_9")
    # fees on the non-tip 1000 only: 1.5 % + 20p and 1 %
    assert (a1["fees"]["processing"], a1["fees"]["platform"]) == (35, 10)
    money = {k: record.fields[k] for k in ("paid", "tips", "collected", "balance_due")}
    assert money == {"paid": 1000, "tips": 100, "collected": 1100, "balance_due": 0}


def rejected(result: Applied, reason: str) -> None:
    assert (result.status, result.reason) == ("rejected", reason), result.detail


def test_at_most_one_live_attempt_per_order() -> None:
    order = order_with({"a1": attempt_in("pending")})
    args = {"attempt_id": "a2", "method": "open_banking", "amount": 500}
    rejected(run(order, "start", args), "attempt-live")
    order = order_with({"a1": attempt_in("failed")})  # a failed attempt leaves room: fallback
    assert attempt(run(order, "start", args), "a2")["state"] == "created"


def test_an_attempt_cannot_start_above_the_balance_due() -> None:
    order = order_with({})
    rejected(
        run(order, "start", {"attempt_id": "a1", "method": "card", "amount": 1001}),
        "amount-above-balance",
    )
    paid = order_with({"a1": attempt_in("captured")})
    rejected(
        run(paid, "start", {"attempt_id": "a2", "method": "card", "amount": 1}),
        "amount-above-balance",
    )


def test_cash_with_change() -> None:
    a1 = attempt(
        run(
            order_with({}),
            "cash",
            {"attempt_id": "a1", "amount": 1000, "tip": 50, "tendered": 2000},
        )
    )
    assert (a1["captured"], a1["change"], a1["tendered"]) == (2000, 950, 2000)
    assert a1["fees"]["platform"] == 10 and a1["fees"]["processing"] == 0
    rejected(
        run(
            order_with({}),
            "cash",
            {"attempt_id": "a1", "amount": 1000, "tip": 50, "tendered": 1049},
        ),
        "tendered-short",
    )


def test_cards_are_refused_offline_with_a_typed_reason_and_cash_works() -> None:
    for method in ("card", "open_banking", "apple_pay"):
        rejected(
            run(
                order_with({}),
                "start",
                {"attempt_id": "a1", "method": method, "amount": 100, "offline": True},
            ),
            "method-needs-network",
        )
    cash = {"attempt_id": "a1", "amount": 1000, "tendered": 1000, "offline": True}
    assert attempt(run(order_with({}), "cash", cash))["offline"] is True


def test_offline_risk_limits_need_a_manager() -> None:
    big = order_with({})
    big = Record(
        big.collection,
        big.record_id,
        {**big.fields, "total": 20000, "balance_due": 20000},
        big.stamps,
        version=4,
    )
    args = {"attempt_id": "a1", "amount": 10001, "tendered": 10001, "offline": True}
    rejected(run(big, "cash", args), "manager-required")
    assert attempt(run(big, "cash", {**args, "approved_by": "mgr-1"}))["approved_by"] == "mgr-1"
    assert attempt(run(big, "cash", {**args, "amount": 10000, "tendered": 10000}))
    captured = order_with({"a1": attempt_in("captured")})
    refund = {"attempt_id": "a1", "refund_id": "r9", "amount": 100, "offline": True}
    rejected(run(captured, "refund", refund), "manager-required")
    assert attempt(run(captured, "refund", {**refund, "approved_by": "mgr-1"}))
    authorised = order_with({"a1": attempt_in("authorised")})
    rejected(run(authorised, "cancel", {"attempt_id": "a1", "offline": True}), "manager-required")


def test_refunds_bounded_by_capture_original_method_manager_above_limit() -> None:
    order = order_with({"a1": attempt_in("captured")})
    refund = {"attempt_id": "a1", "refund_id": "r9", "amount": 1101}
    rejected(run(order, "refund", refund), "refund-above-captured")
    rejected(
        run(order, "refund", {**refund, "amount": 100, "method": "cash"}), "refund-method-mismatch"
    )
    rejected(
        run(
            order_with({"a1": attempt_in("refunded_partial")}),
            "refund",
            {**refund, "refund_id": "r1", "amount": 1},
        ),
        "duplicate-refund",
    )
    limited = payments_registry(PaymentsSettings(refund_manager_limit=500))
    rejected(run(order, "refund", {**refund, "amount": 501}, registry=limited), "manager-required")
    ok = run(order, "refund", {**refund, "amount": 501, "approved_by": "m"}, registry=limited)
    assert attempt(ok)["refunded"] == 501
    assert ok.record is not None and ok.record.fields["collected"] == 599


def test_void_of_an_authorised_payment_costs_nothing() -> None:
    result = run(order_with({"a1": attempt_in("authorised")}), "cancel", {"attempt_id": "a1"})
    a1 = attempt(result)
    assert (a1["state"], a1["fees"], a1["captured"]) == ("cancelled", None, 0)
    assert result.record is not None and result.record.fields["balance_due"] == 1000


def test_a_partial_capture_releases_the_rest() -> None:
    order = order_with({"a1": attempt_in("authorised")})
    a1 = attempt(run(order, "capture", {"attempt_id": "a1", "amount": 600}))
    assert (a1["captured"], a1["amount"], a1["tip"]) == (600, 500, 100)
    rejected(
        run(order, "capture", {"attempt_id": "a1", "amount": 1101}), "capture-above-authorised"
    )


def test_a_tip_added_at_capture_is_split_from_the_amount_within_the_hold() -> None:
    """Authorised 1000 + 100 of tip room; the tip is 40 at capture: 1040 taken, 1000 pays
    the order, fees on the 1000 only, and the ledger passes the 40 to the tips account."""
    order = order_with({"a1": attempt_in("authorised")})
    result = run(order, "capture", {"attempt_id": "a1", "tip": 40})
    a1 = attempt(result)
    assert (a1["captured"], a1["amount"], a1["tip"], a1["overpaid"]) == (1040, 1000, 40, 0)
    assert (a1["fees"]["processing"], a1["fees"]["platform"]) == (35, 10)  # of 1000
    assert result.record is not None
    money = {k: result.record.fields[k] for k in ("paid", "tips", "collected", "balance_due")}
    assert money == {"paid": 1000, "tips": 40, "collected": 1040, "balance_due": 0}
    capture = posting_sets("o-1", result.record.fields)[0]
    legs = {p.kind: p.amount for p in capture.postings}
    assert (legs["tip"], legs["net"]) == (40, 1040 - 35 - 10 - 40)
    # No tip at all, and a tip with a partial amount.
    assert attempt(run(order, "capture", {"attempt_id": "a1", "tip": 0}))["captured"] == 1000
    part = attempt(run(order, "capture", {"attempt_id": "a1", "tip": 60, "amount": 900}))
    assert (part["amount"], part["tip"]) == (840, 60)
    # Beyond the hold (1100), or a tip the capture does not cover: refused, typed.
    rejected(run(order, "capture", {"attempt_id": "a1", "tip": 101}), "capture-above-authorised")
    rejected(
        run(order, "capture", {"attempt_id": "a1", "tip": 50, "amount": 50}), "invalid-argument"
    )
    rejected(run(order, "capture", {"attempt_id": "a1", "tip": -1}), "invalid-argument")
    rejected(run(order, "capture", {"attempt_id": "a1", "tip": True}), "invalid-argument")
    # Tips off: a new tip at capture is refused (the authorised one may stand).
    off = payments_registry(PaymentsSettings(tips=TipSettings(enabled=False)))
    rejected(run(order, "capture", {"attempt_id": "a1", "tip": 40}, registry=off), "tips-disabled")
    assert attempt(run(order, "capture", {"attempt_id": "a1", "tip": 0}, registry=off))["tip"] == 0


def test_two_offline_cash_payments_for_one_order_are_an_overpayment() -> None:
    """Both were taken against a view with 1000 due; the server applies them in turn."""
    first = run(
        order_with({}),
        "cash",
        {"attempt_id": "a-x", "amount": 1000, "tendered": 1000, "offline": True},
        node="till-a",
    )
    assert first.record is not None
    second = run(
        first.record,
        "cash",
        {"attempt_id": "a-y", "amount": 1000, "tip": 100, "tendered": 1100, "offline": True},
    )
    y = attempt(second, "a-y")
    assert y["overpaid"] == 1000
    assert second.record is not None
    fields = second.record.fields
    assert fields["refunds_due"] == {
        "a-y": {"amount": 1000, "reason": "overpayment", "method": "cash"}
    }
    assert (fields["refund_due"], fields["paid"], fields["collected"]) == (1000, 2000, 2100)
    # the manager refunds it from the drawer: the entry clears
    done = run(
        second.record,
        "refund",
        {"attempt_id": "a-y", "refund_id": "od", "amount": 1000, "approved_by": "mgr"},
    )
    assert done.record is not None
    assert (done.record.fields["refunds_due"], done.record.fields["refund_due"]) == ({}, 0)
    assert done.record.fields["paid"] == 1000


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"attempt_id": "a1", "method": "cash", "amount": 100}, "invalid-argument"),
        ({"attempt_id": "a1", "method": "cheque", "amount": 100}, "invalid-argument"),
        ({"attempt_id": "a1", "method": "card", "amount": 0}, "invalid-argument"),
        ({"attempt_id": "a1", "method": "card", "amount": True}, "invalid-argument"),
        ({"attempt_id": "a1", "method": "card", "amount": 100, "tip": -1}, "invalid-argument"),
        ({"attempt_id": "", "method": "card", "amount": 100}, "invalid-argument"),
        ({"method": "card", "amount": 100}, "invalid-argument"),
        (
            {"attempt_id": "a1", "method": "card", "amount": 100, "currency": "EUR"},
            "currency-mismatch",
        ),
        (
            {"attempt_id": "a1", "method": "card", "amount": 100, "offline": "yes"},
            "invalid-argument",
        ),
    ],
)
def test_bad_arguments_are_typed_rejections(args: dict[str, Any], reason: str) -> None:
    rejected(run(order_with({}), "start", args), reason)


def test_orders_that_cannot_be_paid() -> None:
    rejected(run(None, "start", ARGS["start"]), "record-not-found")
    for status in ("voided", "closed"):
        rejected(run(order_with({}, status=status), "start", ARGS["start"]), "order-not-payable")
    closed = order_with({"a1": attempt_in("captured")}, status="closed")
    assert attempt(run(closed, "refund", ARGS["refund"]))["state"] == "refunded_partial"


def test_tips_off_refuses_a_tip() -> None:
    off = payments_registry(PaymentsSettings(tips=TipSettings(enabled=False)))
    rejected(run(order_with({}), "start", ARGS["start"], registry=off), "tips-disabled")


def test_customer_pays_is_refused_in_the_uk_and_capped_in_the_us() -> None:
    with pytest.raises(MoneyError) as info:
        PaymentsSettings(country="GB", fee_bearer="customer", surcharge_bp=150)
    assert info.value.extra["reason"] == "surcharge-banned"
    with pytest.raises(MoneyError) as info:
        PaymentsSettings(country="US", fee_bearer="customer", surcharge_bp=350)
    assert info.value.extra["reason"] == "surcharge-above-cap"
    us = payments_registry(PaymentsSettings(country="US", fee_bearer="customer", surcharge_bp=290))
    order = order_with({})
    order = Record(
        order.collection,
        order.record_id,
        {**order.fields, "currency": "USD"},
        order.stamps,
        version=4,
    )
    args = {"attempt_id": "a1", "method": "card", "amount": 1000, "funding": "credit"}
    a1 = attempt(run(order, "start", args, registry=us))
    assert a1["surcharge"] == 29
    rejected(
        run(order, "start", {**args, "funding": "debit"}, registry=us), "surcharge-not-allowed"
    )


def _order_cmd(order: Record, name: str, args: dict[str, Any]) -> Applied:
    op = mkop(1, "command", node="till-b", collection="orders", record="o-1", name=name, args=args)
    return apply_op(order, op, REGISTRY, 10)


def test_an_order_holding_money_cannot_be_voided_or_shrunk_below_what_was_paid() -> None:
    paid = order_with({"a1": attempt_in("captured")}, status="open")
    rejected(_order_cmd(paid, "void", {"reason": "oops"}), "payment-captured")
    lines = dict(paid.fields["lines"])
    lines["l1"] = {**lines["l1"], "sent": False}
    unsent = Record("orders", "o-1", {**paid.fields, "lines": lines}, paid.stamps, version=4)
    rejected(_order_cmd(unsent, "remove_line", {"line_id": "l1"}), "below-paid")
    assert _order_cmd(paid, "close", {}).status == "applied"
    live = order_with({"a1": attempt_in("authorised")}, status="served")
    rejected(_order_cmd(live, "close", {}), "attempt-live")
    rejected(_order_cmd(live, "void", {}), "attempt-live")
    refunded = order_with({"a1": attempt_in("refunded")}, status="served")
    assert _order_cmd(refunded, "void", {}).status == "applied"
    # adding a line to a paid order is fine: it only adds to the balance due
    more = _order_cmd(
        paid, "add_line", {"line_id": "l2", "item": "Tea", "qty": 1, "unit_price": 250}
    )
    assert more.record is not None and more.record.fields["balance_due"] == 250
