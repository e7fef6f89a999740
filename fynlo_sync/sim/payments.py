"""Payments in the simulated service: the writes ``pay``, ``refund`` and
``void_payment`` of the workload, made through the till as a terminal's payment screen
would, and the counts a run reports.

``pay`` settles part of an order's balance by the step's ``b``: cash for everything with
change (and a preset tip), half of a split bill in exact cash, a card payment driven to
capture (the provider's answers authored by the terminal, as the sim has no provider), or
a card payment left authorised (a later ``pay`` captures it or ``void_payment`` voids it).
A terminal that is offline is refused card payments at once (``method-needs-network``), so
offline payments are cash, and two terminals that both take cash for one order while apart
are an overpayment the server flags at sync.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import ORDERS
from fynlo_sync.domains.payments.drawers import DRAWERS
from fynlo_sync.domains.payments.money import split_equal
from fynlo_sync.domains.payments.states import LIVE_STATES, SETTLED_STATES
from fynlo_sync.domains.payments.till import Till
from fynlo_sync.domains.payments.tips import TipSettings, tip_amount
from fynlo_sync.ops import Op, Record
from fynlo_sync.sim.schedule import Step

__all__ = [
    "PAYMENT_WRITES",
    "act_payment",
    "has_payments",
    "money_report",
    "payment_counts",
    "settle",
]

PAYMENT_WRITES = ("pay", "refund", "void_payment")
DRAWER_FLOAT = 10_000
#: A manager approves when the step's ``b`` says so (otherwise a rule may refuse).
MANAGER = "manager"


def _till(client: Terminal, tenant: str, online: bool) -> Till:
    seq = client.store.meta().next_seq
    ids = itertools.count()
    return Till(
        client,
        f"{tenant}.drawer.{client.node_id}",
        lambda: f"{client.node_id}.{seq}.{next(ids)}",
        online=lambda: online,
    )


def _orders(client: Terminal, tenant: str) -> list[Record]:
    return [o for o in client.records(ORDERS) if o.record_id.startswith(tenant + ".")]


def _attempts(orders: Iterable[Record], states: frozenset[str]) -> list[tuple[str, str, Any]]:
    out = []
    for order in orders:
        attempts = order.fields.get("payments") or {}
        for key in sorted(attempts):
            if attempts[key]["state"] in states:
                out.append((order.record_id, key, attempts[key]))
    return out


def act_payment(client: Terminal, tenant: str, step: Step, *, online: bool) -> list[Op]:
    """Do ``step`` (one of :data:`PAYMENT_WRITES`); returns the ops it made."""
    if not has_payments(client):
        return []  # a registry without the payments plugin: nothing to pay with
    first = client.store.meta().next_seq
    till = _till(client, tenant, online)
    orders = _orders(client, tenant)
    # One local transaction: a crash leaves all of the step or none of it.
    with client.store.transaction():
        if step.what == "pay":
            _pay(client, till, orders, step)
        elif step.what == "refund":
            settled = [x for x in _attempts(orders, SETTLED_STATES) if till.refundable(x[0], x[1])]
            if settled:
                order_id, attempt_id, _ = settled[step.a % len(settled)]
                left = till.refundable(order_id, attempt_id)
                amount = left if step.b % 3 == 0 else max(1, left // 2)
                if step.b % 4 == 3:  # the cashier refunds what was handed over, change too
                    attempt = settled[step.a % len(settled)][2]
                    amount = attempt["captured"] - attempt["refunded"]
                with client.store.transaction():
                    _drawer(client, till)
                    till.refund(
                        order_id, attempt_id, amount, approved_by=MANAGER if step.b % 2 else None
                    )
        else:
            live = _attempts(orders, LIVE_STATES)
            if live:
                order_id, attempt_id, _ = live[step.a % len(live)]
                till.void(order_id, attempt_id, approved_by=MANAGER if step.b % 2 else None)
    return [op for op in client.pending() if op.seq >= first]


def _drawer(client: Terminal, till: Till) -> None:
    if client.get(DRAWERS, till.drawer_id) is None:
        till.open_drawer(DRAWER_FLOAT, "GBP")


def _pay(client: Terminal, till: Till, orders: list[Record], step: Step) -> None:
    live = _attempts(orders, LIVE_STATES)
    if live:  # move what is in flight on: the provider's next answer
        order_id, attempt_id, attempt = live[step.a % len(live)]
        following = {"created": "submit", "pending": "authorise", "requires_action": "authorise"}
        name = following.get(attempt["state"], "capture" if step.b % 5 else "fail")
        args = {"attempt_id": attempt_id, "reason": "declined"}
        client.command(ORDERS, order_id, f"payment_{name}", args)
        return
    due = [
        o
        for o in orders
        if o.fields.get("status") in ("open", "sent", "ready", "served")
        and (o.fields.get("balance_due") or 0) > 0
    ]
    if not due:  # a guest orders something and pays straight away (a counter sale)
        counter = [o for o in orders if o.fields.get("status") == "open"]
        if not counter:
            return
        sale = counter[step.a % len(counter)]
        line = {
            "line_id": f"pay.{till.new_id()}",
            "item": "coffee",
            "qty": 1,
            "unit_price": 250 + 10 * (step.b % 10),
        }
        client.command(ORDERS, sale.record_id, "add_line", line)
        due = [client.get(ORDERS, sale.record_id) or sale]
    order = due[step.a % len(due)]
    balance = order.fields["balance_due"]
    kind = step.b % 4
    tip = tip_amount(TipSettings(), amount=balance, order_total=balance, preset=step.b % 3)
    if kind == 0:  # everything in cash, with change
        tendered = -(-(balance + tip) // 1000) * 1000 + (1000 if step.b % 2 else 0)
        with client.store.transaction():
            _drawer(client, till)
            till.take_cash(order.record_id, balance, tendered, tip=tip, employee=f"e{step.b % 3}")
    elif kind == 1:  # a split bill: this guest pays their half in exact cash
        share = split_equal(balance, 2)[0]
        with client.store.transaction():
            _drawer(client, till)
            till.take_cash(order.record_id, share, share)
    else:  # a card: captured at once, or left authorised
        attempt_id = till.start(order.record_id, "card", balance, tip=tip)
        if kind == 2:
            for name in ("submit", "authorise", "capture"):
                client.command(
                    ORDERS, order.record_id, f"payment_{name}", {"attempt_id": attempt_id}
                )


def payment_counts(records: Iterable[Record]) -> Counter[str]:
    """What a tenant's records show: settled payments by method, refunds, voids,
    overpayments detected, refund-due entries still open."""
    counts: Counter[str] = Counter()
    for record in records:
        if record.collection != ORDERS or record.deleted:
            continue
        attempts = record.fields.get("payments") or {}
        for key in sorted(attempts):
            a = attempts[key]
            if a["state"] in SETTLED_STATES:
                counts[a["method"]] += 1
            if a["state"] == "cancelled":
                counts["voids"] += 1
            counts["refunds"] += len(a.get("refunds") or {})
            if a.get("overpaid"):
                counts["overpayments"] += 1
        counts["refunds_due_open"] += len(record.fields.get("refunds_due") or {})
    return counts


# ------------------------------------------------------------------------ the demo


def has_payments(client: Terminal) -> bool:
    return DRAWERS in client.registry.collection_names


def settle(client: Terminal, till: Till, order_id: str, how: int) -> list[str]:
    """Pay what ``order_id`` still owes, by ``how``: 0 cash with change and a 10 % tip,
    1 a split bill (half in exact cash, half by card, or cash when offline), 2 card with
    a 5 % tip (cash when offline). Returns the attempt ids."""
    order = client.get(ORDERS, order_id)
    if order is None:
        return []
    online = till.online()
    made: list[str] = []
    attempts = order.fields.get("payments") or {}
    for key in sorted(attempts):  # the provider answers whatever is still in flight
        state = attempts[key]["state"]
        steps = {
            "created": ("submit", "authorise", "capture"),
            "pending": ("authorise", "capture"),
            "requires_action": ("authorise", "capture"),
            "authorised": ("capture",),
        }
        for name in steps.get(state, ()):
            client.command(ORDERS, order_id, f"payment_{name}", {"attempt_id": key})
    order = client.get(ORDERS, order_id) or order
    balance = int(order.fields.get("balance_due") or 0)
    if balance <= 0:
        return made

    def cash(amount: int, tip: int, round_up: bool) -> None:
        tendered = -(-(amount + tip) // 500) * 500 if round_up else amount + tip
        with client.store.transaction():
            _drawer(client, till)
            made.append(till.take_cash(order_id, amount, tendered, tip=tip, employee="e1"))

    def card(amount: int, tip: int) -> None:
        attempt_id = till.start(order_id, "card", amount, tip=tip, employee="e2")
        for name in ("submit", "authorise", "capture"):
            client.command(ORDERS, order_id, f"payment_{name}", {"attempt_id": attempt_id})
        made.append(attempt_id)

    tips = TipSettings()
    if how % 3 == 0 or not online:
        cash(balance, tip_amount(tips, amount=balance, order_total=balance, preset=1), True)
    elif how % 3 == 1:
        first, second = split_equal(balance, 2)
        cash(first, 0, False)
        card(second, 0)
    else:
        card(balance, tip_amount(tips, amount=balance, order_total=balance, preset=0))
    return made


def money_report(records: Iterable[Record]) -> dict[str, Any]:
    """The money at the end of a service, from the server's records: does it add up?

    ``money_adds_up``: every payments invariant holds, the ledger's collected figure equals
    the orders', and every drawer's cash from sales less cash refunds equals the cash the
    orders collected. ``double_charges``: orders that hold more than their total without a
    refund-due entry, plus attempts captured more than once (both must be 0)."""
    from fynlo_sync.domains.payments.invariants import check_money
    from fynlo_sync.domains.payments.ledger import LEDGER, ledger_of
    from fynlo_sync.domains.payments.reports import revenue

    rows = list(records)
    live = {
        c: {r.record_id: r.fields for r in rows if r.collection == c and not r.deleted}
        for c in (ORDERS, DRAWERS, LEDGER)
    }
    violations = check_money(live)
    sets, written, pending = ledger_of(rows)
    every_order = [r for r in rows if r.collection == ORDERS]  # tombstones keep their money
    by_method: Counter[str] = Counter()
    collected: Counter[str] = Counter()
    double = 0
    for order in every_order:
        fields = order.fields
        if (fields.get("paid") or 0) > (fields.get("total") or 0) + (fields.get("refund_due") or 0):
            double += 1
        attempts = fields.get("payments") or {}
        for key in sorted(attempts):
            a = attempts[key]
            if a["state"] in SETTLED_STATES:
                by_method[a["method"]] += 1
                collected[a["method"]] += a["captured"] - a["change"] - a["refunded"]
    captures = Counter((s.order_id, s.attempt_id) for s in sets if s.event == "capture")
    double += sum(1 for n in captures.values() if n > 1)
    day_rows = revenue(sets, "0000-01-01", "9999-12-31")
    ledger_collected: Counter[str] = Counter()
    for row in day_rows:
        ledger_collected[row["method"]] += row["collected"] - row["refunds"]
    drawers = {}
    drawer_cash = 0
    for r in rows:
        if r.collection != DRAWERS or r.deleted:
            continue
        moves = (r.fields.get("movements") or {}).values()
        drawer_cash += sum(
            m["amount"] * (1 if m["kind"] == "sale" else -1)
            for m in moves
            if m["kind"] in ("sale", "refund")
        )
        # Cash no payment records (the server refused it, the order was deleted) is
        # flagged on the drawer (protocol 19.7): it is in the drawer, not in the payments.
        drawer_cash -= r.fields.get("unmatched") or 0
        drawers[r.record_id] = {
            k: r.fields.get(k)
            for k in ("status", "float", "expected", "counted", "difference", "unmatched")
        }
    adds_up = (
        not violations
        and dict(ledger_collected) == {k: v for k, v in collected.items() if k in ledger_collected}
        and sum(ledger_collected.values()) == sum(collected.values())
        and drawer_cash == collected.get("cash", 0)
    )
    return {
        "money_adds_up": adds_up,
        "payments": dict(sorted(by_method.items())),
        "double_charges": double,
        "ledger_balanced": all(s.total() == 0 for s in sets),
        "money": {
            "collected": dict(sorted(collected.items())),
            "tips": sum(r["tips"] for r in day_rows),
            "processing_fees": sum(r["processing_fee"] for r in day_rows),
            "platform_revenue": sum(r["platform_fee"] for r in day_rows),
            "refunds": sum(r["refunds"] for r in day_rows),
            "refunds_due_open": sum(
                len(r.fields.get("refunds_due") or {}) for r in every_order if not r.deleted
            ),
            "voids": sum(
                1
                for r in every_order
                for a in (r.fields.get("payments") or {}).values()
                if a["state"] == "cancelled"
            ),
            "overpayments": sum(
                1
                for r in every_order
                for a in (r.fields.get("payments") or {}).values()
                if a.get("overpaid")
            ),
            "drawers": drawers,
            "drawer_cash": drawer_cash,
            "posting_sets": {"written": written, "pending": pending},
            "violations": violations,
        },
        "revenue_rows": day_rows,
    }
