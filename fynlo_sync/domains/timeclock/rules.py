"""Overtime and working-time rules as data, and the pure arithmetic that applies them.

Durations are integer milliseconds; rates are integer percent (150 = time and a half), so
no float appears anywhere. A :class:`RuleSet` is data with an effective date: daily tiers,
weekly tiers and seventh-day tiers, each "above ``after_min`` minutes, pay ``rate_pct``".
Built-in sets (``RULE_SETS``):

* ``us-federal`` (FLSA, 29 U.S.C. 207): over 40 h in the workweek at 1.5x.
* ``us-ca`` (California Labor Code 510): over 8 h a workday at 1.5x, over 12 h at 2x;
  over 40 h in the workweek at 1.5x, counting only hours not already paid as daily
  overtime; on the seventh consecutive workday of the workweek the first 8 h at 1.5x and
  beyond at 2x. Mon 10, Tue 8, Wed 13, Thu 8, Fri 8 gives 40 regular, 6 overtime, 1 double.
* ``uk`` (Working Time Regulations 1998): no statutory premium; 48 h a week averaged over a
  17-week reference period unless the worker opted out in writing, a 20-minute break when
  the day exceeds 6 h, 11 h daily rest. These are alerts, never blocks.

Rounding (29 CFR 785.48(b)) is named: to the nearest 5, 6 or 15 minutes, ties up (the
"7-minute rule" for 15: 7:29 rounds down, 7:30 up), applied to each entry (each shift's
worked time) or to the total (each day's sum). The two differ: three entries of 7 minutes
round to 0 each, but their 21-minute total rounds to 15.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "HOUR_MS",
    "MINUTE_MS",
    "RULE_SETS",
    "DayBuckets",
    "Rounding",
    "RuleSet",
    "Tier",
    "WeekBuckets",
    "labour_cost",
    "overtime",
    "round_duration",
    "rule_set",
    "uk_average_alert",
]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Tier:
    """Time above ``after_min`` minutes (in the day or week) is paid at ``rate_pct``."""

    after_min: int
    rate_pct: int


@dataclass(frozen=True, slots=True)
class RuleSet:
    name: str
    #: First day (ISO date) the set applies; a later set of the same name supersedes it.
    effective_from: str
    daily: tuple[Tier, ...] = ()
    weekly: tuple[Tier, ...] = ()
    #: Replaces ``daily`` on the seventh consecutive workday of the workweek (all 7 worked).
    seventh_day: tuple[Tier, ...] = ()
    #: UK-style working-time alerts: the weekly average limit and its reference period.
    average_week_max_min: int | None = None
    reference_weeks: int = 17
    #: A break of at least ``break_min`` is due when a day's work exceeds ``break_after_min``.
    break_after_min: int | None = None
    break_min: int = 0
    daily_rest_min: int | None = None


RULE_SETS: Final[tuple[RuleSet, ...]] = (
    RuleSet("us-federal", "1938-10-24", weekly=(Tier(40 * 60, 150),)),
    RuleSet(
        "us-ca",
        "2000-01-01",
        daily=(Tier(8 * 60, 150), Tier(12 * 60, 200)),
        weekly=(Tier(40 * 60, 150),),
        seventh_day=(Tier(0, 150), Tier(8 * 60, 200)),
        break_after_min=5 * 60,
        break_min=30,
    ),
    RuleSet(
        "uk",
        "1998-10-01",
        average_week_max_min=48 * 60,
        reference_weeks=17,
        break_after_min=6 * 60,
        break_min=20,
        daily_rest_min=11 * 60,
    ),
    RuleSet("none", "1970-01-01"),
)


def rule_set(name: str, on: str, sets: Sequence[RuleSet] = RULE_SETS) -> RuleSet | None:
    """The set named ``name`` in force on ISO date ``on`` (the latest effective one)."""
    live = [s for s in sets if s.name == name and s.effective_from <= on]
    return max(live, key=lambda s: s.effective_from) if live else None


@dataclass(frozen=True, slots=True)
class Rounding:
    step_min: Literal[5, 6, 15]
    apply: Literal["entry", "total"]
    #: The only mode offered: nearest step, ties up (never systematically under-pays).
    mode: Literal["nearest-half-up"] = "nearest-half-up"


def round_duration(ms: int, step_min: int) -> int:
    """``ms`` to the nearest multiple of ``step_min`` minutes, ties up (half-up)."""
    step = step_min * MINUTE_MS
    return (2 * ms + step) // (2 * step) * step


@dataclass(frozen=True, slots=True)
class DayBuckets:
    """One workday's worked time split by rate: ``{100: regular, 150: ..., 200: ...}``."""

    worked_ms: int
    by_rate: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class WeekBuckets:
    days: tuple[DayBuckets, ...]

    def total(self, rate_pct: int) -> int:
        return sum(d.by_rate.get(rate_pct, 0) for d in self.days)

    @property
    def worked_ms(self) -> int:
        return sum(d.worked_ms for d in self.days)


