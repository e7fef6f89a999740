"""Cash drawers: one record per drawer session of one terminal, in ``drawers``.

Opened with a float; every cash movement is an entry of its ``movements`` map (keyed by a
movement id, so a movement is recorded once): ``sale`` (cash kept from a payment:
tendered - change), ``refund`` (cash handed back), ``in`` and ``out`` (with a reason:
change brought in, a safe drop, a supplier paid). ``expected`` is derived: float + sales
+ in - refunds - out. Closing records ``counted`` and ``difference = counted - expected``;
the closed record is the Z-report. Only the drawer's own terminal writes it, so it is
never contested.

A ``sale`` or ``refund`` movement names the payment it belongs to (``order_id``,
``attempt_id``, and ``refund_id`` for a refund). The cash is a fact the moment it changes
hands, and the movement, on the terminal's own uncontested record, is never lost; the
order's payment command, on a shared record, may still be refused by the server (an
offline cash payment above the limit without a manager, an order another terminal
deleted or closed). So the server checks every such movement against the order once it
is committed (the payments plugin's ``match_cash`` effect) and, when the order does not
record that payment, authors ``drawer_flag``: a ``findings`` entry "cash taken, payment
not recorded" a manager resolves with ``drawer_resolve`` once the money is accounted for:
``recorded`` (the payment recorded again on the same attempt id, which the movement then
matches) or ``returned`` (the cash handed back with an ``out`` movement). The drawer's
``expected`` stays the cash it really holds; ``unmatched`` (derived) is the signed cash of
the findings not ``recorded``, so ``expected`` = float + in - out + the net of the cash
payments its movements match + ``unmatched``, always.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from fynlo_sync.domains.payments.states import SETTLED_STATES
from fynlo_sync.errors import IllegalTransitionError, RejectedOpError
from fynlo_sync.plugins import SERVER_NODE, Collection, Command, CommandContext, Field

__all__ = [
    "DRAWERS",
    "DRAWERS_COLLECTION",
    "FINDING_REASONS",
    "MOVEMENT_KINDS",
    "OUTCOMES",
    "PAYMENT_KINDS",
    "drawer_figures",
    "match_movement",
    "z_report",
]

DRAWERS: Final = "drawers"
#: Movement kind -> its sign in ``expected``.
MOVEMENT_KINDS: Final = {"sale": 1, "in": 1, "refund": -1, "out": -1}

#: Movement kinds that move a payment's cash and so must name it.
PAYMENT_KINDS: Final = frozenset({"sale", "refund"})
#: Why the server flags a payment movement (``drawer_flag``):
#: ``order-deleted`` the order was deleted before the payment reached the server;
#: ``order-missing`` no such order; ``payment-refused`` the order has no such payment (the
#: server refused the payment command); ``refund-refused`` the attempt has no such refund;
#: ``payment-mismatch`` the payment's cash (captured - change, or the refund) is not the
#: movement's amount, or it is not a settled cash payment.
#: How a manager resolves one: the payment ``recorded`` after all (on the same attempt id),
#: or the cash ``returned`` (handed back with an ``out`` movement).
OUTCOMES: Final = ("recorded", "returned")
FINDING_REASONS: Final = (
    "order-deleted",
    "order-missing",
    "payment-refused",
    "refund-refused",
    "payment-mismatch",
)

_TRANSITIONS: Final = {
    (None, "drawer_open"): "open",
    ("open", "drawer_move"): "open",
    ("open", "drawer_close"): "closed",
    # The server's flag and a manager's resolution reach a closed drawer too (its cash was
    # counted already; the Z-report then shows what no payment accounts for).
    ("open", "drawer_flag"): "open",
    ("closed", "drawer_flag"): "closed",
    ("open", "drawer_resolve"): "open",
    ("closed", "drawer_resolve"): "closed",
}


def drawer_figures(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Derived: totals by movement kind and the cash the drawer should hold."""
    moves = fields.get("movements") or {}
    by_kind = dict.fromkeys(sorted(MOVEMENT_KINDS), 0)
    for key in sorted(moves):
        by_kind[moves[key]["kind"]] += moves[key]["amount"]
    cash_in = by_kind["sale"] + by_kind["in"]
    cash_out = by_kind["refund"] + by_kind["out"]
    findings = fields.get("findings") or {}
    unmatched = 0
    for key in sorted(findings):
        move = moves.get(key)
        if move is not None and findings[key].get("outcome") != "recorded":
            unmatched += MOVEMENT_KINDS[move["kind"]] * move["amount"]
    out: dict[str, Any] = {
        "cash_in": cash_in,
        "cash_out": cash_out,
        "expected": (fields.get("float") or 0) + cash_in - cash_out,
        "unmatched": unmatched,
        "unresolved": sum(1 for k in sorted(findings) if findings[k].get("resolved_by") is None),
    }
    counted = fields.get("counted")
    out["difference"] = None if counted is None else counted - out["expected"]
    return out


