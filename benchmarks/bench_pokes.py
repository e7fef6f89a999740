"""(6) WebSocket pokes: N sockets connected to the real server (client sockets spread over
several processes so the client side is not the bottleneck); a device pushes one op; the
time from sending that push to each socket having its poke, p50/p99/max, and the time to
connect them all. Then the same with Redis between two server processes (sockets split
between them, the push going to the first), and with 10,000 sockets (``pokes-big``).

The baseline is a bare ``websockets`` server relaying a message from a control connection
to as many sockets, held by their own client processes of the same kind: the machine's own
cost of a fan-out to N sockets. Both sets of sockets are connected at once and the rounds
interleave (bare, ours; then ours, bare; ...), so both meet the same load on a shared
machine. The ratio is the bare p99 over ours, of the latency from the trigger (the control
message; our push request) to each socket's poke, over every socket and round.

The clock starts before the push request is sent (commit time is not visible from
outside), so our latency includes the push itself (HTTP, authentication, the commit:
``push_ms`` is its round trip), which the bare broadcast does not do. ``fanout_p99_ms``
leaves that out on both sides: from the round's first poke received to each socket's;
``first_poke_p50_ms`` is the rest, from the trigger to the round's first poke.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks.bench_local import summary
from benchmarks.context import Context
from benchmarks.harness import (
    enroll,
    need_postgres,
    need_redis,
    need_server,
    postgres_database,
    serve,
    server_settings,
)
from benchmarks.result import Measure, Result, Target, percentile, quantiles
from benchmarks.workload import server_ops
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import encode_batch

__all__ = ["run_pokes", "run_pokes_redis"]


@dataclass
class Fleet:
    """The client processes and a queue of their stdout lines."""

    procs: list[subprocess.Popen[str]]
    counts: list[int]
    lines: queue.Queue[tuple[int, str]] = field(default_factory=queue.Queue)
    threads: list[threading.Thread] = field(default_factory=list)

    def wait_for(self, prefix: str, want: set[int] | None, timeout: float) -> dict[int, str]:
        """Until every process in ``want`` (default: all) printed a line starting with
        ``prefix``; returns those lines by process."""
        pending = set(range(len(self.procs))) if want is None else set(want)
        got: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix!r} from client processes {sorted(pending)}")
            try:
                index, line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                for i in pending:
                    if self.procs[i].poll() is not None:
                        code = self.procs[i].returncode
                        raise RuntimeError(
                            f"client process {i} exited early (exit code {code}; its error "
                            "is on stderr)"
                        ) from None
                continue
            if line.startswith(prefix) and index in pending:
                got[index] = line
                pending.discard(index)
        return got


def open_files_for(sockets: int) -> None:
    """Raise this process's soft limit of open files (its children inherit it: the client
    processes, the bare broadcast server, the uvicorn servers) to hold ``sockets`` plus
    room for everything else, up to the hard limit; refuse at once, saying what to raise,
    when the hard limit is too low (else a client process dies mid-connect)."""
    import resource

    need = sockets + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise RuntimeError(
                f"{sockets:,} sockets need {need:,} open files in one process; the hard "
                f"limit is {hard:,} (raise it: ulimit -Hn, or LimitNOFILE for a service)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@contextmanager
def fleet(ctx: Context, urls: list[str], sockets: int, processes: int) -> Iterator[Fleet]:
    counts = [
        sockets // processes + (1 if i < sockets % processes else 0) for i in range(processes)
    ]
    procs: list[subprocess.Popen[str]] = []
    out = Fleet(procs, counts)
    try:
        for i, count in enumerate(counts):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.ws_peer",
                    "clients",
                    urls[i % len(urls)],
                    str(count),
                ],
                cwd=ctx.root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)

            def read(index: int = i, p: subprocess.Popen[str] = proc) -> None:
                assert p.stdout is not None
                for line in p.stdout:
                    out.lines.put((index, line.strip()))

            thread = threading.Thread(target=read, daemon=True)
            thread.start()
            out.threads.append(thread)
        yield out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


Trigger = Callable[[int], tuple[int, int, float]]


@dataclass
class _Arm:
    """One side of a comparison: its sockets' fleet and what makes a poke happen."""

    label: str
    trigger: Trigger
    fleet: Fleet
    sends: dict[int, int] = field(default_factory=dict)
    push_ms: list[float] = field(default_factory=list)
    connect_s: float = 0.0
    connect_wall_s: float = 0.0


