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

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from fynlo_sync.canonical import MAX_SAFE_INTEGER
from fynlo_sync.effects import (
    EffectContext,
    EffectRow,
    OpAuthor,
    PermanentEffectError,
    RetryableEffectError,
    RetryPolicy,
    Settlement,
    settle,
)
from fynlo_sync.engine import Plan, actor_keys, plan_push
from fynlo_sync.errors import CallerError, ClockError, MalformedError, StoreError
from fynlo_sync.hlc import HybridClock, from_wire, to_wire
from fynlo_sync.limits import DEFAULT_LIMITS, Limits, encoded_size
from fynlo_sync.ops import Batch, Change, Op, Record
from fynlo_sync.pages import PageCache
from fynlo_sync.plugins import SERVER_NODE, Draft, Registry
from fynlo_sync.protocol import (
    DEFAULT_MAX_BATCH,
    PullPage,
    PushResult,
    WirePage,
    check_batch,
    check_clock,
    decode_batch,
    page_checksum,
    wire_page,
)
from fynlo_sync.store.base import AsyncServerStore, Key, ServerStore, iter_keys

__all__ = [
    "DEFAULT_MAX_PAGE",
    "AsyncServerReplica",
    "Authored",
    "Call",
    "Compose",
    "LeaseLostError",
    "NothingToAuthorError",
    "ServerReplica",
    "author_step",
    "authored",
    "compacted",
    "drive",
    "drive_async",
    "finish_step",
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


#: What an effect's attempt authors: drafts, or drafts decided at commit (:class:`Compose`).
Authored = Sequence[Draft] | Compose


class NothingToAuthorError(CallerError):
    """A :class:`Compose` decided on no op (a duplicate, an older report)."""


def authored(author: OpAuthor) -> Authored:
    """An effect handler's ops: its drafts, then what its :meth:`OpAuthor.decide` calls
    decide under the tenant's lock (one :class:`Compose` over all their keys)."""
    if not author.decisions:
        return list(author.drafts)
    fixed = list(author.drafts)
    decisions = list(author.decisions)
    keys = sorted({key for keys, _ in decisions for key in keys})

    def build(found: Mapping[Key, Record]) -> Sequence[Draft]:
        out = list(fixed)
        for want, decide in decisions:
            out.extend(decide({k: found[k] for k in want if k in found}))
        return out

    return Compose(keys, build)


def push_step(
    tenant: str,
    batch: Batch,
    registry: Registry,
    *,
    received_ms: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    client_address: str | None = None,
) -> Step[Plan]:
    """One push in the tenant's transaction. The batch has passed ``check_batch``;
    ``client_address`` (the peer it came from) reaches commands beside ``received_ms``."""
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
        limits=limits,
        client_address=client_address,
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
    limits: Limits = DEFAULT_LIMITS,
) -> Step[tuple[Batch, Plan]]:
    """Ops written by the server, committed like a terminal's batch. Under the tenant's
    lock: the next seqs of node ``server``, ``base_seq`` = the feed's cursor (the server
    sees the current state, so its writes contest nothing), HLCs after every stamp of the
    records they touch."""
    if isinstance(drafts, Compose):
        found: Mapping[Key, Record] = yield Call("load", (tenant, list(drafts.keys)))
        drafts = drafts.build(found)
    if not drafts:
        raise NothingToAuthorError("the server authors at least one op")
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
            **({} if d.actor is None else {"actor": d.actor}),
        )
        for index, d in enumerate(drafts, start=1)
    ]
    batch = Batch.of(SERVER_NODE, ops)
    plan = yield from push_step(tenant, batch, registry, received_ms=received_ms, limits=limits)
    return batch, plan


def pull_step(
    tenant: str,
    since: int,
    limit: int | None,
    max_page: int,
    *,
    compact: bool = False,
    node_id: str | None = None,
    max_bytes: int | None = None,
) -> Step[PullPage]:
    """A feed page, or (``compact``) a compacted page for ``node_id``: its high-water mark
    is read before the records (``docs/protocol.md`` 23.2). At most ``max_bytes`` of
    changes (section 22)."""
    size = page_size(since, limit, max_page)
    if not compact:
        changes = yield Call("changes", (tenant, since, size + 1))
        return make_page(since, changes, size, max_bytes)
    high_water = 0 if node_id is None else (yield Call("high_water", (tenant, node_id)))
    latest = yield Call("latest", (tenant, since, size + 1))
    return compacted(make_page(since, latest, size, max_bytes), high_water)


