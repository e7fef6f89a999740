"""The time clock's state table: every punch transition in one table, enforced on terminal
and server alike.

A timecard's punches, ordered by event time (the device's clock at the punch), drive one
employee's clock state. ``TRANSITIONS[(state, punch)]`` is the state after the punch; a
pair that is absent is illegal. ``off`` means no open shift. The table makes the shift
rules structural: one open shift at a time (``clock_in`` only from ``off``), breaks only
inside a shift and never overlapping (``break_start`` only while ``working``), and every
break ended before the clock-out (``clock_out`` only while ``working``). ``auto_out`` is the
forgotten-punch close at the business-day cutoff: it also ends a break left open.

The one tolerated exception is a ``clock_out`` while ``off``: an *unmatched* clock-out.
Staff clock in on one iPad while the internet is down and out on another, which has not
seen the clock-in; the clock-out is kept and flagged, and pairs with the clock-in once it
arrives (ordered by event time). ``APPROVALS`` is the approval table of a day's overtime
and of a proposed adjustment (Odoo's ``to_approve``/``approved``/``refused``).
"""

from __future__ import annotations

from typing import Final

from fynlo_sync.plugins import StateTable

__all__ = [
    "APPROVALS",
    "APPROVAL_TABLE",
    "CLOCK_TABLE",
    "APPROVAL_STATES",
    "DECISIONS",
    "PUNCHES",
    "PUNCH_RANK",
    "STATES",
    "TRANSITIONS",
    "next_approval",
    "next_state",
]

STATES: Final = ("off", "working", "on_break")
PUNCHES: Final = ("clock_in", "break_start", "break_end", "clock_out", "auto_out")
#: Order of punches that share a millisecond (then by punch id): a shift opens before its
#: break starts, a break ends before the shift closes.
PUNCH_RANK: Final = {"clock_in": 0, "break_start": 1, "break_end": 2, "clock_out": 3, "auto_out": 4}

TRANSITIONS: Final[dict[tuple[str | None, str], str]] = {
    ("off", "clock_in"): "working",
    ("working", "break_start"): "on_break",
    ("on_break", "break_end"): "working",
    ("working", "clock_out"): "off",
    ("working", "auto_out"): "off",
    ("on_break", "auto_out"): "off",
}

APPROVAL_STATES: Final = ("to_approve", "approved", "refused")
DECISIONS: Final = ("approve", "refuse")
APPROVALS: Final[dict[tuple[str | None, str], str]] = {
    ("to_approve", "approve"): "approved",
    ("to_approve", "refuse"): "refused",
}

#: The tables as data (the plugin floor's :class:`StateTable`), for the schema export.
CLOCK_TABLE: Final = StateTable(
    field="clock", states=STATES, transitions=TRANSITIONS, commands=PUNCHES
)
APPROVAL_TABLE: Final = StateTable(
    field="approval",
    states=APPROVAL_STATES,
    transitions=APPROVALS,
    commands=DECISIONS,
    final=frozenset({"approved", "refused"}),
)


def next_state(state: str, punch: str) -> str | None:
    """The clock state after ``punch`` in ``state``, or ``None`` if the pair is illegal."""
    return CLOCK_TABLE.next(state, punch)


def next_approval(state: str, decision: str) -> str | None:
    """The approval state after ``decision``; decided states are final (``None``)."""
    return APPROVAL_TABLE.next(state, decision)
