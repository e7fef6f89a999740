"""(13) Push latency of a well-behaved tenant while another tenant's device floods.

One embedded SQLite server process (``uvicorn``) with the default rate limits (1,200
requests a minute per device, 12,000 per tenant, 16 pushes in flight per tenant). Tenant
A's terminal pushes small batches one after another and times each; tenant B's device
floods from another process (32 requests in flight at once, as fast as the server answers:
after its first 1,200 in a minute every answer is a 429). Flood cycles and idle cycles
alternate in the same run, so both see the same machine and the same database size; the
baseline is A's pushes on the idle server. Ratio = idle p99 / p99 under the flood (and the
same for p50); the target is within 2x (>= 0.5).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from benchmarks.bench_http import _tokens
from benchmarks.bench_local import summary
from benchmarks.context import Context
from benchmarks.harness import enroll, need_server, serve, server_settings
from benchmarks.result import Measure, Result, Target, quantiles
from benchmarks.workload import server_ops
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import encode_batch

__all__ = ["run_flood"]

IN_FLIGHT = 32
BATCH = 5
RATE_DEVICE = 1200
RATE_TENANT = 12000
PUSHES_IN_FLIGHT = 16  # the default cap per tenant


def _server_pid() -> int | None:
    """The uvicorn child of this process (Linux ``/proc``), or ``None``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"uvicorn" in command:
            return int(entry.name)
    return None


def _cpu_of(pid: int | None) -> Callable[[], float]:
    """The process's CPU seconds so far (user + system), or always 0 without ``/proc``."""
    if pid is None:
        return lambda: 0.0
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return cpu


def _flood_main(url: str, token: str, on: Event, done: Event, counts: Any) -> None:
    """The flooding device (its own process): ``IN_FLIGHT`` pushes at once while ``on`` is
    set, nothing while it is clear, until ``done``. ``counts``: [200s, 429s, others]."""
    import httpx

    body = encode_batch(Batch.of("flood", server_ops("flood", BATCH)))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            if not on.is_set():
                await asyncio.sleep(0.01)
                continue
            try:
                r = await client.post("/v1/sync/push", content=body, headers=headers)
                slot = 0 if r.status_code == 200 else 1 if r.status_code == 429 else 2
            except httpx.HTTPError:
                slot = 2
            with counts.get_lock():
                counts[slot] += 1

    async def main() -> None:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(worker(client) for _ in range(IN_FLIGHT)))

    asyncio.run(main())


def _refusal_cost(url: str, token: str, cpu: Callable[[], float], count: int) -> float:
    """The server's CPU milliseconds per refused push, alone: ``count`` pushes of the
    refused flooding device one after another on one connection (0 if any was not a 429:
    the window had ended)."""
    import httpx

    body = encode_batch(Batch.of("flood", server_ops("flood", BATCH)))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        client.post("/v1/sync/push", content=body)
        start = cpu()
        codes = {client.post("/v1/sync/push", content=body).status_code for _ in range(count)}
        spent = cpu() - start
    return 1000 * spent / count if codes == {429} else 0.0


