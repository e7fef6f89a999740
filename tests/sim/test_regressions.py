"""Bugs the simulator found in the core, each pinned by the shortest schedule it shrank to."""

from __future__ import annotations

from pathlib import Path

import pytest

from fynlo_sync.sim import Schedule, Step, World, run_schedule
from fynlo_sync.store.sqlite import SqliteTerminalStore


def test_a_rejection_reaches_its_author_when_the_answer_was_lost_and_it_pulled_first(
    tmp_path: Path,
) -> None:
    """Found by `fynlo sim` (seed 1093, shrunk to 5 steps): a push commits but its answer
    is lost; the terminal pulls before pushing again (as on a poke), sees its own later op
    in the feed, and so acknowledges and drops the earlier ops without ever learning their
    outcomes: a rejected op vanished from the till with no reason given."""
    schedule = Schedule(
        seed=4,
        terminals=2,
        tenants=1,
        steps=(
            Step("write", t=0, what="open"),  # T0 seq 1: order A
            Step("sync", t=0),
            Step("sync", t=1),
            Step("write", t=1, what="close"),  # T1 closes A
            Step("sync", t=1),
            Step("write", t=0, what="close"),  # T0 seq 2: closes A too (it has not seen T1)
            Step("write", t=0, what="open"),  # T0 seq 3: opens table B (applies)
            Step("sync", t=0, faults=("drop_response",)),  # committed; the answer is lost
            Step("pull", t=0),  # seq 3 is in the feed: seqs 2..3 acknowledged
        ),
    )
    world = World(schedule, tmp_path)
    try:
        for index, step in enumerate(schedule.steps):
            world.step(index, step)
        term = world.terminals[0]
        server = {o.seq: o for o in world.replica.store.op_log("r0", term.node_id)}
        assert server[2].status == "rejected" and server[2].reason == "illegal-transition"
        assert term.client.pending() == []
        known = {o.seq: o for o in term.client.outcomes()}
        assert 2 in known, "the terminal never learned that its close was rejected"
        assert (known[2].original or known[2].status) == "rejected"
        assert known[2].reason == "illegal-transition"
        world.finish()
    finally:
        world.close()


ACK_BEFORE_07A2202 = (
    "UPDATE fynlo_outbox SET acked_cursor = ? WHERE seq <= ? AND acked_cursor IS NULL",
)


def ack_seen_in_the_feed() -> Schedule:
    """Shrunk by `fynlo sim` from seed 5 with the ack of 07a2202 undone: one push of four
    ops, pulled back three changes a page. The first page holds the stock delta's change
    but ends before the push's cursor."""
    return Schedule(
        seed=5,
        terminals=1,
        tenants=1,
        batch_size=100,
        page_size=3,
        compact=False,  # the bug was between feed pages (compacted pages are staged)
        steps=(
            Step("write", t=0, what="stock", a=6, b=20),
            Step("write", t=0, what="void", b=76),
            Step("write", t=0, what="send", a=4, b=61),
            Step("write", t=0, what="ready", a=2, b=7),
        ),
    )


def test_an_op_seen_in_the_feed_before_its_ack_cursor_is_not_applied_twice() -> None:
    result = run_schedule(ack_seen_in_the_feed())
    assert result.ok, result.failure


def test_the_double_apply_that_07a2202_fixed_is_caught_between_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def old_ack(self: SqliteTerminalStore, upto_seq: int, cursor: int) -> None:
        self.db.conn.execute(ACK_BEFORE_07A2202[0], (cursor, upto_seq))

    monkeypatch.setattr(SqliteTerminalStore, "ack", old_ack)
    result = run_schedule(ack_seen_in_the_feed())
    assert result.failure is not None and result.failure.invariant == "stock-count"
