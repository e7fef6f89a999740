"""A child process of benchmark (11): one fresh terminal catching up from a seeded server
file over the loopback, compacted, and its peak resident memory.

``python -m benchmarks.catchup_peer SERVER_DB TERMINAL_DB PAGE``: prints one JSON line
``{"seconds", "max_rss_kib", "cursor", "records", "sent"}``. Peak RSS is the process's
``VmHWM`` (``/proc/self/status``; ``ru_maxrss`` is not used: Linux keeps it across
``exec``, so a child of a big parent would report the parent's), which includes the
interpreter and the in-process server.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time

__all__ = ["main"]


def _peak_rss_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> int:
    from benchmarks.workload import TENANT, orders_registry, wall_ms
    from fynlo_sync.client import Terminal
    from fynlo_sync.replica import ServerReplica
    from fynlo_sync.store.sqlite import SqliteServerStore, SqliteTerminalStore
    from fynlo_sync.transport import LoopbackTransport

    server_db, terminal_db, page = argv[0], argv[1], int(argv[2])
    registry = orders_registry()
    server = SqliteServerStore(server_db)
    replica = ServerReplica(server, registry, max_page=page)
    store = SqliteTerminalStore(terminal_db, "reader")
    terminal = Terminal(
        store,
        registry,
        LoopbackTransport(replica, TENANT, "reader"),
        wall=wall_ms,
        rng=random.Random(1),
        page_size=page,
    )
    start = time.perf_counter()
    sent = terminal.pull()
    seconds = time.perf_counter() - start
    report = {
        "seconds": seconds,
        "max_rss_kib": _peak_rss_kib(),
        "cursor": store.meta().cursor,
        "records": store.db.conn.execute("SELECT count(*) FROM fynlo_server_rows").fetchone()[0],
        "sent": sent,
        "server_cursor": server.cursor(TENANT),
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