def _measure(
    ctx: Context,
    arms: list[tuple[str, list[str], Trigger]],
    sockets: int | None = None,
) -> list[dict[str, Any]]:
    """Connect each arm's sockets (its own client processes), then run the rounds with the
    arms interleaved (round r: each arm pokes once, the first arm alternating), so every arm
    meets the same load on the shared machine; return each arm's latencies (ms) and connect
    times."""
    scale = ctx.scale
    sockets = scale.ws_clients if sockets is None else sockets
    processes = min(scale.ws_processes, sockets)
    open_files_for(sockets)
    with ExitStack() as stack:
        sides: list[_Arm] = []
        for label, urls, trigger in arms:
            start = time.perf_counter()
            f = stack.enter_context(fleet(ctx, urls, sockets, processes))
            ready = f.wait_for("READY", None, timeout=max(180, sockets / 10))
            arm = _Arm(label, trigger, f)
            arm.connect_wall_s = time.perf_counter() - start
            arm.connect_s = max(float(line.split()[1]) for line in ready.values())
            sides.append(arm)
        for r in range(scale.ws_rounds):
            for arm in sides if r % 2 == 0 else sides[::-1]:
                sent_ns, cursor, took_ms = arm.trigger(r)
                arm.sends[cursor] = sent_ns
                arm.push_ms.append(took_ms)
                arm.fleet.wait_for(f"GOT {cursor}", None, timeout=30)
                time.sleep(0.05)
            ctx.progress.step(r + 1, scale.ws_rounds, "poke rounds, interleaved")
        reports: list[dict[int, str]] = []
        for arm in sides:
            for p in arm.fleet.procs:
                assert p.stdin is not None
                p.stdin.write("DONE\n")
                p.stdin.flush()
            reports.append(arm.fleet.wait_for("{", None, timeout=60))
    pairs = zip(sides, reports, strict=True)
    return [_figures(arm, report, sockets, scale.ws_rounds) for arm, report in pairs]


def _figures(arm: _Arm, reports: dict[int, str], sockets: int, rounds: int) -> dict[str, Any]:
    import json

    latencies: list[float] = []
    per_round: dict[int, float] = {}
    stamps_of: dict[int, list[int]] = {}
    for line in reports.values():
        got = json.loads(line)["got"]
        for cursor_text, stamps in got.items():
            cursor = int(cursor_text)
            if cursor not in arm.sends:
                continue
            stamps_of.setdefault(cursor, []).extend(stamps)
            for ns in stamps:
                ms = (ns - arm.sends[cursor]) / 1e6
                latencies.append(ms)
                per_round[cursor] = max(per_round.get(cursor, 0.0), ms)
    # The fan-out alone: from the round's first poke received (the fan-out had begun) to
    # each socket's, leaving out what came before it (for our server, the push itself).
    spread = [(ns - first) / 1e6 for st in stamps_of.values() for first in (min(st),) for ns in st]
    # What came before the fan-out: from the trigger to the round's first poke received.
    lead = sorted((min(st) - arm.sends[cursor]) / 1e6 for cursor, st in stamps_of.items())
    expected = sockets * rounds
    if len(latencies) != expected:
        raise RuntimeError(f"{arm.label}: {len(latencies)} pokes arrived, {expected} expected")
    return {
        "latencies": latencies,
        "connect_s": arm.connect_s,
        "connect_wall_s": arm.connect_wall_s,
        "push_ms": arm.push_ms,
        "all_delivered_ms": sorted(per_round.values()),
        "spread": spread,
        "lead": lead,
    }


