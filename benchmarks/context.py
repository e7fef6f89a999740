"""The run context every benchmark gets, and the size presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.progress import Progress
from fynlo_sync.plugins import Registry

__all__ = ["SCALES", "Context", "Mode", "Scale"]

Mode = Literal["full", "quick", "tiny"]


@dataclass(frozen=True, slots=True)
class Scale:
    """How big each benchmark runs. ``full`` is what the issue asks for; ``quick`` finishes
    in under two minutes; ``tiny`` is the smoke test's size."""

    mode: Mode
    apply_ops: int  # (1) and (2): ops pushed
    apply_batch: int  # (1): batch size
    server_batches: tuple[int, ...]  # (2): batch sizes
    rounds: int  # best of N for the throughput runs
    pull_changes: int  # (3)
    pull_page: int
    e2e_ops: int  # (4)
    storm_terminals: int  # (5)
    storm_ops: int
    ws_clients: int  # (6)
    ws_processes: int
    ws_rounds: int
    http_ops: int  # (7): ops pushed in total
    http_concurrency: int
    http_batch: int
    local_writes: int  # (8)
    tenant_counts: tuple[int, ...]  # (9): tenants, 5 terminals each
    tenant_in_flight: int
    big_sizes: tuple[int, ...]  # (10): records in the tenant at each measurement
    big_pushes: int
    catchup_changes: int  # (11)
    ws_big_clients: int  # (6): sockets over two servers + Redis


SCALES: dict[str, Scale] = {
    "full": Scale(
        mode="full",
        apply_ops=100_000,
        apply_batch=1000,
        server_batches=(100, 1000),
        rounds=2,
        pull_changes=100_000,
        pull_page=1000,
        e2e_ops=10_000,
        storm_terminals=50,
        storm_ops=2000,
        ws_clients=1000,
        ws_processes=4,
        ws_rounds=50,  # p99 over 50 rounds: 20 left it to the worst one or two
        http_ops=64_000,
        http_concurrency=32,
        http_batch=100,
        local_writes=10_000,
        tenant_counts=(1, 100, 1000),
        tenant_in_flight=64,
        big_sizes=(0, 250_000, 500_000, 1_000_000),
        big_pushes=50,
        catchup_changes=1_000_000,
        ws_big_clients=10_000,
    ),
    "quick": Scale(
        mode="quick",
        apply_ops=10_000,
        apply_batch=1000,
        server_batches=(100, 1000),
        rounds=1,
        pull_changes=10_000,
        pull_page=1000,
        e2e_ops=2000,
        storm_terminals=10,
        storm_ops=200,
        ws_clients=200,
        ws_processes=2,
        ws_rounds=5,
        http_ops=9600,
        http_concurrency=32,
        http_batch=100,
        local_writes=2000,
        tenant_counts=(1, 10, 100),
        tenant_in_flight=32,
        big_sizes=(0, 20_000, 50_000),
        big_pushes=20,
        catchup_changes=50_000,
        ws_big_clients=1000,
    ),
    "tiny": Scale(
        mode="tiny",
        apply_ops=400,
        apply_batch=100,
        server_batches=(100,),
        rounds=1,
        pull_changes=300,
        pull_page=100,
        e2e_ops=100,
        storm_terminals=2,
        storm_ops=20,
        ws_clients=4,
        ws_processes=1,
        ws_rounds=2,
        http_ops=400,
        http_concurrency=4,
        http_batch=50,
        local_writes=100,
        tenant_counts=(1, 2),
        tenant_in_flight=4,
        big_sizes=(0, 500),
        big_pushes=3,
        catchup_changes=2000,
        ws_big_clients=8,
    ),
}


@dataclass(slots=True)
class Context:
    scale: Scale
    work: Path  # a scratch folder, removed after the run
    root: Path  # the repository
    progress: Progress
    registry: Registry
    #: Anything one benchmark prepares that another may reuse (a seeded server file).
    cache: dict[str, Any] = field(default_factory=dict)
    postgres_url: str | None = None
    redis_url: str | None = None
    #: Wall-clock budget per benchmark, seconds; loops stop (and say so) past it.
    budget_s: float = 600.0
    #: Leave PouchDB out (no Node run, no npm install): (4) reports our figure alone.
    skip_pouchdb: bool = False
