"""Hypothesis: random orders, tips, split payments, refunds and fee schedules, run through
the payment commands, conserve money to the penny; refunds never exceed captures."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fynlo_sync.domains.payments import PaymentsSettings
from fynlo_sync.domains.payments.fees import FeeRate, FeeSchedule
from fynlo_sync.domains.payments.invariants import check_money
from fynlo_sync.domains.payments.ledger import posting_sets
from fynlo_sync.domains.payments.money import split_equal
from fynlo_sync.engine import apply_op
from fynlo_sync.ops import Record
from tests.core.conftest import mkop
from tests.payments.fixtures import payments_registry

ACTION = st.tuples(
    st.sampled_from(["cash", "card", "refund", "split"]),
    st.integers(0, 5000),  # an amount, a tip or a share count, by action
    st.integers(0, 3000),
)


@settings(max_examples=60, deadline=None)
@given(
    prices=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    actions=st.lists(ACTION, max_size=10),
    card_bp=st.integers(0, 500),
    fixed=st.integers(0, 50),
    rounding=st.sampled_from(["half-up", "half-even", "floor", "ceil"]),
)
def test_random_payments_conserve_money(
    prices: list[int],
    actions: list[tuple[str, int, int]],
    card_bp: int,
    fixed: int,
    rounding: Any,
) -> None:
    schedule = FeeSchedule(
        [
            FeeRate("processing", "card", "GB", "GBP", card_bp, fixed, "2000-01-01", rounding),
            FeeRate("processing", "cash", "GB", "GBP", 0, 0, "2000-01-01"),
            FeeRate("platform", "card", "GB", "GBP", 100, 0, "2000-01-01", rounding),
            FeeRate("platform", "cash", "GB", "GBP", 100, 0, "2000-01-01", rounding),
        ]
    )
    rules = PaymentsSettings(schedule=schedule, refund_manager_limit=10**9)
    registry = payments_registry(rules)
    seq = 0

    def run(record: Record | None, name: str, args: dict[str, Any]) -> Record | None:
        nonlocal seq
        seq += 1
        op = mkop(seq, "command", collection="orders", record="o", name=name, args=args)
        result = apply_op(record, op, registry, seq)
        return record if result.record is None else result.record

    order = run(None, "open", {"currency": "GBP"})
    for k, price in enumerate(prices):
        order = run(
            order, "add_line", {"line_id": f"l{k}", "item": "x", "qty": 1, "unit_price": price}
        )
    for n, (kind, x, y) in enumerate(actions):
        assert order is not None
        due = order.fields["balance_due"]
        if kind == "cash" and due:
            order = run(
                order,
                "payment_cash",
                {"attempt_id": f"a{n}", "amount": due, "tip": y % 500, "tendered": due + y},
            )
        elif kind == "card" and due:
            amount = max(1, min(due, x or due))
            for step, args in (
                ("start", {"method": "card", "amount": amount, "tip": y % 300}),
                ("submit", {}),
                ("authorise", {}),
                ("capture", {}),
            ):
                order = run(order, f"payment_{step}", {"attempt_id": f"a{n}", **args})
        elif kind == "split" and due:
            for part, share in enumerate(split_equal(due, x % 4 + 1)):
                if share:
                    order = run(
                        order,
                        "payment_cash",
                        {"attempt_id": f"a{n}.{part}", "amount": share, "tendered": share},
                    )
        elif kind == "refund":
            paid = sorted(order.fields.get("payments") or {})
            if paid:
                target = paid[x % len(paid)]
                order = run(
                    order,
                    "payment_refund",
                    {"attempt_id": target, "refund_id": f"r{n}", "amount": y + 1},
                )
        assert order is not None
        fields = order.fields
        assert check_money({"orders": {"o": fields}}, rules) == []
        attempts = (fields.get("payments") or {}).values()
        for a in attempts:
            assert a["refunded"] <= a["captured"] - a["change"]
        assert fields["paid"] <= fields["total"] + fields["refund_due"]
        sets = posting_sets("o", fields)
        assert all(s.total() == 0 for s in sets)
        customer = sum(p.amount for s in sets for p in s.postings if p.account == "customer")
        assert -customer == fields["collected"]  # what customers paid, net, is what we hold
