"""The PIN throttle's curve, pure: attempts allowed per day per employee and per device."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from fynlo_sync.domains.staff.pins import (
    DEVICE_POLICY,
    EMPLOYEE_POLICY,
    PinPolicy,
    Throttle,
    after_failure,
    after_success,
    retry_after_ms,
)

DAY = 24 * 3_600_000


def greedy(policy: PinPolicy, horizon_ms: int) -> list[int]:
    """An attacker who tries again the moment it is allowed: the times of its attempts."""
    t, now, times = Throttle(), 0, list[int]()
    while True:
        now += retry_after_ms(t, now, policy)
        if now >= horizon_ms:
            return times
        times.append(now)
        t = after_failure(t, now, policy)


def test_the_employee_curve_allows_ten_guesses_a_day() -> None:
    times = greedy(EMPLOYEE_POLICY, DAY)
    assert times[:3] == [0, 0, 0]
    gaps = [b - a for a, b in pairwise(times[2:])]
    assert gaps == [30_000 << k for k in range(7)]  # 30 s, 1 min, ... 32 min
    assert len(times) == 10  # 10 / 10,000 = 0.1% for a 4-digit PIN
    assert len(greedy(EMPLOYEE_POLICY, 7 * DAY)) == 70


def test_the_device_curve_allows_thirty_a_day() -> None:
    assert len(greedy(DEVICE_POLICY, DAY)) == 30


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * DAY), st.booleans()), max_size=60))
def test_no_schedule_gets_more_than_ten_failures_into_any_day(
    attempts: list[tuple[int, bool]],
) -> None:
    """Whatever the attacker's timing, and with the real employee signing in between."""
    t, failures = Throttle(), []
    for now, legit in sorted(attempts):
        if retry_after_ms(t, now, EMPLOYEE_POLICY) > 0:
            continue
        if legit:
            t = after_success(t)
        else:
            t = after_failure(t, now, EMPLOYEE_POLICY)
            failures.append(now)
    for start in failures:
        assert sum(1 for f in failures if start <= f < start + DAY) <= 10
