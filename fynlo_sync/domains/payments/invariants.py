"""The payments invariants: pure checks over a tenant's records, returning violations.

* every posting set balances (the ledger's records and the sets the orders call for);
* for every order: collected = sum(captured - change - refunds), and the part paid toward
  the total never exceeds total + what is recorded as due back (an overpayment is always
  a refund-due entry, never silent);
* no attempt is captured twice (at most one capture set per attempt in the ledger, and no
  refund beyond what was captured);
* the platform fee is the schedule's rate of the non-tip amount under its named rounding;
* a drawer's expected cash = float + cash in - cash out, and its ``unmatched`` is the
  signed sum of its flagged movements.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from fynlo_sync.domains.payments.attempts import attempt_net, derive_money
from fynlo_sync.domains.payments.drawers import MOVEMENT_KINDS, drawer_figures
from fynlo_sync.domains.payments.ledger import PostingSet, from_fields, posting_sets
from fynlo_sync.domains.payments.money import percent_of
from fynlo_sync.domains.payments.settings import DEFAULT_SETTINGS, PaymentsSettings
from fynlo_sync.domains.payments.states import SETTLED_STATES

__all__ = ["check_ledger", "check_money", "check_order"]

Rows = Mapping[str, Mapping[str, Any]]


def check_order(
    order_id: str, order: Mapping[str, Any], settings: PaymentsSettings = DEFAULT_SETTINGS
) -> list[str]:
    out: list[str] = []
    where = f"order {order_id}"
    attempts = order.get("payments") or {}
    want = derive_money(order)
    for name in sorted(want):
        if name in order and order[name] != want[name]:
            out.append(f"{where}: {name} is {order[name]}, the attempts say {want[name]}")
    total = order.get("total") or 0
    if want["paid"] > total + want["refund_due"]:
        out.append(
            f"{where}: paid {want['paid']} exceeds total {total} + due back {want['refund_due']}"
        )
    for attempt_id in sorted(attempts):
        a = attempts[attempt_id]
        at = f"{where} attempt {attempt_id}"
        if a["refunded"] != sum(r["amount"] for r in (a.get("refunds") or {}).values()):
            out.append(f"{at}: refunded {a['refunded']} is not the sum of its refunds")
        if a["state"] not in SETTLED_STATES:
            if a["refunded"] or (a["captured"] and a.get("reversed") is None):
                out.append(f"{at}: {a['state']} but money moved")
            continue
        if attempt_net(a) < 0:
            out.append(f"{at}: refunded {a['refunded']} above captured - change")
        charged = a["amount"] + a["tip"] + a["surcharge"]
        if a["method"] == "cash":
            if a["change"] != a["captured"] - charged or a["change"] < 0:
                out.append(f"{at}: change {a['change']} is not tendered - due")
        elif a["captured"] != charged:
            out.append(f"{at}: captured {a['captured']} is not amount + tip + surcharge")
        fees = a["fees"]
        non_tip = a["captured"] - a["change"] - a["tip"]
        rate = settings.schedule.rate(
            "platform", a["method"], settings.country, a["currency"], fees["day"]
        )
        bp = 0 if rate is None else rate.rate_bp
        rounding = "half-up" if rate is None else rate.rounding
        expected = percent_of(non_tip, bp, rounding)
        if (fees["platform"], fees["platform_bp"]) != (expected, bp):
            out.append(
                f"{at}: platform fee {fees['platform']} is not {bp} bp of {non_tip} "
                f"({rounding}) = {expected}"
            )
    return out


def check_money(
    collections: Mapping[str, Rows], settings: PaymentsSettings = DEFAULT_SETTINGS
) -> list[str]:
    """Every violation among a tenant's live records (orders, drawers, ledger)."""
    out: list[str] = []
    orders = collections.get("orders") or {}
    for order_id in sorted(orders):
        out.extend(check_order(order_id, orders[order_id], settings))
    drawers = collections.get("drawers") or {}
    for drawer_id in sorted(drawers):
        out.extend(_check_drawer(drawer_id, drawers[drawer_id]))
    if "ledger" in collections:
        out.extend(check_ledger(orders, collections["ledger"]))
    return out


def check_ledger(orders: Rows, ledger: Rows) -> list[str]:
    """The posting sets the orders call for and those written balance; one capture set
    per attempt; every written set is the one its payment calls for."""
    out: list[str] = []
    derived: list[PostingSet] = []
    for order_id in sorted(orders):
        derived.extend(posting_sets(order_id, orders[order_id]))
    written = [from_fields(set_id, ledger[set_id]) for set_id in sorted(ledger)]
    for s in (*derived, *written):
        if s.total() != 0:
            out.append(f"posting set {s.set_id} sums to {s.total()}")
    captures = Counter((s.order_id, s.attempt_id) for s in written if s.event == "capture")
    for (order_id, attempt_id), n in sorted(captures.items()):
        if n > 1:
            out.append(f"attempt {order_id}/{attempt_id} captured {n} times")
    by_id = {s.set_id: s for s in derived}
    for s in written:
        if s.set_id not in by_id:
            out.append(f"posting set {s.set_id} records no payment")
        elif by_id[s.set_id] != s:
            out.append(f"posting set {s.set_id} differs from the payment it records")
    return out


def _check_drawer(drawer_id: str, fields: Mapping[str, Any]) -> list[str]:
    moves: Iterable[Mapping[str, Any]] = (fields.get("movements") or {}).values()
    cash_in = sum(m["amount"] for m in moves if MOVEMENT_KINDS[m["kind"]] > 0)
    moves = (fields.get("movements") or {}).values()
    cash_out = sum(m["amount"] for m in moves if MOVEMENT_KINDS[m["kind"]] < 0)
    expected = (fields.get("float") or 0) + cash_in - cash_out
    out = []
    if fields.get("expected") != expected:
        out.append(
            f"drawer {drawer_id}: expected {fields.get('expected')} is not float + in - out "
            f"= {expected}"
        )
    if expected < 0:
        out.append(f"drawer {drawer_id}: holds {expected}, less than nothing")
    unmatched = drawer_figures(fields)["unmatched"]
    if fields.get("unmatched", 0) != unmatched:
        out.append(
            f"drawer {drawer_id}: unmatched {fields.get('unmatched')} is not the flagged "
            f"cash {unmatched}"
        )
    return out
