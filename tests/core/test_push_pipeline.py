"""A terminal's push on a ``pipelined`` transport: the push runs on a worker thread while
the terminal acknowledges the last answer and reads the next batch, still one push at a
time and in seq order. Exactly once, order, lost answers, a failed acknowledgement and a
batch too large, against a real server replica over the loopback and SQLite files."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.errors import StoreError, TransportError
from fynlo_sync.ops import Batch
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import PushResult, decode_page, encode
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport

LINE = {"item": "soup", "qty": 2, "unit_price": 450}


class Wire(LoopbackTransport):
    """A loopback that allows pipelining and records every push it is handed: which seqs,
    on which thread, how many at once. ``lose`` names pushes (0-based, in call order) whose
    answer is lost after the server committed them; ``drop`` ones that never reach it."""

    pipelined = True

    def __init__(self, replica: ServerReplica, node_id: str) -> None:
        super().__init__(replica, "t1", node_id)
        self.sent: list[list[int]] = []
        self.threads: set[str] = set()
        self.lose: set[int] = set()
        self.drop: set[int] = set()
        self.during: dict[int, threading.Event] = {}
        self.seen_during: dict[int, bool] = {}
        self._busy = 0
        self.most_at_once = 0
        self._guard = threading.Lock()

    def push(self, batch: Batch) -> PushResult:
        with self._guard:
            self._busy += 1
            self.most_at_once = max(self.most_at_once, self._busy)
        try:
            call = len(self.sent)
            self.sent.append([op.seq for op in batch.ops])
            self.threads.add(threading.current_thread().name)
            if call in self.during:
                # Held on the wire until the terminal shows it is working meanwhile.
                self.seen_during[call] = self.during[call].wait(10)
            if call in self.drop:
                raise TransportError("connection refused")
            result = super().push(batch)
            if call in self.lose:
                raise TransportError("connection reset after the server committed")
            return result
        finally:
            with self._guard:
                self._busy -= 1


class Watched(SqliteTerminalStore):
    """A terminal store that says when an outbox read starts past ``mark`` and can fail
    its ``fail_ack``-th acknowledgement (1-based), as a crash between two writes would."""

    def __init__(self, path: Path, node_id: str) -> None:
        super().__init__(path, node_id)
        self.mark = -1
        self.read_past = threading.Event()
        self.fail_ack = 0
        self.acks = 0

    def outbox(self, after_seq: int = 0, limit: int | None = None) -> list:  # type: ignore[type-arg]
        if self.mark >= 0 and after_seq >= self.mark:
            self.read_past.set()
        return super().outbox(after_seq, limit)

    def ack(self, upto_seq: int, cursor: int) -> None:
        self.acks += 1
        if self.acks == self.fail_ack:
            raise StoreError("disk I/O error (the process died here)")
        super().ack(upto_seq, cursor)


@pytest.fixture
def replica(registry: Registry) -> ServerReplica:
    return ServerReplica(MemoryServerStore(), registry)


def terminal(
    path: Path, registry: Registry, link: LoopbackTransport, clock: ManualClock, size: int = 5
) -> Terminal:
    return Terminal(
        Watched(path, "n1"),
        registry,
        link,
        wall=clock,
        rng=random.Random(1),
        batch_size=size,
        page_size=50,
    )


def write(t: Terminal, count: int) -> None:
    t.command("orders", "o1", "open", {"currency": "GBP"})
    for i in range(count - 1):
        t.command("orders", "o1", "add_line", {"line_id": f"l{i}", **LINE})


def server_seqs(replica: ServerReplica) -> list[int]:
    """The node seqs of the server's feed, in feed order (each committed op once)."""
    page = decode_page(encode(replica.pull_wire("t1", 0, 1000)))
    return [c.node_seq for c in page.changes if c.node_id == "n1"]


def test_pushes_run_on_a_worker_one_at_a_time_in_seq_order(
    tmp_path: Path, registry: Registry, replica: ServerReplica, clock: ManualClock
) -> None:
    link = Wire(replica, "n1")
    t = terminal(tmp_path / "n1.db", registry, link, clock)
    write(t, 23)
    assert t.push() == 23
    assert link.sent == [list(range(s, min(s + 5, 24))) for s in range(1, 24, 5)]
    assert link.most_at_once == 1
    assert link.threads and threading.current_thread().name not in link.threads
    assert server_seqs(replica) == list(range(1, 24))
    assert t.store.meta().acked_seq == 23 and t.pending() == []
    assert t.push() == 0 and len(link.sent) == 5  # nothing sent twice


