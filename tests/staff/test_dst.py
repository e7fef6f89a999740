"""A workweek with a DST change (the known limit of 24-hour days, fixed): a timecard may
carry ``day_starts_ms``, the cutoffs the terminal computed with the venue's time zone, and
the workday of a shift, the forgotten-punch cutoff and the week's end follow them
(protocol 20.3). Without them a week is seven 24-hour days, as before."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fynlo_sync.domains.timeclock import derive_timecard, due_auto_closes, timecard_id
from fynlo_sync.domains.timeclock.rules import HOUR_MS, MINUTE_MS
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.replica import ServerReplica
from tests.protocol.staff_vectors import london_day_starts
from tests.staff.conftest import TerminalFactory, as_server

WEEK = "2026-10-19"  # London's clocks go back on Sunday 25 October, 02:00 BST
STARTS = london_day_starts((2026, 10, 19))
CARD = timecard_id("s1", WEEK)
SUNDAY_0300_UTC = STARTS[5] + 24 * HOUR_MS  # still Saturday's workday (local 03:00 GMT)


def _args(**extra: Any) -> dict[str, Any]:
    return {
        "employee_id": "s1",
        "week": WEEK,
        "week_start_ms": STARTS[0],
        "day_starts_ms": STARTS,
        "rules": "us-ca",
        "rounding": None,
        **extra,
    }


def test_the_cutoffs_are_london_s() -> None:
    lengths = [b - a for a, b in itertools.pairwise(STARTS)]
    assert lengths == [24 * HOUR_MS] * 5 + [25 * HOUR_MS, 24 * HOUR_MS]


def test_a_shift_after_midnight_utc_on_the_long_day_is_saturday_s(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    t.actor = "s1"
    for punch_id, kind, when in (
        ("i1", "clock_in", SUNDAY_0300_UTC + 40 * MINUTE_MS),
        ("o1", "clock_out", SUNDAY_0300_UTC + 2 * HOUR_MS),
        # Monday 26 October 03:30 UTC is 03:30 GMT: Sunday's workday, inside the week
        ("i2", "clock_in", STARTS[7] - 30 * MINUTE_MS),
    ):
        t.command(
            "timecards",
            CARD,
            "punch",
            {**_args(), "punch_id": punch_id, "kind": kind, "at_ms": when},
        )
    t.sync()
    record = staffed.store.load("t1", [("timecards", CARD)])[("timecards", CARD)]
    f = dict(record.fields)
    assert [(s["shift_id"], s["day"]) for s in f["shifts"]] == [("i1", 5), ("i2", 6)]
    assert f["days"][5]["worked_ms"] == 80 * MINUTE_MS and f["days"][6]["worked_ms"] == 0
    # the same punches as seven 24-hour days put the first shift on Sunday
    plain = derive_timecard({**f, "day_starts_ms": None})
    assert [s["day"] for s in plain["shifts"]] == [6, 6]
    # the forgotten clock-out of i2 closes at next Monday's 04:00 local, 04:00 UTC
    assert due_auto_closes(f, STARTS[7] - 1) == []
    assert due_auto_closes(f, STARTS[7]) == [("auto-i2", STARTS[7])]
    got = as_server(
        staffed, "timecards", CARD, "auto_close", {"punch_id": "auto-i2", "at_ms": STARTS[7]}
    )
    assert got == "applied"


def test_without_day_starts_the_long_day_s_last_hour_is_outside_the_week(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    t.actor = "s1"
    late = {
        **_args(day_starts_ms=None),
        "punch_id": "i1",
        "kind": "clock_in",
        "at_ms": STARTS[7] - 30 * MINUTE_MS,
    }
    with pytest.raises(RejectedOpError) as info:
        t.command("timecards", CARD, "punch", late)
    assert info.value.extra["reason"] == "outside-week"


@pytest.mark.parametrize(
    "bad",
    [
        STARTS[:7],
        [STARTS[0] + 1, *STARTS[1:]],
        [*STARTS[:3], STARTS[3] - 2 * HOUR_MS, *STARTS[4:]],  # a 22-hour day
        [*STARTS[:7], STARTS[7] + 2 * HOUR_MS],  # a 26-hour day
        [str(v) for v in STARTS],
        {"0": STARTS[0]},
    ],
)
def test_malformed_day_starts_are_refused_by_name(
    staffed: ServerReplica, make_terminal: TerminalFactory, bad: Any
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    t.actor = "s1"
    punch = {
        **_args(day_starts_ms=bad),
        "punch_id": "i1",
        "kind": "clock_in",
        "at_ms": STARTS[0] + HOUR_MS,
    }
    with pytest.raises(RejectedOpError) as info:
        t.command("timecards", CARD, "punch", punch)
    assert info.value.extra["reason"] == "invalid-argument"
    assert info.value.extra["argument"] == "day_starts_ms"
    assert t.pending() == []
