"""The server replica loop, once: a sans-I/O step driven by a sync and an async adapter.

A step is a generator that yields :class:`Call` values (a store method and its arguments)
and receives their answers; it never touches a store itself. :func:`push_step` is the
whole push (high-water mark, stored outcomes of replayed seqs, touched records, cursor,
plan, commit), :func:`author_step` the same push for ops the server itself writes (as node
``server``: seqs allocated under the tenant's lock), :func:`pull_step` one page (of the
feed, or compacted: ``docs/protocol.md`` section 23), :func:`wire_step` the same page as
sent, made of the canonical bytes stored at commit and served from a :class:`PageCache`
when another terminal asked for it before.

:class:`ServerReplica` drives steps over a synchronous
:class:`~fynlo_sync.store.base.ServerStore` (SQLite, memory, the blocking Postgres port);
:class:`AsyncServerReplica` awaits them over an
:class:`~fynlo_sync.store.base.AsyncServerStore` (Postgres). Everything else (decoding the
body, the envelope check, the answer, the page) is shared, so the two cannot diverge.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from fynlo_sync.engine import Plan, actor_keys, plan_push
from fynlo_sync.errors import CallerError, ClockError, MalformedError
from fynlo_sync.hlc import HybridClock, from_wire, to_wire
from fynlo_sync.ops import Batch, Change, Op, Record
from fynlo_sync.pages import PageCache
from fynlo_sync.plugins import SERVER_NODE, Draft, Registry
from fynlo_sync.protocol import (
    DEFAULT_MAX_BATCH,
    PullPage,
    PushResult,
    WirePage,
    check_batch,
    decode_batch,
    page_checksum,
    wire_page,
)
from fynlo_sync.store.base import AsyncServerStore, Key, ServerStore, iter_keys

__all__ = [
    "DEFAULT_MAX_PAGE",
    "AsyncServerReplica",
    "Call",
    "Compose",
    "ServerReplica",
    "author_step",
    "compacted",
    "make_page",
    "page_size",
    "pull_step",
    "push_step",
    "wire_step",
]

DEFAULT_MAX_PAGE = 1000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """What a step needs from the store: ``store.<method>(*args)``, answered by the driver."""

    method: str
    args: tuple[Any, ...]


#: A step: yields calls, receives their answers, returns its result.
Step = Generator[Call, Any, T]


@dataclass(frozen=True, slots=True)
class Compose:
    """Drafts decided under the tenant's lock: ``build`` gets the current records of
    ``keys`` (missing keys never existed) and returns the drafts to author."""

    keys: Sequence[Key]
    build: Callable[[Mapping[Key, Record]], Sequence[Draft]]


def push_step(
    tenant: str, batch: Batch, registry: Registry, *, received_ms: int | None = None
) -> Step[Plan]:
    """One push in the tenant's transaction. The batch has passed ``check_batch``."""
    high_water: int = yield Call("high_water", (tenant, batch.node_id))
    replayed = [op.seq for op in batch.ops if op.seq <= high_water]
    prior = yield Call("prior_outcomes", (tenant, batch.node_id, replayed))
    keys = [*iter_keys(batch.ops), *actor_keys(batch.ops, registry)]
    rows = yield Call("load", (tenant, keys))
    cursor: int = yield Call("cursor", (tenant,))
    plan = plan_push(
        batch,
        high_water=high_water,
        prior=prior,
        rows=rows,
        registry=registry,
        cursor=cursor,
        received_ms=received_ms,
    )
    if plan.new_outcomes:
        yield Call("commit", (tenant, plan))
    return plan


def author_step(
    tenant: str,
    drafts: Sequence[Draft] | Compose,
    registry: Registry,
    *,
    clock: HybridClock,
    new_id: Callable[[], str],
    received_ms: int | None = None,
) -> Step[tuple[Batch, Plan]]:
    """Ops written by the server, committed like a terminal's batch. Under the tenant's
    lock: the next seqs of node ``server``, ``base_seq`` = the feed's cursor (the server
    sees the current state, so its writes contest nothing), HLCs after every stamp of the
    records they touch."""
    if isinstance(drafts, Compose):
        found: Mapping[Key, Record] = yield Call("load", (tenant, list(drafts.keys)))
        drafts = drafts.build(found)
    if not drafts:
        raise CallerError("the server authors at least one op")
    high_water: int = yield Call("high_water", (tenant, SERVER_NODE))
    cursor: int = yield Call("cursor", (tenant,))
    keys = sorted({(d.collection, d.record_id) for d in drafts})
    rows: Mapping[Key, Record] = yield Call("load", (tenant, keys))
    for key in keys:
        record = rows.get(key)
        stamps = [] if record is None else list(record.stamps.values())
        if record is not None and record.deleted_stamp is not None:
            stamps.append(record.deleted_stamp)
        for stamp in stamps:
            with suppress(ClockError):  # a stamp far ahead is not followed
                clock.update(from_wire(stamp.hlc))
    ops = [
        Op(
            op_id=d.op_id or new_id(),
            node_id=SERVER_NODE,
            seq=high_water + index,
            hlc=to_wire(clock.now()),
            base_seq=cursor,
            collection=d.collection,
            record_id=d.record_id,
            kind=d.kind,
            fields=d.fields,
            name=d.name,
            args=d.args,
        )
        for index, d in enumerate(drafts, start=1)
    ]
    batch = Batch.of(SERVER_NODE, ops)
    plan = yield from push_step(tenant, batch, registry, received_ms=received_ms)
    return batch, plan


