"""Driver errors at the store's edge: sqlite3 and asyncpg failures arrive as StoreError
subclasses (busy, full, unavailable) with the driver's error chained; nothing is half
written; the terminal's caller gets the store's error, the HTTP client a ServerError with
the problem's code and Retry-After. Real files, a real PostgreSQL, a real server."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.errors import (
    ServerError,
    StoreBusyError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    TransportError,
)
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.driver import translate
from fynlo_sync.store.postgres import PostgresServerStore, _tenant_lock, migrate
from fynlo_sync.store.sqlite import SqliteServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from server import admin
from server.testing import embedded_settings, free_port, run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import batch_of

REGISTRY = conflict.registry([OrdersPlugin()])


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another process's writer holding the file's lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _open(terminal: Terminal) -> None:
    terminal.command("orders", "o1", "open", {"currency": "GBP", "table": "1"})


def test_a_busy_terminal_file_raises_store_busy_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "till.db"
    store = SqliteTerminalStore(path, "till", busy_timeout_ms=50)
    till = Terminal(store, REGISTRY, wall=ManualClock(), rng=random.Random(1))
    with write_lock(path), pytest.raises(StoreBusyError) as caught:
        _open(till)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert caught.value.status == 503 and caught.value.extra["driver"] == "sqlite3"
    assert store.outbox() == [] and store.meta().next_seq == 1
    _open(till)  # the lock is gone: the same write goes through, with seq 1
    assert [op.seq for op in store.outbox()] == [1]
    store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.outbox()


def test_a_full_database_raises_store_full_and_keeps_the_feed_whole(tmp_path: Path) -> None:
    store = SqliteServerStore(tmp_path / "server.db")
    replica = ServerReplica(store, make_registry())
    replica.push("t1", batch_of("n1", 1, 3))
    conn = store.db.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreFullError) as caught:
        replica.push("t1", batch_of("n1", 4, 400, title="x" * 400))
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert "full" in str(caught.value.__cause__)
    assert (store.cursor("t1"), store.high_water("t1", "n1")) == (3, 3)
    conn.execute("PRAGMA max_page_count = 1073741823")
    replica.push("t1", batch_of("n1", 4, 400, title="x" * 400))
    assert store.cursor("t1") == 403
    store.close()


def test_only_driver_errors_are_translated() -> None:
    assert translate(ValueError("x")) is None
    assert translate(StoreError("already ours")) is None
    full = translate(OSError(28, "No space left on device"))
    assert isinstance(full, StoreFullError)
    assert isinstance(translate(ConnectionResetError()), StoreUnavailableError)


@pytest.mark.postgres
def test_postgres_lock_timeout_and_a_lost_connection(postgres_url: str) -> None:
    async def run() -> None:
        pool = await asyncpg.create_pool(
            postgres_url, min_size=1, max_size=2, server_settings={"lock_timeout": "100"}
        )
        await migrate(pool)
        store = PostgresServerStore(pool)
        holder = await asyncpg.connect(postgres_url)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", _tenant_lock("t1"))
            with pytest.raises(StoreBusyError) as busy:
                async with store.transaction("t1"):
                    pass
            assert isinstance(busy.value.__cause__, asyncpg.LockNotAvailableError)
            assert busy.value.extra["sqlstate"] == "55P03"
            await holder.execute("SELECT pg_advisory_unlock_all()")

            with pytest.raises(StoreUnavailableError) as lost:
                async with store.transaction("t1") as tx:
                    await holder.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    await tx.cursor("t1")
            # (asyncpg reports a backend ended while idle after a simple query, as the
            # transaction's BEGIN and lock are, as an InternalClientError.)
            assert isinstance(
                lost.value.__cause__,
                asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError,
            )
            assert await store.cursor("t1") == 0  # the pool reconnects
        finally:
            await holder.close()
            await store.close()

    asyncio.run(run())


def test_an_unreachable_postgres_is_store_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    with pytest.raises(StoreUnavailableError) as caught:
        asyncio.run(PostgresServerStore.connect(url))
    assert isinstance(caught.value.__cause__, OSError)


def test_over_http_a_busy_store_is_a_503_problem_with_retry_after(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path, sqlite_busy_ms=50)
    with run_in_thread(settings) as url:
        tenant = admin.create_tenant(settings, "cafe")
        from fynlo_sync.transport.http import HttpTransport

        link = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
        with write_lock(Path(settings.sqlite_path)), pytest.raises(ServerError) as caught:
            link.push(batch_of(link.node_id, 1, 2))
        error = caught.value
        assert isinstance(error, TransportError)  # a terminal backs off and retries
        assert (error.code, error.status, error.retry_after_s) == ("store-busy", 503, 1)
        assert link.push(batch_of(link.node_id, 1, 2)).high_water == 2  # nothing was half-done
        link.close()
