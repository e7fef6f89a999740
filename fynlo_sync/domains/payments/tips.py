"""Tips: presets and custom tips, their base and rounding as settings.

Defaults (docs/protocol.md section 19.4): tips on; presets 5, 10 and 20 %; the base is the
amount the payment pays toward the order (for a single payment that is the order total,
tax included, as Odoo does); rounding ``half-up``. 5/10/20 % of 1000 = 50/100/200.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from fynlo_sync.domains.payments.money import (
    DEFAULT_ROUNDING,
    MoneyError,
    Rounding,
    check_rounding,
    percent_of,
)

__all__ = ["DEFAULT_PRESETS_BP", "TipBase", "TipSettings", "tip_amount"]

TipBase = Literal["amount", "order_total"]
DEFAULT_PRESETS_BP: Final = (500, 1000, 2000)


@dataclass(frozen=True, slots=True)
class TipSettings:
    enabled: bool = True
    presets_bp: tuple[int, ...] = DEFAULT_PRESETS_BP
    base: TipBase = "amount"
    rounding: Rounding = DEFAULT_ROUNDING

    def __post_init__(self) -> None:
        check_rounding(self.rounding)
        if self.base not in ("amount", "order_total"):
            raise MoneyError(f"unknown tip base {self.base!r}", reason="invalid-setting")


def tip_amount(
    settings: TipSettings,
    *,
    amount: int,
    order_total: int,
    preset: int | None = None,
    custom_bp: int | None = None,
    custom: int | None = None,
) -> int:
    """The tip for one payment: preset number ``preset`` (0-based), a custom rate, or a
    custom amount (exactly one of them, or none for no tip)."""
    chosen = [x for x in (preset, custom_bp, custom) if x is not None]
    if len(chosen) > 1:
        raise MoneyError("choose one of a preset, a rate or an amount", reason="invalid-tip")
    if not chosen:
        return 0
    if not settings.enabled:
        raise MoneyError("tips are turned off for this restaurant", reason="tips-disabled")
    if custom is not None:
        if custom < 0:
            raise MoneyError("a tip cannot be negative", reason="invalid-tip")
        return custom
    if preset is not None:
        if not 0 <= preset < len(settings.presets_bp):
            raise MoneyError(f"no tip preset {preset}", reason="invalid-tip")
        rate = settings.presets_bp[preset]
    else:
        assert custom_bp is not None
        if custom_bp < 0:
            raise MoneyError("a tip rate cannot be negative", reason="invalid-tip")
        rate = custom_bp
    base = amount if settings.base == "amount" else order_total
    return percent_of(base, rate, settings.rounding)