def pull_step(
    tenant: str,
    since: int,
    limit: int | None,
    max_page: int,
    *,
    compact: bool = False,
    node_id: str | None = None,
) -> Step[PullPage]:
    """A feed page, or (``compact``) a compacted page for ``node_id``: its high-water mark
    is read before the records (``docs/protocol.md`` 23.2)."""
    size = page_size(since, limit, max_page)
    if not compact:
        changes = yield Call("changes", (tenant, since, size + 1))
        return make_page(since, changes, size)
    high_water = 0 if node_id is None else (yield Call("high_water", (tenant, node_id)))
    latest = yield Call("latest", (tenant, since, size + 1))
    return compacted(make_page(since, latest, size), high_water)


def wire_step(
    tenant: str,
    since: int,
    limit: int | None,
    max_page: int,
    *,
    compact: bool = False,
    node_id: str | None = None,
    cache: PageCache | None = None,
) -> Step[WirePage]:
    """:func:`pull_step`'s page as sent: the canonical bytes stored at commit, concatenated
    (nothing decoded), or the cached page when it is still the right answer (a last page
    only while the tenant's cursor has not moved, ``docs/protocol.md`` 23.7)."""
    size = page_size(since, limit, max_page)
    high_water: int | None = None
    if compact:
        high_water = 0 if node_id is None else (yield Call("high_water", (tenant, node_id)))
    key = (tenant, since, size, compact)
    page = None
    if cache is not None:
        candidate = cache.peek(key)
        now = None
        if candidate is not None and not candidate.more:
            now = yield Call("cursor", (tenant,))
        page = cache.get(key, now)
    if page is None:
        rows = yield Call("latest_bytes" if compact else "changes_bytes", (tenant, since, size + 1))
        page = wire_page(since, rows, size, compacted=compact)
        if cache is not None:
            cache.put(key, page)
    if compact:
        page = msgspec.structs.replace(page, high_water=high_water)
    return page


def drive(step: Step[T], store: Any) -> T:
    """Run ``step`` against a synchronous store."""
    answer: Any = None
    try:
        while True:
            call = step.send(answer)
            answer = getattr(store, call.method)(*call.args)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def drive_async(step: Step[T], store: Any) -> T:
    """Run ``step`` against an async store (its methods are awaited)."""
    answer: Any = None
    try:
        while True:
            call = step.send(answer)
            answer = await getattr(store, call.method)(*call.args)
    except StopIteration as stop:
        result: T = stop.value
        return result


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


OnCommit = Callable[[str, Plan], Awaitable[None] | None]


