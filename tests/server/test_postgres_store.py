"""The store conformance suite (fynlo_sync.testing) against the PostgreSQL store, plus
what only Postgres has: migrations across processes, and pushes of one tenant serializing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from fynlo_sync.store.base import ServerStore
from fynlo_sync.store.migrations import Component
from fynlo_sync.store.postgres import (
    STORE_MIGRATIONS,
    BlockingPostgresStore,
    PostgresServerStore,
    migrate,
)
from fynlo_sync.testing import SERVER_STORE_CHECKS

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("check", SERVER_STORE_CHECKS, ids=lambda c: c.__name__)
def test_server_store(check: Callable[[ServerStore], None], postgres_url: str) -> None:
    store = BlockingPostgresStore(postgres_url)
    try:
        check(store)
    finally:
        store.close()


def test_migrations_apply_once(postgres_url: str) -> None:
    async def run() -> tuple[list[int], list[int], list[int]]:
        store = await PostgresServerStore.connect(postgres_url)
        try:
            again = await migrate(store.pool)
            probe = Component("probe", ("CREATE TABLE fynlo_probe (x int)",))
            extra = await migrate(store.pool, probe)
            rows = await store.pool.fetch(
                "SELECT component, version FROM fynlo_migrations ORDER BY component"
            )
            await store.pool.execute("DROP TABLE fynlo_probe")
            await store.pool.execute("DELETE FROM fynlo_migrations WHERE component = 'probe'")
            return again, extra, [r[1] for r in rows if r[0] == "store"]
        finally:
            await store.close()

    again, extra, versions = asyncio.run(run())
    assert again == []
    assert extra == [1]
    assert versions == list(range(1, len(STORE_MIGRATIONS) + 1))
