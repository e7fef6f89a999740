"""The open-banking adapter: a UK payment-initiation API (TrueLayer Payments v3 shape),
such as the sandbox bank (``fynlo sandbox bank``).

A payment starts in ``authorization_required`` with a consent URL (the QR the terminal
shows); the customer approves in their bank; webhooks (``X-Bank-Signature``, HMAC-SHA256
over ``"<t>.<raw body>"``) report ``executed``, ``settled`` or ``failed``. There is no
capture step (a bank payment is taken whole), and no refund by API (bank refunds are
transfers a person makes): those calls are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    ProviderAmbiguousError,
    ProviderPayment,
    ProviderRefund,
    ProviderRefusedError,
    WebhookError,
    WebhookEvent,
    bank_payment,
)

__all__ = ["OpenBankingProvider", "verify_bank_signature"]

TOLERANCE_MS = 300_000
ATTEMPT_KEY = "attempt_id"


def verify_bank_signature(
    secret: str, header: str | None, body: bytes, *, now_ms: int, tolerance_ms: int = TOLERANCE_MS
) -> None:
    """Raise :class:`WebhookError` unless ``header`` signs ``body`` with ``secret`` within
    ``tolerance_ms`` of ``now_ms``."""
    if not header:
        raise WebhookError("no X-Bank-Signature header", reason="missing-signature")
    parts = dict(p.strip().partition("=")[::2] for p in header.split(","))
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        raise WebhookError("X-Bank-Signature is not t=<ms>,v1=<hex>", reason="bad-signature")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise WebhookError("the signature does not match the body", reason="bad-signature")
    if abs(now_ms - int(stamp)) > tolerance_ms:
        raise WebhookError(
            f"the signature is {(now_ms - int(stamp)) // 1000} s old; at most "
            f"{tolerance_ms // 1000} s",
            reason="stale-signature",
        )


class OpenBankingProvider:
    name = "bank"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        webhook_secret: str = "",
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._secret = webhook_secret
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(self, request: CreatePayment, *, key: str) -> ProviderPayment:
        if request.capture != "automatic":
            raise ProviderRefusedError(
                "a bank payment has no separate capture", reason="no-manual-capture"
            )
        body = {
            "amount_in_minor": request.amount,
            "currency": request.currency.upper(),
            "reference": request.reference[:18],
            "metadata": {ATTEMPT_KEY: request.attempt_id, "tenant": request.tenant},
            "payment_method": {"type": "bank_transfer"},
        }
        created = await self._send("POST", "/v3/payments", json=body, key=key)
        payment = await self._send("GET", f"/v3/payments/{created['id']}")
        return bank_payment(payment, consent_url=payment.get("consent_url"))

    async def confirm(self, provider_id: str, *, key: str) -> ProviderPayment:
        """Nothing to confirm: the customer authorises in their bank."""
        return await self.retrieve(provider_id)

    async def capture(
        self, provider_id: str, amount: int | None = None, *, key: str
    ) -> ProviderPayment:
        raise ProviderRefusedError("a bank payment has no capture step", reason="no-capture")

    async def cancel(self, provider_id: str, *, key: str) -> ProviderPayment:
        await self._send("POST", f"/v3/payments/{provider_id}/actions/cancel", json={}, key=key)
        return await self.retrieve(provider_id)

    async def refund(
        self, provider_id: str, amount: int, *, key: str, refund_id: str = ""
    ) -> ProviderRefund:
        raise ProviderRefusedError(
            "bank payments are refunded by a transfer, not by this API", reason="manual-refund"
        )

    async def find_refunds(self, provider_id: str) -> Sequence[ProviderRefund]:
        return []  # no refund by API: none to find

    async def retrieve(self, provider_id: str) -> ProviderPayment:
        payment = await self._send("GET", f"/v3/payments/{provider_id}")
        return bank_payment(payment, consent_url=payment.get("consent_url"))

    async def find(self, attempt_id: str) -> Sequence[ProviderPayment]:
        page = await self._send(
            "GET", "/v3/payments", params={f"metadata.{ATTEMPT_KEY}": attempt_id}
        )
        return [bank_payment(p, consent_url=p.get("consent_url")) for p in page.get("items", [])]

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], *, now_s: int) -> WebhookEvent:
        lower = {k.lower(): v for k, v in headers.items()}
        if not self._secret:
            raise WebhookError("no webhook secret is configured", reason="not-configured")
        verify_bank_signature(
            self._secret, lower.get("x-bank-signature"), body, now_ms=now_s * 1000
        )
        try:
            doc = json.loads(body)
        except ValueError:
            raise WebhookError("the body is not JSON", reason="malformed") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("event_id"), str):
            raise WebhookError("the event has no event_id", reason="malformed")
        metadata = doc.get("metadata") or {}
        payment_id = doc.get("payment_id")
        at_ms = doc.get("at_ms")
        return WebhookEvent(
            provider=self.name,
            event_id=doc["event_id"],
            type=str(doc.get("type", "")),
            provider_id=payment_id if isinstance(payment_id, str) else None,
            attempt_id=metadata.get(ATTEMPT_KEY) if isinstance(metadata, dict) else None,
            tenant=metadata.get("tenant") if isinstance(metadata, dict) else None,
            created_s=at_ms // 1000 if type(at_ms) is int else now_s,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key is not None else {}
        try:
            r = await self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderAmbiguousError(f"bank: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 500 or r.status_code == 429:
            raise ProviderAmbiguousError(
                f"bank answered {r.status_code}", http_status=r.status_code
            )
        try:
            doc = r.json()
        except ValueError:
            raise ProviderAmbiguousError(f"bank answered {r.status_code} without JSON") from None
        if r.status_code >= 400:
            raise ProviderRefusedError(
                f"bank refused: {doc.get('detail', r.status_code)}",
                http_status=r.status_code,
                bank_code=doc.get("title"),
            )
        if not isinstance(doc, dict):
            raise ProviderAmbiguousError("bank answered with a non-object")
        return doc
