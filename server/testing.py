"""Run the real server in-process, on a free loopback port, for demos, simulators and tests.

    from server.testing import LocalServer

    with LocalServer.start(folder) as srv:          # embedded SQLite in ``folder``
        tenant = srv.create_tenant("cafe")
        link = srv.connect(tenant)                   # an enrolled HttpTransport
        ...                                          # srv.url is http://127.0.0.1:PORT

:func:`run_in_thread` is the lower-level piece: any :class:`~server.settings.Settings`
(Postgres too), yielding the base URL. The server runs under uvicorn on a daemon thread and
stops when the block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from fynlo_sync.plugins import Registry
from fynlo_sync.sandbox.ports import free_port
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.accounts import Enrollment
from server.app import create_app
from server.serving import listeners, uvicorn_options
from server.settings import Settings

__all__ = ["NO_RATE_LIMITS", "LocalServer", "embedded_settings", "free_port", "run_in_thread"]


#: Demos, simulators and benchmarks drive hundreds of terminals from one address: no rate
#: limits unless a caller asks for them.
NO_RATE_LIMITS: dict[str, int] = {
    "rate_device_per_min": 0,
    "rate_tenant_per_min": 0,
    "rate_anon_per_min": 0,
    "max_pushes_in_flight_per_tenant": 0,
}


def embedded_settings(folder: str | Path, **overrides: Any) -> Settings:
    """Settings for an embedded server: SQLite at ``folder/server.db``, a throwaway key, no
    rate limits (see :data:`NO_RATE_LIMITS`)."""
    path = Path(folder).resolve() / "server.db"
    base = Settings(database_url=f"sqlite:///{path}", env="dev").with_(**NO_RATE_LIMITS)
    return base.with_(**overrides) if overrides else base


@contextmanager
def run_in_thread(
    settings: Settings,
    *,
    registry: Registry | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 20.0,
    wall: Callable[[], int] | None = None,
) -> Iterator[str]:
    """Serve ``create_app(settings)`` on ``host:port`` (0: any free port) on a thread;
    yields the base URL (``http://127.0.0.1:PORT``). With ``settings.internal_port`` set,
    ``/metrics`` and ``/schema`` are served on that port instead."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and sockets accepted from a proto-0 listener said 0, so every response written in two
    # parts waited ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    app = create_app(settings, registry=registry, wall=wall)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    socks = listeners(settings, sock)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": socks}, name=f"fynlo-server-{bound}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            for each in socks:
                each.close()
            raise RuntimeError(f"the server on {host}:{bound} did not start (see its log)")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        for each in socks:
            each.close()


@dataclass
class LocalServer:
    """A running server and the admin calls a demo needs."""

    url: str
    settings: Settings

    @classmethod
    @contextmanager
    def start(
        cls, folder: str | Path, *, registry: Registry | None = None, **overrides: Any
    ) -> Iterator[LocalServer]:
        settings = embedded_settings(folder, **overrides)
        with run_in_thread(settings, registry=registry) as url:
            yield cls(url, settings)

    def create_tenant(self, name: str, tenant_id: str | None = None) -> str:
        return admin.create_tenant(self.settings, name, tenant_id)

    def enroll(self, tenant_id: str, node_id: str | None = None) -> Enrollment:
        return admin.enroll_device(self.settings, tenant_id, node_id)

    def revoke(self, tenant_id: str, node_id: str) -> None:
        admin.revoke_device(self.settings, tenant_id, node_id)

    def connect(self, tenant_id: str, node_id: str | None = None) -> HttpTransport:
        """Enroll a device and redeem its code: an authenticated transport."""
        return HttpTransport.enroll(self.url, self.enroll(tenant_id, node_id).enrollment_code)
