"""(5) Reconnect storm: T terminals, each with K offline ops, reconnect at once to a real
server; the time until every replica has converged (everything pushed, the whole feed
pulled, the same records everywhere). Terminals run one thread each in a few client
processes. The baseline is one terminal with the same K ops reconnecting alone to an idle
server (push + pull until converged): the ratio says how much the storm slows a terminal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.context import Context
from benchmarks.harness import enroll, need_server, serve, server_settings
from benchmarks.result import Measure, Result, Target, percentile, speed_ratio
from benchmarks.storm_peer import converge
from benchmarks.workload import drive_terminal, new_terminal

__all__ = ["page_cache_counts", "run_storm"]


def _alone(ctx: Context, ops: int) -> float:
    from fynlo_sync.transport.http import HttpTransport

    settings = server_settings(f"sqlite:///{ctx.work / 'storm-alone.db'}")
    _, codes = enroll(settings, "alone", ["solo"])
    with serve(ctx, settings, "storm-alone") as (url,):
        link = HttpTransport.enroll(url, codes["solo"])
        terminal = new_terminal(ctx.work / "storm-solo.db", "solo", ctx.registry, link, seed=5)
        drive_terminal(terminal, ops)
        start = time.monotonic()
        if not converge(terminal, ops, start + ctx.budget_s):
            raise TimeoutError("one terminal alone did not converge within the budget")
        seconds = time.monotonic() - start
        terminal.store.close()
        return seconds


def run_storm(ctx: Context) -> list[Result]:
    need_server()
    scale = ctx.scale
    count, ops = scale.storm_terminals, scale.storm_ops
    processes = max(1, min(scale.ws_processes, count))
    nodes = [f"till-{i:03d}" for i in range(count)]
    settings = server_settings(f"sqlite:///{ctx.work / 'storm-server.db'}")
    _, codes = enroll(settings, "storm", nodes)
    target = count * ops
    with serve(ctx, settings, "storm") as (url,):
        procs = []
        lines: list[list[str]] = []
        for p in range(processes):
            mine = nodes[p::processes]
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.storm_peer"],
                cwd=ctx.root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            config = {
                "url": url,
                "terminals": [[n, codes[n]] for n in mine],
                "ops": ops,
                "target": target,
                "work": str(ctx.work),
                "budget_s": ctx.budget_s,
            }
            proc.stdin.write(json.dumps(config) + "\n")
            proc.stdin.flush()
            procs.append(proc)
            lines.append([])
        try:
            ctx.progress.note(f"{count} terminals making {ops:,} offline writes each ...")
            _expect(procs, lines, "READY", timeout=max(ctx.budget_s, 900))
            ctx.progress.note("all terminals reconnect now")
            start = time.monotonic()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("GO\n")
                proc.stdin.flush()
            results = _expect(procs, lines, "RESULT ", timeout=ctx.budget_s + 60)
            storm_s = time.monotonic() - start
            cache = page_cache_counts(url)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
    finished: dict[str, float] = {}
    digests: dict[str, str] = {}
    cursors: dict[str, int] = {}
    retries = 0
    errors: list[str] = []
    for text in results:
        report: dict[str, Any] = json.loads(text[len("RESULT ") :])
        finished.update(report["finished"])
        digests.update(report["digests"])
        cursors.update(report["cursors"])
        retries += sum(report["retries"].values())
        errors += report["errors"]
    if errors:
        raise RuntimeError("; ".join(errors[:5]))
    alone_s = _alone(ctx, ops)
    times = sorted(finished.values())
    pulled = sum(cursors.values()) / (target * count)
    if len(times) == count:
        if len(set(digests.values())) != 1:
            raise RuntimeError(f"replicas differ after the storm: {len(set(digests.values()))}")
        converged_s = times[-1]
        label = "every replica converged"
    else:
        # Stopped by the budget: a lower bound, and a straight-line estimate.
        converged_s = storm_s
        label = (
            f"NOT converged after {storm_s:.0f} s ({len(times)}/{count} terminals, "
            f"{pulled:.0%} of the changes pulled; ~{storm_s / max(pulled, 1e-9):.0f} s at "
            "that rate)"
        )
    return [
        Result(
            key="storm",
            number=5,
            title=f"Reconnect storm: {count} terminals x {ops:,} offline ops",
            figure=Measure(label, converged_s, "s"),
            baseline=Measure(f"one terminal alone, {ops:,} ops", alone_s, "s"),
            ratio=speed_ratio(converged_s, alone_s),
            target=Target("converged <= 10 s", "max", 10.0, metric="converged_s", unit="s"),
            params={
                "terminals": count,
                "ops_each": ops,
                "changes_each_pulls": target,
                "client_processes": processes,
                "server": "1 uvicorn process, embedded SQLite, page cache 64 MiB",
                "batch": 1000,
                "page": 1000,
                "pull": "compacted (protocol 1.1)",
            },
            details={
                "converged_s": converged_s,
                "terminals_converged": len(times),
                "changes_pulled_fraction": pulled,
                "first_converged_s": times[0] if times else None,
                "median_converged_s": percentile(times, 50) if times else None,
                "wall_s": storm_s,
                "alone_s": alone_s,
                "total_ops": target,
                "transport_retries": retries,
                "changes_pulled_in_all": target * count,
                "page_cache_hits": cache["hit"],
                "page_cache_misses": cache["miss"],
                "page_cache_hit_rate": cache["hit"] / max(1.0, cache["hit"] + cache["miss"]),
            },
        )
    ]


def page_cache_counts(url: str) -> dict[str, float]:
    """The server's page cache counters, from its Prometheus ``/metrics``."""
    import re
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {"hit": 0.0, "miss": 0.0}
    for result, value in re.findall(
        r'^fynlo_page_cache_requests_total\{result="(hit|miss)"\} (\S+)$', text, re.M
    ):
        found[result] = float(value)
    return found


def _expect(
    procs: list[subprocess.Popen[str]], lines: list[list[str]], prefix: str, timeout: float
) -> list[str]:
    """Read each process's stdout until a line starting with ``prefix`` (bounded)."""
    found: list[str] = []
    for i, proc in enumerate(procs):
        box: list[str] = []

        def read(p: subprocess.Popen[str] = proc, into: list[str] = box) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith(prefix):
                    into.append(line.strip())
                    return

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(timeout)
        if not box:
            raise TimeoutError(f"storm process {i} printed no {prefix.strip()!r} in {timeout} s")
        lines[i].append(box[0])
        found.append(box[0])
    return found
