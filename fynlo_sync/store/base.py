"""The store ports: what the terminal client and the server replica need from storage.

Each port is a small protocol with an in-memory reference implementation
(:mod:`fynlo_sync.store.memory`) and a SQLite one (:mod:`fynlo_sync.store.sqlite`); one
conformance suite (:mod:`fynlo_sync.testing`) runs against every implementation.

A store never decides anything: the engine plans, the store writes the plan in one
transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from fynlo_sync.effects import EffectRow, Settlement
from fynlo_sync.engine import Plan
from fynlo_sync.ops import Change, Op, Outcome, Record
from fynlo_sync.protocol import Row, canonical_change, record_bytes

__all__ = [
    "AsyncOverSync",
    "AsyncServerQueries",
    "AsyncServerStore",
    "Key",
    "ServerStore",
    "TerminalMeta",
    "TerminalStore",
    "new_effect_rows",
    "plan_body",
    "plan_feed",
]

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class TerminalMeta:
    """A terminal's own counters: the seq its next op gets, the server cursor it has
    pulled to, the highest seq the server acknowledged, and its clock's last value."""

    node_id: str
    next_seq: int = 1
    cursor: int = 0
    acked_seq: int = 0
    hlc: int = 0


class TerminalStore(Protocol):
    """A terminal's local state: its view of every record, the server's confirmed state,
    and the outbox of ops not yet pulled back from the server."""

    def transaction(self) -> AbstractContextManager[None]:
        """All or nothing: everything inside commits together or not at all."""
        ...

    def meta(self) -> TerminalMeta: ...

    def set_meta(self, meta: TerminalMeta) -> None: ...

    def get(self, key: Key) -> Record | None:
        """The local view (server state + pending ops)."""
        ...

    def put(self, records: Iterable[Record]) -> None: ...

    def put_rows(self, rows: Iterable[Row]) -> None:
        """:meth:`put` of records given as their JSON (``(collection, record_id, body)``:
        a pulled page's bytes as received, decoded only when read)."""
        ...

    def records(self, collection: str | None = None) -> list[Record]:
        """The local view, sorted by (collection, record_id)."""
        ...

    def forget(self, key: Key) -> None:
        """Drop a record from the local view (a pending create the server rejected)."""
        ...

    def get_server(self, key: Key) -> Record | None: ...

    def put_server(self, records: Iterable[Record]) -> None: ...

    def put_server_rows(self, rows: Iterable[Row]) -> None:
        """:meth:`put_server` of records given as their JSON (see :meth:`put_rows`)."""
        ...

    def put_confirmed_rows(self, rows: Iterable[Row]) -> None:
        """The server's state and the local view both become these records (a page
        applied with nothing pending): :meth:`put_server_rows` and :meth:`put_rows` of the
        same rows, each record written once where the store can."""
        ...

    def server_records(self) -> list[Record]: ...

    def append_outbox(self, op: Op) -> None: ...

    def outbox(self, after_seq: int = 0, limit: int | None = None) -> list[Op]:
        """Ops still in the outbox with seq > ``after_seq``, in seq order."""
        ...

    def outbox_for(self, key: Key) -> list[Op]:
        """Ops still in the outbox that touch ``key``, in seq order."""
        ...

    def ack(self, upto_seq: int, cursor: int) -> None:
        """The server committed every op up to ``upto_seq``; its changes are in the feed at
        or before ``cursor``. An op told twice keeps the lower cursor."""
        ...

    def trim(self, cursor: int) -> list[Op]:
        """Drop acknowledged ops whose changes are at or before ``cursor``; return them."""
        ...

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None: ...

    def outcomes(self) -> list[Outcome]:
        """Stored outcomes that were not plainly applied (rejections, conflicts, merges)."""
        ...

    def stage(self, records: Iterable[Record], cursor: int, hlc: int) -> None:
        """Add pages of a compacted catch-up to the staging area (a record replaces a
        staged one of the same key); the staged cursor becomes ``cursor`` and the staged
        HLC the larger of it and ``hlc``."""
        ...

    def stage_rows(self, rows: Iterable[Row], cursor: int, hlc: int) -> None:
        """:meth:`stage` of records given as their JSON (see :meth:`put_rows`)."""
        ...

    def staging(self) -> tuple[int, int] | None:
        """The staged (cursor, largest stamp HLC), or ``None`` when nothing is staged."""
        ...

    def promote_staged(self, keep_local: Iterable[Key]) -> None:
        """Copy every staged record into the server's state and (but for the keys in
        ``keep_local``, which the caller rebases) into the local view; empty the staging
        area. Set-based where the store can: the records never pass through the caller."""
        ...

    def clear_staged(self) -> None: ...

    def close(self) -> None: ...


