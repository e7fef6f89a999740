"""The payment provider port: what the payments plugin asks of Stripe, a bank, a wallet.

Pure: types, the port (a :class:`Protocol`), the status tables and the rules that do not
need the network. The adapters that do I/O live beside it (``stripe_cards``,
``open_banking``) and are imported only by the server and its effect handlers.

Every call that changes something at the provider takes ``key``, the idempotency key the
caller persisted **before** the call (the durable effect's key). After an ambiguous outcome
(:class:`ProviderAmbiguousError`: a timeout, a reset connection, a 5xx) the caller looks
the payment up by our attempt id (:meth:`PaymentProvider.find`) before anything else; it
never creates a second payment blindly.

A provider's own statuses are mapped onto one small table (:data:`STATUSES`):

==================  ===================================================================
status              meaning
==================  ===================================================================
``created``         the provider knows the payment; nothing is authorised yet
``requires_action`` the customer must do something (3-D Secure, approve in the bank app);
                    ``action`` says what the terminal shows
``processing``      the customer is done; the provider has not answered yet
``authorized``      money is held (manual capture); ``amount_capturable`` may be captured
``succeeded``       money was taken (captured, or executed by the bank)
``failed``          declined, expired or failed later; ``failure_code`` says why
``canceled``        cancelled before money moved
==================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Protocol, runtime_checkable

import msgspec

from fynlo_sync.errors import CallerError, PeerError, RejectedOpError, TransportError

__all__ = [
    "LIVE_STATUSES",
    "STATUSES",
    "STRIPE_ATTEMPT_KEY",
    "STRIPE_REFUND_KEY",
    "STRIPE_TENANT_KEY",
    "TERMINAL_STATUSES",
    "Action",
    "CreatePayment",
    "PaymentProvider",
    "ProviderAmbiguousError",
    "ProviderError",
    "ProviderPayment",
    "ProviderRefund",
    "ProviderRefusedError",
    "ProviderStatus",
    "RefundBoundError",
    "WebhookError",
    "WebhookEvent",
    "bank_payment",
    "check_refund",
    "idempotency_key",
    "is_newer",
    "pick_current",
    "stripe_payment",
]

ProviderStatus = Literal[
    "created", "requires_action", "processing", "authorized", "succeeded", "failed", "canceled"
]
STATUSES: Final[tuple[ProviderStatus, ...]] = (
    "created",
    "requires_action",
    "processing",
    "authorized",
    "succeeded",
    "failed",
    "canceled",
)
#: A payment in one of these may still take money: at most one per balance due.
LIVE_STATUSES: Final = frozenset({"created", "requires_action", "processing", "authorized"})
TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "canceled"})

#: Progress rank: a later report never moves a payment back (webhooks arrive in any order).
#: ``failed`` after ``succeeded`` is the one move past a terminal (a bank's late failure).
_RANK: Final[Mapping[str, int]] = {
    "created": 0,
    "requires_action": 1,
    "processing": 2,
    "authorized": 3,
    "succeeded": 4,
    "canceled": 5,
    "failed": 5,
}

#: Stripe's longest idempotency key.
_MAX_KEY = 255


class ProviderError(TransportError):
    """A provider call did not give a usable answer."""

    code = "provider-error"
    status = 502


class ProviderAmbiguousError(ProviderError):
    """The outcome is unknown (timeout, connection lost, 5xx, a key still in flight): the
    payment may or may not exist or have moved. Look it up before doing anything else."""

    code = "provider-ambiguous"
    status = 504


class ProviderRefusedError(ProviderError):
    """The provider refused the request definitively (a 4xx that is not a decline): the
    same request will be refused again."""

    code = "provider-refused"
    status = 502


class RefundBoundError(RejectedOpError):
    """A refund above what was captured and not yet refunded: our ledger refuses it before
    any provider is asked (localstripe would accept it)."""

    code = "refund-above-captured"


class WebhookError(CallerError):
    """A webhook we do not accept: no or bad signature, too old, malformed. Nothing is
    applied."""

    code = "webhook-refused"
    status = 400


class Action(msgspec.Struct, frozen=True, kw_only=True):
    """What the customer must do before the payment can go on, as the terminal shows it.

    ``type``: ``three_d_secure`` (card authentication: the Stripe SDK on the device takes
    ``client_secret``) or ``bank_consent`` (the customer opens ``url``, usually as the QR,
    and approves in their bank). ``expires_at_ms`` bounds a consent (15 minutes)."""

    type: Literal["three_d_secure", "bank_consent"]
    url: str | None = None
    client_secret: str | None = None
    expires_at_ms: int | None = None


class CreatePayment(msgspec.Struct, frozen=True, kw_only=True):
    """A request to start one payment attempt at a provider."""

    attempt_id: str
    amount: int
    currency: str
    #: Our tenant, kept in the provider's metadata so a webhook finds its way back.
    tenant: str = ""
    #: ``manual`` holds the money until a capture (a tip added later); ``automatic`` takes it.
    capture: Literal["automatic", "manual"] = "automatic"
    #: A provider payment method (a card token, ``pm_...``), if already known.
    payment_method: str | None = None
    #: ``apple_pay`` when the method came from a wallet.
    wallet: str | None = None
    #: Shown to the customer (the bank app, a statement).
    reference: str = ""

    def __post_init__(self) -> None:
        if type(self.amount) is not int or self.amount <= 0:
            raise CallerError(
                "a payment amount must be a positive integer of minor units",
                reason="invalid-amount",
            )
        if not self.attempt_id or len(self.attempt_id) > 128:
            raise CallerError("attempt_id must be 1 to 128 characters", reason="invalid-id")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise CallerError("currency must be an ISO 4217 code", reason="invalid-currency")


class ProviderPayment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment as its provider last described it, in our terms."""

    provider: str
    provider_id: str
    attempt_id: str
    status: ProviderStatus
    tenant: str = ""
    #: The provider's own status word, kept for support and logs.
    raw_status: str
    amount: int
    currency: str
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    failure_code: str | None = None
    failure_message: str | None = None
    action: Action | None = None
    wallet: str | None = None
    #: The bank has settled it into the merchant's account (open banking only).
    settled: bool = False
    #: What a device's SDK confirms the payment with (Stripe.js, a wallet), if any.
    client_secret: str | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


