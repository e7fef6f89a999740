"""Routing: an order's payment methods ranked by what they cost the restaurant.

Each option shows its processing and platform fees. Ties in cost keep the order of
:data:`TIE_ORDER`, so the ranking is deterministic. The fallback after a failed method is
the next option in the ranking; fallback is safe because an order has at most one live
attempt per balance due (a new attempt can only start once the failed one is final).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from fynlo_sync.domains.payments.fees import METHODS, FeeQuote, FeeSchedule, Method, quote
from fynlo_sync.domains.payments.money import MoneyError

__all__ = ["TIE_ORDER", "RouteOption", "fallback_after", "rank_methods"]

#: Equal costs rank in this order.
TIE_ORDER: Final[tuple[Method, ...]] = ("cash", "open_banking", "card", "apple_pay")


@dataclass(frozen=True, slots=True)
class RouteOption:
    method: Method
    quote: FeeQuote

    @property
    def cost(self) -> int:
        return self.quote.total


def rank_methods(
    schedule: FeeSchedule,
    *,
    amount: int,
    country: str,
    currency: str,
    day: str,
    methods: Iterable[Method] = METHODS,
) -> list[RouteOption]:
    """The ``methods`` that have a fee schedule, cheapest for the restaurant first."""
    options = []
    for method in sorted(set(methods), key=TIE_ORDER.index):
        try:
            options.append(
                RouteOption(method, quote(schedule, method, country, currency, day, amount))
            )
        except MoneyError as exc:
            if exc.extra.get("reason") != "no-fee-schedule":
                raise
    options.sort(key=lambda o: (o.cost, TIE_ORDER.index(o.method)))
    return options


def fallback_after(ranking: Sequence[RouteOption], failed: Iterable[Method]) -> Method | None:
    """The first method of ``ranking`` that has not failed yet (None: nothing left)."""
    gone = set(failed)
    for option in ranking:
        if option.method not in gone:
            return option.method
    return None
