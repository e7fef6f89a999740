"""One simulated world: a server replica, terminals over SQLite files, a virtual network,
virtual time, and the restaurant workload, driven step by step by a :class:`Schedule`.

Each terminal is the real :class:`~fynlo_sync.client.Terminal` over a real
:class:`~fynlo_sync.store.sqlite.SqliteTerminalStore` file; its wall clock is virtual and
drifts; its op ids come from a generator seeded by the schedule. A crash drops the
``Terminal`` object and its connection (the SQLite file stays) and reopens both, either at
once or at the terminal's n-th store write from now, in the middle of a transaction.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin
from fynlo_sync.errors import FynloError, RejectedOpError, TransportError
from fynlo_sync.ops import Op, Outcome, Record
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import Row
from fynlo_sync.replica import ServerReplica
from fynlo_sync.sim import invariants, workload
from fynlo_sync.sim.clock import TerminalClock, VirtualTime
from fynlo_sync.sim.floor import FloorPlugin
from fynlo_sync.sim.invariants import Violation
from fynlo_sync.sim.network import Crashed, Link, Network
from fynlo_sync.sim.payments import payment_counts
from fynlo_sync.sim.schedule import Schedule, Step
from fynlo_sync.store.base import Key, ServerStore, TerminalMeta
from fynlo_sync.store.memory import MemoryServerStore, MemoryTerminalStore
from fynlo_sync.store.sqlite import SqliteServerStore, SqliteTerminalStore

__all__ = ["SimTerminal", "World", "restaurant_registry"]

#: Sync rounds allowed at the end for everything to go quiet.
QUIET_ROUNDS = 6


def restaurant_registry(*, server_ops: bool = True) -> Registry:
    """Orders, payments and the floor. ``server_ops=False`` leaves out the payments
    ledger effect (ops the server authors), which the simulator's checks do not model."""
    return conflict.registry([OrdersPlugin(), PaymentsPlugin(ledger=server_ops), FloorPlugin()])


_TEMPLATES: dict[str, bytes] = {}


def _fresh_db(path: Path, kind: str) -> None:
    """Start ``path`` as a copy of an empty, migrated database (migrating each of the
    thousands of files a run makes would be most of its time). The store then opens it
    as usual: its migrations find themselves done, the terminal writes its own meta row."""
    if kind not in _TEMPLATES:
        with tempfile.TemporaryDirectory() as folder:
            made = Path(folder) / "template.db"
            if kind == "server":
                SqliteServerStore(made).close()
            else:
                store = SqliteTerminalStore(made, "template")
                store.db.conn.execute("DELETE FROM fynlo_meta")
                store.close()
            _TEMPLATES[kind] = made.read_bytes()
    path.write_bytes(_TEMPLATES[kind])


