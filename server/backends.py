"""Where the server keeps its data: embedded SQLite or PostgreSQL, behind one async face.

* :class:`EmbeddedBackend`: the synchronous :class:`~fynlo_sync.store.SqliteServerStore`
  and :class:`~fynlo_sync.replica.ServerReplica`, every call on one worker thread (SQLite
  has one writer; one thread also keeps pulls from reading a push's open transaction).
* :class:`PostgresBackend`: :class:`~fynlo_sync.store.postgres.PostgresServerStore` and its
  :class:`~fynlo_sync.replica.AsyncServerReplica` on an asyncpg pool.

Both carry :class:`~server.accounts.Accounts` over the same database, and call
``notify(tenant, cursor)`` on the event loop after each commit that moved a tenant's feed.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
from prometheus_client import Counter

from fynlo_sync.effects import EffectRow, Settlement
from fynlo_sync.engine import Plan
from fynlo_sync.errors import MissingDependencyError
from fynlo_sync.ops import Record
from fynlo_sync.pages import PageCache
from fynlo_sync.plugins import Draft, Registry
from fynlo_sync.protocol import PushResult, WirePage
from fynlo_sync.replica import Authored, Compose, Read, ServerReplica, page_size
from fynlo_sync.store.base import Key
from fynlo_sync.store.sqlite import SqliteServerStore
from fynlo_sync.store.sqlport import PgSql, SqliteSql
from fynlo_sync.worker import EffectSource
from server import observe
from server.accounts import Accounts
from server.settings import Settings
from server.shared_pages import Lookup, SharedPages

__all__ = [
    "Backend",
    "EmbeddedBackend",
    "Notify",
    "PAGE_CACHE",
    "PostgresBackend",
    "SHARED_PAGES",
    "open_backend",
    "page_cache",
    "shared_pages",
]

T = TypeVar("T")

#: Called on the event loop with (tenant, new cursor) after a commit that moved the feed.
Notify = Callable[[str, int], None]


class Backend(Protocol):
    accounts: Accounts

    async def push(
        self, tenant: str, body: bytes, *, node_id: str | None, client_address: str | None = None
    ) -> PushResult: ...

    async def author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> PushResult:
        """Commit ops written by the server as node ``server`` (under the tenant's lock)."""
        ...

    def new_op_id(self) -> str: ...

    async def effect_rows(
        self, tenant: str | None = None, state: str | None = None
    ) -> list[EffectRow]: ...

    async def retry_effect(self, tenant: str, key: str) -> bool: ...

    async def pull(
        self, tenant: str, since: int, limit: int | None, *, compact: bool, node_id: str
    ) -> WirePage: ...

    async def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]: ...

    async def records(self, tenant: str, collection: str | None = None) -> list[Record]: ...

    async def high_water(self, tenant: str, node_id: str) -> int: ...

    async def cursor(self, tenant: str) -> int: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


#: Pull requests answered from the page cache, or not (one registry per process, like every
#: Prometheus metric; ``/metrics`` shows it).
PAGE_CACHE = Counter(
    "fynlo_page_cache_requests", "pull pages served from the page cache", ["result"]
)


def _count(hit: bool) -> None:
    PAGE_CACHE.labels("hit" if hit else "miss").inc()


def page_cache(settings: Settings) -> PageCache | None:
    """The process's cache of pull pages (``FYNLO_PAGE_CACHE_MB``; 0: none)."""
    if settings.page_cache_mb <= 0:
        return None
    return PageCache(max_bytes=settings.page_cache_mb * 1024 * 1024, on_lookup=_count)


#: Pull pages looked up in the Redis tier (``server.shared_pages``) by the processes.
SHARED_PAGES = Counter(
    "fynlo_page_cache_shared_requests",
    "pull pages looked up in the page cache shared through Redis",
    ["result"],
)


def _count_shared(what: Lookup) -> None:
    SHARED_PAGES.labels(what).inc()


