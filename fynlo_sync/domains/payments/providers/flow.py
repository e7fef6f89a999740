"""How a payment attempt moves with its provider, and how the provider's word becomes ops.

Two halves:

* :func:`attempt_commands` (pure): given the attempt's state in the order (the payments
  plugin's table: ``created``, ``pending``, ``requires_action``, ``authorised``,
  ``captured``, ``failed``, ``cancelled``, ``expired``, ...) and the provider's view of the
  payment, the ``payment_*`` commands the server authors on the order to bring the attempt
  up to date. Reports arrive late, twice and out of order: a report that is not newer than
  what the attempt already shows yields nothing, so applying one twice is applying it once.
* :func:`start`, :func:`cancel`, :func:`capture`, :func:`refresh` (async): the provider
  calls of one durable effect. ``retry`` is true when the effect ran before (after a crash,
  a timeout, a 5xx: the outcome is unknown), and then the payment is **looked up by our
  attempt id before anything is created**; every call carries the idempotency key derived
  from the attempt id and the step, so a provider that keeps keys answers a repeat with the
  first answer, and one that does not (localstripe) is protected by the look-up.

The provider is the authority on money: an attempt is failed, cancelled or expired only
once the provider says so, so a capture can never land on an attempt we already closed.
The one move back, a bank's failure after ``executed``, reverses the capture
(``payment_reverse``: captured -> failed, the balance due again) and is reported as a late
failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    PaymentProvider,
    ProviderPayment,
    ProviderRefund,
    ProviderRefusedError,
    idempotency_key,
    pick_current,
)

__all__ = [
    "ATTEMPT_SETTLED",
    "Plan",
    "attempt_commands",
    "attempt_state",
    "cancel",
    "capture",
    "refresh",
    "refund",
    "refund_key",
    "refund_outcome",
    "refund_status",
    "start",
]

#: Attempt states in which money was taken.
ATTEMPT_SETTLED: Final = frozenset({"captured", "refunded_partial", "refunded"})
_ATTEMPT_CLOSED: Final = frozenset({"failed", "cancelled", "expired"})


@dataclass(frozen=True)
class Plan:
    """The ``payment_*`` commands (name, args) to author on the order, in order, and a
    finding a person must see (``late-failure``, ``taken-after-close``) or None."""

    commands: tuple[tuple[str, dict[str, Any]], ...]
    finding: str | None = None


def attempt_commands(
    attempt_id: str,
    state: str | None,
    payment: ProviderPayment,
    *,
    tip: int | None = None,
    asked: int | None = None,
) -> Plan:
    """The commands that move an attempt in ``state`` to match ``payment``. ``tip`` and
    ``asked`` are a held payment's capture (the session's ``capture_tip`` and
    ``capture_amount``, 25.6): the capture records the tip, so the attempt splits what the
    provider took into amount and tip as the terminal asked (without it the attempt keeps
    the tip it started with), and takes at most ``asked`` (a provider captures at most the
    amount to capture and releases the rest; localstripe reports the whole hold as the
    charge and the release as a refund of it)."""
    ref = payment.provider_id
    base = {"attempt_id": attempt_id, "provider_ref": ref}
    out: list[tuple[str, dict[str, Any]]] = []
    if state is None:
        return Plan(())  # the attempt is not (yet) in this replica's order: nothing to do
    status = payment.status
    if state in ATTEMPT_SETTLED:
        if status != "failed":
            return Plan(())
        if state == "captured":
            # The provider took the money back (a bank's failure after ``executed``): the
            # capture is reversed (the ledger posts its negation) and the balance is due.
            reason = payment.failure_code or "failed"
            return Plan((("payment_reverse", {**base, "reason": reason}),), "late-failure")
        return Plan((), "late-failure")  # partly refunded already: a person decides
    if state in _ATTEMPT_CLOSED:
        if status in ("succeeded", "authorized"):
            return Plan((), "taken-after-close")
        return Plan(())
    # The attempt is live: created, pending, requires_action or authorised.
    if status == "failed":
        if payment.failure_code == "expired":
            return Plan((("payment_expire", dict(base)),))
        return Plan((("payment_fail", {**base, "reason": payment.failure_code or "failed"}),))
    if status == "canceled":
        return Plan((("payment_cancel", {**base, "reason": "provider"}),))
    if status == "created":
        return Plan((("payment_submit", dict(base)),) if state == "created" else ())
    if status == "processing":
        return Plan((("payment_submit", dict(base)),) if state == "created" else ())
    if status == "requires_action":
        if state == "created":
            out.append(("payment_submit", dict(base)))
            state = "pending"
        if state == "pending":
            out.append(("payment_require_action", dict(base)))
        return Plan(tuple(out))
    if status == "authorized":
        if state == "created":
            out.append(("payment_submit", dict(base)))
            state = "pending"
        if state in ("pending", "requires_action"):
            out.append(("payment_authorise", dict(base)))
        return Plan(tuple(out))
    # succeeded: money taken.
    if state == "created":
        out.append(("payment_submit", dict(base)))
        state = "pending"
    if state == "requires_action":
        out.append(("payment_authorise", dict(base)))
    taken = payment.amount_received if asked is None else min(payment.amount_received, asked)
    captured: dict[str, Any] = {**base, "amount": taken}
    if tip is not None:
        captured["tip"] = tip
    out.append(("payment_capture", captured))
    return Plan(tuple(out))


# The provider calls of one effect ----------------------------------------------------------


async def start(
    provider: PaymentProvider, request: CreatePayment, *, retry: bool
) -> ProviderPayment:
    """Create (or, on a retry, first find) the attempt's payment, then confirm it if a
    payment method is already known."""
    current = None
    if retry:
        current = pick_current(await provider.find(request.attempt_id))
    if current is None:
        current = await provider.create(request, key=idempotency_key(request.attempt_id, "create"))
    if current.status == "created" and request.payment_method:
        current = await provider.confirm(
            current.provider_id, key=idempotency_key(request.attempt_id, "confirm")
        )
    return current


async def refresh(
    provider: PaymentProvider, attempt_id: str, provider_id: str | None
) -> ProviderPayment | None:
    """The provider's current view (a webhook's payment re-fetched, or found by our id)."""
    if provider_id:
        return await provider.retrieve(provider_id)
    return pick_current(await provider.find(attempt_id))


async def cancel(provider: PaymentProvider, attempt_id: str) -> ProviderPayment | None:
    """Cancel the attempt's payment. If the provider refuses because money already moved,
    the refreshed payment says so (and the attempt is captured, not cancelled)."""
    current = pick_current(await provider.find(attempt_id))
    if current is None or not current.live:
        return current
    try:
        return await provider.cancel(current.provider_id, key=idempotency_key(attempt_id, "cancel"))
    except ProviderRefusedError:
        return await provider.retrieve(current.provider_id)


async def capture(
    provider: PaymentProvider, attempt_id: str, amount: int | None = None
) -> ProviderPayment | None:
    """Capture a held payment (all, or ``amount`` of it)."""
    current = pick_current(await provider.find(attempt_id))
    if current is None or current.status != "authorized":
        return current
    return await provider.capture(
        current.provider_id, amount, key=idempotency_key(attempt_id, "capture")
    )


def refund_key(attempt_id: str, refund_id: str) -> str:
    """The idempotency key of one refund: ``fynlo:<attempt>:refund-<refund_id>``."""
    return idempotency_key(attempt_id, f"refund-{refund_id}")


async def refund(
    provider: PaymentProvider,
    attempt_id: str,
    provider_id: str,
    refund_id: str,
    amount: int,
    *,
    retry: bool,
) -> ProviderRefund:
    """Refund ``amount`` of the attempt's payment as our refund ``refund_id``. On a retry
    (an earlier run's outcome is unknown: a timeout, a 5xx, a crash after the call) the
    payment's refunds are **looked up by our refund id** (the refund's metadata) before
    another is made: a provider that ignores idempotency keys (localstripe) would refund
    twice otherwise."""
    if retry:
        for found in await provider.find_refunds(provider_id):
            if found.ours == refund_id:
                return found
    return await provider.refund(
        provider_id, amount, key=refund_key(attempt_id, refund_id), refund_id=refund_id
    )


def refund_outcome(status: str) -> str:
    """What a provider's refund status means for our record (25.7): ``succeeded`` (the
    money is back with the customer: record the order's ``payment_refund``), ``refused``
    (Stripe's ``failed`` or ``canceled``: the amount is refundable again) or ``pending``
    (``pending``, ``requires_action`` and any status we do not know: it may still fail, so
    nothing is recorded on the order and the amount stays held)."""
    if status == "succeeded":
        return "succeeded"
    if status in ("failed", "canceled"):
        return "refused"
    return "pending"


async def refund_status(
    provider: PaymentProvider, provider_id: str, refund_id: str
) -> ProviderRefund | None:
    """Our refund ``refund_id`` of the payment as the provider holds it now (looked up by
    the refund id in its metadata), or None if the provider has none."""
    for found in await provider.find_refunds(provider_id):
        if found.ours == refund_id:
            return found
    return None


def attempt_state(order: Mapping[str, Any] | None, attempt_id: str) -> str | None:
    """The attempt's state in an order record (``payments`` map), or None."""
    if order is None:
        return None
    attempt = (order.get("payments") or {}).get(attempt_id)
    return None if attempt is None else str(attempt.get("state"))