def _state(ctx: CommandContext, command: str) -> str:
    state = None if ctx.record is None else ctx.record.get("status")
    target = _TRANSITIONS.get((state, command))
    if target is None:
        raise IllegalTransitionError(
            f"a drawer cannot {command.removeprefix('drawer_')} when "
            f"{state or 'it does not exist'}",
            reason="illegal-transition",
            state=state,
            command=command,
        )
    return target


def _amount(ctx: CommandContext, name: str, low: int) -> int:
    value = ctx.args.get(name)
    if type(value) is not int or value < low:
        raise RejectedOpError(
            f"argument {name!r} must be an integer >= {low}",
            reason="invalid-argument",
            argument=name,
        )
    return value


def _text(ctx: CommandContext, name: str, *, required: bool) -> str | None:
    value = ctx.args.get(name)
    if value is None and not required:
        return None
    if type(value) is not str or not value.strip() or len(value) > 200:
        raise RejectedOpError(
            f"argument {name!r} must be a non-empty string",
            reason="invalid-argument",
            argument=name,
        )
    return value


def _choice(ctx: CommandContext, name: str, allowed: Sequence[str]) -> str:
    """The argument ``name``, one of ``allowed`` (named in that order when it is not)."""
    value = ctx.args.get(name)
    if value not in allowed:
        raise RejectedOpError(
            f"{name} must be one of {', '.join(allowed)}",
            reason="invalid-argument",
            argument=name,
        )
    return str(value)


def _open(ctx: CommandContext) -> dict[str, Any]:
    status = _state(ctx, "drawer_open")
    currency = ctx.args.get("currency")
    if type(currency) is not str or len(currency) != 3 or not currency.isupper():
        raise RejectedOpError("currency must be an ISO 4217 code", reason="invalid-argument")
    return {
        "status": status,
        "terminal": ctx.op.node_id,
        "currency": currency,
        "float": _amount(ctx, "float", 0),
        "movements": {},
        "counted": None,
        "opened_by": _text(ctx, "employee", required=False),
    }


def _move(ctx: CommandContext) -> dict[str, Any]:
    status = _state(ctx, "drawer_move")
    assert ctx.record is not None
    movement_id = _text(ctx, "movement_id", required=True)
    kind = _choice(ctx, "kind", sorted(MOVEMENT_KINDS))
    amount = _amount(ctx, "amount", 1)
    reason = _text(ctx, "reason", required=kind in ("in", "out"))
    payment = None
    if kind in PAYMENT_KINDS:
        payment = {
            "order_id": _text(ctx, "order_id", required=True),
            "attempt_id": _text(ctx, "attempt_id", required=True),
            "refund_id": _text(ctx, "refund_id", required=kind == "refund"),
        }
    moves = dict(ctx.record.get("movements") or {})
    if movement_id in moves:
        raise RejectedOpError(f"movement {movement_id!r} exists", reason="duplicate-movement")
    if MOVEMENT_KINDS[kind] < 0 and amount > drawer_figures(ctx.record)["expected"]:
        raise RejectedOpError("the drawer does not hold that much cash", reason="insufficient-cash")
    moves[movement_id] = {
        "kind": kind,
        "amount": amount,
        "reason": reason,
        "ref": _text(ctx, "ref", required=False),
        "by": ctx.op.node_id,
        "payment": payment,
        "op_id": ctx.op.op_id,
    }
    return {"status": status, "movements": moves}


def match_movement(
    movement: Mapping[str, Any], order: Mapping[str, Any] | None, deleted: bool
) -> str | None:
    """Whether the order records the payment a ``sale`` or ``refund`` movement names:
    ``None`` when it does (or the movement names none), else the finding's reason
    (:data:`FINDING_REASONS`). ``order`` is the order's fields (``None``: never existed),
    ``deleted`` whether it is a tombstone."""
    payment = movement.get("payment")
    if not payment:
        return None
    if deleted:
        return "order-deleted"
    if order is None:
        return "order-missing"
    attempt = (order.get("payments") or {}).get(payment["attempt_id"])
    if attempt is None:
        return "payment-refused"
    if attempt["method"] != "cash" or attempt["state"] not in SETTLED_STATES:
        return "payment-mismatch"
    if movement["kind"] == "sale":
        kept = attempt["captured"] - attempt["change"]
        return None if kept == movement["amount"] else "payment-mismatch"
    refund = (attempt.get("refunds") or {}).get(payment["refund_id"])
    if refund is None:
        return "refund-refused"
    return None if refund["amount"] == movement["amount"] else "payment-mismatch"


def _movement(ctx: CommandContext) -> tuple[str, Mapping[str, Any]]:
    assert ctx.record is not None
    movement_id = _text(ctx, "movement_id", required=True)
    assert movement_id is not None
    found = (ctx.record.get("movements") or {}).get(movement_id)
    if found is None:
        raise RejectedOpError(
            f"the drawer has no movement {movement_id!r}", reason="no-such-movement"
        )
    return movement_id, found


