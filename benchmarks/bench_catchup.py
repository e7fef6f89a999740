"""(11) A terminal catching up N changes (1,000,000 at full size) streams its pages: its
memory stays bounded. A server file is seeded with N changes (orders of five ops each, so
N / 5 records); a fresh terminal in a child process catches up compacted (pages of 1,000
staged on disk, applied at once with set-based writes) and reports its peak RSS. The
baseline is the same child catching up N / 10 changes of the same kind in the same run:
bounded memory means the ratio stays near 1.

The bound, by construction: the terminal holds one page of decoded records at a time
(``page_size`` x the record size), its outbox and the keys of its pending ops, and SQLite's
page cache; the staged records live in the terminal's file. The in-process server holds
one page of bytes. None of it grows with N.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.result import Measure, Result, Target
from benchmarks.workload import TENANT, server_ops
from fynlo_sync.ops import Batch
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.sqlite import SqliteServerStore

__all__ = ["run_catchup"]

NODES = 4
BATCH = 1000


def _seed(ctx: Context, path: Path, changes: int) -> int:
    store = SqliteServerStore(path, synchronous="OFF")
    replica = ServerReplica(store, ctx.registry, inline_effects=False)
    per_node = changes // NODES
    done = 0
    for n in range(NODES):
        node = f"seed-{n}"
        ops = server_ops(node, per_node)
        for i in range(0, per_node, BATCH):
            replica.push(TENANT, Batch.of(node, ops[i : i + BATCH]))
            done += len(ops[i : i + BATCH])
            ctx.progress.step(done, changes, f"seeding {changes:,} changes")
        del ops
    count = store.cursor(TENANT)
    store.close()
    return count


def _catch_up(ctx: Context, server: Path, name: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.catchup_peer",
            str(server),
            str(ctx.work / f"catchup-{name}.db"),
            "1000",
        ],
        cwd=ctx.root,
        capture_output=True,
        text=True,
        timeout=max(120.0, ctx.budget_s),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"catch-up child failed: {proc.stderr[-800:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["cursor"] != report["server_cursor"]:
        raise RuntimeError(f"caught up to {report['cursor']} of {report['server_cursor']}")
    return report


def run_catchup(ctx: Context) -> list[Result]:
    big_n = ctx.scale.catchup_changes
    small_n = big_n // 10
    small_db, big_db = ctx.work / "catchup-small-server.db", ctx.work / "catchup-big-server.db"
    small_count = _seed(ctx, small_db, small_n)
    big_count = _seed(ctx, big_db, big_n)
    ctx.progress.note(f"catching up {small_count:,} changes (baseline)")
    small = _catch_up(ctx, small_db, "small")
    ctx.progress.note(f"catching up {big_count:,} changes")
    big = _catch_up(ctx, big_db, "big")
    mib = 1024.0
    return [
        Result(
            key="catchup",
            number=11,
            title=f"A terminal catching up {big_count:,} changes: peak memory",
            figure=Measure(
                f"peak RSS, {big_count:,} changes ({big['records']:,} records, "
                f"{big['seconds']:.0f} s)",
                big["max_rss_kib"] / mib,
                "MiB",
            ),
            baseline=Measure(
                f"peak RSS, {small_count:,} changes ({small['records']:,} records)",
                small["max_rss_kib"] / mib,
                "MiB",
            ),
            ratio=small["max_rss_kib"] / big["max_rss_kib"],
            target=Target("bounded: >= 0.8x the small catch-up's memory", "ratio_min", 0.8),
            params={
                "changes": big_count,
                "baseline_changes": small_count,
                "page": 1000,
                "mode": "compacted, staged on disk, loopback (server in the same process)",
            },
            details={
                "big_seconds": big["seconds"],
                "big_changes_per_s": big_count / big["seconds"],
                "big_records": big["records"],
                "small_seconds": small["seconds"],
                "big_max_rss_mib": big["max_rss_kib"] / mib,
                "small_max_rss_mib": small["max_rss_kib"] / mib,
            },
        )
    ]
