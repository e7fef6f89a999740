"""(10) One big tenant: push latency as the tenant grows to N records (1,000,000 at full
size) on PostgreSQL. The tenant is grown in steps by bulk loading (COPY) records and their
feed entries (valid bodies, consecutive feed seqs, as pushes would have left them); at
each size a terminal pushes the same number of 100-op batches of new orders through the
replica, and the latency of each push is recorded. Flat means the p99 at the largest size
is close to the p99 of the empty tenant (the baseline, same run): every query of a push is
a primary-key or index lookup, none scans the tenant.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from benchmarks.bench_local import summary
from benchmarks.context import Context
from benchmarks.harness import need_postgres, postgres_database
from benchmarks.result import Measure, Result, Target, quantiles
from benchmarks.workload import orders_registry, server_ops
from fynlo_sync.ops import Batch, Change, Record, Stamp
from fynlo_sync.protocol import canonical_change, encode_batch

__all__ = ["run_big_tenant"]

TENANT = "big"
BATCH = 100


def _rows(first: int, count: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Records ``first .. first + count - 1`` (one closed order each) and their feed rows."""
    enc = msgspec.json.Encoder()
    records, feed = [], []
    for seq in range(first, first + count):
        stamp = Stamp(hlc="018bcfe568010000", node_id="loader", seq=seq)
        fields = {"status": "closed", "currency": "GBP", "lines": {}, "total": 0}
        record = Record(
            collection="orders",
            record_id=f"bulk-{seq}",
            fields=fields,
            stamps={k: stamp for k in sorted(fields)},
            version=seq,
        )
        change = Change(seq=seq, op_id=f"bulk-{seq}", node_id="loader", node_seq=seq, record=record)
        records.append((TENANT, "orders", record.record_id, seq, enc.encode(record)))
        feed.append((TENANT, seq, canonical_change(change), True))
    return records, feed


async def _run(ctx: Context, url: str) -> dict[int, list[float]]:
    from fynlo_sync.replica import AsyncServerReplica
    from fynlo_sync.store.postgres import PostgresServerStore

    scale = ctx.scale
    store = await PostgresServerStore.connect(url, max_size=4)
    replica = AsyncServerReplica(store, orders_registry())
    out: dict[int, list[float]] = {}
    loaded = 0
    pushed = 0
    seq = 0
    try:
        for size in scale.big_sizes:
            while loaded < size:
                step = min(50_000, size - loaded)
                records, feed = _rows(pushed + loaded + 1, step)
                async with store.pool.acquire() as conn, conn.transaction():
                    await conn.copy_records_to_table(
                        "fynlo_records",
                        records=records,
                        columns=["tenant", "collection", "record_id", "version", "body"],
                    )
                    await conn.copy_records_to_table(
                        "fynlo_feed", records=feed, columns=["tenant", "seq", "body", "canonical"]
                    )
                loaded += step
                ctx.progress.step(loaded, max(scale.big_sizes), "records bulk-loaded")
            async with store.pool.acquire() as conn:
                await conn.execute("ANALYZE fynlo_records; ANALYZE fynlo_feed")
            node = f"till-{size}"
            ops = server_ops(node, scale.big_pushes * BATCH)
            times: list[float] = []
            for i in range(scale.big_pushes):
                body = encode_batch(Batch.of(node, ops[i * BATCH : (i + 1) * BATCH]))
                start = time.perf_counter()
                result = await replica.push(TENANT, body)
                times.append((time.perf_counter() - start) * 1000)
                seq = result.cursor
            pushed = seq - loaded
            out[size] = times
            ctx.progress.note(
                f"{size:,} records: push p50 {summary(times)['p50_ms']:.1f} ms, "
                f"p99 {summary(times)['p99_ms']:.1f} ms"
            )
    finally:
        await store.close()
    return out


def run_big_tenant(ctx: Context) -> list[Result]:
    admin = need_postgres(ctx)
    with postgres_database(admin, "big") as url:
        runs = asyncio.run(_run(ctx, url))
    sizes = sorted(runs)
    first, last = summary(runs[sizes[0]]), summary(runs[sizes[-1]])
    details: dict[str, Any] = {}
    for size in sizes:
        s = summary(runs[size])
        details[f"r{size}_p50_ms"] = s["p50_ms"]
        details[f"r{size}_p99_ms"] = s["p99_ms"]
    return [
        Result(
            key="big-tenant",
            number=10,
            title=f"One tenant growing to {sizes[-1]:,} records: push latency (PostgreSQL)",
            figure=Measure(
                f"push of {BATCH} ops at {sizes[-1]:,} records, p99 (p50 {last['p50_ms']:.1f} ms)",
                last["p99_ms"],
                "ms",
            ),
            baseline=Measure(
                f"the same pushes at {sizes[0]:,} records, p99 (p50 {first['p50_ms']:.1f} ms)",
                first["p99_ms"],
                "ms",
            ),
            ratio=first["p99_ms"] / last["p99_ms"],
            target=Target("flat: >= 0.8x the small tenant's p99", "ratio_min", 0.8),
            params={
                "sizes": sizes,
                "pushes_per_size": ctx.scale.big_pushes,
                "batch": BATCH,
                "store": "PostgreSQL, in-process AsyncServerReplica (no HTTP)",
            },
            details=details,
            distributions={f"push at {s:,} records": quantiles(runs[s]) for s in sizes},
        )
    ]
