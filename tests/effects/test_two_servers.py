"""Two server processes on one PostgreSQL drain one queue of effects: each side effect
happens once, no effect is performed by both at once, and both processes work (``FOR
UPDATE SKIP LOCKED`` claims, leases fenced by the attempt).

``FYNLO_EFFECTS_LONG=1`` drains 1,000 effects; the default is 300, to keep ``make test``
short on a loaded machine."""

from __future__ import annotations

import asyncio
import os

import pytest

import conflict
from fynlo_sync.protocol import encode_batch
from fynlo_sync.replica import AsyncServerReplica
from fynlo_sync.store.postgres import PostgresServerStore
from tests.effects.harness import ServerProcess, order_batch, service, stats, wait_for, workers
from tests.effects.plugin import PrinterSettings, PrintingOrders

pytestmark = pytest.mark.postgres

EFFECTS = 1000 if os.environ.get("FYNLO_EFFECTS_LONG") == "1" else 300


async def _commit_orders(url: str, tenant: str, count: int) -> None:
    """Commit ``count`` sends straight into the database (no worker runs here)."""
    store = await PostgresServerStore.connect(url)
    try:
        plugin = PrintingOrders(PrinterSettings(printer_url="unused"))
        replica = AsyncServerReplica(store, conflict.registry([plugin]))
        for first in range(0, count, 100):
            for index in range(first, min(first + 100, count)):
                await replica.push(tenant, encode_batch(order_batch("n1", index)))
    finally:
        await store.close()


def test_two_processes_drain_one_queue_each_effect_once(postgres_url: str) -> None:
    asyncio.run(_commit_orders(postgres_url, "t", EFFECTS))
    with service() as printer:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "FYNLO_DATABASE_URL": postgres_url,
            "FYNLO_ENV": "dev",
            "FYNLO_SECRET_KEY": "k" * 40,
            "FYNLO_PLUGINS": "tests.effects.plugin:PrintingOrders",
            "FYNLO_ORDERS_PRINTER_URL": printer,
            "FYNLO_ORDERS_DELAY_MS": "2",
            "FYNLO_EFFECT_CONCURRENCY": "20",
            "FYNLO_EFFECT_POLL_MS": "20",
        }
        a, b = ServerProcess(env), ServerProcess(env)
        try:
            a.start()
            b.start()
            seen = wait_for(
                lambda: len(s := stats(printer)) == EFFECTS and s, "every effect to be performed"
            )
            by_worker = workers(printer)
        finally:
            a.close()
            b.close()
    assert len(seen) == EFFECTS
    assert all(v["effects"] == 1 for v in seen.values())
    assert sum(v["overlaps"] for v in seen.values()) == 0  # never two calls of one key at once
    assert sum(v["seen"] for v in seen.values()) == EFFECTS  # no lease ran out: one call each
    assert len(by_worker) == 2 and all(n > 0 for n in by_worker.values()), by_worker
