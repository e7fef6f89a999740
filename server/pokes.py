"""Pokes through Litestar Channels: in-process (memory backend) by default; through Redis
pub/sub when ``FYNLO_REDIS_URL`` is set, so a push on one server process pokes terminals
connected to another. A poke carries only the tenant's new feed cursor; terminals pull.
Redis is never the only copy of anything: a lost poke costs latency, not data (terminals
also pull on reconnect and on a timer)."""

from __future__ import annotations

from typing import Any

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend

from fynlo_sync.errors import MissingDependencyError
from fynlo_sync.protocol import Poke, encode
from server.settings import Settings

__all__ = ["channel_for", "make_channels", "poke_bytes", "redis_client"]


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


def make_channels(settings: Settings, redis: Any) -> ChannelsPlugin:
    backend: ChannelsBackend
    if redis is None:
        backend = MemoryChannelsBackend()
    else:
        from litestar.channels.backends.redis import RedisChannelsPubSubBackend

        backend = RedisChannelsPubSubBackend(redis=redis, key_prefix=settings.redis_prefix)
    return ChannelsPlugin(
        backend=backend, arbitrary_channels_allowed=True, create_ws_route_handlers=False
    )