class ProviderRefund(msgspec.Struct, frozen=True, kw_only=True):
    """One refund as the provider holds it. ``refund_id`` is the provider's id; ``ours``
    is our refund id, kept in the provider's metadata (:data:`STRIPE_REFUND_KEY`), by which
    a refund whose answer was lost is found again."""

    provider: str
    refund_id: str
    provider_id: str
    amount: int
    status: str
    ours: str = ""
    #: Why the provider failed or cancelled the refund (Stripe's ``failure_reason``).
    failure_reason: str = ""


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A verified webhook. ``event_id`` dedupes deliveries; ``provider_id`` names the
    payment to re-fetch (the event's own snapshot may be older than one already seen)."""

    provider: str
    event_id: str
    type: str
    provider_id: str | None
    attempt_id: str | None
    created_s: int
    tenant: str | None = None


@runtime_checkable
class PaymentProvider(Protocol):
    """The port. Every method that changes something takes the caller's idempotency key."""

    name: str

    async def create(self, request: CreatePayment, *, key: str) -> ProviderPayment: ...

    async def confirm(self, provider_id: str, *, key: str) -> ProviderPayment: ...

    async def capture(
        self, provider_id: str, amount: int | None = None, *, key: str
    ) -> ProviderPayment: ...

    async def cancel(self, provider_id: str, *, key: str) -> ProviderPayment: ...

    async def refund(
        self, provider_id: str, amount: int, *, key: str, refund_id: str = ""
    ) -> ProviderRefund:
        """Refund ``amount`` of a captured payment; ``refund_id`` (ours) goes in the
        provider's metadata so :meth:`find_refunds` can find it after a lost answer."""
        ...

    async def find_refunds(self, provider_id: str) -> Sequence[ProviderRefund]:
        """Every refund the provider holds of the payment ``provider_id``."""
        ...

    async def retrieve(self, provider_id: str) -> ProviderPayment: ...

    async def find(self, attempt_id: str) -> Sequence[ProviderPayment]:
        """Every payment the provider holds for our attempt (normally at most one)."""
        ...

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, now_s: int
    ) -> WebhookEvent: ...


