"""The simulator: determinism, the protocol model, invariants that bite, shrinking, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import fynlo_sync.replica
from fynlo_sync.cli import main
from fynlo_sync.engine import Plan, plan_push
from fynlo_sync.errors import SeqGapError, TransportError
from fynlo_sync.limits import DEFAULT_LIMITS, Limits
from fynlo_sync.ops import Batch, Outcome, Record
from fynlo_sync.plugins import Registry
from fynlo_sync.sim import Schedule, Step, World, generate, run_schedule, shrink
from fynlo_sync.sim.invariants import Violation

Key = tuple[str, str]


def _forgetful_plan_push(
    batch: Batch,
    *,
    high_water: int,
    prior: Mapping[int, Outcome],
    rows: Mapping[Key, Record],
    registry: Registry,
    cursor: int,
    received_ms: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    client_address: str | None = None,
) -> Plan:
    """A server that skips the high-water-mark check: a replayed op is applied again."""
    first = batch.ops[0].seq if batch.ops else high_water + 1
    return plan_push(
        batch,
        high_water=min(high_water, first - 1),
        prior={},
        rows=rows,
        registry=registry,
        cursor=cursor,
        received_ms=received_ms,
        limits=limits,
        client_address=client_address,
    )


@pytest.fixture
def forgetful_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(fynlo_sync.replica, "plan_push", _forgetful_plan_push)
    yield


def lost_answer_schedule() -> Schedule:
    """A terminal writes; its push commits but the answer is lost; it pushes again."""
    return Schedule(
        seed=5,
        terminals=3,
        tenants=2,
        steps=(
            Step("write", t=0, what="open"),
            Step("write", t=0, what="stock", b=1),
            Step("sync", t=0, faults=("drop_response",)),
            Step("tick", dt=1000),
            Step("sync", t=0),
        ),
    )


def test_the_same_seed_gives_the_same_trace_byte_for_byte() -> None:
    first = run_schedule(generate(11))
    again = run_schedule(generate(11))
    other = run_schedule(generate(12))
    assert first.ok and again.ok, (first.failure, again.failure)
    assert first.trace == again.trace
    assert first.trace_hash == again.trace_hash
    assert first.trace_hash != other.trace_hash


def test_a_lost_answer_is_answered_as_duplicates_on_the_retry() -> None:
    result = run_schedule(lost_answer_schedule())
    assert result.ok, result.failure
    assert result.faults["drop_response"] == 1
    assert "push 1..2 -> duplicate=2" in result.trace, result.trace


def test_a_push_held_in_flight_is_answered_by_the_protocol_when_it_lands(tmp_path: Path) -> None:
    schedule = Schedule(
        seed=3,
        terminals=1,
        tenants=1,
        batch_size=1,
        steps=(
            Step("write", t=0, what="open"),
            Step("write", t=0, what="note"),
            Step("sync", t=0, faults=("delay",)),  # seq 1 held back; the terminal gives up
            Step("sync", t=0),  # pushes 1 and 2 again, one at a time
        ),
    )
    world = World(schedule, tmp_path)
    try:
        for index, step in enumerate(schedule.steps):
            world.step(index, step)
        link = world.terminals[0].link
        assert len(link.inflight) == 1
        world.network.deliver_delayed(link, 0)  # lands after both were applied
        assert world.trace_text().rstrip().endswith("late push 1..1 -> duplicate=1")
        # A batch that skips a seq is refused with the seq the server expects.
        term = world.terminals[0]
        order = term.made[1].record_id
        for line in (LINE, LINE2):
            op = term.client.command("orders", order, "add_line", line)
            term.made[op.seq] = op  # the oracle sees every op made
        box = term.client.pending()
        with pytest.raises(SeqGapError) as caught:
            world.network.deliver(link, Batch.of(link.node_id, box[1:]))
        assert caught.value.extra["expected"] == 3
        world.finish()
    finally:
        world.close()


LINE = {"line_id": "x1", "item": "tea", "qty": 1, "unit_price": 250}
LINE2 = {"line_id": "x2", "item": "tea", "qty": 1, "unit_price": 250}


def test_a_partitioned_link_never_reaches_the_server(tmp_path: Path) -> None:
    schedule = Schedule(seed=1, terminals=1, tenants=1, steps=())
    world = World(schedule, tmp_path)
    try:
        term = world.terminals[0]
        term.link.partitioned = True
        term.client.command("orders", "r0.o", "open", {"currency": "GBP"})
        before = world.replica.store.cursor("r0")
        with pytest.raises(TransportError):
            term.client.sync()
        assert world.replica.store.cursor("r0") == before
    finally:
        world.close()


def test_a_crash_mid_write_loses_only_the_uncommitted_op() -> None:
    schedule = Schedule(
        seed=9,
        terminals=3,
        tenants=2,
        steps=(
            Step("write", t=0, what="open"),
            Step("crash", t=0, a=2),  # dies at its 2nd store write: inside the next write
            Step("write", t=0, what="add_line", b=4),
            Step("write", t=0, what="add_line", b=5),
            Step("sync", t=0),
        ),
    )
    result = run_schedule(schedule)
    assert result.ok, result.failure
    assert "T0 died mid-operation; restarted from its file at seq 1" in result.trace
    assert result.ops_made == 2  # the open and the add_line after the restart


@pytest.mark.parametrize(
    ("server", "invariant"),
    [("memory", "protocol"), ("sqlite", "server-error")],  # SQLite's oplog key refuses too
)
def test_a_server_that_skips_the_high_water_check_is_caught(
    forgetful_server: None, server: str, invariant: str
) -> None:
    result = run_schedule(replace(lost_answer_schedule(), server=server))
    assert result.failure is not None
    assert result.failure.invariant == invariant, result.failure
    assert "push of seqs 1..2" in result.failure.detail or "UNIQUE" in result.failure.detail


def test_a_planted_bug_is_shrunk_to_a_short_reproduction(forgetful_server: None) -> None:
    found = None
    for seed in range(40):
        result = run_schedule(generate(seed))
        if result.failure is not None:
            found = result
            break
    assert found is not None and found.failure is not None
    small, runs = shrink(found.schedule, found.failure.invariant, budget=150)
    again = run_schedule(small)
    assert again.failure is not None and again.failure.invariant == found.failure.invariant
    assert len(small.steps) <= 4 < len(found.schedule.steps)
    assert small.terminals <= found.schedule.terminals
    assert runs <= 150


def test_stock_counts_catch_an_op_applied_twice_in_a_terminal_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fynlo_sync import client, engine

    real = engine.rebase

    def twice(
        server: Record | None, pending: Any, registry: Registry, *actors: Any
    ) -> Record | None:
        return real(server, [*pending, *pending], registry, *actors)

    monkeypatch.setattr(client, "rebase", twice)
    schedule = Schedule(
        seed=2,
        terminals=2,
        tenants=1,
        steps=(
            Step("write", t=1, what="stock", b=1),
            Step("sync", t=1),
            Step("write", t=0, what="stock", b=1),  # pending when the fries change arrives
            Step("pull", t=0),
        ),
    )
    result = run_schedule(schedule)
    assert result.failure is not None and result.failure.invariant == "stock-count"


def test_order_totals_are_checked_on_every_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    from fynlo_sync.domains.orders import plugin

    monkeypatch.setattr(plugin, "order_total", lambda fields: len(fields.get("lines") or {}))
    schedule = Schedule(
        seed=2,
        terminals=1,
        tenants=1,
        steps=(Step("write", t=0, what="open"), Step("write", t=0, what="add_line", b=4)),
    )
    result = run_schedule(schedule)
    assert result.failure is not None and result.failure.invariant == "order-total"


def test_a_violation_names_its_step() -> None:
    error = Violation("seq-gap", "r0.t0 applied seqs [1, 3]")
    assert error.name == "seq-gap" and error.step is None and "[1, 3]" in str(error)


def test_schedules_round_trip_through_json() -> None:
    schedule = generate(77)
    assert Schedule.from_json(json.loads(json.dumps(schedule.to_json()))) == schedule


def test_fynlo_sim_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--seed", "21", "--schedules", "3", "--steps", "8", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["schedules"] == 3 and data["failures"] == 0 and data["seed"] == 21
    assert len(data["trace_hash"]) == 64 and data["invariant_checks"] >= 24


def test_fynlo_sim_fails_with_the_seed_and_a_reproduction(
    forgetful_server: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    saved = tmp_path / "repro.json"
    code = main(
        ["sim", "--seed", "0", "--schedules", "40", "--shrink-budget", "60", "--save", str(saved)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: seed" in out and "shortest reproduction found" in out
    assert main(["sim", "--replay", str(saved)]) == 1
    assert "VIOLATION" in capsys.readouterr().out
