"""Pokes without Redis: two ``fynlo serve`` processes on one PostgreSQL and no Redis poke
each other's WebSocket clients through LISTEN/NOTIFY; ``fynlo serve`` refuses several
workers where pokes would stay inside each worker."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from fynlo_sync.cli import main
from fynlo_sync.store.postgres import asyncpg_dsn
from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from server.pgpokes import pg_channel
from server.pokes import pokes_backend
from server.settings import Settings
from server.testing import run_in_thread
from tests.server.test_logs import _serve, _stop
from tests.server.test_scale_out import orders_batch


@pytest.mark.postgres
def test_two_processes_on_postgres_without_redis_poke_each_other(
    make_postgres_database: Callable[[], str], tmp_path: Path
) -> None:
    settings = Settings(database_url=make_postgres_database(), secret_key=secrets.token_urlsafe(32))
    assert pokes_backend(settings) == "postgres"
    first, url_a = _serve(settings, tmp_path / "a.log")
    second, url_b = _serve(settings, tmp_path / "b.log")
    try:
        tenant = admin.create_tenant(settings, "no redis", "t" + "x" * 100)  # a long id
        pusher = HttpTransport.enroll(url_a, admin.enroll_device(settings, tenant).enrollment_code)
        watcher = HttpTransport.enroll(url_b, admin.enroll_device(settings, tenant).enrollment_code)
        with PokeListener(watcher) as listener:
            assert listener.connected.wait(10)
            assert listener.next(10) == 0  # the cursor on connect
            result = pusher.push(orders_batch(pusher.node_id, 1, 2))
            assert listener.next(10) == result.cursor == 2  # through the other process
        pusher.close()
        watcher.close()
    finally:
        _stop(first)
        _stop(second)


def test_channel_names_fit_postgres() -> None:
    long = pg_channel("tenant." + "x" * 200)
    assert len(long) < 64 and long == long.lower() and long.startswith("fynlo_")
    assert pg_channel("tenant.a") != pg_channel("tenant.b")


def test_serve_refuses_workers_that_would_split_pokes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FYNLO_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("FYNLO_SECRET_KEY", secrets.token_urlsafe(32))
    monkeypatch.delenv("FYNLO_REDIS_URL", raising=False)
    # `serve --workers 2` sets PROMETHEUS_MULTIPROC_DIR for its workers: undone afterwards
    # (left set, it turned the metrics of every later test of the session multiprocess).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    assert main(["serve", "--workers", "2", "--port", "1"]) == 2
    assert "would split pokes" in capsys.readouterr().err
    assert pokes_backend(Settings(env="dev", redis_url="redis://x")) == "redis"
    assert pokes_backend(Settings(env="dev")) == "memory"


def _listen_pids(url: str) -> list[int]:
    """The backends LISTENing in this database (the test's server holds the only one)."""

    async def query() -> list[int]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
            )
            return [int(r["pid"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(query())


def _terminate(url: str, pid: int) -> None:
    async def kill() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()

    asyncio.run(kill())


@pytest.mark.postgres
def test_the_listen_connection_comes_back_after_it_is_killed(
    make_postgres_database: Callable[[], str], tmp_path: Path
) -> None:
    """pg_terminate_backend on the server's LISTEN connection: it is re-opened (with every
    channel it listened on) and pokes flow again, twice over."""
    settings = Settings(database_url=make_postgres_database(), secret_key=secrets.token_urlsafe(32))
    assert pokes_backend(settings) == "postgres"
    with run_in_thread(settings) as url:
        tenant = admin.create_tenant(settings, "flaky db", "t" + secrets.token_hex(4))
        pusher = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
        watcher = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
        with PokeListener(watcher) as listener:
            assert listener.next(10) == 0
            seq = 1
            for _ in range(2):
                (old,) = _listen_pids(settings.database_url)
                _terminate(settings.database_url, old)
                deadline = time.monotonic() + 20
                while (pids := _listen_pids(settings.database_url)) in ([], [old]):
                    assert time.monotonic() < deadline, "the LISTEN connection was not re-opened"
                    time.sleep(0.05)
                assert old not in pids
                # The socket stayed open; the poke of the next push reaches it.
                result = pusher.push(orders_batch(pusher.node_id, seq, 1))
                seq += 1
                assert listener.next(10) == result.cursor
        pusher.close()
        watcher.close()
