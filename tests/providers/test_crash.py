"""For real: ``fynlo serve`` SIGKILLed between the bank call and its record, then started
again on the same database. The retry finds the bank payment by the attempt id instead of
making a second one, and the customer is charged once."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.sandbox.processes import ServiceProcess, free_port, run_sandbox_bank
from fynlo_sync.store.sqlite import SqliteTerminalStore
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.settings import Settings
from tests.providers.conftest import BANK_SECRET, PAY_LINK_SECRET, wait_until

PLUGINS = (
    "fynlo_sync.domains.orders:OrdersPlugin,"
    "fynlo_sync.domains.payments.providers.plugin:ProvidersPlugin"
)


class Served:
    def __init__(self, folder: Path, port: int, bank: ServiceProcess) -> None:
        self.folder = folder
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "FYNLO_DATABASE_URL": f"sqlite:///{folder / 'server.db'}",
            "FYNLO_SECRET_KEY": secrets.token_urlsafe(32),
            "FYNLO_PLUGINS": PLUGINS,
            "FYNLO_PROVIDERS_PAY_LINK_SECRET": PAY_LINK_SECRET,
            "FYNLO_PROVIDERS_PUBLIC_URL": self.url,
            "FYNLO_PROVIDERS_BANK_URL": bank.url,
            "FYNLO_PROVIDERS_BANK_API_KEY": "sandbox-key",
            "FYNLO_PROVIDERS_BANK_WEBHOOK_SECRET": BANK_SECRET,
            # The killed server's claim on the start effect runs out quickly, so the
            # restarted one performs it again (with attempt 2: look up first).
            "FYNLO_EFFECT_LEASE_MS": "4000",
            "FYNLO_EFFECT_TIMEOUT_MS": "3000",
            "FYNLO_EFFECT_POLL_MS": "100",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        return Settings.from_env(
            {
                k: v
                for k, v in self.env.items()
                if k.startswith("FYNLO_") and not k.startswith("FYNLO_PROVIDERS_")
            }
        )

    def start(self) -> None:
        log = self.folder / f"serve-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fynlo_sync.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"fynlo serve exited {self.proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"fynlo serve not ready in 60 s:\n{log.read_text()}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, ServiceProcess]]:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/v1/plugins/providers/webhooks/bank"
    with run_sandbox_bank(tmp_path, webhook_url=hook, settle_after_ms=100) as bank:
        s = Served(tmp_path, port, bank)
        s.start()
        try:
            yield s, bank
        finally:
            s.stop()


def bank_payments(bank: ServiceProcess, attempt_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        bank.url + "/v3/payments",
        params={"metadata.attempt_id": attempt_id},
        headers={"Authorization": "Bearer sandbox-key"},
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def faults(bank: ServiceProcess, **kw: Any) -> None:
    r = httpx.post(
        bank.url + "/_admin/faults", json=kw, headers={"Authorization": "Bearer sandbox-key"}
    )
    assert r.status_code == 200, r.text


def test_a_server_killed_between_the_bank_call_and_its_record_charges_once(
    served: tuple[Served, ServiceProcess],
) -> None:
    server, bank = served
    tenant = admin.create_tenant(server.settings, "cafe")
    link = HttpTransport.enroll(
        server.url, admin.enroll_device(server.settings, tenant).enrollment_code
    )
    import conflict
    from fynlo_sync.domains.orders import OrdersPlugin
    from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin

    registry = conflict.registry([OrdersPlugin(), ProvidersPlugin()])
    till = Terminal(
        SqliteTerminalStore(server.folder / "till.db", link.node_id),
        registry,
        link,
        wall=lambda: time.time_ns() // 1_000_000,
    )
    till.command("orders", "o1", "open", {"currency": "GBP"})
    till.command(
        "orders", "o1", "add_line", {"line_id": "l1", "item": "Roast", "qty": 1, "unit_price": 1800}
    )
    till.sync()
    qr = link.post("/v1/plugins/providers/qr", {"order_id": "o1"})
    sig = qr["pay_url"].rsplit("sig=", 1)[1]
    body = {"tip": 0, "amount": qr["amount"], "currency": "GBP", "sig": sig}
    pay = qr["pay_url"].split("?", 1)[0] + "/bank"

    faults(bank, hold_ms=2500)
    answers: list[Any] = []

    def press() -> None:
        try:
            answers.append(httpx.post(pay, json=body, timeout=30).status_code)
        except httpx.TransportError as exc:
            answers.append(exc)

    presser = threading.Thread(target=press)
    presser.start()
    # The bank has made the payment; its answer has not reached the server: kill it now.
    wait_until(lambda: bank_payments(bank, qr["attempt_id"]), what="the bank payment")
    server.kill()
    presser.join(timeout=30)
    assert answers and isinstance(answers[0], httpx.TransportError), answers
    faults(bank, hold_ms=0)

    server.start()  # the same database
    r = httpx.post(pay, json=body, timeout=30)
    assert r.status_code == 200, r.text
    consent = r.json()["consent_url"]
    assert len(bank_payments(bank, qr["attempt_id"])) == 1  # found, not made again
    page = httpx.get(consent)
    token = re.search(r"name='token' value='([0-9a-f]+)'", page.text)
    assert token is not None
    pid = consent.split("/consent/", 1)[1].split("?", 1)[0]
    httpx.post(f"{bank.url}/consent/{pid}/approve", data={"token": token.group(1)})

    def paid() -> Any:
        till.sync()
        s = till.get("payment_sessions", qr["attempt_id"])
        return s is not None and s.fields.get("status") == "succeeded" and s

    done = wait_until(paid, what="the payment reaching the till")
    assert done.fields["received"] == 1800
    payments = bank_payments(bank, qr["attempt_id"])
    assert [p["status"] for p in payments] in (["executed"], ["settled"])


class HoldingProxy:
    """A forwarding HTTP proxy in front of localstripe that, when armed, holds the answer
    to ``POST /v1/payment_intents`` (the intent exists; its creator has not heard)."""

    def __init__(self, upstream: str) -> None:
        import http.server

        self.upstream = upstream
        self.hold_s = 0.0
        self.created = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(size) if size else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                r = httpx.request(
                    self.command,
                    outer.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=30,
                )
                if self.command == "POST" and self.path == "/v1/payment_intents":
                    outer.created.set()
                    time.sleep(outer.hold_s)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the caller may have died
                    self.wfile.write(r.content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_server_killed_after_creating_a_stripe_intent_finds_it_again(
    tmp_path: Path, localstripe: ServiceProcess
) -> None:
    """localstripe keeps no idempotency keys: only the look-up by attempt id stands
    between a retried create and a second intent."""
    proxy = HoldingProxy(localstripe.url)
    port = free_port()
    with run_sandbox_bank(tmp_path) as bank:
        server = Served(tmp_path, port, bank)
        server.env.update(
            {
                "FYNLO_PROVIDERS_STRIPE_SECRET_KEY": "sk_test_fynlo",
                "FYNLO_PROVIDERS_STRIPE_API_BASE": proxy.url,
                "FYNLO_PROVIDERS_STRIPE_WEBHOOK_SECRET": "whsec_crash_test",
            }
        )
        server.start()
        try:
            tenant = admin.create_tenant(server.settings, "cafe")
            link = HttpTransport.enroll(
                server.url, admin.enroll_device(server.settings, tenant).enrollment_code
            )
            import conflict
            from fynlo_sync.domains.orders import OrdersPlugin
            from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin

            till = Terminal(
                SqliteTerminalStore(tmp_path / "till.db", link.node_id),
                conflict.registry([OrdersPlugin(), ProvidersPlugin()]),
                link,
                wall=lambda: time.time_ns() // 1_000_000,
            )
            till.command("orders", "o1", "open", {"currency": "GBP"})
            till.command(
                "orders",
                "o1",
                "add_line",
                {"line_id": "l1", "item": "Tart", "qty": 1, "unit_price": 900},
            )
            till.sync()
            qr = link.post("/v1/plugins/providers/qr", {"order_id": "o1", "method": "apple_pay"})
            sig = qr["pay_url"].rsplit("sig=", 1)[1]
            body = {"tip": 0, "amount": qr["amount"], "currency": "GBP", "sig": sig}
            url = qr["pay_url"].split("?", 1)[0] + "/apple-pay"
            proxy.hold_s = 2.5
            failed: list[Any] = []

            def press() -> None:
                try:
                    failed.append(httpx.post(url, json=body, timeout=30).status_code)
                except httpx.TransportError as exc:
                    failed.append(exc)

            presser = threading.Thread(target=press)
            presser.start()
            assert proxy.created.wait(20)
            server.kill()
            presser.join(timeout=30)
            assert failed and isinstance(failed[0], httpx.TransportError), failed
            proxy.hold_s = 0.0
            server.start()
            again = httpx.post(url, json=body, timeout=30)
            assert again.status_code == 200, again.text
            intents = httpx.get(
                localstripe.url + "/v1/payment_intents",
                params={"limit": 100},
                headers={"Authorization": "Bearer sk_test_fynlo"},
            ).json()["data"]
            mine = [i for i in intents if i["metadata"].get("fynlo_attempt_id") == qr["attempt_id"]]
            assert len(mine) == 1, mine
            assert again.json()["client_secret"] == mine[0]["client_secret"]
        finally:
            server.stop()
            proxy.close()