def idempotency_key(attempt_id: str, step: str) -> str:
    """The idempotency key of one step of one attempt: ``fynlo:<attempt>:<step>``.

    The same attempt and step always give the same key, so a retry after a crash is the
    same request to the provider."""
    key = f"fynlo:{attempt_id}:{step}"
    if len(key) > _MAX_KEY:
        raise CallerError(f"idempotency key longer than {_MAX_KEY}", reason="invalid-key")
    return key


def check_refund(captured: int, refunded: int, amount: int) -> None:
    """Refuse a refund of ``amount`` unless ``0 < amount <= captured - refunded``."""
    if type(amount) is not int or amount <= 0:
        raise RefundBoundError(
            "a refund must be a positive integer of minor units", reason="invalid-amount"
        )
    left = captured - refunded
    if amount > left:
        raise RefundBoundError(
            f"refund of {amount} is above the {left} captured and not yet refunded",
            reason="refund-above-captured",
            refundable=left,
        )


def is_newer(current: ProviderPayment | None, report: ProviderPayment) -> bool:
    """Does ``report`` move ``current`` forward? Reports arrive in any order and twice; a
    stale or repeated one changes nothing. Equal rank moves only money counters forward
    (a later refund, a partial capture's received amount)."""
    if current is None:
        return True
    a, b = _RANK[current.status], _RANK[report.status]
    if current.status == "succeeded" and report.status == "failed":
        return True  # late failure after executed
    if b != a:
        return b > a and current.status not in ("failed", "canceled")
    return (
        report.amount_refunded > current.amount_refunded
        or report.amount_received > current.amount_received
        or (report.settled and not current.settled)
        or (report.action != current.action and report.action is not None)
    )


def pick_current(payments: Sequence[ProviderPayment]) -> ProviderPayment | None:
    """Of several payments found for one attempt (there should be at most one), the one
    that took money, else a live one, else the latest; ties by provider id."""
    if not payments:
        return None

    def rank(p: ProviderPayment) -> tuple[int, str]:
        order = {"succeeded": 0, "authorized": 1, "processing": 2, "requires_action": 3}
        return (order.get(p.status, 4), p.provider_id)

    return sorted(payments, key=rank)[0]


# Stripe ------------------------------------------------------------------------------------

_STRIPE: Final[Mapping[str, ProviderStatus]] = {
    "requires_payment_method": "created",
    "requires_confirmation": "created",
    "requires_action": "requires_action",
    "processing": "processing",
    "requires_capture": "authorized",
    "succeeded": "succeeded",
    "canceled": "canceled",
}

#: Our metadata keys on a PaymentIntent: our attempt id and tenant.
STRIPE_ATTEMPT_KEY: Final = "fynlo_attempt_id"
STRIPE_TENANT_KEY: Final = "fynlo_tenant"
#: Our refund id on a Stripe Refund's metadata.
STRIPE_REFUND_KEY: Final = "fynlo_refund_id"


