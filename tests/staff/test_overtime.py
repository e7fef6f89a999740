"""Overtime rules as data: the worked examples, rounding, and properties over any week."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fynlo_sync.domains.timeclock.rules import (
    HOUR_MS,
    MINUTE_MS,
    RULE_SETS,
    labour_cost,
    overtime,
    round_duration,
    rule_set,
    uk_average_alert,
)

H = HOUR_MS
CA = rule_set("us-ca", "2026-11-30")
FED = rule_set("us-federal", "2026-11-30")
UK = rule_set("uk", "2026-11-30")
assert CA is not None and FED is not None and UK is not None


def split(days: list[float], rules: object) -> tuple[float, float, float]:
    week = overtime([round(d * H) for d in days], rules)  # type: ignore[arg-type]
    return (week.total(100) / H, week.total(150) / H, week.total(200) / H)


def test_the_california_week_of_domain_md() -> None:
    assert split([10, 8, 13, 8, 8, 0, 0], CA) == (40, 6, 1)


def test_federal_counts_only_the_week() -> None:
    assert split([10, 8, 13, 8, 8, 0, 0], FED) == (40, 7, 0)
    assert split([12, 12, 12, 0, 0, 0, 0], FED) == (36, 0, 0)


def test_california_daily_tiers_without_weekly_overtime() -> None:
    assert split([13, 0, 0, 0, 0, 0, 0], CA) == (8, 4, 1)


def test_california_seventh_consecutive_day() -> None:
    # Six days of 5 h (30 h, all regular), then a seventh day of 10 h: 8 at 1.5x, 2 at 2x.
    assert split([5, 5, 5, 5, 5, 5, 10], CA) == (30, 8, 2)
    # With a day off the seventh day is an ordinary day.
    assert split([5, 5, 5, 5, 5, 0, 10], CA) == (33, 2, 0)


def test_weekly_overtime_is_not_counted_twice_after_daily() -> None:
    # 5 x 9 h: 40 regular by the daily rule, plus 5 daily-overtime hours; none weekly.
    assert split([9, 9, 9, 9, 9, 0, 0], CA) == (40, 5, 0)
    assert split([8, 8, 8, 8, 8, 8, 0], CA) == (40, 8, 0)


def test_a_later_rule_set_supersedes_by_effective_date() -> None:
    assert rule_set("us-ca", "1999-12-31") is None
    assert rule_set("nope", "2026-01-01") is None


def test_rounding_ties_up_and_the_seven_minute_rule() -> None:
    assert round_duration(7 * MINUTE_MS + 29_999, 15) == 0
    assert round_duration(7 * MINUTE_MS + 30_000, 15) == 15 * MINUTE_MS
    assert round_duration(3 * MINUTE_MS, 6) == 6 * MINUTE_MS
    assert round_duration(2 * MINUTE_MS + 29_999, 5) == 0
    # per entry vs on the total: three 7-minute entries
    entries = [7 * MINUTE_MS] * 3
    assert sum(round_duration(e, 15) for e in entries) == 0
    assert round_duration(sum(entries), 15) == 15 * MINUTE_MS


def test_uk_average_over_the_reference_period_alerts_unless_opted_out() -> None:
    assert UK is not None
    heavy = [60 * H] * 8 + [40 * H] * 9  # average 49.4 h over 17 weeks
    assert uk_average_alert(heavy, UK, opted_out=False) == "average-week-over-limit"
    assert uk_average_alert(heavy, UK, opted_out=True) is None
    assert uk_average_alert([60 * H] * 8 + [36 * H] * 9, UK, opted_out=False) is None
    # Only the last 17 weeks count.
    assert uk_average_alert([200 * H] + [48 * H] * 17, UK, opted_out=False) is None


def test_labour_cost_rounds_half_up() -> None:
    # 1 minute at 1.5x of 1,000 an hour = 25 minor units exactly; 30 s = 12.5 -> 13.
    assert labour_cost(MINUTE_MS, 150, 1000) == 25
    assert labour_cost(30_000, 150, 1000) == 13
    assert labour_cost(8 * H, 100, 1525) == 12200


days = st.lists(st.integers(0, 20 * H), min_size=7, max_size=7)
sets = st.sampled_from([s for s in RULE_SETS])


@settings(max_examples=150, deadline=None)
@given(days, sets)
def test_every_millisecond_lands_in_exactly_one_bucket(week: list[int], rules: object) -> None:
    result = overtime(week, rules)  # type: ignore[arg-type]
    for day, worked in zip(result.days, week, strict=True):
        assert sum(day.by_rate.values()) == worked == day.worked_ms
        assert all(ms > 0 for ms in day.by_rate.values())


@settings(max_examples=150, deadline=None)
@given(days, sets, st.integers(0, 6), st.integers(1, 4 * H))
def test_more_hours_never_pay_less_or_lower_the_premium(
    week: list[int], rules: object, day: int, more: int
) -> None:
    before = overtime(week, rules)  # type: ignore[arg-type]
    longer = list(week)
    longer[day] += more
    after = overtime(longer, rules)  # type: ignore[arg-type]

    def pay(w: object) -> int:
        return sum(ms * rate for d in w.days for rate, ms in d.by_rate.items())  # type: ignore[attr-defined]

    def premium(w: object) -> int:
        return sum(ms for d in w.days for rate, ms in d.by_rate.items() if rate > 100)  # type: ignore[attr-defined]

    assert after.worked_ms == before.worked_ms + more
    assert pay(after) > pay(before)
    assert premium(after) >= premium(before)
    assert after.total(200) >= before.total(200)
