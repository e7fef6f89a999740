"""The orders plugin: orders with their lines, changed by commands, totals in minor units.

An order is one record in ``orders``; its lines live in its ``lines`` field, a map from
``line_id`` to ``{"item", "qty", "unit_price", "sent"}``, so two terminals adding lines to
the same order offline both land (commands run against the server's state; direct patches
of the map merge line by line under ``smart_merge``). ``total`` is derived: the sum of
``qty * unit_price`` over the lines, recomputed after every write on every replica.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from fynlo_sync.canonical import MAX_SAFE_INTEGER
from fynlo_sync.domains.orders.states import TABLE, TERMINAL_STATES
from fynlo_sync.effects import EffectContext, EffectHandler
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.ops import Change, Op
from fynlo_sync.plugins import (
    Collection,
    CommandContext,
    DomainPlugin,
    Effect,
    Field,
    Invariant,
    RecordsByCollection,
)

__all__ = ["ORDERS", "ORDERS_COLLECTION", "ORDER_TOTAL", "OrdersPlugin", "order_total"]

ORDERS = "orders"


def order_total(fields: Mapping[str, Any]) -> int:
    """Sum of qty * unit_price over the order's lines, in integer minor units."""
    lines = fields.get("lines") or {}
    total = 0
    for line_id in sorted(lines):
        line = lines[line_id]
        total += line["qty"] * line["unit_price"]
    if total > MAX_SAFE_INTEGER:
        raise RejectedOpError("order total exceeds 2**53-1 minor units", reason="invalid-field")
    return total


def _transition(ctx: CommandContext, command: str) -> str:
    return TABLE.advance(ctx.record, command, "an order")


def _arg(ctx: CommandContext, name: str, kind: type, *, required: bool = True) -> Any:
    value = ctx.args.get(name)
    if value is None and not required:
        return None
    if type(value) is not kind:
        raise RejectedOpError(
            f"argument {name!r} must be {kind.__name__}", reason="invalid-argument", argument=name
        )
    return value


def _open(ctx: CommandContext) -> dict[str, Any]:
    status = _transition(ctx, "open")
    currency = _arg(ctx, "currency", str)
    # Three of A-Z: ASCII letters, every one upper case.
    if len(currency) != 3 or not (currency.isascii() and currency.isalpha() and currency.isupper()):
        raise RejectedOpError("currency must be an ISO 4217 code", reason="invalid-argument")
    return {
        "status": status,
        "table": _arg(ctx, "table", str, required=False),
        "currency": currency,
        "lines": {},
        "opened_by": ctx.op.node_id,
    }


def _lines(ctx: CommandContext) -> dict[str, Any]:
    assert ctx.record is not None
    return dict(ctx.record.get("lines") or {})


def _add_line(ctx: CommandContext) -> dict[str, Any]:
    status = _transition(ctx, "add_line")
    line_id = _arg(ctx, "line_id", str)
    qty = _arg(ctx, "qty", int)
    price = _arg(ctx, "unit_price", int)
    if qty <= 0 or price < 0:
        raise RejectedOpError("qty must be > 0 and unit_price >= 0", reason="invalid-argument")
    lines = _lines(ctx)
    if line_id in lines:
        raise RejectedOpError(f"line {line_id!r} already exists", reason="duplicate-line")
    lines[line_id] = {
        "item": _arg(ctx, "item", str),
        "qty": qty,
        "unit_price": price,
        "sent": False,
    }
    return {"status": status, "lines": lines}


def _remove_line(ctx: CommandContext) -> dict[str, Any]:
    status = _transition(ctx, "remove_line")
    line_id = _arg(ctx, "line_id", str)
    lines = _lines(ctx)
    if line_id not in lines:
        raise RejectedOpError(f"no line {line_id!r}", reason="line-not-found")
    if lines[line_id]["sent"]:
        raise RejectedOpError(
            f"line {line_id!r} was sent to the kitchen; void the order instead",
            reason="line-already-sent",
        )
    del lines[line_id]
    return {"status": status, "lines": lines}


def _send(ctx: CommandContext) -> dict[str, Any]:
    status = _transition(ctx, "send_to_kitchen")
    assert ctx.record is not None
    lines = {k: {**v, "sent": True} for k, v in (ctx.record.get("lines") or {}).items()}
    if not lines:
        raise RejectedOpError("an order with no lines cannot go to the kitchen", reason="empty")
    return {"status": status, "lines": lines}


