"""Cash drawers: one record per drawer session of one terminal, in ``drawers``.

Opened with a float; every cash movement is an entry of its ``movements`` map (keyed by a
movement id, so a movement is recorded once): ``sale`` (cash kept from a payment:
tendered - change), ``refund`` (cash handed back), ``in`` and ``out`` (with a reason:
change brought in, a safe drop, a supplier paid). ``expected`` is derived: float + sales
+ in - refunds - out. Closing records ``counted`` and ``difference = counted - expected``;
the closed record is the Z-report. Only the drawer's own terminal writes it, so it is
never contested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fynlo_sync.errors import IllegalTransitionError, RejectedOpError
from fynlo_sync.plugins import Collection, Command, CommandContext, Field

__all__ = ["DRAWERS", "DRAWERS_COLLECTION", "MOVEMENT_KINDS", "drawer_figures", "z_report"]

DRAWERS: Final = "drawers"
#: Movement kind -> its sign in ``expected``.
MOVEMENT_KINDS: Final = {"sale": 1, "in": 1, "refund": -1, "out": -1}

_TRANSITIONS: Final = {
    (None, "drawer_open"): "open",
    ("open", "drawer_move"): "open",
    ("open", "drawer_close"): "closed",
}


def drawer_figures(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Derived: totals by movement kind and the cash the drawer should hold."""
    moves = fields.get("movements") or {}
    by_kind = dict.fromkeys(sorted(MOVEMENT_KINDS), 0)
    for key in sorted(moves):
        by_kind[moves[key]["kind"]] += moves[key]["amount"]
    cash_in = by_kind["sale"] + by_kind["in"]
    cash_out = by_kind["refund"] + by_kind["out"]
    out: dict[str, Any] = {
        "cash_in": cash_in,
        "cash_out": cash_out,
        "expected": (fields.get("float") or 0) + cash_in - cash_out,
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
    kind = ctx.args.get("kind")
    if kind not in MOVEMENT_KINDS:
        raise RejectedOpError(
            f"kind must be one of {', '.join(sorted(MOVEMENT_KINDS))}",
            reason="invalid-argument",
            argument="kind",
        )
    amount = _amount(ctx, "amount", 1)
    reason = _text(ctx, "reason", required=kind in ("in", "out"))
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
    }
    return {"status": status, "movements": moves}


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
    }


_COMMANDS: Final[dict[str, Command]] = {
    "drawer_open": _open,
    "drawer_move": _move,
    "drawer_close": _close,
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
        "note": Field("str"),
    },
    strategy="server_wins",
    states=("open", "closed"),
    commands=_COMMANDS,
    derive=drawer_figures,
    # With the staff plugin, closing a drawer (the Z-report) needs drawer.close.
    permissions={"drawer_close": "drawer.close"},
)
