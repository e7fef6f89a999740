"""``payments_state.json`` and ``fees.json``: the payments domain (protocol section 19).

Built by ``generate_vectors.py``; the hand-written expectations (the ties of the domain
facts, the state table's shape) are asserted here before a file is written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from fynlo_sync.domains.payments.attempts import derive_money
from fynlo_sync.domains.payments.fees import (
    DEFAULT_SCHEDULE,
    DEFAULT_SURCHARGE_RULES,
    check_surcharge,
    quote,
    service_charge,
)
from fynlo_sync.domains.payments.money import (
    ROUNDING_MODES,
    MoneyError,
    gross_up,
    percent_of,
    split_equal,
    split_ratio,
)
from fynlo_sync.domains.payments.routing import rank_methods
from fynlo_sync.domains.payments.settings import PaymentsSettings
from fynlo_sync.domains.payments.states import COMMANDS, STATES, next_state
from fynlo_sync.domains.payments.tips import TipSettings, tip_amount
from fynlo_sync.engine import apply_op
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op, Stamp
from fynlo_sync.plugins import SERVER_NODE
from fynlo_sync.schema import collection_schema
from tests.payments.fixtures import ARGS, attempt_in, order_with, payments_registry

__all__ = [
    "drawers_vectors",
    "fees_vectors",
    "payments_delete_vectors",
    "payments_state_vectors",
    "rate_to_json",
    "settings_of",
]

T0 = 1_700_000_000_000
SEQ = 12


def payments_state_vectors() -> list[dict[str, Any]]:
    registry = payments_registry()
    out = []
    for state in (None, *STATES):
        for command in COMMANDS:
            row = order_with({} if state is None else {"a1": attempt_in(state)})
            op = Op(
                op_id="till-b-op-9",
                node_id="till-b",
                seq=9,
                hlc=to_wire(pack(T0 + 5_000, 0)),
                base_seq=4,
                collection="orders",
                record_id="o-1",
                kind="command",
                name=f"payment_{command}",
                args=ARGS[command],
            )
            result = apply_op(row, op, registry, SEQ)
            target = next_state(state, command)
            if command == "refund" and target is not None and state == "refunded_partial":
                target = "refunded_partial"  # 300 of the 900 left
            if (target is not None) != (result.status == "applied"):
                raise AssertionError(f"payments ({state}, {command}): {result}")
            if target is None and result.reason != "illegal-transition":
                raise AssertionError(f"payments ({state}, {command}): {result.reason}")
            if target is not None:
                assert result.record is not None
                assert result.record.fields["payments"]["a1"]["state"] == target
            out.append(
                {
                    "name": f"{state or 'absent'} + {command}",
                    "state": state,
                    "command": command,
                    "allowed": target is not None,
                    "next": target,
                    "record": msgspec.to_builtins(row),
                    "op": msgspec.to_builtins(op),
                    "seq": SEQ,
                    "expect": {
                        "status": result.status,
                        "reason": result.reason,
                        "record": None
                        if result.record is None
                        else msgspec.to_builtins(result.record),
                    },
                }
            )
    assert len(out) == 121 and sum(v["allowed"] for v in out) == 24
    return out + _rule_vectors(registry) + _surcharge_vectors() + _card_results_vectors()


LATE_REFUND = "rule: a refund the server receives over 120000 ms after its HLC was made offline"
PROMPT_REFUND = "rule: a refund received within 120000 ms of its HLC is online"


def _overpaid() -> Any:
    """An order paid by ``a1`` and overpaid by open banking ``a2`` (500 due back)."""
    second = {**attempt_in("captured", method="open_banking"), "amount": 500, "tip": 0}
    second.update(captured=500, overpaid=500)
    row = order_with({"a1": attempt_in("captured"), "a2": second})
    fields = dict(row.fields)
    fields["refunds_due"] = {
        "a2": {"amount": 500, "reason": "overpayment", "method": "open_banking"}
    }
    fields.update(derive_money(fields))
    return msgspec.structs.replace(row, fields=fields)


def _rule_vectors(registry: Any) -> list[dict[str, Any]]:
    """The rules beyond the table, one vector each (state/next name the attempt the op
    names; ``allowed`` is the table's verdict, the outcome may still be a rejection)."""
    paid = order_with({"a1": attempt_in("captured")})
    cases: list[tuple[str, Any, str, dict[str, Any], str | None]] = [
        (
            "rule: cash on a paid order is an overpayment, recorded as due back",
            paid,
            "cash",
            {"attempt_id": "a2", "amount": 1000, "tendered": 1000, "offline": True},
            None,
        ),
        (
            "rule: a second live attempt is refused",
            order_with({"a1": attempt_in("pending")}),
            "start",
            {"attempt_id": "a2", "method": "open_banking", "amount": 500},
            "attempt-live",
        ),
        (
            "rule: an attempt cannot start above the balance due",
            paid,
            "start",
            {"attempt_id": "a2", "method": "card", "amount": 1},
            "amount-above-balance",
        ),
        (
            "rule: a card is refused offline",
            order_with({}),
            "start",
            {"attempt_id": "a2", "method": "card", "amount": 100, "offline": True},
            "method-needs-network",
        ),
        (
            "rule: a refund above the capture is refused",
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 1101},
            "refund-above-captured",
        ),
        (
            "rule: a refund made offline needs a manager",
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100, "offline": True},
            "manager-required",
        ),
        (
            "rule: a refund goes to the original method",
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100, "method": "cash"},
            "refund-method-mismatch",
        ),
        (
            "rule: cash short of what is due is refused",
            order_with({}),
            "cash",
            {"attempt_id": "a2", "amount": 1000, "tip": 100, "tendered": 1099},
            "tendered-short",
        ),
        (
            "rule: cash is not reversed (refund it from the drawer)",
            order_with({"a1": attempt_in("captured", method="cash")}),
            "reverse",
            {"attempt_id": "a1", "reason": "payment_returned"},
            "cash-not-reversible",
        ),
        (
            "rule: a reversal clears the attempt's refund-due entry",
            _overpaid(),
            "reverse",
            {"attempt_id": "a2", "reason": "payment_returned"},
            None,
        ),
        (
            LATE_REFUND,
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            "manager-required",
        ),
        (
            PROMPT_REFUND,
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            None,
        ),
        (
            "rule: a fee correction records the processor's actual fee",
            paid,
            "fee_correction",
            {"attempt_id": "a1", "correction_id": "bt_1", "processing_fee": 38},
            None,
        ),
        (
            "rule: a fee correction needs a captured payment",
            order_with({"a1": attempt_in("pending")}),
            "fee_correction",
            {"attempt_id": "a1", "correction_id": "bt_1", "processing_fee": 38},
            "not-captured",
        ),
        (
            "rule: a fee correction to the fee the ledger holds is refused",
            paid,
            "fee_correction",
            {"attempt_id": "a1", "correction_id": "bt_1", "processing_fee": 35},
            "fee-unchanged",
        ),
        (
            "rule: a partial capture releases the rest",
            order_with({"a1": attempt_in("authorised")}),
            "capture",
            {"attempt_id": "a1", "amount": 600},
            None,
        ),
        (
            "rule: a tip added at capture replaces the one authorised, fees on the amount",
            order_with({"a1": attempt_in("authorised")}),
            "capture",
            {"attempt_id": "a1", "tip": 40},
            None,
        ),
        (
            "rule: a tip at capture beyond what was authorised is refused",
            order_with({"a1": attempt_in("authorised")}),
            "capture",
            {"attempt_id": "a1", "tip": 101},
            "capture-above-authorised",
        ),
    ]
    out = []
    for k, (name, row, command, args, reason) in enumerate(cases):
        attempt_id = args["attempt_id"]
        found = (row.fields.get("payments") or {}).get(attempt_id)
        state = None if found is None else found["state"]
        op = Op(
            op_id=f"till-b-op-{20 + k}",
            node_id="till-b",
            seq=20 + k,
            hlc=to_wire(pack(T0 + 6_000 + k, 0)),
            base_seq=4,
            collection="orders",
            record_id="o-1",
            kind="command",
            name=f"payment_{command}",
            args=args,
        )
        hlc_ms = T0 + 6_000 + k
        received = {LATE_REFUND: hlc_ms + 120_001, PROMPT_REFUND: hlc_ms + 120_000}.get(name)
        result = apply_op(row, op, registry, SEQ, received_ms=received)
        assert (result.status, result.reason) == (
            ("applied", None) if reason is None else ("rejected", reason)
        ), (name, result)
        target = next_state(state, command)
        out.append(
            {
                **({} if received is None else {"received_ms": received}),
                "name": name,
                "state": state,
                "command": command,
                "allowed": target is not None,
                "next": None
                if result.record is None
                else result.record.fields["payments"][attempt_id]["state"],
                "record": msgspec.to_builtins(row),
                "op": msgspec.to_builtins(op),
                "seq": SEQ,
                "expect": {
                    "status": result.status,
                    "reason": result.reason,
                    "record": None if result.record is None else msgspec.to_builtins(result.record),
                },
            }
        )
    tipped = next(v for v in out if v["name"].startswith("rule: a tip added at capture"))
    a1 = tipped["expect"]["record"]["fields"]["payments"]["a1"]
    # 1000 + 40 taken; GB card 150 bp + 20 and platform 100 bp of the 1000, not the 1040.
    assert (a1["captured"], a1["amount"], a1["tip"]) == (1040, 1000, 40), a1
    assert (a1["fees"]["processing"], a1["fees"]["platform"]) == (35, 10), a1
    over = out[0]["expect"]["record"]
    assert over["fields"]["refunds_due"] == {
        "a2": {"amount": 1000, "reason": "overpayment", "method": "cash"}
    }
    return out


