"""(4) End to end: terminal A makes N ops offline, reconnects (pushes them over real HTTP
to a real server process), terminal B, online, pulls them as they are committed; beside
PouchDB replicating the same N writes from one memory database to another (Node, same
run).

Both sides move N changes one way: A's N ops become N feed changes that B pulls; PouchDB's
N / 5 documents, written five times each (the shape of our orders), are replicated.
PouchDB runs with its default batch size (100) and with 1,000; the faster is the baseline.
Ours uses batches and pages of 1,000 (the server's maxima).

The clock starts when A starts pushing (PouchDB: when replication starts) and stops when
B has applied the last change (PouchDB: when replication completes). B is online before
the clock starts, as a till is: another device, so its own process
(``benchmarks.e2e_peer``); it holds a poke socket (``PokeListener``) and pulls whenever a
poke's cursor is past its own, while A is still pushing (PouchDB's replication likewise
reads the next batch while it writes the last). Both clocks are ``time.monotonic``
(system-wide), so B's finishing time is read on A's clock.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.harness import enroll, need_server, serve, server_settings
from benchmarks.pouch import PouchUnavailable, replicate
from benchmarks.result import Measure, Result, Target, speed_ratio
from benchmarks.workload import drive_terminal, new_terminal
from fynlo_sync.store.sqlite import SqliteTerminalStore

__all__ = ["run_e2e"]


class _PeerB:
    """Terminal B in its own process (``benchmarks.e2e_peer``), enrolled, its poke socket
    open: once ``ready``, it pulls as pokes come until its cursor reaches ``until``."""

    def __init__(self, ctx: Context, url: str, code: str, db: Path, until: int) -> None:
        self.timeout_s = ctx.budget_s
        args = [url, code, str(db), str(until), str(self.timeout_s)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.e2e_peer", *args],
            cwd=ctx.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"terminal B did not get ready: {line!r} {err[-1500:]}")

    def finish(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=self.timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"terminal B failed ({self.proc.returncode}): {err[-1500:]}")
        got: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return got


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
        drive_terminal(a, n, on_each=lambda i: ctx.progress.step(i + 1, n, "offline writes on A"))
        ctx.progress.note("A reconnects: push; B, online in its own process, pulls on pokes")
        peer = _PeerB(ctx, url, codes["till-b"], ctx.work / "e2e-b.db", n)
        start = time.monotonic()
        pushed = a.push()
        pushed_at = time.monotonic()
        report = peer.finish()
        ours_s = float(report["done_at"]) - start
        push_s = pushed_at - start
        pulled = int(report["pulled"])
        back_start = time.perf_counter()
        a.pull()
        back_s = time.perf_counter() - back_start
        b = SqliteTerminalStore(ctx.work / "e2e-b.db", "till-b")
        orders = sum(not r.deleted for r in b.records("orders"))
        caught_up = b.meta().cursor == a.store.meta().cursor == n
        if pushed != n or not caught_up or orders != n // 5 or a.pending():
            raise RuntimeError(f"pushed {pushed}, pulled {pulled}, B has {orders} orders")
        a.store.close()
        b.close()
    details: dict[str, Any] = {
        "ours_s": ours_s,
        "push_s": push_s,
        # B's pulls run during A's push; this is what is left after A's push returned.
        "pull_s": ours_s - push_s,
        "b_pulls": report["pulls"],
        "a_pull_back_s": back_s,
        "records_on_b": orders,
        "records_sent_to_b": pulled,
        "goal": ">= 10x PouchDB (issue 13's Show: >= 3x)",
        "method": "B online in its own process (poke socket) pulls while A pushes; clock "
        "from A's first push to B's last applied change",
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
            # Issue 13's Show asks for 3x; the goal stays 10x (in the details).
            target=Target(">= 3x PouchDB", "ratio_min", 3.0),
            reason=why,
            params={"ops": n, "batch": 1000, "page": 1000, "server": "uvicorn, embedded SQLite"},
            details=details,
        )
    ]
