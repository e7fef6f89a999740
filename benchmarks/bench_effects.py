"""(12) Push latency while durable effects are in flight.

One embedded SQLite server process (``uvicorn``); the orders plugin's kitchen ticket takes
2 s (``benchmarks.effects_plugin.SlowOrders``). In cycles, one push sends 100 orders to the
kitchen (100 effects of 2 s each, all in flight at once), then small pushes are timed for
the next 1.5 s. The baseline runs the same cycles with orders that are not sent (no
effects); baseline and loaded cycles alternate, so both see the same machine and the same
database size. Ratio = baseline p99 / p99 with effects in flight; the target is within 1.2x.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from benchmarks.bench_http import _tokens
from benchmarks.bench_local import summary
from benchmarks.context import Context
from benchmarks.harness import enroll, need_server, serve, server_settings
from benchmarks.result import Measure, Result, Target, quantiles
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op
from fynlo_sync.protocol import encode_batch

__all__ = ["run_effects_latency"]

IN_FLIGHT = 100
DELAY_MS = 2000
WINDOW_S = 1.5


class _Ops:
    def __init__(self, node: str) -> None:
        self.node = node
        self.seq = 0

    def op(self, record: str, name: str, args: dict[str, Any]) -> Op:
        self.seq += 1
        return Op(
            op_id=f"{self.node}-{self.seq}",
            node_id=self.node,
            seq=self.seq,
            hlc=to_wire(pack(1_700_000_000_000 + self.seq, 0)),
            base_seq=0,
            collection="orders",
            record_id=record,
            kind="command",
            name=name,
            args=args,
        )

    def order(self, record: str, send: bool) -> list[Op]:
        line = {"line_id": "l1", "item": "tea", "qty": 1, "unit_price": 250}
        ops = [self.op(record, "open", {"currency": "GBP"}), self.op(record, "add_line", line)]
        if send:
            ops.append(self.op(record, "send_to_kitchen", {}))
        return ops

    def body(self, ops: list[Op]) -> bytes:
        return encode_batch(Batch.of(self.node, ops))


class _Phase:
    """One device's cycles: a push of 100 orders (sent to the kitchen or not), then timed
    small pushes for the next 1.5 s, then a wait until the cycle's effects are over."""

    def __init__(self, ctx: Context, url: str, token: str, node: str, send: bool) -> None:
        import httpx

        self.ops = _Ops(node)
        self.send = send
        self.cycles = 0
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.client = httpx.AsyncClient(base_url=url, timeout=60, headers=headers)

    async def __aenter__(self) -> _Phase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def cycle(self, count: int) -> list[float]:
        self.cycles += 1
        ops = self.ops
        load = [op for i in range(IN_FLIGHT) for op in ops.order(f"c{self.cycles}-{i}", self.send)]
        (await self.client.post("/v1/sync/push", content=ops.body(load))).raise_for_status()
        started = time.monotonic()
        await asyncio.sleep(0.2)  # the worker claims the 100 effects
        latencies: list[float] = []
        while time.monotonic() - started < WINDOW_S and len(latencies) < count:
            body = ops.body(ops.order(f"m{self.cycles}-{len(latencies)}", send=False))
            t0 = time.perf_counter()
            (await self.client.post("/v1/sync/push", content=body)).raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        # let this cycle's effects finish (and be recorded) before the next cycle
        await asyncio.sleep(max(0.0, DELAY_MS / 1000 - (time.monotonic() - started)) + 0.5)
        return latencies


async def _alternate(
    ctx: Context, url: str, tokens: dict[str, str], samples: int
) -> tuple[list[float], list[float]]:
    base: list[float] = []
    loaded: list[float] = []
    per_cycle = max(10, samples // 6)
    runs = {
        "base": _Phase(ctx, url, tokens["base"], "base", False),
        "load": _Phase(ctx, url, tokens["load"], "load", True),
    }
    async with runs["base"], runs["load"]:
        while len(base) < samples or len(loaded) < samples:
            if len(base) < samples:
                base.extend(await runs["base"].cycle(min(per_cycle, samples - len(base))))
            if len(loaded) < samples:
                loaded.extend(await runs["load"].cycle(min(per_cycle, samples - len(loaded))))
            ctx.progress.step(len(base) + len(loaded), 2 * samples, "timed pushes")
    return base, loaded


def run_effects_latency(ctx: Context) -> list[Result]:
    need_server()
    samples = {"full": 600, "quick": 150}.get(ctx.scale.mode, 20)
    settings = server_settings(
        f"sqlite:///{ctx.work / 'effects-server.db'}",
        plugins=("benchmarks.effects_plugin:SlowOrders",),
        effect_concurrency=2 * IN_FLIGHT,
        max_batch=1000,
    )
    os.environ["FYNLO_ORDERS_DELAY_MS"] = str(DELAY_MS)
    try:
        _, codes = enroll(settings, "effects", ["base", "load"])
        with serve(ctx, settings, "effects") as (url,):
            tokens = asyncio.run(_tokens(url, codes))
            # alternate: a cycle without effects, a cycle with, so both see the same machine
            base, loaded = asyncio.run(_alternate(ctx, url, tokens, samples))
    finally:
        del os.environ["FYNLO_ORDERS_DELAY_MS"]
    b, l_ = summary(base), summary(loaded)
    return [
        Result(
            key="effects-latency",
            number=12,
            title=f"Push latency with {IN_FLIGHT} durable effects of 2 s in flight (SQLite)",
            figure=Measure(
                f"push p99, {IN_FLIGHT} effects in flight (p50 {l_['p50_ms']:.1f} ms)",
                l_["p99_ms"],
                "ms",
            ),
            baseline=Measure(
                f"the same pushes, no effects (p50 {b['p50_ms']:.1f} ms)", b["p99_ms"], "ms"
            ),
            ratio=b["p99_ms"] / l_["p99_ms"],
            target=Target("within 1.2x: >= 0.83x the p99 without effects", "ratio_min", 1 / 1.2),
            params={
                "samples": samples,
                "in_flight": IN_FLIGHT,
                "effect_ms": DELAY_MS,
                "server": "1 uvicorn process, embedded SQLite, effect worker in the lifespan",
            },
            details={
                **{f"base_{k}": v for k, v in b.items()},
                **{f"load_{k}": v for k, v in l_.items()},
            },
            distributions={
                "no effects": quantiles(base),
                f"{IN_FLIGHT} effects in flight": quantiles(loaded),
            },
        )
    ]
