"""Fees as data: schedules per country and method with effective dates, the platform fee,
who bears the processing fee (surcharge rules by jurisdiction), and service charges.

Every rate is a :class:`FeeRate` row: basis points plus a fixed part in minor units, a
currency, the day it takes effect, and the name of its rounding. Nothing in code knows a
rate; :data:`DEFAULT_SCHEDULE` is the seed data and a tenant can be given another.

Fees are computed on the **non-tip** amount (UK Employment (Allocation of Tips) Act 2023:
tips pass to workers in full). An estimate here is for display and routing; the
processor's own fee (its balance transaction) is the truth once it is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, get_args

from fynlo_sync.domains.payments.money import (
    DEFAULT_ROUNDING,
    MoneyError,
    Rounding,
    check_rounding,
    percent_of,
)
from fynlo_sync.domains.timeclock.plugin import civil_from_days, days_from_civil

__all__ = [
    "DEFAULT_SCHEDULE",
    "DEFAULT_SURCHARGE_RULES",
    "METHODS",
    "Bearer",
    "FeeQuote",
    "FeeRate",
    "FeeSchedule",
    "Method",
    "SurchargeRule",
    "check_surcharge",
    "date_of",
    "quote",
    "service_charge",
]

Method = Literal["cash", "card", "open_banking", "apple_pay"]
METHODS: Final[tuple[Method, ...]] = get_args(Method)
Bearer = Literal["restaurant", "customer"]
FeeKind = Literal["processing", "platform"]


def date_of(ms: int) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) of a time in epoch milliseconds (integer
    calendar arithmetic, the same in every port)."""
    return civil_from_days(ms // 86_400_000)


def _check_day(day: str) -> None:
    parts = day.split("-")
    ok = len(day) == 10 and len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts)
    if not ok or civil_from_days(days_from_civil(*(int(p) for p in parts))) != day:
        raise MoneyError(f"{day!r} is not a day (YYYY-MM-DD)", reason="invalid-schedule")


@dataclass(frozen=True, slots=True)
class FeeRate:
    """One row of a fee schedule: from ``effective_from`` (a UTC day, inclusive) the fee of
    ``kind`` for ``method`` in ``country`` is ``rate_bp`` of the non-tip amount, rounded by
    ``rounding``, plus ``fixed`` minor units of ``currency``."""

    kind: FeeKind
    method: Method
    country: str
    currency: str
    rate_bp: int
    fixed: int
    effective_from: str
    rounding: Rounding = DEFAULT_ROUNDING

    def fee(self, amount: int) -> int:
        return percent_of(amount, self.rate_bp, self.rounding) + self.fixed


@dataclass(frozen=True, slots=True)
class FeeQuote:
    """The fees of one payment: ``on`` is the non-tip amount they were computed on."""

    method: Method
    on: int
    processing: int
    platform: int
    processing_rate: FeeRate | None
    platform_rate: FeeRate | None

    @property
    def total(self) -> int:
        return self.processing + self.platform


class FeeSchedule:
    """Fee rows looked up by (kind, method, country, currency) at a day: the row with the
    latest ``effective_from`` not after that day wins."""

    def __init__(self, rates: Iterable[FeeRate]) -> None:
        self.rates: tuple[FeeRate, ...] = tuple(
            sorted(rates, key=lambda r: (r.kind, r.method, r.country, r.currency, r.effective_from))
        )
        seen: set[tuple[str, str, str, str, str]] = set()
        for rate in self.rates:
            check_rounding(rate.rounding)
            if rate.rate_bp < 0 or rate.fixed < 0:
                raise MoneyError("a fee rate cannot be negative", reason="invalid-schedule")
            _check_day(rate.effective_from)
            key = (rate.kind, rate.method, rate.country, rate.currency, rate.effective_from)
            if key in seen:
                raise MoneyError(f"two fee rows for {key}", reason="invalid-schedule")
            seen.add(key)

    def rate(
        self, kind: FeeKind, method: Method, country: str, currency: str, day: str
    ) -> FeeRate | None:
        found = None
        for rate in self.rates:
            if (
                rate.kind == kind
                and rate.method == method
                and rate.country == country
                and rate.currency == currency
                and rate.effective_from <= day
            ):
                found = rate  # sorted by effective_from: the last match is the newest
        return found


def _row(
    kind: FeeKind, method: Method, country: str, currency: str, bp: int, fixed: int, since: str
) -> FeeRate:
    return FeeRate(kind, method, country, currency, bp, fixed, since)


#: The seed rates (docs/protocol.md section 19.4). Stripe UK standard cards 1.5 % + 20p
#: since 10 Apr 2023; Stripe US online 2.9 % + 30c; open banking 0.2 %; platform 1 % of the
#: non-tip amount on every method, cash included. Apple Pay is a card payment.
DEFAULT_SCHEDULE: Final = FeeSchedule(
    [
        _row("processing", "cash", "GB", "GBP", 0, 0, "2000-01-01"),
        _row("processing", "card", "GB", "GBP", 150, 20, "2023-04-10"),
        _row("processing", "apple_pay", "GB", "GBP", 150, 20, "2023-04-10"),
        _row("processing", "open_banking", "GB", "GBP", 20, 0, "2020-01-01"),
        _row("processing", "cash", "US", "USD", 0, 0, "2000-01-01"),
        _row("processing", "card", "US", "USD", 290, 30, "2000-01-01"),
        _row("processing", "apple_pay", "US", "USD", 290, 30, "2000-01-01"),
    ]
    + [
        _row("platform", method, country, currency, 100, 0, "2000-01-01")
        for country, currency in (("GB", "GBP"), ("US", "USD"))
        for method in ("cash", "card", "open_banking", "apple_pay")
    ]
)


