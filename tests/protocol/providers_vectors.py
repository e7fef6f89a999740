"""``session_capture.json``: the ``capture`` command of a payment session (docs/protocol.md
section 25.6), a terminal's command on a held card payment: from the session's fields and
the command's args, the patch it makes or the reason it is refused."""

from __future__ import annotations

from typing import Any

from fynlo_sync.domains.payments.providers.plugin import capture_command
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op
from fynlo_sync.plugins import CommandContext

__all__ = ["session_capture_vectors"]

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