#: The tenant settings a vector's ``settings`` member may name (19.9), each over its default.
SETTINGS_MEMBERS = ("country", "fee_bearer", "surcharge_bp", "consumer", "card_results")


def settings_of(member: dict[str, Any] | None) -> PaymentsSettings | None:
    """The tenant settings a vector's ``settings`` member names (``None``: the defaults)."""
    if member is None:
        return None
    unknown = set(member) - set(SETTINGS_MEMBERS)
    assert not unknown, f"unknown settings {sorted(unknown)}"
    return PaymentsSettings(**{k: member[k] for k in SETTINGS_MEMBERS if k in member})


def _card_results_vectors() -> list[dict[str, Any]]:
    """``card_results: server`` (19.4): only node ``server`` reports what a provider did for
    a card, open banking or Apple Pay attempt, and records a card or Apple Pay refund (the
    provider makes it, 25.7); a terminal still cancels, and records a bank or cash refund."""
    member = {"card_results": "server"}
    registry = payments_registry(settings_of(member))
    held = order_with({"a1": attempt_in("authorised")})
    paid = order_with({"a1": attempt_in("captured")})
    bank = order_with({"a1": attempt_in("captured", method="open_banking")})
    cases: list[tuple[str, Any, str, dict[str, Any], str, str | None]] = [
        (
            "rule: card_results server: a terminal's capture of a card is refused",
            held,
            "capture",
            {"attempt_id": "a1"},
            "till-b",
            "server-only",
        ),
        (
            "rule: card_results server: the server's capture of a card applies",
            held,
            "capture",
            {"attempt_id": "a1", "provider_ref": "pi_1"},
            SERVER_NODE,
            None,
        ),
        (
            "rule: card_results server: a terminal's authorisation of a card is refused",
            order_with({"a1": attempt_in("pending")}),
            "authorise",
            {"attempt_id": "a1"},
            "till-b",
            "server-only",
        ),
        (
            "rule: card_results server: a terminal's reversal of a bank payment is refused",
            bank,
            "reverse",
            {"attempt_id": "a1", "reason": "payment_returned"},
            "till-b",
            "server-only",
        ),
        (
            "rule: card_results server: a terminal's fee correction of a card is refused",
            paid,
            "fee_correction",
            {"attempt_id": "a1", "correction_id": "bt_1", "processing_fee": 38},
            "till-b",
            "server-only",
        ),
        (
            "rule: card_results server: the state table comes first (capture of a created card)",
            order_with({"a1": attempt_in("created")}),
            "capture",
            {"attempt_id": "a1"},
            "till-b",
            "illegal-transition",
        ),
        (
            "rule: card_results server: a terminal cancels a card before authorisation",
            order_with({"a1": attempt_in("pending")}),
            "cancel",
            {"attempt_id": "a1", "reason": "requested_by_customer"},
            "till-b",
            None,
        ),
        (
            "rule: card_results server: a terminal's card refund is refused (the provider refunds)",
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            "till-b",
            "server-only",
        ),
        (
            "rule: card_results server: the server records a card refund the provider made",
            paid,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            SERVER_NODE,
            None,
        ),
        (
            "rule: card_results server: a terminal's Apple Pay refund is refused",
            order_with({"a1": attempt_in("captured", method="apple_pay")}),
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            "till-b",
            "server-only",
        ),
        (
            "rule: card_results server: a terminal records a bank payment's refund (a transfer)",
            bank,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            "till-b",
            None,
        ),
        (
            "rule: card_results server: the state table comes first (refund of a held card)",
            held,
            "refund",
            {"attempt_id": "a1", "refund_id": "r9", "amount": 100},
            "till-b",
            "illegal-transition",
        ),
        (
            "rule: card_results server: cash is the terminal's own (its fee corrected)",
            order_with({"a1": attempt_in("captured", method="cash")}),
            "fee_correction",
            {"attempt_id": "a1", "correction_id": "c1", "processing_fee": 5},
            "till-b",
            None,
        ),
    ]
    out = []
    for k, (name, row, command, args, node, reason) in enumerate(cases):
        attempt_id = args["attempt_id"]
        state = row.fields["payments"][attempt_id]["state"]
        op = Op(
            op_id=f"{node}-op-{80 + k}",
            node_id=node,
            seq=80 + k,
            hlc=to_wire(pack(T0 + 9_000 + k, 0)),
            base_seq=4,
            collection="orders",
            record_id="o-1",
            kind="command",
            name=f"payment_{command}",
            args=args,
        )
        result = apply_op(row, op, registry, SEQ)
        assert (result.status, result.reason) == (
            ("applied", None) if reason is None else ("rejected", reason)
        ), (name, result)
        if reason == "server-only":
            # The same op from a terminal, in terminal mode, applies.
            assert apply_op(row, op, payments_registry(), SEQ).status == "applied", name
        out.append(
            {
                "name": name,
                "settings": member,
                "state": state,
                "command": command,
                "allowed": next_state(state, command) is not None,
                "next": None
                if result.record is None
                else result.record.fields["payments"][attempt_id]["state"],
                "record": msgspec.to_builtins(row),
                "op": msgspec.to_builtins(op),
                "seq": SEQ,
                "expect": {
                    "status": result.status,
                    "reason": result.reason,
                    "record": None if result.record is None else msgspec.to_builtins(result.record),
                },
            }
        )
    return out


