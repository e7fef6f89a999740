"""(9) Many tenants: T tenants x 5 terminals pushing at once to two server processes on
PostgreSQL, for T = 1, 100, 1,000 (full size). Every configuration pushes the same number
of ops in the same batch size; each terminal pushes its batches one after another (its
seqs are consecutive), the terminals all at once up to a cap on requests in flight. The
baseline is the single tenant: its five terminals serialise on the tenant's lock, so the
question is whether many tenants' locks serialise the server (target: throughput at the
most tenants >= 0.8x of one tenant's).

Devices are made straight in the account tables and given access tokens signed with the
servers' secret (enrolling thousands of devices would be thousands of argon2 hashes, not
what this measures); every push still goes through the servers' authentication.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.bench_local import summary
from benchmarks.context import Context
from benchmarks.harness import need_postgres, need_server, postgres_database, serve, server_settings
from benchmarks.result import Measure, Result, Target, quantiles
from benchmarks.workload import server_ops
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import encode_batch

__all__ = ["mint_devices", "run_tenants"]

TERMINALS = 5
BATCH = 20


def mint_devices(settings: Any, tenants: int, per_tenant: int) -> list[tuple[str, str, str]]:
    """(tenant, node, access token) for ``tenants`` new tenants of ``per_tenant`` devices."""
    from server.admin import open_accounts
    from server.auth import make_jwt_auth

    async def work() -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        async with open_accounts(settings) as accounts:
            auth = make_jwt_auth(
                settings.secret_key,
                lambda: accounts,
                access_ttl_s=settings.access_ttl_s,
                exclude=[],
            )
            for t in range(tenants):
                tenant = await accounts.create_tenant("bench", f"tb{t:05d}")
                for d in range(per_tenant):
                    node = f"till-{t:05d}-{d}"
                    await accounts.db.execute(
                        "INSERT INTO fynlo_devices (tenant_id, node_id, epoch, created_ms)"
                        " VALUES ($1, $2, 0, 0)",
                        tenant,
                        node,
                    )
                    token = auth.create_token(identifier=node, tid=tenant, ep=0)
                    out.append((tenant, node, token))
        return out

    return asyncio.run(work())


#: A push that fails in transport (a connection closed under load) is sent again, as a
#: terminal would: the same body, so the server answers a replay as duplicates.
RETRIES = 3


async def _push_all(
    urls: list[str], devices: list[tuple[str, str, str]], batches: int, in_flight: int
) -> tuple[float, list[float], int]:
    import httpx

    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    retried = 0
    bodies = {
        node: [
            encode_batch(Batch.of(node, ops[i * BATCH : (i + 1) * BATCH])) for i in range(batches)
        ]
        for _, node, _ in devices
        for ops in [server_ops(node, batches * BATCH)]
    }
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def device(index: int, node: str, token: str) -> None:
            url = urls[index % len(urls)] + "/v1/sync/push"
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            nonlocal retried
            for body in bodies[node]:
                for attempt in range(RETRIES + 1):
                    async with gate:
                        sent = time.perf_counter()
                        try:
                            r = await client.post(url, content=body, headers=headers)
                        except httpx.TransportError:
                            if attempt == RETRIES:
                                raise
                            retried += 1
                            continue
                        latencies.append((time.perf_counter() - sent) * 1000)
                        break
                if r.status_code != 200:
                    raise RuntimeError(f"push answered {r.status_code}: {r.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(device(i, n, tok) for i, (_, n, tok) in enumerate(devices)))
        return time.perf_counter() - start, latencies, retried


def run_tenants(ctx: Context) -> list[Result]:
    need_server()
    admin = need_postgres(ctx)
    scale = ctx.scale
    counts = scale.tenant_counts
    total_batches = max(counts) * TERMINALS  # the same ops for every configuration
    runs: dict[int, dict[str, Any]] = {}
    for count in counts:
        devices_n = count * TERMINALS
        batches = max(1, total_batches // devices_n)
        with postgres_database(admin, f"tenants{count}") as database:
            settings = server_settings(database)
            ctx.progress.note(f"{count:,} tenants x {TERMINALS} terminals: making devices")
            devices = mint_devices(settings, count, TERMINALS)
            with serve(ctx, settings, f"tenants-{count}", count=2) as urls:
                ctx.progress.note(
                    f"{count:,} tenants: {devices_n:,} terminals x {batches} pushes of {BATCH}"
                )
                try:
                    seconds, latencies, retried = asyncio.run(
                        _push_all(urls, devices, batches, scale.tenant_in_flight)
                    )
                except Exception as exc:  # name what the servers said
                    tails = " | ".join(_log_tail(ctx, f"tenants-{count}-{i}") for i in range(2))
                    raise RuntimeError(f"{count} tenants: {exc!r}; server logs: {tails}") from exc
        ops = devices_n * batches * BATCH
        runs[count] = {
            "seconds": seconds,
            "ops": ops,
            "ops_per_s": ops / seconds,
            "latencies": latencies,
            "transport_retries": retried,
            **summary(latencies),
        }
        p99 = runs[count]["p99_ms"]
        ctx.progress.note(f"{count:,} tenants: {ops / seconds:,.0f} ops/s, push p99 {p99:.0f} ms")
    one, most = runs[min(counts)], runs[max(counts)]
    details: dict[str, Any] = {}
    for count, run in runs.items():
        for key in (
            "ops_per_s",
            "seconds",
            "ops",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "transport_retries",
        ):
            details[f"t{count}_{key}"] = run[key]
    return [
        Result(
            key="tenants",
            number=9,
            title=f"Many tenants: {max(counts):,} tenants x {TERMINALS} terminals at once",
            figure=Measure(
                f"{max(counts):,} tenants (push p99 {most['p99_ms']:.0f} ms)",
                most["ops_per_s"],
                "ops/s",
            ),
            baseline=Measure(
                f"1 tenant, {TERMINALS} terminals (push p99 {one['p99_ms']:.0f} ms)",
                one["ops_per_s"],
                "ops/s",
            ),
            ratio=most["ops_per_s"] / one["ops_per_s"],
            target=Target(">= 0.8x one tenant's throughput", "ratio_min", 0.8),
            params={
                "tenants": list(counts),
                "terminals_per_tenant": TERMINALS,
                "batch": BATCH,
                "in_flight": scale.tenant_in_flight,
                "server": "2 uvicorn processes, PostgreSQL (pool 10 each)",
                "client": "httpx.AsyncClient, 1 process, round robin over the servers",
            },
            details=details,
            distributions={
                f"push, {c:,} tenants": quantiles(r["latencies"]) for c, r in runs.items()
            },
        )
    ]


def _log_tail(ctx: Context, name: str) -> str:
    """The last lines of a server's log that are not request or push records."""
    path = ctx.work / f"server-{name}.log"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"{path.name}: no log"
    odd = [
        line for line in lines if '"event": "request"' not in line and '"event": "push"' not in line
    ]
    return f"{path.name}: " + " / ".join(odd[-3:])[-600:]
