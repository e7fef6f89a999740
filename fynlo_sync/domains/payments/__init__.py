"""Payments: money rules (rounding, splits, fees, tips, routing), payment attempts kept in
the order record, cash drawers, and the ledger. See docs/protocol.md section 19."""

from fynlo_sync.domains.payments.attempts import PAYMENT_COMMANDS, derive_money
from fynlo_sync.domains.payments.plugin import PaymentsPlugin
from fynlo_sync.domains.payments.settings import DEFAULT_SETTINGS, PaymentsSettings
from fynlo_sync.domains.payments.states import (
    LIVE_STATES,
    SETTLED_STATES,
    STATES,
    TRANSITIONS,
    next_state,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "LIVE_STATES",
    "PAYMENT_COMMANDS",
    "SETTLED_STATES",
    "STATES",
    "TRANSITIONS",
    "PaymentsPlugin",
    "PaymentsSettings",
    "derive_money",
    "next_state",
]
