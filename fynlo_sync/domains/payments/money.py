"""Money arithmetic in integer minor units, every rounding by name.

Nothing here uses floats. A rate is a count of **basis points** (1 bp = 0.01 %, so 2.9 % is
290 and 0.2 % is 20), which covers every published card and bank rate we know of.

Rounding modes, by the name a setting or a fee schedule uses:

* ``half-up``: to the nearest; a tie goes away from zero (14.5 -> 15). The default: what
  POS fee and tip maths expects.
* ``half-even``: to the nearest; a tie goes to the even neighbour (14.5 -> 14, 2.5 -> 2).
  Python's ``round()`` and ``decimal`` default.
* ``floor``: toward minus infinity. ``ceil``: toward plus infinity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, get_args

from fynlo_sync.errors import RejectedOpError

__all__ = [
    "BP",
    "DEFAULT_ROUNDING",
    "ROUNDING_MODES",
    "MoneyError",
    "Rounding",
    "check_rounding",
    "divide",
    "gross_up",
    "percent_of",
    "split_equal",
    "split_ratio",
]

Rounding = Literal["half-up", "half-even", "floor", "ceil"]
ROUNDING_MODES: Final[tuple[Rounding, ...]] = get_args(Rounding)
DEFAULT_ROUNDING: Final[Rounding] = "half-up"
#: Basis points in a whole: a rate r bp is r / 10_000.
BP: Final = 10_000


class MoneyError(RejectedOpError):
    """A money rule refused its input (``reason`` says which rule)."""

    code = "money"


def check_rounding(mode: str) -> Rounding:
    """``mode`` as a :data:`Rounding`, or a ``MoneyError`` naming it."""
    if mode not in ROUNDING_MODES:
        raise MoneyError(
            f"unknown rounding mode {mode!r}; one of {', '.join(ROUNDING_MODES)}",
            reason="unknown-rounding",
        )
    return mode


def divide(numerator: int, denominator: int, mode: Rounding) -> int:
    """``numerator / denominator`` rounded to an integer by ``mode`` (exact: integers only)."""
    if denominator == 0:
        raise MoneyError("division by zero", reason="invalid-argument")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    q, r = divmod(numerator, denominator)  # floor division: 0 <= r < denominator
    if r == 0 or mode == "floor":
        return q
    if mode == "ceil":
        return q + 1
    twice = 2 * r
    if twice > denominator:
        return q + 1
    if twice < denominator:
        return q
    # A tie: q + 0.5 exactly.
    if mode == "half-up":
        return q + 1 if q >= 0 else q  # away from zero
    return q if q % 2 == 0 else q + 1  # half-even


def percent_of(amount: int, rate_bp: int, mode: Rounding) -> int:
    """``rate_bp`` basis points of ``amount``, rounded by ``mode``."""
    return divide(amount * rate_bp, BP, mode)


def split_equal(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares that add back and differ by at most 1; the larger
    shares come first: 1000 three ways is [334, 333, 333]."""
    if parts <= 0:
        raise MoneyError("a split needs at least one part", reason="invalid-argument")
    if total < 0:
        raise MoneyError("only a non-negative amount can be split", reason="invalid-argument")
    base, extra = divmod(total, parts)
    return [base + 1 if k < extra else base for k in range(parts)]


def split_ratio(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split by integer ``weights`` (largest remainder): each share is floored,
    and the units left over go one each to the largest remainders, ties to the earlier
    share. The shares add back to ``total``."""
    if not weights or any(type(w) is not int or w < 0 for w in weights) or sum(weights) == 0:
        raise MoneyError(
            "a ratio split needs non-negative integer weights, not all zero",
            reason="invalid-argument",
        )
    if total < 0:
        raise MoneyError("only a non-negative amount can be split", reason="invalid-argument")
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda k: (-remainders[k], k))
    for k in order[:left]:
        shares[k] += 1
    return shares


def gross_up(net: int, rate_bp: int, fixed: int) -> int:
    """The charge that leaves ``net`` after a fee of ``rate_bp`` + ``fixed`` paid by someone
    else: ceil((net + fixed) / (1 - rate)). Net 1000 at 2.9 % + 30 -> 1061 (fee 61)."""
    if not 0 <= rate_bp < BP:
        raise MoneyError("a fee rate must be 0 <= rate < 100%", reason="invalid-argument")
    if net < 0 or fixed < 0:
        raise MoneyError("net and fixed fee must be >= 0", reason="invalid-argument")
    return divide((net + fixed) * BP, BP - rate_bp, "ceil")
