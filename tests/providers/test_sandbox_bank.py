"""The sandbox bank: its behaviour on a manual clock, then the real process over HTTP
through the open-banking adapter (consent page, signed webhooks, moved clock)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    ProviderPayment,
    ProviderRefusedError,
    WebhookError,
    idempotency_key,
)
from fynlo_sync.domains.payments.providers.open_banking import OpenBankingProvider
from fynlo_sync.sandbox.bank.app import sign
from fynlo_sync.sandbox.bank.core import EXPIRY_MS, Bank, BankError
from fynlo_sync.sandbox.processes import ServiceProcess, run_sandbox_bank
from tests.providers.conftest import Receiver

MINUTE = 60_000
SECRET = "sandbox-webhook-secret"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def bank(**kw: Any) -> tuple[Bank, Clock]:
    clock = Clock()
    b = Bank(wall_ms=clock, rng=random.Random(7), **kw)
    return b, clock


def new(b: Bank, key: str = "k1", amount: int = 1500, **extra: Any) -> str:
    status, answer = b.create(key, {"amount_in_minor": amount, "currency": "GBP", **extra})
    assert status == 201
    pid: str = answer["id"]
    return pid


# Behaviour on a manual clock ---------------------------------------------------------------


def test_a_payment_waits_for_consent_and_expires_after_15_minutes() -> None:
    b, clock = bank()
    pid = new(b)
    assert b.get(pid)["status"] == "authorization_required"
    assert b.get(pid)["expires_at_ms"] == clock.ms + EXPIRY_MS
    clock.ms += 15 * MINUTE - 1
    assert b.get(pid)["status"] == "authorization_required"
    clock.ms += 1
    view = b.get(pid)
    assert (view["status"], view["failure_reason"], view["failure_stage"]) == (
        "failed",
        "expired",
        "authorization_required",
    )
    assert [e.type for e in b.take_events()] == ["payment_failed"]


def test_a_payment_being_authorised_expires_too_and_cannot_then_be_approved() -> None:
    b, _ = bank()
    pid = new(b)
    assert b.open_consent(pid)["status"] == "authorizing"
    b.advance(EXPIRY_MS)
    assert b.get(pid)["failure_stage"] == "authorizing"
    with pytest.raises(BankError) as late:
        b.decide(pid, approve=True)
    assert late.value.status == 409


def test_approval_executes_then_settles_on_the_clock() -> None:
    b, clock = bank(settle_after_ms=2000)
    pid = new(b)
    b.open_consent(pid)
    assert b.decide(pid, approve=True)["status"] == "executed"
    clock.ms += 1999
    assert b.get(pid)["status"] == "executed"
    clock.ms += 1
    assert b.get(pid)["status"] == "settled"
    assert [e.type for e in b.take_events()] == [
        "payment_authorized",
        "payment_executed",
        "payment_settled",
    ]
    # Settled is past expiry: moving the clock changes nothing more.
    b.advance(EXPIRY_MS)
    assert b.get(pid)["status"] == "settled" and b.take_events() == []


def test_decline_fails_with_a_reason() -> None:
    b, _ = bank()
    pid = new(b)
    view = b.decide(pid, approve=False)
    assert (view["status"], view["failure_reason"]) == ("failed", "authorization_failed")


def test_cancel_works_until_authorized_only() -> None:
    b, _ = bank(execute_after_ms=60_000)
    first = new(b, "k1")
    status, view = b.cancel("c1", first)
    assert (status, view["status"], view["failure_reason"]) == (202, "failed", "canceled")
    assert b.cancel("c1", first) == (status, view)  # the same key: the first answer
    second = new(b, "k2")
    assert b.decide(second, approve=True)["status"] == "authorized"
    with pytest.raises(BankError) as refused:
        b.cancel("c2", second)
    assert (refused.value.status, refused.value.code) == (409, "cannot-cancel")


def test_idempotency_keys_replay_or_refuse() -> None:
    b, _ = bank()
    one = new(b, "same")
    assert new(b, "same") == one
    assert len(b.payments) == 1
    with pytest.raises(BankError) as reuse:
        new(b, "same", amount=1600)
    assert (reuse.value.status, reuse.value.code) == (422, "idempotency-key-reuse")
    with pytest.raises(BankError) as none:
        b.create(None, {"amount_in_minor": 1, "currency": "GBP"})
    assert none.value.code == "idempotency-key-required"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount_in_minor": 0, "currency": "GBP"}, "invalid-amount"),
        ({"amount_in_minor": 1.5, "currency": "GBP"}, "invalid-amount"),
        ({"amount_in_minor": 100, "currency": "XXX"}, "invalid-currency"),
        ({"amount_in_minor": 100, "currency": "GBP", "metadata": {"a": 1}}, "invalid-metadata"),
        ({"amount_in_minor": 100, "currency": "GBP", "reference": "x" * 19}, "invalid-reference"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_made(body: dict[str, Any], code: str) -> None:
    b, _ = bank()
    with pytest.raises(BankError) as refused:
        b.create("k", body)
    assert (refused.value.status, refused.value.code) == (400, code)
    assert b.payments == {} and b.keys == {}


def test_a_late_failure_after_executed() -> None:
    b, _ = bank()
    pid = new(b)
    b.decide(pid, approve=True)
    view = b.fail_late(pid, "provider_rejected")
    assert (view["status"], view["failure_stage"]) == ("failed", "executed")
    with pytest.raises(BankError):
        b.fail_late(new(b, "k2"), "x")  # not executed


def test_the_clock_only_moves_forward() -> None:
    b, _ = bank()
    with pytest.raises(BankError):
        b.advance(-1)


# The process over HTTP ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank_hooks() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def bank_process(
    tmp_path_factory: pytest.TempPathFactory, bank_hooks: Receiver
) -> Iterator[ServiceProcess]:
    """One bank process for the module (each test uses its own attempt ids)."""
    folder = tmp_path_factory.mktemp("bank")
    with run_sandbox_bank(folder, webhook_url=bank_hooks.url, settle_after_ms=100) as service:
        yield service


def mine(attempt_id: str) -> Any:
    needle = f'"attempt_id":"{attempt_id}"'.encode()
    return lambda d: needle in d.body


def provider(service: ServiceProcess) -> OpenBankingProvider:
    return OpenBankingProvider(service.url, api_key="sandbox-key", webhook_secret=SECRET)


async def start(p: OpenBankingProvider, attempt_id: str, amount: int = 2150) -> ProviderPayment:
    req = CreatePayment(attempt_id=attempt_id, amount=amount, currency="GBP", reference="Table 4")
    return await p.create(req, key=idempotency_key(attempt_id, "create"))


async def consent(url: str, choice: str) -> str:
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
        assert page.status_code == 200
        assert f"id='{choice}'" in page.text
        token = re.search(r"name='token' value='([0-9a-f]+)'", page.text)
        assert token is not None
        action = re.search(rf"action='(/consent/[^']+/{choice})'", page.text)
        assert action is not None
        base = url.split("/consent/", maxsplit=1)[0]
        done = await http.post(base + action.group(1), data={"token": token.group(1)})
        assert done.status_code == 200, done.text
        return done.text


def test_approve_through_the_consent_page_with_signed_webhooks(
    bank_process: ServiceProcess, bank_hooks: Receiver
) -> None:
    async def body() -> ProviderPayment:
        p = provider(bank_process)
        try:
            started = await start(p, "att-ok")
            assert started.status == "requires_action"
            assert started.action is not None and started.action.type == "bank_consent"
            assert started.action.url and "/consent/" in started.action.url
            assert started.action.expires_at_ms is not None
            again = await start(p, "att-ok")  # the same key: the same payment
            assert again.provider_id == started.provider_id
            assert "Payment executed" in await consent(started.action.url, "approve")
            return await p.retrieve(started.provider_id)
        finally:
            await p.aclose()

    done = asyncio.run(body())
    assert (done.status, done.amount_received) == ("succeeded", 2150)
    got = [
        d
        for d in bank_hooks.wait_for(
            lambda ds: any(mine("att-ok")(d) and b"payment_settled" in d.body for d in ds)
        )
        if mine("att-ok")(d)
    ]
    p = provider(bank_process)
    now_s = int(time.time())
    events = [p.parse_webhook(d.body, d.headers, now_s=now_s) for d in got]
    assert [e.type for e in events][:3] == [
        "payment_authorized",
        "payment_executed",
        "payment_settled",
    ]
    assert {e.attempt_id for e in events} == {"att-ok"}
    assert len({e.event_id for e in events}) == len(events)
    forged = got[0].body.replace(b"att-ok", b"att-xx")
    with pytest.raises(WebhookError) as bad:
        p.parse_webhook(forged, got[0].headers, now_s=now_s)
    assert bad.value.extra["reason"] == "bad-signature"
    with pytest.raises(WebhookError) as stale:
        p.parse_webhook(got[0].body, got[0].headers, now_s=now_s + 400)
    assert stale.value.extra["reason"] == "stale-signature"
    settled = asyncio.run(_retrieve(bank_process, done.provider_id))
    assert settled.settled


async def _retrieve(service: ServiceProcess, pid: str) -> ProviderPayment:
    p = provider(service)
    try:
        return await p.retrieve(pid)
    finally:
        await p.aclose()


def admin(service: ServiceProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(service.url + path, json=body, headers={"Authorization": "Bearer sandbox-key"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_decline_expiry_cancel_and_late_failure_over_http(bank_process: ServiceProcess) -> None:
    async def body() -> None:
        p = provider(bank_process)
        try:
            declined = await start(p, "att-no")
            assert declined.action is not None and declined.action.url
            assert "Payment failed" in await consent(declined.action.url, "decline")
            after = await p.retrieve(declined.provider_id)
            assert (after.status, after.failure_code) == ("failed", "authorization_failed")

            waiting = await start(p, "att-late")
            admin(bank_process, "/_admin/clock", {"advance_ms": 15 * MINUTE})
            expired = await p.retrieve(waiting.provider_id)
            assert (expired.status, expired.failure_code) == ("failed", "expired")

            gone = await start(p, "att-cancel")
            cancelled = await p.cancel(gone.provider_id, key=idempotency_key("att-cancel", "c"))
            assert cancelled.status == "canceled" and not cancelled.live

            paid = await start(p, "att-rev")
            assert paid.action is not None and paid.action.url
            await consent(paid.action.url, "approve")
            with pytest.raises(ProviderRefusedError):
                await p.cancel(paid.provider_id, key=idempotency_key("att-rev", "c"))
            admin(
                bank_process,
                f"/_admin/payments/{paid.provider_id}/fail",
                {"failure_reason": "provider_rejected"},
            )
            reversed_ = await p.retrieve(paid.provider_id)
            assert (reversed_.status, reversed_.failure_code) == ("failed", "provider_rejected")
            assert reversed_.failure_message in ("failed in executed", "failed in settled")

            found = await p.find("att-late")
            assert [f.provider_id for f in found] == [waiting.provider_id]
            assert await p.find("nobody") == []
            with pytest.raises(ProviderRefusedError):
                await p.refund(paid.provider_id, 100, key="r")
        finally:
            await p.aclose()

    asyncio.run(body())


def test_the_api_refuses_bad_input_with_problems(bank_process: ServiceProcess) -> None:
    url = bank_process.url
    auth = {"Authorization": "Bearer sandbox-key"}
    r = httpx.post(url + "/v3/payments", json={"amount_in_minor": 1, "currency": "GBP"})
    assert r.status_code == 401
    r = httpx.post(
        url + "/v3/payments",
        json={"amount_in_minor": 1, "currency": "GBP"},
        headers=auth,
    )
    assert (r.status_code, r.json()["title"]) == (400, "idempotency-key-required")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = httpx.post(url + "/v3/payments", content=b"{", headers={**auth, "Idempotency-Key": "x"})
    assert (r.status_code, r.json()["title"]) == (400, "malformed")
    r = httpx.get(url + "/v3/payments/pay_nope", headers=auth)
    assert r.status_code == 404
    page = httpx.get(url + "/consent/pay_nope?token=" + secrets.token_hex(16))
    assert page.status_code == 404
    r = httpx.post(url + "/_admin/clock", json={"advance_ms": -5}, headers=auth)
    assert r.status_code == 400


def test_duplicate_and_reversed_deliveries_on_request(
    bank_process: ServiceProcess, bank_hooks: Receiver
) -> None:
    admin(bank_process, "/_admin/faults", {"duplicate": True, "reverse": True})

    async def body() -> None:
        p = provider(bank_process)
        try:
            started = await start(p, "att-dup")
            assert started.action is not None and started.action.url
            await consent(started.action.url, "approve")
        finally:
            await p.aclose()

    try:
        asyncio.run(body())
        got = bank_hooks.wait_for(lambda ds: len([d for d in ds if mine("att-dup")(d)]) >= 6)
    finally:
        admin(bank_process, "/_admin/faults", {"duplicate": False, "reverse": False})
    docs = [json.loads(d.body) for d in got if mine("att-dup")(d)]
    ids = [doc["event_id"] for doc in docs]
    assert len(set(ids)) == 3
    assert all(ids.count(i) == 2 for i in ids)  # each event twice
    order = list(dict.fromkeys(doc["type"] for doc in docs))
    # Authorised and executed happened together and were sent in reverse.
    assert order == ["payment_executed", "payment_authorized", "payment_settled"]


def test_signatures_match_what_the_bank_sends() -> None:
    body = b'{"event_id":"e"}'
    header = sign(SECRET, 1000, body)
    p = OpenBankingProvider("http://127.0.0.1:9", api_key="k", webhook_secret=SECRET)
    event = p.parse_webhook(body, {"X-Bank-Signature": header}, now_s=1)
    assert event.event_id == "e"
    with pytest.raises(WebhookError):
        p.parse_webhook(body, {"X-Bank-Signature": sign("other", 1000, body)}, now_s=1)
    with pytest.raises(WebhookError):
        p.parse_webhook(body, {"X-Bank-Signature": "v1=abc"}, now_s=1)
