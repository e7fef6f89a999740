"""The sandbox bank over HTTP (Litestar): the API, the consent page, webhooks, admin.

==========================================  =================================================
route                                       what
==========================================  =================================================
``POST /v3/payments``                       create (``Idempotency-Key``; bearer API key)
``GET /v3/payments/{id}``                   read one
``GET /v3/payments?metadata.K=V``           the payments whose metadata has K = V
``POST /v3/payments/{id}/actions/cancel``   cancel until authorized (``Idempotency-Key``)
``GET /consent/{id}?token=T``               the page the customer's phone opens (QR)
``POST /consent/{id}/approve|decline``      the customer's choice (form, with ``token``)
``POST /_admin/clock``                      ``{"advance_ms": N}``: move the bank's clock
``POST /_admin/payments/{id}/fail``         ``{"failure_reason": R}``: fail after executed
``POST /_admin/webhooks``                   ``{"url": U}``: where webhooks go
``POST /_admin/faults``                     ``{"duplicate", "reverse", "hold_ms"}``: faults
==========================================  =================================================

Webhooks are POSTed to the configured URL with ``X-Bank-Signature: t=<ms>,v1=<hex>``,
HMAC-SHA256 with the webhook secret over ``"<t>.<raw body>"`` (TrueLayer signs with JWS;
an HMAC keeps the sandbox dependency-free while keeping what matters: a signature over the
raw body and a timestamp). A delivery that does not get a 2xx is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException

from fynlo_sync.sandbox.bank.core import Bank, BankError, WebhookEvent

__all__ = ["BankConfig", "create_bank_app", "sign"]

_log = logging.getLogger("fynlo.sandbox.bank")
PROBLEM = "application/problem+json"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def sign(secret: str, at_ms: int, body: bytes) -> str:
    """The ``X-Bank-Signature`` header value for ``body`` sent at ``at_ms``."""
    mac = hmac.new(secret.encode(), f"{at_ms}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at_ms},v1={mac}"


@dataclass
class BankConfig:
    api_key: str = "sandbox-key"
    webhook_secret: str = "sandbox-webhook-secret"
    webhook_url: str | None = None
    #: Base URL the consent links use (the address a phone would reach).
    public_url: str = ""
    execute_after_ms: int = 0
    settle_after_ms: int = 2000
    tick_s: float = 0.05


@dataclass
class _Delivery:
    event: WebhookEvent
    attempts: int = 0
    due: float = 0.0


@dataclass
class _Runtime:
    config: BankConfig
    bank: Bank
    duplicate: bool = False
    reverse: bool = False
    #: Hold each create's answer this long after the payment exists (a caller can crash
    #: between the call and its record).
    hold_ms: int = 0
    pending: list[_Delivery] = field(default_factory=list)
    delivered: int = 0


def _problem(exc: BankError) -> Response[Any]:
    return Response(
        {
            "type": f"https://fynlo.dev/problems/bank/{exc.code}",
            "title": exc.code,
            "status": exc.status,
            "detail": exc.detail,
        },
        status_code=exc.status,
        media_type=PROBLEM,
    )


def _rt(request: Request[Any, Any, Any]) -> _Runtime:
    rt: _Runtime = request.app.state.rt
    return rt


def _authorise(request: Request[Any, Any, Any]) -> None:
    expected = f"Bearer {_rt(request).config.api_key}"
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise BankError(401, "unauthenticated", "send Authorization: Bearer <api key>")


async def _json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    try:
        body = await request.json()
    except Exception:
        raise BankError(400, "malformed", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise BankError(400, "malformed", "the body must be a JSON object")
    return body


@post("/v3/payments", status_code=201)
async def create_payment(request: Request[Any, Any, Any]) -> Response[Any]:
    _authorise(request)
    rt = _rt(request)
    status, answer = rt.bank.create(request.headers.get("idempotency-key"), await _json(request))
    if rt.hold_ms:
        await asyncio.sleep(rt.hold_ms / 1000)
    answer = dict(answer)
    answer["consent_url"] = _consent_url(rt, answer["id"], answer["resource_token"])
    return Response(answer, status_code=status)


@get("/v3/payments/{payment_id:str}")
async def get_payment(request: Request[Any, Any, Any], payment_id: str) -> dict[str, Any]:
    _authorise(request)
    rt = _rt(request)
    view = rt.bank.get(payment_id)
    if view["status"] in ("authorization_required", "authorizing"):
        view["consent_url"] = _consent_url(rt, payment_id, rt.bank.consent_token(payment_id))
    return view


@get("/v3/payments")
async def list_payments(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _authorise(request)
    pairs = [
        (k[len("metadata.") :], v)
        for k, v in request.query_params.items()
        if k.startswith("metadata.")
    ]
    if len(pairs) != 1:
        raise BankError(400, "invalid-query", "filter by exactly one metadata.KEY=VALUE")
    rt = _rt(request)
    items = rt.bank.find(pairs[0][0], pairs[0][1])
    for view in items:
        if view["status"] in ("authorization_required", "authorizing"):
            view["consent_url"] = _consent_url(rt, view["id"], rt.bank.consent_token(view["id"]))
    return {"items": items}


@post("/v3/payments/{payment_id:str}/actions/cancel", status_code=202)
async def cancel_payment(request: Request[Any, Any, Any], payment_id: str) -> Response[Any]:
    _authorise(request)
    status, answer = _rt(request).bank.cancel(request.headers.get("idempotency-key"), payment_id)
    return Response(answer, status_code=status)


def _consent_url(rt: _Runtime, payment_id: str, token: str) -> str:
    return f"{rt.config.public_url}/consent/{payment_id}?token={token}"


def _token_ok(rt: _Runtime, payment_id: str, token: str | None) -> bool:
    return rt.bank.token_ok(payment_id, token)


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    doc = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;"
        "max-width:28rem;margin:2rem auto;padding:0 1rem}button{font-size:1.2rem;"
        "padding:.6rem 1.2rem;margin:.3rem}.amount{font-size:2rem;font-weight:bold}</style>"
        f"</head><body><h1>Sandbox Bank</h1>{body}</body></html>"
    )
    return Response(doc, status_code=status, media_type="text/html")


@get("/consent/{payment_id:str}")
async def consent_page(
    request: Request[Any, Any, Any], payment_id: str, token: str | None = None
) -> Response[str]:
    rt = _rt(request)
    if not _token_ok(rt, payment_id, token):
        return _page("Not found", "<p>This payment link is not valid.</p>", 404)
    view = rt.bank.open_consent(payment_id)
    amount = f"{view['amount_in_minor'] // 100}.{view['amount_in_minor'] % 100:02d}"
    if view["status"] not in ("authorization_required", "authorizing"):
        return _page("Payment", f"<p id='status'>This payment is {view['status']}.</p>")
    esc_token = html.escape(token or "")
    form = (
        "<form method='post' action='/consent/{pid}/{act}'>"
        f"<input type='hidden' name='token' value='{esc_token}'>"
        "<button id='{act}' type='submit'>{label}</button></form>"
    )
    return _page(
        "Approve payment",
        f"<p>Pay <span class='amount'>{html.escape(view['currency'])} {amount}</span></p>"
        f"<p>to {html.escape(view['reference'] or 'the merchant')}</p>"
        + form.format(pid=payment_id, act="approve", label="Approve")
        + form.format(pid=payment_id, act="decline", label="Decline"),
    )


async def _decide(request: Request[Any, Any, Any], payment_id: str, approve: bool) -> Response[str]:
    rt = _rt(request)
    form = await request.form()
    token = form.get("token")
    if not _token_ok(rt, payment_id, token if isinstance(token, str) else None):
        return _page("Not found", "<p>This payment link is not valid.</p>", 404)
    try:
        view = rt.bank.decide(payment_id, approve)
    except BankError as exc:
        return _page("Payment", f"<p id='status'>{html.escape(exc.detail)}</p>", exc.status)
    return _page("Payment", f"<p id='status'>Payment {html.escape(view['status'])}.</p>")


@post("/consent/{payment_id:str}/approve", status_code=200)
async def approve(request: Request[Any, Any, Any], payment_id: str) -> Response[str]:
    return await _decide(request, payment_id, True)


@post("/consent/{payment_id:str}/decline", status_code=200)
async def decline(request: Request[Any, Any, Any], payment_id: str) -> Response[str]:
    return await _decide(request, payment_id, False)


@post("/_admin/clock", status_code=200)
async def move_clock(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _authorise(request)
    body = await _json(request)
    return {"now_ms": _rt(request).bank.advance(body.get("advance_ms"))}  # type: ignore[arg-type]


@get("/_admin/clock")
async def read_clock(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _authorise(request)
    return {"now_ms": _rt(request).bank.now_ms()}


@post("/_admin/payments/{payment_id:str}/fail", status_code=200)
async def fail_late(request: Request[Any, Any, Any], payment_id: str) -> dict[str, Any]:
    _authorise(request)
    reason = (await _json(request)).get("failure_reason", "provider_rejected")
    if not isinstance(reason, str) or not reason:
        raise BankError(400, "invalid-reason", "failure_reason must be a string")
    return _rt(request).bank.fail_late(payment_id, reason)


@post("/_admin/webhooks", status_code=200)
async def set_webhook(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _authorise(request)
    url = (await _json(request)).get("url")
    if not isinstance(url, str) or not url.startswith("http"):
        raise BankError(400, "invalid-url", "url must be an http(s) URL")
    _rt(request).config.webhook_url = url
    return {"url": url}


@post("/_admin/faults", status_code=200)
async def set_faults(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _authorise(request)
    body = await _json(request)
    rt = _rt(request)
    rt.duplicate = bool(body.get("duplicate", False))
    rt.reverse = bool(body.get("reverse", False))
    hold = body.get("hold_ms", 0)
    if type(hold) is not int or not 0 <= hold <= 60_000:
        raise BankError(400, "invalid-fault", "hold_ms must be an integer from 0 to 60000")
    rt.hold_ms = hold
    return {
        "duplicate": rt.duplicate,
        "reverse": rt.reverse,
        "hold_ms": rt.hold_ms,
        "delivered": rt.delivered,
    }


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _deliver_forever(rt: _Runtime) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            await asyncio.sleep(rt.config.tick_s)
            fresh = rt.bank.take_events()
            if rt.reverse:
                fresh.reverse()
            for event in fresh:
                rt.pending.append(_Delivery(event))
                if rt.duplicate:
                    rt.pending.append(_Delivery(event))
            url = rt.config.webhook_url
            if not url or not rt.pending:
                continue
            now = time.monotonic()
            keep: list[_Delivery] = []
            for d in rt.pending:
                if d.due > now:
                    keep.append(d)
                    continue
                body = d.event.body()
                headers = {
                    "Content-Type": "application/json",
                    # Signed at the wall clock: the bank's own clock may have been moved.
                    "X-Bank-Signature": sign(rt.config.webhook_secret, _wall_ms(), body),
                    "X-Bank-Event-Id": d.event.event_id,
                }
                try:
                    r = await http.post(url, content=body, headers=headers)
                    ok = 200 <= r.status_code < 300
                except httpx.HTTPError:
                    ok = False
                if ok:
                    rt.delivered += 1
                    continue
                d.attempts += 1
                if d.attempts < 12:
                    d.due = now + min(0.1 * 2**d.attempts, 30.0)
                    keep.append(d)
                else:
                    _log.warning("webhook %s dropped after %d attempts", d.event.event_id, 12)
            rt.pending = keep


def create_bank_app(config: BankConfig, *, bank: Bank | None = None) -> Litestar:
    """The sandbox bank's app. ``bank`` (default: a fresh one on the wall clock) holds the
    state; the lifespan runs the webhook sender."""
    rt = _Runtime(
        config=config,
        bank=bank
        or Bank(
            wall_ms=_wall_ms,
            execute_after_ms=config.execute_after_ms,
            settle_after_ms=config.settle_after_ms,
        ),
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(_deliver_forever(rt))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def on_error(_: Request[Any, Any, Any], exc: BankError) -> Response[Any]:
        return _problem(exc)

    def on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        return _problem(BankError(exc.status_code, "http-error", str(exc.detail)))

    return Litestar(
        route_handlers=[
            create_payment,
            get_payment,
            list_payments,
            cancel_payment,
            consent_page,
            approve,
            decline,
            move_clock,
            read_clock,
            fail_late,
            set_webhook,
            set_faults,
            health,
        ],
        state=State({"rt": rt}),
        lifespan=[lifespan],
        exception_handlers={BankError: on_error, HTTPException: on_http},
        openapi_config=None,
    )
