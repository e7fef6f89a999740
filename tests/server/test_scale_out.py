"""Two server processes (``fynlo serve`` under uvicorn, as subprocesses) on one PostgreSQL
and one Redis: a push to the first pokes a WebSocket client of the second, and either serves
what the other committed."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fynlo_sync.ops import Batch
from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from server.settings import Settings
from server.testing import NO_RATE_LIMITS, free_port
from tests.server.conftest import note_op

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SERVE = [sys.executable, "-m", "fynlo_sync.cli", "serve", "--host", "127.0.0.1"]
SERVE += ["--log-level", "warning"]


def orders_batch(node: str, first: int, count: int) -> Batch:
    """Orders ops (the subprocesses serve the default registry): open, then lines."""
    ops = []
    for seq in range(first, first + count):
        part: dict[str, Any]
        if seq == 1:
            part = {"name": "open", "args": {"currency": "GBP"}}
        else:
            line = {"line_id": f"l{seq}", "item": "tea", "qty": 1, "unit_price": 250}
            part = {"name": "add_line", "args": line}
        ops.append(
            note_op(
                node,
                seq,
                collection="orders",
                record_id=f"o-{node}",
                kind="command",
                fields=None,
                **part,
            )
        )
    return Batch.of(node, ops)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server at {url} was not ready in 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def two_servers(
    make_postgres_database: Callable[[], str],
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, str, str]]:
    """Both processes start at once on a fresh database: they race to migrate it at
    start-up (an advisory lock makes one wait for the other)."""
    settings = Settings(
        database_url=make_postgres_database(),
        redis_url=redis_url,
        secret_key=secrets.token_urlsafe(32),
        redis_prefix="FYNLO_TEST_" + secrets.token_hex(4),
    ).with_(**NO_RATE_LIMITS)
    folder = tmp_path_factory.mktemp("two-servers")
    env = {**os.environ, **settings.to_env()}
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(2):
            port = free_port()
            log = folder / f"server-{index}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*SERVE, "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
        for index, (url, proc) in enumerate(zip(urls, procs, strict=True)):
            _wait_ready(url, proc, folder / f"server-{index}.log")
        yield settings, urls[0], urls[1]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_push_to_one_process_pokes_a_client_of_the_other(
    two_servers: tuple[Settings, str, str],
) -> None:
    settings, url_a, url_b = two_servers
    tenant = admin.create_tenant(settings, "two processes")
    pusher = HttpTransport.enroll(url_a, admin.enroll_device(settings, tenant).enrollment_code)
    watcher = HttpTransport.enroll(url_b, admin.enroll_device(settings, tenant).enrollment_code)
    other_tenant = admin.create_tenant(settings, "bystander")
    bystander = HttpTransport.enroll(
        url_b, admin.enroll_device(settings, other_tenant).enrollment_code
    )
    try:
        with PokeListener(watcher) as pokes, PokeListener(bystander) as quiet:
            assert pokes.next(10) == 0  # connected to B; the feed is empty
            assert quiet.next(10) == 0
            result = pusher.push(orders_batch(pusher.node_id, 1, 3))
            assert result.cursor == 3
            # Redis carried the poke from process A to the WebSocket on process B.
            assert pokes.next(10) == result.cursor
            page = watcher.pull(0, 100)  # B serves what A committed
            assert [c.op_id for c in page.changes] == [o.op_id for o in result.outcomes]
            # The other tenant's client on B heard nothing of it: its next poke is its own.
            bystander.push(orders_batch(bystander.node_id, 1, 1))
            assert quiet.next(10) == 1
            # And the other way round: a push to B pokes... a client of B, and A serves it.
            second = watcher.push(orders_batch(watcher.node_id, 1, 1))
            assert pokes.next(10) == second.cursor == 4
            assert pusher.pull(3, 100).cursor == 4
    finally:
        for link in (pusher, watcher, bystander):
            link.close()
