"""Pokes between server processes through PostgreSQL's LISTEN/NOTIFY, for deployments on
PostgreSQL without Redis: Litestar's :class:`AsyncPgChannelsBackend` (one listening
connection per process), publishing through a small pool of its own (Litestar's opens a
connection per message) and with channel names PostgreSQL accepts (an identifier is at most
63 bytes, a tenant id up to 128: a tenant's channel is ``fynlo_`` and a hash of its name).

A poke carries only a cursor, so NOTIFY's 8000-byte payload limit is far away. As with
Redis, a lost poke costs latency, not data: terminals also pull on reconnect and on a timer.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import asyncpg
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend

from fynlo_sync.store.postgres import asyncpg_dsn

__all__ = ["PostgresPokes", "pg_channel"]


def pg_channel(name: str) -> str:
    """A PostgreSQL channel for a Channels name: short, lower-case, stable."""
    return "fynlo_" + hashlib.blake2b(name.encode(), digest_size=12).hexdigest()


class PostgresPokes(AsyncPgChannelsBackend):
    def __init__(self, url: str) -> None:
        self._dsn = asyncpg_dsn(url)
        super().__init__(dsn=self._dsn)
        self._names: dict[str, str] = {}
        self._pool: Any = None

    async def on_startup(self) -> None:
        await super().on_startup()
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)

    async def on_shutdown(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await super().on_shutdown()

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
        await super().subscribe(self._map(channels))

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        await super().unsubscribe([pg_channel(name) for name in channels])

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        async for channel, message in super().stream_events():
            yield self._names.get(channel, channel), message  # the name subscribers know