def test_the_next_batch_is_read_while_one_is_on_the_wire(
    tmp_path: Path, registry: Registry, replica: ServerReplica, clock: ManualClock
) -> None:
    link = Wire(replica, "n1")
    t = terminal(tmp_path / "n1.db", registry, link, clock)
    assert isinstance(t.store, Watched)
    write(t, 12)
    t.store.mark = 5  # the read of seqs 6.. starts ...
    link.during[0] = t.store.read_past  # ... while seqs 1..5 are still on the wire
    assert t.push() == 12
    assert link.seen_during == {0: True}
    assert server_seqs(replica) == list(range(1, 13))


def test_a_plain_transport_pushes_in_the_callers_thread(
    tmp_path: Path, registry: Registry, replica: ServerReplica, clock: ManualClock
) -> None:
    link = Wire(replica, "n1")
    link.pipelined = False
    t = terminal(tmp_path / "n1.db", registry, link, clock)
    write(t, 12)
    assert t.push() == 12
    assert link.threads == {threading.current_thread().name}
    assert server_seqs(replica) == list(range(1, 13))


@pytest.mark.parametrize("fault", ["drop", "lose"])
def test_a_failed_push_keeps_earlier_acks_and_the_retry_sends_each_op_once(
    tmp_path: Path, registry: Registry, replica: ServerReplica, clock: ManualClock, fault: str
) -> None:
    link = Wire(replica, "n1")
    getattr(link, fault).add(2)  # the third batch: seqs 11..15
    t = terminal(tmp_path / "n1.db", registry, link, clock)
    write(t, 23)
    with pytest.raises(TransportError):
        t.push()
    assert t.store.meta().acked_seq == 10  # the answers before it are all kept
    assert [op.seq for op in t.pending()][:1] == [11]
    assert t.push() == 13  # from seq 11: not wedged, nothing skipped
    assert link.sent[3:] == [[11, 12, 13, 14, 15], [16, 17, 18, 19, 20], [21, 22, 23]]
    assert server_seqs(replica) == list(range(1, 24))  # committed once, in order
    assert t.store.meta().acked_seq == 23 and t.pending() == []
    assert t.outcomes() == []  # a replay of an applied op is not notable


def test_an_ack_lost_while_the_next_push_is_on_the_wire_is_replayed_after_restart(
    tmp_path: Path, registry: Registry, replica: ServerReplica, clock: ManualClock
) -> None:
    link = Wire(replica, "n1")
    t = terminal(tmp_path / "n1.db", registry, link, clock)
    assert isinstance(t.store, Watched)
    write(t, 23)
    t.store.fail_ack = 2  # seqs 6..10's answer: written while 11..15 is on the wire
    with pytest.raises(StoreError):
        t.push()
    assert link.most_at_once == 1
    t.store.close()
    again = terminal(tmp_path / "n1.db", registry, link, clock)
    assert again.store.meta().acked_seq == 5
    assert again.push() == 18
    assert server_seqs(replica) == list(range(1, 24))
    assert again.store.meta().acked_seq == 23 and again.pending() == []
    assert again.outcomes() == []


def test_a_batch_too_large_is_split_and_the_prepared_one_dropped(
    tmp_path: Path, registry: Registry, clock: ManualClock
) -> None:
    replica = ServerReplica(MemoryServerStore(), registry, max_batch=4)
    link = Wire(replica, "n1")
    t = terminal(tmp_path / "n1.db", registry, link, clock, size=10)
    write(t, 21)
    assert t.push() == 21
    accepted = [seqs for seqs in link.sent if len(seqs) <= 4]
    assert [s for seqs in accepted for s in seqs] == list(range(1, 22))
    assert server_seqs(replica) == list(range(1, 22))
    assert t.pending() == []


def test_a_gap_still_stops_the_push_with_a_store_error(
    tmp_path: Path, registry: Registry, replica: ServerReplica, clock: ManualClock
) -> None:
    link = Wire(replica, "n1")
    t = terminal(tmp_path / "n1.db", registry, link, clock)
    write(t, 12)
    t.store.set_meta(replace(t.store.meta(), acked_seq=5))  # the server "forgot" 1..5
    with pytest.raises(StoreError) as caught:
        t.push()
    assert caught.value.extra["expected"] == 1
    assert server_seqs(replica) == []
    assert [op.seq for op in t.store.outbox(0)] == list(range(1, 13))  # the outbox is kept