def _surcharge_vectors() -> list[dict[str, Any]]:
    """Customer pays (section 19.5) inside ``payment_start``: the attempt's surcharge is
    the allowed rate of its amount by the tip rounding, or the start is refused."""
    us = {"country": "US", "fee_bearer": "customer", "surcharge_bp": 250, "consumer": True}
    gb_business = {
        "country": "GB",
        "fee_bearer": "customer",
        "surcharge_bp": 150,
        "consumer": False,
    }
    start = {"attempt_id": "a1", "method": "card", "amount": 990, "tip": 100}
    cases: list[tuple[str, dict[str, Any], str, dict[str, Any], str | None]] = [
        (
            "rule: customer pays, US credit: 250 bp of 990 = 24.75 -> 25",
            us,
            "USD",
            {**start, "funding": "credit"},
            None,
        ),
        (
            "rule: customer pays, US debit: not allowed",
            us,
            "USD",
            {**start, "funding": "debit"},
            "surcharge-not-allowed",
        ),
        (
            "rule: customer pays, US credit above the card's cost (300 > 290 bp)",
            {**us, "surcharge_bp": 300},
            "USD",
            {**start, "funding": "credit"},
            "surcharge-above-cap",
        ),
        (
            "rule: customer pays, GB business card: 150 bp of 990 = 14.85 -> 15",
            gb_business,
            "GBP",
            start,
            None,
        ),
    ]
    out = []
    for k, (name, member, currency, args, reason) in enumerate(cases):
        settings = settings_of(member)
        registry = payments_registry(settings)
        base = order_with({})
        fields = {**base.fields, "currency": currency}
        row = msgspec.structs.replace(base, fields=fields)
        op = Op(
            op_id=f"till-b-op-{60 + k}",
            node_id="till-b",
            seq=60 + k,
            hlc=to_wire(pack(T0 + 8_000 + k, 0)),
            base_seq=4,
            collection="orders",
            record_id="o-1",
            kind="command",
            name="payment_start",
            args=args,
        )
        result = apply_op(row, op, registry, SEQ)
        assert (result.status, result.reason) == (
            ("applied", None) if reason is None else ("rejected", reason)
        ), (name, result)
        if result.record is not None:
            expected = {"USD": 25, "GBP": 15}[currency]
            assert result.record.fields["payments"]["a1"]["surcharge"] == expected
        out.append(
            {
                "name": name,
                "settings": member,
                "state": None,
                "command": "start",
                "allowed": True,
                "next": None if result.record is None else "created",
                "record": msgspec.to_builtins(row),
                "op": msgspec.to_builtins(op),
                "seq": SEQ,
                "expect": {
                    "status": result.status,
                    "reason": result.reason,
                    "record": None if result.record is None else msgspec.to_builtins(result.record),
                },
            }
        )
    return out