async def _victim(
    ctx: Context,
    url: str,
    token: str,
    samples: int,
    on: Event,
    counts: Any,
    cpu: Callable[[], float],
    spent: dict[str, float],
) -> tuple[list[float], list[float]]:
    """A's pushes, timed: cycles of ``per_cycle`` pushes, idle and flooded in turn.
    ``spent`` gets the server's CPU seconds in the idle and the flooded timed stretches
    (``idle_cpu_s``, ``flood_cpu_s``) and the flood's answers in the flooded ones."""
    import httpx

    ops = server_ops("calm", 2 * samples * BATCH)
    bodies = [
        encode_batch(Batch.of("calm", ops[i * BATCH : (i + 1) * BATCH])) for i in range(2 * samples)
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    idle: list[float] = []
    flooded: list[float] = []
    per_cycle = max(5, samples // 8)
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:

        async def timed(into: list[float], count: int) -> None:
            nonlocal sent
            for _ in range(count):
                t0 = time.perf_counter()
                r = await client.post("/v1/sync/push", content=bodies[sent])
                into.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"the calm tenant's push answered {r.status_code}")
                sent += 1

        spent.update(idle_cpu_s=0.0, flood_cpu_s=0.0, flood_answers=0.0)
        while len(idle) < samples or len(flooded) < samples:
            c0 = cpu()
            await timed(idle, min(per_cycle, samples - len(idle)))
            spent["idle_cpu_s"] += cpu() - c0
            before = counts[1]
            on.set()
            deadline = time.monotonic() + 30
            while counts[1] == before and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # until the flooder is being refused
            c0, n0 = cpu(), sum(counts)
            await timed(flooded, min(per_cycle, samples - len(flooded)))
            spent["flood_cpu_s"] += cpu() - c0
            spent["flood_answers"] += sum(counts) - n0
            on.clear()
            await asyncio.sleep(0.2)  # the flood's requests in flight drain
            ctx.progress.step(len(idle) + len(flooded), 2 * samples, "timed pushes")
    return idle, flooded


def run_flood(ctx: Context) -> list[Result]:
    need_server()
    samples = {"full": 400, "quick": 120}.get(ctx.scale.mode, 10)
    settings = server_settings(
        f"sqlite:///{ctx.work / 'flood-server.db'}",
        rate_device_per_min=RATE_DEVICE,
        rate_tenant_per_min=RATE_TENANT,
        rate_anon_per_min=120,
        max_pushes_in_flight_per_tenant=PUSHES_IN_FLIGHT,
    )
    _, calm_codes = enroll(settings, "calm", ["calm"])
    _, flood_codes = enroll(settings, "flood", ["flood"])
    spawn = multiprocessing.get_context("spawn")
    on, done = spawn.Event(), spawn.Event()
    counts = spawn.Array("q", 3)
    with serve(ctx, settings, "flood") as (url,):
        tokens = asyncio.run(_tokens(url, {**calm_codes, **flood_codes}))
        flooder = spawn.Process(
            target=_flood_main, args=(url, tokens["flood"], on, done, counts), daemon=True
        )
        flooder.start()
        started = time.monotonic()
        cpu, spent = _cpu_of(_server_pid()), dict[str, float]()
        try:
            idle, flooded = asyncio.run(
                _victim(ctx, url, tokens["calm"], samples, on, counts, cpu, spent)
            )
        finally:
            done.set()
            on.clear()
            flooder.join(timeout=30)
            if flooder.is_alive():
                flooder.kill()
        seconds = time.monotonic() - started
        refusal_ms = _refusal_cost(url, tokens["flood"], cpu, 2000)
    i, f = summary(idle), summary(flooded)
    ok, refused, other = int(counts[0]), int(counts[1]), int(counts[2])
    ratio_p50 = i["p50_ms"] / f["p50_ms"]
    # The server's CPU per flood answer (nearly all 429s) in the flooded stretches, the calm
    # tenant's pushes there counted at their idle cost.
    flood_cpu_s = spent["flood_cpu_s"] - spent["idle_cpu_s"]
    cpu_per_answer_ms = (
        1000 * flood_cpu_s / spent["flood_answers"] if spent["flood_answers"] else 0.0
    )
    ctx.progress.note(
        f"flood: {ok + refused + other:,} requests ({refused:,} answered 429); calm push p99 "
        f"{f['p99_ms']:.1f} ms vs {i['p99_ms']:.1f} ms idle; server CPU per flood answer "
        f"{cpu_per_answer_ms:.2f} ms, per refused push alone {refusal_ms:.2f} ms"
    )
    return [
        Result(
            key="flood",
            number=13,
            title="Push latency of one tenant while another tenant's device floods (SQLite)",
            figure=Measure(
                f"push p99 under the flood (p50 {f['p50_ms']:.1f} ms, p50 ratio {ratio_p50:.2f}x)",
                f["p99_ms"],
                "ms",
            ),
            baseline=Measure(
                f"the same pushes, idle server (p50 {i['p50_ms']:.1f} ms)", i["p99_ms"], "ms"
            ),
            ratio=i["p99_ms"] / f["p99_ms"],
            target=Target("within 2x: >= 0.5x the idle p99", "ratio_min", 0.5),
            params={
                "samples": samples,
                "flood_in_flight": IN_FLIGHT,
                "batch": BATCH,
                "rate_device_per_min": RATE_DEVICE,
                "rate_tenant_per_min": RATE_TENANT,
                "pushes_in_flight_per_tenant": PUSHES_IN_FLIGHT,
                "server": "1 uvicorn process, embedded SQLite, memory rate-limit store",
                "flooder": "another process, httpx.AsyncClient",
            },
            details={
                "ratio_p50": ratio_p50,
                "flood_200": ok,
                "flood_429": refused,
                "flood_other": other,
                "flood_requests_per_s": (ok + refused + other) / seconds,
                "server_cpu_ms_per_flood_answer": cpu_per_answer_ms,
                "flood_answers_timed": spent["flood_answers"],
                "server_cpu_ms_per_refusal_alone": refusal_ms,
                **{f"idle_{k}": v for k, v in i.items()},
                **{f"flood_{k}": v for k, v in f.items()},
            },
            distributions={"idle server": quantiles(idle), "under the flood": quantiles(flooded)},
        )
    ]
