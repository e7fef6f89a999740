"""Real servers for the benchmarks that need one: ``uvicorn`` child processes serving
``server.app:app_from_env`` on 127.0.0.1, on embedded SQLite or a throwaway PostgreSQL
database, optionally with Redis between processes; and enrolled devices to talk to them.

Everything is bounded: a server that does not answer ``/health/live`` within 30 s is
killed and its log tail reported; every database made here is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.context import Context

__all__ = [
    "ServerProcess",
    "Skip",
    "enroll",
    "need_postgres",
    "need_redis",
    "need_server",
    "postgres_database",
    "server_settings",
    "serve",
]


class Skip(Exception):
    """A benchmark cannot run here; the message says how to make it run."""


def need_server() -> None:
    try:
        import server.app
        import server.testing  # noqa: F401
    except ImportError as exc:
        raise Skip(
            f"the server is not importable ({exc}); install it: `pip install -e '.[server]'`"
        ) from exc


def need_postgres(ctx: Context) -> str:
    url = ctx.postgres_url
    if not url:
        raise Skip("no PostgreSQL URL: set FYNLO_BENCH_POSTGRES_URL or --postgres-url")
    try:
        import asyncpg
    except ImportError as exc:
        raise Skip("asyncpg is missing: `pip install -e '.[postgres]'`") from exc

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        raise Skip(
            f"PostgreSQL is not reachable at {url} ({type(exc).__name__}: {exc}); start one "
            "or point FYNLO_BENCH_POSTGRES_URL at one"
        ) from exc
    return url


def need_redis(ctx: Context) -> str:
    url = ctx.redis_url
    if not url:
        raise Skip("no Redis URL: set FYNLO_BENCH_REDIS_URL or --redis-url")
    try:
        import redis
    except ImportError as exc:
        raise Skip("redis is missing: `pip install -e '.[redis]'`") from exc
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        raise Skip(f"Redis is not reachable at {url} ({type(exc).__name__}: {exc})") from exc
    return url


@contextmanager
def postgres_database(admin_url: str, label: str) -> Iterator[str]:
    """A fresh database ``fynlo_bench_<label>_<random>``, dropped at the end."""
    import asyncpg

    name = f"fynlo_bench_{label}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def server_settings(database_url: str, redis_url: str | None = None, **extra: Any) -> Any:
    from server.settings import Settings
    from server.testing import NO_RATE_LIMITS

    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secrets.token_urlsafe(32),
        access_ttl_s=3600,
        redis_prefix=f"FYNLOBENCH{secrets.token_hex(3).upper()}",
        **{**NO_RATE_LIMITS, **extra},
    )


@dataclass
class ServerProcess:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            if os.environ.get("FYNLO_BENCH_PROFILE_SERVERS"):
                self.proc.send_signal(signal.SIGINT)  # cProfile writes its file on SIGINT
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-1500:]
        return ""


def _free_port() -> int:
    from server.testing import free_port

    return free_port()


@contextmanager
def serve(ctx: Context, settings: Any, name: str, *, count: int = 1) -> Iterator[list[str]]:
    """``count`` server processes on the same settings (and database); yields their URLs."""
    need_server()
    procs: list[ServerProcess] = []
    env = {**os.environ, **settings.to_env()}
    try:
        for i in range(count):
            procs.append(_start(ctx, env, name, i))
        yield [p.url for p in procs]
    finally:
        for p in procs:
            p.stop()


def _start(ctx: Context, env: dict[str, str], name: str, index: int) -> ServerProcess:
    """One server process on a free port, checked to be the one listening there: on a
    machine where other suites start servers on free ports too, another may take the port
    first (this one then fails to bind while the other answers its health check)."""
    for attempt in range(3):
        port = _free_port()
        log = ctx.work / f"server-{name}-{index}.log"
        with log.open("wb") as out:
            profile = os.environ.get("FYNLO_BENCH_PROFILE_SERVERS")
            prefix = (
                ["-m", "cProfile", "-o", str(Path(profile) / f"server-{name}-{index}.prof")]
                if profile
                else []
            )
            proc = subprocess.Popen(
                [
                    sys.executable,
                    *prefix,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "server.app:app_from_env",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--ws",
                    "websockets-sansio",
                    "--ws-per-message-deflate",
                    "false",  # as server.serving.uvicorn_options
                    "--ws-ping-interval",
                    "0",
                    "--timeout-keep-alive",
                    "30",
                ],
                cwd=ctx.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = ServerProcess(f"http://127.0.0.1:{port}", port, proc, log)
        try:
            _wait_ready(server)
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
            continue
        if _listens(proc.pid, port) is not False:
            return server
        server.stop()  # someone else's server holds the port: another port
    raise RuntimeError(f"no free port for server {name}-{index} after 3 tries")


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the listening socket of ``port`` (``None``: this
    system has no ``/proc`` to tell)."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as f:
                for line in list(f)[1:]:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    links = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return any(f"socket:[{inode}]" in links for inode in inodes)


def _wait_ready(server: ServerProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited at start: {server.log_tail()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(server.url + "/health/live", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not answer within {timeout} s: {server.log_tail()}")


def enroll(settings: Any, name: str, node_ids: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Create a tenant and enrollment codes for ``node_ids`` in one database session."""
    from server.admin import open_accounts

    async def work() -> tuple[str, dict[str, str]]:
        async with open_accounts(settings) as accounts:
            tenant: str = await accounts.create_tenant(name)
            codes = {}
            for node in node_ids:
                codes[node] = (await accounts.enroll(tenant, node)).enrollment_code
            return tenant, codes

    return asyncio.run(work())
