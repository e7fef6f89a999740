"""Fixtures for the provider tests: localstripe as a separate process, and a webhook
receiver on a real socket that keeps each delivery's raw body and headers."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fynlo_sync.sandbox.processes import ServiceProcess, localstripe_available, run_localstripe

__all__: list[str] = []


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and a required tool is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    if not localstripe_available():
        missing("localstripe is not installed (it is in the dev extra: pip install -e '.[dev]')")
    with run_localstripe(tmp_path_factory.mktemp("localstripe")) as service:
        yield service


class Delivery:
    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that stores every POST it gets."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(size)
                with receiver._lock:
                    receiver.deliveries.append(Delivery(body, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, pred: object, timeout_s: float = 20.0) -> list[Delivery]:
        """Deliveries once ``pred(deliveries)`` holds (polling; fails at the timeout)."""
        assert callable(pred)
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                got = list(self.deliveries)
            if pred(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching webhook in {timeout_s} s: {len(got)} seen")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


# The server with the providers plugin, localstripe and the sandbox bank ------------------

PAY_LINK_SECRET = "pay-link-secret-for-tests-0123456789"
STRIPE_WEBHOOK_SECRET = "whsec_fynlo_tests_0123456789"
BANK_SECRET = "sandbox-webhook-secret"
APPLE_ASSOCIATION = "7B227073704964223A2266796E6C6F2D74657374227D"


class PayWorld:
    """A running server (embedded SQLite) with the orders and providers plugins, wired to
    localstripe and the sandbox bank (their webhooks come back to it), and one tenant."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.url: str = world.url
        self.settings = world.settings
        self.registry = world.registry
        self.tenant: str = world.tenant
        self.stripe_url: str = world.stripe_url
        self.bank_url: str = world.bank_url

    def terminal(self) -> Any:
        return self.world.till()

    def effects(self) -> list[dict[str, Any]]:
        """``GET /v1/effects`` of the tenant, as a manager's device (a till may not)."""
        from fynlo_sync.transport.http import HttpTransport
        from server import admin

        if getattr(self, "_manager", None) is None:
            code = admin.enroll_device(self.settings, self.tenant, role="manager")
            self._manager = HttpTransport.enroll(self.url, code.enrollment_code)
        rows: list[dict[str, Any]] = self._manager.get("/v1/effects")["effects"]
        return rows

    def bank_admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        r = httpx.post(
            self.bank_url + path, json=body, headers={"Authorization": "Bearer sandbox-key"}
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


def wait_until(pred: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.1)


@contextlib.contextmanager
def open_pay_world(folder: Path, stripe_url: str, *, payments: bool = False) -> Iterator[PayWorld]:
    """The sandbox's payment world with these tests' secrets, wired to ``stripe_url``
    (localstripe); ``payments``: the payments plugin too."""
    from fynlo_sync.sandbox.payments_demo import payment_world

    with payment_world(
        folder,
        stripe_url=stripe_url,
        pay_link_secret=PAY_LINK_SECRET,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        bank_webhook_secret=BANK_SECRET,
        apple_pay_association=APPLE_ASSOCIATION,
        payments=payments,
    ) as world:
        yield PayWorld(world)


@pytest.fixture(scope="session")
def pay_world(
    tmp_path_factory: pytest.TempPathFactory, localstripe: ServiceProcess
) -> Iterator[PayWorld]:
    with open_pay_world(tmp_path_factory.mktemp("pay"), localstripe.url) as world:
        yield world