def _simple(command: str) -> Any:
    def run(ctx: CommandContext) -> dict[str, Any]:
        return {"status": _transition(ctx, command)}

    run.__name__ = f"_{command}"
    return run


def _void(ctx: CommandContext) -> dict[str, Any]:
    status = _transition(ctx, "void")
    return {"status": status, "void_reason": _arg(ctx, "reason", str, required=False)}


def _validate(before: Mapping[str, Any] | None, after: Mapping[str, Any], op: Op) -> None:
    """A closed or voided order is history: no direct edits either."""
    if before is not None and before.get("status") in TERMINAL_STATES:
        raise RejectedOpError(
            f"order {op.record_id} is {before['status']}; it can no longer change",
            reason="order-closed",
        )


ORDERS_COLLECTION = Collection(
    name=ORDERS,
    fields={
        "status": Field("str", kind="state", required=True, command_only=True),
        "table": Field("str"),
        "currency": Field("str", required=True, command_only=True),
        "lines": Field("object", kind="map", command_only=True),
        "total": Field("money", command_only=True),
        "opened_by": Field("str", command_only=True),
        "note": Field("str"),
        "covers": Field("int"),
        "tags": Field("list", kind="set"),
        "void_reason": Field("str", command_only=True),
    },
    strategy="smart_merge",
    state_table=TABLE,
    commands={
        "open": _open,
        "add_line": _add_line,
        "remove_line": _remove_line,
        "send_to_kitchen": _send,
        "mark_ready": _simple("mark_ready"),
        "serve": _simple("serve"),
        "close": _simple("close"),
        "void": _void,
    },
    derive=lambda fields: {"total": order_total(fields)},
    validate=_validate,
)


def _totals_add_up(records: RecordsByCollection) -> Iterator[str]:
    # Summed here, not by order_total: the check must not share the code it checks.
    for record in records.get(ORDERS, ()):
        total = record.fields.get("total")
        try:
            lines = record.fields.get("lines") or {}
            want: int | str = sum(line["qty"] * line["unit_price"] for line in lines.values())
        except (TypeError, KeyError, AttributeError) as exc:
            want = f"nothing (its lines are malformed: {type(exc).__name__})"
        if total != want:
            yield f"order {record.record_id} total {total} but its lines sum to {want}"


#: Every order's total equals the sum of qty * unit_price over its lines.
ORDER_TOTAL = Invariant(
    "order-total",
    _totals_add_up,
    description="an order's total is the sum of qty * unit_price over its lines",
)


#: Prints a kitchen ticket: called with the effect (its ``key`` is stable per send), may be
#: async. It is called at least once per send; printing exactly once is its part, by key.
TicketPrinter = Callable[[Effect], Awaitable[None] | None]


class OrdersPlugin(DomainPlugin):
    """Orders. When the server commits an order going to the kitchen, a durable
    ``kitchen_ticket`` effect is written with the commit (key: the send op,
    ``orders.kitchen_ticket:<node_id>:<node_seq>``); its handler gives it to
    ``ticket_printer`` (injected). A subclass may override :meth:`print_ticket` to print
    through an outside service with ``ctx.key`` as the idempotency key."""

    name = "orders"

    def __init__(self, ticket_printer: TicketPrinter | None = None) -> None:
        super().__init__()
        self.ticket_printer = ticket_printer

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        return {"kitchen_ticket": self.print_ticket}

    async def print_ticket(self, ctx: EffectContext) -> None:
        if self.ticket_printer is not None:
            done = self.ticket_printer(ctx.effect)
            if done is not None:
                await done

    def collections(self) -> Iterable[Collection]:
        return (ORDERS_COLLECTION,)

    def invariants(self) -> Iterable[Invariant]:
        return (ORDER_TOTAL,)

    def effects(self, changes: list[Change]) -> list[Effect]:
        tickets = []
        for change in changes:
            record = change.record
            if record.fields.get("status") != "sent" or record.collection != ORDERS:
                continue
            stamp = record.stamps.get("status")
            if stamp is not None and stamp.seq == change.seq:
                lines = record.fields.get("lines") or {}
                tickets.append(
                    Effect.of(
                        change,
                        self.name,
                        "kitchen_ticket",
                        {
                            "order_id": record.record_id,
                            "seq": change.seq,
                            "table": record.fields.get("table"),
                            "lines": [
                                {"item": lines[k]["item"], "qty": lines[k]["qty"]}
                                for k in sorted(lines)
                            ],
                        },
                    )
                )
        return tickets
