"""Child process for the crash test: local writes as fast as it can, printing each one
after its transaction committed, until it is killed."""

from __future__ import annotations

import random
import sys
import time

from fynlo_sync.client import Terminal
from fynlo_sync.store import SqliteTerminalStore
from tests.core.conftest import make_registry


def main(path: str) -> None:
    terminal = Terminal(
        SqliteTerminalStore(path, "till-1", synchronous="NORMAL"),
        make_registry(),
        wall=lambda: time.time_ns() // 1_000_000,
        rng=random.Random(),
    )
    order = 0
    lines = 0
    while True:
        if lines == 0:
            order += 1
            op = terminal.command("orders", f"o{order}", "open", {"currency": "GBP"})
        else:
            args = {"line_id": f"l{lines}", "item": "tea", "qty": lines, "unit_price": 105}
            op = terminal.command("orders", f"o{order}", "add_line", args)
        lines = (lines + 1) % 7
        sys.stdout.write(f"{op.seq} {op.op_id}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
