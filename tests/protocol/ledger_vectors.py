"""``ledger.json``: the posting sets of the payments ledger (protocol section 19.8).

Built by ``generate_vectors.py``. Each vector runs real ``payment_*`` commands (the
payments plugin, through :func:`~fynlo_sync.engine.apply_op`) on an order, then asks
:func:`~fynlo_sync.domains.payments.ledger.posting_sets` for the sets the order calls for.
The hand-written expectations below (the amounts of the capture legs, the tie that the
fee rounding breaks, the reversal undoing a corrected fee) are asserted before a file is
written, so a change in the ledger or the fees shows up here as well as in the diff.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fynlo_sync.domains.payments.attempts import derive_money
from fynlo_sync.domains.payments.ledger import posting_sets
from fynlo_sync.engine import apply_op
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op, Record, Stamp
from tests.payments.fixtures import order_with, payments_registry
from tests.protocol.payments_vectors import settings_of

__all__ = ["ledger_vectors"]

T0 = 1_700_000_000_000
DAY_MS = 86_400_000
#: 120 characters: with ``o-1:a1:refund:`` the set id is longer than 128, so it is hashed.
LONG_REFUND = "r-" + "x" * 118

US = {"country": "US", "fee_bearer": "restaurant", "surcharge_bp": 0, "consumer": True}
US_SURCHARGE = {"country": "US", "fee_bearer": "customer", "surcharge_bp": 250, "consumer": True}

Step = tuple[int, str, dict[str, Any]]


def _paid(
    method: str,
    amount: int,
    tip: int,
    *,
    attempt: str = "a1",
    capture: dict[str, Any] | None = None,
    **start: Any,
) -> list[Step]:
    """An attempt started, submitted, authorised and captured (``capture``: its extra args)."""
    return [
        (
            0,
            "start",
            {"attempt_id": attempt, "method": method, "amount": amount, "tip": tip, **start},
        ),
        (500, "submit", {"attempt_id": attempt, "provider_ref": f"pi_{attempt}"}),
        (1000, "authorise", {"attempt_id": attempt}),
        (2000, "capture", {"attempt_id": attempt, **(capture or {})}),
    ]


#: (name, order total, settings or None, [(offset ms, command, args)]). The order is
#: ``o-1`` of tests.payments.fixtures (one served line) with its total set to ``total``.
SCENARIOS: list[tuple[str, int, dict[str, Any] | None, list[Step]]] = [
    (
        "card capture: gross, both fees, the tip passed through to its employee, the net",
        1000,
        None,
        _paid("card", 1000, 100, employee="emp-1"),
    ),
    (
        "a tip added at capture replaces the authorised one (fees on the non-tip part)",
        1000,
        None,
        _paid("card", 1000, 200, employee="emp-2", capture={"tip": 150}),
    ),
    (
        "cash with change: the change goes back to the customer, no processing fee",
        1000,
        None,
        [(0, "cash", {"attempt_id": "a1", "amount": 1000, "tip": 0, "tendered": 2000})],
    ),
    (
        "cash with a tip and no employee: the tip goes to tips:pool",
        1000,
        None,
        [(0, "cash", {"attempt_id": "a1", "amount": 1000, "tip": 100, "tendered": 1500})],
    ),
    (
        "half-up rounding of the fees: 150 bp of 250 is 3.75 -> 4, 100 bp of 250 is 2.5 -> 3",
        250,
        None,
        _paid("card", 250, 0),
    ),
    (
        "open banking: 20 bp of 1010 is 2.02 -> 2, platform 100 bp is 10.1 -> 10",
        1010,
        None,
        _paid("open_banking", 1010, 0),
    ),
    (
        "USD card in the US: 290 bp of 500 is 14.5 -> 15 (half-up) + 30; its own currency",
        500,
        US,
        _paid("card", 500, 50, employee="emp-1"),
    ),
    (
        "the processor's actual fee at capture replaces the estimate",
        1000,
        None,
        _paid("apple_pay", 1000, 0, capture={"processing_fee": 31}),
    ),
    (
        "refunds: each is its own set, customer +R, restaurant -R; fees are not returned",
        1000,
        None,
        [
            *_paid("card", 1000, 100, employee="emp-1"),
            (DAY_MS, "refund", {"attempt_id": "a1", "refund_id": "r1", "amount": 300}),
            (2 * DAY_MS, "refund", {"attempt_id": "a1", "refund_id": "r2", "amount": 800}),
        ],
    ),
    (
        "a refund id that makes the set id longer than 128 characters: ps: and its MD5",
        1000,
        None,
        [
            (0, "cash", {"attempt_id": "a1", "amount": 1000, "tip": 0, "tendered": 1000}),
            (1000, "refund", {"attempt_id": "a1", "refund_id": LONG_REFUND, "amount": 250}),
        ],
    ),
    (
        "fee corrections: one set per correction, in n order, the difference to the fee before",
        1000,
        None,
        [
            *_paid("card", 1000, 0),
            (
                DAY_MS,
                "fee_correction",
                {"attempt_id": "a1", "correction_id": "fc1", "processing_fee": 40},
            ),
            (
                2 * DAY_MS,
                "fee_correction",
                {"attempt_id": "a1", "correction_id": "fc0", "processing_fee": 33},
            ),
        ],
    ),
    (
        "a reversal negates the capture and its corrections together, on its own day",
        1000,
        None,
        [
            *_paid("card", 1000, 100, employee="emp-3"),
            (
                DAY_MS,
                "fee_correction",
                {"attempt_id": "a1", "correction_id": "fc1", "processing_fee": 36},
            ),
            (3 * DAY_MS, "reverse", {"attempt_id": "a1", "reason": "payment_returned"}),
        ],
    ),
    (
        "a split payment: card then cash, one capture set each, attempt-id order",
        1000,
        None,
        [
            *_paid("card", 600, 0, attempt="b2"),
            (
                3000,
                "cash",
                {
                    "attempt_id": "a9",
                    "amount": 400,
                    "tip": 20,
                    "tendered": 500,
                    "employee": "emp-1",
                },
            ),
        ],
    ),
    (
        "a customer-paid surcharge is captured with the amount and stays in the restaurant's net",
        1000,
        US_SURCHARGE,
        _paid("card", 1000, 0, funding="credit"),
    ),
    (
        "an overpayment refunded: the whole capture posts, the refund of what was due is a refund",
        1000,
        None,
        [
            (0, "cash", {"attempt_id": "a1", "amount": 600, "tip": 0, "tendered": 600}),
            (
                1000,
                "start",
                {"attempt_id": "a2", "method": "open_banking", "amount": 400, "tip": 0},
            ),
            (1500, "submit", {"attempt_id": "a2", "provider_ref": "pi_a2"}),
            (2000, "authorise", {"attempt_id": "a2"}),
            (2500, "cash", {"attempt_id": "a3", "amount": 400, "tip": 0, "tendered": 400}),
            (3000, "capture", {"attempt_id": "a2"}),
            (4000, "refund", {"attempt_id": "a2", "refund_id": "due", "amount": 400}),
        ],
    ),
    (
        "attempts that moved no money post nothing (failed, cancelled, still live)",
        1000,
        None,
        [
            (0, "start", {"attempt_id": "a1", "method": "card", "amount": 1000, "tip": 0}),
            (1000, "fail", {"attempt_id": "a1", "reason": "card_declined"}),
            (2000, "start", {"attempt_id": "a2", "method": "card", "amount": 1000, "tip": 0}),
            (3000, "cancel", {"attempt_id": "a2", "reason": "requested_by_customer"}),
            (4000, "start", {"attempt_id": "a3", "method": "card", "amount": 1000, "tip": 0}),
            (4500, "submit", {"attempt_id": "a3", "provider_ref": "pi_a3"}),
            (5000, "authorise", {"attempt_id": "a3"}),
        ],
    ),
]


def _order(total: int, settings: dict[str, Any] | None) -> Record:
    row = order_with({})
    currency = "USD" if settings is not None and settings["country"] == "US" else "GBP"
    fields = {
        **row.fields,
        "currency": currency,
        "lines": {"l1": {"item": "Fish", "qty": 1, "unit_price": total, "sent": True}},
    }
    fields["total"] = total
    fields.update(derive_money(fields))
    return msgspec.structs.replace(row, fields=fields)


def _run(
    total: int, settings: dict[str, Any] | None, steps: list[Step]
) -> tuple[Record, list[Any]]:
    registry = payments_registry(settings_of(settings))
    row = _order(total, settings)
    ops = []
    for n, (offset, command, args) in enumerate(steps, start=1):
        op = Op(
            op_id=f"till-a-op-{n}",
            node_id="till-a",
            seq=n,
            hlc=to_wire(pack(T0 + offset, 0)),
            base_seq=n - 1,
            collection="orders",
            record_id="o-1",
            kind="command",
            name=f"payment_{command}",
            args=args,
        )
        result = apply_op(row, op, registry, n + 4)
        if result.status != "applied" or result.record is None:
            raise AssertionError(f"ledger scenario step {n} ({command}): {result}")
        row = result.record
        ops.append(msgspec.to_builtins(op))
    return row, ops


def ledger_vectors() -> list[dict[str, Any]]:
    out = []
    for name, total, settings, steps in SCENARIOS:
        start = _order(total, settings)
        row, ops = _run(total, settings, steps)
        sets = posting_sets(row.record_id, row.fields)
        for s in sets:
            if s.total() != 0 or any(p.amount == 0 for p in s.postings):
                raise AssertionError(f"ledger {name!r}: {s}")
        vector: dict[str, Any] = {"name": name, "order": msgspec.to_builtins(start.fields)}
        if settings is not None:
            vector["settings"] = settings
        vector.update(
            ops=ops,
            payments=row.fields["payments"],
            expect=[{"set_id": s.set_id, **s.to_fields()} for s in sets],
        )
        out.append(vector)
    _check(out)
    return out + _post_vectors(out)


def _post_vectors(sets_from: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``post`` command of the ``ledger`` collection (a set written once, balanced)."""
    registry = payments_registry()
    first = sets_from[0]["expect"][0]
    good = {k: v for k, v in first.items() if k != "set_id"}
    moved = [{**p} for p in good["postings"]]
    moved[0]["amount"] -= 1
    cases: list[tuple[str, bool, dict[str, Any], str]] = [
        ("post: a balanced set is written as it is", False, good, "applied"),
        ("post: a second post of a set id is refused", True, good, "posting-exists"),
        ("post: entries that do not sum to 0", False, {**good, "postings": moved}, "unbalanced"),
        ("post: no entries", False, {**good, "postings": []}, "invalid-argument"),
        (
            "post: a set without its day",
            False,
            {k: v for k, v in good.items() if k != "day"},
            "invalid-argument",
        ),
        (
            "post: an amount that is not an integer",
            False,
            {**good, "postings": [{**moved[0], "amount": "-1100"}, *good["postings"][1:]]},
            "invalid-argument",
        ),
        (
            "post: an entry without its kind",
            False,
            {**good, "postings": [{"account": "customer", "amount": 0}]},
            "invalid-argument",
        ),
        (
            "post: an event that is not a string",
            False,
            {**good, "event": 7},
            "invalid-argument",
        ),
    ]
    # A terminal may not post: its set could take a capture's id before the server's.
    by_terminal = ("post: a terminal's post is refused, even of a balanced set", good)
    runs = [(name, exists, args, outcome, "server") for name, exists, args, outcome in cases]
    runs.append((by_terminal[0], False, by_terminal[1], "server-only", "till-a"))
    out = []
    for n, (name, exists, args, outcome, node) in enumerate(runs, start=1):
        existing = None
        if exists:
            existing = Record(
                collection="ledger",
                record_id=first["set_id"],
                fields=good,
                stamps={
                    k: Stamp(hlc=to_wire(pack(T0, 0)), node_id="server", seq=1)
                    for k in sorted(good)
                },
                version=1,
            )
        op = Op(
            op_id=f"{node}-op-{n}",
            node_id=node,
            seq=n,
            hlc=to_wire(pack(T0 + 10_000, 0)),
            base_seq=0,
            collection="ledger",
            record_id=first["set_id"],
            kind="command",
            name="post",
            args=args,
        )
        result = apply_op(existing, op, registry, 20 + n)
        got = result.status if result.status == "applied" else result.reason
        if got != outcome:
            raise AssertionError(f"ledger {name!r}: {result}")
        out.append(
            {
                "name": name,
                "existing": None if existing is None else existing.fields,
                "op": msgspec.to_builtins(op),
                "expect": {
                    "status": result.status,
                    "reason": result.reason,
                    "fields": None if result.record is None else result.record.fields,
                },
            }
        )
    return out


