"""``fynlo payments apple-pay register-domain`` against a small local stand-in of Stripe's
payment method domains API (localstripe does not have it), over a real socket."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from fynlo_sync.cli import main


class StripeDomains:
    """POST /v1/payment_method_domains as Stripe answers it: a bearer secret key, a form
    body with ``domain_name``, an object with ``apple_pay.status``; the same
    Idempotency-Key gives the first answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.by_key: dict[str, tuple[int, bytes]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(size).decode())
                key = self.headers.get("Idempotency-Key", "")
                outer.requests.append(
                    {
                        "path": self.path,
                        "form": form,
                        "key": key,
                        "auth": self.headers.get("Authorization", ""),
                    }
                )
                if key in outer.by_key:
                    status, body = outer.by_key[key]
                elif not self.headers.get("Authorization", "").startswith("Bearer sk_"):
                    status, body = 401, json.dumps({"error": {"message": "bad key"}}).encode()
                elif self.path != "/v1/payment_method_domains":
                    status, body = 404, json.dumps({"error": {"message": "no route"}}).encode()
                else:
                    domain = form.get("domain_name", [""])[0]
                    if domain.endswith(".invalid"):
                        status = 400
                        body = json.dumps(
                            {
                                "error": {
                                    "message": f"{domain} cannot be verified",
                                    "type": "invalid_request_error",
                                }
                            }
                        ).encode()
                    else:
                        status = 200
                        body = json.dumps(
                            {
                                "id": f"pmd_{len(outer.by_key) + 1}",
                                "object": "payment_method_domain",
                                "domain_name": domain,
                                "enabled": True,
                                "livemode": False,
                                "apple_pay": {"status": "active"},
                                "google_pay": {"status": "active"},
                            }
                        ).encode()
                    outer.by_key[key] = (status, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeDomains]:
    s = StripeDomains()
    monkeypatch.setenv("FYNLO_PROVIDERS_STRIPE_SECRET_KEY", "sk_test_fynlo")
    monkeypatch.setenv("FYNLO_PROVIDERS_STRIPE_API_BASE", s.url)
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_register_domain(stand_in: StripeDomains, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["payments", "apple-pay", "register-domain", "Pay.Example.com", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["domain_name"], answer["apple_pay"]["status"]) == ("pay.example.com", "active")
    first = stand_in.requests[0]
    assert first["form"] == {"domain_name": ["pay.example.com"]}
    assert first["key"] == "fynlo:payment-method-domain:pay.example.com"
    assert first["auth"] == "Bearer sk_test_fynlo"
    # Again: the same key, the same answer (no second domain object).
    assert main(["payments", "apple-pay", "register-domain", "pay.example.com"]) == 0
    assert "registered as pmd_1, apple_pay active" in capsys.readouterr().out
    assert len(stand_in.by_key) == 1


def test_refusals_are_reported(
    stand_in: StripeDomains, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["payments", "apple-pay", "register-domain", "pay.example.invalid"]) == 1
    assert "cannot be verified" in capsys.readouterr().err
    assert main(["payments", "apple-pay", "register-domain", "https://x.com/pay"]) == 2
    assert "is not a domain name" in capsys.readouterr().err
    monkeypatch.delenv("FYNLO_PROVIDERS_STRIPE_SECRET_KEY")
    assert main(["payments", "apple-pay", "register-domain", "pay.example.com"]) == 2
    assert "FYNLO_PROVIDERS_STRIPE_SECRET_KEY" in capsys.readouterr().err
    assert len(stand_in.requests) == 1
