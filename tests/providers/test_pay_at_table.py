"""The providers plugin on the real server: a terminal asks for a QR, the customer's page
pays by bank through the sandbox bank (or by Apple Pay through localstripe), signed webhooks
come back, and the terminal sees the session move. Everything over real sockets."""

from __future__ import annotations

import base64
import itertools
import re
import secrets
from typing import Any

import httpx
import stripe

from fynlo_sync.ops import Record
from tests.providers.conftest import (
    APPLE_ASSOCIATION,
    STRIPE_WEBHOOK_SECRET,
    PayWorld,
    wait_until,
)

QR = "/v1/plugins/providers/qr"


def order_with_lines(world: PayWorld) -> tuple[Any, str]:
    terminal = world.terminal()
    order_id = "o-" + secrets.token_hex(3)
    terminal.command("orders", order_id, "open", {"currency": "GBP", "table": "4"})
    terminal.command(
        "orders",
        order_id,
        "add_line",
        {"line_id": "l1", "item": "Fish pie", "qty": 2, "unit_price": 1450},
    )
    terminal.command(
        "orders",
        order_id,
        "add_line",
        {"line_id": "l2", "item": "Lemonade", "qty": 1, "unit_price": 350},
    )
    terminal.sync()
    return terminal, order_id


def session(terminal: Any, attempt_id: str) -> Record | None:
    terminal.sync()
    found: Record | None = terminal.get("payment_sessions", attempt_id)
    return found


def approve(consent_url: str, choice: str = "approve") -> str:
    page = httpx.get(consent_url)
    assert page.status_code == 200, page.text
    token = re.search(r"name='token' value='([0-9a-f]+)'", page.text)
    assert token is not None
    base = consent_url.split("/consent/", maxsplit=1)[0]
    pid = consent_url.split("/consent/", maxsplit=1)[1].split("?", 1)[0]
    done = httpx.post(f"{base}/consent/{pid}/{choice}", data={"token": token.group(1)})
    assert done.status_code == 200, done.text
    return done.text


def pay_body(qr: dict[str, Any], tip: int = 0) -> dict[str, Any]:
    sig = qr["pay_url"].rsplit("sig=", 1)[1]
    return {"tip": tip, "amount": qr["amount"], "currency": qr["currency"], "sig": sig}


def pay_path(qr: dict[str, Any]) -> str:
    return str(qr["pay_url"]).split("?", 1)[0]


def test_a_qr_per_attempt_bound_to_the_balance(pay_world: PayWorld) -> None:
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post(QR, {"order_id": order_id})
    assert qr["amount"] == 3250 and qr["currency"] == "GBP"
    assert qr["pay_url"].startswith(
        f"{pay_world.url}/v1/plugins/providers/pay/{pay_world.tenant}/{order_id}/{qr['attempt_id']}?"
    )
    assert base64.b64decode(qr["png_base64"]).startswith(b"\x89PNG")
    assert qr["svg"].startswith("<svg")
    again = terminal.transport.post(QR, {"order_id": order_id})
    assert again["attempt_id"] != qr["attempt_id"] and again["pay_url"] != qr["pay_url"]
    s = session(terminal, qr["attempt_id"])
    assert s is not None and s.fields["order_id"] == order_id and s.fields["amount"] == 3250

    page = httpx.get(qr["pay_url"])
    assert page.status_code == 200
    assert "Fish pie" in page.text and "GBP 32.50" in page.text
    policy = page.headers["content-security-policy"]
    nonce = policy.split("script-src 'nonce-", 1)[1].split("'", 1)[0]
    assert f"<script nonce='{nonce}'>" in page.text and "connect-src 'self'" in policy
    tampered = qr["pay_url"].replace("amount=3250", "amount=325")
    refused = httpx.get(tampered)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("bad-pay-link")
    # Without a device token the QR route is closed; with a bad order it is a 404 problem.
    assert httpx.post(pay_world.url + QR, json={"order_id": order_id}).status_code == 401


def test_pay_by_bank_reaches_the_terminal_through_signed_webhooks(pay_world: PayWorld) -> None:
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post(QR, {"order_id": order_id})
    pay_world.bank_admin("/_admin/faults", {"duplicate": True, "reverse": True})
    try:
        r = httpx.post(pay_path(qr) + "/bank", json=pay_body(qr, tip=325))
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["status"] == "requires_action"
        consent = answer["consent_url"]
        assert consent and "/consent/" in consent
        # A second press (or a reload) makes no second bank payment.
        again = httpx.post(pay_path(qr) + "/bank", json=pay_body(qr, tip=325)).json()
        assert again["consent_url"] == consent
        waiting = session(terminal, qr["attempt_id"])
        assert waiting is not None
        assert waiting.fields["status"] == "requires_action"
        assert waiting.fields["action"]["type"] == "bank_consent"
        assert waiting.fields["tip"] == 325
        assert "Payment executed" in approve(consent)
        paid = wait_until(
            lambda: (
                (s := session(terminal, qr["attempt_id"])) is not None
                and s.fields.get("settled")
                and s
            ),
            what="the settled payment reaching the terminal",
        )
    finally:
        pay_world.bank_admin("/_admin/faults", {"duplicate": False, "reverse": False})
    assert paid.fields["status"] == "succeeded" and paid.fields["received"] == 3250 + 325
    # Duplicated and reversed deliveries authored nothing twice: each version of the
    # session in the feed differs from the one before.
    page = terminal.transport.pull(0, 1000)
    versions = [
        c.record.fields
        for c in page.changes
        if c.record.key == ("payment_sessions", qr["attempt_id"])
    ]
    assert len(versions) >= 3
    assert all(a != b for a, b in itertools.pairwise(versions))
    status = httpx.get(
        pay_path(qr) + "/status",
        params=dict(amount=qr["amount"], currency="GBP", sig=pay_body(qr)["sig"]),
    )
    assert status.json()["label"] == "Paid. Thank you!"


