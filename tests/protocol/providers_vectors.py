"""``session_capture.json``: the ``capture`` command of a payment session (docs/protocol.md
section 25.6), a terminal's command on a held card payment: from the session's fields and
the command's args, the patch it makes or the reason it is refused.

``session_refund.json``: the ``refund`` command of a payment session (section 25.7), a
terminal asking the provider to give back part of a card or Apple Pay payment taken,
bounded by what was taken and not yet refunded."""

from __future__ import annotations

from typing import Any

from fynlo_sync.domains.payments.providers.plugin import capture_command, refund_command
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op
from fynlo_sync.plugins import CommandContext

__all__ = ["session_capture_vectors", "session_refund_vectors"]

RECEIVED_MS = 1_795_996_800_000

HELD = {
    "order_id": "o-1",
    "method": "card",
    "amount": 3250,
    "tip": 650,
    "currency": "GBP",
    "capture": "manual",
    "status": "authorized",
    "capturable": 3900,
    "received": 0,
}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], int | None]] = [
    ("a tip after authorisation within the hold", HELD, {"tip": 400}, RECEIVED_MS),
    ("the whole hold", HELD, {"tip": 650}, RECEIVED_MS),
    ("no tip (the default)", HELD, {}, RECEIVED_MS),
    ("on a terminal: no receive time", HELD, {"tip": 1}, None),
    ("one minor unit above the hold", HELD, {"tip": 651}, RECEIVED_MS),
    ("a negative tip", HELD, {"tip": -1}, RECEIVED_MS),
    ("a tip that is not an integer", HELD, {"tip": "400"}, RECEIVED_MS),
    ("a boolean tip", HELD, {"tip": True}, RECEIVED_MS),
    ("asked twice", {**HELD, "capture_amount": 3650}, {"tip": 0}, RECEIVED_MS),
    ("captured automatically", {**HELD, "capture": "automatic"}, {"tip": 0}, RECEIVED_MS),
    ("not yet authorised", {**HELD, "status": "requires_action"}, {"tip": 0}, RECEIVED_MS),
    ("already captured", {**HELD, "status": "succeeded"}, {"tip": 0}, RECEIVED_MS),
    ("no session", {}, {"tip": 0}, RECEIVED_MS),
]


def session_capture_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, session, args, received in CASES:
        op = Op(
            op_id="till-a-op-3",
            node_id="till-a",
            seq=3,
            hlc=to_wire(pack(RECEIVED_MS, 0)),
            base_seq=1,
            collection="payment_sessions",
            record_id="pay-1",
            kind="command",
            name="capture",
            args=args,
        )
        ctx = CommandContext(session or None, args, op, received)
        try:
            expect: dict[str, Any] = {"status": "applied", "patch": capture_command(ctx)}
        except RejectedOpError as exc:
            expect = {"status": "rejected", "reason": exc.extra["reason"]}
        out.append(
            {
                "name": name,
                "session": session or None,
                "args": args,
                "received_ms": received,
                "expect": expect,
            }
        )
    by_name: dict[str, Any] = {v["name"]: v["expect"] for v in out}
    assert by_name["a tip after authorisation within the hold"]["patch"] == {
        "capture_tip": 400,
        "capture_amount": 3650,
        "capture_requested_ms": RECEIVED_MS,
    }
    assert by_name["one minor unit above the hold"]["reason"] == "capture-above-authorised"
    assert by_name["asked twice"]["reason"] == "capture-requested"
    assert by_name["a boolean tip"]["reason"] == "invalid-tip"
    return out


PAID = {
    "order_id": "o-1",
    "method": "card",
    "amount": 3250,
    "tip": 0,
    "currency": "GBP",
    "capture": "automatic",
    "status": "succeeded",
    "received": 3250,
    "provider_id": "pi_1",
}
#: A held payment captured for 3650 of a 3900 hold (the provider reports 3900 received).
CAPTURED_LESS = {**PAID, "capture": "manual", "received": 3900, "capture_amount": 3650}
ASKED = {
    "a": {"amount": 1000, "by": "till-a", "actor": None, "approved_by": None, "requested_ms": 1},
    "b": {"amount": 500, "by": "till-a", "actor": None, "approved_by": None, "requested_ms": 2},
}
REFUSED_B = {"b": {"status": "refused", "reason": "provider-failed", "updated_ms": 3}}
PENDING_B = {
    "b": {
        "status": "pending",
        "amount": 500,
        "provider_refund_id": "re_1",
        "provider_status": "pending",
        "updated_ms": 3,
    }
}