class _Loop:
    """What both adapters share: configuration, decoding, the answer."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_batch: int,
        max_page: int,
        now_ms: Callable[[], int] | None,
        rng: random.Random | None,
        cache: PageCache | None = None,
    ) -> None:
        self.registry = registry
        #: Pull pages many terminals ask for again (``None``: no cache).
        self.cache = cache
        self.max_batch = max_batch
        self.max_page = max_page
        #: The server's clock in ms (injected): commands see it as ``received_ms``.
        self.now_ms = now_ms or _wall_ms
        self.clock = HybridClock(self.now_ms)
        self.rng = rng or random.Random()

    def _accept(self, body: bytes | Batch, node_id: str | None) -> Batch:
        batch = decode_batch(body, max_ops=self.max_batch) if isinstance(body, bytes) else body
        check_batch(batch, node_id=node_id, max_ops=self.max_batch)
        return batch

    def new_op_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> Step[tuple[Batch, Plan]]:
        return author_step(
            tenant,
            drafts,
            self.registry,
            clock=self.clock,
            new_id=self.new_op_id,
            received_ms=self.now_ms(),
        )


def _answer(node_id: str, plan: Plan) -> PushResult:
    return PushResult(
        node_id=node_id, high_water=plan.high_water, cursor=plan.cursor, outcomes=plan.outcomes
    )


class ServerReplica(_Loop):
    """Engine + synchronous store. ``on_commit(tenant, plan)`` runs after each commit that
    changed something (the server pokes terminals from it)."""

    def __init__(
        self,
        store: ServerStore,
        registry: Registry,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_page: int = DEFAULT_MAX_PAGE,
        on_commit: Callable[[str, Plan], None] | None = None,
        now_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        cache: PageCache | None = None,
    ) -> None:
        super().__init__(
            registry, max_batch=max_batch, max_page=max_page, now_ms=now_ms, rng=rng, cache=cache
        )
        self.store = store
        self.on_commit = on_commit

    def _commit(self, tenant: str, step: Step[T]) -> T:
        with self.store.transaction(tenant):
            return drive(step, self.store)

    def _after(self, tenant: str, plan: Plan) -> None:
        if plan.changes and self.on_commit is not None:
            self.on_commit(tenant, plan)
        for effect in plan.effects:
            self.registry.perform(effect)

    def push(self, tenant: str, body: bytes | Batch, *, node_id: str | None = None) -> PushResult:
        """Apply a batch (raw JSON bytes, verified here, or an already decoded Batch).
        ``node_id``, when given, is the authenticated device: it may push only its own ops."""
        batch = self._accept(body, node_id)
        received = self.now_ms()
        plan = self._commit(tenant, push_step(tenant, batch, self.registry, received_ms=received))
        self._after(tenant, plan)
        return _answer(batch.node_id, plan)

    def author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> PushResult:
        """Commit ops written by the server as node ``server`` (see :func:`author_step`)."""
        _, plan = self._commit(tenant, self._author(tenant, drafts))
        self._after(tenant, plan)
        return _answer(SERVER_NODE, plan)

    def pull(
        self,
        tenant: str,
        since: int,
        limit: int | None = None,
        *,
        compact: bool = False,
        node_id: str | None = None,
    ) -> PullPage:
        """A page, decoded (``compact``: for ``node_id``, section 23)."""
        step = pull_step(tenant, since, limit, self.max_page, compact=compact, node_id=node_id)
        return drive(step, self.store)

    def pull_wire(
        self,
        tenant: str,
        since: int,
        limit: int | None = None,
        *,
        compact: bool = False,
        node_id: str | None = None,
    ) -> WirePage:
        """:meth:`pull` as sent (what the HTTP server and the loopback answer)."""
        step = wire_step(
            tenant,
            since,
            limit,
            self.max_page,
            compact=compact,
            node_id=node_id,
            cache=self.cache,
        )
        return drive(step, self.store)


class AsyncServerReplica(_Loop):
    """Engine + async store: the same steps, awaited. ``on_commit(tenant, plan)`` (sync or
    async) runs after each commit that changed something."""

    def __init__(
        self,
        store: AsyncServerStore,
        registry: Registry,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_page: int = DEFAULT_MAX_PAGE,
        on_commit: OnCommit | None = None,
        now_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        cache: PageCache | None = None,
    ) -> None:
        super().__init__(
            registry, max_batch=max_batch, max_page=max_page, now_ms=now_ms, rng=rng, cache=cache
        )
        self.store = store
        self.on_commit = on_commit

    async def _commit(self, tenant: str, step: Step[T]) -> T:
        async with self.store.transaction(tenant) as tx:
            return await drive_async(step, tx)

    async def _after(self, tenant: str, plan: Plan) -> None:
        if plan.changes and self.on_commit is not None:
            done = self.on_commit(tenant, plan)
            if done is not None:
                await done
        for effect in plan.effects:
            self.registry.perform(effect)

    async def push(
        self, tenant: str, body: bytes | Batch, *, node_id: str | None = None
    ) -> PushResult:
        batch = self._accept(body, node_id)
        received = self.now_ms()
        step = push_step(tenant, batch, self.registry, received_ms=received)
        plan = await self._commit(tenant, step)
        await self._after(tenant, plan)
        return _answer(batch.node_id, plan)

    async def author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> PushResult:
        _, plan = await self._commit(tenant, self._author(tenant, drafts))
        await self._after(tenant, plan)
        return _answer(SERVER_NODE, plan)

    async def pull(
        self,
        tenant: str,
        since: int,
        limit: int | None = None,
        *,
        compact: bool = False,
        node_id: str | None = None,
    ) -> PullPage:
        step = pull_step(tenant, since, limit, self.max_page, compact=compact, node_id=node_id)
        return await drive_async(step, self.store)

    async def pull_wire(
        self,
        tenant: str,
        since: int,
        limit: int | None = None,
        *,
        compact: bool = False,
        node_id: str | None = None,
    ) -> WirePage:
        step = wire_step(
            tenant,
            since,
            limit,
            self.max_page,
            compact=compact,
            node_id=node_id,
            cache=self.cache,
        )
        return await drive_async(step, self.store)


def page_size(since: int, limit: int | None, max_page: int) -> int:
    """Check a pull request's cursor and limit; return the page size to serve."""
    if since < 0:
        raise MalformedError(f"cursor {since} is negative", field="cursor")
    size = max_page if limit is None else limit
    if not 1 <= size <= max_page:
        raise MalformedError(
            f"limit {size} is outside 1..{max_page}", field="limit", limit=max_page
        )
    return size


def compacted(page: PullPage, high_water: int) -> PullPage:
    """``page`` (read from the store's ``latest``) marked as compacted, for a node."""
    return msgspec.structs.replace(page, compacted=True, high_water=high_water)


def make_page(since: int, changes: list[Change], size: int) -> PullPage:
    """The page for ``changes`` read with ``LIMIT size + 1`` (the extra one says ``more``)."""
    more = len(changes) > size
    changes = changes[:size]
    return PullPage(
        since=since,
        cursor=changes[-1].seq if changes else since,
        more=more,
        changes=changes,
        checksum=page_checksum(changes),
    )
