"""(4) End to end: terminal A makes N ops offline, reconnects (pushes them over real HTTP
to a real server process), terminal B pulls them; beside PouchDB replicating N order-like
documents from one memory database to another (Node, same run).

Both sides move N changes one way: A's N ops become N feed changes that B pulls; PouchDB's
N documents (one revision each, the shape of a finished order) are replicated. PouchDB runs
with its default batch size (100) and with 1,000; the faster is the baseline. Ours uses
batches and pages of 1,000 (the server's maxima).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.context import Context
from benchmarks.harness import enroll, need_server, serve, server_settings
from benchmarks.pouch import PouchUnavailable, replicate
from benchmarks.result import Measure, Result, Target, speed_ratio
from benchmarks.workload import drive_terminal, new_terminal

__all__ = ["run_e2e"]


def _pouch(ctx: Context, docs: int) -> tuple[dict[str, Any] | None, str]:
    if ctx.skip_pouchdb:
        return None, "PouchDB baseline left out (--skip-pouchdb)"
    runs: list[dict[str, Any]] = []
    try:
        for batch in (100, 1000):
            ctx.progress.note(f"PouchDB: replicating {docs:,} docs, batch_size {batch}")
            # The same shape as ours: N writes over N / 5 orders, five revisions each.
            runs.append(replicate(ctx, docs, batch, revisions=5))
    except PouchUnavailable as exc:
        return None, str(exc)
    best = min(runs, key=lambda r: float(r["seconds"]))
    return {"best": best, "runs": runs}, ""


def run_e2e(ctx: Context) -> list[Result]:
    need_server()
    from fynlo_sync.transport.http import HttpTransport

    n = ctx.scale.e2e_ops
    pouch, why = _pouch(ctx, n)
    settings = server_settings(f"sqlite:///{ctx.work / 'e2e-server.db'}")
    tenant_name = "e2e"
    _, codes = enroll(settings, tenant_name, ["till-a", "till-b"])
    with serve(ctx, settings, "e2e") as (url,):
        a = new_terminal(
            ctx.work / "e2e-a.db",
            "till-a",
            ctx.registry,
            HttpTransport.enroll(url, codes["till-a"]),
            seed=21,
        )
        b = new_terminal(
            ctx.work / "e2e-b.db",
            "till-b",
            ctx.registry,
            HttpTransport.enroll(url, codes["till-b"]),
            seed=22,
        )
        drive_terminal(a, n, on_each=lambda i: ctx.progress.step(i + 1, n, "offline writes on A"))
        ctx.progress.note("A reconnects: push; B pulls")
        start = time.perf_counter()
        pushed = a.push()
        pushed_at = time.perf_counter()
        pulled = b.pull()
        ours_s = time.perf_counter() - start
        push_s = pushed_at - start
        back_start = time.perf_counter()
        a.pull()
        back_s = time.perf_counter() - back_start
        orders = len(b.records("orders"))
        caught_up = b.store.meta().cursor == a.store.meta().cursor == n
        if pushed != n or not caught_up or orders != n // 5 or a.pending():
            raise RuntimeError(f"pushed {pushed}, pulled {pulled}, B has {orders} orders")
        a.store.close()
        b.store.close()
    details: dict[str, Any] = {
        "ours_s": ours_s,
        "push_s": push_s,
        "pull_s": ours_s - push_s,
        "a_pull_back_s": back_s,
        "records_on_b": orders,
        "records_sent_to_b": pulled,
    }
    baseline = None
    ratio = None
    if pouch is not None:
        best = pouch["best"]
        details.update(
            {
                "pouchdb_s": best["seconds"],
                "pouchdb_batch_size": best["batch_size"],
                "pouchdb_runs_s": {str(r["batch_size"]): r["seconds"] for r in pouch["runs"]},
                "pouchdb_version": best["pouchdb"],
                "node_version": best["node"],
            }
        )
        baseline = Measure(
            f"PouchDB {best['pouchdb']} memory->memory, {n // 5:,} docs x 5 revisions, "
            f"batch_size {best['batch_size']}",
            n / best["seconds"],
            "changes/s",
        )
        ratio = speed_ratio(ours_s, best["seconds"])
    return [
        Result(
            key="e2e",
            number=4,
            title="End to end over HTTP: A pushes N offline ops, B pulls them",
            figure=Measure("A push + B pull, real HTTP server (SQLite)", n / ours_s, "changes/s"),
            baseline=baseline,
            ratio=ratio,
            target=Target(">= 10x PouchDB", "ratio_min", 10.0),
            reason=why,
            params={"ops": n, "batch": 1000, "page": 1000, "server": "uvicorn, embedded SQLite"},
            details=details,
        )
    ]