REFUND_CASES: list[tuple[str, dict[str, Any], dict[str, Any], int | None]] = [
    ("all of it", PAID, {"refund_id": "r1", "amount": 3250}, RECEIVED_MS),
    (
        "part of it, approved by name",
        PAID,
        {"refund_id": "r1", "amount": 100, "approved_by": "Mo"},
        RECEIVED_MS,
    ),
    ("on a terminal: no receive time", PAID, {"refund_id": "r1", "amount": 100}, None),
    ("one minor unit above what was taken", PAID, {"refund_id": "r1", "amount": 3251}, RECEIVED_MS),
    (
        "the rest after two refunds",
        {**PAID, "refunds": ASKED},
        {"refund_id": "c", "amount": 1750},
        RECEIVED_MS,
    ),
    (
        "above the rest after two refunds",
        {**PAID, "refunds": ASKED},
        {"refund_id": "c", "amount": 1751},
        RECEIVED_MS,
    ),
    (
        "a pending refund still counts",
        {**PAID, "refunds": ASKED, "refund_results": PENDING_B},
        {"refund_id": "c", "amount": 1751},
        RECEIVED_MS,
    ),
    (
        "a refused refund does not count",
        {**PAID, "refunds": ASKED, "refund_results": REFUSED_B},
        {"refund_id": "c", "amount": 2250},
        RECEIVED_MS,
    ),
    (
        "bounded by the capture asked, not the hold",
        CAPTURED_LESS,
        {"refund_id": "r1", "amount": 3651},
        RECEIVED_MS,
    ),
    ("the capture asked, whole", CAPTURED_LESS, {"refund_id": "r1", "amount": 3650}, RECEIVED_MS),
    (
        "the same refund id twice",
        {**PAID, "refunds": ASKED},
        {"refund_id": "a", "amount": 1},
        RECEIVED_MS,
    ),
    ("a zero amount", PAID, {"refund_id": "r1", "amount": 0}, RECEIVED_MS),
    ("an amount that is not an integer", PAID, {"refund_id": "r1", "amount": "100"}, RECEIVED_MS),
    ("a boolean amount", PAID, {"refund_id": "r1", "amount": True}, RECEIVED_MS),
    ("no refund id", PAID, {"amount": 100}, RECEIVED_MS),
    ("an empty refund id", PAID, {"refund_id": "", "amount": 100}, RECEIVED_MS),
    ("a refund id of 65 characters", PAID, {"refund_id": "r" * 65, "amount": 100}, RECEIVED_MS),
    (
        "approved_by not a string",
        PAID,
        {"refund_id": "r1", "amount": 100, "approved_by": 7},
        RECEIVED_MS,
    ),
    ("Apple Pay", {**PAID, "method": "apple_pay"}, {"refund_id": "r1", "amount": 100}, RECEIVED_MS),
    (
        "a bank payment: by hand",
        {**PAID, "method": "open_banking"},
        {"refund_id": "r1", "amount": 100},
        RECEIVED_MS,
    ),
    (
        "cash has no provider",
        {**PAID, "method": "cash"},
        {"refund_id": "r1", "amount": 100},
        RECEIVED_MS,
    ),
    (
        "a held payment: nothing taken",
        {**PAID, "status": "authorized", "received": 0},
        {"refund_id": "r1", "amount": 1},
        RECEIVED_MS,
    ),
    (
        "a failed payment",
        {**PAID, "status": "failed", "received": 0},
        {"refund_id": "r1", "amount": 1},
        RECEIVED_MS,
    ),
    ("no session", {}, {"refund_id": "r1", "amount": 1}, RECEIVED_MS),
    (
        "above the refund limit without a manager",
        {**PAID, "refund_limit": 3000},
        {"refund_id": "r1", "amount": 3001},
        RECEIVED_MS,
    ),
    (
        "above the refund limit, approved",
        {**PAID, "refund_limit": 3000},
        {"refund_id": "r1", "amount": 3001, "approved_by": "Mo"},
        RECEIVED_MS,
    ),
    (
        "at the refund limit",
        {**PAID, "refund_limit": 3000},
        {"refund_id": "r1", "amount": 3000},
        RECEIVED_MS,
    ),
]


#: The payments plugin's refund limit and offline window (19.4/19.5 defaults), as the
#: session's ``refund`` takes them from the registry; None: no payments plugin.
RULES = {"refund_limit": 5000, "offline_after_ms": 120_000}
NO_RULES: dict[str, Any] = {"refund_limit": None, "offline_after_ms": None}
PAID_BIG = {**PAID, "amount": 8000, "received": 8000}
WINDOW = 120_000

