"""Pokes through Litestar Channels: through Redis pub/sub when ``FYNLO_REDIS_URL`` is set,
else through PostgreSQL's LISTEN/NOTIFY on PostgreSQL (:mod:`server.pgpokes`), so a push on
one server process pokes terminals connected to another; in-process (memory) only for the
embedded database without Redis, which ``fynlo serve`` runs in one process. A poke
carries only the tenant's new feed cursor; terminals pull.
Redis is never the only copy of anything: a lost poke costs latency, not data (terminals
also pull on reconnect and on a timer).

:class:`PokeHub` fans pokes out inside a process: one subscription per tenant, each poke
decoded once, and per socket one slot holding the newest poke it has not sent (pokes
coalesce; there is no per-socket queue of messages)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend

from fynlo_sync.errors import MissingDependencyError
from fynlo_sync.protocol import Poke, encode
from server.settings import Settings

if TYPE_CHECKING:
    from litestar.channels import Subscriber

    from server.accounts import DeviceState

__all__ = [
    "Outlet",
    "PokeHub",
    "channel_for",
    "make_channels",
    "poke_bytes",
    "pokes_backend",
    "redis_client",
]

_poke_decoder = msgspec.json.Decoder(Poke)


def channel_for(tenant: str) -> str:
    """The channel of a tenant's pokes. (Litestar's Redis backend upper-cases channel names;
    tenant ids made by the server are lower-case hex, so they never collide.)"""
    return f"tenant.{tenant}"


def poke_bytes(cursor: int) -> bytes:
    return encode(Poke(cursor=cursor))


def redis_client(settings: Settings) -> Any:
    if not settings.redis_url:
        return None
    try:
        from redis.asyncio import Redis
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    return Redis.from_url(settings.redis_url)


def _prefixed_pubsub(redis: Any, prefix: str) -> ChannelsBackend:
    """Litestar's Redis pub/sub backend takes a ``key_prefix`` but its pub/sub channels do
    not use it, so two deployments sharing one Redis poked each other's tenants. This one
    puts ``<prefix>:`` in front of every channel it subscribes and publishes to, and takes it
    off the messages it yields."""
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend

    head = prefix + ":"

    class Prefixed(RedisChannelsPubSubBackend):
        async def subscribe(self, channels: Iterable[str]) -> None:
            await super().subscribe([head + c for c in channels])

        async def unsubscribe(self, channels: Iterable[str]) -> None:
            await super().unsubscribe([head + c for c in channels])

        async def publish(self, data: bytes, channels: Iterable[str]) -> None:
            await super().publish(data, [head + c for c in channels])

        async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
            async for channel, data in super().stream_events():
                if channel.startswith(head):
                    yield channel[len(head) :], data

    return Prefixed(redis=redis, key_prefix=prefix)


def pokes_backend(settings: Settings) -> str:
    """Which backend carries pokes between processes: ``redis`` when FYNLO_REDIS_URL is
    set, else ``postgres`` (LISTEN/NOTIFY) on PostgreSQL, else ``memory`` (one process
    only: ``fynlo serve`` refuses several workers with it)."""
    if settings.redis_url:
        return "redis"
    return "postgres" if settings.kind == "postgres" else "memory"


def make_channels(settings: Settings, redis: Any) -> ChannelsPlugin:
    backend: ChannelsBackend
    kind = pokes_backend(settings)
    if kind == "redis":
        backend = _prefixed_pubsub(redis, settings.redis_prefix)
    elif kind == "postgres":
        from server.pgpokes import PostgresPokes

        backend = PostgresPokes(settings.database_url)
    else:
        backend = MemoryChannelsBackend()
    return ChannelsPlugin(
        backend=backend, arbitrary_channels_allowed=True, create_ws_route_handlers=False
    )


class Outlet:
    """One poke socket: the newest poke it has not sent yet (coalesced: a later cursor
    replaces an unsent earlier one, since only the newest matters) and a wake-up."""

    __slots__ = ("cursor", "epoch", "node_id", "text", "wake")

    def __init__(self, node_id: str, epoch: int) -> None:
        self.node_id = node_id
        self.epoch = epoch
        self.cursor = -1
        self.text = ""
        self.wake = asyncio.Event()

    def offer(self, cursor: int, text: str) -> None:
        if cursor > self.cursor:
            self.cursor = cursor
            self.text = text
            self.wake.set()

    async def next(self) -> str:
        """Wait for a poke not yet sent; return its text."""
        await self.wake.wait()
        self.wake.clear()
        return self.text


class _Tenant:
    """A tenant's sockets in this process, their one subscription, and the verdicts of
    the last revocation check (one query for every device of the tenant)."""

    def __init__(self, now: float) -> None:
        self.outlets: set[Outlet] = set()
        self.subscriber: Subscriber | None = None
        self.task: asyncio.Task[None] | None = None
        self.valid: dict[tuple[str, int], bool] = {}
        self.checked = now
        self.checking: asyncio.Future[None] | None = None


class PokeHub:
    """Pokes to every poke socket of this process. One Channels subscription per tenant
    (not per socket); each poke is decoded once and offered to each socket's
    :class:`Outlet`, whose sender writes only the newest unsent cursor. Whether a socket's
    device is still valid (not revoked, same token epoch) is checked for the whole tenant
    at once, at most every ``recheck_s`` seconds, so a revoked device's socket closes at
    its next poke after that."""

    def __init__(
        self,
        channels: ChannelsPlugin,
        devices: Callable[[str], Awaitable[list[DeviceState]]],
        *,
        recheck_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channels = channels
        self._devices = devices
        self._recheck_s = recheck_s
        self._monotonic = monotonic
        self._tenants: dict[str, _Tenant] = {}

    def sockets(self, tenant: str) -> int:
        found = self._tenants.get(tenant)
        return 0 if found is None else len(found.outlets)

    @asynccontextmanager
    async def attach(self, tenant: str, node_id: str, epoch: int) -> AsyncIterator[Outlet]:
        """A socket of ``tenant`` joins until the block ends."""
        outlet = Outlet(node_id, epoch)
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _Tenant(self._monotonic())
        entry.outlets.add(outlet)
        # The socket was authenticated just now: its device is valid until the next check.
        entry.valid.setdefault((node_id, epoch), True)
        if entry.subscriber is None:
            entry.subscriber = await self._channels.subscribe([channel_for(tenant)])
            entry.task = asyncio.create_task(self._relay(entry, entry.subscriber))
        try:
            yield outlet
        finally:
            entry.outlets.discard(outlet)
            if not entry.outlets and self._tenants.get(tenant) is entry:
                del self._tenants[tenant]
                if entry.task is not None:
                    entry.task.cancel()
                if entry.subscriber is not None:
                    await self._channels.unsubscribe(entry.subscriber)

    async def _relay(self, entry: _Tenant, subscriber: Subscriber) -> None:
        async for data in subscriber.iter_events():
            try:
                cursor = _poke_decoder.decode(data).cursor
            except msgspec.DecodeError:
                continue  # not a poke (nothing else is published on these channels)
            text = data.decode()
            for outlet in entry.outlets:
                outlet.offer(cursor, text)

    async def valid(self, tenant: str, outlet: Outlet) -> bool:
        """Is the outlet's device still allowed (checked per tenant, at most every
        ``recheck_s``)?"""
        entry = self._tenants.get(tenant)
        if entry is None:
            return False
        if self._monotonic() - entry.checked >= self._recheck_s:
            if entry.checking is None:
                entry.checking = asyncio.get_running_loop().create_future()
                try:
                    states = await self._devices(tenant)
                    entry.valid = {(s.node_id, s.epoch): not s.revoked for s in states}
                    entry.checked = self._monotonic()
                finally:
                    entry.checking.set_result(None)
                    entry.checking = None
            else:
                await asyncio.shield(entry.checking)
        return entry.valid.get((outlet.node_id, outlet.epoch), False)
