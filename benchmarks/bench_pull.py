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
from benchmarks.result import Measure, Result, Target, speed_ratio
from benchmarks.workload import TENANT, wall_ms
from fynlo_sync.client import Terminal
from fynlo_sync.ops import Batch, Change
from fynlo_sync.protocol import PageRows, PullPage, PushResult
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

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        self.ctx.progress.step(since, self.total, self.label)
        return self.inner.pull(since, limit, compact=compact)

    def pull_rows(self, since: int, limit: int, *, compact: bool, node_id: str) -> PageRows:
        self.ctx.progress.step(since, self.total, self.label)
        rows: PageRows = self.inner.pull_rows(  # type: ignore[attr-defined]
            since, limit, compact=compact, node_id=node_id
        )
        return rows


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

    def catch_up(name: str, compact: bool) -> tuple[float, int, int]:
        store = SqliteTerminalStore(ctx.work / f"pull-{name}.db", "reader")
        link = CountingTransport(
            LoopbackTransport(replica, TENANT, "reader"), ctx, count, f"pulled ({name})"
        )
        terminal = Terminal(
            store,
            ctx.registry,
            link,
            wall=wall_ms,
            rng=random.Random(3),
            page_size=page,
            compact=compact,
        )
        start = time.perf_counter()
        pulled = terminal.pull()
        seconds = time.perf_counter() - start
        if store.meta().cursor != count:
            raise RuntimeError(f"{name}: caught up to {store.meta().cursor} of {count} changes")
        records = len(store.records())
        store.close()
        return seconds, pulled, records

    feed_s, feed_pulled, feed_records = catch_up("feed", compact=False)
    ours_s, sent, records = catch_up("compacted", compact=True)
    if feed_pulled != count or records != feed_records:
        raise RuntimeError(f"feed pull got {feed_pulled} of {count}; {records} != {feed_records}")
    return [
        Result(
            key="pull",
            number=3,
            title=f"Pull: a fresh terminal catching up {count:,} changes (loopback)",
            figure=Measure(
                f"compacted catch-up ({sent:,} records sent, staged, applied at once)",
                count / ours_s,
                "changes/s",
            ),
            baseline=Measure(
                "raw: read the feed pages, write the same rows", count / raw_s, "changes/s"
            ),
            ratio=speed_ratio(ours_s, raw_s),
            target=Target(">= 0.3x raw read + write", "ratio_min", 0.3),
            params={"changes": count, "page": page, "transport": "loopback"},
            details={
                "ours_s": ours_s,
                "raw_s": raw_s,
                "records": records,
                "records_sent": sent,
                "pages": len(pages),
                "feed_s": feed_s,
                "feed_changes_per_s": count / feed_s,
                "feed_ratio": speed_ratio(feed_s, raw_s),
            },
        )
    ]