def wire_step(
    tenant: str,
    since: int,
    limit: int | None,
    max_page: int,
    *,
    compact: bool = False,
    node_id: str | None = None,
    cache: PageCache | None = None,
    max_bytes: int | None = None,
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
        page = wire_page(since, rows, size, compacted=compact, max_bytes=max_bytes)
        if cache is not None:
            cache.put(key, page)
    if compact:
        page = msgspec.structs.replace(page, high_water=high_water)
    return page


def finish_step(
    row: EffectRow,
    settlement: Settlement,
    now_ms: int,
    author: Step[tuple[Batch, Plan]] | None,
) -> Step[Plan | None]:
    """Settle an effect's attempt in the tenant's transaction, committing the ops its
    handler authored (``author``) with it. Raises :class:`LeaseLostError` (rolling the ops
    back) when the claim is no longer current."""
    plan: Plan | None = None
    if author is not None:
        try:
            _, plan = yield from author
        except NothingToAuthorError:  # decided under the lock: nothing (new) to write
            plan = None
    settled: bool = yield Call("finish_effect", (row, settlement, now_ms))
    if not settled:
        raise LeaseLostError(
            f"effect {row.key!r} of tenant {row.tenant!r} was claimed again (its lease of "
            f"attempt {row.attempts} ran out): this attempt's result is dropped"
        )
    return plan


class LeaseLostError(StoreError):
    """An effect's claim ran out and another worker claimed it: the late result is
    dropped (the newer attempt settles it)."""


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
#: ``read(tenant, collection, record_id)``: a record now, for an effect handler.
Read = Callable[[str, str, str], Awaitable[Record | None]]


class _Loop:
    """What both adapters share: configuration, decoding, the answer, one effect attempt."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_batch: int,
        max_page: int,
        now_ms: Callable[[], int] | None,
        rng: random.Random | None,
        cache: PageCache | None = None,
        policy: RetryPolicy | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_skew_ms: int | None = None,
    ) -> None:
        self.registry = registry
        #: The size and shape limits (``docs/protocol.md`` section 22).
        self.limits = limits
        #: When set, incoming HLCs may be at most this far ahead of ``now_ms`` (5.2).
        self.max_skew_ms = max_skew_ms
        #: Pull pages many terminals ask for again (``None``: no cache).
        self.cache = cache
        self.max_batch = max_batch
        self.max_page = max_page
        #: The server's clock in ms (injected): commands see it as ``received_ms``.
        self.now_ms = now_ms or _wall_ms
        self.clock = HybridClock(self.now_ms)
        self.rng = rng or random.Random()
        self.policy = policy or RetryPolicy()

    def _accept(self, body: bytes | Batch, node_id: str | None) -> Batch:
        if isinstance(body, bytes):
            batch = decode_batch(body, max_ops=self.max_batch, limits=self.limits)
        else:
            batch = body
        check_batch(batch, node_id=node_id, max_ops=self.max_batch)
        if self.max_skew_ms is not None:
            check_clock(batch, self.now_ms(), self.max_skew_ms)
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
            limits=self.limits,
        )

    def _pull(
        self, tenant: str, since: int, limit: int | None, compact: bool, node_id: str | None
    ) -> Step[PullPage]:
        return pull_step(
            tenant,
            since,
            limit,
            self.max_page,
            compact=compact,
            node_id=node_id,
            max_bytes=self.limits.max_page_bytes,
        )

    def _wire(
        self, tenant: str, since: int, limit: int | None, compact: bool, node_id: str | None
    ) -> Step[WirePage]:
        return wire_step(
            tenant,
            since,
            limit,
            self.max_page,
            compact=compact,
            node_id=node_id,
            cache=self.cache,
            max_bytes=self.limits.max_page_bytes,
        )

    def _finish(
        self, row: EffectRow, settlement: Settlement, drafts: Authored
    ) -> Step[Plan | None]:
        author = self._author(row.tenant, drafts) if drafts else None
        return finish_step(row, settlement, self.now_ms(), author)

    async def attempt(self, row: EffectRow, read: Read) -> tuple[Settlement, Authored]:
        """Run the handler of a claimed effect once (bounded by the policy's timeout) and
        decide how the attempt ends; the drafts are the ops it authored (only when done)."""
        author = OpAuthor()
        error: BaseException | None = None
        try:
            handler = self.registry.handler(row.effect)
            plugin = self.registry.plugin(row.effect.plugin)

            async def read_one(collection: str, record_id: str) -> Record | None:
                return await read(row.tenant, collection, record_id)

            ctx = EffectContext(
                tenant=row.tenant,
                effect=row.effect,
                key=row.idempotency_key,
                attempt=row.attempts,
                now_ms=self.now_ms(),
                settings=None if plugin is None else plugin.settings,
                read=read_one,
                author=author,
            )
            async with asyncio.timeout(self.policy.timeout_ms / 1000):
                await handler(ctx)
        except TimeoutError:
            error = RetryableEffectError(f"timed out after {self.policy.timeout_ms} ms")
        except CallerError as exc:  # no such plugin: no retry can fix it
            error = PermanentEffectError(exc.detail)
        except Exception as exc:  # a handler's failure is the attempt's result
            error = exc
        settlement = settle(row, error, now_ms=self.now_ms(), policy=self.policy)
        return settlement, authored(author) if settlement.state == "done" else []


def _answer(node_id: str, plan: Plan) -> PushResult:
    return PushResult(
        node_id=node_id, high_water=plan.high_water, cursor=plan.cursor, outcomes=plan.outcomes
    )


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code (in a helper thread when this
    thread already runs an event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: list[T] = []
    fail: list[BaseException] = []

    def run() -> None:
        try:
            out.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller below
            fail.append(exc)

    thread = threading.Thread(target=run, name="fynlo-effect")
    thread.start()
    thread.join()
    if fail:
        raise fail[0]
    return out[0]


class ServerReplica(_Loop):
    """Engine + synchronous store. ``on_commit(tenant, plan)`` runs after each commit that
    changed something (the server pokes terminals from it).

    Effects go to the store's outbox with the commit. With ``inline_effects`` (the
    default: loopback, simulator, tests) each push then drains the due effects itself
    (:meth:`run_effects`); the embedded server turns it off and runs an
    :class:`~fynlo_sync.worker.EffectWorker` on its event loop instead."""

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
        policy: RetryPolicy | None = None,
        inline_effects: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        max_skew_ms: int | None = None,
    ) -> None:
        super().__init__(
            registry,
            max_batch=max_batch,
            max_page=max_page,
            now_ms=now_ms,
            rng=rng,
            policy=policy,
            cache=cache,
            limits=limits,
            max_skew_ms=max_skew_ms,
        )
        self.store = store
        self.on_commit = on_commit
        self.inline_effects = inline_effects

    def _commit(self, tenant: str, step: Step[T]) -> T:
        with self.store.transaction(tenant):
            return drive(step, self.store)

    def _after(self, tenant: str, plan: Plan) -> None:
        if plan.changes and self.on_commit is not None:
            self.on_commit(tenant, plan)
        if plan.effects and self.inline_effects:
            self.run_effects()

    def push(
        self,
        tenant: str,
        body: bytes | Batch,
        *,
        node_id: str | None = None,
        client_address: str | None = None,
    ) -> PushResult:
        """Apply a batch (raw JSON bytes, verified here, or an already decoded Batch).
        ``node_id``, when given, is the authenticated device: it may push only its own ops;
        ``client_address`` the peer it came from (commands see it)."""
        batch = self._accept(body, node_id)
        received = self.now_ms()
        step = push_step(
            tenant,
            batch,
            self.registry,
            received_ms=received,
            limits=self.limits,
            client_address=client_address,
        )
        plan = self._commit(tenant, step)
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
        step = self._pull(tenant, since, limit, compact, node_id)
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
        step = self._wire(tenant, since, limit, compact, node_id)
        return drive(step, self.store)

    # -- effects (the outbox, through the store)

    def claim_effects(self, limit: int) -> list[EffectRow]:
        return self.store.claim_effects(self.now_ms(), self.policy.lease_ms, limit)

    def read(self, tenant: str, collection: str, record_id: str) -> Record | None:
        return self.store.load(tenant, [(collection, record_id)]).get((collection, record_id))

    def finish_effect(self, row: EffectRow, settlement: Settlement, drafts: Authored = ()) -> bool:
        """Settle an attempt (and commit the ops it authored, in one transaction). False
        when the claim was no longer current (nothing is written)."""
        if not drafts:  # nothing to author: no need for the tenant's lock
            return self.store.finish_effect(row, settlement, self.now_ms())
        try:
            plan = self._commit(row.tenant, self._finish(row, settlement, drafts))
        except LeaseLostError:
            return False
        if plan is not None:
            self._after(row.tenant, plan)
        return True

    def run_effects(self, limit: int = 100) -> int:
        """Claim the due effects and perform them one by one, here; returns how many
        attempts ran. (Nested calls, from ops an effect authored, return 0.)"""
        if getattr(self, "_draining", False):
            return 0
        self._draining = True
        count = 0
        try:
            while rows := self.claim_effects(limit):
                for row in rows:

                    async def read(tenant: str, collection: str, record_id: str) -> Record | None:
                        return self.read(tenant, collection, record_id)

                    settlement, drafts = _run_coroutine(self.attempt(row, read))
                    self.finish_effect(row, settlement, drafts)
                    count += 1
        finally:
            self._draining = False
        return count


class AsyncServerReplica(_Loop):
    """Engine + async store: the same steps, awaited. ``on_commit(tenant, plan)`` (sync or
    async) runs after each commit that changed something. Effects go to the outbox with
    the commit; an :class:`~fynlo_sync.worker.EffectWorker` over this replica performs
    them."""

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
        policy: RetryPolicy | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_skew_ms: int | None = None,
    ) -> None:
        super().__init__(
            registry,
            max_batch=max_batch,
            max_page=max_page,
            now_ms=now_ms,
            rng=rng,
            policy=policy,
            cache=cache,
            limits=limits,
            max_skew_ms=max_skew_ms,
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

    async def push(
        self,
        tenant: str,
        body: bytes | Batch,
        *,
        node_id: str | None = None,
        client_address: str | None = None,
    ) -> PushResult:
        batch = self._accept(body, node_id)
        received = self.now_ms()
        step = push_step(
            tenant,
            batch,
            self.registry,
            received_ms=received,
            limits=self.limits,
            client_address=client_address,
        )
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
        step = self._pull(tenant, since, limit, compact, node_id)
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
        step = self._wire(tenant, since, limit, compact, node_id)
        return await drive_async(step, self.store)

    # -- effects (an EffectWorker's source)

    async def claim_effects(self, limit: int) -> list[EffectRow]:
        return await self.store.claim_effects(self.now_ms(), self.policy.lease_ms, limit)

    async def read(self, tenant: str, collection: str, record_id: str) -> Record | None:
        found = await self.store.load(tenant, [(collection, record_id)])
        return found.get((collection, record_id))

    async def finish_effect(
        self, row: EffectRow, settlement: Settlement, drafts: Authored = ()
    ) -> bool:
        if not drafts:  # nothing to author: no need for the tenant's lock
            return await self.store.finish_effect(row, settlement, self.now_ms())
        try:
            plan = await self._commit(row.tenant, self._finish(row, settlement, drafts))
        except LeaseLostError:
            return False
        if plan is not None:
            await self._after(row.tenant, plan)
        return True

    async def run_effects(self, limit: int = 100) -> int:
        """Claim the due effects and perform them one by one; returns how many attempts
        ran (the server's worker does this concurrently and forever)."""
        count = 0
        while rows := await self.claim_effects(limit):
            for row in rows:
                settlement, drafts = await self.attempt(row, self.read)
                await self.finish_effect(row, settlement, drafts)
                count += 1
        return count


def page_size(since: int, limit: int | None, max_page: int) -> int:
    """Check a pull request's cursor and limit; return the page size to serve."""
    if not 0 <= since <= MAX_SAFE_INTEGER:
        raise MalformedError(f"cursor {since} is outside 0..2^53-1", field="cursor")
    size = max_page if limit is None else limit
    if not 1 <= size <= max_page:
        raise MalformedError(
            f"limit {size} is outside 1..{max_page}", field="limit", limit=max_page
        )
    return size


def compacted(page: PullPage, high_water: int) -> PullPage:
    """``page`` (read from the store's ``latest``) marked as compacted, for a node."""
    return msgspec.structs.replace(page, compacted=True, high_water=high_water)


def make_page(
    since: int, changes: list[Change], size: int, max_bytes: int | None = None
) -> PullPage:
    """The page for ``changes`` read with ``LIMIT size + 1`` (the extra one says ``more``),
    cut short so that its changes take at most ``max_bytes`` of JSON (but always at least
    one change, so a page always moves the cursor)."""
    more = len(changes) > size
    changes = changes[:size]
    if max_bytes is not None:
        total = 0
        for n, change in enumerate(changes):
            total += encoded_size(change) + 1
            if total > max_bytes and n > 0:
                changes, more = changes[:n], True
                break
    return PullPage(
        since=since,
        cursor=changes[-1].seq if changes else since,
        more=more,
        changes=changes,
        checksum=page_checksum(changes),
    )
