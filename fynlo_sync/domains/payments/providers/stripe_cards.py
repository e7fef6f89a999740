"""The Stripe adapter: PaymentIntents through the ``stripe`` SDK's :class:`StripeClient`.

Needs the ``payments`` extra. Every POST carries the caller's idempotency key (the SDK
would add a random one of its own, which only protects its own retries, and it is told
not to retry: an ambiguous outcome goes back to the caller, which looks the intent up by
our attempt id). ``api_base`` points the client at another Stripe (localstripe in tests).

Intents are created unconfirmed, then confirmed: the intent id is known (and can be
recorded) before any money can move, and a decline leaves an intent to inspect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fynlo_sync.domains.payments.providers import (
    STRIPE_ATTEMPT_KEY,
    STRIPE_REFUND_KEY,
    STRIPE_TENANT_KEY,
    CreatePayment,
    ProviderAmbiguousError,
    ProviderPayment,
    ProviderRefund,
    ProviderRefusedError,
    WebhookError,
    WebhookEvent,
    check_refund,
    stripe_payment,
)
from fynlo_sync.errors import MissingDependencyError

try:
    import stripe
except ImportError as exc:  # pragma: no cover - the extra is part of dev
    raise MissingDependencyError("stripe", "payments") from exc

__all__ = ["StripeProvider"]

#: Stripe's signature tolerance, seconds.
TOLERANCE_S = 300


class StripeProvider:
    """Cards (and wallets) through Stripe PaymentIntents."""

    name = "stripe"

    def __init__(
        self,
        secret_key: str,
        *,
        webhook_secret: str = "",
        api_base: str | None = None,
        timeout_s: float = 20.0,
        http_client: Any = None,
        find_pages: int = 10,
    ) -> None:
        self._webhook_secret = webhook_secret
        self._find_pages = find_pages
        client = http_client or stripe.HTTPXClient(timeout=timeout_s)
        base = {"api": api_base} if api_base else None
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=client,
        )
        self._http = client

    async def aclose(self) -> None:
        await self._http.close_async()

    async def create(self, request: CreatePayment, *, key: str) -> ProviderPayment:
        metadata = {STRIPE_ATTEMPT_KEY: request.attempt_id}
        if request.tenant:
            metadata[STRIPE_TENANT_KEY] = request.tenant
        if request.wallet:
            metadata["fynlo_wallet"] = request.wallet
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "capture_method": request.capture,
            "metadata": metadata,
        }
        if request.payment_method:
            params["payment_method"] = request.payment_method
        intent = await self._call(
            self._client.v1.payment_intents.create_async, params=params, key=key
        )
        return stripe_payment(intent)

    async def confirm(self, provider_id: str, *, key: str) -> ProviderPayment:
        try:
            intent = await self._call(
                self._client.v1.payment_intents.confirm_async,
                provider_id,
                key=key,
                declines=True,
            )
        except _Declined:
            # The decline is on the intent (last_payment_error); read it back.
            return await self.retrieve(provider_id)
        return stripe_payment(intent)

    async def capture(
        self, provider_id: str, amount: int | None = None, *, key: str
    ) -> ProviderPayment:
        params = {} if amount is None else {"amount_to_capture": amount}
        intent = await self._call(
            self._client.v1.payment_intents.capture_async, provider_id, params=params, key=key
        )
        return stripe_payment(intent)

    async def cancel(self, provider_id: str, *, key: str) -> ProviderPayment:
        intent = await self._call(
            self._client.v1.payment_intents.cancel_async, provider_id, key=key
        )
        return stripe_payment(intent)

    async def refund(
        self, provider_id: str, amount: int, *, key: str, refund_id: str = ""
    ) -> ProviderRefund:
        """Refund ``amount`` of a captured intent, refused by us (before Stripe is asked)
        when it is above what Stripe says is captured and not yet refunded. ``refund_id``
        (ours) is put in the refund's metadata, with the intent's attempt id and tenant."""
        current = await self.retrieve(provider_id)
        check_refund(current.amount_received, current.amount_refunded, amount)
        params: dict[str, Any] = {"payment_intent": provider_id, "amount": amount}
        metadata = {STRIPE_REFUND_KEY: refund_id} if refund_id else {}
        # The intent's attempt and tenant too: a refund's own webhook events
        # (``refund.updated``) then name the payment of ours they are about.
        if current.attempt_id:
            metadata[STRIPE_ATTEMPT_KEY] = current.attempt_id
        if current.tenant:
            metadata[STRIPE_TENANT_KEY] = current.tenant
        if metadata:
            params["metadata"] = metadata
        refund = await self._call(self._client.v1.refunds.create_async, params=params, key=key)
        return self._refund(refund, provider_id)

    async def find_refunds(self, provider_id: str) -> Sequence[ProviderRefund]:
        """The intent's refunds (Stripe lists them by ``payment_intent``), each with our
        refund id from its metadata."""
        found: list[ProviderRefund] = []
        after: str | None = None
        for _ in range(self._find_pages):
            params: dict[str, Any] = {"payment_intent": provider_id, "limit": 100}
            if after is not None:
                params["starting_after"] = after
            page = await self._call(self._client.v1.refunds.list_async, params=params)
            data = page.get("data") or []
            found += [self._refund(r, provider_id) for r in data]
            if not page.get("has_more") or not data:
                break
            after = str(data[-1]["id"])
        return found

    def _refund(self, refund: Mapping[str, Any], provider_id: str) -> ProviderRefund:
        metadata = refund.get("metadata") or {}
        return ProviderRefund(
            provider=self.name,
            refund_id=str(refund["id"]),
            provider_id=provider_id,
            amount=int(refund["amount"]),
            # No status is no confirmation: only ``succeeded`` records the refund (25.7).
            status=str(refund.get("status") or "pending"),
            ours=str(metadata.get(STRIPE_REFUND_KEY) or ""),
            failure_reason=str(refund.get("failure_reason") or ""),
        )

    async def retrieve(self, provider_id: str) -> ProviderPayment:
        intent = await self._call(
            self._client.v1.payment_intents.retrieve_async,
            provider_id,
            params={"expand": ["latest_charge"]},
        )
        return stripe_payment(intent)

    async def find(self, attempt_id: str) -> Sequence[ProviderPayment]:
        """The intents whose metadata names ``attempt_id``, newest pages first (Stripe
        lists newest first; the search API is eventually consistent, so a just-created
        intent may not be found by it)."""
        found: list[ProviderPayment] = []
        after: str | None = None
        for _ in range(self._find_pages):
            params: dict[str, Any] = {"limit": 100}
            if after is not None:
                params["starting_after"] = after
            page = await self._call(self._client.v1.payment_intents.list_async, params=params)
            data = page.get("data") or []
            for intent in data:
                metadata = intent.get("metadata") or {}
                if metadata.get(STRIPE_ATTEMPT_KEY) == attempt_id:
                    found.append(stripe_payment(intent))
            if not page.get("has_more") or not data:
                break
            after = str(data[-1]["id"])
        return sorted(found, key=lambda p: p.provider_id)

    async def register_domain(self, domain: str) -> dict[str, Any]:
        """Register ``domain`` for Apple Pay (and other wallets) with Stripe's payment
        method domains API; the same domain is the same request (its idempotency key)."""
        result: dict[str, Any] = await self._call(
            self._client.v1.payment_method_domains.create_async,
            params={"domain_name": domain},
            key=f"fynlo:payment-method-domain:{domain}",
        )
        return result

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], *, now_s: int) -> WebhookEvent:
        """Verify ``Stripe-Signature`` over the raw ``body`` and read the event.

        ``now_s`` is checked against the signed timestamp (300 s either way) before the
        SDK's own wall-clock check (``tolerance=0`` turns it off), so an injected clock
        decides staleness."""
        header = _header(headers, "stripe-signature")
        if not header:
            raise WebhookError("no Stripe-Signature header", reason="missing-signature")
        if not self._webhook_secret:
            raise WebhookError("no webhook secret is configured", reason="not-configured")
        stamp = _signed_at(header)
        if stamp is None:
            raise WebhookError("Stripe-Signature has no timestamp", reason="bad-signature")
        if abs(now_s - stamp) > TOLERANCE_S:
            raise WebhookError(
                f"the signature is {now_s - stamp} s old; at most {TOLERANCE_S} s",
                reason="stale-signature",
            )
        try:
            event = stripe.Webhook.construct_event(body, header, self._webhook_secret, tolerance=0)
        except stripe.SignatureVerificationError:
            raise WebhookError(
                "the Stripe-Signature does not match the body", reason="bad-signature"
            ) from None
        except ValueError:
            raise WebhookError("the body is not a JSON event", reason="malformed") from None
        data = event.to_dict()
        obj = (data.get("data") or {}).get("object") or {}
        provider_id = obj.get("id") if obj.get("object") == "payment_intent" else None
        if provider_id is None and isinstance(obj.get("payment_intent"), str):
            provider_id = obj["payment_intent"]
        metadata = obj.get("metadata") or {}
        event_id = data.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookError("the event has no id", reason="malformed")
        return WebhookEvent(
            provider=self.name,
            event_id=event_id,
            type=str(data.get("type", "")),
            provider_id=provider_id if isinstance(provider_id, str) else None,
            attempt_id=metadata.get(STRIPE_ATTEMPT_KEY),
            tenant=metadata.get(STRIPE_TENANT_KEY),
            created_s=int(data.get("created") or stamp),
        )

    async def _call(
        self,
        method: Any,
        *args: Any,
        key: str | None = None,
        declines: bool = False,
        **kw: Any,
    ) -> Any:
        options = {"idempotency_key": key} if key is not None else None
        try:
            result = await method(*args, options=options, **kw)
        except stripe.CardError as exc:
            if declines:
                raise _Declined(str(exc.user_message or exc)) from exc
            raise ProviderRefusedError(
                f"stripe refused: {exc.user_message or exc}", http_status=exc.http_status
            ) from exc
        except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
            raise ProviderAmbiguousError(
                f"stripe: {type(exc).__name__}: {exc.user_message or exc}",
                http_status=exc.http_status,
            ) from exc
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status >= 500 or status in (0, 409, 429):
                raise ProviderAmbiguousError(
                    f"stripe: {type(exc).__name__}: {exc.user_message or exc}",
                    http_status=status,
                ) from exc
            raise ProviderRefusedError(
                f"stripe refused: {exc.user_message or exc}",
                http_status=status,
                stripe_code=exc.code,
            ) from exc
        return result.to_dict()


class _Declined(Exception):
    """A card error (402): the decline is recorded on the intent."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _signed_at(header: str) -> int | None:
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        if k == "t" and v.isdigit():
            return int(v)
    return None