def test_expiry_at_15_minutes_leaves_the_balance_for_a_card_attempt(pay_world: PayWorld) -> None:
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post(QR, {"order_id": order_id})
    r = httpx.post(pay_path(qr) + "/bank", json=pay_body(qr))
    assert r.status_code == 200, r.text
    pay_world.bank_admin("/_admin/clock", {"advance_ms": 15 * 60 * 1000})
    expired = wait_until(
        lambda: (
            (s := session(terminal, qr["attempt_id"])) is not None
            and s.fields["status"] == "failed"
            and s
        ),
        what="expiry",
    )
    assert expired.fields["failure_code"] == "expired"
    # The page says so; the order's balance is offered again (a new attempt, by card).
    card = terminal.transport.post(QR, {"order_id": order_id, "method": "card"})
    assert card["amount"] == qr["amount"] and card["attempt_id"] != qr["attempt_id"]


def test_webhooks_refuse_forged_and_stale_signatures(pay_world: PayWorld) -> None:
    hook = pay_world.url + "/v1/plugins/providers/webhooks/stripe"
    body = (
        '{"id": "evt_x", "object": "event", "type": "payment_intent.succeeded", '
        '"created": 1, "data": {"object": {"id": "pi_x", "object": "payment_intent"}}}'
    )
    now = int(__import__("time").time())
    good = stripe.WebhookSignature.generate_signature_header(body, STRIPE_WEBHOOK_SECRET, now)
    forged = httpx.post(
        hook, content=body.replace("pi_x", "pi_y"), headers={"Stripe-Signature": good}
    )
    assert forged.status_code == 400 and forged.json()["reason"] == "bad-signature"
    old = stripe.WebhookSignature.generate_signature_header(body, STRIPE_WEBHOOK_SECRET, now - 600)
    stale = httpx.post(hook, content=body, headers={"Stripe-Signature": old})
    assert stale.status_code == 400 and stale.json()["reason"] == "stale-signature"
    unsigned = httpx.post(hook, content=body)
    assert unsigned.status_code == 400 and unsigned.json()["reason"] == "missing-signature"
    unknown = httpx.post(pay_world.url + "/v1/plugins/providers/webhooks/paypal", content=body)
    assert unknown.status_code == 404


def test_apple_pay_through_stripe_records_the_wallet(pay_world: PayWorld) -> None:
    association = httpx.get(
        pay_world.url + "/.well-known/apple-developer-merchantid-domain-association"
    )
    assert association.status_code == 200 and association.text == APPLE_ASSOCIATION
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post(QR, {"order_id": order_id, "method": "apple_pay"})
    r = httpx.post(pay_path(qr) + "/apple-pay", json=pay_body(qr, tip=100))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["publishable_key"] == "pk_test_fynlo"
    assert answer["client_secret"]
    pi = answer["client_secret"].split("_secret_", 1)[0]
    # Stripe.js on the phone confirms with the wallet's card (localstripe: a test card).
    auth = {"Authorization": "Bearer sk_test_fynlo"}
    ls = pay_world.stripe_url
    assert (
        httpx.post(
            f"{ls}/v1/payment_intents/{pi}", data={"payment_method": "pm_card_visa"}, headers=auth
        ).status_code
        == 200
    )
    assert httpx.post(f"{ls}/v1/payment_intents/{pi}/confirm", headers=auth).status_code == 200
    paid = wait_until(
        lambda: (
            (s := session(terminal, qr["attempt_id"])) is not None
            and s.fields["status"] == "succeeded"
            and s
        ),
        what="the Apple Pay payment reaching the terminal",
    )
    assert paid.fields["wallet"] == "apple_pay" and paid.fields["received"] == 3350


def test_bad_pay_requests_get_typed_problems_and_start_nothing(pay_world: PayWorld) -> None:
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post(QR, {"order_id": order_id})
    url = pay_path(qr) + "/bank"
    cases = [
        ({**pay_body(qr), "tip": -1}, 400, "invalid-tip"),
        ({**pay_body(qr), "tip": qr["amount"] + 1}, 400, "invalid-tip"),
        ({**pay_body(qr), "sig": "0" * 32}, 403, "bad-pay-link"),
        ({**pay_body(qr), "amount": 1}, 403, "bad-pay-link"),
        ({**pay_body(qr), "extra": 1}, 422, "malformed"),
    ]
    for body, status, problem in cases:
        r = httpx.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith(problem), r.text
    s = session(terminal, qr["attempt_id"])
    assert s is not None and not s.fields.get("provider_id") and not s.fields.get("requested_ms")
    bad = terminal.transport.post
    for body in ({"order_id": "nope"}, {"order_id": order_id, "method": "cheque"}):
        try:
            bad(QR, body)
        except Exception as exc:
            assert getattr(exc, "status", None) in (400, 404), exc
        else:
            raise AssertionError(f"{body} was accepted")


def test_the_demo_pays_by_bank_and_card_and_reconciles(localstripe: Any) -> None:
    from fynlo_sync.sandbox.payments_demo import run_payments

    report = run_payments(orders=2, stripe_url=localstripe.url)
    assert report["reconciled"] is True
    assert (report["double_charges"], report["lost_captures"]) == (0, 0)
    assert sorted(report["by_method"]) == ["apple_pay", "open_banking"]
    assert all(
        r["provider_payments"] == 1 and r["session"] == "succeeded" for r in report["payments"]
    )
