"""Bugs the simulator found in the core, each pinned by the shortest schedule it shrank to."""

from __future__ import annotations

from pathlib import Path

from fynlo_sync.sim import Schedule, Step, World


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
