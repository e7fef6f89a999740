"""Timecards through the real engine: terminals, a server replica, offline punches."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.domains.timeclock import derive_timecard, due_auto_closes
from fynlo_sync.domains.timeclock.rules import HOUR_MS, MINUTE_MS
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.replica import ServerReplica
from fynlo_sync.testing import ManualClock
from tests.staff.conftest import WEEK_START, TerminalFactory, as_server, at, card, card_args


def punch(t: Terminal, employee: str, punch_id: str, kind: str, when: int, **extra: Any) -> None:
    t.actor = employee
    t.command(
        "timecards",
        card(employee),
        "punch",
        {**card_args(employee), "punch_id": punch_id, "kind": kind, "at_ms": when, **extra},
    )


def fields(t: Terminal, employee: str) -> dict[str, Any]:
    record = t.get("timecards", card(employee))
    assert record is not None
    return dict(record.fields)


def in_on_a_out_on_b(make_terminal: TerminalFactory) -> tuple[Terminal, Terminal]:
    """s1 clocks in on ipad-a and takes a break there; the internet is down, and s1 clocks
    out on ipad-b, which has not seen the clock-in. Nothing synced yet."""
    a, b = make_terminal("ipad-a"), make_terminal("ipad-b")
    a.sync(), b.sync()
    punch(a, "s1", "p1", "clock_in", at(0, 5))
    punch(a, "s1", "p2", "break_start", at(0, 8), paid=False, expected_min=30)
    punch(a, "s1", "p3", "break_end", at(0, 8.5))
    punch(b, "s1", "p4", "clock_out", at(0, 14))
    return a, b


def test_a_clock_out_on_another_offline_terminal_pairs_by_event_time(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a, b = in_on_a_out_on_b(make_terminal)
    # b has not seen the clock-in: its clock-out is kept, flagged.
    assert fields(b, "s1")["shifts"][0]["flags"] == ["missing-clock-in"]
    b.sync()  # b's clock-out reaches the server first
    a.sync()
    b.sync()
    for t in (a, b):
        f = fields(t, "s1")
        assert len(f["shifts"]) == 1
        shift = f["shifts"][0]
        assert (shift["in_ms"], shift["out_ms"]) == (at(0, 5), at(0, 14))
        assert shift["worked_ms"] == 8.5 * HOUR_MS
        assert shift["unpaid_break_ms"] == 30 * MINUTE_MS
        assert "other-device" in shift["flags"]
        assert f["clock"] == "off"
        # 8.5 h in California: 0.5 h of daily overtime, waiting for approval.
        assert f["days"][0]["overtime_ms"] == 30 * MINUTE_MS
        assert f["pending_ms"] == 30 * MINUTE_MS and f["overtime_ms"] == 0
        assert "overtime:0" in f["alerts"]
    assert (
        fields(a, "s1")
        == staffed.store.load("t1", [("timecards", card("s1"))])[("timecards", card("s1"))].fields
    )


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([("clock_in", 5), ("clock_in", 6)], "shift-open"),
        ([("break_start", 5)], "not-clocked-in"),
        ([("clock_in", 5), ("break_start", 6), ("break_start", 6.2)], "break-overlap"),
        ([("clock_in", 5), ("break_start", 6), ("clock_out", 7)], "break-open"),
        ([("clock_in", 5), ("break_end", 6)], "no-open-break"),
        ([("clock_in", 1), ("clock_out", 25.5)], "shift-too-long"),
        ([("clock_in", 5), ("clock_out", 9), ("clock_in", 7)], "shift-open"),
        ([("clock_in", 24 * 7 + 1)], "outside-week"),
    ],
)
def test_the_shift_rules_refuse_at_write_time_and_on_the_server(
    staffed: ServerReplica,
    make_terminal: TerminalFactory,
    steps: list[tuple[str, float]],
    reason: str,
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    *ok, (kind, hours) = steps
    for i, (k, h) in enumerate(ok):
        punch(t, "s1", f"p{i}", k, at(0, h), paid=False, expected_min=10)
    with pytest.raises(RejectedOpError) as info:
        punch(t, "s1", "bad", kind, at(0, hours), paid=False, expected_min=10)
    assert info.value.extra["reason"] == reason
    t.sync()
    assert not t.pending()


def test_duplicate_punch_and_punching_for_someone_else_are_refused(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    punch(t, "s1", "p1", "clock_in", at(0, 1))
    with pytest.raises(RejectedOpError) as info:
        punch(t, "s1", "p1", "clock_out", at(0, 2))
    assert info.value.extra["reason"] == "duplicate-punch"
    t.actor = "s2"
    with pytest.raises(RejectedOpError) as info:
        t.command(
            "timecards",
            card("s1"),
            "punch",
            {**card_args("s1"), "punch_id": "p9", "kind": "clock_out", "at_ms": at(0, 2)},
        )
    assert info.value.extra["reason"] == "forbidden"


def test_a_forgotten_punch_is_closed_at_the_cutoff_and_flagged(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    punch(t, "s1", "p1", "clock_in", at(1, 14))
    t.sync()
    f = fields(t, "s1")
    assert due_auto_closes(f, at(1, 23)) == []
    due = due_auto_closes(f, at(2, 1))
    assert due == [("auto-p1", at(2, 0))]
    assert (
        as_server(
            staffed,
            "timecards",
            card("s1"),
            "auto_close",
            {"punch_id": due[0][0], "at_ms": due[0][1]},
        )
        == "applied"
    )
    t.sync()
    shift = fields(t, "s1")["shifts"][0]
    assert shift["out_ms"] == at(2, 0) and "auto-closed" in shift["flags"]
    assert "auto-closed:p1" in fields(t, "s1")["alerts"]


def test_overtime_counts_once_approved_refused_counts_zero_and_stale_is_due_again(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    punch(t, "s1", "p1", "clock_in", at(0, 1))
    punch(t, "s1", "p2", "clock_out", at(0, 11))  # 10 h: 2 h daily overtime
    punch(t, "s1", "p3", "clock_in", at(1, 1))
    punch(t, "s1", "p4", "clock_out", at(1, 10))  # 9 h: 1 h
    t.actor = "s1"
    with pytest.raises(RejectedOpError) as info:
        t.command("timecards", card("s1"), "approve_day", {"day": 0, "decision": "approve"})
    assert info.value.extra["reason"] == "forbidden"
    t.actor = "m1"
    t.command("timecards", card("s1"), "approve_day", {"day": 0, "decision": "approve"})
    t.command("timecards", card("s1"), "approve_day", {"day": 1, "decision": "refuse"})
    f = fields(t, "s1")
    assert (f["overtime_ms"], f["refused_ms"], f["pending_ms"]) == (2 * HOUR_MS, HOUR_MS, 0)
    assert f["regular_ms"] == 16 * HOUR_MS
    with pytest.raises(RejectedOpError) as info:
        t.command("timecards", card("s1"), "approve_day", {"day": 0, "decision": "refuse"})
    assert info.value.extra["reason"] == "illegal-transition"
    # A later punch changes day 0's overtime: its approval no longer applies.
    punch(t, "s1", "p5", "clock_in", at(0, 12))
    punch(t, "s1", "p6", "clock_out", at(0, 13))
    f = fields(t, "s1")
    assert f["days"][0]["approval"] == "to_approve" and f["pending_ms"] == 3 * HOUR_MS
    t.sync()
    assert t.pending() == [] and t.outcomes() == []


def test_an_adjustment_is_proposed_then_decided_with_both_versions_kept(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    punch(t, "s1", "p1", "clock_in", at(0, 1))
    punch(t, "s1", "p2", "clock_out", at(0, 5))
    t.actor = "m1"
    t.command(
        "timecards",
        card("s1"),
        "propose",
        {
            "adjustment_id": "a1",
            "note": "forgot the lunch break",
            "punches": {
                "b1": {"kind": "break_start", "at_ms": at(0, 2), "paid": False, "expected_min": 30},
                "b2": {"kind": "break_end", "at_ms": at(0, 2.5)},
            },
        },
    )
    assert fields(t, "s1")["unpaid_break_ms"] == 0  # not applied before approval
    with pytest.raises(RejectedOpError) as info:  # nobody decides their own proposal
        t.command("timecards", card("s1"), "decide", {"adjustment_id": "a1", "decision": "approve"})
    assert info.value.extra["reason"] == "forbidden"
    t.actor = "o1"
    t.command("timecards", card("s1"), "decide", {"adjustment_id": "a1", "decision": "approve"})
    f = fields(t, "s1")
    assert f["unpaid_break_ms"] == 30 * MINUTE_MS and f["worked_ms"] == 3.5 * HOUR_MS
    entry = f["adjustments"]["a1"]
    assert (entry["state"], entry["proposed_by"], entry["decided_by"]) == ("approved", "m1", "o1")
    assert entry["before"] == {"b1": None, "b2": None} and entry["after"]["b1"]["at_ms"] == at(0, 2)
    assert "adjusted" in f["shifts"][0]["flags"]
    t.sync()
    assert t.pending() == [] and t.outcomes() == []


def test_rounding_per_entry_and_on_the_total_differ() -> None:
    def week(apply: str) -> dict[str, Any]:
        punches: dict[str, Any] = {}
        for i in range(3):  # three 7-minute shifts on Monday
            start = WEEK_START + i * HOUR_MS
            punches[f"i{i}"] = {"kind": "clock_in", "at_ms": start}
            punches[f"o{i}"] = {"kind": "clock_out", "at_ms": start + 7 * MINUTE_MS}
        return derive_timecard(
            {
                "employee_id": "s1",
                "week": "2026-11-30",
                "week_start_ms": WEEK_START,
                "rules": "us-federal",
                "rounding": {"step_min": 15, "apply": apply},
                "punches": punches,
            }
        )

    assert week("entry")["worked_ms"] == 0
    assert week("total")["worked_ms"] == 15 * MINUTE_MS


def test_timecard_creation_arguments_are_checked(
    staffed: ServerReplica, make_terminal: TerminalFactory, clock: ManualClock
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    t.actor = "s1"
    base = {"punch_id": "p1", "kind": "clock_in", "at_ms": at(0, 1)}
    for bad, reason in (
        ({"week": "2026-12-01"}, "invalid-argument"),  # a Tuesday
        ({"rules": "mars"}, "invalid-argument"),
        ({"week_start_ms": WEEK_START + 3 * 24 * HOUR_MS}, "invalid-argument"),
        ({"rounding": {"step_min": 10, "apply": "entry"}}, "invalid-argument"),
        ({"at_ms": 1.5}, None),
    ):
        with pytest.raises((RejectedOpError, Exception)) as info:
            t.command("timecards", card("s1"), "punch", {**card_args("s1"), **base, **bad})
        if reason is not None:
            assert info.value.extra["reason"] == reason  # type: ignore[attr-defined]
    assert t.pending() == []


def test_the_invariants_hold_after_real_flows_and_catch_a_break_counted_twice(
    staffed: ServerReplica, make_terminal: TerminalFactory, registry: Any
) -> None:
    a, b = in_on_a_out_on_b(make_terminal)
    punch(b, "s2", "q1", "clock_in", at(0, 6))
    b.sync(), a.sync(), b.sync()
    records = staffed.store.records("t1")
    assert registry.check_invariants(records) == []
    assert registry.check_invariants(a.store.records("timecards"), terminal=True) == []
    # The same break counted twice (once per device that saw it): caught.
    card_record = next(r for r in records if r.record_id == card("s1"))
    fields = dict(card_record.fields)
    shift = dict(fields["shifts"][0])
    shift["breaks"] = shift["breaks"] * 2
    shift["unpaid_break_ms"] *= 2
    fields["shifts"] = [shift]
    bad = msgspec.structs.replace(card_record, fields=fields)
    messages = [v.message for v in registry.check_invariants([bad])]
    assert any("overlapping" in m for m in messages)
    assert any("breaks differ" in m for m in messages)
    # Two open shifts for one employee across weeks: caught on the server's view.
    other = msgspec.structs.replace(
        bad,
        record_id="s2.2026-12-07",
        fields={
            **bad.fields,
            "shifts": [
                {**shift, "in_ms": 1, "out_ms": None},
                {**shift, "shift_id": "x", "in_ms": 2, "out_ms": None},
            ],
            "employee_id": "s2",
        },
    )
    assert any(v.invariant == "one-open-shift" for v in registry.check_invariants([other]))


def test_calendar_arithmetic_matches_the_standard_library() -> None:
    import datetime

    from fynlo_sync.domains.timeclock.plugin import civil_from_days, days_from_civil, week_of

    for days in range(-700_000, 2_900_000, 997):
        day = datetime.date(1970, 1, 1) + datetime.timedelta(days=days)
        assert civil_from_days(days) == day.isoformat()
        assert days_from_civil(day.year, day.month, day.day) == days
        assert week_of(days) == (day - datetime.timedelta(days=day.weekday())).isoformat()


def test_the_server_stamps_receive_time_flags_late_punches_and_refuses_future_ones(
    staffed: ServerReplica, make_terminal: TerminalFactory, server_clock: ManualClock
) -> None:
    t = make_terminal("ipad-a")
    t.sync()
    server_clock.set(at(0, 5) + 30_000)
    punch(t, "s1", "p1", "clock_in", at(0, 5))
    t.sync()
    punches = fields(t, "s1")["punches"]
    assert punches["p1"]["received_ms"] == at(0, 5) + 30_000
    assert "offline" not in fields(t, "s1")["shifts"][0]["flags"]
    punch(t, "s1", "p2", "clock_out", at(0, 9))  # the device's clock runs 4 h ahead
    t.sync()
    assert [(o.status, o.reason) for o in t.outcomes()] == [("rejected", "punch-in-future")]
    server_clock.set(at(0, 12))
    punch(t, "s1", "p3", "clock_out", at(0, 9))  # made offline, synced 3 h later
    t.sync()
    assert "offline" in fields(t, "s1")["shifts"][0]["flags"]
