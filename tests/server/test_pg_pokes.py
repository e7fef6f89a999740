"""Pokes without Redis: two ``fynlo serve`` processes on one PostgreSQL and no Redis poke
each other's WebSocket clients through LISTEN/NOTIFY; ``fynlo serve`` refuses several
workers where pokes would stay inside each worker."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from fynlo_sync.cli import main
from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from server.pgpokes import pg_channel
from server.pokes import pokes_backend
from server.settings import Settings
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
    assert main(["serve", "--workers", "2", "--port", "1"]) == 2
    assert "would split pokes" in capsys.readouterr().err
    assert pokes_backend(Settings(env="dev", redis_url="redis://x")) == "redis"
    assert pokes_backend(Settings(env="dev")) == "memory"
