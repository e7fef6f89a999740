"""A child process of benchmark (4): terminal B, online, in its own process (another till).

``python -m benchmarks.e2e_peer URL ENROLLMENT_CODE TERMINAL_DB UNTIL TIMEOUT_S``: enrolls,
opens a poke socket, prints ``ready``, then pulls whenever a poke's cursor is past its own
(or after half a second without one: pokes may be lost, protocol section 10) until its
cursor reaches ``UNTIL``. Then prints one JSON line ``{"done_at", "pulled", "pulls",
"cursor"}``; ``done_at`` is ``time.monotonic()`` when the last page was applied (the
system-wide monotonic clock: the parent's clock starts on the same one). Exit 1 and a
message on stderr if it cannot get there within ``TIMEOUT_S``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

__all__ = ["main"]

#: How long B waits for a poke before it pulls anyway.
POKE_WAIT_S = 0.5


def main(argv: list[str]) -> int:
    from benchmarks.workload import new_terminal, orders_registry
    from fynlo_sync.transport.http import HttpTransport, PokeListener

    url, code, db, until, timeout_s = argv[0], argv[1], argv[2], int(argv[3]), float(argv[4])
    link = HttpTransport.enroll(url, code)
    b = new_terminal(Path(db), link.node_id, orders_registry(), link, seed=22)
    pulled = pulls = 0
    with PokeListener(link) as listener:
        if not listener.connected.wait(10):
            print("B's poke socket did not connect within 10 s", file=sys.stderr)
            return 1
        while listener.next(0.05) is not None:
            pass  # the poke sent on connecting
        print("ready", flush=True)
        deadline = time.monotonic() + timeout_s
        while b.store.meta().cursor < until:
            if time.monotonic() > deadline:
                print(f"B stopped at cursor {b.store.meta().cursor}", file=sys.stderr)
                return 1
            poked = listener.next(POKE_WAIT_S)
            if poked is None or poked > b.store.meta().cursor:
                pulled += b.pull()
                pulls += 1
        done_at = time.monotonic()
    cursor = b.store.meta().cursor
    b.store.close()
    link.close()
    print(json.dumps({"done_at": done_at, "pulled": pulled, "pulls": pulls, "cursor": cursor}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