class CrashingStore:
    """A terminal store that can die at its n-th write: the write raises :class:`Crashed`
    inside the client's transaction, which rolls back like a killed process's would."""

    def __init__(self, inner: SqliteTerminalStore) -> None:
        self.inner = inner
        self.countdown = 0
        #: Called after each outermost transaction commits: every committed state is one a
        #: crash could freeze, so the simulator checks the terminal's invariants there too.
        self.on_commit: Callable[[], None] | None = None
        self._depth = 0

    def _write(self) -> None:
        if self.countdown:
            self.countdown -= 1
            if not self.countdown:
                raise Crashed

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._depth += 1
        try:
            with self.inner.transaction():
                yield
        finally:
            self._depth -= 1
        if not self._depth and self.on_commit is not None:
            self.on_commit()

    def meta(self) -> TerminalMeta:
        return self.inner.meta()

    def set_meta(self, meta: TerminalMeta) -> None:
        self._write()
        self.inner.set_meta(meta)

    def get(self, key: Key) -> Record | None:
        return self.inner.get(key)

    def put(self, records: Iterable[Record]) -> None:
        self._write()
        self.inner.put(records)

    def put_rows(self, rows: Iterable[Row]) -> None:
        self._write()
        self.inner.put_rows(rows)

    def records(self, collection: str | None = None) -> list[Record]:
        return self.inner.records(collection)

    def forget(self, key: Key) -> None:
        self._write()
        self.inner.forget(key)

    def get_server(self, key: Key) -> Record | None:
        return self.inner.get_server(key)

    def put_server(self, records: Iterable[Record]) -> None:
        self._write()
        self.inner.put_server(records)

    def put_server_rows(self, rows: Iterable[Row]) -> None:
        self._write()
        self.inner.put_server_rows(rows)

    def put_confirmed_rows(self, rows: Iterable[Row]) -> None:
        self._write()
        self.inner.put_confirmed_rows(rows)

    def server_records(self) -> list[Record]:
        return self.inner.server_records()

    def append_outbox(self, op: Op) -> None:
        self._write()
        self.inner.append_outbox(op)

    def outbox(self, after_seq: int = 0, limit: int | None = None) -> list[Op]:
        return self.inner.outbox(after_seq, limit)

    def outbox_for(self, key: Key) -> list[Op]:
        return self.inner.outbox_for(key)

    def ack(self, upto_seq: int, cursor: int) -> None:
        self._write()
        self.inner.ack(upto_seq, cursor)

    def trim(self, cursor: int) -> list[Op]:
        self._write()
        return self.inner.trim(cursor)

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self._write()
        self.inner.record_outcomes(outcomes)

    def outcomes(self) -> list[Outcome]:
        return self.inner.outcomes()

    def stage(self, records: Iterable[Record], cursor: int, hlc: int) -> None:
        self._write()
        self.inner.stage(records, cursor, hlc)

    def stage_rows(self, rows: Iterable[Row], cursor: int, hlc: int) -> None:
        self._write()
        self.inner.stage_rows(rows, cursor, hlc)

    def staging(self) -> tuple[int, int] | None:
        return self.inner.staging()

    def promote_staged(self, keep_local: Iterable[Key]) -> None:
        self._write()
        self.inner.promote_staged(keep_local)

    def clear_staged(self) -> None:
        self._write()
        self.inner.clear_staged()

    def close(self) -> None:
        self.inner.close()


@dataclass(slots=True)
class SimTerminal:
    index: int
    tenant: str
    node_id: str
    path: Path
    clock: TerminalClock
    link: Link
    store: CrashingStore
    client: Terminal
    generation: int = 0
    #: Every op this node ever committed locally, by seq (the oracle).
    made: dict[int, Op] = field(default_factory=dict)
    syncs_ok: int = 0
    syncs_failed: int = 0