def rate_to_json(rate: Any) -> dict[str, Any]:
    return dict(dataclasses.asdict(rate))


def _error(fn: Any) -> str | None:
    try:
        fn()
    except MoneyError as exc:
        return str(exc.extra["reason"])
    return None


def fees_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    want: Any
    mode: Any
    ties = [(290, 500), (100, 250), (20, 1250), (500, 1010), (1000, 1005)]
    hand = {
        "half-up": [15, 3, 3, 51, 101],
        "half-even": [14, 2, 2, 50, 100],
        "floor": [14, 2, 2, 50, 100],
        "ceil": [15, 3, 3, 51, 101],
    }
    for mode in ROUNDING_MODES:
        for k, (bp, amount) in enumerate(ties):
            got = percent_of(amount, bp, mode)
            assert got == hand[mode][k]
            out.append(
                {
                    "name": f"{bp} bp of {amount}, {mode}",
                    "kind": "percent",
                    "amount": amount,
                    "rate_bp": bp,
                    "rounding": mode,
                    "expect": got,
                }
            )
    signed: list[tuple[int, int, Any, int]] = [
        (-500, 290, "half-up", -15),
        (-500, 290, "half-even", -14),
        (-501, 290, "floor", -15),
        (-501, 290, "ceil", -14),
        (0, 290, "half-up", 0),
        (999, 1, "half-up", 0),
    ]
    for amount, bp, mode, want in signed:
        assert percent_of(amount, bp, mode) == want
        out.append(
            {
                "name": f"{bp} bp of {amount}, {mode}",
                "kind": "percent",
                "amount": amount,
                "rate_bp": bp,
                "rounding": mode,
                "expect": want,
            }
        )
    for total, parts, want in [
        (1000, 3, [334, 333, 333]),
        (1, 3, [1, 0, 0]),
        (0, 2, [0, 0]),
        (1001, 2, [501, 500]),
        (100, 7, [15, 15, 14, 14, 14, 14, 14]),
    ]:
        assert split_equal(total, parts) == want
        out.append(
            {
                "name": f"split {total} in {parts}",
                "kind": "split_equal",
                "total": total,
                "parts": parts,
                "expect": want,
            }
        )
    for total, weights, want in [
        (1000, [1, 1, 1], [334, 333, 333]),
        (100, [1, 2], [33, 67]),
        (10, [1, 1, 1, 1], [3, 3, 2, 2]),
        (7, [0, 5], [0, 7]),
        (1000, [3, 3, 4], [300, 300, 400]),
        (101, [1, 1], [51, 50]),
    ]:
        assert split_ratio(total, weights) == want
        out.append(
            {
                "name": f"split {total} by {weights}",
                "kind": "split_ratio",
                "total": total,
                "weights": weights,
                "expect": want,
            }
        )
    out.append(
        {
            "name": "split by zero weights is refused",
            "kind": "split_ratio",
            "total": 10,
            "weights": [0, 0],
            "error": "invalid-argument",
        }
    )
    for net, bp, fixed in [(1000, 290, 30), (1000, 150, 20), (1250, 20, 0), (0, 290, 30)]:
        charge = gross_up(net, bp, fixed)
        fee = percent_of(charge, bp, "half-up") + fixed
        assert charge - fee >= net
        out.append(
            {
                "name": f"gross up {net} at {bp} bp + {fixed}",
                "kind": "gross_up",
                "net": net,
                "rate_bp": bp,
                "fixed": fixed,
                "expect": {"charge": charge, "fee": fee, "net": charge - fee},
            }
        )
    assert out[-4]["expect"] == {"charge": 1061, "fee": 61, "net": 1000}
    tip_cases: list[tuple[str, TipSettings, int, int, dict[str, int]]] = [
        ("preset 5% of 1000", TipSettings(), 1000, 1000, {"preset": 0}),
        ("preset 10% of 1000", TipSettings(), 1000, 1000, {"preset": 1}),
        ("preset 20% of 1000", TipSettings(), 1000, 1000, {"preset": 2}),
        ("preset 5% of 1010 (tie) half-up", TipSettings(), 1010, 1010, {"preset": 0}),
        (
            "preset 5% of 1010 (tie) half-even",
            TipSettings(rounding="half-even"),
            1010,
            1010,
            {"preset": 0},
        ),
        ("custom 10% of 1005 (tie)", TipSettings(), 1005, 1005, {"custom_bp": 1000}),
        ("base: the payment's share", TipSettings(), 500, 1000, {"preset": 1}),
        ("base: the order total", TipSettings(base="order_total"), 500, 1000, {"preset": 1}),
        ("custom amount", TipSettings(), 500, 1000, {"custom": 75}),
        ("no tip", TipSettings(), 500, 1000, {}),
    ]
    for name, settings, amount, total, choice in tip_cases:
        out.append(
            {
                "name": f"tip: {name}",
                "kind": "tip",
                "settings": _tips(settings),
                "amount": amount,
                "order_total": total,
                "choice": choice,
                "expect": tip_amount(settings, amount=amount, order_total=total, **choice),
            }
        )
    assert [v["expect"] for v in out[-10:]] == [50, 100, 200, 51, 50, 101, 50, 100, 75, 0]
    out.append(
        {
            "name": "tip: tips turned off",
            "kind": "tip",
            "settings": _tips(TipSettings(enabled=False)),
            "amount": 1000,
            "order_total": 1000,
            "choice": {"preset": 0},
            "error": "tips-disabled",
        }
    )
    fee_cases: list[tuple[Any, str, str, int, tuple[int, int]]] = [
        ("card", "GB", "GBP", 1000, (35, 10)),
        ("card", "GB", "GBP", 1250, (39, 13)),  # 18.75 -> 19 + 20; 12.5 -> 13
        ("card", "US", "USD", 500, (45, 5)),  # 14.5 -> 15 + 30
        ("apple_pay", "GB", "GBP", 1000, (35, 10)),
        ("open_banking", "GB", "GBP", 1250, (3, 13)),  # 2.5 -> 3
        ("cash", "GB", "GBP", 250, (0, 3)),  # platform 2.5 -> 3
    ]
    for method, country, currency, amount, want in fee_cases:
        q = quote(DEFAULT_SCHEDULE, method, country, currency, "2026-01-01", amount)
        assert (q.processing, q.platform) == want
        assert q.processing_rate is not None and q.platform_rate is not None
        out.append(
            {
                "name": f"fee: {method} {country} on {amount}",
                "kind": "fee",
                "rates": [rate_to_json(q.processing_rate), rate_to_json(q.platform_rate)],
                "method": method,
                "country": country,
                "currency": currency,
                "day": "2026-01-01",
                "amount": amount,
                "expect": {"processing": want[0], "platform": want[1]},
            }
        )
    out.append(
        {
            "name": "fee: no row before the UK rate's day",
            "kind": "fee",
            "rates": [
                rate_to_json(r)
                for r in DEFAULT_SCHEDULE.rates
                if r.method == "card" and r.country == "GB"
            ],
            "method": "card",
            "country": "GB",
            "currency": "GBP",
            "day": "2023-04-09",
            "amount": 1000,
            "error": "no-fee-schedule",
        }
    )
    rules = [dataclasses.asdict(r) for r in DEFAULT_SURCHARGE_RULES]
    for name, kwargs in [
        (
            "GB consumer card",
            {"country": "GB", "method": "card", "surcharge_bp": 150, "processing_bp": 150},
        ),
        (
            "GB consumer open banking",
            {"country": "GB", "method": "open_banking", "surcharge_bp": 20, "processing_bp": 20},
        ),
        (
            "US credit at the cost",
            {
                "country": "US",
                "method": "card",
                "surcharge_bp": 290,
                "processing_bp": 290,
                "funding": "credit",
            },
        ),
        (
            "US credit above 3%",
            {
                "country": "US",
                "method": "card",
                "surcharge_bp": 301,
                "processing_bp": 350,
                "funding": "credit",
            },
        ),
        (
            "US credit above the cost",
            {
                "country": "US",
                "method": "card",
                "surcharge_bp": 300,
                "processing_bp": 290,
                "funding": "credit",
            },
        ),
        (
            "US debit",
            {
                "country": "US",
                "method": "card",
                "surcharge_bp": 100,
                "processing_bp": 290,
                "funding": "debit",
            },
        ),
        (
            "unknown country",
            {"country": "FR", "method": "card", "surcharge_bp": 100, "processing_bp": 290},
        ),
    ]:
        vector: dict[str, Any] = {
            "name": f"surcharge: {name}",
            "kind": "surcharge",
            "rules": rules,
            "day": "2026-01-01",
            "consumer": True,
            "funding": None,
            **kwargs,
        }
        err = _error(lambda kw=kwargs: check_surcharge("customer", day="2026-01-01", **kw))
        if err is None:
            vector["expect"] = check_surcharge("customer", day="2026-01-01", **kwargs)  # type: ignore[arg-type]
        else:
            vector["error"] = err
        out.append(vector)
    want_errors = [
        "surcharge-banned",
        "surcharge-banned",
        None,
        "surcharge-above-cap",
        "surcharge-above-cap",
        "surcharge-not-allowed",
        "surcharge-not-allowed",
    ]
    assert [v.get("error") for v in out[-7:]] == want_errors
    out.append(
        {
            "name": "service charge 12.5% of 1004 (tie)",
            "kind": "service_charge",
            "amount": 1004,
            "rate_bp": 1250,
            "rounding": "half-up",
            "expect": service_charge(1004, 1250),
        }
    )
    assert out[-1]["expect"] == 126
    ranking = rank_methods(
        DEFAULT_SCHEDULE,
        amount=2000,
        country="GB",
        currency="GBP",
        day="2026-01-01",
        methods=["card", "open_banking", "apple_pay"],
    )
    out.append(
        {
            "name": "route 2000 in GB",
            "kind": "route",
            "rates": [rate_to_json(r) for r in DEFAULT_SCHEDULE.rates if r.country == "GB"],
            "amount": 2000,
            "country": "GB",
            "currency": "GBP",
            "day": "2026-01-01",
            "methods": ["card", "open_banking", "apple_pay"],
            "expect": [
                {
                    "method": o.method,
                    "processing": o.quote.processing,
                    "platform": o.quote.platform,
                    "cost": o.cost,
                }
                for o in ranking
            ],
        }
    )
    assert [o["method"] for o in out[-1]["expect"]] == ["open_banking", "card", "apple_pay"]
    return out


