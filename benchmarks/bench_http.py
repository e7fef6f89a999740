"""(7) HTTP push throughput: 32 terminals (each its own enrolled device) pushing 100-op
batches at once to a real server process, beside the same batches applied in-process by
the replica on the same kind of store (no HTTP, no auth, one at a time): the ratio is what
HTTP, auth and the ASGI stack cost (or, with concurrency, win back)."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from typing import Any

import msgspec

from benchmarks.bench_local import summary
from benchmarks.context import Context
from benchmarks.harness import (
    enroll,
    need_postgres,
    need_server,
    postgres_database,
    serve,
    server_settings,
)
from benchmarks.result import Measure, Result, quantiles, speed_ratio
from benchmarks.workload import server_ops
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import encode_batch
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.sqlite import SqliteServerStore

__all__ = ["push_concurrently", "run_http_push", "run_http_push_postgres"]


def _bodies(ctx: Context, nodes: list[str]) -> dict[str, list[bytes]]:
    per_node = max(ctx.scale.http_batch, ctx.scale.http_ops // len(nodes))
    size = ctx.scale.http_batch
    out = {}
    for node in nodes:
        ops = server_ops(node, per_node)
        out[node] = [
            encode_batch(Batch.of(node, ops[i : i + size])) for i in range(0, len(ops), size)
        ]
    return out


async def _tokens(url: str, codes: dict[str, str]) -> dict[str, str]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        tokens = {}
        for node, code in sorted(codes.items()):
            r = await client.post("/v1/auth/device", json={"enrollment_code": code})
            r.raise_for_status()
            tokens[node] = r.json()["access_token"]
        return tokens


async def push_concurrently(
    ctx: Context, url: str, tokens: dict[str, str], bodies: dict[str, list[bytes]]
) -> tuple[float, list[float]]:
    """Every node pushes its batches in order; all nodes at once. Returns (seconds,
    per-request latencies in ms)."""
    import httpx

    total = sum(len(b) for b in bodies.values())
    done = 0
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=len(tokens) + 4, max_keepalive_connections=len(tokens))
    deadline = time.monotonic() + ctx.budget_s
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker(node: str) -> None:
            nonlocal done
            headers = {
                "Authorization": f"Bearer {tokens[node]}",
                "Content-Type": "application/json",
            }
            for body in bodies[node]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"HTTP push did not finish within {ctx.budget_s} s")
                start = time.perf_counter()
                r = await client.post("/v1/sync/push", content=body, headers=headers)
                latencies.append((time.perf_counter() - start) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"push answered {r.status_code}: {r.text[:300]}")
                done += 1
                ctx.progress.step(done, total, "batches pushed")

        start = time.perf_counter()
        await asyncio.gather(*(worker(node) for node in sorted(bodies)))
        return time.perf_counter() - start, latencies


def _in_process_sqlite(ctx: Context, bodies: dict[str, list[bytes]], tenant: str) -> float:
    store = SqliteServerStore(ctx.work / "http-inproc.db")
    replica = ServerReplica(store, ctx.registry)
    order = _round_robin(bodies)
    start = time.perf_counter()
    for node, body in order:
        replica.push(tenant, body, node_id=node)
    seconds = time.perf_counter() - start
    store.close()
    return seconds


def _round_robin(bodies: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for i in range(max(len(b) for b in bodies.values())):
        out.extend((node, b[i]) for node, b in sorted(bodies.items()) if i < len(b))
    return out


def _result(
    key: str, store: str, ops: int, http_s: float, base_s: float, lat: list[float], params: Any
) -> Result:
    stats = summary(lat)
    return Result(
        key=key,
        number=7,
        title=f"HTTP push throughput, concurrency {params['concurrency']}, {store}",
        figure=Measure(
            f"HTTP push, {params['concurrency']} devices at once", ops / http_s, "ops/s"
        ),
        baseline=Measure("same batches in-process, no HTTP", ops / base_s, "ops/s"),
        ratio=speed_ratio(http_s, base_s),
        params=params,
        details={
            "http_s": http_s,
            "in_process_s": base_s,
            "requests": len(lat),
            **{f"request_{k}": v for k, v in stats.items()},
        },
        distributions={f"push request ({store})": quantiles(lat)},
    )


def run_http_push(ctx: Context) -> list[Result]:
    need_server()
    scale = ctx.scale
    nodes = [f"node-{i:02d}" for i in range(scale.http_concurrency)]
    bodies = _bodies(ctx, nodes)
    ops = sum(len(msgspec.json.decode(b)["ops"]) for v in bodies.values() for b in v)
    settings = server_settings(f"sqlite:///{ctx.work / 'http-server.db'}")
    tenant, codes = enroll(settings, "http", nodes)
    with serve(ctx, settings, "http") as (url,):
        tokens = asyncio.run(_tokens(url, codes))
        http_s, lat = asyncio.run(push_concurrently(ctx, url, tokens, bodies))
    base_s = _in_process_sqlite(ctx, bodies, tenant)
    params = {
        "ops": ops,
        "concurrency": len(nodes),
        "batch": scale.http_batch,
        "server": "1 uvicorn process, embedded SQLite",
        "client": "httpx.AsyncClient, 1 process",
    }
    return [_result("http-push-sqlite", "embedded SQLite", ops, http_s, base_s, lat, params)]


def run_http_push_postgres(ctx: Context) -> list[Result]:
    need_server()
    admin = need_postgres(ctx)
    from fynlo_sync.replica import AsyncServerReplica
    from fynlo_sync.store.postgres import PostgresServerStore

    scale = ctx.scale
    nodes = [f"node-{i:02d}" for i in range(scale.http_concurrency)]
    bodies = _bodies(ctx, nodes)
    ops = sum(len(msgspec.json.decode(b)["ops"]) for v in bodies.values() for b in v)
    with ExitStack() as stack:
        db = stack.enter_context(postgres_database(admin, "http"))
        settings = server_settings(db)
        tenant, codes = enroll(settings, "http", nodes)
        (url,) = stack.enter_context(serve(ctx, settings, "http-pg"))
        tokens = asyncio.run(_tokens(url, codes))
        http_s, lat = asyncio.run(push_concurrently(ctx, url, tokens, bodies))
        stack.close()
        base_db = stack.enter_context(postgres_database(admin, "httpbase"))

        async def in_process() -> float:
            store = await PostgresServerStore.connect(base_db, max_size=2)
            replica = AsyncServerReplica(store, ctx.registry)
            start = time.perf_counter()
            for node, body in _round_robin(bodies):
                await replica.push(tenant, body, node_id=node)
            seconds = time.perf_counter() - start
            await store.close()
            return seconds

        base_s = asyncio.run(in_process())
    params = {
        "ops": ops,
        "concurrency": len(nodes),
        "batch": scale.http_batch,
        "server": "1 uvicorn process, PostgreSQL (pool 10)",
        "client": "httpx.AsyncClient, 1 process",
    }
    return [_result("http-push-postgres", "PostgreSQL", ops, http_s, base_s, lat, params)]
