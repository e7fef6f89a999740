"""The page cache's second tier, shared by the server processes through Redis
(``FYNLO_REDIS_URL``; ``docs/scaling.md``): what a reconnect storm asks for again and again
is read from the database once for the whole deployment, not once per process.

What is kept is the part of a pull page that does not depend on who asks: the stored change
bytes of a page, its cursor, ``more`` and checksum, for (protocol version, tenant, cursor,
page size, compacted or not, page byte limit). The node's ``high_water`` is never kept: the
caller reads it for each request. An entry is the page a server answered, so it is served
under the same rule as the in-process cache (``docs/protocol.md`` 23.7): a page with
``more`` is always still a right answer; a last page only while the tenant's cursor is
still the page's cursor (the caller reads it). Entries expire (``FYNLO_PAGE_CACHE_REDIS_TTL``).

Redis is an accelerator here, never a dependency: any Redis error, or an entry whose bytes
do not match its checksum, is a miss (counted as ``error``) and the page is read from the
database; a pull never fails because of the cache. After an error Redis is left alone for
``pause_s`` (lookups in that time are counted as ``off``), so that a Redis that is away or
slow costs one timeout every few seconds, not one per pull.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from fynlo_sync.protocol import PROTOCOL_VERSION, WirePage

__all__ = ["Entry", "Lookup", "SharedPages", "decode_entry", "encode_entry"]

#: What one lookup found: ``hit``, ``miss`` (nothing, or a last page the feed moved past),
#: ``error`` (Redis failed or the entry was damaged; the database answers), or ``off``
#: (Redis failed a moment ago and was not asked).
Lookup = Literal["hit", "miss", "error", "off"]


@dataclass(frozen=True, slots=True)
class Entry:
    """The requester-independent part of a page."""

    cursor: int
    more: bool
    checksum: str
    changes: bytes


def encode_entry(page: WirePage) -> bytes:
    """``<cursor> <more 0|1> <md5 hex>\\n`` then the page's change bytes."""
    head = f"{page.cursor} {int(page.more)} {page.checksum}\n".encode()
    return head + bytes(page.changes)


def decode_entry(value: bytes) -> Entry | None:
    """The entry in ``value``, or None when it is not one whose bytes match its checksum."""
    head, sep, changes = value.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[1] not in (b"0", b"1"):
        return None
    try:
        cursor = int(parts[0])
        checksum = parts[2].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if hashlib.md5(changes, usedforsecurity=False).hexdigest() != checksum:
        return None
    return Entry(cursor=cursor, more=parts[1] == b"1", checksum=checksum, changes=changes)


class SharedPages:
    """Pages in Redis under ``<prefix>:page:...`` keys that expire after ``ttl_s``."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        ttl_s: int,
        on_lookup: Callable[[Lookup], None] | None = None,
        pause_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.on_lookup = on_lookup
        self.pause_s = pause_s
        self.clock = clock
        self._paused_until: float | None = None

    def _available(self) -> bool:
        if self._paused_until is None:
            return True
        if self.clock() < self._paused_until:
            return False
        self._paused_until = None
        return True

    def _failed(self) -> None:
        self._paused_until = self.clock() + self.pause_s
        self._told("error")

    def key(self, tenant: str, since: int, size: int, compact: bool, max_bytes: int | None) -> str:
        """The tenant comes last, after its length, so no tenant id can make another's key."""
        limit = "-" if max_bytes is None else str(max_bytes)
        kind = "c" if compact else "f"
        return (
            f"{self.prefix}:page:v{PROTOCOL_VERSION}:{kind}:{size}:{limit}:{since}"
            f":{len(tenant)}:{tenant}"
        )

    def _told(self, what: Lookup) -> None:
        if self.on_lookup is not None:
            self.on_lookup(what)

    async def get(self, key: str) -> Entry | None:
        """The entry under ``key``; None (a miss, or an error told to ``on_lookup``) when
        there is none or Redis cannot say. The caller tells :meth:`counted` how it ended."""
        if not self._available():
            self._told("off")
            return None
        try:
            value = await self.redis.get(key)
        except Exception:  # any Redis failure: the database answers
            self._failed()
            return None
        if value is None:
            return None
        entry = decode_entry(bytes(value))
        if entry is None:
            self._told("error")
        return entry

    def counted(self, hit: bool) -> None:
        """Tell ``on_lookup`` how a lookup that reached Redis ended."""
        self._told("hit" if hit else "miss")

    async def put(self, key: str, page: WirePage) -> None:
        if not self._available():
            return
        try:
            await self.redis.set(key, encode_entry(page), ex=self.ttl_s)
        except Exception:  # any Redis failure: the page was served anyway
            self._failed()

    def page(self, since: int, entry: Entry, *, compact: bool, high_water: int | None) -> WirePage:
        return WirePage(
            since=since,
            cursor=entry.cursor,
            more=entry.more,
            changes=msgspec.Raw(entry.changes),
            checksum=entry.checksum,
            compacted=compact,
            high_water=high_water,
        )

    async def close(self) -> None:
        await self.redis.aclose()