class ServerStore(Protocol):
    """The server's authoritative state for many tenants (synchronous stores)."""

    def transaction(self, tenant: str) -> AbstractContextManager[None]:
        """One transaction, holding the tenant's write lock (pushes of one tenant serialize)."""
        ...

    def high_water(self, tenant: str, node_id: str) -> int: ...

    def prior_outcomes(
        self, tenant: str, node_id: str, seqs: Sequence[int]
    ) -> dict[int, Outcome]: ...

    def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]: ...

    def cursor(self, tenant: str) -> int: ...

    def commit(self, tenant: str, plan: Plan) -> None:
        """Write the plan: records, feed entries, op outcomes, the node's high-water mark,
        and its effects into the tenant's outbox (a key already there is left alone)."""
        ...

    def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]:
        """Claim up to ``limit`` effects of any tenant that are due (pending, or running
        with an expired lease) in due order: each becomes ``running`` until ``now_ms +
        lease_ms`` with one more attempt, whose start is recorded. Its own transaction."""
        ...

    def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool:
        """Settle the claim ``row`` (as :meth:`claim_effects` returned it) and record how
        its attempt ended. False, changing nothing, when that claim is no longer current
        (its lease ran out and another worker claimed it, or it was settled)."""
        ...

    def effect_rows(self, tenant: str | None = None, state: str | None = None) -> list[EffectRow]:
        """The outbox (every tenant, or one), with each effect's attempts, by tenant and
        key."""
        ...

    def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool:
        """Make a dead effect due now with a fresh failure budget. False if it is not
        dead (or not there)."""
        ...

    def changes(self, tenant: str, since: int, limit: int) -> list[Change]: ...

    def latest(self, tenant: str, since: int, limit: int) -> list[Change]:
        """Compacted catch-up (``docs/protocol.md`` section 23): for each record whose
        ``version`` is greater than ``since``, ascending by version, at most ``limit``, the
        feed entry that produced its current state (tombstones included)."""
        ...

    def changes_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        """:meth:`changes` as (seq, canonical bytes) stored at commit
        (:func:`fynlo_sync.protocol.canonical_change`): what a page is made of."""
        ...

    def latest_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        """:meth:`latest` as (seq, canonical bytes)."""
        ...

    def records(self, tenant: str, collection: str | None = None) -> list[Record]: ...

    def high_waters(self, tenant: str) -> dict[str, int]: ...

    def op_log(self, tenant: str, node_id: str) -> list[Outcome]:
        """Every stored outcome of the node, in seq order."""
        ...

    def close(self) -> None: ...


class AsyncServerQueries(Protocol):
    """The reads and the commit of :class:`ServerStore`, awaited (one transaction or a pool)."""

    async def high_water(self, tenant: str, node_id: str) -> int: ...

    async def prior_outcomes(
        self, tenant: str, node_id: str, seqs: Sequence[int]
    ) -> dict[int, Outcome]: ...

    async def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]: ...

    async def cursor(self, tenant: str) -> int: ...

    async def commit(self, tenant: str, plan: Plan) -> None: ...

    async def changes(self, tenant: str, since: int, limit: int) -> list[Change]: ...

    async def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]: ...

    async def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool: ...

    async def effect_rows(
        self, tenant: str | None = None, state: str | None = None
    ) -> list[EffectRow]: ...

    async def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool: ...


class AsyncServerStore(AsyncServerQueries, Protocol):
    """An async server store (PostgreSQL): ``transaction`` yields the queries of one
    transaction holding the tenant's write lock."""

    def transaction(self, tenant: str) -> AbstractAsyncContextManager[AsyncServerQueries]: ...


class AsyncOverSync:
    """A synchronous :class:`ServerStore` behind the async port, calling it inline (for a
    single-threaded event loop over a memory or SQLite store, and for running one scenario
    through both replica adapters on every store)."""

    def __init__(self, store: ServerStore) -> None:
        self.sync = store

    @asynccontextmanager
    async def transaction(self, tenant: str) -> AsyncIterator[AsyncOverSync]:
        with self.sync.transaction(tenant):
            yield self

    async def high_water(self, tenant: str, node_id: str) -> int:
        return self.sync.high_water(tenant, node_id)

    async def prior_outcomes(
        self, tenant: str, node_id: str, seqs: Sequence[int]
    ) -> dict[int, Outcome]:
        return self.sync.prior_outcomes(tenant, node_id, seqs)

    async def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        return self.sync.load(tenant, keys)

    async def cursor(self, tenant: str) -> int:
        return self.sync.cursor(tenant)

    async def commit(self, tenant: str, plan: Plan) -> None:
        self.sync.commit(tenant, plan)

    async def changes(self, tenant: str, since: int, limit: int) -> list[Change]:
        return self.sync.changes(tenant, since, limit)

    async def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]:
        return self.sync.claim_effects(now_ms, lease_ms, limit)

    async def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool:
        return self.sync.finish_effect(row, settlement, now_ms)

    async def effect_rows(
        self, tenant: str | None = None, state: str | None = None
    ) -> list[EffectRow]:
        return self.sync.effect_rows(tenant, state)

    async def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool:
        return self.sync.retry_effect(tenant, key, now_ms)


def plan_feed(plan: Plan) -> list[tuple[Change, bytes]]:
    """Each change of ``plan`` with its canonical bytes (made by ``plan_push``, or here
    for a plan built otherwise)."""
    if len(plan.feed) == len(plan.changes):
        return list(zip(plan.changes, plan.feed, strict=True))
    return [(c, canonical_change(c)) for c in plan.changes]


def plan_body(plan: Plan, key: Key, record: Record) -> bytes:
    """The stored JSON of ``record``, the final state of ``key`` in ``plan``."""
    body = plan.bodies.get(key)
    return body if body is not None else record_bytes(record)


def new_effect_rows(tenant: str, plan: Plan) -> list[EffectRow]:
    """The outbox rows of a plan's effects: pending, due at the receive time."""
    now = plan.received_ms or 0
    return [
        EffectRow(tenant, e, "pending", attempts=0, failures=0, due_ms=now, created_ms=now)
        for e in plan.effects
    ]


def sorted_records(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.collection, r.record_id))


def iter_keys(ops: Sequence[Op]) -> Iterator[Key]:
    seen: set[Key] = set()
    for op in ops:
        key = (op.collection, op.record_id)
        if key not in seen:
            seen.add(key)
            yield key