#: (name, session, args, received_ms, the op's HLC time in ms, the rules).
RULE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], int | None, int, dict[str, Any]]] = [
    (
        "a session made before the limit was kept: the current limit applies",
        PAID_BIG,
        {"refund_id": "r1", "amount": 5001},
        RECEIVED_MS,
        RECEIVED_MS,
        RULES,
    ),
    (
        "no stored limit, the current limit approved",
        PAID_BIG,
        {"refund_id": "r1", "amount": 5001, "approved_by": "Mo"},
        RECEIVED_MS,
        RECEIVED_MS,
        RULES,
    ),
    (
        "no stored limit, at the current limit",
        PAID_BIG,
        {"refund_id": "r1", "amount": 5000},
        RECEIVED_MS,
        RECEIVED_MS,
        RULES,
    ),
    (
        "a null stored limit takes the current limit",
        {**PAID_BIG, "refund_limit": None},
        {"refund_id": "r1", "amount": 5001},
        RECEIVED_MS,
        RECEIVED_MS,
        RULES,
    ),
    (
        "the stored limit wins over the current one",
        {**PAID_BIG, "refund_limit": 7000},
        {"refund_id": "r1", "amount": 6000},
        RECEIVED_MS,
        RECEIVED_MS,
        RULES,
    ),
    (
        "no payments plugin: no limit",
        PAID_BIG,
        {"refund_id": "r1", "amount": 8000},
        RECEIVED_MS,
        RECEIVED_MS,
        NO_RULES,
    ),
    (
        "made offline: received one ms after the offline window",
        PAID,
        {"refund_id": "r1", "amount": 100},
        RECEIVED_MS,
        RECEIVED_MS - WINDOW - 1,
        RULES,
    ),
    (
        "made offline, approved",
        PAID,
        {"refund_id": "r1", "amount": 100, "approved_by": "Mo"},
        RECEIVED_MS,
        RECEIVED_MS - WINDOW - 1,
        RULES,
    ),
    (
        "received at the offline window: online",
        PAID,
        {"refund_id": "r1", "amount": 100},
        RECEIVED_MS,
        RECEIVED_MS - WINDOW,
        RULES,
    ),
    (
        "an old op on a terminal: no receive time, no finding",
        PAID,
        {"refund_id": "r1", "amount": 100},
        None,
        RECEIVED_MS - WINDOW - 1,
        RULES,
    ),
    (
        "no payments plugin: no offline window",
        PAID,
        {"refund_id": "r1", "amount": 100},
        RECEIVED_MS,
        RECEIVED_MS - WINDOW - 1,
        NO_RULES,
    ),
]


def session_refund_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cases = [(*c, RECEIVED_MS, NO_RULES) for c in REFUND_CASES] + RULE_CASES
    for name, session, args, received, op_ms, rules in cases:
        op = Op(
            op_id="till-a-op-4",
            node_id="till-a",
            seq=4,
            hlc=to_wire(pack(op_ms, 0)),
            base_seq=1,
            collection="payment_sessions",
            record_id="pay-1",
            kind="command",
            name="refund",
            args=args,
        )
        ctx = CommandContext(session or None, args, op, received)
        try:
            patch = refund_command(
                ctx,
                current_limit=rules["refund_limit"],
                offline_after_ms=rules["offline_after_ms"],
            )
            expect: dict[str, Any] = {"status": "applied", "patch": patch}
        except RejectedOpError as exc:
            expect = {"status": "rejected", "reason": exc.extra["reason"]}
            if "refundable" in exc.extra:
                expect["refundable"] = exc.extra["refundable"]
        out.append(
            {
                "name": name,
                "session": session or None,
                "args": args,
                "node_id": op.node_id,
                "hlc": op.hlc,
                "received_ms": received,
                "rules": rules,
                "expect": expect,
            }
        )
    by_name: dict[str, Any] = {v["name"]: v["expect"] for v in out}
    assert by_name["one minor unit above what was taken"] == {
        "status": "rejected",
        "reason": "refund-above-captured",
        "refundable": 3250,
    }
    assert by_name["above the rest after two refunds"]["refundable"] == 1750
    assert by_name["a refused refund does not count"]["status"] == "applied"
    assert by_name["a pending refund still counts"]["refundable"] == 1750
    assert by_name["bounded by the capture asked, not the hold"]["refundable"] == 3650
    assert by_name["a bank payment: by hand"]["reason"] == "manual-refund"
    assert by_name["the same refund id twice"]["reason"] == "duplicate-refund"
    assert by_name["above the refund limit without a manager"]["reason"] == "manager-required"
    assert by_name["above the refund limit, approved"]["status"] == "applied"
    old = "a session made before the limit was kept: the current limit applies"
    assert by_name[old]["reason"] == "manager-required"
    assert by_name["the stored limit wins over the current one"]["status"] == "applied"
    offline = "made offline: received one ms after the offline window"
    assert by_name[offline]["reason"] == "manager-required"
    assert by_name["received at the offline window: online"]["status"] == "applied"
    approved = by_name["made offline, approved"]["patch"]["refunds"]["r1"]
    assert approved["approved_by"] == "Mo"
    return out
