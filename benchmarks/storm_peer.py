"""A client process of benchmark (5), the reconnect storm.

Reads one JSON line from stdin: ``{"url", "terminals": [[node, code], ...], "ops",
"target", "work", "budget_s"}``. Makes each terminal's ``ops`` writes offline (untimed),
prints ``READY``, waits for ``GO``, then syncs every terminal at once (one thread each)
until each has pushed everything and pulled up to ``target``; prints ``RESULT {json}``
with each terminal's time to converge (from GO), its cursor, and a digest of its records.
Past ``budget_s`` a terminal stops where it is (its cursor tells how far it got).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.workload import drive_terminal, new_terminal, orders_registry
from fynlo_sync.client import Terminal
from fynlo_sync.errors import TransportError
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import PageRows, PullPage, PushResult
from fynlo_sync.transport.base import Transport
from fynlo_sync.transport.http import HttpTransport

__all__ = ["RETRIES", "DeadlineTransport", "converge", "digest", "main"]


def digest(terminal: Terminal) -> str:
    rows = [[r.collection, r.record_id, r.fields] for r in terminal.store.records()]
    return hashlib.md5(msgspec.json.encode(rows, order="sorted")).hexdigest()


#: Transport failures retried per terminal (reported with the result).
RETRIES: dict[str, int] = {}


class DeadlineTransport:
    """Refuses every request past ``deadline`` (a long pull stops between pages)."""

    def __init__(self, inner: Transport, deadline: float) -> None:
        self.inner = inner
        self.deadline = deadline

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise TransportError("the benchmark's time budget is spent")

    def push(self, batch: Batch) -> PushResult:
        self._check()
        return self.inner.push(batch)

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        self._check()
        return self.inner.pull(since, limit, compact=compact)

    def pull_rows(self, since: int, limit: int, *, compact: bool, node_id: str) -> PageRows:
        self._check()
        rows: PageRows = self.inner.pull_rows(  # type: ignore[attr-defined]
            since, limit, compact=compact, node_id=node_id
        )
        return rows


def converge(terminal: Terminal, target: int, deadline: float) -> bool:
    """Sync until everything is pushed and the feed is pulled up to ``target`` (True), or
    until ``deadline`` (False)."""
    assert terminal.transport is not None
    inner = terminal.transport
    terminal.transport = DeadlineTransport(inner, deadline)
    try:
        return _converge(terminal, target, deadline)
    except TransportError:
        if time.monotonic() > deadline:
            return False
        raise
    finally:
        terminal.transport = inner


def _converge(terminal: Terminal, target: int, deadline: float) -> bool:
    while True:
        try:
            terminal.push()
            terminal.pull()
            terminal.backoff.reset()
        except TransportError:
            # What a terminal does on a network failure: back off (with jitter), retry.
            if time.monotonic() > deadline:
                raise
            RETRIES[terminal.node_id] = RETRIES.get(terminal.node_id, 0) + 1
            time.sleep(min(terminal.backoff.next_delay_ms(), 2000) / 1000)
            continue
        if terminal.store.meta().cursor >= target and not terminal.pending():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def main() -> int:
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    registry = orders_registry()
    work = Path(config["work"])
    terminals = []
    for node, code in config["terminals"]:
        link = HttpTransport.enroll(config["url"], code, timeout=120)
        terminal = new_terminal(work / f"storm-{node}.db", node, registry, link, seed=node)
        drive_terminal(terminal, config["ops"])
        terminals.append(terminal)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    start = time.monotonic()
    deadline = start + float(config["budget_s"])
    finished: dict[str, float] = {}
    errors: list[str] = []

    def run(terminal: Terminal) -> None:
        try:
            if converge(terminal, int(config["target"]), deadline):
                finished[terminal.node_id] = time.monotonic() - start
        except Exception as exc:
            errors.append(f"{terminal.node_id}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(t,)) for t in terminals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = {
        "finished": finished,
        "errors": errors,
        "digests": {t.node_id: digest(t) for t in terminals},
        "cursors": {t.node_id: t.store.meta().cursor for t in terminals},
        "retries": RETRIES,
    }
    print("RESULT " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
