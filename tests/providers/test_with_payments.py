"""With the payments plugin loaded: the provider's word moves the order's attempt. One
live attempt per order; at the bank's 15-minute expiry the balance is offered again, the
next attempt is paid with a tip, and the order's money adds up. Real server, real bank."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments.plugin import PaymentsPlugin
from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin, ProvidersSettings
from fynlo_sync.sandbox.processes import free_port, run_sandbox_bank
from fynlo_sync.store.sqlite import SqliteTerminalStore
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.testing import embedded_settings, run_in_thread
from tests.providers.conftest import BANK_SECRET, PAY_LINK_SECRET, wait_until

AUTH = {"Authorization": "Bearer sandbox-key"}


@pytest.fixture
def till_and_bank(tmp_path: Path) -> Iterator[tuple[Terminal, HttpTransport, str]]:
    with run_sandbox_bank(tmp_path, settle_after_ms=200) as bank:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        providers = ProvidersPlugin(
            settings=ProvidersSettings(
                pay_link_secret=PAY_LINK_SECRET,
                public_url=url,
                bank_url=bank.url,
                bank_api_key="sandbox-key",
                bank_webhook_secret=BANK_SECRET,
            )
        )
        registry = conflict.registry([OrdersPlugin(), PaymentsPlugin(), providers])
        settings = embedded_settings(tmp_path)
        with run_in_thread(settings, registry=registry, port=port):
            hook = {"url": url + "/v1/plugins/providers/webhooks/bank"}
            httpx.post(bank.url + "/_admin/webhooks", json=hook, headers=AUTH).raise_for_status()
            tenant = admin.create_tenant(settings, "cafe")
            link = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
            till = Terminal(
                SqliteTerminalStore(tmp_path / "till.db", link.node_id),
                registry,
                link,
                wall=lambda: time.time_ns() // 1_000_000,
            )
            yield till, link, bank.url


def press_bank(qr: dict[str, Any], tip: int = 0) -> httpx.Response:
    sig = qr["pay_url"].rsplit("sig=", 1)[1]
    body = {"tip": tip, "amount": qr["amount"], "currency": "GBP", "sig": sig}
    return httpx.post(qr["pay_url"].split("?", 1)[0] + "/bank", json=body, timeout=30)


def attempt(till: Terminal, attempt_id: str, state: str) -> dict[str, Any]:
    def seen() -> Any:
        till.sync()
        order = till.get("orders", "o1")
        found = None if order is None else (order.fields.get("payments") or {}).get(attempt_id)
        return found if found is not None and found["state"] == state else None

    got: dict[str, Any] = wait_until(seen, what=f"attempt {attempt_id} {state}")
    return got


def test_expiry_falls_back_with_one_live_attempt_and_the_money_adds_up(
    till_and_bank: tuple[Terminal, HttpTransport, str],
) -> None:
    till, link, bank = till_and_bank
    till.command("orders", "o1", "open", {"currency": "GBP"})
    till.command(
        "orders", "o1", "add_line", {"line_id": "l1", "item": "Stew", "qty": 1, "unit_price": 2000}
    )
    till.sync()
    first = link.post("/v1/plugins/providers/qr", {"order_id": "o1"})
    assert press_bank(first).status_code == 200
    assert attempt(till, first["attempt_id"], "requires_action")["method"] == "open_banking"

    # A second attempt while the first is live is refused before any bank is asked.
    second = link.post("/v1/plugins/providers/qr", {"order_id": "o1", "method": "card"})
    refused = press_bank(second)
    assert refused.status_code == 422 and refused.json()["reason"] == "attempt-live"
    assert (
        httpx.get(
            bank + "/v3/payments",
            params={"metadata.attempt_id": second["attempt_id"]},
            headers=AUTH,
        ).json()["items"]
        == []
    )

    httpx.post(bank + "/_admin/clock", json={"advance_ms": 15 * 60 * 1000}, headers=AUTH)
    attempt(till, first["attempt_id"], "expired")
    order = till.get("orders", "o1")
    assert order is not None and order.fields["balance_due"] == 2000

    third = link.post("/v1/plugins/providers/qr", {"order_id": "o1"})
    assert third["amount"] == 2000  # the same balance due
    consent = press_bank(third, tip=200).json()["consent_url"]
    page = httpx.get(consent)
    token = re.search(r"name='token' value='([0-9a-f]+)'", page.text)
    assert token is not None
    pid = consent.split("/consent/", 1)[1].split("?", 1)[0]
    httpx.post(f"{bank}/consent/{pid}/approve", data={"token": token.group(1)})
    paid = attempt(till, third["attempt_id"], "captured")
    assert (paid["captured"], paid["tip"], paid["provider_ref"]) == (2200, 200, pid)
    order = till.get("orders", "o1")
    assert order is not None
    money = {k: order.fields[k] for k in ("paid", "tips", "collected", "balance_due")}
    assert money == {"paid": 2000, "tips": 200, "collected": 2200, "balance_due": 0}


def test_a_late_failure_after_executed_reverses_the_capture_and_the_balance_is_due_again(
    till_and_bank: tuple[Terminal, HttpTransport, str],
) -> None:
    till, link, bank = till_and_bank
    till.command("orders", "o1", "open", {"currency": "GBP"})
    till.command(
        "orders", "o1", "add_line", {"line_id": "l1", "item": "Stew", "qty": 1, "unit_price": 2000}
    )
    till.sync()
    qr = link.post("/v1/plugins/providers/qr", {"order_id": "o1"})
    consent = press_bank(qr).json()["consent_url"]
    page = httpx.get(consent)
    token = re.search(r"name='token' value='([0-9a-f]+)'", page.text)
    assert token is not None
    pid = consent.split("/consent/", 1)[1].split("?", 1)[0]
    httpx.post(f"{bank}/consent/{pid}/approve", data={"token": token.group(1)})
    paid = attempt(till, qr["attempt_id"], "captured")
    assert paid["captured"] == 2000
    # The bank's clock moves past settlement; then the bank takes the money back.
    httpx.post(bank + "/_admin/clock", json={"advance_ms": 60_000}, headers=AUTH)
    failed = httpx.post(
        f"{bank}/_admin/payments/{pid}/fail",
        json={"failure_reason": "provider_rejected"},
        headers=AUTH,
    )
    assert failed.status_code == 200, failed.text
    reversed_ = attempt(till, qr["attempt_id"], "failed")
    assert reversed_["failure_reason"] == "provider_rejected"
    assert reversed_["reversed"] is not None and reversed_["reversed"]["by"] == "server"
    order = till.get("orders", "o1")
    assert order is not None and order.fields["balance_due"] == 2000
    session = till.get("payment_sessions", qr["attempt_id"])
    assert session is not None
    assert (session.fields["status"], session.fields["finding"]) == ("failed", "late-failure")
    # The balance is offered again: a new attempt can start (the reversed one is not live).
    again = link.post("/v1/plugins/providers/qr", {"order_id": "o1", "method": "card"})
    assert again["amount"] == 2000