def _legs(s: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(p["account"], p["kind"]): p["amount"] for p in s["postings"]}


def _check(vectors: list[dict[str, Any]]) -> None:
    """Hand-written expectations for section 19.8 (the amounts worked out by hand)."""
    by_name = {v["name"]: v["expect"] for v in vectors}
    (card,) = by_name[SCENARIOS[0][0]]
    # 1100 captured; 150 bp of 1000 + 20 = 35; 100 bp of 1000 = 10; net 1100-35-10-100.
    assert card["set_id"] == "o-1:a1:capture" and card["day"] == "2023-11-14"
    assert _legs(card) == {
        ("customer", "gross"): -1100,
        ("processor", "processor_fee"): 35,
        ("platform", "platform_fee"): 10,
        ("tips:emp-1", "tip"): 100,
        ("restaurant:card", "net"): 955,
    }
    (late_tip,) = by_name[SCENARIOS[1][0]]
    assert _legs(late_tip)[("customer", "gross")] == -1150
    assert _legs(late_tip)[("tips:emp-2", "tip")] == 150
    (cash,) = by_name[SCENARIOS[2][0]]
    assert _legs(cash) == {
        ("customer", "gross"): -2000,
        ("customer", "change"): 1000,
        ("platform", "platform_fee"): 10,
        ("restaurant:cash", "net"): 990,
    }
    (pool,) = by_name[SCENARIOS[3][0]]
    assert _legs(pool)[("tips:pool", "tip")] == 100 and _legs(pool)[("customer", "change")] == 400
    (tie,) = by_name[SCENARIOS[4][0]]
    assert _legs(tie)[("processor", "processor_fee")] == 24  # 4 + 20
    assert _legs(tie)[("platform", "platform_fee")] == 3
    (ob,) = by_name[SCENARIOS[5][0]]
    assert _legs(ob)[("processor", "processor_fee")] == 2
    assert _legs(ob)[("platform", "platform_fee")] == 10
    (usd,) = by_name[SCENARIOS[6][0]]
    assert usd["currency"] == "USD" and _legs(usd)[("processor", "processor_fee")] == 45
    (actual,) = by_name[SCENARIOS[7][0]]
    assert _legs(actual)[("processor", "processor_fee")] == 31
    capture, r1, r2 = by_name[SCENARIOS[8][0]]
    assert _legs(capture)[("restaurant:card", "net")] == 955
    assert _legs(r1) == {("customer", "refund"): 300, ("restaurant:card", "refund"): -300}
    assert r1["day"] == "2023-11-15" and r2["set_id"] == "o-1:a1:refund:r2"
    assert _legs(r2)[("customer", "refund")] == 800
    _, hashed = by_name[SCENARIOS[9][0]]
    assert hashed["set_id"].startswith("ps:") and len(hashed["set_id"]) == 35
    _, fc1, fc0 = by_name[SCENARIOS[10][0]]
    assert fc1["set_id"] == "o-1:a1:correction:fc1"
    assert _legs(fc1) == {("processor", "processor_fee"): 5, ("restaurant:card", "net"): -5}
    assert _legs(fc0) == {("processor", "processor_fee"): -7, ("restaurant:card", "net"): 7}
    _, fix, undo = by_name[SCENARIOS[11][0]]
    assert _legs(fix) == {("processor", "processor_fee"): 1, ("restaurant:card", "net"): -1}
    assert undo["event"] == "reversal" and undo["day"] == "2023-11-17"
    assert _legs(undo) == {
        ("customer", "gross"): 1100,
        ("processor", "processor_fee"): -36,
        ("platform", "platform_fee"): -10,
        ("tips:emp-3", "tip"): -100,
        ("restaurant:card", "net"): -954,
    }
    a9, b2 = by_name[SCENARIOS[12][0]]
    assert (a9["set_id"], b2["set_id"]) == ("o-1:a9:capture", "o-1:b2:capture")
    (surcharged,) = by_name[SCENARIOS[13][0]]
    # 1000 + 250 bp surcharge (25) captured; fees on the non-tip 1025: 290 bp -> 29.725 -> 30
    # + 30; platform 100 bp -> 10.25 -> 10; the restaurant keeps the surcharge in its net.
    assert _legs(surcharged) == {
        ("customer", "gross"): -1025,
        ("processor", "processor_fee"): 60,
        ("platform", "platform_fee"): 10,
        ("restaurant:card", "net"): 955,
    }
    _, over, refund, _ = by_name[SCENARIOS[14][0]]
    assert _legs(over)[("customer", "gross")] == -400 and refund["set_id"] == "o-1:a2:refund:due"
    assert by_name[SCENARIOS[15][0]] == []