def _tips(settings: TipSettings) -> dict[str, Any]:
    return {
        "enabled": settings.enabled,
        "presets_bp": list(settings.presets_bp),
        "base": settings.base,
        "rounding": settings.rounding,
    }


def payments_delete_vectors() -> list[dict[str, Any]]:
    """``payments_delete.json``: a delete of an order against the payments delete guard
    (section 19.6): one vector per attempt state, an unpaid order, a reversed attempt, a
    refund due, and delete races (the guard runs before the race is resolved)."""
    registry = payments_registry()
    orders = registry.collection("orders")
    reversed_ = {
        **attempt_in("captured", "open_banking"),
        "state": "failed",
        "reversed": {"day": "2023-11-14", "by": "till-a"},
    }
    cases: list[tuple[str, Any, int, str | None]] = [
        ("an order without payments is deleted", order_with({}), 4, None),
    ]
    for state in STATES:
        settled = state in ("captured", "refunded_partial", "refunded")
        live = state in ("created", "pending", "requires_action", "authorised")
        reason = "attempt-live" if live else "payment-recorded" if settled else None
        verb = "is refused" if reason else "is deleted"
        cases.append(
            (
                f"an order whose attempt is {state} {verb}",
                order_with({"a1": attempt_in(state)}),
                4,
                reason,
            )
        )
    cases += [
        (
            "an order whose payment was reversed is refused (the ledger records it)",
            order_with({"a1": reversed_}),
            4,
            "payment-recorded",
        ),
        (
            "a paid order edited by another node after the delete's base: refused, not raced",
            _edited(order_with({"a1": attempt_in("captured")})),
            4,
            "payment-recorded",
        ),
        (
            "an unpaid order edited by another node after the delete's base: the race rule",
            _edited(order_with({"a1": attempt_in("cancelled")})),
            4,
            None,
        ),
    ]
    out = []
    for k, (name, row, base, reason) in enumerate(cases):
        op = Op(
            op_id=f"till-b-op-{40 + k}",
            node_id="till-b",
            seq=40 + k,
            hlc=to_wire(pack(T0 + 7_000 + k, 0)),
            base_seq=base,
            collection="orders",
            record_id="o-1",
            kind="delete",
        )
        result = apply_op(row, op, registry, SEQ)
        if reason is None:
            assert result.status in ("applied", "merged"), (name, result)
        else:
            assert (result.status, result.reason) == ("rejected", reason), (name, result)
        out.append(
            {
                "name": name,
                "collection": collection_schema(orders),
                "record": msgspec.to_builtins(row),
                "op": msgspec.to_builtins(op),
                "seq": SEQ,
                "expect": {
                    "status": result.status,
                    "reason": result.reason,
                    "record": None if result.record is None else msgspec.to_builtins(result.record),
                    "conflict": None
                    if result.conflict is None
                    else msgspec.to_builtins(result.conflict),
                },
            }
        )
    assert sum(v["expect"]["status"] == "rejected" for v in out) == 9
    return out


