"""In-memory stores: the reference implementations of the store ports.

Transactions take a snapshot of the (shallow-copied) state and restore it if the block
raises, so a failure is as atomic here as in SQLite. Records and ops are frozen, so
shallow copies are enough.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fynlo_sync.effects import Attempt, EffectRow, Settlement
from fynlo_sync.engine import Plan
from fynlo_sync.ops import Change, Op, Outcome, Record
from fynlo_sync.protocol import Row, canonical_change
from fynlo_sync.store.base import Key, TerminalMeta, new_effect_rows, sorted_records

__all__ = ["MemoryServerStore", "MemoryTerminalStore"]

_record_dec = msgspec.json.Decoder(Record)


def _records(rows: Iterable[Row]) -> list[Record]:
    return [_record_dec.decode(body) for _, _, body in rows]


class _Snapshotting:
    _state: Any
    _depth: int = 0

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        saved = copy.copy(self._state)
        saved.copy_parts()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._state = saved
            raise
        finally:
            self._depth = 0


@dataclass
class _TerminalState:
    meta: TerminalMeta
    rows: dict[Key, Record] = field(default_factory=dict)
    server: dict[Key, Record] = field(default_factory=dict)
    outbox: dict[int, Op] = field(default_factory=dict)
    acked: dict[int, int] = field(default_factory=dict)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    staged: dict[Key, Record] = field(default_factory=dict)
    stage_at: tuple[int, int] | None = None

    def copy_parts(self) -> None:
        self.rows = dict(self.rows)
        self.server = dict(self.server)
        self.outbox = dict(self.outbox)
        self.acked = dict(self.acked)
        self.outcomes = dict(self.outcomes)
        self.staged = dict(self.staged)


class MemoryTerminalStore(_Snapshotting):
    _state: _TerminalState

    def __init__(self, node_id: str) -> None:
        self._state = _TerminalState(meta=TerminalMeta(node_id=node_id))

    def transaction(self) -> Any:
        return self._atomic()

    def meta(self) -> TerminalMeta:
        return self._state.meta

    def set_meta(self, meta: TerminalMeta) -> None:
        self._state.meta = meta

    def get(self, key: Key) -> Record | None:
        return self._state.rows.get(key)

    def put(self, records: Iterable[Record]) -> None:
        for record in records:
            self._state.rows[record.key] = record

    def put_rows(self, rows: Iterable[Row]) -> None:
        self.put(_records(rows))

    def records(self, collection: str | None = None) -> list[Record]:
        rows = self._state.rows.values()
        return sorted_records(r for r in rows if collection is None or r.collection == collection)

    def forget(self, key: Key) -> None:
        self._state.rows.pop(key, None)

    def get_server(self, key: Key) -> Record | None:
        return self._state.server.get(key)

    def put_server(self, records: Iterable[Record]) -> None:
        for record in records:
            self._state.server[record.key] = record

    def put_server_rows(self, rows: Iterable[Row]) -> None:
        self.put_server(_records(rows))

    def put_confirmed_rows(self, rows: Iterable[Row]) -> None:
        records = list(_records(rows))
        self.put_server(records)
        self.put(records)

    def server_records(self) -> list[Record]:
        return sorted_records(self._state.server.values())

    def append_outbox(self, op: Op) -> None:
        self._state.outbox[op.seq] = op

    def outbox(self, after_seq: int = 0, limit: int | None = None) -> list[Op]:
        ops = [self._state.outbox[s] for s in sorted(self._state.outbox) if s > after_seq]
        return ops if limit is None else ops[:limit]

    def outbox_for(self, key: Key) -> list[Op]:
        box = self._state.outbox
        return [box[s] for s in sorted(box) if (box[s].collection, box[s].record_id) == key]

    def ack(self, upto_seq: int, cursor: int) -> None:
        acked = self._state.acked
        for seq in sorted(self._state.outbox):
            if seq <= upto_seq:
                acked[seq] = min(acked.get(seq, cursor), cursor)

    def trim(self, cursor: int) -> list[Op]:
        gone = [s for s in sorted(self._state.acked) if self._state.acked[s] <= cursor]
        ops = [self._state.outbox.pop(s) for s in gone]
        for seq in gone:
            del self._state.acked[seq]
        return ops

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            self._state.outcomes[outcome.seq] = outcome

    def outcomes(self) -> list[Outcome]:
        return [self._state.outcomes[s] for s in sorted(self._state.outcomes)]

    def stage(self, records: Iterable[Record], cursor: int, hlc: int) -> None:
        state = self._state
        for record in records:
            state.staged[record.key] = record
        before = 0 if state.stage_at is None else state.stage_at[1]
        state.stage_at = (cursor, max(before, hlc))

    def stage_rows(self, rows: Iterable[Row], cursor: int, hlc: int) -> None:
        self.stage(_records(rows), cursor, hlc)

    def staging(self) -> tuple[int, int] | None:
        return self._state.stage_at

    def promote_staged(self, keep_local: Iterable[Key]) -> None:
        state = self._state
        kept = set(keep_local)
        for key in sorted(state.staged):
            state.server[key] = state.staged[key]
            if key not in kept:
                state.rows[key] = state.staged[key]
        self.clear_staged()

    def clear_staged(self) -> None:
        self._state.staged = {}
        self._state.stage_at = None

    def close(self) -> None:
        pass


@dataclass
class _Tenant:
    records: dict[Key, Record] = field(default_factory=dict)
    feed: list[Change] = field(default_factory=list)
    oplog: dict[str, dict[int, Outcome]] = field(default_factory=dict)
    high_water: dict[str, int] = field(default_factory=dict)
    #: The outbox by effect key (rows are frozen: an update replaces the row).
    outbox: dict[str, EffectRow] = field(default_factory=dict)

    def copy_parts(self) -> None:
        self.records = dict(self.records)
        self.feed = list(self.feed)
        self.oplog = {node: dict(log) for node, log in self.oplog.items()}
        self.high_water = dict(self.high_water)
        self.outbox = dict(self.outbox)


@dataclass
class _ServerState:
    tenants: dict[str, _Tenant] = field(default_factory=dict)

    def copy_parts(self) -> None:
        self.tenants = {name: copy.copy(t) for name, t in self.tenants.items()}
        for tenant in self.tenants.values():
            tenant.copy_parts()


class MemoryServerStore(_Snapshotting):
    _state: _ServerState

    def __init__(self) -> None:
        self._state = _ServerState()

    def _t(self, tenant: str) -> _Tenant:
        found = self._state.tenants.get(tenant)
        if found is None:
            found = self._state.tenants[tenant] = _Tenant()
        return found

    def transaction(self, tenant: str) -> Any:
        return self._atomic()

    def high_water(self, tenant: str, node_id: str) -> int:
        return self._t(tenant).high_water.get(node_id, 0)

    def prior_outcomes(self, tenant: str, node_id: str, seqs: Sequence[int]) -> dict[int, Outcome]:
        log = self._t(tenant).oplog.get(node_id, {})
        return {s: log[s] for s in seqs if s in log}

    def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        records = self._t(tenant).records
        return {k: records[k] for k in keys if k in records}

    def cursor(self, tenant: str) -> int:
        feed = self._t(tenant).feed
        return feed[-1].seq if feed else 0

    def commit(self, tenant: str, plan: Plan) -> None:
        t = self._t(tenant)
        t.records.update(plan.writes)
        t.feed.extend(plan.changes)
        log = t.oplog.setdefault(plan.node_id, {})
        for outcome in plan.new_outcomes:
            log[outcome.seq] = outcome
        t.high_water[plan.node_id] = plan.high_water
        for row in new_effect_rows(tenant, plan):
            t.outbox.setdefault(row.key, row)

    def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]:
        with self._atomic():
            due = [
                row
                for name in sorted(self._state.tenants)
                for row in self._state.tenants[name].outbox.values()
                if row.state in ("pending", "running") and row.due_ms <= now_ms
            ]
            due.sort(key=lambda r: (r.due_ms, r.tenant, r.key))
            claimed = []
            for row in due[:limit]:
                attempt = Attempt(attempt=row.attempts + 1, started_ms=now_ms)
                new = dataclasses.replace(
                    row,
                    state="running",
                    attempts=attempt.attempt,
                    due_ms=now_ms + lease_ms,
                    history=(*row.history, attempt),
                )
                self._t(row.tenant).outbox[row.key] = new
                claimed.append(new)
            return claimed

    def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool:
        with self._atomic():
            outbox = self._t(row.tenant).outbox
            current = outbox.get(row.key)
            if current is None or current.state != "running" or current.attempts != row.attempts:
                return False
            ended = dataclasses.replace(
                current.history[-1],
                finished_ms=now_ms,
                result=settlement.result,
                error=settlement.error,
            )
            outbox[row.key] = dataclasses.replace(
                current,
                state=settlement.state,
                due_ms=settlement.due_ms,
                failures=settlement.failures,
                last_error=settlement.error,
                history=(*current.history[:-1], ended),
            )
            return True

    def effect_rows(self, tenant: str | None = None, state: str | None = None) -> list[EffectRow]:
        names = sorted(self._state.tenants) if tenant is None else [tenant]
        return [
            t.outbox[key]
            for name in names
            if (t := self._state.tenants.get(name)) is not None
            for key in sorted(t.outbox)
            if state is None or t.outbox[key].state == state
        ]

    def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool:
        with self._atomic():
            outbox = self._t(tenant).outbox
            row = outbox.get(key)
            if row is None or row.state != "dead":
                return False
            outbox[key] = dataclasses.replace(row, state="pending", due_ms=now_ms, failures=0)
            return True

    def changes(self, tenant: str, since: int, limit: int) -> list[Change]:
        feed = self._t(tenant).feed
        # Feed seqs are 1..n with no holes, so the index of seq s is s - 1.
        return feed[since : since + limit]

    def latest(self, tenant: str, since: int, limit: int) -> list[Change]:
        t = self._t(tenant)
        out: list[Change] = []
        for change in t.feed[since:]:
            if t.records[change.record.key].version == change.seq:
                out.append(change)
                if len(out) == limit:
                    break
        return out

    def changes_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        return [(c.seq, canonical_change(c)) for c in self.changes(tenant, since, limit)]

    def latest_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        return [(c.seq, canonical_change(c)) for c in self.latest(tenant, since, limit)]

    def records(self, tenant: str, collection: str | None = None) -> list[Record]:
        rows = self._t(tenant).records.values()
        return sorted_records(r for r in rows if collection is None or r.collection == collection)

    def high_waters(self, tenant: str) -> dict[str, int]:
        hw = self._t(tenant).high_water
        return {node: hw[node] for node in sorted(hw)}

    def op_log(self, tenant: str, node_id: str) -> list[Outcome]:
        log = self._t(tenant).oplog.get(node_id, {})
        return [log[s] for s in sorted(log)]

    def close(self) -> None:
        pass