def shared_pages(settings: Settings) -> SharedPages | None:
    """The page cache's tier shared through Redis: when ``FYNLO_REDIS_URL`` is set, the
    in-process cache is on and ``FYNLO_PAGE_CACHE_REDIS_TTL`` is not 0."""
    if not settings.redis_url or settings.page_cache_mb <= 0:
        return None
    if settings.page_cache_redis_ttl_s <= 0:
        return None
    try:
        from redis.asyncio import Redis
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    redis = Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return SharedPages(
        redis,
        prefix=settings.redis_prefix,
        ttl_s=settings.page_cache_redis_ttl_s,
        on_lookup=_count_shared,
    )


def _nothing() -> None:
    pass


def _accounts(db: Any, settings: Settings, now_ms: Callable[[], int]) -> Accounts:
    return Accounts(
        db,
        now_ms=now_ms,
        enrollment_ttl_s=settings.enrollment_ttl_s,
        refresh_ttl_s=settings.refresh_ttl_s,
        refresh_grace_s=settings.refresh_grace_s,
        refresh_max_lifetime_s=settings.refresh_max_lifetime_s,
        max_code_failures=settings.max_code_failures,
        ticket_ttl_s=settings.ws_ticket_ttl_s,
    )


class EmbeddedBackend:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        now_ms: Callable[[], int],
        notify: Notify,
        rng: random.Random | None = None,
    ) -> None:
        path = settings.sqlite_path
        if path not in ("", ":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.store = SqliteServerStore(path, busy_timeout_ms=settings.sqlite_busy_ms)
        self._notify = notify
        self.replica = ServerReplica(
            self.store,
            registry,
            max_batch=settings.max_batch,
            max_page=settings.max_page,
            limits=settings.limits,
            max_skew_ms=settings.max_clock_skew_ms,
            on_commit=self._committed,
            now_ms=now_ms,
            rng=rng,
            cache=page_cache(settings),
            policy=settings.effect_policy,
            inline_effects=False,
        )
        self.accounts = _accounts(
            SqliteSql(path, busy_timeout_ms=settings.sqlite_busy_ms), settings, now_ms
        )
        self._limiter = anyio.CapacityLimiter(1)
        #: Called on the event loop when a commit wrote effects (the worker's wake).
        self.effects_due: Callable[[], None] = _nothing

    def _committed(self, tenant: str, plan: Plan) -> None:
        # On the worker thread, inside replica.push: hand the poke to the event loop and
        # return at once (waiting for the loop made every push queue behind the fan-out to
        # every socket).
        self._loop.call_soon_threadsafe(self._notify, tenant, plan.cursor)
        if plan.effects:
            observe.effects_queued(len(plan.effects))
            self._loop.call_soon_threadsafe(self.effects_due)

    # -- the effect worker's source: store calls on the SQLite worker thread, handlers on
    # -- the event loop (a slow provider call holds no thread and no lock)

    async def claim_effects(self, limit: int) -> list[EffectRow]:
        return await self._run(self.replica.claim_effects, limit)

    async def attempt(self, row: EffectRow, read: Read) -> tuple[Settlement, Authored]:
        return await self.replica.attempt(row, read)

    async def read(self, tenant: str, collection: str, record_id: str) -> Record | None:
        return await self._run(self.replica.read, tenant, collection, record_id)

    async def finish_effect(
        self, row: EffectRow, settlement: Settlement, drafts: Authored = ()
    ) -> bool:
        return await self._run(self.replica.finish_effect, row, settlement, drafts)

    async def effect_rows(
        self, tenant: str | None = None, state: str | None = None
    ) -> list[EffectRow]:
        return await self._run(self.store.effect_rows, tenant, state)

    async def retry_effect(self, tenant: str, key: str) -> bool:
        done = await self._run(self.store.retry_effect, tenant, key, self.replica.now_ms())
        if done:
            self.effects_due()
        return done

    @property
    def effect_source(self) -> EffectSource:
        return self

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def start(self, migrate: bool) -> None:
        self._loop = asyncio.get_running_loop()
        # The store migrates when opened; the account tables follow.
        await self.accounts.migrate()

    async def push(
        self, tenant: str, body: bytes, *, node_id: str | None, client_address: str | None = None
    ) -> PushResult:
        return await self._run(
            self.replica.push, tenant, body, node_id=node_id, client_address=client_address
        )

    async def author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> PushResult:
        return await self._run(self.replica.author, tenant, drafts)

    def new_op_id(self) -> str:
        return self.replica.new_op_id()

    async def pull(
        self, tenant: str, since: int, limit: int | None, *, compact: bool, node_id: str
    ) -> WirePage:
        return await self._run(
            self.replica.pull_wire, tenant, since, limit, compact=compact, node_id=node_id
        )

    async def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        return await self._run(self.store.load, tenant, list(keys))

    async def records(self, tenant: str, collection: str | None = None) -> list[Record]:
        return await self._run(self.store.records, tenant, collection)

    async def high_water(self, tenant: str, node_id: str) -> int:
        return await self._run(self.store.high_water, tenant, node_id)

    async def cursor(self, tenant: str) -> int:
        return await self._run(self.store.cursor, tenant)

    async def ping(self) -> None:
        await self._run(self.store.cursor, "")

    async def close(self) -> None:
        await self.accounts.db.close()
        await self._run(self.store.close)


class PostgresBackend:
    def __init__(
        self,
        store: Any,
        replica: Any,
        accounts: Accounts,
        shared: SharedPages | None = None,
    ) -> None:
        self.store = store
        self.replica = replica
        self.accounts = accounts
        #: The page cache's tier shared with the other processes (None: this process only).
        self.shared = shared
        #: Pages being read from the database now, by (tenant, cursor, size, compacted).
        self._reading: dict[tuple[str, int, int, bool], asyncio.Future[WirePage | None]] = {}
        self.effects_due: Callable[[], None] = _nothing

    @property
    def effect_source(self) -> EffectSource:
        source: EffectSource = self.replica
        return source

    async def effect_rows(
        self, tenant: str | None = None, state: str | None = None
    ) -> list[EffectRow]:
        rows: list[EffectRow] = await self.store.effect_rows(tenant, state)
        return rows

    async def retry_effect(self, tenant: str, key: str) -> bool:
        done: bool = await self.store.retry_effect(tenant, key, self.replica.now_ms())
        if done:
            self.effects_due()
        return done

    @classmethod
    async def open(
        cls,
        settings: Settings,
        registry: Registry,
        now_ms: Callable[[], int],
        notify: Notify,
        rng: random.Random | None = None,
    ) -> PostgresBackend:
        from fynlo_sync.replica import AsyncServerReplica
        from fynlo_sync.store.postgres import PostgresServerStore

        store = await PostgresServerStore.connect(
            settings.database_url,
            max_size=settings.pg_pool_max,
            run_migrations=settings.migrate_on_start,
        )

        def committed(tenant: str, plan: Plan) -> None:
            notify(tenant, plan.cursor)
            if plan.effects:
                observe.effects_queued(len(plan.effects))
                backend.effects_due()

        replica = AsyncServerReplica(
            store,
            registry,
            max_batch=settings.max_batch,
            max_page=settings.max_page,
            limits=settings.limits,
            max_skew_ms=settings.max_clock_skew_ms,
            on_commit=committed,
            now_ms=now_ms,
            rng=rng,
            cache=page_cache(settings),
            policy=settings.effect_policy,
        )
        backend = cls(
            store, replica, _accounts(PgSql(store.pool), settings, now_ms), shared_pages(settings)
        )
        return backend

    async def start(self, migrate: bool) -> None:
        if migrate:
            await self.accounts.migrate()

    async def push(
        self, tenant: str, body: bytes, *, node_id: str | None, client_address: str | None = None
    ) -> PushResult:
        result: PushResult = await self.replica.push(
            tenant, body, node_id=node_id, client_address=client_address
        )
        return result

    async def author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> PushResult:
        result: PushResult = await self.replica.author(tenant, drafts)
        return result

    def new_op_id(self) -> str:
        value: str = self.replica.new_op_id()
        return value

    async def pull(
        self, tenant: str, since: int, limit: int | None, *, compact: bool, node_id: str
    ) -> WirePage:
        """The page from this process's cache, else from the cache the processes share
        (``server.shared_pages``), else from the database (then shared). Concurrent misses
        of one page in this process make one read: the others wait for it and take it if it
        has ``more`` (always still right, protocol 23.7), else read for themselves."""
        shared = self.shared
        page: WirePage
        size = page_size(since, limit, self.replica.max_page)
        max_bytes = self.replica.limits.max_page_bytes
        key = (tenant, since, size, compact)
        cache = self.replica.cache
        local = None if cache is None else cache.peek(key)
        if local is not None:
            page = await self.replica.pull_wire(
                tenant, since, limit, compact=compact, node_id=node_id
            )
            if shared is not None and (page.cursor, page.checksum) != (
                local.cursor,
                local.checksum,
            ):
                # This process's last page was out of date: share the one just read.
                await shared.put(shared.key(tenant, since, size, compact, max_bytes), page)
            return page
        # The node's high-water mark is read before the records (protocol 23.2).
        high_water: int | None = None
        if compact:
            high_water = await self.store.high_water(tenant, node_id)
        if shared is not None:
            entry = await shared.get(shared.key(tenant, since, size, compact, max_bytes))
            if entry is not None and (
                entry.more or await self.store.cursor(tenant) == entry.cursor
            ):
                shared.counted(True)
                if cache is not None:  # kept here too, without the requester's high-water mark
                    cache.put(key, shared.page(since, entry, compact=compact, high_water=None))
                return shared.page(since, entry, compact=compact, high_water=high_water)
            shared.counted(False)
        pending = self._reading.get(key)
        if pending is not None:
            first = await asyncio.shield(pending)
            if first is not None and first.more:
                PAGE_CACHE.labels("joined").inc()
                return msgspec.structs.replace(first, high_water=high_water)
            page = await self.replica.pull_wire(
                tenant, since, limit, compact=compact, node_id=node_id
            )
            return page
        reading: asyncio.Future[WirePage | None] = asyncio.get_running_loop().create_future()
        self._reading[key] = reading
        read: WirePage | None = None
        try:
            read = await self.replica.pull_wire(
                tenant, since, limit, compact=compact, node_id=node_id
            )
        finally:
            del self._reading[key]
            reading.set_result(
                None if read is None else msgspec.structs.replace(read, high_water=None)
            )
        if shared is not None:
            await shared.put(shared.key(tenant, since, size, compact, max_bytes), read)
        return read

    async def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        found: dict[Key, Record] = await self.store.load(tenant, list(keys))
        return found

    async def records(self, tenant: str, collection: str | None = None) -> list[Record]:
        rows: list[Record] = await self.store.records(tenant, collection)
        return rows

    async def high_water(self, tenant: str, node_id: str) -> int:
        value: int = await self.store.high_water(tenant, node_id)
        return value

    async def cursor(self, tenant: str) -> int:
        value: int = await self.store.cursor(tenant)
        return value

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
        await self.store.close()


async def open_backend(
    settings: Settings,
    registry: Registry,
    now_ms: Callable[[], int],
    notify: Notify,
    *,
    migrate: bool | None = None,
    rng: random.Random | None = None,
) -> EmbeddedBackend | PostgresBackend:
    """Open the database that ``settings`` names and (by default, per the settings) apply
    migrations."""
    run = settings.migrate_on_start if migrate is None else migrate
    if settings.kind == "postgres":
        if run != settings.migrate_on_start:
            settings = settings.with_(migrate_on_start=run)
        backend: EmbeddedBackend | PostgresBackend = await PostgresBackend.open(
            settings, registry, now_ms, notify, rng
        )
    else:
        backend = EmbeddedBackend(settings, registry, now_ms, notify, rng)
    try:
        await backend.start(run)
    except BaseException:
        await backend.close()
        raise
    return backend