@contextmanager
def _bare(ctx: Context, sockets: int) -> Iterator[tuple[list[str], Trigger]]:
    """The baseline: a bare ``websockets`` broadcast server (its own process) and what
    pokes through it (a message on its control connection)."""
    from websockets.sync.client import connect

    from server.testing import free_port

    open_files_for(sockets)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ws_peer", "broadcast", str(port)],
        cwd=ctx.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "LISTENING":
            raise RuntimeError("the broadcast server did not start")
        url = f"ws://127.0.0.1:{port}/"
        with connect(url + "control", open_timeout=10) as control:

            def trigger(r: int) -> tuple[int, int, float]:
                sent = time.monotonic_ns()
                control.send(str(r + 1))
                control.recv(timeout=30)
                return sent, r + 1, (time.monotonic_ns() - sent) / 1e6

            yield [url], trigger
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _pusher(url: str, code: str, node: str, rounds: int) -> Callable[[int], tuple[int, int, float]]:
    import httpx

    client = httpx.Client(base_url=url, timeout=30)
    token = client.post("/v1/auth/device", json={"enrollment_code": code}).json()["access_token"]
    ops = server_ops(node, rounds)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def trigger(r: int) -> tuple[int, int, float]:
        body = encode_batch(Batch.of(node, [ops[r]]))
        sent = time.monotonic_ns()
        response = client.post("/v1/sync/push", content=body, headers=headers)
        took = (time.monotonic_ns() - sent) / 1e6
        if response.status_code != 200:
            raise RuntimeError(f"push answered {response.status_code}: {response.text[:300]}")
        return sent, int(response.json()["cursor"]), took

    return trigger


def _per_device(ctx: Context) -> int:
    """The servers' socket quota for these runs: every listening socket is the one
    ``listener`` device's (a real terminal holds one; the quota of
    ``FYNLO_WS_PER_DEVICE``, 4 by default, would refuse the rest)."""
    return max(ctx.scale.ws_clients, ctx.scale.ws_big_clients)


def _ws_urls(urls: list[str], token: str) -> list[str]:
    return ["ws" + u[len("http") :] + f"/v1/sync/ws?token={token}" for u in urls]


def _token(url: str, code: str) -> str:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/v1/auth/device", json={"enrollment_code": code})
        r.raise_for_status()
        token: str = r.json()["access_token"]
        return token


#: Section "Show" of issue 13: p99 within 1.2x of the bare broadcast's.
WITHIN_BARE = Target("p99 within 1.2x of the bare broadcast", "ratio_min", 1 / 1.2)


def _result(
    key: str,
    title: str,
    ours: dict[str, Any],
    base: dict[str, Any],
    params: dict[str, Any],
    target: Target | None = WITHIN_BARE,
) -> Result:
    mine = summary(ours["latencies"])
    theirs = summary(base["latencies"])
    spread_p99 = percentile(sorted(ours["spread"]), 99)
    bare_spread_p99 = percentile(sorted(base["spread"]), 99)
    delivered = ours["all_delivered_ms"]
    return Result(
        key=key,
        number=6,
        title=title,
        figure=Measure(f"push -> poke p99 (p50 {mine['p50_ms']:.1f} ms)", mine["p99_ms"], "ms"),
        baseline=Measure(
            f"bare websockets broadcast p99 (p50 {theirs['p50_ms']:.1f} ms)",
            theirs["p99_ms"],
            "ms",
        ),
        ratio=theirs["p99_ms"] / mine["p99_ms"],
        target=target,
        params=params,
        details={
            **mine,
            "every_socket_p50_ms": percentile(delivered, 50),
            "every_socket_max_ms": delivered[-1],
            "push_p50_ms": percentile(sorted(ours["push_ms"]), 50),
            "connect_s": ours["connect_s"],
            "connect_wall_s": ours["connect_wall_s"],
            **{f"bare_{k}": v for k, v in theirs.items()},
            "bare_connect_s": base["connect_s"],
            "fanout_p99_ms": spread_p99,
            "bare_fanout_p99_ms": bare_spread_p99,
            "fanout_ratio": bare_spread_p99 / spread_p99 if spread_p99 else 0.0,
            "first_poke_p50_ms": percentile(ours["lead"], 50),
            "bare_first_poke_p50_ms": percentile(base["lead"], 50),
        },
        distributions={
            f"poke ({key})": quantiles(ours["latencies"]),
            "bare broadcast": quantiles(base["latencies"]),
        },
    )


