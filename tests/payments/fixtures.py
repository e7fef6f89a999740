"""Orders with payment attempts in a given state, for the state-table tests and vectors."""

from __future__ import annotations

from typing import Any

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin, PaymentsSettings
from fynlo_sync.domains.payments.attempts import derive_money
from fynlo_sync.ops import Record, Stamp
from fynlo_sync.plugins import Registry

__all__ = ["ARGS", "attempt_in", "order_with", "payments_registry"]

#: Valid arguments of every state-table command (attempt ``a1`` of order ``o-1``).
ARGS: dict[str, dict[str, Any]] = {
    "start": {"attempt_id": "a1", "method": "card", "amount": 1000, "tip": 100},
    "cash": {"attempt_id": "a1", "amount": 1000, "tip": 100, "tendered": 2000},
    "submit": {"attempt_id": "a1", "provider_ref": "pi_1"},
    "require_action": {"attempt_id": "a1"},
    "authorise": {"attempt_id": "a1"},
    "capture": {"attempt_id": "a1"},
    "fail": {"attempt_id": "a1", "reason": "card_declined"},
    "cancel": {"attempt_id": "a1", "reason": "requested_by_customer"},
    "expire": {"attempt_id": "a1"},
    "refund": {"attempt_id": "a1", "refund_id": "r2", "amount": 300},
    "reverse": {"attempt_id": "a1", "reason": "payment_returned"},
}

STAMP = Stamp(hlc="018bcfe568000000", node_id="till-a", seq=4)


def payments_registry(settings: PaymentsSettings | None = None) -> Registry:
    plugin = PaymentsPlugin() if settings is None else PaymentsPlugin(settings)
    return conflict.registry([OrdersPlugin(), plugin])


def attempt_in(state: str, method: str = "card") -> dict[str, Any]:
    """Attempt ``a1``: 1000 + tip 100 by ``method``, in ``state``."""
    settled = state in ("captured", "refunded_partial", "refunded")
    refunded = {"captured": 0, "refunded_partial": 200, "refunded": 1100}.get(state, 0)
    return {
        "method": method,
        "amount": 1000,
        "tip": 100,
        "surcharge": 0,
        "currency": "GBP",
        "state": state,
        "captured": 1100 if settled else 0,
        "change": 0,
        "tendered": None,
        "refunded": refunded,
        "refunds": {
            "r1": {"amount": refunded, "by": "till-a", "approved_by": None, "day": "2023-11-14"}
        }
        if refunded
        else {},
        "fees": {
            "processing": 35,
            "platform": 10,
            "platform_bp": 100,
            "rounding": "half-up",
            "day": "2023-11-14",
        }
        if settled
        else None,
        "overpaid": 0,
        "offline": False,
        "approved_by": None,
        "employee": "emp-1",
        "provider_ref": "pi_1" if state != "created" else None,
        "failure_reason": None,
        "created_by": "till-a",
    }


def order_with(attempts: dict[str, dict[str, Any]], *, status: str = "served") -> Record:
    """Order ``o-1`` in GBP: one served line of 1000, with these attempts."""
    fields: dict[str, Any] = {
        "status": status,
        "currency": "GBP",
        "table": "T4",
        "lines": {"l1": {"item": "Fish", "qty": 1, "unit_price": 1000, "sent": True}},
        "total": 1000,
        "opened_by": "till-a",
        "payments": attempts,
        "refunds_due": {},
    }
    fields.update(derive_money(fields))
    return Record(
        collection="orders",
        record_id="o-1",
        fields=fields,
        stamps={name: STAMP for name in sorted(fields)},
        version=4,
    )
