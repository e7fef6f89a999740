"""The Stripe adapter against localstripe (a separate process on a free loopback port).

localstripe differs from Stripe in ways these tests name: it declines on charge only for
``pm_card_chargeCustomerFail`` (``pm_card_visa_chargeDeclined`` is declined only when
attached to a customer), it keeps no idempotency keys, it records the part of a partial
capture that is released as a refund, and it accepts refunds above the captured amount.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
import stripe

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    ProviderAmbiguousError,
    ProviderPayment,
    RefundBoundError,
    WebhookError,
    idempotency_key,
    is_newer,
)
from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider
from fynlo_sync.sandbox.processes import ServiceProcess
from tests.providers.conftest import Receiver

T = TypeVar("T")

THREE_DS_CARD = "4000002500003155"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def attempt() -> str:
    return "att_" + secrets.token_hex(6)


async def with_provider(
    ls: ServiceProcess, body: Callable[[StripeProvider], Awaitable[T]], **kw: Any
) -> T:
    provider = StripeProvider("sk_test_fynlo", api_base=ls.url, **kw)
    try:
        return await body(provider)
    finally:
        await provider.aclose()


async def pay(
    p: StripeProvider, attempt_id: str, amount: int, method: str, capture: str = "automatic"
) -> ProviderPayment:
    req = CreatePayment(
        attempt_id=attempt_id,
        amount=amount,
        currency="GBP",
        payment_method=method,
        capture=capture,  # type: ignore[arg-type]
    )
    created = await p.create(req, key=idempotency_key(attempt_id, "create"))
    assert created.status == "created"
    assert created.attempt_id == attempt_id
    return await p.confirm(created.provider_id, key=idempotency_key(attempt_id, "confirm"))


def test_a_card_payment_succeeds(localstripe: ServiceProcess) -> None:
    async def body(p: StripeProvider) -> None:
        a = attempt()
        done = await pay(p, a, 2000, "pm_card_visa")
        assert (done.status, done.raw_status, done.amount_received) == (
            "succeeded",
            "succeeded",
            2000,
        )
        assert done.currency == "GBP"
        found = await p.find(a)
        assert [f.provider_id for f in found] == [done.provider_id]

    run(with_provider(localstripe, body))


def test_a_decline_carries_the_providers_reason(localstripe: ServiceProcess) -> None:
    async def body(p: StripeProvider) -> None:
        done = await pay(p, attempt(), 2000, "pm_card_chargeCustomerFail")
        assert done.status == "failed"
        assert done.raw_status == "requires_payment_method"
        assert done.failure_code == "card_declined"
        assert done.failure_message == "Your card was declined."
        assert done.amount_received == 0
        assert not done.live

    run(with_provider(localstripe, body))


def test_three_d_secure_surfaces_what_the_terminal_must_show(
    localstripe: ServiceProcess,
) -> None:
    async def body(p: StripeProvider) -> None:
        # A card that asks for 3-D Secure (raw numbers: localstripe's test cards).
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{localstripe.url}/v1/payment_methods",
                data={
                    "type": "card",
                    "card[number]": THREE_DS_CARD,
                    "card[exp_month]": "12",
                    "card[exp_year]": "2030",
                    "card[cvc]": "123",
                },
                headers={"Authorization": "Bearer sk_test_fynlo"},
            )
            assert r.status_code == 200, r.text
        done = await pay(p, attempt(), 2500, r.json()["id"])
        assert done.status == "requires_action"
        assert done.action is not None
        assert done.action.type == "three_d_secure"
        assert done.action.client_secret and done.action.client_secret.startswith(done.provider_id)
        # The customer completes the challenge on their device (localstripe's test hook).
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{localstripe.url}/v1/payment_intents/{done.provider_id}/_authenticate",
                data={"client_secret": done.action.client_secret, "success": "true"},
                headers={"Authorization": "Bearer sk_test_fynlo"},
            )
            assert r.status_code == 200, r.text
        after = await p.retrieve(done.provider_id)
        assert (after.status, after.amount_received, after.action) == ("succeeded", 2500, None)

    run(with_provider(localstripe, body))


def test_manual_capture_takes_part_and_a_later_tip_within_the_hold(
    localstripe: ServiceProcess,
) -> None:
    """Hold 2400 (a 2000 bill with room for a tip), the tip of 300 comes later: capture
    2300, 100 released; 2300 is what can be refunded."""

    async def body(p: StripeProvider) -> None:
        a = attempt()
        held = await pay(p, a, 2400, "pm_card_visa", capture="manual")
        assert (held.status, held.amount_capturable, held.amount_received) == (
            "authorized",
            2400,
            0,
        )
        captured = await p.capture(held.provider_id, 2300, key=idempotency_key(a, "capture"))
        assert captured.status == "succeeded"
        # localstripe books the released 100 as a refund of a 2400 charge.
        assert captured.amount_received - captured.amount_refunded == 2300
        with pytest.raises(RefundBoundError):
            await p.refund(held.provider_id, 2301, key=idempotency_key(a, "refund-1"))
        refund = await p.refund(held.provider_id, 2300, key=idempotency_key(a, "refund-1"))
        assert refund.amount == 2300

    run(with_provider(localstripe, body))


def test_cancel_before_capture_releases_the_hold(localstripe: ServiceProcess) -> None:
    async def body(p: StripeProvider) -> None:
        a = attempt()
        held = await pay(p, a, 1800, "pm_card_visa", capture="manual")
        assert held.status == "authorized"
        gone = await p.cancel(held.provider_id, key=idempotency_key(a, "cancel"))
        assert (gone.status, gone.amount_capturable, gone.live) == ("canceled", 0, False)

    run(with_provider(localstripe, body))


def test_refunds_are_bounded_by_what_was_captured(localstripe: ServiceProcess) -> None:
    async def body(p: StripeProvider) -> None:
        a = attempt()
        done = await pay(p, a, 2000, "pm_card_visa")
        first = await p.refund(done.provider_id, 500, key=idempotency_key(a, "refund-1"))
        assert (first.amount, first.status) == (500, "succeeded")
        with pytest.raises(RefundBoundError) as refused:
            await p.refund(done.provider_id, 1501, key=idempotency_key(a, "refund-2"))
        assert refused.value.extra["refundable"] == 1500
        after = await p.retrieve(done.provider_id)
        assert after.amount_refunded == 500  # localstripe was not asked
        second = await p.refund(done.provider_id, 1500, key=idempotency_key(a, "refund-2"))
        assert second.amount == 1500
        with pytest.raises(RefundBoundError):
            await p.refund(done.provider_id, 1, key=idempotency_key(a, "refund-3"))

    run(with_provider(localstripe, body))


class LoseAnswers(stripe.HTTPXClient):
    """A real HTTP client whose next ``lose`` answers are lost after the server acted."""

    def __init__(self) -> None:
        super().__init__(timeout=20)
        self.lose = 0

    async def request_async(self, *args: Any, **kwargs: Any) -> Any:
        answer = await super().request_async(*args, **kwargs)
        if self.lose > 0:
            self.lose -= 1
            raise stripe.APIConnectionError("the answer was lost")  # type: ignore[no-untyped-call]
        return answer


def test_an_answer_lost_after_create_is_found_by_our_attempt_id(
    localstripe: ServiceProcess,
) -> None:
    """The intent exists but we never heard: the adapter says "ambiguous" and the caller
    finds it by our attempt id instead of creating another."""
    client = LoseAnswers()

    async def body(p: StripeProvider) -> None:
        a = attempt()
        req = CreatePayment(
            attempt_id=a, amount=1200, currency="GBP", payment_method="pm_card_visa"
        )
        client.lose = 1
        with pytest.raises(ProviderAmbiguousError):
            await p.create(req, key=idempotency_key(a, "create"))
        found = await p.find(a)
        assert len(found) == 1
        assert (found[0].status, found[0].amount) == ("created", 1200)
        client.lose = 1
        with pytest.raises(ProviderAmbiguousError):
            await p.confirm(found[0].provider_id, key=idempotency_key(a, "confirm"))
        again = await p.find(a)
        assert [(f.provider_id, f.status) for f in again] == [(found[0].provider_id, "succeeded")]

    run(with_provider(localstripe, body, http_client=client))


# Webhooks ----------------------------------------------------------------------------------


def register_webhook(ls: ServiceProcess, url: str, secret: str) -> None:
    r = httpx.post(
        f"{ls.url}/_config/webhooks/{secrets.token_hex(4)}",
        data={"url": url, "secret": secret},
        headers={"Authorization": "Bearer sk_test_fynlo"},
    )
    assert r.status_code == 200, r.text


def test_webhooks_are_verified_on_the_raw_body(
    localstripe: ServiceProcess, receiver: Receiver
) -> None:
    secret = "whsec_" + secrets.token_hex(16)
    register_webhook(localstripe, receiver.url, secret)

    async def body(p: StripeProvider) -> tuple[ProviderPayment, list[Any]]:
        done = await pay(p, attempt(), 900, "pm_card_visa")
        mine = receiver.wait_for(lambda ds: any(done.provider_id.encode() in d.body for d in ds))
        return done, [d for d in mine if done.provider_id.encode() in d.body]

    done, deliveries = run(with_provider(localstripe, body, webhook_secret=secret))
    p = StripeProvider("sk_test_fynlo", webhook_secret=secret, api_base=localstripe.url)
    delivery = deliveries[0]
    signed_at = int(delivery.headers["Stripe-Signature"].split(",")[0][2:])
    event = p.parse_webhook(delivery.body, delivery.headers, now_s=signed_at + 5)
    assert event.type == "payment_intent.succeeded"
    assert event.provider_id == done.provider_id
    assert event.attempt_id == done.attempt_id
    assert event.event_id.startswith("evt_")

    forged = delivery.body.replace(b'"amount": 900', b'"amount": 9')
    assert forged != delivery.body
    with pytest.raises(WebhookError) as bad:
        p.parse_webhook(forged, delivery.headers, now_s=signed_at)
    assert bad.value.extra["reason"] == "bad-signature"

    with pytest.raises(WebhookError) as stale:
        p.parse_webhook(delivery.body, delivery.headers, now_s=signed_at + 301)
    assert stale.value.extra["reason"] == "stale-signature"

    other = StripeProvider("sk_test_fynlo", webhook_secret="whsec_other", api_base=localstripe.url)
    with pytest.raises(WebhookError):
        other.parse_webhook(delivery.body, delivery.headers, now_s=signed_at)
    with pytest.raises(WebhookError) as missing_header:
        p.parse_webhook(delivery.body, {}, now_s=signed_at)
    assert missing_header.value.extra["reason"] == "missing-signature"


def test_a_self_signed_event_round_trips(localstripe: ServiceProcess) -> None:
    """Signing with the SDK's own helper and verifying with ours agree (and a body that is
    not JSON is refused as malformed, after its signature checked out)."""
    secret = "whsec_" + secrets.token_hex(8)
    p = StripeProvider("sk_test_fynlo", webhook_secret=secret, api_base=localstripe.url)
    now = int(time.time())
    payload = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": "payment_intent.canceled",
            "created": now,
            "data": {"object": {"id": "pi_1", "object": "payment_intent", "metadata": {}}},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=now)
    event = p.parse_webhook(payload.encode(), {"Stripe-Signature": header}, now_s=now)
    assert (event.event_id, event.provider_id, event.attempt_id) == ("evt_1", "pi_1", None)
    junk = "not json"
    header = stripe.WebhookSignature.generate_signature_header(junk, secret, timestamp=now)
    with pytest.raises(WebhookError) as bad:
        p.parse_webhook(junk.encode(), {"stripe-signature": header}, now_s=now)
    assert bad.value.extra["reason"] == "malformed"


def test_reports_in_any_order_never_move_a_payment_back() -> None:
    from tests.providers.test_flow import pay as report

    created, action = report("created"), report("requires_action")
    held, paid = report("authorized", amount_capturable=2000), report("succeeded")
    assert is_newer(None, created)
    assert is_newer(created, action) and is_newer(action, held) and is_newer(held, paid)
    assert not is_newer(paid, held)  # the older report arrives late
    assert not is_newer(paid, paid)  # a duplicate changes nothing
    assert is_newer(paid, report("succeeded", amount_refunded=100))
    assert not is_newer(report("succeeded", amount_refunded=100), paid)
    assert is_newer(paid, report("failed"))  # a late failure after executed
    assert not is_newer(report("canceled"), paid)
    assert not is_newer(report("failed"), created)
