"""The payments plugin's tenant settings, with documented defaults (protocol section 19.4).

Terminal and server must run with the same settings (they are part of the schema: a
command decides with them). "Needs a manager" above these limits means, with the staff
plugin, that the op's actor holds the permission (``refund.above_limit``,
``payment.offline``); without it, an ``approved_by`` argument naming the manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from fynlo_sync.domains.payments.fees import (
    DEFAULT_SCHEDULE,
    DEFAULT_SURCHARGE_RULES,
    Bearer,
    FeeSchedule,
    SurchargeRule,
    check_surcharge,
)
from fynlo_sync.domains.payments.money import MoneyError
from fynlo_sync.domains.payments.tips import TipSettings

__all__ = ["CARD_RESULTS", "DEFAULT_SETTINGS", "CardResults", "PaymentsSettings"]

#: Who reports a card, open banking or Apple Pay attempt's progress (section 19.4):
#: ``terminal`` (a standalone card reader reporting through the till) or ``server`` (the
#: providers plugin: the provider's word reaches the order only as ops of node ``server``).
CardResults = Literal["terminal", "server"]
CARD_RESULTS: Final = ("terminal", "server")


@dataclass(frozen=True, slots=True)
class PaymentsSettings:
    #: ISO 3166 country of the restaurant: selects fee rows and surcharge rules.
    country: str = "GB"
    schedule: FeeSchedule = DEFAULT_SCHEDULE
    tips: TipSettings = field(default_factory=TipSettings)
    #: Who bears the processing fee. ``customer`` is refused where surcharges are banned.
    fee_bearer: Bearer = "restaurant"
    #: The surcharge rate when the customer bears the fee (US credit: <= 300 bp).
    surcharge_bp: int = 0
    #: Consumer (not business) payments: the UK ban covers these.
    consumer: bool = True
    surcharge_rules: tuple[SurchargeRule, ...] = DEFAULT_SURCHARGE_RULES
    #: A refund above this (minor units) needs a manager.
    refund_manager_limit: int = 5000
    #: A cash payment taken offline above this (minor units, tip excluded) needs a manager;
    #: so does any refund or void made offline.
    offline_manager_limit: int = 10000
    #: "Offline" is the terminal's claim (``offline: true``) or the server's finding: an op
    #: the server receives more than this long (ms) after its HLC's time waited in an
    #: outbox, so it was made while the terminal could not reach the server (19.4).
    offline_after_ms: int = 120_000
    #: Who may report a non-cash attempt's provider state (``payment_submit``,
    #: ``_require_action``, ``_authorise``, ``_capture``, ``_expire``, ``_reverse``,
    #: ``_fee_correction``): any node (``terminal``), or only node ``server``
    #: (``server``, the default of the plugin's ``auto`` when the providers plugin is loaded).
    card_results: CardResults = "terminal"

    def __post_init__(self) -> None:
        if self.refund_manager_limit < 0 or self.offline_manager_limit < 0:
            raise MoneyError("manager limits must be >= 0", reason="invalid-setting")
        if self.offline_after_ms < 1:
            raise MoneyError("offline_after_ms must be >= 1", reason="invalid-setting")
        if self.card_results not in CARD_RESULTS:
            raise MoneyError(
                f"card_results must be terminal or server, not {self.card_results!r}",
                reason="invalid-setting",
            )
        if self.fee_bearer not in ("restaurant", "customer"):
            raise MoneyError(f"unknown fee bearer {self.fee_bearer!r}", reason="invalid-setting")
        if self.fee_bearer == "customer":
            # Refused where it is banned (GB consumer: surcharge-banned), capped elsewhere.
            check_surcharge(
                "customer",
                country=self.country,
                method="card",
                day="9999-12-31",
                surcharge_bp=self.surcharge_bp,
                processing_bp=self.surcharge_bp,
                consumer=self.consumer,
                funding="credit",
                rules=self.surcharge_rules,
            )


DEFAULT_SETTINGS: Final = PaymentsSettings()