def quote(
    schedule: FeeSchedule, method: Method, country: str, currency: str, day: str, amount: int
) -> FeeQuote:
    """The processing and platform fees of paying ``amount`` (the non-tip part) by
    ``method``. A method with no processing row for that country, currency and day is
    refused ``no-fee-schedule``; a missing platform row means no platform fee."""
    if amount < 0:
        raise MoneyError("a fee is computed on an amount >= 0", reason="invalid-argument")
    processing = schedule.rate("processing", method, country, currency, day)
    if processing is None:
        raise MoneyError(
            f"no fee schedule for {method} in {country} ({currency}) on {day}",
            reason="no-fee-schedule",
            method=method,
        )
    platform = schedule.rate("platform", method, country, currency, day)
    return FeeQuote(
        method=method,
        on=amount,
        processing=processing.fee(amount),
        platform=0 if platform is None else platform.fee(amount),
        processing_rate=processing,
        platform_rate=platform,
    )


# ----------------------------------------------------------------------- surcharges


@dataclass(frozen=True, slots=True)
class SurchargeRule:
    """Whether a customer may be charged the processing fee in ``country`` from
    ``effective_from``: ``banned`` for consumer payments by the listed methods (UK,
    13 Jan 2018), else allowed only on the listed card funding (``credit``) up to
    ``cap_bp`` and never above the cost of acceptance (US, Visa rules)."""

    country: str
    effective_from: str
    banned_methods: tuple[Method, ...] = ()
    allowed_funding: tuple[str, ...] = ()
    cap_bp: int = 0


DEFAULT_SURCHARGE_RULES: Final[tuple[SurchargeRule, ...]] = (
    SurchargeRule("GB", "2018-01-13", banned_methods=("card", "open_banking", "apple_pay")),
    SurchargeRule("US", "2013-01-27", allowed_funding=("credit",), cap_bp=300),
)


def check_surcharge(
    bearer: Bearer,
    *,
    country: str,
    method: Method,
    day: str,
    surcharge_bp: int,
    processing_bp: int,
    consumer: bool = True,
    funding: str | None = None,
    rules: Sequence[SurchargeRule] = DEFAULT_SURCHARGE_RULES,
) -> int:
    """The surcharge rate (bp) a customer may be charged, or a refusal.

    ``bearer`` ``restaurant`` always passes with 0. ``customer`` is refused
    ``surcharge-banned`` where the jurisdiction bans it (GB consumer payments),
    ``surcharge-not-allowed`` on funding the rules do not allow (US debit) or where no rule
    is known, and ``surcharge-above-cap`` above the cap or above the cost of acceptance.
    """
    if bearer == "restaurant" or method == "cash":
        return 0
    rule = None
    for candidate in sorted(rules, key=lambda r: r.effective_from):
        if candidate.country == country and candidate.effective_from <= day:
            rule = candidate
    if rule is None:
        raise MoneyError(
            f"no surcharge rule is known for {country}: the restaurant bears the fee",
            reason="surcharge-not-allowed",
        )
    if method in rule.banned_methods and consumer:
        raise MoneyError(
            f"surcharging consumers for {method} payments is banned in {country}",
            reason="surcharge-banned",
        )
    if rule.banned_methods and not consumer:
        if surcharge_bp > processing_bp:
            _above(processing_bp)
        return surcharge_bp
    if funding not in rule.allowed_funding:
        raise MoneyError(
            f"a surcharge in {country} is allowed only on {', '.join(rule.allowed_funding)}",
            reason="surcharge-not-allowed",
        )
    if surcharge_bp > rule.cap_bp:
        raise MoneyError(
            f"a surcharge in {country} is capped at {rule.cap_bp} bp",
            reason="surcharge-above-cap",
            cap_bp=rule.cap_bp,
        )
    if surcharge_bp > processing_bp:
        _above(processing_bp)
    return surcharge_bp


def _above(processing_bp: int) -> NoReturn:
    raise MoneyError(
        "a surcharge cannot exceed the cost of acceptance",
        reason="surcharge-above-cap",
        cap_bp=processing_bp,
    )


def service_charge(amount: int, rate_bp: int, rounding: Rounding = DEFAULT_ROUNDING) -> int:
    """A method-independent service charge of ``rate_bp`` on ``amount``: legal everywhere,
    because it does not depend on how the customer pays."""
    if rate_bp < 0 or amount < 0:
        raise MoneyError("a service charge needs amount, rate >= 0", reason="invalid-argument")
    return percent_of(amount, rate_bp, check_rounding(rounding))
