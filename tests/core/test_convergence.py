"""Convergence as a hypothesis state machine.

Three terminals (SQLite) and a server replica joined by links that drop requests, lose
responses after the server committed, duplicate, hold a push back and deliver it late
(reorder), and partition. After every step: no acknowledged op is lost, none is applied
twice, no node's applied seqs have a gap, every order adds up. At the end, heal, sync
until quiet: every replica is equal and every outbox empty.

FYNLO_CONVERGENCE_EXAMPLES raises the example count (default 60).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import order_total
from fynlo_sync.errors import FynloError, TransportError
from fynlo_sync.ops import Batch, Op
from fynlo_sync.protocol import PullPage, PushResult, encode_batch
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from tests.core.conftest import make_registry

NODES = ("a", "b", "c")
ORDERS = ("o1", "o2")
NOTES = ("n1", "n2")
TENANT = "t1"
FAULTS = ("none", "drop_request", "drop_response", "duplicate", "hold")


class FaultyLink:
    """A loopback link with faults chosen per call by the state machine."""

    def __init__(self, inner: LoopbackTransport, held: list[tuple[str, bytes]]) -> None:
        self.inner = inner
        self.fault = "none"
        self.partitioned = False
        self.held = held

    def push(self, batch: Batch) -> PushResult:
        if self.partitioned or self.fault == "drop_request":
            raise TransportError("request lost")
        if self.fault == "hold":
            self.held.append((batch.node_id, encode_batch(batch)))
            raise TransportError("request delayed")
        result = self.inner.push(batch)
        if self.fault == "duplicate":
            result = self.inner.push(batch)
        if self.fault == "drop_response":
            raise TransportError("response lost")
        return result

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        if self.partitioned or self.fault == "drop_request":
            raise TransportError("request lost")
        page = self.inner.pull(since, limit, compact=compact)
        if self.fault == "drop_response":
            raise TransportError("response lost")
        return page


class Convergence(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.registry = make_registry()
        self.server = ServerReplica(MemoryServerStore(), self.registry)
        self.clock = ManualClock(tick_ms=1)
        self.held: list[tuple[str, bytes]] = []
        self.links: dict[str, FaultyLink] = {}
        self.terminals: dict[str, Terminal] = {}
        self.made: dict[str, list[Op]] = {}
        self.folder = tempfile.TemporaryDirectory()
        self.restarts = 0
        for node in NODES:
            self.links[node] = FaultyLink(LoopbackTransport(self.server, TENANT, node), self.held)
            self.terminals[node] = self._open(node, seed=NODES.index(node))
            self.made[node] = []

    def _open(self, node: str, seed: int) -> Terminal:
        return Terminal(
            SqliteTerminalStore(Path(self.folder.name) / f"{node}.db", node, synchronous="OFF"),
            self.registry,
            self.links[node],
            wall=self.clock,
            rng=random.Random(seed),
            batch_size=3,
            page_size=4,
        )

    def _write(self, node: str, action: Any) -> None:
        terminal = self.terminals[node]
        try:
            op = action(terminal)
        except FynloError:
            return  # refused locally (illegal on this terminal's view): nothing was made
        self.made[node].append(op)

    @rule(
        node=st.sampled_from(NODES),
        order=st.sampled_from(ORDERS),
        line=st.integers(0, 5),
        qty=st.integers(1, 3),
        price=st.integers(0, 999),
    )
    def add_line(self, node: str, order: str, line: int, qty: int, price: int) -> None:
        def act(t: Terminal) -> Op:
            if t.get("orders", order) is None:
                return t.command("orders", order, "open", {"currency": "GBP"})
            args = {"line_id": f"{node}{line}", "item": "x", "qty": qty, "unit_price": price}
            return t.command("orders", order, "add_line", args)

        self._write(node, act)

    @rule(
        node=st.sampled_from(NODES),
        order=st.sampled_from(ORDERS),
        command=st.sampled_from(["send_to_kitchen", "mark_ready", "serve", "close", "void"]),
    )
    def move_order(self, node: str, order: str, command: str) -> None:
        self._write(node, lambda t: t.command("orders", order, command, {}))

    @rule(
        node=st.sampled_from(NODES),
        note=st.sampled_from(NOTES),
        collection=st.sampled_from(["notes", "notes_server", "notes_client", "notes_manual"]),
        title=st.sampled_from(["soup", "stew", "broth"]),
        likes=st.integers(-2, 2),
        tag=st.sampled_from(["x", "y"]),
    )
    def edit_note(
        self, node: str, note: str, collection: str, title: str, likes: int, tag: str
    ) -> None:
        def act(t: Terminal) -> Op:
            if t.store.get((collection, note)) is None:
                return t.put(collection, note, {"title": title, "likes": likes, "tags": [tag]})
            return t.patch(collection, note, {"title": title, "likes": likes, "tags": [tag]})

        self._write(node, act)

    @rule(
        node=st.sampled_from(NODES),
        note=st.sampled_from(NOTES),
        collection=st.sampled_from(["notes", "notes_server", "notes_client"]),
    )
    def delete_note(self, node: str, note: str, collection: str) -> None:
        self._write(node, lambda t: t.delete(collection, note))

    @rule(node=st.sampled_from(NODES), fault=st.sampled_from(FAULTS))
    def sync(self, node: str, fault: str) -> None:
        self.links[node].fault = fault
        try:
            self.terminals[node].sync()
        except TransportError:
            pass
        finally:
            self.links[node].fault = "none"

    @rule(node=st.sampled_from(NODES))
    def partition(self, node: str) -> None:
        self.links[node].partitioned = True

    @rule(node=st.sampled_from(NODES))
    def heal(self, node: str) -> None:
        self.links[node].partitioned = False

    @rule()
    def deliver_held(self) -> None:
        """A delayed push finally arrives, after later ones may have."""
        while self.held:
            node, body = self.held.pop(0)
            # A gap is refused whole; the terminal resends in order.
            with contextlib.suppress(FynloError):
                self.server.push(TENANT, body, node_id=node)

    @rule(node=st.sampled_from(NODES))
    def restart(self, node: str) -> None:
        """The app is killed and relaunched: everything not in the SQLite file is gone."""
        old = self.terminals[node]
        old.store.close()
        self.restarts += 1
        self.terminals[node] = self._open(node, seed=1000 + self.restarts)

    # ----------------------------------------------------------------- invariants

    @invariant()
    def server_logs_are_gapless_and_exactly_once(self) -> None:
        store = self.server.store
        for node, high_water in store.high_waters(TENANT).items():
            log = store.op_log(TENANT, node)
            assert [o.seq for o in log] == list(range(1, high_water + 1))
            made = {op.seq: op.op_id for op in self.made[node]}
            assert [o.op_id for o in log] == [made[o.seq] for o in log]
        op_ids = [
            c.op_id for c in store.changes(TENANT, 0, 10**6) if c.record.collection != "conflicts"
        ]
        assert len(op_ids) == len(set(op_ids)), "an op changed the feed twice"

    @invariant()
    def nothing_acknowledged_is_lost(self) -> None:
        for node, t in self.terminals.items():
            acked = t.store.meta().acked_seq
            assert acked <= self.server.store.high_water(TENANT, node)
            outbox = [op.seq for op in t.store.outbox()]
            unacked = [op.seq for op in self.made[node] if op.seq > acked]
            assert set(unacked) <= set(outbox), "an unacknowledged op left the outbox"

    @invariant()
    def orders_add_up(self) -> None:
        replicas = [t.store.records("orders") for t in self.terminals.values()]
        replicas.append(self.server.store.records(TENANT, "orders"))
        for records in replicas:
            for order in records:
                assert order.fields["total"] == order_total(order.fields)

    def teardown(self) -> None:
        if not hasattr(self, "terminals"):
            return
        self.deliver_held()
        for link in self.links.values():
            link.partitioned = False
            link.fault = "none"
        for _ in range(3):
            for t in self.terminals.values():
                t.sync()
        server_rows = self.server.store.records(TENANT)
        for node, t in self.terminals.items():
            assert t.store.outbox() == [], node
            assert t.store.records() == server_rows, node
            assert self.server.store.high_water(TENANT, node) == len(self.made[node])
        for t in self.terminals.values():
            t.store.close()
        self.folder.cleanup()


Convergence.TestCase.settings = settings(
    max_examples=int(os.environ.get("FYNLO_CONVERGENCE_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
)
TestConvergence = Convergence.TestCase
