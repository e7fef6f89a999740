"""Deterministic order-like workloads.

An order's life here is five ops: ``open``, two ``add_line`` commands, a ``patch`` of its
note and covers, and ``send_to_kitchen``. Servers see them as prepared batches
(:func:`server_batches`); terminals make them through the real local-write API
(:func:`drive_terminal`). Node ``n`` works on its own orders, so no op contests another:
the benchmarks measure the plain path, not conflict resolution.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op
from fynlo_sync.plugins import Registry
from fynlo_sync.store.sqlite import SqliteTerminalStore
from fynlo_sync.transport.base import Transport

__all__ = [
    "OPS_PER_ORDER",
    "TENANT",
    "OrderStep",
    "drive_terminal",
    "new_terminal",
    "order_steps",
    "orders_registry",
    "server_batches",
    "server_ops",
    "wall_ms",
]

TENANT = "bench-tenant"
OPS_PER_ORDER = 5
_BASE_MS = 1_750_000_000_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def new_terminal(
    path: Path, node_id: str, registry: Registry, transport: Transport | None, *, seed: int | str
) -> Terminal:
    """A terminal on a SQLite file, pushing and pulling 1,000 at a time (the server's
    maxima), with the system clock and a seeded random source."""
    return Terminal(
        SqliteTerminalStore(path, node_id),
        registry,
        transport,
        wall=wall_ms,
        rng=random.Random(seed),
        batch_size=1000,
        page_size=1000,
    )


def orders_registry() -> Registry:
    return conflict.registry([OrdersPlugin()])


@dataclass(frozen=True, slots=True)
class OrderStep:
    """One local write: a command (``name`` + ``args``) or a patch (``fields``)."""

    record_id: str
    name: str | None
    args: dict[str, Any] | None
    fields: dict[str, Any] | None


def order_steps(prefix: str, count: int) -> Iterator[OrderStep]:
    """``count`` writes over orders ``{prefix}-o{n}``, five writes per order."""
    for i in range(count):
        order, step = divmod(i, OPS_PER_ORDER)
        record_id = f"{prefix}-o{order}"
        if step == 0:
            yield OrderStep(record_id, "open", {"currency": "GBP", "table": f"T{order % 40}"}, None)
        elif step == 1:
            yield OrderStep(
                record_id,
                "add_line",
                {"line_id": "l1", "item": "burger", "qty": 2, "unit_price": 1250},
                None,
            )
        elif step == 2:
            yield OrderStep(
                record_id,
                "add_line",
                {"line_id": "l2", "item": "fries", "qty": 1, "unit_price": 450},
                None,
            )
        elif step == 3:
            yield OrderStep(record_id, None, None, {"note": "no onions", "covers": 2})
        else:
            yield OrderStep(record_id, "send_to_kitchen", {}, None)


def server_ops(node_id: str, count: int, *, seed: int = 7, start_seq: int = 1) -> list[Op]:
    """The ops a terminal ``node_id`` would have made offline for ``count`` writes."""
    rng = random.Random(f"{seed}:{node_id}")
    ops: list[Op] = []
    for i, step in enumerate(order_steps(node_id, count)):
        seq = start_seq + i
        hlc = pack(_BASE_MS + seq // 64, seq % 64)
        ops.append(
            Op(
                op_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                node_id=node_id,
                seq=seq,
                hlc=to_wire(hlc),
                base_seq=0,
                collection="orders",
                record_id=step.record_id,
                kind="command" if step.name is not None else "patch",
                fields=step.fields,
                name=step.name,
                args=step.args,
            )
        )
    return ops


def server_batches(total_ops: int, batch_size: int, *, nodes: int = 4) -> list[Batch]:
    """``total_ops`` ops from ``nodes`` terminals in batches of ``batch_size``, the nodes'
    batches interleaved round-robin (as pushes from several terminals arrive)."""
    per_node = [total_ops // nodes + (1 if n < total_ops % nodes else 0) for n in range(nodes)]
    queues: list[list[Batch]] = []
    for n, count in enumerate(per_node):
        node_id = f"node-{n:02d}"
        ops = server_ops(node_id, count)
        queues.append(
            [Batch.of(node_id, ops[i : i + batch_size]) for i in range(0, len(ops), batch_size)]
        )
    out: list[Batch] = []
    for round_ in range(max((len(q) for q in queues), default=0)):
        out.extend(q[round_] for q in queues if round_ < len(q))
    return out


def drive_terminal(
    terminal: Terminal,
    count: int,
    *,
    prefix: str | None = None,
    on_each: Callable[[int], None] | None = None,
) -> None:
    """Make ``count`` local writes on ``terminal`` through its public API."""
    for i, step in enumerate(order_steps(prefix or terminal.node_id, count)):
        if step.name is not None:
            terminal.command("orders", step.record_id, step.name, step.args)
        else:
            assert step.fields is not None
            terminal.patch("orders", step.record_id, step.fields)
        if on_each is not None:
            on_each(i)
