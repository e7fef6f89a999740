"""The README's example: two terminals and a server replica joined in-process."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import conflict
from fynlo_sync import ServerReplica, Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.transport import LoopbackTransport


def wall() -> int:
    return time.time_ns() // 1_000_000


def main(folder: Path) -> int:
    registry = conflict.registry([OrdersPlugin()])
    server = ServerReplica(MemoryServerStore(), registry)
    till, bar = (
        Terminal(
            SqliteTerminalStore(folder / f"{name}.db", name),
            registry,
            LoopbackTransport(server, "cafe-1", name),
            wall=wall,
            rng=random.Random(),
        )
        for name in ("till", "bar")
    )
    till.command("orders", "o-17", "open", {"currency": "GBP", "table": "4"})
    till.command(
        "orders",
        "o-17",
        "add_line",
        {"line_id": "l1", "item": "burger", "qty": 2, "unit_price": 1250},
    )
    till.sync()
    bar.sync()
    order = bar.get("orders", "o-17")
    assert order is not None
    total: int = order.fields["total"]
    print(total)
    return total


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(tmp))
