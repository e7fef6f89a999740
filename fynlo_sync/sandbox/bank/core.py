"""The sandbox bank's behaviour, without HTTP: payments, their statuses, the clock, the
idempotency keys and the webhook events it owes.

The shape is TrueLayer's Payments API v3 (UK payment initiation):

``authorization_required -> authorizing -> authorized -> executed -> settled``, or
``failed`` with a ``failure_reason`` and the ``failure_stage`` it failed in.

* A payment still in ``authorization_required`` or ``authorizing`` expires
  :data:`EXPIRY_MS` (15 minutes) after it was created: ``failed``, reason ``expired``.
* It can be cancelled until it is ``authorized`` (``failed``, reason ``canceled``).
* The customer opens the consent page (``authorizing``) and approves (``authorized``, and
  ``executed`` ``execute_after_ms`` later) or declines (``failed``,
  ``authorization_failed``). ``executed`` becomes ``settled`` ``settle_after_ms`` later.
* A payment the bank executed can still fail later (:meth:`Bank.fail_late`).
* ``POST`` requests carry an ``Idempotency-Key``: the same key and body give the first
  answer again; the same key with another body is refused.

Time is the bank's own clock: the wall clock plus an offset that :meth:`Bank.advance`
moves forward (a test jumps 15 minutes). Every change due by ``now`` happens in
:meth:`Bank.tick`, in time order, and queues a webhook event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "EXPIRY_MS",
    "Bank",
    "BankError",
    "Payment",
    "WebhookEvent",
]

EXPIRY_MS: Final = 15 * 60 * 1000
#: Statuses in which a payment is waiting for the customer (and so can expire).
WAITING: Final = frozenset({"authorization_required", "authorizing"})


class BankError(Exception):
    """A request the bank refuses: ``status`` is the HTTP status, ``code`` the problem."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass
