"""The terminal client over a loopback to a server replica, with SQLite files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fynlo_sync.client import Backoff, Terminal
from fynlo_sync.errors import (
    CallerError,
    ChecksumMismatchError,
    IllegalTransitionError,
    InvalidValueError,
    RejectedOpError,
    TransportError,
    UnknownCollectionError,
)
from fynlo_sync.ops import Batch
from fynlo_sync.plugins import CONFLICTS
from fynlo_sync.protocol import PullPage, PushResult, decode_page, encode
from fynlo_sync.replica import ServerReplica
from fynlo_sync.transport import LoopbackTransport
from tests.core.conftest import TerminalFactory

LINE = {"item": "soup", "qty": 2, "unit_price": 450}


def open_order(t: Terminal, order: str = "o1") -> None:
    t.command("orders", order, "open", {"currency": "GBP", "table": "4"})


def test_local_write_is_visible_at_once_and_queued(make_terminal: TerminalFactory) -> None:
    t = make_terminal("n1")
    open_order(t)
    t.command("orders", "o1", "add_line", {"line_id": "l1", **LINE})
    order = t.get("orders", "o1")
    assert order is not None and order.fields["total"] == 900
    assert [op.seq for op in t.pending()] == [1, 2]
    assert t.store.meta().next_seq == 3


@pytest.mark.parametrize(
    ("write", "error"),
    [
        (lambda t: t.command("orders", "o1", "serve"), IllegalTransitionError),
        (lambda t: t.put("nope", "x", {}), UnknownCollectionError),
        (lambda t: t.patch("notes", "x", {"price": 1.5}), InvalidValueError),
        (lambda t: t.patch("notes", "x", {"_secret": 1}), CallerError),
        (lambda t: t.patch("notes", "missing", {"title": "x"}), RejectedOpError),
    ],
)
def test_a_refused_local_write_leaves_no_trace(
    make_terminal: TerminalFactory, write: object, error: type[Exception]
) -> None:
    t = make_terminal("n1")
    open_order(t)
    before = (t.store.records(), t.store.outbox(), t.store.meta().next_seq)
    with pytest.raises(error):
        write(t)  # type: ignore[operator]
    assert (t.store.records(), t.store.outbox(), t.store.meta().next_seq) == before


def test_two_terminals_converge_through_the_server(make_terminal: TerminalFactory) -> None:
    a, b = make_terminal("a"), make_terminal("b")
    open_order(a)
    a.sync()
    b.sync()
    # both add lines to the same order while they cannot see each other
    a.command("orders", "o1", "add_line", {"line_id": "la", **LINE})
    b.command(
        "orders", "o1", "add_line", {"line_id": "lb", "item": "tea", "qty": 1, "unit_price": 250}
    )
    a.sync()
    b.sync()
    a.sync()
    assert a.store.records() == b.store.records()
    order = a.get("orders", "o1")
    assert order is not None and order.fields["total"] == 1150
    assert a.pending() == [] and b.pending() == []
    assert a.store.outbox() == [] and b.store.outbox() == []


def test_batches_and_pages_are_bounded(make_terminal: TerminalFactory) -> None:
    a = make_terminal("a", batch_size=3, page_size=4, compact=False)
    b = make_terminal("b", page_size=4, compact=False)
    open_order(a)
    for i in range(9):
        a.command("orders", "o1", "add_line", {"line_id": f"l{i}", **LINE})
    report = a.sync()
    assert report.pushed == 10 and report.pending == 0
    pulled = b.sync().pulled
    assert pulled == 10
    assert b.records("orders") == a.records("orders")


def test_rebase_keeps_pending_ops_over_new_server_state(make_terminal: TerminalFactory) -> None:
    a, b = make_terminal("a"), make_terminal("b")
    a.put("notes", "n", {"title": "soup", "likes": 1})
    a.sync()
    b.sync()
    b.patch("notes", "n", {"likes": 5})  # pending on b
    a.patch("notes", "n", {"likes": 2, "body": "from a"})
    a.sync()
    b.pull()  # b sees a's change; its own pending delta is re-applied on top
    note = b.get("notes", "n")
    assert note is not None and note.fields == {"title": "soup", "likes": 8, "body": "from a"}
    assert [op.seq for op in b.pending()] == [1]
    b.sync()
    a.sync()
    assert a.store.records() == b.store.records()


def test_manual_conflict_is_parked_then_resolved_by_a_manager(
    make_terminal: TerminalFactory,
) -> None:
    a, b, manager = make_terminal("a"), make_terminal("b"), make_terminal("m")
    a.put("notes_manual", "n", {"title": "soup"})
    a.sync()
    b.sync()
    a.patch("notes_manual", "n", {"title": "stew"})
    b.patch("notes_manual", "n", {"title": "broth"})
    a.sync()
    b.sync()
    (outcome,) = [o for o in b.outcomes() if o.status == "conflict"]
    manager.sync()
    queue = manager.records(CONFLICTS)
    assert [c.record_id for c in queue] == [outcome.conflict_id]
    assert queue[0].fields["state"] == "open"
    assert queue[0].fields["op"]["node_id"] == "b"
    assert queue[0].fields["server"]["fields"] == {"title": "stew"}
    assert outcome.conflict_id is not None
    manager.resolve_conflict(outcome.conflict_id, "incoming")
    manager.sync()
    for t in (a, b):
        t.sync()
    note = a.get("notes_manual", "n")
    assert note is not None and note.fields["title"] == "broth"
    resolved = a.get(CONFLICTS, outcome.conflict_id)
    assert resolved is not None and resolved.fields["state"] == "resolved"
    assert resolved.fields["resolved_by"] == "m"
    assert a.store.records() == b.store.records() == manager.store.records()
    with pytest.raises(IllegalTransitionError):
        manager.resolve_conflict(outcome.conflict_id, "server")


def test_rejected_ops_are_reported_and_never_block_later_ones(
    make_terminal: TerminalFactory,
) -> None:
    a, b = make_terminal("a"), make_terminal("b")
    open_order(a)
    a.sync()
    b.sync()
    a.command("orders", "o1", "void", {"reason": "mistake"})
    b.command("orders", "o1", "add_line", {"line_id": "l1", **LINE})  # legal on b's view
    b.put("notes", "after", {"title": "later op"})
    a.sync()
    b.sync()
    rejected = [o for o in b.outcomes() if o.status == "rejected"]
    assert [(o.seq, o.reason) for o in rejected] == [(1, "illegal-transition")]
    assert b.get("notes", "after") is not None
    order = b.get("orders", "o1")
    assert order is not None and order.fields["status"] == "voided" and order.fields["total"] == 0
    assert b.store.outbox() == []


class FlakyLink:
    """Loses the response after the server committed, once."""

    def __init__(self, inner: LoopbackTransport) -> None:
        self.inner = inner
        self.lose_next_response = True

    def push(self, batch: Batch) -> PushResult:
        result = self.inner.push(batch)
        if self.lose_next_response:
            self.lose_next_response = False
            raise TransportError("connection reset")
        return result

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        return self.inner.pull(since, limit, compact=compact)


def test_a_lost_ack_is_healed_by_the_replay_and_nothing_applies_twice(
    tmp_path: Path, server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1")
    link = FlakyLink(LoopbackTransport(server, "t1", "n1"))
    t.transport = link
    t.put("notes", "n", {"likes": 1})
    t.patch("notes", "n", {"likes": 1})
    with pytest.raises(TransportError):
        t.sync()
    assert len(t.pending()) == 2  # not acknowledged, still queued
    t.sync()
    note = t.get("notes", "n")
    assert note is not None and note.fields["likes"] == 2
    assert server.store.high_water("t1", "n1") == 2
    assert len(server.store.changes("t1", 0, 100)) == 2
    assert [o.status for o in t.outcomes()] == []  # duplicates of applied ops are not notable


def test_pull_alone_acknowledges_ops_seen_in_the_feed(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1")
    link = FlakyLink(LoopbackTransport(server, "t1", "n1"))
    t.transport = link
    t.put("notes", "n", {"likes": 1})
    with pytest.raises(TransportError):
        t.push()
    t.pull()
    note = t.get("notes", "n")
    assert note is not None and note.fields["likes"] == 1  # not double-counted
    assert t.store.outbox() == [] and t.pending() == []


def test_a_tampered_page_is_refused_and_nothing_changes(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a, b = make_terminal("a"), make_terminal("b")
    open_order(a)
    a.sync()

    class Tamper(LoopbackTransport):
        """A page altered on the way: one total changed in the bytes."""

        def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
            body = encode(self.replica.pull(self.tenant, since, limit, compact=compact))
            return decode_page(body.replace(b'"total":0', b'"total":1', 1))

    b.transport = Tamper(server, "t1", "b")
    with pytest.raises(ChecksumMismatchError):
        b.pull()
    assert b.store.records() == [] and b.store.meta().cursor == 0


def test_offline_terminal_raises_transport_error(
    tmp_path: Path, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1")
    t.transport = None
    open_order(t)
    with pytest.raises(TransportError):
        t.sync()
    assert len(t.pending()) == 1


def test_reopened_terminal_continues_its_seq_and_clock(
    tmp_path: Path, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1")
    open_order(t)
    last_hlc = t.clock.last
    t.store.close()
    again = make_terminal("n1")
    assert again.store.meta().next_seq == 2
    assert again.clock.last == last_hlc
    again.command("orders", "o1", "add_line", {"line_id": "l1", **LINE})
    assert [op.seq for op in again.pending()] == [1, 2]


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    backoff = Backoff(random.Random(7), base_ms=100, cap_ms=1000)
    delays = [backoff.next_delay_ms() for _ in range(8)]
    ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    again = Backoff(random.Random(7), base_ms=100, cap_ms=1000)
    assert [again.next_delay_ms() for _ in range(8)] == delays  # same seed, same waits
    backoff.reset()
    assert backoff.attempt == 0


def test_sync_retrying_backs_off_then_succeeds(
    make_terminal: TerminalFactory, server: ServerReplica
) -> None:
    t = make_terminal("n1")
    open_order(t)
    inner = LoopbackTransport(server, "t1", "n1")
    failures = {"left": 3}

    class Unreliable:
        def push(self, batch: Batch) -> PushResult:
            if failures["left"]:
                failures["left"] -= 1
                raise TransportError("no route to host")
            return inner.push(batch)

        def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
            return inner.pull(since, limit, compact=compact)

    t.transport = Unreliable()
    slept: list[float] = []
    report = t.sync_retrying(slept.append, max_attempts=5)
    assert report.pending == 0 and len(slept) == 3
    assert all(0 <= s <= c for s, c in zip(slept, [0.2, 0.4, 0.8], strict=True))
    assert t.backoff.attempt == 0
    failures["left"] = 10
    open_order(t, "o2")
    with pytest.raises(TransportError):
        t.sync_retrying(slept.append, max_attempts=2)
    assert len(t.pending()) == 1


def test_server_runs_plugin_effects_after_commit(
    registry: object, clock: object, tmp_path: Path
) -> None:
    import conflict
    from fynlo_sync.domains.orders import OrdersPlugin
    from fynlo_sync.plugins import Effect
    from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore

    printed: list[Effect] = []
    reg = conflict.registry([OrdersPlugin(ticket_printer=printed.append)])
    replica = ServerReplica(MemoryServerStore(), reg)
    t = Terminal(
        SqliteTerminalStore(tmp_path / "t.db", "n1"),
        reg,
        LoopbackTransport(replica, "t1", "n1"),
        wall=lambda: 1_700_000_000_000,
        rng=random.Random(1),
    )
    open_order(t)
    t.command("orders", "o1", "add_line", {"line_id": "l1", **LINE})
    t.sync()
    assert printed == []
    t.command("orders", "o1", "send_to_kitchen")
    t.sync()
    t.sync()  # nothing new: no second ticket
    assert [e.name for e in printed] == ["kitchen_ticket"]
    assert printed[0].payload["lines"] == [{"item": "soup", "qty": 2}]
    assert printed[0].payload["table"] == "4"


def test_ops_seen_in_the_feed_are_not_reapplied_over_themselves(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1", page_size=1, compact=False)
    t.put("notes", "n", {"likes": 1})
    t.patch("notes", "n", {"likes": 1})
    t.push()  # acknowledged with the batch's final cursor, 2
    seen: list[int] = []
    inner = LoopbackTransport(server, "t1", "n1")

    class Watch:
        def push(self, batch: Batch) -> PushResult:
            return inner.push(batch)

        def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
            note = t.get("notes", "n")
            assert note is not None
            seen.append(note.fields["likes"])
            return inner.pull(since, limit, compact=compact)

    t.transport = Watch()
    t.pull()
    # before the pull, after page 1 (op 1 in the feed), after page 2: always 2 likes
    assert seen == [2, 2]
    note = t.get("notes", "n")
    assert note is not None and note.fields["likes"] == 2


def test_a_create_the_server_rejects_leaves_the_local_view(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a, b = make_terminal("a"), make_terminal("b")
    open_order(a)
    b.command("orders", "o1", "open", {"currency": "EUR"})  # b opens the same order offline
    a.sync()
    b.sync()  # the server rejects b's open: the order exists, a's version stands
    (rejected,) = b.outcomes()
    assert (rejected.status, rejected.reason) == ("rejected", "illegal-transition")
    order = b.get("orders", "o1")
    assert order is not None and order.fields["currency"] == "GBP"
    b.put("notes", "mine", {"title": "x"})
    b.store.forget(("notes", "mine"))
    assert b.get("notes", "mine") is None


def test_a_create_the_server_rejects_disappears_locally(
    tmp_path: Path, make_terminal: TerminalFactory
) -> None:
    import conflict
    from fynlo_sync.domains.orders import OrdersPlugin
    from fynlo_sync.store import MemoryServerStore

    # Version skew: the terminal knows a "notes" plugin the server does not have yet.
    old_server = ServerReplica(MemoryServerStore(), conflict.registry([OrdersPlugin()]))
    t = make_terminal("n1")
    t.transport = LoopbackTransport(old_server, "t1", "n1")
    t.put("notes", "n", {"title": "x"})
    open_order(t)
    assert t.get("notes", "n") is not None
    t.sync()
    assert [(o.seq, o.reason) for o in t.outcomes()] == [(1, "unknown-collection")]
    assert t.get("notes", "n") is None and t.store.records("notes") == []
    assert t.get("orders", "o1") is not None  # the later op was not blocked
    assert t.store.outbox() == []
