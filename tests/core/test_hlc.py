from __future__ import annotations

import pytest

from fynlo_sync.errors import ClockError
from fynlo_sync.hlc import (
    COUNTER_MASK,
    HybridClock,
    counter_of,
    from_wire,
    millis_of,
    order_key,
    pack,
    to_wire,
)
from fynlo_sync.testing import ManualClock


def test_now_follows_the_wall_clock_with_counter_zero() -> None:
    wall = ManualClock(1000)
    clock = HybridClock(wall)
    assert clock.now() == pack(1000, 0)
    wall.advance(5)
    assert clock.now() == pack(1005, 0)


def test_now_is_strictly_increasing_within_one_millisecond() -> None:
    clock = HybridClock(ManualClock(1000))
    values = [clock.now() for _ in range(5)]
    assert values == [pack(1000, i) for i in range(5)]


def test_wall_clock_going_backwards_never_moves_the_clock_back() -> None:
    wall = ManualClock(5000)
    clock = HybridClock(wall)
    first = clock.now()
    wall.set(1000)  # an NTP correction moves the wall clock four seconds back
    second = clock.now()
    assert second > first
    assert millis_of(second) == 5000 and counter_of(second) == 1
    wall.set(6000)
    assert clock.now() == pack(6000, 0)


def test_counter_overflow_carries_into_the_milliseconds() -> None:
    clock = HybridClock(ManualClock(1000), last=pack(1000, COUNTER_MASK))
    value = clock.now()
    assert value == pack(1001, 0)
    assert value > pack(1000, COUNTER_MASK)


def test_update_takes_the_max_of_local_remote_and_wall() -> None:
    wall = ManualClock(1000)
    clock = HybridClock(wall)
    clock.now()  # (1000, 0)
    # remote ahead in the same millisecond with a higher counter
    assert clock.update(pack(1000, 7)) == pack(1000, 8)
    # remote ahead by milliseconds (within drift)
    assert clock.update(pack(1500, 3)) == pack(1500, 4)
    # remote behind: local counter advances
    assert clock.update(pack(900, 0)) == pack(1500, 5)
    # the wall clock overtakes everything: counter resets
    wall.set(2000)
    assert clock.update(pack(1999, 9)) == pack(2000, 0)


def test_update_refuses_a_remote_clock_too_far_ahead() -> None:
    clock = HybridClock(ManualClock(1000), max_drift_ms=100)
    with pytest.raises(ClockError, match="ahead"):
        clock.update(pack(1101, 0))
    assert clock.last == 0  # nothing changed
    assert clock.update(pack(1100, 0)) == pack(1100, 1)


def test_update_without_a_drift_bound_accepts_any_remote() -> None:
    clock = HybridClock(ManualClock(1000), max_drift_ms=None)
    assert clock.update(pack(10**9, 0)) == pack(10**9, 1)


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ClockError):
        pack(1 << 48, 0)
    with pytest.raises(ClockError):
        pack(0, COUNTER_MASK + 1)
    with pytest.raises(ClockError):
        HybridClock(ManualClock(0), last=-1)
    with pytest.raises(ClockError):
        HybridClock(lambda: -5).now()
    with pytest.raises(ClockError):
        HybridClock(ManualClock(0)).update(1 << 64)


def test_wire_form_is_sixteen_lowercase_hex_digits_and_sorts_like_the_number() -> None:
    a, b = pack(1_700_000_000_000, 1), pack(1_700_000_000_001, 0)
    assert to_wire(a) == "018bcfe568000001"
    assert from_wire(to_wire(b)) == b
    assert (to_wire(a) < to_wire(b)) == (a < b)
    for bad in ("018BCFE568000001", "18bcfe568000001", "018bcfe56800000g", ""):
        with pytest.raises(ClockError):
            from_wire(bad)


def test_ties_break_on_node_id_bytes() -> None:
    assert order_key(5, "a") < order_key(5, "b") < order_key(6, "a")
    assert order_key(5, "Z") < order_key(5, "a")  # byte order, not case-folded