def run_pokes(ctx: Context) -> list[Result]:
    need_server()
    settings = server_settings(
        f"sqlite:///{ctx.work / 'pokes-server.db'}", max_sockets_per_device=_per_device(ctx)
    )
    _, codes = enroll(settings, "pokes", ["poker", "listener"])
    with _bare(ctx, ctx.scale.ws_clients) as bare, serve(ctx, settings, "pokes") as (url,):
        trigger = _pusher(url, codes["poker"], "poker", ctx.scale.ws_rounds)
        ours_urls = _ws_urls([url], _token(url, codes["listener"]))
        base, ours = _measure(ctx, [("bare broadcast", *bare), ("server", ours_urls, trigger)])
    params = {
        "sockets": ctx.scale.ws_clients,
        "client_processes": min(ctx.scale.ws_processes, ctx.scale.ws_clients),
        "rounds": ctx.scale.ws_rounds,
        "server": "1 uvicorn process, embedded SQLite, in-process channels",
    }
    return [
        _result("pokes", f"WebSocket pokes to {ctx.scale.ws_clients:,} sockets", ours, base, params)
    ]


def run_pokes_redis(ctx: Context) -> list[Result]:
    need_server()
    redis_url = need_redis(ctx)
    with ExitStack() as stack:
        try:
            admin = need_postgres(ctx)
            database = stack.enter_context(postgres_database(admin, "pokes"))
            kind = "PostgreSQL"
        except Exception:
            database = f"sqlite:///{ctx.work / 'pokes-redis.db'}"
            kind = "embedded SQLite (one file)"
        settings = server_settings(database, redis_url, max_sockets_per_device=_per_device(ctx))
        _, codes = enroll(settings, "pokes", ["poker", "listener"])
        bare = stack.enter_context(_bare(ctx, ctx.scale.ws_clients))
        urls = stack.enter_context(serve(ctx, settings, "pokes-redis", count=2))
        trigger = _pusher(urls[0], codes["poker"], "poker", ctx.scale.ws_rounds)
        token = _token(urls[0], codes["listener"])
        arms = [("bare broadcast", *bare), ("2 servers + Redis", _ws_urls(urls, token), trigger)]
        base, ours = _measure(ctx, arms)
    params = {
        "sockets": ctx.scale.ws_clients,
        "client_processes": min(ctx.scale.ws_processes, ctx.scale.ws_clients),
        "rounds": ctx.scale.ws_rounds,
        "server": f"2 uvicorn processes, {kind}, Redis pub/sub; push to the first",
    }
    return [
        _result(
            "pokes-redis",
            f"WebSocket pokes to {ctx.scale.ws_clients:,} sockets, 2 servers + Redis",
            ours,
            base,
            params,
        )
    ]


def run_pokes_big(ctx: Context) -> list[Result]:
    """Many sockets (10,000 at full size) split over two server processes with Redis, beside
    a bare broadcast to the same number of sockets."""
    need_server()
    redis_url = need_redis(ctx)
    sockets = ctx.scale.ws_big_clients
    open_files_for(sockets)  # the most one process holds: the bare server, every socket
    with ExitStack() as stack:
        admin = need_postgres(ctx)
        database = stack.enter_context(postgres_database(admin, "pokesbig"))
        settings = server_settings(database, redis_url, max_sockets_per_device=sockets)
        _, codes = enroll(settings, "pokes", ["poker", "listener"])
        bare = stack.enter_context(_bare(ctx, sockets))
        urls = stack.enter_context(serve(ctx, settings, "pokes-big", count=2))
        trigger = _pusher(urls[0], codes["poker"], "poker", ctx.scale.ws_rounds)
        token = _token(urls[0], codes["listener"])
        arms = [("bare broadcast", *bare), ("2 servers + Redis", _ws_urls(urls, token), trigger)]
        base, ours = _measure(ctx, arms, sockets)
    params = {
        "sockets": sockets,
        "client_processes": min(ctx.scale.ws_processes, sockets),
        "rounds": ctx.scale.ws_rounds,
        "server": "2 uvicorn processes, PostgreSQL, Redis pub/sub; push to the first",
    }
    return [
        _result(
            "pokes-big",
            f"WebSocket pokes to {sockets:,} sockets, 2 servers + Redis",
            ours,
            base,
            params,
            target=None,
        )
    ]


with contextlib.suppress(ImportError):  # for type checkers: the module the fleet runs
    from benchmarks import ws_peer as _ws_peer  # noqa: F401
