"""The time clock plugin: one ``timecards`` record per employee per workweek.

A timecard's id is ``<employee_id>.<week>`` (``week`` the ISO date of the workweek's
Monday). Its ``punches`` map holds every punch (commands add them, so punches made on two
terminals offline both land); ``adjustments`` holds proposed corrections and their
decisions; ``approvals`` a decision per workday on its overtime. Everything else is derived
on every replica after every write (:func:`derive_timecard`): the shifts (ordered by event
time), their durations, the week's split by pay rate under the tenant's rule set, and the
alerts (overtime reached, break missed, short rest) that managers' terminals receive with
the record, poked live like any change.

Commands and the permission each needs (checked against the op's actor by the engine):

* ``punch`` (``timeclock.punch``): ``clock_in``, ``break_start``, ``break_end``,
  ``clock_out``; the first punch of the week creates the timecard. Refused when the punch,
  placed in event order, breaks the state table (a second open shift, a break outside the
  shift or overlapping another, a clock-out during a break, a shift over 24 h). An actor
  punches only for themselves.
* ``auto_close`` (``timeclock.approve``; the server needs none): the forgotten-punch close
  at the business-day cutoff, flagged ``auto-closed`` for review.
* ``propose`` (``timeclock.punch``) and ``decide`` (``timeclock.approve``): an adjustment
  (corrected or added punches) is proposed, then approved (applied) or refused; both
  versions and both actors are kept. Nobody decides their own proposal.
* ``approve_day`` (``timeclock.approve``): approve or refuse a workday's overtime, for the
  amount shown; overtime counts only once approved, refused overtime counts 0, and an
  approval whose amount no longer matches (punches changed since) is due again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

import msgspec

from fynlo_sync.domains.timeclock.fraud import FraudPolicy, judge, parse_location
from fynlo_sync.domains.timeclock.invariants import INVARIANTS
from fynlo_sync.domains.timeclock.rules import (
    MINUTE_MS,
    Rounding,
    overtime,
    round_duration,
    rule_set,
)
from fynlo_sync.domains.timeclock.settings import TimeclockSettings
from fynlo_sync.domains.timeclock.shifts import (
    DAY_MS,
    MAX_SHIFT_MS,
    OFFLINE_AFTER_MS,
    Shift,
    day_of,
    derive_shifts,
    ordered,
    sequence_errors,
)
from fynlo_sync.domains.timeclock.states import DECISIONS, next_approval, next_state
from fynlo_sync.errors import IllegalTransitionError, RejectedOpError
from fynlo_sync.plugins import Collection, CommandContext, DomainPlugin, Field, Invariant

__all__ = [
    "MAX_SKEW_MS",
    "PERMISSIONS",
    "TIMECARDS",
    "TIMECARDS_COLLECTION",
    "TimeclockPlugin",
    "day_starts",
    "derive_timecard",
    "timecards_collection",
    "due_auto_closes",
    "timecard_id",
    "week_of",
]

TIMECARDS: Final = "timecards"
#: How far ahead of the server's receive time a punch's device time may be.
MAX_SKEW_MS: Final = 5 * MINUTE_MS
#: The permission each command needs (the engine checks the op's actor against it).
PERMISSIONS: Final = {
    "punch": "timeclock.punch",
    "propose": "timeclock.punch",
    "auto_close": "timeclock.approve",
    "decide": "timeclock.approve",
    "approve_day": "timeclock.approve",
}
_USER_PUNCHES: Final = ("clock_in", "break_start", "break_end", "clock_out")
_REASONS: Final = {
    "working-then-clock_in": "shift-open",
    "on_break-then-clock_in": "shift-open",
    "off-then-break_start": "not-clocked-in",
    "on_break-then-break_start": "break-overlap",
    "off-then-break_end": "no-open-break",
    "working-then-break_end": "no-open-break",
    "on_break-then-clock_out": "break-open",
    "off-then-auto_out": "not-clocked-in",
    "shift-too-long": "shift-too-long",
}


def timecard_id(employee_id: str, week: str) -> str:
    return f"{employee_id}.{week}"


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm: pure
    integer arithmetic, the same in every port)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days: int) -> str:
    """The ISO date ``days`` after 1970-01-01."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return f"{yoe + era * 400 + (month <= 2):04d}-{month:02d}-{day:02d}"


