"""The time clock's invariants: pure checks over a tenant's timecards, run by the simulator
after every step and by ``fynlo check`` against a live database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from fynlo_sync.plugins import Invariant, RecordsByCollection

__all__ = ["INVARIANTS", "card_violations"]

TIMECARDS: Final = "timecards"


def card_violations(record_id: str, f: Mapping[str, Any]) -> Iterable[str]:
    """What is wrong inside one timecard's derived fields (none when it is sound)."""
    # Imported here: derive_timecard lives in the plugin module, which imports this one.
    from fynlo_sync.domains.timeclock.plugin import derive_timecard

    shifts = f.get("shifts") or []
    buckets = ("regular_ms", "overtime_ms", "double_ms", "pending_ms", "refused_ms")
    if sum(f.get(b, 0) for b in buckets) != f.get("worked_ms"):
        yield f"{record_id}: regular + overtime + double + pending + refused != worked"
    if sum(d["worked_ms"] for d in f.get("days") or []) != f.get("worked_ms"):
        yield f"{record_id}: the days do not add up to the week"
    unpaid = paid = 0
    for s in shifts:
        unpaid += s["unpaid_break_ms"]
        paid += s["paid_break_ms"]
        if s["in_ms"] is None or s["out_ms"] is None:
            continue
        elapsed = s["out_ms"] - s["in_ms"]
        if s["worked_ms"] + s["unpaid_break_ms"] != elapsed or s["worked_ms"] < 0:
            yield f"{record_id}/{s['shift_id']}: worked + unpaid breaks != clock-out - clock-in"
        last_end = s["in_ms"]
        for b in s["breaks"]:
            end = b["end_ms"] if b["end_ms"] is not None else s["out_ms"]
            if not last_end <= b["start_ms"] <= end <= s["out_ms"]:
                yield f"{record_id}/{s['shift_id']}: a break outside its shift or overlapping"
            last_end = end
        if elapsed > 24 * 3_600_000 and "over-24h" not in s["flags"]:
            yield f"{record_id}/{s['shift_id']}: a shift over 24 h is not flagged"
    if unpaid != f.get("unpaid_break_ms") or paid != f.get("paid_break_ms"):
        yield f"{record_id}: the week's breaks differ from its shifts' breaks"
    fixed = {k: f[k] for k in ("employee_id", "week", "week_start_ms", "rules") if k in f}
    if len(fixed) == 4:
        again = derive_timecard(f)
        stale = sorted(k for k in again if again[k] != f.get(k))
        if stale:
            yield f"{record_id}: derived fields differ from the punches: {', '.join(stale)}"


def _cards(records: RecordsByCollection) -> Iterable[str]:
    for record in records.get(TIMECARDS, ()):
        yield from card_violations(record.record_id, record.fields)


def _one_open_shift(records: RecordsByCollection) -> Iterable[str]:
    open_by: dict[str, list[str]] = {}
    for record in records.get(TIMECARDS, ()):
        for s in record.fields.get("shifts") or []:
            if s["in_ms"] is not None and s["out_ms"] is None:
                open_by.setdefault(record.fields["employee_id"], []).append(s["shift_id"])
    for employee in sorted(open_by):
        if len(open_by[employee]) > 1:
            yield f"employee {employee} has {len(open_by[employee])} open shifts"


INVARIANTS: Final = (
    Invariant(
        "timecard-sound",
        _cards,
        "durations add up (worked = elapsed - unpaid breaks; the week's buckets = worked), "
        "breaks inside their shift without overlap, derived fields match the punches",
    ),
    Invariant(
        "one-open-shift",
        _one_open_shift,
        "at most one open shift per employee across timecards",
        on_terminals=False,
    ),
)