def stripe_payment(intent: Mapping[str, Any]) -> ProviderPayment:
    """A PaymentIntent (as a plain dict) in our terms. A failed attempt returns to
    ``requires_payment_method`` with ``last_payment_error``: that is ``failed`` for us."""
    raw = str(intent.get("status"))
    if raw not in _STRIPE:
        raise PeerError(f"unknown PaymentIntent status {raw!r}", reason="unknown-status")
    status = _STRIPE[raw]
    error = intent.get("last_payment_error") or None
    if raw == "requires_payment_method" and error:
        status = "failed"
    amount = _int(intent.get("amount"))
    charge = intent.get("latest_charge")
    received = _int(intent.get("amount_received"))
    refunded = 0
    if isinstance(charge, Mapping):
        refunded = _int(charge.get("amount_refunded"))
        if "amount_received" not in intent and status == "succeeded":
            received = _int(charge.get("amount"))
    capturable = _int(intent.get("amount_capturable"))
    if "amount_capturable" not in intent and status == "authorized":
        capturable = amount
    action = None
    next_action = intent.get("next_action")
    if status == "requires_action" and next_action is not None:
        action = Action(type="three_d_secure", client_secret=intent.get("client_secret"))
        redirect = next_action.get("redirect_to_url") if isinstance(next_action, Mapping) else None
        if isinstance(redirect, Mapping) and isinstance(redirect.get("url"), str):
            action = Action(
                type="three_d_secure",
                client_secret=intent.get("client_secret"),
                url=redirect["url"],
            )
    metadata = intent.get("metadata") or {}
    wallet = metadata.get("fynlo_wallet") if isinstance(metadata, Mapping) else None
    return ProviderPayment(
        provider="stripe",
        provider_id=str(intent.get("id")),
        attempt_id=str(metadata.get(STRIPE_ATTEMPT_KEY, "")),
        tenant=str(metadata.get(STRIPE_TENANT_KEY, "")),
        status=status,
        raw_status=raw,
        amount=amount,
        currency=str(intent.get("currency", "")).upper(),
        amount_capturable=capturable if status == "authorized" else 0,
        amount_received=received,
        amount_refunded=refunded,
        failure_code=_str_or_none(error.get("decline_code") or error.get("code"))
        if isinstance(error, Mapping) and status == "failed"
        else None,
        failure_message=_str_or_none(error.get("message"))
        if isinstance(error, Mapping) and status == "failed"
        else None,
        action=action,
        wallet=wallet if isinstance(wallet, str) else None,
        client_secret=_str_or_none(intent.get("client_secret")),
    )


# Open banking (TrueLayer Payments v3 shape) -----------------------------------------------

_BANK: Final[Mapping[str, ProviderStatus]] = {
    "authorization_required": "requires_action",
    "authorizing": "requires_action",
    "authorized": "processing",
    "executed": "succeeded",
    "settled": "succeeded",
    "failed": "failed",
}


def bank_payment(payment: Mapping[str, Any], *, consent_url: str | None) -> ProviderPayment:
    """A payment-initiation payment (TrueLayer v3 shape) in our terms. ``executed`` is the
    bank's acceptance and counts as money taken; a later ``failed`` is a late failure."""
    raw = str(payment.get("status"))
    if raw not in _BANK:
        raise PeerError(f"unknown bank payment status {raw!r}", reason="unknown-status")
    status = _BANK[raw]
    if raw == "failed" and payment.get("failure_reason") == "canceled":
        status = "canceled"
    amount = _int(payment.get("amount_in_minor"))
    metadata = payment.get("metadata") or {}
    action = None
    if status == "requires_action":
        action = Action(
            type="bank_consent",
            url=consent_url,
            expires_at_ms=_opt_int(payment.get("expires_at_ms")),
        )
    return ProviderPayment(
        provider="bank",
        provider_id=str(payment.get("id")),
        attempt_id=str(metadata.get("attempt_id", "")) if isinstance(metadata, Mapping) else "",
        tenant=str(metadata.get("tenant", "")) if isinstance(metadata, Mapping) else "",
        status=status,
        raw_status=raw,
        amount=amount,
        currency=str(payment.get("currency", "")).upper(),
        amount_received=amount if status == "succeeded" else 0,
        amount_refunded=_int(payment.get("amount_refunded_in_minor")),
        failure_code=_str_or_none(payment.get("failure_reason")) if status == "failed" else None,
        failure_message=f"failed in {payment.get('failure_stage')}" if status == "failed" else None,
        action=action,
        settled=raw == "settled",
    )


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def _opt_int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