def week_of(days: int) -> str:
    """The ISO date of the Monday of the workweek holding day ``days`` (since 1970-01-01,
    a Thursday)."""
    return civil_from_days(days - (days + 3) % 7)


def _bad(message: str, reason: str = "invalid-argument", **extra: Any) -> RejectedOpError:
    return RejectedOpError(message, reason=reason, **extra)


def _arg(args: Mapping[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = args.get(name)
    if value is None and not required:
        return None
    if type(value) is not kind:
        raise _bad(f"argument {name!r} must be {kind.__name__}", argument=name)
    return value


def _monday(week: str) -> int:
    """Days since 1970-01-01 of ``week``, which must be the ISO date of a Monday."""
    parts = week.split("-")
    if len(week) != 10 or len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise _bad(f"week {week!r} is not an ISO date", argument="week")
    days = days_from_civil(int(parts[0]), int(parts[1]), int(parts[2]))
    if civil_from_days(days) != week or (days + 3) % 7 != 0:
        raise _bad(f"week {week!r} is not the ISO date of a Monday", argument="week")
    return days


def _new_card(ctx: CommandContext) -> dict[str, Any]:
    """The fixed fields of a week's timecard, from the first punch's arguments."""
    args = ctx.args
    employee = _arg(args, "employee_id", str)
    week = _arg(args, "week", str)
    monday = _monday(week)
    if ctx.op.record_id != timecard_id(employee, week):
        raise _bad(f"a timecard's id is <employee_id>.<week>: {timecard_id(employee, week)}")
    start = _arg(args, "week_start_ms", int)
    midnight = monday * DAY_MS
    # Local Monday 00:00 + the business-day cutoff, for UTC offsets -14 h .. +14 h.
    if not midnight - 14 * 60 * MINUTE_MS <= start < midnight + 38 * 60 * MINUTE_MS:
        raise _bad("week_start_ms is not the start of that week in any time zone")
    starts = _day_starts_arg(args.get("day_starts_ms"), start)
    rules = _arg(args, "rules", str)
    if rule_set(rules, week) is None:
        raise _bad(f"no overtime rule set {rules!r} in force on {week}", argument="rules")
    rounding = args.get("rounding")
    if rounding is not None:
        if (
            type(rounding) is not dict
            or rounding.get("step_min") not in (5, 6, 15)
            or rounding.get("apply") not in ("entry", "total")
            or sorted(rounding) != ["apply", "step_min"]
        ):
            raise _bad('rounding is {"step_min": 5|6|15, "apply": "entry"|"total"} or null')
        rounding = {"step_min": rounding["step_min"], "apply": rounding["apply"]}
    return {
        "employee_id": employee,
        "week": week,
        "week_start_ms": start,
        "day_starts_ms": starts,
        "rules": rules,
        "rounding": rounding,
        "punches": {},
        "adjustments": {},
        "approvals": {},
    }


#: A workday is 23 to 25 hours long (a DST change moves the clock by at most an hour).
_SHORTEST_DAY_MS: Final = 23 * 60 * MINUTE_MS
_LONGEST_DAY_MS: Final = 25 * 60 * MINUTE_MS


def _day_starts_arg(raw: object, start: int) -> list[int] | None:
    """A timecard's optional ``day_starts_ms``: the UTC ms of the business-day cutoff of each
    workday and of the next week's Monday (8 values, the first ``week_start_ms``), computed
    by the terminal with the venue's time zone, so a week with a DST change has its 23- or
    25-hour day (protocol 20.3)."""
    if raw is None:
        return None
    if (
        type(raw) is not list
        or len(raw) != 8
        or not all(type(v) is int for v in raw)
        or raw[0] != start
    ):
        raise _bad(
            "day_starts_ms is 8 integers, the first week_start_ms, or null",
            argument="day_starts_ms",
        )
    for before, after in itertools.pairwise(raw):
        if not _SHORTEST_DAY_MS <= after - before <= _LONGEST_DAY_MS:
            raise _bad("each day in day_starts_ms lasts 23 to 25 hours", argument="day_starts_ms")
    return list(raw)


def day_starts(card: Mapping[str, Any]) -> list[int]:
    """The cutoff of each workday of ``card`` and of the next week (8 values)."""
    given = card.get("day_starts_ms")
    if given is not None:
        return list(given)
    start: int = card["week_start_ms"]
    return [start + day * DAY_MS for day in range(8)]


def _card(ctx: CommandContext) -> dict[str, Any]:
    if ctx.record is None:
        raise _bad("no such timecard", reason="record-not-found")
    return dict(ctx.record)


def _check_sequence(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Refuse a write whose own punches break the table where they fall in event order.

    Only the written punches are judged: one that makes a *later* punch illegal is kept
    (flagged ``contradiction`` until it resolves), because ops reach the server out of
    event order. A break started offline before a clock-out another terminal already
    synced is legal once its end arrives too."""
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    new = sorted(
        e
        for e in sequence_errors(after) - sequence_errors(before)
        if e.partition(":")[2] in changed
    )
    if new:
        rule, _, punch_id = new[0].partition(":")
        reason = _REASONS.get(rule, "illegal-transition")
        raise IllegalTransitionError(
            f"punch {punch_id} breaks the shift rules ({rule})", reason=reason, punch=punch_id
        )


def _punch_value(ctx: CommandContext, kind: str, at: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "at_ms": at,
        "node": ctx.op.node_id,
        "actor": ctx.op.actor_id,
        "received_ms": ctx.received_ms,
        "paid": bool(extra.get("paid", False)),
        "expected_min": int(extra.get("expected_min", 0)),
        "source": extra.get("source", "punch"),
        "location": extra.get("location"),
        "distance_m": extra.get("distance_m"),
        "checks": list(extra.get("checks", ())),
    }


def _check_time(card: Mapping[str, Any], ctx: CommandContext, kind: str, at: int) -> None:
    start = card["week_start_ms"]
    week_end = day_starts(card)[7]
    end = week_end if kind == "clock_in" else week_end + MAX_SHIFT_MS
    if not start <= at < end:
        raise _bad(f"at_ms {at} is outside the timecard's week", reason="outside-week")
    received = ctx.received_ms
    if received is not None and at > received + MAX_SKEW_MS:
        raise _bad("the punch is ahead of the server's clock", reason="punch-in-future")


def _fraud(ctx: CommandContext, policy: FraudPolicy, at: int) -> dict[str, Any]:
    """The punch's location and, on the server, its fraud checks (20.7): a ``deny``
    policy refuses it (the reason names the failed check), ``flag`` keeps it marked."""
    try:
        location = parse_location(ctx.args.get("location"))
    except ValueError as exc:
        raise _bad(str(exc), argument="location") from None
    out: dict[str, Any] = {"location": None if location is None else dict(ctx.args["location"])}
    if ctx.received_ms is None or ctx.op.node_id == "server":
        return out  # a terminal cannot check itself; the server's own ops are trusted
    offline = ctx.received_ms - at > OFFLINE_AFTER_MS
    verdict = judge(policy, location, ctx.client_address, offline=offline)
    if verdict.refused is not None:
        where = "" if verdict.distance_m is None else f" ({verdict.distance_m} m from the venue)"
        raise RejectedOpError(
            f"the punch failed the {verdict.refused} check{where}",
            reason=verdict.refused,
            distance_m=verdict.distance_m,
        )
    return {**out, "distance_m": verdict.distance_m, "checks": verdict.checks}


def _punch_command(policy: FraudPolicy) -> Any:
    def punch(ctx: CommandContext) -> dict[str, Any]:
        return _punch(ctx, policy)

    punch.__name__ = "_punch"
    return punch


def _punch(ctx: CommandContext, policy: FraudPolicy) -> dict[str, Any]:
    card = _new_card(ctx) if ctx.record is None else dict(ctx.record)
    args = ctx.args
    kind = _arg(args, "kind", str)
    if kind not in _USER_PUNCHES:
        raise _bad(f"kind must be one of {', '.join(_USER_PUNCHES)}", argument="kind")
    punch_id = _arg(args, "punch_id", str)
    at = _arg(args, "at_ms", int)
    actor = ctx.op.actor_id
    if actor is not None and actor != card["employee_id"]:
        raise RejectedOpError(
            "an employee punches only for themselves (a manager proposes an adjustment)",
            reason="forbidden",
            permission="timeclock.punch",
        )
    punches = dict(card["punches"])
    if punch_id in punches:
        raise _bad(f"punch {punch_id!r} already exists", reason="duplicate-punch")
    _check_time(card, ctx, kind, at)
    extra: dict[str, Any] = {}
    if kind == "break_start":
        extra["paid"] = _arg(args, "paid", bool)
        expected = _arg(args, "expected_min", int)
        if not 0 <= expected <= 24 * 60:
            raise _bad("expected_min must be 0..1440", argument="expected_min")
        extra["expected_min"] = expected
    extra.update(_fraud(ctx, policy, at))
    punches[punch_id] = _punch_value(ctx, kind, at, **extra)
    _check_sequence(card["punches"], punches)
    return {**card, "punches": punches}


def due_auto_closes(fields: Mapping[str, Any], now_ms: int) -> list[tuple[str, int]]:
    """Forgotten punches: ``(punch_id, at_ms)`` of the ``auto_close`` each open shift whose
    business day ended by ``now_ms`` needs (closed at that day's cutoff, Toast's rule)."""
    out: list[tuple[str, int]] = []
    starts = day_starts(fields)
    for shift in derive_shifts(fields.get("punches") or {}):
        if shift.in_ms is not None and shift.out_ms is None:
            day = day_of(shift.in_ms, fields["week_start_ms"], fields.get("day_starts_ms"))
            cutoff = starts[day + 1]
            if now_ms >= cutoff:
                out.append((f"auto-{shift.shift_id}", cutoff))
    return out


def _auto_close(ctx: CommandContext) -> dict[str, Any]:
    card = _card(ctx)
    punch_id = _arg(ctx.args, "punch_id", str)
    at = _arg(ctx.args, "at_ms", int)
    punches = dict(card["punches"])
    if punch_id in punches:
        raise _bad(f"punch {punch_id!r} already exists", reason="duplicate-punch")
    _check_time(card, ctx, "auto_out", at)
    punches[punch_id] = _punch_value(ctx, "auto_out", at, source="auto")
    _check_sequence(card["punches"], punches)
    return {**card, "punches": punches}


def _propose(ctx: CommandContext) -> dict[str, Any]:
    card = _card(ctx)
    adjustment_id = _arg(ctx.args, "adjustment_id", str)
    changes = _arg(ctx.args, "punches", dict)
    note = _arg(ctx.args, "note", str, required=False)
    adjustments = dict(card["adjustments"])
    if adjustment_id in adjustments:
        raise _bad(f"adjustment {adjustment_id!r} exists", reason="duplicate-adjustment")
    if not changes:
        raise _bad("an adjustment changes at least one punch", argument="punches")
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for punch_id in sorted(changes):
        change = changes[punch_id]
        before[punch_id] = card["punches"].get(punch_id)
        if change is None:
            if before[punch_id] is None:
                raise _bad(f"no punch {punch_id!r} to remove", argument="punches")
            after[punch_id] = None
            continue
        if type(change) is not dict:
            raise _bad("each change is a punch object or null", argument="punches")
        kind = _arg(change, "kind", str)
        if kind not in _USER_PUNCHES:
            raise _bad(f"kind must be one of {', '.join(_USER_PUNCHES)}", argument="punches")
        at = _arg(change, "at_ms", int)
        _check_time(card, ctx, kind, at)
        paid = bool(change.get("paid", False))
        expected = change.get("expected_min", 0)
        if type(expected) is not int or not 0 <= expected <= 24 * 60:
            raise _bad("expected_min must be 0..1440", argument="punches")
        after[punch_id] = _punch_value(
            ctx, kind, at, paid=paid, expected_min=expected, source="adjusted"
        )
    _check_sequence(card["punches"], _applied(card["punches"], after))
    adjustments[adjustment_id] = {
        "state": "to_approve",
        "proposed_by": ctx.op.actor_id,
        "proposed_node": ctx.op.node_id,
        "note": note,
        "before": before,
        "after": after,
        "decided_by": None,
    }
    return {**card, "adjustments": adjustments}


def _applied(punches: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(punches)
    for punch_id in sorted(after):
        if after[punch_id] is None:
            out.pop(punch_id, None)
        else:
            out[punch_id] = after[punch_id]
    return out


def _decision(ctx: CommandContext) -> str:
    decision: str = _arg(ctx.args, "decision", str)
    if decision not in DECISIONS:
        raise _bad("decision is approve or refuse", argument="decision")
    return decision


def _decide(ctx: CommandContext) -> dict[str, Any]:
    card = _card(ctx)
    adjustment_id = _arg(ctx.args, "adjustment_id", str)
    decision = _decision(ctx)
    adjustments = dict(card["adjustments"])
    entry = adjustments.get(adjustment_id)
    if entry is None:
        raise _bad(f"no adjustment {adjustment_id!r}", reason="adjustment-not-found")
    state = next_approval_of(entry["state"], decision)
    actor = ctx.op.actor_id
    if actor is not None and actor == entry["proposed_by"]:
        raise RejectedOpError(
            "nobody decides their own adjustment",
            reason="forbidden",
            permission="timeclock.approve",
        )
    punches = card["punches"]
    if state == "approved":
        for punch_id in sorted(entry["before"]):
            if punches.get(punch_id) != entry["before"][punch_id]:
                raise _bad(
                    f"punch {punch_id} changed since the adjustment was proposed",
                    reason="adjustment-stale",
                )
        new = _applied(punches, entry["after"])
        _check_sequence(punches, new)
        punches = new
    adjustments[adjustment_id] = {**entry, "state": state, "decided_by": actor}
    return {**card, "punches": punches, "adjustments": adjustments}


def next_approval_of(state: str, decision: str) -> str:
    after = next_approval(state, decision)
    if after is None:
        raise IllegalTransitionError(
            f"cannot {decision} what is {state}", reason="illegal-transition", state=state
        )
    return after


def _approve_day(ctx: CommandContext) -> dict[str, Any]:
    card = _card(ctx)
    day = _arg(ctx.args, "day", int)
    if not 0 <= day <= 6:
        raise _bad("day is 0 (Monday) .. 6", argument="day")
    decision = _decision(ctx)
    summary = derive_timecard(card)["days"][day]
    premium = summary["overtime_ms"] + summary["double_ms"]
    if premium == 0:
        raise _bad(f"day {day} has no overtime to decide", reason="nothing-to-approve")
    approvals = dict(card["approvals"])
    current = approvals.get(str(day))
    live = current is not None and current["premium_ms"] == premium
    state = next_approval_of(
        current["state"] if current is not None and live else "to_approve", decision
    )
    approvals[str(day)] = {"state": state, "premium_ms": premium, "by": ctx.op.actor_id}
    return {**card, "approvals": approvals}


def _rounding(card: Mapping[str, Any]) -> Rounding | None:
    raw = card.get("rounding")
    if raw is None:
        return None
    return Rounding(step_min=raw["step_min"], apply=raw["apply"])


def _alerts(
    card: Mapping[str, Any], shifts: Sequence[Shift], days: list[dict[str, Any]]
) -> list[str]:
    rules = rule_set(card["rules"], card["week"])
    assert rules is not None
    alerts: list[str] = []
    for day in range(7):
        if days[day]["overtime_ms"] + days[day]["double_ms"] > 0:
            alerts.append(f"overtime:{day}")
    if rules.break_after_min is not None:
        for day in range(7):
            in_day = [
                s
                for s in shifts
                if s.closed
                and s.to_json(card["week_start_ms"], card.get("day_starts_ms"))["day"] == day
            ]
            worked = sum(s.durations()[0] for s in in_day)
            longest = max(
                (
                    (b.end_ms or 0) - b.start_ms
                    for s in in_day
                    for b in s.breaks
                    if b.end_ms is not None
                ),
                default=0,
            )
            if worked > rules.break_after_min * MINUTE_MS and longest < rules.break_min * MINUTE_MS:
                alerts.append(f"missed-break:{day}")
    if rules.daily_rest_min is not None:
        closed = [s for s in shifts if s.closed]
        for prev, nxt in zip(closed, closed[1:], strict=False):  # noqa: RUF007 (pure core)
            assert prev.out_ms is not None and nxt.in_ms is not None
            if nxt.in_ms - prev.out_ms < rules.daily_rest_min * MINUTE_MS:
                alerts.append(f"short-rest:{nxt.shift_id}")
    for shift in shifts:
        for flag in sorted(shift.flags & {"auto-closed", "missing-clock-in", "contradiction"}):
            alerts.append(f"{flag}:{shift.shift_id}")
    punches = card.get("punches") or {}
    for punch_id in sorted(punches):
        for check in punches[punch_id].get("checks") or ():
            alerts.append(f"{check}:{punch_id}")
    return alerts


def derive_timecard(card: Mapping[str, Any]) -> dict[str, Any]:
    """Every derived field of a timecard, from its punches, rules and approvals."""
    start = card["week_start_ms"]
    shifts = derive_shifts(card.get("punches") or {})
    rounding = _rounding(card)
    worked = [0] * 7
    paid_break = unpaid_break = 0
    for shift in shifts:
        w, p, u = shift.durations()
        if rounding is not None and rounding.apply == "entry":
            w = round_duration(w, rounding.step_min)
        day = shift.to_json(start, card.get("day_starts_ms"))["day"]
        worked[day] += w
        paid_break += p
        unpaid_break += u
    if rounding is not None and rounding.apply == "total":
        worked = [round_duration(w, rounding.step_min) for w in worked]
    rules = rule_set(card["rules"], card["week"])
    assert rules is not None
    week = overtime(worked, rules)
    approvals = card.get("approvals") or {}
    days: list[dict[str, Any]] = []
    totals = {"regular_ms": 0, "overtime_ms": 0, "double_ms": 0, "pending_ms": 0, "refused_ms": 0}
    for index, bucket in enumerate(week.days):
        regular = bucket.by_rate.get(100, 0)
        ot = sum(ms for rate, ms in bucket.by_rate.items() if 100 < rate < 200)
        dt = sum(ms for rate, ms in bucket.by_rate.items() if rate >= 200)
        decided = approvals.get(str(index))
        approval = "to_approve" if ot + dt else None
        if decided is not None and ot + dt and decided["premium_ms"] == ot + dt:
            approval = decided["state"]
        days.append(
            {
                "worked_ms": bucket.worked_ms,
                "regular_ms": regular,
                "overtime_ms": ot,
                "double_ms": dt,
                "approval": approval,
            }
        )
        totals["regular_ms"] += regular
        if approval == "approved":
            totals["overtime_ms"] += ot
            totals["double_ms"] += dt
        elif approval == "refused":
            totals["refused_ms"] += ot + dt
        else:
            totals["pending_ms"] += ot + dt
    state = "off"
    for _, punch in ordered(card.get("punches") or {}):
        state = next_state(state, punch["kind"]) or state
    return {
        "shifts": [s.to_json(start, card.get("day_starts_ms")) for s in shifts],
        "days": days,
        "worked_ms": sum(worked),
        "paid_break_ms": paid_break,
        "unpaid_break_ms": unpaid_break,
        **totals,
        "clock": state,
        "alerts": _alerts(card, shifts, days),
    }


_DERIVED: Final = (
    "shifts",
    "days",
    "worked_ms",
    "paid_break_ms",
    "unpaid_break_ms",
    "regular_ms",
    "overtime_ms",
    "double_ms",
    "pending_ms",
    "refused_ms",
    "clock",
    "alerts",
)


def timecards_collection(policy: FraudPolicy | None = None) -> Collection:
    """The ``timecards`` collection, its ``punch`` checked against ``policy`` (none: no
    fraud checks) on the server."""
    return Collection(
        name=TIMECARDS,
        fields={
            "employee_id": Field("str", required=True, command_only=True),
            "week": Field("str", required=True, command_only=True),
            "week_start_ms": Field("int", required=True, command_only=True),
            "day_starts_ms": Field("list", command_only=True),
            "rules": Field("str", required=True, command_only=True),
            "rounding": Field("object", command_only=True),
            "punches": Field("object", kind="map", command_only=True),
            "adjustments": Field("object", kind="map", command_only=True),
            "approvals": Field("object", kind="map", command_only=True),
            **{name: Field("any", command_only=True) for name in _DERIVED},
            "note": Field("str"),
        },
        strategy="smart_merge",
        commands={
            "punch": _punch_command(policy or FraudPolicy()),
            "auto_close": _auto_close,
            "propose": _propose,
            "decide": _decide,
            "approve_day": _approve_day,
        },
        derive=derive_timecard,
        permissions=PERMISSIONS,
    )


TIMECARDS_COLLECTION: Final = timecards_collection()


class TimeclockPlugin(DomainPlugin):
    """Timecards: punches, breaks, overtime, approvals."""

    name = "timeclock"
    server_module: ClassVar[str | None] = "server.timeclock"
    settings_model: ClassVar[type[msgspec.Struct] | None] = TimeclockSettings

    def collections(self) -> Iterable[Collection]:
        if self.settings is None:
            return (TIMECARDS_COLLECTION,)
        settings: TimeclockSettings = self.settings
        return (timecards_collection(settings.policy()),)

    def invariants(self) -> Iterable[Invariant]:
        return INVARIANTS
