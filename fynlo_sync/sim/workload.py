"""The restaurant service: one write at a time, chosen against what the terminal sees.

A write is ``what`` plus two selectors (``a`` picks the target among the candidates, ``b``
the item, amount or choice), so the same step means something in any state: this is what
lets the simulator delete steps when it shrinks, and the demo draw its service from a seed.
Orders go through the orders plugin's commands; notes, tags and covers are direct patches
(real field conflicts when two terminals touch the same order); stock counts are counter
deltas; re-seating a table is a manual-strategy patch (parked when it races); a manager
resolves parked conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import ORDERS
from fynlo_sync.ops import Op, Record
from fynlo_sync.plugins import CONFLICTS
from fynlo_sync.sim.floor import STOCK, TABLES
from fynlo_sync.sim.payments import PAYMENT_WRITES, act_payment
from fynlo_sync.sim.schedule import Step

__all__ = ["INITIAL_STOCK", "MENU", "STOCKED", "TABLE_COUNT", "act", "seed_floor"]

MENU = (
    ("burger", 1250),
    ("fries", 450),
    ("salad", 890),
    ("cola", 300),
    ("steak", 2400),
    ("pie", 650),
)
#: What the kitchen counts (an item not stocked is never short).
STOCKED = ("burger", "fries", "cola", "pie")
TAGS = ("vip", "allergy", "birthday", "window", "rush")
SECTIONS = ("main", "patio", "bar", "terrace")
TABLE_COUNT = 3
INITIAL_STOCK = 100


def seed_floor(client: Terminal, tenant: str) -> list[Op]:
    """The back office's opening writes: stock counts and the table plan."""
    made: list[Op] = []
    for item in STOCKED:
        made.append(client.put(STOCK, f"{tenant}.{item}", {"item": item, "count": INITIAL_STOCK}))
    for k in range(TABLE_COUNT):
        made.append(client.put(TABLES, f"{tenant}.table{k}", {"section": "main", "seats": 4}))
    return made


def act(
    client: Terminal,
    tenant: str,
    index: int,
    step: Step,
    *,
    order_id: str | None = None,
    online: bool = True,
) -> list[Op]:
    """Do one write of the service on ``client``: ``step.what`` with its selectors resolved
    against what the terminal sees now (``order_id`` names the order instead of ``a``;
    ``online`` says whether the terminal can reach the server, which payments need).
    Returns the ops made (``[]``: nothing to do)."""
    if step.what in PAYMENT_WRITES:
        return act_payment(client, tenant, step, online=online)
    seq = client.store.meta().next_seq
    orders = [o for o in client.records(ORDERS) if o.record_id.startswith(tenant + ".")]

    def pick(statuses: Iterable[str], extra: Any = None) -> Record | None:
        wanted = set(statuses)
        found = [
            o for o in orders if o.fields.get("status") in wanted and (extra is None or extra(o))
        ]
        if order_id is not None:
            return next((o for o in found if o.record_id == order_id), None)
        return found[step.a % len(found)] if found else None

    what = step.what
    item, price = MENU[step.b % len(MENU)]
    if what == "open":
        rid = f"{tenant}.o{index}.{seq}"
        args = {"currency": "GBP", "table": str(step.a % 12 + 1)}
        return [client.command(ORDERS, rid, "open", args)]
    live = ("open", "sent", "ready", "served")
    if what == "add_line":
        order = pick(live)
        if order is None:
            return []
        line: dict[str, Any] = {
            "line_id": f"l{index}.{seq}",
            "item": item,
            "qty": step.b % 3 + 1,
            "unit_price": price,
        }
        return [client.command(ORDERS, order.record_id, "add_line", line)]
    if what == "remove_line":

        def unsent(o: Record) -> bool:
            return any(not line["sent"] for line in (o.fields.get("lines") or {}).values())

        order = pick(("open", "sent"), unsent)
        if order is None:
            return []
        lines = order.fields["lines"]
        ids = sorted(k for k in lines if not lines[k]["sent"])
        line_id = ids[step.b % len(ids)]
        return [client.command(ORDERS, order.record_id, "remove_line", {"line_id": line_id})]
    simple: dict[str, tuple[str, tuple[str, ...]]] = {
        "send": ("send_to_kitchen", ("open",)),
        "ready": ("mark_ready", ("sent",)),
        "serve": ("serve", ("ready",)),
        "close": ("close", ("open", "served")),
    }
    if what in simple:
        name, statuses = simple[what]
        order = pick(statuses)
        if order is None:
            return []
        if name == "send_to_kitchen" and not order.fields.get("lines"):
            return []
        return [client.command(ORDERS, order.record_id, name, {})]
    if what == "void":
        order = pick(live)
        if order is None:
            return []
        return [client.command(ORDERS, order.record_id, "void", {"reason": f"v{step.b}"})]
    if what in ("note", "tags", "covers"):
        order = pick((*live, "closed", "voided"))
        if order is None:
            return []
        patches: dict[str, dict[str, Any]] = {
            "note": {"note": f"note {step.b} from T{index}"},
            "tags": {"tags": [TAGS[step.b % len(TAGS)]]},
            "covers": {"covers": step.b % 8 + 1},
        }
        value = patches[what]
        return [client.patch(ORDERS, order.record_id, value)]
    if what == "delete":
        order = pick(("closed", "voided"))
        if order is None:
            return []
        return [client.delete(ORDERS, order.record_id)]
    if what == "stock":
        delta = (step.b % 3 + 1) * (1 if step.b % 4 == 0 else -1)
        rid = f"{tenant}.{STOCKED[step.b % len(STOCKED)]}"
        if client.get(STOCK, rid) is None:
            return []
        return [client.patch(STOCK, rid, {"count": delta})]
    if what == "table":
        rid = f"{tenant}.table{step.a % TABLE_COUNT}"
        if client.get(TABLES, rid) is None:
            return []
        section = SECTIONS[step.b % len(SECTIONS)]
        return [client.patch(TABLES, rid, {"section": section, "seats": step.b % 6 + 2})]
    if what == "resolve":
        queue = [c for c in client.records(CONFLICTS) if c.fields.get("state") == "open"]
        if not queue:
            return []
        parked = queue[step.a % len(queue)]
        choice: Any = ("server", "incoming", {"section": "host-stand"})[step.b % 3]
        if parked.fields["collection"] != TABLES and isinstance(choice, dict):
            choice = "server"
        return client.resolve_conflict(parked.record_id, choice)
    raise ValueError(f"unknown write {what!r}")
