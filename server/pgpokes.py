"""Pokes between server processes through PostgreSQL's LISTEN/NOTIFY, for deployments on
PostgreSQL without Redis: Litestar's :class:`AsyncPgChannelsBackend` (one listening
connection per process), publishing through a small pool of its own (Litestar's opens a
connection per message) and with channel names PostgreSQL accepts (an identifier is at most
63 bytes, a tenant id up to 128: a tenant's channel is ``fynlo_`` and a hash of its name).

A poke carries only a cursor, so NOTIFY's 8000-byte payload limit is far away. As with
Redis, a lost poke costs latency, not data: terminals also pull on reconnect and on a timer.

**The listening connection is kept.** When it drops (the database restarted, a failover, an
idle-connection killer, ``pg_terminate_backend``), a watcher (woken by asyncpg's
termination callback, and checking every ``check_s`` anyway) opens a new one and LISTENs on
every channel again, retrying with exponential backoff (``backoff_s`` doubling to
``backoff_cap_s``) while the database is away. Pokes NOTIFYed in the gap are lost (see
above); ``fynlo_pg_listen_reconnects_total`` counts the reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import asyncpg
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend
from prometheus_client import Counter

from fynlo_sync.store.postgres import asyncpg_dsn

__all__ = ["LISTEN_RECONNECTS", "PostgresPokes", "pg_channel"]

_log = logging.getLogger("fynlo.server.pokes")

#: Times a process re-opened its LISTEN connection after it dropped.
LISTEN_RECONNECTS = Counter(
    "fynlo_pg_listen_reconnects", "LISTEN connections re-opened after they dropped"
)


def pg_channel(name: str) -> str:
    """A PostgreSQL channel for a Channels name: short, lower-case, stable."""
    return "fynlo_" + hashlib.blake2b(name.encode(), digest_size=12).hexdigest()


class PostgresPokes(AsyncPgChannelsBackend):
    def __init__(
        self,
        url: str,
        *,
        check_s: float = 1.0,
        backoff_s: float = 0.1,
        backoff_cap_s: float = 5.0,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        super().__init__(dsn=self._dsn)
        self._names: dict[str, str] = {}
        self._pool: Any = None
        self.check_s = check_s
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self._dropped = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def on_startup(self) -> None:
        await super().on_startup()
        self._listener_conn.add_termination_listener(self._on_terminated)
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
        self._watcher = asyncio.get_running_loop().create_task(
            self._keep_listening(), name="fynlo-pg-listen"
        )

    async def on_shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await super().on_shutdown()

    def _on_terminated(self, connection: Any) -> None:
        if connection is self._listener_conn:
            self._dropped.set()

    async def _keep_listening(self) -> None:
        """Re-open the LISTEN connection whenever it is found closed (see the module)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dropped.wait(), self.check_s)
            if not self._listener_conn.is_closed():
                self._dropped.clear()
                continue
            delay = self.backoff_s
            while True:
                try:
                    await self._relisten()
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    _log.warning(
                        "the LISTEN connection is down (%s); retrying in %.1f s",
                        type(exc).__name__,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_cap_s)
            self._dropped.clear()
            LISTEN_RECONNECTS.inc()
            _log.info(
                "re-opened the LISTEN connection (%d channels)", len(self._subscribed_channels)
            )

    async def _relisten(self) -> None:
        async with self._listener_lock:
            conn = await self._connect()
            try:
                for channel in self._subscribed_channels:
                    await conn.add_listener(channel, self._listener)
            except BaseException:
                await conn.close()
                raise
            conn.add_termination_listener(self._on_terminated)
            self._listener_conn = conn

    def _map(self, channels: Iterable[str]) -> list[str]:
        out = []
        for name in channels:
            channel = pg_channel(name)
            self._names[channel] = name
            out.append(channel)
        return out

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        if self._pool is None:
            raise RuntimeError("the pokes backend is not started")
        text = data.decode("utf-8")
        for channel in self._map(channels):
            await self._pool.execute("SELECT pg_notify($1, $2)", channel, text)

    async def subscribe(self, channels: Iterable[str]) -> None:
        """LISTEN on each new channel; while the connection is down, only remember it (the
        re-opened connection LISTENs on every remembered channel)."""
        async with self._listener_lock:
            for channel in set(self._map(channels)) - self._subscribed_channels:
                self._subscribed_channels.add(channel)
                if self._listener_conn.is_closed():
                    self._dropped.set()
                    continue
                try:
                    await self._listener_conn.add_listener(channel, self._listener)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self._dropped.set()  # the watcher re-opens it, with this channel

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        async with self._listener_lock:
            for channel in {pg_channel(name) for name in channels} & self._subscribed_channels:
                self._subscribed_channels.discard(channel)
                if not self._listener_conn.is_closed():
                    with contextlib.suppress(
                        OSError, asyncpg.PostgresError, asyncpg.InterfaceError
                    ):
                        await self._listener_conn.remove_listener(channel, self._listener)

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        async for channel, message in super().stream_events():
            yield self._names.get(channel, channel), message  # the name subscribers know
