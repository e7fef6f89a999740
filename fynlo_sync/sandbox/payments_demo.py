"""Card and bank payments for real, then reconciled: the payments part of ``fynlo demo``.

Starts localstripe and the sandbox bank as their own processes and the server (orders and
providers plugins) in-process, all on free loopback ports; a till opens orders; half are
paid by bank through the pay-at-table routes and the bank's consent page, half by card
(Apple Pay through Stripe: a wallet intent, confirmed as Stripe.js would). Each payment's
result comes back by signed webhook. Then every session is reconciled against its
provider's own record (status and amount), and each attempt must have exactly one provider
payment.

Needs the ``server`` and ``payments`` extras and localstripe (a separate GPL program, run,
never imported).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PaymentWorld", "payment_world", "run_payments"]


@dataclass
class PaymentWorld:
    url: str
    settings: Any
    registry: Any
    tenant: str
    stripe_url: str
    bank_url: str
    folder: Path
    _n: int = field(default=0)

    def till(self) -> Any:
        """A new enrolled terminal (SQLite file in the world's folder)."""
        from fynlo_sync.client import Terminal
        from fynlo_sync.store.sqlite import SqliteTerminalStore
        from fynlo_sync.transport.http import HttpTransport
        from server import admin

        self._n += 1
        code = admin.enroll_device(self.settings, self.tenant).enrollment_code
        link = HttpTransport.enroll(self.url, code)
        return Terminal(
            SqliteTerminalStore(self.folder / f"till-{self._n}.db", link.node_id),
            self.registry,
            link,
            wall=lambda: time.time_ns() // 1_000_000,
        )


@contextmanager
def payment_world(
    folder: Path,
    *,
    stripe_url: str | None = None,
    pay_link_secret: str = "pay-link-secret-for-the-sandbox-0123",
    stripe_webhook_secret: str = "whsec_fynlo_sandbox_0123456789",
    bank_webhook_secret: str = "sandbox-webhook-secret",
    apple_pay_association: str = "",
    payments: bool = False,
) -> Iterator[PaymentWorld]:
    """localstripe (unless ``stripe_url`` names a running one), the sandbox bank and a
    server wired to both, with one tenant. ``payments``: the payments plugin too (the
    provider's word then moves the order's attempts and the ledger)."""
    import httpx

    import conflict
    from fynlo_sync.domains.orders import OrdersPlugin
    from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin, ProvidersSettings
    from fynlo_sync.sandbox.processes import free_port, run_localstripe, run_sandbox_bank
    from server import admin
    from server.testing import embedded_settings, run_in_thread

    with contextlib.ExitStack() as stack:
        if stripe_url is None:
            stripe_url = stack.enter_context(run_localstripe(folder)).url
        bank = stack.enter_context(
            run_sandbox_bank(folder, webhook_secret=bank_webhook_secret, settle_after_ms=200)
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        plugin = ProvidersPlugin(
            settings=ProvidersSettings(
                pay_link_secret=pay_link_secret,
                public_url=url,
                stripe_secret_key="sk_test_fynlo",
                stripe_webhook_secret=stripe_webhook_secret,
                stripe_api_base=stripe_url,
                stripe_publishable_key="pk_test_fynlo",
                bank_url=bank.url,
                bank_api_key="sandbox-key",
                bank_webhook_secret=bank_webhook_secret,
                apple_pay_association=apple_pay_association,
            )
        )
        plugins: list[Any] = [OrdersPlugin(), plugin]
        if payments:
            from fynlo_sync.domains.payments.plugin import PaymentsPlugin

            plugins.insert(1, PaymentsPlugin())
        registry = conflict.registry(plugins)
        settings = embedded_settings(folder)
        served = stack.enter_context(run_in_thread(settings, registry=registry, port=port))
        hooks = f"{served}/v1/plugins/providers/webhooks"
        r = httpx.post(
            bank.url + "/_admin/webhooks",
            json={"url": hooks + "/bank"},
            headers={"Authorization": "Bearer sandbox-key"},
        )
        r.raise_for_status()
        r = httpx.post(
            f"{stripe_url}/_config/webhooks/fynlo-{port}",
            data={"url": hooks + "/stripe", "secret": stripe_webhook_secret},
            headers={"Authorization": "Bearer sk_test_fynlo"},
        )
        r.raise_for_status()
        tenant = admin.create_tenant(settings, "Demo Bistro payments")
        yield PaymentWorld(served, settings, registry, tenant, stripe_url, bank.url, folder)


def _pay_by_bank(world: PaymentWorld, qr: dict[str, Any], tip: int) -> None:
    import httpx

    sig = qr["pay_url"].rsplit("sig=", 1)[1]
    body = {"tip": tip, "amount": qr["amount"], "currency": qr["currency"], "sig": sig}
    answer = httpx.post(qr["pay_url"].split("?", 1)[0] + "/bank", json=body, timeout=30)
    answer.raise_for_status()
    consent = answer.json()["consent_url"]
    page = httpx.get(consent)
    token = re.search(r"name='token' value='([0-9a-f]+)'", page.text)
    if token is None:
        raise RuntimeError(f"the consent page has no token: {page.text[:200]}")
    pid = consent.split("/consent/", 1)[1].split("?", 1)[0]
    httpx.post(f"{world.bank_url}/consent/{pid}/approve", data={"token": token.group(1)})


def _pay_by_card(world: PaymentWorld, qr: dict[str, Any], tip: int) -> None:
    import httpx

    sig = qr["pay_url"].rsplit("sig=", 1)[1]
    body = {"tip": tip, "amount": qr["amount"], "currency": qr["currency"], "sig": sig}
    answer = httpx.post(qr["pay_url"].split("?", 1)[0] + "/apple-pay", json=body, timeout=30)
    answer.raise_for_status()
    pi = answer.json()["client_secret"].split("_secret_", 1)[0]
    auth = {"Authorization": "Bearer sk_test_fynlo"}
    # What Stripe.js does on the phone with the wallet's card (a test card here).
    httpx.post(
        f"{world.stripe_url}/v1/payment_intents/{pi}",
        data={"payment_method": "pm_card_visa"},
        headers=auth,
    ).raise_for_status()
    httpx.post(f"{world.stripe_url}/v1/payment_intents/{pi}/confirm", headers=auth)


def run_payments(
    folder: Path | None = None,
    *,
    orders: int = 6,
    timeout_s: float = 60.0,
    stripe_url: str | None = None,
) -> dict[str, Any]:
    """Pay ``orders`` orders (alternately bank and card), wait for the webhooks, reconcile.
    Returns the report (``reconciled`` is true when every session matches its provider)."""
    import asyncio

    from fynlo_sync.domains.payments.providers.open_banking import OpenBankingProvider
    from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider

    with (
        tempfile.TemporaryDirectory(prefix="fynlo-payments-") as scratch,
        payment_world(Path(folder or scratch), stripe_url=stripe_url) as world,
    ):
        till = world.till()
        paid: list[dict[str, Any]] = []
        for n in range(orders):
            order_id = f"pay-demo-{n + 1}"
            till.command("orders", order_id, "open", {"currency": "GBP", "table": str(n + 1)})
            till.command(
                "orders",
                order_id,
                "add_line",
                {"line_id": "l1", "item": "Set menu", "qty": 1 + n % 3, "unit_price": 1250},
            )
            till.sync()
            method = "open_banking" if n % 2 == 0 else "apple_pay"
            qr = till.transport.post(
                "/v1/plugins/providers/qr", {"order_id": order_id, "method": method}
            )
            tip = qr["amount"] // 10 if n % 3 else 0
            if method == "open_banking":
                _pay_by_bank(world, qr, tip)
            else:
                _pay_by_card(world, qr, tip)
            paid.append({**qr, "method": method, "tip": tip, "order_id": order_id})

        deadline = time.monotonic() + timeout_s
        sessions: dict[str, Any] = {}
        while time.monotonic() < deadline:
            till.sync()
            sessions = {
                p["attempt_id"]: till.get("payment_sessions", p["attempt_id"]) for p in paid
            }
            if all(
                s is not None and s.fields.get("status") == "succeeded" for s in sessions.values()
            ):
                break
            time.sleep(0.2)

        async def providers_view() -> dict[str, list[Any]]:
            bank = OpenBankingProvider(world.bank_url, api_key="sandbox-key")
            card = StripeProvider("sk_test_fynlo", api_base=world.stripe_url)
            try:
                out: dict[str, list[Any]] = {}
                for p in paid:
                    provider = bank if p["method"] == "open_banking" else card
                    out[p["attempt_id"]] = list(await provider.find(p["attempt_id"]))
                return out
            finally:
                await bank.aclose()
                await card.aclose()

        views = asyncio.run(providers_view())
        rows = []
        for p in paid:
            s = sessions.get(p["attempt_id"])
            found = views[p["attempt_id"]]
            taken = sum(
                v.amount_received - v.amount_refunded for v in found if v.status == "succeeded"
            )
            recorded = 0 if s is None else int(s.fields.get("received") or 0)
            rows.append(
                {
                    "order": p["order_id"],
                    "method": p["method"],
                    "due": p["amount"],
                    "tip": p["tip"],
                    "session": None if s is None else s.fields.get("status"),
                    "recorded": recorded,
                    "provider_payments": len(found),
                    "provider_took": taken,
                    "reconciled": len(found) == 1 and taken == recorded == p["amount"] + p["tip"],
                }
            )
        by_method: dict[str, dict[str, int]] = {}
        for row in rows:
            m = by_method.setdefault(row["method"], {"payments": 0, "taken": 0})
            m["payments"] += 1
            m["taken"] += row["provider_took"]
        return {
            "payments": rows,
            "by_method": by_method,
            "double_charges": sum(1 for r in rows if r["provider_payments"] > 1),
            "lost_captures": sum(1 for r in rows if r["provider_took"] > r["recorded"]),
            "reconciled": all(r["reconciled"] for r in rows),
        }