def _edited(row: Any) -> Any:
    """``row`` with its ``table`` written by till-a at seq 8 (after a delete based on 4)."""
    stamps = dict(row.stamps)
    stamps["table"] = Stamp(hlc=to_wire(pack(T0 + 6_500, 0)), node_id="till-a", seq=8)
    return msgspec.structs.replace(row, stamps=stamps, version=8)


def drawers_vectors() -> list[dict[str, Any]]:
    """``drawers.json`` (section 19.7): the drawer commands in a chain (each ``record`` the
    drawer before the op, ``expect`` the whole 11.4 result), then ``match`` vectors: which
    finding, if any, a payment movement gets against its order (the ``match_cash`` check)."""
    registry = payments_registry()
    sale = {
        "movement_id": "m1",
        "kind": "sale",
        "amount": 1500,
        "ref": "o-1/c1",
        "order_id": "o-1",
        "attempt_id": "c1",
    }
    refund = {
        "movement_id": "m2",
        "kind": "refund",
        "amount": 300,
        "order_id": "o-1",
        "attempt_id": "c1",
        "refund_id": "r1",
    }
    flag = {"movement_id": "m1", "reason": "payment-refused"}
    resolve = {
        "movement_id": "m1",
        "outcome": "returned",
        "note": "handed back",
        "approved_by": "mgr-1",
    }
    # (name, command, args, node, rejection or None); an applied op's record is the next
    # vector's record.
    steps: list[tuple[str, str, dict[str, Any], str, str | None]] = [
        ("open with a float", "drawer_open", {"currency": "GBP", "float": 5000}, "till-a", None),
        (
            "open twice",
            "drawer_open",
            {"currency": "GBP", "float": 0},
            "till-a",
            "illegal-transition",
        ),
        ("a sale names its payment", "drawer_move", sale, "till-a", None),
        (
            "a sale without its order",
            "drawer_move",
            {k: v for k, v in sale.items() if k != "order_id"} | {"movement_id": "m9"},
            "till-a",
            "invalid-argument",
        ),
        (
            "a refund without its refund id",
            "drawer_move",
            {k: v for k, v in refund.items() if k != "refund_id"},
            "till-a",
            "invalid-argument",
        ),
        (
            "cash in needs a reason",
            "drawer_move",
            {"movement_id": "m9", "kind": "in", "amount": 5},
            "till-a",
            "invalid-argument",
        ),
        (
            "cash out above what the drawer holds",
            "drawer_move",
            {"movement_id": "m9", "kind": "out", "amount": 6501, "reason": "safe drop"},
            "till-a",
            "insufficient-cash",
        ),
        (
            "a movement id once",
            "drawer_move",
            {**sale, "amount": 1},
            "till-a",
            "duplicate-movement",
        ),
        ("a cash refund names its refund", "drawer_move", refund, "till-a", None),
        ("only the server flags", "drawer_flag", flag, "till-a", "server-only"),
        (
            "a flag names a movement of the drawer",
            "drawer_flag",
            {**flag, "movement_id": "m9"},
            SERVER_NODE,
            "no-such-movement",
        ),
        (
            "a flag's reason is one of the list",
            "drawer_flag",
            {**flag, "reason": "lost"},
            SERVER_NODE,
            "invalid-argument",
        ),
        ("the server flags cash no payment records", "drawer_flag", flag, SERVER_NODE, None),
        ("a movement is flagged once", "drawer_flag", flag, SERVER_NODE, "flagged"),
        (
            "only a flagged movement is resolved",
            "drawer_resolve",
            {**resolve, "movement_id": "m2"},
            "till-a",
            "not-flagged",
        ),
        (
            "resolving needs a manager",
            "drawer_resolve",
            {k: v for k, v in resolve.items() if k != "approved_by"},
            "till-a",
            "manager-required",
        ),
        (
            "resolving says what became of the cash",
            "drawer_resolve",
            {k: v for k, v in resolve.items() if k != "note"},
            "till-a",
            "invalid-argument",
        ),
        (
            "resolving names an outcome",
            "drawer_resolve",
            {**resolve, "outcome": "kept"},
            "till-a",
            "invalid-argument",
        ),
        ("a manager resolves it", "drawer_resolve", resolve, "till-a", None),
        ("resolved once", "drawer_resolve", resolve, "till-a", "resolved"),
        ("close with the count", "drawer_close", {"counted": 6100}, "till-a", None),
        (
            "no movement once closed",
            "drawer_move",
            {"movement_id": "m9", "kind": "in", "amount": 5, "reason": "late"},
            "till-a",
            "illegal-transition",
        ),
        (
            "a flag reaches a closed drawer",
            "drawer_flag",
            {"movement_id": "m2", "reason": "refund-refused"},
            SERVER_NODE,
            None,
        ),
        (
            "a refund recorded after all leaves the unmatched cash",
            "drawer_resolve",
            {**resolve, "movement_id": "m2", "outcome": "recorded", "note": "refund approved"},
            "till-a",
            None,
        ),
    ]
    out: list[dict[str, Any]] = []
    record = None
    for k, (name, command, args, node, reason) in enumerate(steps):
        seq = 20 + k
        op = Op(
            op_id=f"{node}-op-{60 + k}",
            node_id=node,
            seq=60 + k,
            hlc=to_wire(pack(T0 + 8_000 + k, 0)),
            base_seq=seq - 1,
            collection="drawers",
            record_id="d-1",
            kind="command",
            name=command,
            args=args,
        )
        result = apply_op(record, op, registry, seq)
        assert (result.status, result.reason) == (
            ("applied", None) if reason is None else ("rejected", reason)
        ), (name, result)
        out.append(
            {
                "name": name,
                "record": None if record is None else msgspec.to_builtins(record),
                "op": msgspec.to_builtins(op),
                "seq": seq,
                "expect": {
                    "status": result.status,
                    "reason": result.reason,
                    "record": None if result.record is None else msgspec.to_builtins(result.record),
                },
            }
        )
        if result.record is not None:
            record = result.record
    assert record is not None
    last = record.fields
    # 5000 + 1500 - 300 = 6200 held; counted 6100; the sale's 1500 was handed back
    # (returned: still no payment's), the refund's 300 recorded after all.
    assert (last["expected"], last["difference"], last["unmatched"], last["unresolved"]) == (
        6200,
        -100,
        1500,
        0,
    ), last
    return out + _match_vectors()


