"""(3) Pull: a fresh terminal catching up on N changes over the loopback transport (the
real wire encoding, JSON both ways, MD5 page checksums), beside the storage limit: the same
feed pages read from the server file and the same rows written to a terminal file, in the
same transactions, with nothing decoded or verified."""

from __future__ import annotations

import random
import time

import msgspec

from benchmarks.bench_apply import seed_server
from benchmarks.context import Context
from benchmarks.result import Measure, Result, speed_ratio
from benchmarks.workload import TENANT, wall_ms
from fynlo_sync.client import Terminal
from fynlo_sync.ops import Batch, Change
from fynlo_sync.protocol import PullPage, PushResult
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.sqlite import SqliteTerminalStore
from fynlo_sync.transport import LoopbackTransport
from fynlo_sync.transport.base import Transport

__all__ = ["CountingTransport", "run_pull"]

_enc = msgspec.json.Encoder()
_change = msgspec.json.Decoder(Change)


class CountingTransport:
    """Wraps a transport to show pull progress (adds one call per page)."""

    def __init__(self, inner: Transport, ctx: Context, total: int, label: str) -> None:
        self.inner = inner
        self.ctx = ctx
        self.total = total
        self.label = label

    def push(self, batch: Batch) -> PushResult:
        return self.inner.push(batch)

    def pull(self, since: int, limit: int) -> PullPage:
        self.ctx.progress.step(since, self.total, self.label)
        return self.inner.pull(since, limit)


def run_pull(ctx: Context) -> list[Result]:
    page = ctx.scale.pull_page
    server, count = seed_server(ctx, ctx.scale.pull_changes)
    replica = ServerReplica(server, ctx.registry, max_page=max(page, 1000))

    # Untimed: the rows the terminal will write, per page (latest state per key).
    conn = server.db.conn
    pages: list[list[tuple[str, str, bytes]]] = []
    current: dict[tuple[str, str], bytes] = {}
    for n, (body,) in enumerate(
        conn.execute("SELECT body FROM fynlo_feed WHERE tenant = ? ORDER BY seq", (TENANT,)),
        start=1,
    ):
        record = _change.decode(body).record
        current[record.key] = _enc.encode(record)
        if n % page == 0:
            pages.append([(c, r, b) for (c, r), b in sorted(current.items())])
            current = {}
    if current:
        pages.append([(c, r, b) for (c, r), b in sorted(current.items())])

    raw_store = SqliteTerminalStore(ctx.work / "pull-raw.db", "reader")
    raw = raw_store.db.conn
    start = time.perf_counter()
    since = 0
    for rows in pages:
        fetched = conn.execute(
            "SELECT seq, body FROM fynlo_feed WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
            (TENANT, since, page),
        ).fetchall()
        since = fetched[-1][0]
        raw.execute("BEGIN IMMEDIATE")
        for table in ("fynlo_server_rows", "fynlo_rows"):
            raw.executemany(
                f"INSERT OR REPLACE INTO {table}(collection, record_id, body) VALUES (?, ?, ?)",
                rows,
            )
        raw.execute("UPDATE fynlo_meta SET cursor = ? WHERE id = 1", (since,))
        raw.execute("COMMIT")
    raw_s = time.perf_counter() - start
    raw_store.close()

    store = SqliteTerminalStore(ctx.work / "pull-reader.db", "reader")
    link = CountingTransport(LoopbackTransport(replica, TENANT, "reader"), ctx, count, "pulled")
    terminal = Terminal(
        store, ctx.registry, link, wall=wall_ms, rng=random.Random(3), page_size=page
    )
    start = time.perf_counter()
    pulled = terminal.pull()
    ours_s = time.perf_counter() - start
    if pulled != count or store.meta().cursor != count:
        raise RuntimeError(f"pulled {pulled} of {count} changes")
    records = len(store.records())
    store.close()
    return [
        Result(
            key="pull",
            number=3,
            title="Pull: a fresh terminal catching up (loopback)",
            figure=Measure("terminal pull (JSON + MD5 + rebase)", count / ours_s, "changes/s"),
            baseline=Measure(
                "raw: read the feed pages, write the same rows", count / raw_s, "changes/s"
            ),
            ratio=speed_ratio(ours_s, raw_s),
            params={"changes": count, "page": page, "transport": "loopback"},
            details={"ours_s": ours_s, "raw_s": raw_s, "records": records, "pages": len(pages)},
        )
    ]