def _split(worked: int, tiers: Sequence[Tier]) -> dict[int, int]:
    """Split ``worked`` ms of one day over ``tiers`` (the part below the first at 100)."""
    out: dict[int, int] = {}
    bounds = [(0, 100)] + [(t.after_min * MINUTE_MS, t.rate_pct) for t in tiers]
    bounds.sort()
    for i, (start, rate) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else None
        upper = worked if end is None else min(worked, end)
        if upper > start:
            out[rate] = out.get(rate, 0) + upper - start
    return out


def overtime(days_ms: Sequence[int], rules: RuleSet) -> WeekBuckets:
    """Split a workweek (seven workdays in order, worked ms each) by pay rate.

    Daily tiers first (seventh-day tiers on the seventh consecutive workday); then weekly
    tiers over the hours still regular, in day order: the weekly threshold moves regular
    time to the weekly rate where the running regular total crosses it, so time already
    paid as daily overtime is not counted again. Every millisecond lands in exactly one
    bucket.
    """
    if len(days_ms) != 7 or any(type(d) is not int or d < 0 for d in days_ms):
        raise ValueError("a workweek is seven non-negative integer durations")
    seventh = bool(rules.seventh_day) and all(d > 0 for d in days_ms)
    weekly = sorted((t.after_min * MINUTE_MS, t.rate_pct) for t in rules.weekly)
    running = 0
    days: list[DayBuckets] = []
    for index, worked in enumerate(days_ms):
        tiers = rules.seventh_day if seventh and index == 6 else rules.daily
        by_rate = _split(worked, tiers)
        regular = by_rate.pop(100, 0)
        start, end = running, running + regular
        running = end
        # The part of [start, end) below the first weekly threshold stays regular.
        marks = [(0, 100), *weekly]
        for i, (low, rate) in enumerate(marks):
            high = marks[i + 1][0] if i + 1 < len(marks) else None
            lo = max(start, low)
            hi = end if high is None else min(end, high)
            if hi > lo:
                # A weekly rate never lowers time a daily tier already paid higher.
                by_rate[rate] = by_rate.get(rate, 0) + hi - lo
        days.append(DayBuckets(worked, {r: by_rate[r] for r in sorted(by_rate) if by_rate[r]}))
    return WeekBuckets(tuple(days))


def uk_average_alert(weeks_ms: Sequence[int], rules: RuleSet, *, opted_out: bool) -> str | None:
    """An alert when the average week over the reference period exceeds the limit.

    ``weeks_ms`` is the worked time of the most recent weeks, oldest first; only the last
    ``reference_weeks`` count (fewer at the start of employment: the average of those).
    Alert, don't block: a worker who opted out in writing gets no alert."""
    limit = rules.average_week_max_min
    if limit is None or opted_out or not weeks_ms:
        return None
    period = list(weeks_ms)[-rules.reference_weeks :]
    # average > limit  <=>  sum > limit * n (integers, no division)
    if sum(period) > limit * MINUTE_MS * len(period):
        return "average-week-over-limit"
    return None


def labour_cost(ms: int, rate_pct: int, wage_per_hour: int) -> int:
    """Cost in minor units of ``ms`` at ``rate_pct`` of ``wage_per_hour`` minor units an
    hour, rounded half-up to the minor unit."""
    numerator = ms * rate_pct * wage_per_hour
    denominator = HOUR_MS * 100
    return (2 * numerator + denominator) // (2 * denominator)
