"""Shifts derived from punches, the same way on every replica.

A timecard holds one employee's punches for one workweek, as a map from punch id to
``{"kind", "at_ms", "node", "actor", "received_ms", "paid", "expected_min", "source"}``.
``at_ms`` is the device's clock at the punch (the event time); ``received_ms`` the server's
receive time (``None`` until the server has the punch). :func:`derive_shifts` orders the
punches by event time and replays them through the state table, so a clock-out made on
another device than the clock-in pairs with it whatever order the two reached the server.

Everything here is pure: the clock is never read (an open shift has no duration yet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fynlo_sync.domains.timeclock.rules import MINUTE_MS
from fynlo_sync.domains.timeclock.states import PUNCH_RANK, next_state

__all__ = [
    "DAY_MS",
    "MAX_SHIFT_MS",
    "OFFLINE_AFTER_MS",
    "Break",
    "Shift",
    "day_of",
    "derive_shifts",
    "ordered",
    "sequence_errors",
]

DAY_MS: Final = 24 * 60 * MINUTE_MS
#: A completed shift lasts at most 24 h (Toast, Odoo, Square).
MAX_SHIFT_MS: Final = DAY_MS
#: A punch the server received this long after its event time was made offline.
OFFLINE_AFTER_MS: Final = 2 * MINUTE_MS


@dataclass(slots=True)
class Break:
    start_ms: int
    end_ms: int | None
    paid: bool
    expected_min: int


@dataclass(slots=True)
class Shift:
    shift_id: str
    in_ms: int | None
    out_ms: int | None = None
    in_node: str | None = None
    out_node: str | None = None
    breaks: list[Break] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)

    @property
    def closed(self) -> bool:
        return self.in_ms is not None and self.out_ms is not None

    def durations(self) -> tuple[int, int, int]:
        """``(worked, paid_break, unpaid_break)`` ms; paid breaks count as worked time."""
        if not self.closed:
            return (0, 0, 0)
        assert self.in_ms is not None and self.out_ms is not None
        paid = unpaid = 0
        for b in self.breaks:
            length = (b.end_ms if b.end_ms is not None else self.out_ms) - b.start_ms
            if b.paid:
                paid += length
            else:
                unpaid += length
        return (self.out_ms - self.in_ms - unpaid, paid, unpaid)

    def to_json(
        self, week_start_ms: int, day_starts_ms: Sequence[int] | None = None
    ) -> dict[str, Any]:
        worked, paid, unpaid = self.durations()
        anchor = self.in_ms if self.in_ms is not None else self.out_ms
        assert anchor is not None
        return {
            "shift_id": self.shift_id,
            "day": day_of(anchor, week_start_ms, day_starts_ms),
            "in_ms": self.in_ms,
            "out_ms": self.out_ms,
            "in_node": self.in_node,
            "out_node": self.out_node,
            "worked_ms": worked,
            "paid_break_ms": paid,
            "unpaid_break_ms": unpaid,
            "breaks": [
                {
                    "start_ms": b.start_ms,
                    "end_ms": b.end_ms,
                    "paid": b.paid,
                    "expected_min": b.expected_min,
                }
                for b in self.breaks
            ],
            "flags": sorted(self.flags),
        }


def day_of(at_ms: int, week_start_ms: int, day_starts_ms: Sequence[int] | None = None) -> int:
    """The workday (0 = Monday .. 6) holding ``at_ms``, clamped to the week: the last of the
    timecard's ``day_starts_ms`` at or before it (a week with a DST change has a 23- or
    25-hour day), or whole 24-hour days from ``week_start_ms`` when it has none."""
    if day_starts_ms is None:
        return max(0, min(6, (at_ms - week_start_ms) // DAY_MS))
    day = 0
    for index in range(1, 7):
        if day_starts_ms[index] <= at_ms:
            day = index
    return day


def ordered(punches: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Punches in event order: device time, then the state table's rank, then id."""
    return sorted(
        punches.items(),
        key=lambda item: (item[1]["at_ms"], PUNCH_RANK[item[1]["kind"]], item[0]),
    )


def sequence_errors(punches: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The rules the event-ordered punches break, as ``"<rule>:<punch id>"`` strings.

    An unmatched clock-out is not an error (its clock-in may be on another device, not yet
    synced); everything else the state table refuses is, and so is a shift over 24 h."""
    errors: set[str] = set()
    state, opened = "off", 0
    for punch_id, punch in ordered(punches):
        kind = punch["kind"]
        if state == "off" and kind == "clock_out":
            continue
        after = next_state(state, kind)
        if after is None:
            errors.add(f"{state}-then-{kind}:{punch_id}")
            continue
        if kind == "clock_in":
            opened = punch["at_ms"]
        elif kind in ("clock_out", "auto_out") and punch["at_ms"] - opened > MAX_SHIFT_MS:
            errors.add(f"shift-too-long:{punch_id}")
        state = after
    return errors


def _late(punch: Mapping[str, Any]) -> bool:
    received = punch.get("received_ms")
    return received is not None and received - punch["at_ms"] > OFFLINE_AFTER_MS


def derive_shifts(punches: Mapping[str, Mapping[str, Any]]) -> list[Shift]:
    """Replay the punches in event order into shifts (an illegal punch is skipped and
    flags the shift it fell in: ``contradiction``, for a manager to look at)."""
    shifts: list[Shift] = []
    current: Shift | None = None
    state = "off"
    for punch_id, punch in ordered(punches):
        kind, at = punch["kind"], punch["at_ms"]
        if state == "off" and kind == "clock_out":
            orphan = Shift(punch_id, None, at, None, punch.get("node"))
            orphan.flags.add("missing-clock-in")
            if _late(punch):
                orphan.flags.add("offline")
            shifts.append(orphan)
            continue
        after = next_state(state, kind)
        if after is None:
            (current or (shifts[-1] if shifts else Shift(punch_id, at))).flags.add("contradiction")
            continue
        if kind == "clock_in":
            current = Shift(punch_id, at, in_node=punch.get("node"))
            shifts.append(current)
        assert current is not None
        if _late(punch):
            current.flags.add("offline")
        if punch.get("source") == "adjusted":
            current.flags.add("adjusted")
        if kind == "break_start":
            current.breaks.append(
                Break(at, None, bool(punch.get("paid")), int(punch.get("expected_min") or 0))
            )
        elif kind == "break_end":
            current.breaks[-1].end_ms = at
        elif kind in ("clock_out", "auto_out"):
            if current.breaks and current.breaks[-1].end_ms is None:
                current.breaks[-1].end_ms = at
            current.out_ms = at
            current.out_node = punch.get("node")
            if kind == "auto_out":
                current.flags.add("auto-closed")
            if current.in_node is not None and current.out_node != current.in_node:
                current.flags.add("other-device")
            if current.in_ms is not None and at - current.in_ms > MAX_SHIFT_MS:
                current.flags.add("over-24h")
            current = None
        state = after
    for shift in shifts:
        if not shift.closed and shift.in_ms is not None:
            shift.flags.add("open")
        for b in shift.breaks:
            if b.end_ms is not None and b.end_ms - b.start_ms < b.expected_min * MINUTE_MS:
                shift.flags.add("break-short")
    return shifts
