"""Staff in the simulator: random weeks through real terminals, every invariant after every
step; a planted bug (a break counted twice across devices) is caught and shrunk.

``FYNLO_STAFF_SIM_LONG=1`` runs 1,000 schedules instead of 5."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from fynlo_sync.domains.timeclock import plugin as timeclock_plugin
from fynlo_sync.domains.timeclock.shifts import Shift, derive_shifts
from fynlo_sync.sim.staff import random_schedule, run_schedule, shrink

COUNT = 1000 if os.environ.get("FYNLO_STAFF_SIM_LONG") else 5


@pytest.mark.parametrize("seed", range(COUNT))
def test_a_random_week_keeps_every_invariant_and_converges(seed: int) -> None:
    outcome = run_schedule(random_schedule(random.Random(seed)))
    assert outcome.violations == []
    assert outcome.punches > 20


def _twice_across_devices(punches: Any) -> list[Shift]:
    """The planted bug: a shift that ends on another device counts its breaks twice (as if
    each device's copy were a break of its own)."""
    shifts = derive_shifts(punches)
    for shift in shifts:
        if shift.in_node is not None and shift.out_node not in (None, shift.in_node):
            shift.breaks = shift.breaks + [
                type(b)(**{k: getattr(b, k) for k in b.__slots__}) for b in shift.breaks
            ]
    return shifts


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(timeclock_plugin, "derive_shifts", _twice_across_devices)
    yield


def test_the_planted_double_counted_break_is_caught_and_shrunk(planted: None) -> None:
    caught = run_schedule(random_schedule(random.Random(1)))
    assert any("break" in v for v in caught.violations)
    smallest = shrink(random_schedule(random.Random(1)))
    print("shrunk to:", smallest, run_schedule(smallest).violations[:2])
    punches = [s for s in smallest if s[0] == "punch"]
    assert [p[3] for p in punches] == ["clock_in", "break_start", "break_end", "clock_out"]
    assert punches[0][1] != punches[-1][1]  # the clock-out on the other device
    assert len(smallest) <= 6
