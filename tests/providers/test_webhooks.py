"""Webhooks: the route records the event (``fynlo_provider_events``, the ``providers``
component, on SQLite and PostgreSQL) and answers; a durable effect keyed by the event id
re-fetches the payment. A replayed event does no second effect; events in any order
converge on the provider's current state."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from fynlo_sync.domains.payments.providers import (
    STRIPE_ATTEMPT_KEY,
    STRIPE_TENANT_KEY,
    WebhookEvent,
)
from fynlo_sync.store.sqlport import PgSql, SqliteSql, SqlPort
from server.payment_providers import PROVIDERS_COMPONENT, WebhookLog
from tests.providers.conftest import STRIPE_WEBHOOK_SECRET, PayWorld, wait_until
from tests.providers.test_pay_at_table import QR, order_with_lines, pay_body, pay_path, session


def _event(event_id: str) -> WebhookEvent:
    return WebhookEvent(
        provider="stripe",
        event_id=event_id,
        type="payment_intent.succeeded",
        provider_id="pi_1",
        attempt_id="pay-1",
        created_s=1,
        tenant="t1",
    )


async def _log_rules(db: SqlPort) -> list[Any]:
    log = WebhookLog(db)
    seen: list[Any] = [await log.migrate(), await log.migrate()]
    first = _event("evt_" + secrets.token_hex(4))
    seen.append(await log.note(first, 10))
    # Noted but never queued (the server died in between): a redelivery queues it.
    seen.append(await log.note(first, 11))
    await log.settle(first, "queued", 12)
    seen.append(await log.note(first, 13))  # a replay: nothing more
    seen.append(await log.outcome("stripe", first.event_id))
    seen.append(await log.note(_event("evt_" + secrets.token_hex(4)), 14))
    seen.append(await log.outcome("bank", first.event_id))  # ids are per provider
    return seen


def test_the_event_log_dedupes_by_event_id_on_sqlite(tmp_path: Path) -> None:
    async def run() -> list[Any]:
        db = SqliteSql(tmp_path / "accounts.db")
        try:
            return await _log_rules(db)
        finally:
            await db.close()

    assert asyncio.run(run()) == [[1], [], True, True, False, "queued", True, None]


@pytest.mark.postgres
def test_the_event_log_dedupes_by_event_id_on_postgres(postgres_url: str) -> None:
    import asyncpg

    async def run() -> list[Any]:
        pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2)
        try:
            out = await _log_rules(PgSql(pool))
            await pool.execute("DROP TABLE fynlo_provider_events")
            await pool.execute(
                "DELETE FROM fynlo_migrations WHERE component = $1", PROVIDERS_COMPONENT.name
            )
            return out
        finally:
            await pool.close()

    assert asyncio.run(run()) == [[1], [], True, True, False, "queued", True, None]


def _signed(event_id: str, intent: dict[str, Any], kind: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {"object": intent},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(
        body, STRIPE_WEBHOOK_SECRET, int(time.time())
    )
    return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


def test_a_replayed_event_does_no_second_effect_and_late_events_change_nothing(
    pay_world: PayWorld,
) -> None:
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post(QR, {"order_id": order_id, "method": "apple_pay"})
    answer = httpx.post(pay_path(qr) + "/apple-pay", json=pay_body(qr)).json()
    pi = answer["client_secret"].split("_secret_", 1)[0]
    auth = {"Authorization": "Bearer sk_test_fynlo"}
    ls = pay_world.stripe_url
    httpx.post(
        f"{ls}/v1/payment_intents/{pi}", data={"payment_method": "pm_card_visa"}, headers=auth
    ).raise_for_status()
    httpx.post(f"{ls}/v1/payment_intents/{pi}/confirm", headers=auth).raise_for_status()
    paid = wait_until(
        lambda: (
            (s := session(terminal, qr["attempt_id"])) is not None
            and s.fields["status"] == "succeeded"
            and s
        ),
        what="the payment reaching the terminal",
    )
    metadata = {STRIPE_ATTEMPT_KEY: qr["attempt_id"], STRIPE_TENANT_KEY: pay_world.tenant}
    # An old snapshot (the intent as it was created) delivered after the newest one, and
    # delivered twice: each is re-fetched, so neither moves the session back.
    old = {"id": pi, "object": "payment_intent", "status": "requires_payment_method"}
    new = {"id": pi, "object": "payment_intent", "status": "succeeded"}
    hook = pay_world.url + "/v1/plugins/providers/webhooks/stripe"
    new_id, old_id = "evt_new_" + secrets.token_hex(4), "evt_old_" + secrets.token_hex(4)
    outcomes = []
    for event_id, intent, kind in (
        (new_id, new, "payment_intent.succeeded"),
        (old_id, old, "payment_intent.created"),
        (old_id, old, "payment_intent.created"),
        (new_id, new, "payment_intent.succeeded"),
    ):
        body, headers = _signed(event_id, {**intent, "metadata": metadata}, kind)
        r = httpx.post(hook, content=body, headers=headers)
        assert r.status_code == 200, r.text
        outcomes.append(r.json()["outcome"])
    assert outcomes == ["queued", "queued", "duplicate", "duplicate"]

    def effects() -> dict[str, Any]:
        rows = pay_world.effects()
        return {
            e["key"]: e
            for e in rows
            if e["key"] in (f"webhook:stripe:{new_id}", f"webhook:stripe:{old_id}")
        }

    done = wait_until(
        lambda: (
            (found := effects())
            and len(found) == 2
            and all(e["state"] == "done" for e in found.values())
            and found
        ),
        what="both webhook effects done",
    )
    assert [e["attempts"] for e in done.values()] == [1, 1]
    assert all(e["payload"]["provider_id"] == pi for e in done.values())
    after = session(terminal, qr["attempt_id"])
    assert after is not None
    assert after.fields["status"] == "succeeded"
    assert after.fields["received"] == paid.fields["received"] == 3250
    # Every version of the session in the feed moves forward (no report went back).
    order = ["created", "requires_action", "processing", "authorized", "succeeded"]
    statuses = [
        c.record.fields.get("status")
        for c in terminal.transport.pull(0, 1000).changes
        if c.record.key == ("payment_sessions", qr["attempt_id"]) and c.record.fields.get("status")
    ]
    ranks = [order.index(s) for s in statuses]
    assert ranks == sorted(ranks) and statuses[-1] == "succeeded"


def test_an_event_for_no_payment_of_ours_is_recorded_and_ignored(pay_world: PayWorld) -> None:
    hook = pay_world.url + "/v1/plugins/providers/webhooks/stripe"
    intent = {
        "id": "pi_elsewhere",
        "object": "payment_intent",
        "metadata": {STRIPE_ATTEMPT_KEY: "pay-none", STRIPE_TENANT_KEY: pay_world.tenant},
    }
    body, headers = _signed("evt_" + secrets.token_hex(4), intent, "payment_intent.created")
    first = httpx.post(hook, content=body, headers=headers)
    assert (first.status_code, first.json()["outcome"]) == (200, "ignored")
    again = httpx.post(hook, content=body, headers=headers)
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
