"""The terminal: local writes into an outbox, push in batches, pull until caught up, rebase.

A local write validates the op with the same engine the server runs, applies it to the
local view and appends it to the outbox, in one store transaction: if anything fails,
nothing is written and the seq is not used. ``sync()`` pushes every pending op (batches of
``batch_size``), then pulls pages until caught up; each pulled page is applied in one
transaction that also re-applies the still-pending ops over the new server state (rebase).

The wall clock and the random source are injected.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from msgspec import UNSET

from fynlo_sync.canonical import check_value
from fynlo_sync.engine import apply_op, rebase
from fynlo_sync.errors import (
    BatchTooLargeError,
    CallerError,
    ClockError,
    ConflictNotFoundError,
    PeerError,
    SeqGapError,
    StoreError,
    TransportError,
)
from fynlo_sync.hlc import HybridClock, from_wire, to_wire
from fynlo_sync.limits import check_value_limits
from fynlo_sync.ops import Batch, Op, OpKind, Outcome, Record
from fynlo_sync.plugins import CONFLICTS, Registry
from fynlo_sync.protocol import (
    PROTOCOL_VERSION,
    PageRows,
    PushResult,
    Row,
    outbox_checksum,
    page_rows,
)
from fynlo_sync.store.base import Key, TerminalStore
from fynlo_sync.transport.base import Transport

__all__ = ["Backoff", "SyncReport", "Terminal"]


@dataclass(frozen=True, slots=True)
class SyncReport:
    pushed: int
    pulled: int
    pending: int
    cursor: int


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits a uniform random time in
    ``[0, min(cap_ms, base_ms * 2**n)]`` milliseconds, drawn from the injected ``rng``."""

    rng: random.Random
    base_ms: int = 200
    cap_ms: int = 30_000
    attempt: int = 0

    def next_delay_ms(self) -> int:
        ceiling = min(self.cap_ms, self.base_ms << min(self.attempt, 32))
        self.attempt += 1
        return self.rng.randint(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Terminal:
    """A terminal replica: a store, the registry, and (when online) a transport."""

    def __init__(
        self,
        store: TerminalStore,
        registry: Registry,
        transport: Transport | None = None,
        *,
        wall: Callable[[], int],
        rng: random.Random | None = None,
        batch_size: int = 100,
        page_size: int = 500,
        compact: bool = True,
    ) -> None:
        if batch_size < 1 or page_size < 1:
            raise CallerError("batch_size and page_size must be at least 1")
        self.store = store
        self.registry = registry
        self.transport = transport
        self.rng = rng if rng is not None else random.Random()
        self.batch_size = batch_size
        self.page_size = page_size
        #: Catch up with compacted pulls (protocol 1.1, ``docs/protocol.md`` section 23).
        self.compact = compact
        meta = store.meta()
        self.node_id = meta.node_id
        self.clock = HybridClock(wall, last=meta.hlc)
        self.backoff = Backoff(self.rng)
        #: The employee signed in on this terminal: the actor of every op it makes (None:
        #: device-level ops, no actor).
        self.actor: str | None = None

    # ----------------------------------------------------------------- local writes

    def _new_op_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _make(
        self,
        kind: OpKind,
        collection: str,
        record_id: str,
        *,
        fields: Mapping[str, Any] | None = None,
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> tuple[Op, Record | None]:
        check_value_limits(None if fields is None else dict(fields), "$.fields")  # never recurses
        check_value_limits(None if args is None else dict(args), "$.args")
        check_value(fields, "$.fields")
        check_value(args, "$.args")
        meta = self.store.meta()
        hlc = self.clock.now()
        try:
            op = Op(
                op_id=self._new_op_id(),
                node_id=self.node_id,
                seq=meta.next_seq,
                hlc=to_wire(hlc),
                base_seq=meta.cursor,
                collection=collection,
                record_id=record_id,
                kind=kind,
                fields=None if fields is None else dict(fields),
                name=name,
                args=None if args is None else dict(args),
                actor=UNSET if self.actor is None else self.actor,
            )
        except (ValueError, TypeError) as exc:
            raise CallerError(str(exc)) from exc
        result = apply_op(
            self.store.get((collection, record_id)),
            op,
            self.registry,
            0,
            actor=self._actor_record(op),
        )
        if result.error is not None:
            raise result.error
        return op, result.record

    def _actor_record(self, op: Op) -> Record | None:
        policy, actor_id = self.registry.actor_policy, op.actor_id
        if policy is None or actor_id is None:
            return None
        return self.store.get((policy.collection, actor_id))

    def _write(self, kind: OpKind, collection: str, record_id: str, **parts: Any) -> Op:
        with self.store.transaction():
            op, record = self._make(kind, collection, record_id, **parts)
            if record is not None:
                self.store.put([record])
            self.store.append_outbox(op)
            meta = self.store.meta()
            self.store.set_meta(replace(meta, next_seq=op.seq + 1, hlc=self.clock.last))
        return op

    def put(self, collection: str, record_id: str, fields: Mapping[str, Any]) -> Op:
        return self._write("put", collection, record_id, fields=fields)

    def patch(self, collection: str, record_id: str, fields: Mapping[str, Any]) -> Op:
        return self._write("patch", collection, record_id, fields=fields)

    def delete(self, collection: str, record_id: str) -> Op:
        return self._write("delete", collection, record_id)

    def command(
        self, collection: str, record_id: str, name: str, args: Mapping[str, Any] | None = None
    ) -> Op:
        return self._write("command", collection, record_id, name=name, args=args or {})

    def resolve_conflict(
        self, conflict_id: str, choice: Literal["server", "incoming"] | Mapping[str, Any]
    ) -> list[Op]:
        """Resolve a parked conflict. ``"server"`` keeps the server's version,
        ``"incoming"`` re-applies the parked op, a mapping patches those fields. The
        resolution is itself ops authored by this terminal, committed together."""
        conflict = self.get(CONFLICTS, conflict_id)
        if conflict is None:
            raise ConflictNotFoundError(f"no conflict {conflict_id!r}", conflict_id=conflict_id)
        parked = conflict.fields["op"]
        collection, record_id = parked["collection"], parked["record_id"]
        ops: list[Op] = []
        with self.store.transaction():
            resolution: Op | None = None
            if choice == "incoming":
                if parked["kind"] == "delete":
                    resolution = self.delete(collection, record_id)
                elif parked["kind"] == "command":
                    resolution = self.command(collection, record_id, parked["name"], parked["args"])
                else:
                    resolution = self.patch(collection, record_id, parked["fields"])
            elif isinstance(choice, Mapping):
                resolution = self.patch(collection, record_id, choice)
            elif choice != "server":
                raise CallerError(f"unknown resolution {choice!r}")
            if resolution is not None:
                ops.append(resolution)
            ops.append(
                self.command(
                    CONFLICTS,
                    conflict_id,
                    "resolve",
                    {"resolution_op_id": None if resolution is None else resolution.op_id},
                )
            )
        return ops

    # ---------------------------------------------------------------------- reads

    def get(self, collection: str, record_id: str) -> Record | None:
        """The local view of a record (``None`` if absent or deleted)."""
        record = self.store.get((collection, record_id))
        return None if record is None or record.deleted else record

    def records(self, collection: str) -> list[Record]:
        return [r for r in self.store.records(collection) if not r.deleted]

    def pending(self) -> list[Op]:
        return self.store.outbox(self.store.meta().acked_seq)

    def outcomes(self) -> list[Outcome]:
        """Ops the server did not simply apply: rejected (with reasons), parked, merged."""
        return self.store.outcomes()

    # ----------------------------------------------------------------------- sync

    def _link(self) -> Transport:
        if self.transport is None:
            raise TransportError("this terminal has no transport (offline)")
        return self.transport

    def _batch(self, ops: list[Op]) -> Batch:
        # Outbox ops were validated when written: their checksum needs no Python canonicaliser.
        return Batch(
            protocol=PROTOCOL_VERSION, node_id=self.node_id, ops=ops, checksum=outbox_checksum(ops)
        )

    def push(self) -> int:
        """Push every unacknowledged op, ``batch_size`` at a time. Returns how many.

        Batches go one at a time, in seq order: the next is sent only once the last one's
        answer is in (a node's pushes must reach the server in order, ``docs/protocol.md``
        8.3). On a transport that allows it (``pipelined``: its ``push`` may run on another
        thread) the push runs on a worker thread, and meanwhile this thread acknowledges
        the previous answer and reads and checksums the next batch from the outbox."""
        link = self._link()
        with _Sender(link) as sender:
            return self._push_batches(sender)

    def _push_batches(self, sender: _Sender) -> int:
        store = self.store
        pushed = 0
        size = self.batch_size
        batch = self._outbox_batch(store.meta().acked_seq, size)
        answered: PushResult | None = None  # settled once the next batch is on the wire
        try:
            while batch is not None:
                ops = batch.ops
                flight = sender.send(batch)
                if answered is not None:
                    done, answered = answered, None
                    self._settle(done)  # while ``batch`` is on the wire
                # The batch after this one, for when this one is answered in full (usually).
                upcoming = self._outbox_batch(ops[-1].seq, size)
                try:
                    result = flight.result()
                except BatchTooLargeError:
                    # Too many ops, too many bytes, or too much feed growth at once: the
                    # same ops in smaller batches (one op always fits, protocol section 22).
                    if len(ops) == 1:
                        raise
                    size = max(1, len(ops) // 2)
                    batch = self._batch(ops[:size])
                    continue
                except SeqGapError as exc:
                    # Our outbox starts right after the last seq the server acknowledged, so
                    # a gap means the server lost acknowledged ops (restored from a backup).
                    raise StoreError(
                        f"the server expects seq {exc.extra.get('expected')} but this "
                        f"terminal's outbox starts at {ops[0].seq}: the server lost "
                        "acknowledged ops",
                        expected=exc.extra.get("expected"),
                    ) from exc
                pushed += len(ops)
                if upcoming is None or result.high_water < ops[-1].seq:
                    # Nothing after it, or not all of it committed (never from this server):
                    # acknowledge now and read on from the server's mark.
                    self._settle(result)
                    batch = self._outbox_batch(store.meta().acked_seq, size)
                    continue
                answered, batch = result, upcoming
        finally:
            if answered is not None:
                self._settle(answered)
        return pushed

    def _outbox_batch(self, after_seq: int, size: int) -> Batch | None:
        """The next ``size`` outbox ops after ``after_seq`` as a batch (``None``: none)."""
        ops = self.store.outbox(after_seq, size)
        return self._batch(ops) if ops else None

    def _settle(self, result: PushResult) -> None:
        """A push's answer into the store: the acknowledgement and the notable outcomes."""
        with self.store.transaction():
            self._ack(result.high_water, result.cursor)
            notable = [o for o in result.outcomes if _notable(o)]
            if notable:
                self.store.record_outcomes(notable)

    def _ack(self, high_water: int, cursor: int) -> None:
        """Ops up to ``high_water`` are committed, with their changes at or before
        ``cursor`` (the store keeps the lowest cursor it is told for each op)."""
        self.store.ack(high_water, cursor)
        meta = self.store.meta()
        if high_water > meta.acked_seq:
            self.store.set_meta(replace(meta, acked_seq=high_water))

    def pull(self) -> int:
        """Pull pages until caught up, rebasing pending ops over each. Returns changes.

        With ``compact`` (the default) the pages are compacted (``docs/protocol.md``
        section 23): each record changed since the cursor once, at its current state.
        Pages before the last are staged, and the last applies them all at once, so the
        terminal's state moves from one consistent cut to the next; an interrupted
        catch-up resumes from its staged cursor."""
        link = self._link()
        pulled = 0
        while True:
            meta = self.store.meta()
            staged = self.store.staging() if self.compact else None
            since = meta.cursor if staged is None else staged[0]
            page = self._fetch(link, since)
            if page.since != since:
                raise PeerError(f"asked for changes after {since}, got after {page.since}")
            if not page.compacted and since != meta.cursor:
                # A server that does not compact answered a resumed catch-up: start again
                # from this terminal's own cursor, with feed pages.
                with self.store.transaction():
                    self.store.clear_staged()
                continue
            if page.compacted and page.more:
                self._stage(page)
                unanswered: list[Op] = []
            elif page.compacted and staged is not None:
                unanswered = self._apply_staged(page)
            else:
                unanswered = self._apply_page(
                    page, acked=page.high_water if page.compacted else None
                )
            if unanswered:
                self._replay(link, unanswered)
            pulled += len(page.rows)
            if not page.more:
                return pulled

    def _fetch(self, link: Transport, since: int) -> PageRows:
        """The next page, verified by the transport: as :class:`PageRows` straight from the
        bytes received when the transport offers ``pull_rows``, else from its decoded page."""
        rows = _rows_pull(link)
        if rows is not None:
            got: PageRows = rows(since, self.page_size, compact=self.compact, node_id=self.node_id)
            return got
        if self.compact:
            return page_rows(link.pull(since, self.page_size, compact=True), self.node_id)
        return page_rows(link.pull(since, self.page_size), self.node_id)

    def _replay(self, link: Transport, ops: list[Op]) -> None:
        """``ops`` were committed (the feed showed a later op of ours) but their answer was
        lost. Push them again: the server answers each as a duplicate carrying its first
        outcome, so a rejection's reason still reaches this terminal. Nothing new is pushed.
        Best effort: on a network failure those outcomes stay unknown."""
        for start in range(0, len(ops), self.batch_size):
            try:
                result = link.push(self._batch(ops[start : start + self.batch_size]))
            except TransportError:
                return
            notable = [o for o in result.outcomes if _notable(o)]
            if notable:
                with self.store.transaction():
                    self.store.record_outcomes(notable)

    @staticmethod
    def _latest(page: PageRows) -> tuple[list[Row], int]:
        """A page's records (the last state of each, in key order) and the largest HLC
        among their stamps (9.3)."""
        latest = {(row[0], row[1]): row for row in page.rows}
        return [latest[k] for k in sorted(latest)], from_wire(page.newest) if page.newest else 0

    def _stage(self, page: PageRows) -> None:
        """A compacted page that is not the last of its catch-up: into the staging area."""
        latest, newest_hlc = self._latest(page)
        with self.store.transaction():
            self.store.stage_rows(latest, page.cursor, newest_hlc)

    def _apply_staged(self, page: PageRows) -> list[Op]:
        """The last page of a staged catch-up: apply it and everything staged as one page
        (``docs/protocol.md`` 23.4 step 3). The staged records go from the staging area to
        the server's state (and, but for records with pending ops, the local view) inside
        the store; only the records with pending or acknowledged ops are rebased here."""
        store = self.store
        with store.transaction():
            answered = store.meta().acked_seq
            latest, newest_hlc = self._latest(page)
            store.stage_rows(latest, page.cursor, newest_hlc)
            staged = store.staging()
            assert staged is not None
            acked = max(page.mine, page.high_water or 0)
            if acked:
                self._ack(acked, page.cursor)
            trimmed = store.trim(page.cursor)
            touched = {(op.collection, op.record_id) for op in store.outbox(0)}
            touched.update((op.collection, op.record_id) for op in trimmed)
            store.promote_staged(sorted(touched))
            self._rebase(touched)
            self._receive_hlc(staged[1])
            meta = store.meta()
            store.set_meta(replace(meta, cursor=page.cursor, hlc=self.clock.last))
        return [op for op in trimmed if op.seq > answered]

    def _rebase(self, keys: set[Key]) -> None:
        store = self.store
        for key in sorted(keys):
            local = rebase(store.get_server(key), store.outbox_for(key), self.registry, store.get)
            if local is None:
                store.forget(key)
            else:
                store.put([local])

    def _receive_hlc(self, newest_hlc: int) -> None:
        if newest_hlc:
            # A peer's clock may run far ahead: then keep ours (LWW still orders by value).
            with contextlib.suppress(ClockError):
                self.clock.update(newest_hlc)

    def _apply_page(self, page: PageRows, acked: int | None = None) -> list[Op]:
        """Apply one page; returns the ops it acknowledged that no push answer had (their
        outcomes are still unknown here). ``acked`` is a compacted page's high-water mark
        of this node (23.4 step 3)."""
        store = self.store
        cursor = page.cursor
        with store.transaction():
            answered = store.meta().acked_seq
            if store.staging() is not None:
                store.clear_staged()  # a feed page: staged compacted pages are never mixed in
            latest, newest_hlc = self._latest(page)
            mine = max(page.mine, acked or 0)
            if mine:
                self._ack(mine, cursor)
            trimmed = store.trim(cursor)
            if not trimmed and not store.outbox(0, 1):
                # Nothing pending: the local view is the server's state (the common case
                # for a terminal catching up).
                store.put_confirmed_rows(latest)
            else:
                store.put_server_rows(latest)
                touched = {(row[0], row[1]) for row in latest}
                touched.update((op.collection, op.record_id) for op in trimmed)
                self._rebase(touched)
            self._receive_hlc(newest_hlc)
            meta = store.meta()
            store.set_meta(replace(meta, cursor=cursor, hlc=self.clock.last))
        return [op for op in trimmed if op.seq > answered]

    def sync(self) -> SyncReport:
        """Push everything pending, then pull until caught up."""
        pushed = self.push()
        pulled = self.pull()
        meta = self.store.meta()
        return SyncReport(pushed, pulled, len(self.pending()), meta.cursor)

    def sync_retrying(self, sleep: Callable[[float], None], max_attempts: int = 8) -> SyncReport:
        """``sync()``, retrying network failures with exponential backoff and full jitter.
        ``sleep`` (seconds) is injected: ``time.sleep``, or a virtual clock's advance."""
        for attempt in range(max_attempts):
            try:
                report = self.sync()
            except TransportError:
                if attempt == max_attempts - 1:
                    raise
                sleep(self.backoff.next_delay_ms() / 1000)
                continue
            self.backoff.reset()
            return report
        raise CallerError("max_attempts must be at least 1")


class _Flight(Protocol):
    def result(self) -> PushResult: ...


class _Done:
    """A push made at once, in the caller's thread: its answer, or its error."""

    def __init__(self, link: Transport, batch: Batch) -> None:
        self._result: PushResult | None = None
        self._error: BaseException | None = None
        try:
            self._result = link.push(batch)
        except Exception as exc:
            self._error = exc

    def result(self) -> PushResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class _Sender:
    """Sends a terminal's pushes one at a time: on a worker thread when the link is
    ``pipelined`` (the caller waits for each answer before it sends the next), else in the
    caller's thread."""

    def __init__(self, link: Transport) -> None:
        self.link = link
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="fynlo-push")
            if getattr(link, "pipelined", False) is True
            else None
        )

    def send(self, batch: Batch) -> _Flight:
        if self._pool is None:
            return _Done(self.link, batch)
        future: Future[PushResult] = self._pool.submit(self.link.push, batch)
        return future

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # a push still on the wire is waited for


def _rows_pull(link: Transport) -> Any:
    """``link.pull_rows`` when the class that gives ``link`` its ``pull`` gives it
    ``pull_rows`` too (a subclass or wrapper that changes ``pull`` alone is used through
    its ``pull``), else ``None``."""
    for klass in type(link).__mro__:
        if "pull" in vars(klass):
            return getattr(link, "pull_rows", None) if "pull_rows" in vars(klass) else None
    return None


def _notable(outcome: Outcome) -> bool:
    status = outcome.original if outcome.status == "duplicate" else outcome.status
    return status != "applied"
