"""The store conformance suite (fynlo_sync.testing) against the PostgreSQL store, plus
what only Postgres has: migrations across processes, and pushes of one tenant serializing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fynlo_sync.store.base import ServerStore
from fynlo_sync.store.migrations import Component
from fynlo_sync.store.postgres import (
    _LOAD,
    STORE_MIGRATIONS,
    BlockingPostgresStore,
    PostgresServerStore,
    migrate,
)
from fynlo_sync.testing import SERVER_STORE_CHECKS, check_server_lists_in_byte_order

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("check", SERVER_STORE_CHECKS, ids=lambda c: c.__name__)
def test_server_store(check: Callable[[ServerStore], None], postgres_url: str) -> None:
    store = BlockingPostgresStore(postgres_url)
    try:
        check(store)
    finally:
        store.close()


def test_records_list_in_byte_order_under_a_linguistic_collation(
    postgres_session_url: str,
) -> None:
    """A database created with a linguistic default collation (ICU ``en-US``) still lists
    records and nodes in code-point order, as SQLite and the memory store do: the store's
    queries name ``COLLATE "C"`` (without it: ``a, a-b, ab, B``)."""
    import asyncpg

    from tests.conftest import _admin, _with_database

    name = f"{postgres_session_url.rsplit('/', 1)[1]}_icu"
    create = (
        f"CREATE DATABASE \"{name}\" LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        " LOCALE 'C.UTF-8' TEMPLATE template0"
    )
    try:
        asyncio.run(_admin(postgres_session_url, create))
    except asyncpg.PostgresError as exc:  # a server built without ICU
        pytest.skip(f"no ICU collation on this PostgreSQL server: {exc}")
    url = _with_database(postgres_session_url, name)
    try:
        store = BlockingPostgresStore(url)
        try:
            check_server_lists_in_byte_order(store)
        finally:
            store.close()
    finally:
        asyncio.run(_admin(postgres_session_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _scans(child)


_RECORDS = (
    "INSERT INTO fynlo_records (tenant, collection, record_id, version, body)"
    " SELECT $1, 'orders', 'o' || n, n, convert_to(json_build_object('collection', 'orders',"
    " 'record_id', 'o' || n, 'fields', '{}'::json, 'stamps', '{}'::json, 'version', n)::text,"
    " 'UTF8') FROM generate_series($2::int, $3::int) n"
)


@pytest.mark.parametrize("statistics", ["never analysed", "analysed small", "other tenants"])
def test_load_probes_the_primary_key_with_stale_statistics(
    make_postgres_database: Callable[[], str], statistics: str
) -> None:
    """A push's record load looks each key up by the primary key whatever the planner
    believes: a table never analysed (a burst of pushes before autovacuum's analyze),
    analysed at 100 of the tenant's 5,000 records, or analysed before this tenant's first
    record. (A join of the keys to the table hashed all of the tenant's records on every
    push in the first two; a probe the planner thinks the tenant has one record for went
    through fynlo_records_by_version, over all of them, in the last.)"""
    url = make_postgres_database()

    async def run() -> list[dict[str, Any]]:
        store = await PostgresServerStore.connect(url)
        try:
            db = store.pool
            if statistics == "never analysed":
                await db.execute(_RECORDS, "t", 1, 5000)
            elif statistics == "analysed small":
                await db.execute(_RECORDS, "t", 1, 100)
                await db.execute("ANALYZE fynlo_records")
                await db.execute(_RECORDS, "t", 101, 5000)
            else:
                await db.execute(_RECORDS, "u", 1, 20000)
                await db.execute("ANALYZE fynlo_records")
                await db.execute(_RECORDS, "t", 1, 5000)
            keys = [f"o{n}" for n in range(1, 5000, 25)] + ["missing"]
            plan = await db.fetchval(
                "EXPLAIN (FORMAT JSON) " + _LOAD, "t", ["orders"] * len(keys), keys
            )
            found = await store.load("t", [("orders", k) for k in keys])
            assert sorted(found) == sorted(("orders", k) for k in keys[:-1])
            assert all(r.record_id == k[1] for k, r in found.items())
            return list(_scans(json.loads(plan)[0]["Plan"]))
        finally:
            await store.close()

    nodes = asyncio.run(run())
    on_records = [n for n in nodes if n.get("Relation Name") == "fynlo_records"]
    assert on_records, nodes
    assert all(
        n["Node Type"] in ("Index Scan", "Index Only Scan")
        and n.get("Index Name") == "fynlo_records_pkey"
        for n in on_records
    ), [(n["Node Type"], n.get("Index Name")) for n in on_records]


def test_transaction_rolls_back_and_the_pool_resets_other_uses(postgres_url: str) -> None:
    """A transaction ended by an exception writes nothing and leaves the tenant's lock free;
    a committed one needs no reset query on release, but session state set by any other use
    of a pooled connection is still reset before the next user gets it."""

    async def run() -> tuple[int, str, str, int]:
        store = await PostgresServerStore.connect(postgres_url, max_size=1)
        try:
            with pytest.raises(RuntimeError):
                async with store.transaction("t") as tx:
                    assert await tx.high_water("t", "n") == 0
                    await tx._db.execute(
                        "INSERT INTO fynlo_nodes (tenant, node_id, high_water) VALUES ('t', 'n', 7)"
                    )
                    raise RuntimeError("abandoned")
            assert await store.high_water("t", "n") == 0
            async with store.pool.acquire() as conn:  # the one connection
                assert not conn.is_in_transaction()
                await conn.execute("SET application_name = 'leaked'")
                await conn.execute("SELECT pg_advisory_lock(42)")
            async with store.transaction("t") as tx:  # the lock was released
                name = await tx._db.fetchval("SHOW application_name")
                held = await tx._db.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND objid = 42"
                )
            async with store.pool.acquire() as conn:
                after = await conn.fetchval("SHOW application_name")
                in_tx = int(conn.is_in_transaction())
            return int(held), str(name), str(after), in_tx
        finally:
            await store.close()

    held, name, after, in_tx = asyncio.run(run())
    assert name != "leaked" and held == 0
    assert after != "leaked" and in_tx == 0