def _flag(ctx: CommandContext) -> dict[str, Any]:
    """``drawer_flag`` (the server only): cash a movement moved that the order does not
    record. Flagged once; a manager resolves it."""
    status = _state(ctx, "drawer_flag")
    assert ctx.record is not None
    if ctx.op.node_id != SERVER_NODE:
        raise RejectedOpError("only the server flags a drawer's cash", reason="server-only")
    movement_id, move = _movement(ctx)
    reason = _choice(ctx, "reason", FINDING_REASONS)
    findings = dict(ctx.record.get("findings") or {})
    if movement_id in findings:
        raise RejectedOpError(f"movement {movement_id!r} is flagged already", reason="flagged")
    payment = move.get("payment") or {}
    findings[movement_id] = {
        "reason": reason,
        "kind": move["kind"],
        "amount": move["amount"],
        "order_id": payment.get("order_id"),
        "attempt_id": payment.get("attempt_id"),
        "resolved_by": None,
        "outcome": None,
        "note": None,
    }
    return {"status": status, "findings": findings}


def _resolve(ctx: CommandContext) -> dict[str, Any]:
    """``drawer_resolve``: a manager says what became of flagged cash once its own
    command accounted for it: ``outcome`` ``recorded`` (a ``payment_cash`` on the same
    attempt id: the cash is a payment's now, and leaves ``unmatched``) or ``returned`` (a
    ``drawer_move`` out handed it back: it stays unmatched, the out offsets it), and a
    ``note``."""
    status = _state(ctx, "drawer_resolve")
    assert ctx.record is not None
    movement_id = _text(ctx, "movement_id", required=True)
    assert movement_id is not None
    findings = dict(ctx.record.get("findings") or {})
    found = findings.get(movement_id)
    if found is None:
        raise RejectedOpError(f"movement {movement_id!r} is not flagged", reason="not-flagged")
    if found.get("resolved_by") is not None:
        raise RejectedOpError(f"movement {movement_id!r} is resolved already", reason="resolved")
    outcome = _choice(ctx, "outcome", OUTCOMES)
    note = _text(ctx, "note", required=True)
    approver = ctx.op.actor_id if ctx.permissions is not None else None
    if approver is None:
        approver = _text(ctx, "approved_by", required=False)
    if approver is None:
        raise RejectedOpError(
            "resolving a drawer's flagged cash needs a manager's approval",
            reason="manager-required",
        )
    findings[movement_id] = {**found, "resolved_by": approver, "outcome": outcome, "note": note}
    return {"status": status, "findings": findings}


def _close(ctx: CommandContext) -> dict[str, Any]:
    status = _state(ctx, "drawer_close")
    return {"status": status, "counted": _amount(ctx, "counted", 0)}


def z_report(drawer_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The closing report of a drawer: float, movements by kind, expected, counted and the
    difference (positive: more cash than expected)."""
    moves = fields.get("movements") or {}
    by_kind = dict.fromkeys(sorted(MOVEMENT_KINDS), 0)
    counts = dict.fromkeys(sorted(MOVEMENT_KINDS), 0)
    for key in sorted(moves):
        by_kind[moves[key]["kind"]] += moves[key]["amount"]
        counts[moves[key]["kind"]] += 1
    figures = drawer_figures(fields)
    findings = fields.get("findings") or {}
    return {
        "drawer_id": drawer_id,
        "terminal": fields.get("terminal"),
        "currency": fields.get("currency"),
        "status": fields.get("status"),
        "float": fields.get("float"),
        "totals": by_kind,
        "counts": counts,
        "expected": figures["expected"],
        "counted": fields.get("counted"),
        "difference": figures["difference"],
        "unmatched": figures["unmatched"],
        "findings": {k: dict(findings[k]) for k in sorted(findings)},
    }


_COMMANDS: Final[dict[str, Command]] = {
    "drawer_open": _open,
    "drawer_move": _move,
    "drawer_close": _close,
    "drawer_flag": _flag,
    "drawer_resolve": _resolve,
}

DRAWERS_COLLECTION: Final = Collection(
    name=DRAWERS,
    fields={
        "status": Field("str", kind="state", required=True, command_only=True),
        "terminal": Field("str", command_only=True),
        "currency": Field("str", required=True, command_only=True),
        "float": Field("money", command_only=True),
        "movements": Field("object", kind="map", command_only=True),
        "counted": Field("money", command_only=True),
        "opened_by": Field("str", command_only=True),
        "cash_in": Field("money", command_only=True),
        "cash_out": Field("money", command_only=True),
        "expected": Field("money", command_only=True),
        "difference": Field("int", command_only=True),
        "findings": Field("object", kind="map", command_only=True),
        "unmatched": Field("int", command_only=True),
        "unresolved": Field("int", command_only=True),
        "note": Field("str"),
    },
    strategy="server_wins",
    states=("open", "closed"),
    commands=_COMMANDS,
    derive=drawer_figures,
    # With the staff plugin, closing a drawer (the Z-report) needs drawer.close.
    # Resolving flagged cash is a manager's too.
    permissions={"drawer_close": "drawer.close", "drawer_resolve": "drawer.close"},
)
