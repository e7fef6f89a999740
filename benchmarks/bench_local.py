"""(8) Terminal local write latency: ``Terminal.command`` / ``Terminal.patch`` on a
SQLite file, state + outbox + meta in one transaction, beside a raw SQLite transaction
writing the same rows (already encoded) to the same schema in the same run."""

from __future__ import annotations

import random
import time

from benchmarks.context import Context
from benchmarks.result import Measure, Result, Target, percentile, quantiles
from benchmarks.workload import order_steps, wall_ms
from fynlo_sync.client import Terminal
from fynlo_sync.store.sqlite import SqliteTerminalStore

__all__ = ["run_local_write", "summary"]


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "p999_ms": percentile(ordered, 99.9),
        "max_ms": ordered[-1],
        "mean_ms": sum(ordered) / len(ordered),
    }


def run_local_write(ctx: Context) -> list[Result]:
    n = ctx.scale.local_writes
    warmup = max(10, min(200, n // 10))
    node = "till-1"
    store = SqliteTerminalStore(ctx.work / "local-write.db", node)
    terminal = Terminal(store, ctx.registry, None, wall=wall_ms, rng=random.Random(11))
    ours: list[float] = []
    clock = time.perf_counter_ns
    for i, step in enumerate(order_steps(node, n + warmup)):
        if step.name is not None:
            start = clock()
            terminal.command("orders", step.record_id, step.name, step.args)
            took = clock() - start
        else:
            assert step.fields is not None
            start = clock()
            terminal.patch("orders", step.record_id, step.fields)
            took = clock() - start
        if i >= warmup:
            ours.append(took / 1e6)
        if i % 100 == 0:
            ctx.progress.step(i, n + warmup, "local writes")
    if len(store.outbox()) != n + warmup:
        raise RuntimeError("the outbox does not hold every local write")

    # The same rows, already encoded: every op body from the outbox, and the record body
    # of its order (its final state, as large as or larger than the intermediate ones).
    conn = store.db.conn
    bodies = {
        (c, r): b for c, r, b in conn.execute("SELECT collection, record_id, body FROM fynlo_rows")
    }
    writes = [
        (c, r, seq, op, bodies[(c, r)])
        for seq, c, r, op in conn.execute(
            "SELECT seq, collection, record_id, body FROM fynlo_outbox ORDER BY seq"
        )
    ]
    store.close()
    raw_store = SqliteTerminalStore(ctx.work / "local-write-raw.db", node)
    raw = raw_store.db.conn
    baseline: list[float] = []
    for i, (collection, record_id, seq, op_body, record_body) in enumerate(writes):
        start = clock()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("SELECT node_id, next_seq, cursor, acked_seq, hlc FROM fynlo_meta WHERE id = 1")
        raw.execute(
            "SELECT body FROM fynlo_rows WHERE collection = ? AND record_id = ?",
            (collection, record_id),
        ).fetchone()
        raw.execute(
            "INSERT OR REPLACE INTO fynlo_rows(collection, record_id, body) VALUES (?, ?, ?)",
            (collection, record_id, record_body),
        )
        raw.execute(
            "INSERT INTO fynlo_outbox(seq, collection, record_id, body, acked_cursor) "
            "VALUES (?, ?, ?, ?, NULL)",
            (seq, collection, record_id, op_body),
        )
        raw.execute(
            "UPDATE fynlo_meta SET next_seq = ?, cursor = ?, acked_seq = ?, hlc = ? WHERE id = 1",
            (seq + 1, 0, 0, "0"),
        )
        raw.execute("COMMIT")
        took = clock() - start
        if i >= warmup:
            baseline.append(took / 1e6)
    raw_store.close()

    mine, base = summary(ours), summary(baseline)
    details: dict[str, float | int] = {**mine, "writes_per_s": 1000.0 / mine["mean_ms"]}
    details.update({f"raw_{k}": v for k, v in base.items()})
    return [
        Result(
            key="local-write",
            number=8,
            title="Terminal local write latency (state + outbox, one transaction)",
            figure=Measure(f"p99 (p50 {mine['p50_ms']:.3f} ms)", mine["p99_ms"], "ms"),
            baseline=Measure(
                f"raw transaction, same rows, p99 (p50 {base['p50_ms']:.3f} ms)",
                base["p99_ms"],
                "ms",
            ),
            ratio=base["p99_ms"] / mine["p99_ms"],
            target=Target("p99 <= 2 ms", "max", 2.0, metric="p99_ms", unit="ms"),
            params={"writes": n, "warmup": warmup, "synchronous": "NORMAL", "journal": "WAL"},
            details=details,
            distributions={"local write": quantiles(ours), "raw transaction": quantiles(baseline)},
        )
    ]