def _match_vectors() -> list[dict[str, Any]]:
    from fynlo_sync.domains.payments.drawers import match_movement

    cash = attempt_in("captured", "cash") | {"captured": 2000, "change": 500, "tendered": 2000}
    refunded = cash | {
        "state": "refunded_partial",
        "refunded": 300,
        "refunds": {
            "r1": {"amount": 300, "by": "till-a", "approved_by": None, "day": "2023-11-14"}
        },
    }
    plain = order_with({"c1": cash, "k1": attempt_in("captured")}).fields
    with_refund = order_with({"c1": refunded}).fields

    def pay(attempt_id: str, refund_id: str | None = None) -> dict[str, Any]:
        return {"order_id": "o-1", "attempt_id": attempt_id, "refund_id": refund_id}

    sale = {"kind": "sale", "amount": 1500, "payment": pay("c1")}
    back = {"kind": "refund", "amount": 300, "payment": pay("c1", "r1")}
    cases: list[tuple[str, dict[str, Any], Any, bool, str | None]] = [
        ("a sale of the cash kept (tendered - change) matches", sale, plain, False, None),
        ("a sale of another amount", {**sale, "amount": 1400}, plain, False, "payment-mismatch"),
        (
            "a sale naming a card attempt",
            {**sale, "payment": pay("k1")},
            plain,
            False,
            "payment-mismatch",
        ),
        (
            "a sale whose payment the server refused",
            {**sale, "payment": pay("zz")},
            plain,
            False,
            "payment-refused",
        ),
        ("a sale for a deleted order", sale, None, True, "order-deleted"),
        ("a sale for no order", sale, None, False, "order-missing"),
        ("a refund the attempt records matches", back, with_refund, False, None),
        (
            "a refund of another amount",
            {**back, "amount": 301},
            with_refund,
            False,
            "payment-mismatch",
        ),
        ("a refund the server refused", back, plain, False, "refund-refused"),
        (
            "cash in names no payment",
            {"kind": "in", "amount": 5, "payment": None},
            None,
            False,
            None,
        ),
    ]
    out = []
    for name, movement, order, deleted, reason in cases:
        assert match_movement(movement, order, deleted) == reason, name
        out.append(
            {
                "name": f"match: {name}",
                "kind": "match",
                "movement": movement,
                "order": order,
                "deleted": deleted,
                "expect": reason,
            }
        )
    return out