class Payment:
    id: str
    amount_in_minor: int
    currency: str
    reference: str
    metadata: dict[str, str]
    created_at_ms: int
    status: str = "authorization_required"
    authorized_at_ms: int | None = None
    executed_at_ms: int | None = None
    settled_at_ms: int | None = None
    failed_at_ms: int | None = None
    failure_reason: str | None = None
    failure_stage: str | None = None
    #: The secret in the consent link (TrueLayer's ``resource_token``).
    resource_token: str = ""

    @property
    def expires_at_ms(self) -> int:
        return self.created_at_ms + EXPIRY_MS

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "amount_in_minor": self.amount_in_minor,
            "currency": self.currency,
            "reference": self.reference,
            "metadata": dict(self.metadata),
            "status": self.status,
            "created_at_ms": self.created_at_ms,
        }
        if self.status in WAITING:
            out["expires_at_ms"] = self.expires_at_ms
        for name in ("authorized_at_ms", "executed_at_ms", "settled_at_ms", "failed_at_ms"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.status == "failed":
            out["failure_reason"] = self.failure_reason
            out["failure_stage"] = self.failure_stage
        return out


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: str
    payment: dict[str, Any]
    at_ms: int

    def body(self) -> bytes:
        doc = {
            "event_id": self.event_id,
            "type": self.type,
            "event_version": 1,
            "payment_id": self.payment["id"],
            "metadata": self.payment["metadata"],
            "status": self.payment["status"],
            "at_ms": self.at_ms,
        }
        if self.payment.get("failure_reason"):
            doc["failure_reason"] = self.payment["failure_reason"]
            doc["failure_stage"] = self.payment["failure_stage"]
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Bank:
    """All of the bank's state. Thread-safe: every public method takes the lock."""

    wall_ms: Callable[[], int]
    execute_after_ms: int = 0
    settle_after_ms: int = 2000
    rng: secrets.SystemRandom | Any = field(default_factory=secrets.SystemRandom)
    offset_ms: int = 0
    payments: dict[str, Payment] = field(default_factory=dict)
    #: Idempotency key -> (hash of the request, status, answer).
    keys: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    events: list[WebhookEvent] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def now_ms(self) -> int:
        return self.wall_ms() + self.offset_ms

    # The API ---------------------------------------------------------------------------

    def create(self, key: str | None, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v3/payments``."""
        with self._lock:
            return self._idempotent(key, "create", body, lambda: self._create(body))

    def _create(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        amount = body.get("amount_in_minor")
        if type(amount) is not int or amount <= 0:
            raise BankError(400, "invalid-amount", "amount_in_minor must be a positive integer")
        currency = body.get("currency")
        if currency not in ("GBP", "EUR"):
            raise BankError(400, "invalid-currency", "currency must be GBP or EUR")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise BankError(400, "invalid-metadata", "metadata must map strings to strings")
        reference = body.get("reference", "")
        if not isinstance(reference, str) or len(reference) > 18:
            raise BankError(400, "invalid-reference", "reference: at most 18 characters")
        self.tick()
        pid = "pay_" + "".join(self.rng.choice("0123456789abcdef") for _ in range(20))
        payment = Payment(
            id=pid,
            amount_in_minor=amount,
            currency=currency,
            reference=reference,
            metadata=dict(metadata),
            created_at_ms=self.now_ms(),
        )
        self.payments[pid] = payment
        payment.resource_token = "".join(self.rng.choice("0123456789abcdef") for _ in range(32))
        return 201, {"id": pid, "status": payment.status, "resource_token": payment.resource_token}

    def get(self, payment_id: str) -> dict[str, Any]:
        """``GET /v3/payments/{id}``."""
        with self._lock:
            self.tick()
            return self._payment(payment_id).view()

    def find(self, metadata_key: str, metadata_value: str) -> list[dict[str, Any]]:
        """Payments whose metadata has ``key = value`` (our look-up by attempt id)."""
        with self._lock:
            self.tick()
            return [
                p.view()
                for p in sorted(self.payments.values(), key=lambda p: p.id)
                if p.metadata.get(metadata_key) == metadata_value
            ]

    def cancel(self, key: str | None, payment_id: str) -> tuple[int, dict[str, Any]]:
        """``POST /v3/payments/{id}/actions/cancel``: only until ``authorized``."""
        with self._lock:
            return self._idempotent(
                key, "cancel:" + payment_id, {}, lambda: self._cancel(payment_id)
            )

    def _cancel(self, payment_id: str) -> tuple[int, dict[str, Any]]:
        self.tick()
        payment = self._payment(payment_id)
        if payment.status not in WAITING:
            raise BankError(
                409,
                "cannot-cancel",
                f"a payment in {payment.status} cannot be cancelled (only before authorized)",
            )
        self._fail(payment, "canceled")
        return 202, payment.view()

    # The customer ----------------------------------------------------------------------

    def token_ok(self, payment_id: str, token: str | None) -> bool:
        """Is ``token`` the payment's consent secret?"""
        with self._lock:
            payment = self.payments.get(payment_id)
            return (
                payment is not None
                and token is not None
                and hmac.compare_digest(token.encode(), payment.resource_token.encode())
            )

    def consent_token(self, payment_id: str) -> str:
        with self._lock:
            return self._payment(payment_id).resource_token

    def open_consent(self, payment_id: str) -> dict[str, Any]:
        """The customer opened the consent page: ``authorizing``."""
        with self._lock:
            self.tick()
            payment = self._payment(payment_id)
            if payment.status == "authorization_required":
                payment.status = "authorizing"
            return payment.view()

    def decide(self, payment_id: str, approve: bool) -> dict[str, Any]:
        """The customer approved or declined in their bank."""
        with self._lock:
            self.tick()
            payment = self._payment(payment_id)
            if payment.status not in WAITING:
                raise BankError(
                    409, "not-waiting", f"the payment is {payment.status}, not awaiting consent"
                )
            if not approve:
                self._fail(payment, "authorization_failed")
                return payment.view()
            now = self.now_ms()
            payment.status = "authorized"
            payment.authorized_at_ms = now
            self._emit("payment_authorized", payment)
            self.tick()
            return payment.view()

    # Admin (tests) ---------------------------------------------------------------------

    def advance(self, ms: int) -> int:
        """Move the clock forward ``ms`` and carry out what fell due. Returns the new now."""
        if type(ms) is not int or ms < 0:
            raise BankError(400, "invalid-advance", "advance_ms must be a non-negative integer")
        with self._lock:
            self.offset_ms += ms
            self.tick()
            return self.now_ms()

    def fail_late(self, payment_id: str, reason: str) -> dict[str, Any]:
        """The bank reverses an ``executed`` (or ``settled``) payment."""
        with self._lock:
            self.tick()
            payment = self._payment(payment_id)
            if payment.status not in ("executed", "settled"):
                raise BankError(409, "not-executed", f"the payment is {payment.status}")
            self._fail(payment, reason)
            return payment.view()

    def take_events(self) -> list[WebhookEvent]:
        """The webhook events queued since the last call."""
        with self._lock:
            self.tick()
            out, self.events = self.events, []
            return out

    # Inside ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Carry out every change due by now, in time order (ties by payment id)."""
        with self._lock:
            now = self.now_ms()
            while True:
                due = self._next_due(now)
                if due is None:
                    return
                at, payment, change = due
                if change == "expire":
                    self._fail(payment, "expired", at)
                elif change == "execute":
                    payment.status = "executed"
                    payment.executed_at_ms = at
                    self._emit("payment_executed", payment, at)
                else:
                    payment.status = "settled"
                    payment.settled_at_ms = at
                    self._emit("payment_settled", payment, at)

    def _next_due(self, now: int) -> tuple[int, Payment, str] | None:
        best: tuple[int, str, Payment, str] | None = None
        for payment in self.payments.values():
            if payment.status in WAITING:
                at, change = payment.expires_at_ms, "expire"
            elif payment.status == "authorized" and payment.authorized_at_ms is not None:
                at, change = payment.authorized_at_ms + self.execute_after_ms, "execute"
            elif payment.status == "executed" and payment.executed_at_ms is not None:
                at, change = payment.executed_at_ms + self.settle_after_ms, "settle"
            else:
                continue
            if at <= now and (best is None or (at, payment.id) < (best[0], best[1])):
                best = (at, payment.id, payment, change)
        return None if best is None else (best[0], best[2], best[3])

    def _fail(self, payment: Payment, reason: str, at: int | None = None) -> None:
        payment.failure_stage = payment.status
        payment.status = "failed"
        payment.failure_reason = reason
        payment.failed_at_ms = self.now_ms() if at is None else at
        self._emit("payment_failed", payment, payment.failed_at_ms)

    def _emit(self, kind: str, payment: Payment, at: int | None = None) -> None:
        event_id = "evt_" + "".join(self.rng.choice("0123456789abcdef") for _ in range(24))
        self.events.append(
            WebhookEvent(event_id, kind, payment.view(), self.now_ms() if at is None else at)
        )

    def _payment(self, payment_id: str) -> Payment:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise BankError(404, "not-found", f"no payment {payment_id!r}")
        return payment

    def _idempotent(
        self,
        key: str | None,
        scope: str,
        body: Mapping[str, Any],
        run: Callable[[], tuple[int, dict[str, Any]]],
    ) -> tuple[int, dict[str, Any]]:
        if not key or len(key) > 255:
            raise BankError(400, "idempotency-key-required", "send an Idempotency-Key header")
        digest = hashlib.sha256(
            (scope + "\n" + json.dumps(body, sort_keys=True, default=str)).encode()
        ).hexdigest()
        seen = self.keys.get(key)
        if seen is not None:
            if seen[0] != digest:
                raise BankError(
                    422,
                    "idempotency-key-reuse",
                    "this Idempotency-Key was used for another request",
                )
            return seen[1], seen[2]
        status, answer = run()
        self.keys[key] = (digest, status, answer)
        return status, answer
