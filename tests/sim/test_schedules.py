"""At least a thousand fault schedules per CI run, drawn by hypothesis step by step (so a
failure shrinks to its fewest, simplest steps), each checked after every step and at the
end. FYNLO_SIM_SCHEDULES raises the count for nightly runs."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fynlo_sync.sim import FAULTS, Schedule, Step, run_schedule
from fynlo_sync.sim.schedule import WRITES

SCHEDULES = int(os.environ.get("FYNLO_SIM_SCHEDULES", "1000"))

terminal = st.integers(0, 3)
pause = st.sampled_from((0, 0, 20, 500, 30_000))
faults = st.lists(st.sampled_from(("ok", *FAULTS)), max_size=3).map(tuple)

steps = st.one_of(
    st.builds(
        Step,
        kind=st.just("write"),
        t=terminal,
        what=st.sampled_from(WRITES),
        a=st.integers(0, 5),
        b=st.integers(0, 99),
        dt=pause,
    ),
    st.builds(
        Step,
        kind=st.sampled_from(("sync", "sync", "pull")),
        t=terminal,
        faults=faults,
        dt=pause,
    ),
    st.builds(
        Step,
        kind=st.sampled_from(("partition", "heal", "deliver", "crash")),
        t=terminal,
        a=st.integers(0, 4),
    ),
    st.builds(
        Step,
        kind=st.sampled_from(("jump", "drift")),
        t=terminal,
        a=st.sampled_from((-86_400_000, -60_000, -200, 200, 60_000, 86_400_000)),
    ),
    st.builds(Step, kind=st.sampled_from(("restart_server", "tick")), dt=pause),
)

schedules = st.builds(
    Schedule,
    seed=st.integers(0, 2**31),
    terminals=st.integers(3, 4),
    tenants=st.just(2),
    steps=st.lists(steps, min_size=2, max_size=12).map(tuple),
    batch_size=st.sampled_from((1, 2, 100)),
    page_size=st.sampled_from((1, 2, 500)),
    server=st.sampled_from(("sqlite", "memory")),
)


@pytest.mark.timeout(600)
@settings(
    max_examples=SCHEDULES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schedule=schedules)
def test_every_schedule_keeps_every_invariant(schedule: Schedule) -> None:
    result = run_schedule(schedule)
    assert result.failure is None, (
        f"{result.failure}\nreplay: fynlo sim --replay FILE with {schedule.to_json()}\n"
        + "\n".join(result.trace.splitlines()[-40:])
    )
    assert result.checks >= result.steps
