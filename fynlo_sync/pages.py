"""A cache of pull pages for the moments many terminals ask for the same ones (a reconnect
storm, a fleet of new tills bootstrapping from a snapshot).

``docs/protocol.md`` 23.7: a page with ``more`` true never stops being a correct page for
its (tenant, cursor, limit, kind): a feed page never changes, and a later commit can only
move a record *out* of a compacted page, to a later version that a later page carries. So
such pages are kept until evicted (least recently used, bounded by bytes). A last page
(``more`` false) is served from the cache only while the tenant's cursor still equals the
page's cursor. The node's ``high_water`` is never cached: the caller adds it per request.

Pure: no I/O, no clock; the caller says what the tenant's cursor is now.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from fynlo_sync.protocol import WirePage

__all__ = ["PageCache", "PageKey"]

#: (tenant, since, limit, compacted)
PageKey = tuple[str, int, int, bool]


@dataclass(slots=True)
class PageCache:
    """Pages by :data:`PageKey`, at most ``max_bytes`` of page bodies."""

    max_bytes: int = 64 * 1024 * 1024
    hits: int = 0
    misses: int = 0
    size: int = 0
    #: Told of every lookup (True: a hit), e.g. to count them in a metric.
    on_lookup: Callable[[bool], None] | None = None
    _pages: OrderedDict[PageKey, WirePage] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._pages)

    def peek(self, key: PageKey) -> WirePage | None:
        """The page cached for ``key``, if any, without counting a lookup (a caller with a
        last page in hand reads the tenant's cursor before :meth:`get`)."""
        return self._pages.get(key)

    def get(self, key: PageKey, cursor_now: int | None) -> WirePage | None:
        """The cached page for ``key`` if it is still the right answer: a page with more
        after it always is; a last page only when ``cursor_now`` (the tenant's feed cursor,
        read now) is its cursor."""
        page = self._pages.get(key)
        if page is not None and (page.more or cursor_now == page.cursor):
            self._pages.move_to_end(key)
            self.hits += 1
            if self.on_lookup is not None:
                self.on_lookup(True)
            return page
        self.misses += 1
        if self.on_lookup is not None:
            self.on_lookup(False)
        return None

    def put(self, key: PageKey, page: WirePage) -> None:
        if self.max_bytes <= 0:
            return
        cost = len(page.changes)
        if cost > self.max_bytes:
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self.size -= len(old.changes)
        self._pages[key] = page
        self.size += cost
        while self.size > self.max_bytes:
            _, evicted = self._pages.popitem(last=False)
            self.size -= len(evicted.changes)

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0