class World:
    """Runs one schedule; ``trace`` is the byte-for-byte record of what happened."""

    def __init__(
        self,
        schedule: Schedule,
        directory: Path,
        registry: Registry | None = None,
        *,
        check_every_step: bool = True,
    ) -> None:
        self.schedule = schedule
        self.directory = directory
        self.registry = registry or restaurant_registry(server_ops=False)
        self.check_every_step = check_every_step
        self.time = VirtualTime()
        self.lines: list[str] = []
        self.server_path = directory / "server.db"
        server_store: ServerStore
        if schedule.server == "memory":
            server_store = MemoryServerStore()
        else:
            _fresh_db(self.server_path, "server")
            server_store = SqliteServerStore(self.server_path, synchronous="OFF")
        self.replica = ServerReplica(server_store, self.registry, now_ms=self._now)
        self.network = Network(self.replica, self.lines.append)
        self.tenants = [f"r{k}" for k in range(schedule.tenants)]
        self.terminals: list[SimTerminal] = []
        self.office: dict[str, Terminal] = {}
        self.office_made: dict[str, dict[int, Op]] = {}
        self.refused: Counter[str] = Counter()
        self.unseen_outcomes = 0
        #: The server's state per tenant as the invariants last read it (see _view).
        self.views: dict[str, Any] = {}
        self.steps_run = 0
        self.checks = 0
        #: Terminal checks after a committed transaction, within steps.
        self.commit_checks = 0
        self._setup()

    # ------------------------------------------------------------------ building

    def _rng(self, node_id: str, generation: int) -> random.Random:
        return random.Random(f"{self.schedule.seed}:{node_id}:{generation}")

    def _open_terminal(
        self, path: Path, node_id: str, clock: TerminalClock, link: Link, generation: int
    ) -> tuple[CrashingStore, Terminal]:
        store = CrashingStore(SqliteTerminalStore(path, node_id, synchronous="OFF"))
        if self.check_every_step:
            store.on_commit = lambda: invariants.check_commit(self, node_id)
        client = Terminal(
            store,
            self.registry,
            link,
            wall=clock,
            rng=self._rng(node_id, generation),
            batch_size=self.schedule.batch_size,
            page_size=self.schedule.page_size,
            compact=self.schedule.compact,
        )
        return store, client

    def _setup(self) -> None:
        for tenant in self.tenants:
            # The back office seeds the floor: stock and the table plan.
            node = f"{tenant}.office"
            office = Terminal(
                MemoryTerminalStore(node),
                self.registry,
                self.network.link(tenant, node, node),
                wall=TerminalClock(self.time),
                rng=self._rng(node, 0),
            )
            made = {op.seq: op for op in workload.seed_floor(office, tenant)}
            office.sync()
            self.office[tenant] = office
            self.office_made[tenant] = made
        for index in range(self.schedule.terminals):
            tenant = self.tenants[self.schedule.tenant_of(index)]
            node = f"{tenant}.t{index}"
            path = self.directory / f"{node}.db"
            _fresh_db(path, "terminal")
            clock = TerminalClock(self.time)
            link = self.network.link(tenant, node, f"T{index}")
            store, client = self._open_terminal(path, node, clock, link, 0)
            term = SimTerminal(index, tenant, node, path, clock, link, store, client)
            self.terminals.append(term)
            client.page_size = 500  # the opening pull is not what a schedule tests
            client.sync()
            client.page_size = self.schedule.page_size
        self.lines.append(
            f"setup seed={self.schedule.seed} terminals={self.schedule.terminals} "
            f"tenants={self.schedule.tenants} batch={self.schedule.batch_size} "
            f"page={self.schedule.page_size} server={self.schedule.server}"
            f"{'' if self.schedule.compact else ' feed-pulls'}"
        )

    def nodes_of(self, tenant: str) -> list[str]:
        nodes = [t.node_id for t in self.terminals if t.tenant == tenant]
        return sorted([*nodes, f"{tenant}.office"])

    def made_by(self, node_id: str) -> dict[int, Op]:
        for term in self.terminals:
            if term.node_id == node_id:
                return term.made
        tenant = node_id.rsplit(".", 1)[0]
        return self.office_made.get(tenant, {})

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Run every step, checking the invariants after each; then heal and check the end."""
        for index, step in enumerate(self.schedule.steps):
            self.step(index, step)
        self.finish()

    def step(self, index: int, step: Step) -> None:
        self.time.advance(step.dt)
        self.lines.append(f"{index:03d} +{step.dt}ms {step.describe()}")
        try:
            self._do(step)
        except Violation as exc:
            exc.step = index
            raise
        self.steps_run += 1
        if self.check_every_step:
            try:
                invariants.check_step(self)
            except Violation as exc:
                exc.step = index
                raise
        self.lines.append("    " + self.digest())

    def digest(self) -> str:
        store = self.replica.store
        parts = [f"{t}@{store.cursor(t)}" for t in self.tenants]
        for term in self.terminals:
            meta = term.store.inner.meta()
            parts.append(f"T{term.index}:{meta.next_seq - 1}/{meta.acked_seq}/{meta.cursor}")
        return " ".join(parts)

    def _term(self, step: Step) -> SimTerminal:
        return self.terminals[step.t % len(self.terminals)]

    def _now(self) -> int:
        # The server's receive time is virtual too, so a seed replays exactly.
        return self.time.now

    def _do(self, step: Step) -> None:
        if step.kind == "tick":
            return
        if step.kind == "restart_server":
            if self.schedule.server == "memory":
                self.lines.append("  (a memory server keeps running)")
                return
            self.replica.store.close()
            store = SqliteServerStore(self.server_path, synchronous="OFF")
            self.replica = ServerReplica(store, self.registry, now_ms=self._now)
            self.network.replica = self.replica
            self.network.fire("server-restart")
            return
        term = self._term(step)
        if step.kind == "partition":
            if not term.link.partitioned:
                self.network.fire("partition")
            term.link.partitioned = True
        elif step.kind == "heal":
            term.link.partitioned = False
        elif step.kind == "deliver":
            busy = [link for link in self.network.links if link.inflight]
            if term.link.inflight:
                self.network.deliver_delayed(term.link, step.a)
            elif busy:
                self.network.deliver_delayed(busy[step.t % len(busy)], step.a)
            else:
                self.lines.append("  nothing in flight")
        elif step.kind == "jump":
            term.clock.jump(step.a)
            self.network.fire("clock-jump")
        elif step.kind == "drift":
            term.clock.drift(step.a)
            self.network.fire("clock-drift")
        elif step.kind == "crash":
            if step.a == 0:
                self._restart(term, "crashed")
            else:
                term.store.countdown = step.a
                self.lines.append(f"  will die at its store write #{step.a}")
        elif step.kind in ("sync", "pull"):
            term.link.plan = list(step.faults)
            try:
                self._guarded(term, lambda: self._sync(term, step.kind == "pull"))
            finally:
                term.link.plan = []
        elif step.kind == "write":
            self._guarded(term, lambda: self._write(term, step))

    def _guarded(self, term: SimTerminal, action: Any) -> None:
        try:
            action()
        except Crashed:
            term.link.settle(crashed=True)
            self._restart(term, "died mid-operation")
        else:
            term.link.settle(crashed=False)

    def _restart(self, term: SimTerminal, why: str) -> None:
        self.network.fire("crash")
        term.store.close()
        term.generation += 1
        term.store, term.client = self._open_terminal(
            term.path, term.node_id, term.clock, term.link, term.generation
        )
        meta = term.store.meta()
        self.lines.append(
            f"  T{term.index} {why}; restarted from its file at seq {meta.next_seq - 1}, "
            f"acked {meta.acked_seq}, cursor {meta.cursor}"
        )

    def _sync(self, term: SimTerminal, pull_only: bool) -> None:
        try:
            if pull_only:
                pulled = term.client.pull()
                self.lines.append(f"  pulled {pulled}")
            else:
                report = term.client.sync()
                self.lines.append(
                    f"  synced: pushed {report.pushed} pulled {report.pulled} "
                    f"pending {report.pending} cursor {report.cursor}"
                )
            term.syncs_ok += 1
        except TransportError as exc:
            term.syncs_failed += 1
            self.lines.append(f"  sync failed: {exc.detail}")
        except FynloError as exc:
            raise Violation(
                "sync-error", f"T{term.index} sync raised {exc.code}: {exc.detail}"
            ) from exc

    # ------------------------------------------------------------------ workload

    def _write(self, term: SimTerminal, step: Step) -> None:
        try:
            ops = self._action(term, step)
        except RejectedOpError as exc:
            reason = str(exc.extra.get("reason") or exc.code)
            self.refused[reason] += 1
            self.lines.append(f"  refused locally: {reason}")
            return
        if not ops:
            # Nothing of that kind to do here: a new party walks in instead.
            self.lines.append("  nothing to do; opens a table instead")
            ops = self._action(term, Step("write", t=step.t, what="open", a=step.a, b=step.b))
        for op in ops:
            term.made[op.seq] = op
            self.lines.append(
                f"  op {op.seq} {op.op_id} {op.kind} {op.collection}/{op.record_id} hlc {op.hlc}"
            )

    def _action(self, term: SimTerminal, step: Step) -> list[Op]:
        online = not term.link.partitioned
        return workload.act(term.client, term.tenant, term.index, step, online=online)

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """Heal everything, deliver what is in flight, sync until quiet, check the end."""
        self.lines.append("heal")
        for term in self.terminals:
            term.link.partitioned = False
            term.link.plan = []
            term.store.countdown = 0
        for link in self.network.links:
            while link.inflight:
                self.network.deliver_delayed(link, 0)
        for round_no in range(QUIET_ROUNDS):
            for office in self.office.values():
                office.sync()
            for term in self.terminals:
                self._guarded(term, lambda t=term: self._sync(t, pull_only=False))
            if invariants.quiet(self):
                self.lines.append(f"quiet after {round_no + 1} round(s)")
                break
        try:
            invariants.check_step(self)
            invariants.check_end(self)
        except Violation as exc:
            exc.step = len(self.schedule.steps)
            raise
        self.lines.append("end " + self.digest())

    def trace_text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def trace_hash(self) -> str:
        return hashlib.sha256(self.trace_text().encode("utf-8")).hexdigest()

    def outcomes(self) -> Iterator[tuple[str, Outcome]]:
        """Every op's first outcome on the server, by node (nodes sorted)."""
        store = self.replica.store
        for tenant in self.tenants:
            for node in self.nodes_of(tenant):
                for outcome in store.op_log(tenant, node):
                    yield node, outcome

    def payment_counts(self) -> Counter[str]:
        """Payments by method, refunds, voids and overpayments on the server, all tenants."""
        counts: Counter[str] = Counter()
        for tenant in self.tenants:
            counts.update(payment_counts(self.replica.store.records(tenant, "orders")))
        return counts

    def close(self) -> None:
        for term in self.terminals:
            term.store.close()
        self.replica.store.close()
