"""Money rules: rounding by name, splits, gross-up, tips, fees, surcharges, routing.

Every tie listed in the domain facts (shared/design/DOMAIN.md, "Money") is pinned here, and
hypothesis checks that random amounts, splits and schedules conserve money to the penny.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fynlo_sync.domains.payments.fees import (
    DEFAULT_SCHEDULE,
    FeeRate,
    FeeSchedule,
    check_surcharge,
    date_of,
    quote,
    service_charge,
)
from fynlo_sync.domains.payments.money import (
    ROUNDING_MODES,
    MoneyError,
    check_rounding,
    divide,
    gross_up,
    percent_of,
    split_equal,
    split_ratio,
)
from fynlo_sync.domains.payments.routing import fallback_after, rank_methods
from fynlo_sync.domains.payments.tips import TipSettings, tip_amount

AMOUNT = st.integers(min_value=0, max_value=10**9)
RATE = st.integers(min_value=0, max_value=9_999)

# (rate in bp, amount, exact value) -- the ties of DOMAIN.md that tell half-up from half-even.
TIES = [
    (290, 500, "14.5"),
    (100, 250, "2.5"),
    (20, 1250, "2.5"),
    (500, 1010, "50.5"),
    (1000, 1005, "100.5"),
]


@pytest.mark.parametrize(("bp", "amount", "exact"), TIES)
def test_domain_ties_round_by_their_named_mode(bp: int, amount: int, exact: str) -> None:
    value = Fraction(exact)
    assert Fraction(amount * bp, 10_000) == value
    low = int(value)
    assert percent_of(amount, bp, "half-up") == low + 1
    assert percent_of(amount, bp, "half-even") == (low if low % 2 == 0 else low + 1)
    assert percent_of(amount, bp, "floor") == low
    assert percent_of(amount, bp, "ceil") == low + 1


def test_the_ties_in_numbers() -> None:
    assert [percent_of(a, bp, "half-up") for bp, a, _ in TIES] == [15, 3, 3, 51, 101]
    assert [percent_of(a, bp, "half-even") for bp, a, _ in TIES] == [14, 2, 2, 50, 100]


def test_half_up_goes_away_from_zero_and_half_even_to_even() -> None:
    assert divide(-5, 2, "half-up") == -3
    assert divide(-5, 2, "half-even") == -2
    assert divide(7, 2, "half-even") == 4
    assert divide(-7, 2, "floor") == -4 and divide(-7, 2, "ceil") == -3
    assert divide(7, -2, "floor") == -4


def test_rounding_is_named_or_refused() -> None:
    assert ROUNDING_MODES == ("half-up", "half-even", "floor", "ceil")
    with pytest.raises(MoneyError) as info:
        check_rounding("bankers")
    assert info.value.extra["reason"] == "unknown-rounding"
    with pytest.raises(MoneyError):
        divide(1, 0, "floor")


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**6), st.sampled_from(ROUNDING_MODES))
def test_divide_is_within_one_half_of_the_exact_quotient(n: int, d: int, mode: str) -> None:
    got = divide(n, d, check_rounding(mode))
    exact = Fraction(n, d)
    assert abs(got - exact) < 1
    if mode == "floor":
        assert got <= exact
    elif mode == "ceil":
        assert got >= exact
    else:
        assert abs(got - exact) <= Fraction(1, 2)


def test_splits_from_the_domain_facts() -> None:
    assert split_equal(1000, 3) == [334, 333, 333]
    assert split_ratio(1000, [1, 1, 1]) == [334, 333, 333]
    assert split_ratio(100, [1, 2]) == [33, 67]  # 33.33 / 66.67: the larger remainder wins
    assert split_ratio(10, [1, 1, 1, 1]) == [3, 3, 2, 2]  # equal remainders: earlier first
    assert split_ratio(7, [0, 5]) == [0, 7]
    for bad in ([], [0, 0], [1, -1]):
        with pytest.raises(MoneyError):
            split_ratio(10, bad)
    with pytest.raises(MoneyError):
        split_equal(10, 0)


@given(AMOUNT, st.integers(1, 50))
def test_equal_split_adds_back_and_differs_by_at_most_one(total: int, parts: int) -> None:
    shares = split_equal(total, parts)
    assert sum(shares) == total and len(shares) == parts
    assert max(shares) - min(shares) <= 1


@given(AMOUNT, st.lists(st.integers(0, 1000), min_size=1, max_size=12).filter(any))
def test_ratio_split_adds_back_within_one_of_exact(total: int, weights: list[int]) -> None:
    shares = split_ratio(total, weights)
    assert sum(shares) == total
    whole = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        assert abs(share - Fraction(total * weight, whole)) < 1


def test_gross_up_worked_example() -> None:
    charge = gross_up(1000, 290, 30)
    assert charge == 1061
    fee = percent_of(charge, 290, "half-up") + 30
    assert fee == 61 and charge - fee == 1000


@given(st.integers(0, 10**8), st.integers(0, 2_000), st.integers(0, 500))
def test_gross_up_always_leaves_at_least_the_net(net: int, bp: int, fixed: int) -> None:
    charge = gross_up(net, bp, fixed)
    fee = percent_of(charge, bp, "half-up") + fixed
    assert charge - fee >= net
    # and it is the smallest charge for which the exact (unrounded) fee leaves the net
    assert (charge - 1) * (10_000 - bp) < (net + fixed) * 10_000


def test_tips_presets_base_and_rounding() -> None:
    tips = TipSettings()
    assert [tip_amount(tips, amount=1000, order_total=1000, preset=k) for k in range(3)] == [
        50,
        100,
        200,
    ]
    # 5 % of 1010 is a tie (50.5): half-up by default, half-even when set
    assert tip_amount(tips, amount=1010, order_total=1010, preset=0) == 51
    even = TipSettings(rounding="half-even")
    assert tip_amount(even, amount=1010, order_total=1010, preset=0) == 50
    assert tip_amount(tips, amount=1005, order_total=1005, custom_bp=1000) == 101
    assert tip_amount(tips, amount=500, order_total=1000, preset=1) == 50  # base: the share
    whole = TipSettings(base="order_total")
    assert tip_amount(whole, amount=500, order_total=1000, preset=1) == 100
    assert tip_amount(tips, amount=500, order_total=1000, custom=75) == 75
    assert tip_amount(tips, amount=500, order_total=1000) == 0
    off = TipSettings(enabled=False)
    with pytest.raises(MoneyError) as info:
        tip_amount(off, amount=1000, order_total=1000, preset=0)
    assert info.value.extra["reason"] == "tips-disabled"
    for kwargs in ({"preset": 3}, {"custom": -1}, {"custom_bp": -5}, {"preset": 0, "custom": 1}):
        with pytest.raises(MoneyError):
            tip_amount(tips, amount=1000, order_total=1000, **kwargs)


def test_seed_fee_schedule() -> None:
    day = "2026-01-01"
    gb_card = quote(DEFAULT_SCHEDULE, "card", "GB", "GBP", day, 1000)
    assert (gb_card.processing, gb_card.platform) == (35, 10)  # 1.5 % + 20p, 1 %
    us_card = quote(DEFAULT_SCHEDULE, "card", "US", "USD", day, 500)
    assert (us_card.processing, us_card.platform) == (45, 5)  # 14.5 -> 15 half-up, + 30
    ob = quote(DEFAULT_SCHEDULE, "open_banking", "GB", "GBP", day, 1250)
    assert ob.processing == 3  # 0.2 % of 1250 = 2.5 -> 3
    assert quote(DEFAULT_SCHEDULE, "cash", "GB", "GBP", day, 250).platform == 3  # 1 % of 250
    assert quote(DEFAULT_SCHEDULE, "apple_pay", "GB", "GBP", day, 1000).processing == 35
    with pytest.raises(MoneyError) as info:
        quote(DEFAULT_SCHEDULE, "open_banking", "US", "USD", day, 100)
    assert info.value.extra["reason"] == "no-fee-schedule"
    with pytest.raises(MoneyError):  # before the UK rate took effect, none is known
        quote(DEFAULT_SCHEDULE, "card", "GB", "GBP", "2023-04-09", 100)


def test_fee_rows_take_effect_on_their_day() -> None:
    schedule = FeeSchedule(
        [
            FeeRate("processing", "card", "GB", "GBP", 140, 20, "2020-01-01"),
            FeeRate("processing", "card", "GB", "GBP", 150, 20, "2023-04-10", "half-even"),
        ]
    )
    assert quote(schedule, "card", "GB", "GBP", "2023-04-09", 1000).processing == 34
    assert quote(schedule, "card", "GB", "GBP", "2023-04-10", 1000).processing == 35
    # the new row's rounding applies: 1.5 % of 100 = 1.5 -> 2 (even)
    assert quote(schedule, "card", "GB", "GBP", "2024-01-01", 100).processing == 22
    assert quote(schedule, "card", "GB", "GBP", "2024-01-01", 1000).platform == 0
    with pytest.raises(MoneyError):
        FeeSchedule([FeeRate("processing", "card", "GB", "GBP", 1, 0, "2020-01-01", "nope")])  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        FeeSchedule([FeeRate("processing", "card", "GB", "GBP", -1, 0, "2020-01-01")])
    assert date_of(1_700_000_000_000) == "2023-11-14"


@given(AMOUNT, st.integers(0, 100_000), st.sampled_from(["card", "open_banking", "apple_pay"]))
def test_fees_never_touch_the_tip(amount: int, tip: int, method: str) -> None:
    """The quote sees only the non-tip amount: the same fees whatever the tip."""
    q = quote(DEFAULT_SCHEDULE, method, "GB", "GBP", "2026-01-01", amount)  # type: ignore[arg-type]
    assert q.on == amount
    restaurant_net = amount - q.total
    assert restaurant_net + q.processing + q.platform + tip == amount + tip  # gross


@given(RATE, st.integers(0, 500), AMOUNT, st.sampled_from(ROUNDING_MODES))
def test_random_schedules_conserve_money(bp: int, fixed: int, amount: int, mode: str) -> None:
    schedule = FeeSchedule(
        [
            FeeRate(
                "processing", "card", "XX", "XXX", bp, fixed, "2000-01-01", check_rounding(mode)
            ),
            FeeRate("platform", "card", "XX", "XXX", 100, 0, "2000-01-01"),
        ]
    )
    q = quote(schedule, "card", "XX", "XXX", "2026-01-01", amount)
    assert q.platform == percent_of(amount, 100, "half-up")
    assert abs(q.processing - fixed - Fraction(amount * bp, 10_000)) < 1


def test_uk_consumer_surcharge_is_refused() -> None:
    for method in ("card", "open_banking", "apple_pay"):
        with pytest.raises(MoneyError) as info:
            check_surcharge(
                "customer",
                country="GB",
                method=method,
                day="2026-01-01",
                surcharge_bp=150,
                processing_bp=150,
            )
        assert info.value.extra["reason"] == "surcharge-banned"
    # before the ban (13 Jan 2018) no rule is known: still refused, differently
    with pytest.raises(MoneyError) as info:
        check_surcharge(
            "customer",
            country="GB",
            method="card",
            day="2018-01-12",
            surcharge_bp=150,
            processing_bp=150,
        )
    assert info.value.extra["reason"] == "surcharge-not-allowed"
    assert (
        check_surcharge(
            "restaurant",
            country="GB",
            method="card",
            day="2026-01-01",
            surcharge_bp=150,
            processing_bp=150,
        )
        == 0
    )


def test_us_credit_surcharge_is_capped_at_three_percent() -> None:
    kwargs = {"country": "US", "method": "card", "day": "2026-01-01", "processing_bp": 290}
    assert check_surcharge("customer", surcharge_bp=290, funding="credit", **kwargs) == 290  # type: ignore[arg-type]
    with pytest.raises(MoneyError) as info:
        check_surcharge("customer", surcharge_bp=301, funding="credit", **kwargs)  # type: ignore[arg-type]
    assert info.value.extra["reason"] == "surcharge-above-cap"
    with pytest.raises(MoneyError) as info:  # above the cost of acceptance (2.9 %)
        check_surcharge("customer", surcharge_bp=300, funding="credit", **kwargs)  # type: ignore[arg-type]
    assert info.value.extra["reason"] == "surcharge-above-cap"
    with pytest.raises(MoneyError) as info:
        check_surcharge("customer", surcharge_bp=100, funding="debit", **kwargs)  # type: ignore[arg-type]
    assert info.value.extra["reason"] == "surcharge-not-allowed"


def test_a_method_independent_service_charge_stays_allowed() -> None:
    # 12.5 % service charge on 1000 in the UK, whatever the method
    assert service_charge(1000, 1250) == 125
    assert service_charge(1010, 1250, "half-even") == 126  # 126.25
    assert service_charge(1004, 1250) == 126  # 125.5 -> 126 half-up
    with pytest.raises(MoneyError):
        service_charge(100, -1)


def test_routing_ranks_by_cost_with_fees_shown_and_falls_back() -> None:
    ranking = rank_methods(
        DEFAULT_SCHEDULE,
        amount=2000,
        country="GB",
        currency="GBP",
        day="2026-01-01",
        methods=["card", "open_banking", "apple_pay"],
    )
    assert [(o.method, o.quote.processing, o.quote.platform, o.cost) for o in ranking] == [
        ("open_banking", 4, 20, 24),
        ("card", 50, 20, 70),
        ("apple_pay", 50, 20, 70),
    ]
    assert fallback_after(ranking, ["open_banking"]) == "card"
    assert fallback_after(ranking, ["open_banking", "card"]) == "apple_pay"
    assert fallback_after(ranking, ["open_banking", "card", "apple_pay"]) is None
    us = rank_methods(DEFAULT_SCHEDULE, amount=2000, country="US", currency="USD", day="2026-01-01")
    assert [o.method for o in us] == ["cash", "card", "apple_pay"]  # no US open banking row


@given(st.integers(1, 10**7))
def test_routing_is_sorted_by_cost(amount: int) -> None:
    ranking = rank_methods(
        DEFAULT_SCHEDULE, amount=amount, country="GB", currency="GBP", day="2026-01-01"
    )
    costs = [o.cost for o in ranking]
    assert costs == sorted(costs)
    assert {o.method for o in ranking} == {"cash", "card", "open_banking", "apple_pay"}
