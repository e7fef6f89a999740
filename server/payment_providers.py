"""The ``providers`` plugin's server side: webhooks, the QR, the pay-at-table page, Apple Pay.

Mounted under ``/v1/plugins/providers`` (``server.plugins``):

==============================================  =========================================
route                                           what
==============================================  =========================================
``POST /qr``                                    (device) a new attempt's pay link and QR
``POST /card``                                  (device) a card payment (manual capture too)
``POST /webhooks/{stripe|bank}``                public: signature on the raw body
``GET /pay/{tenant}/{order}/{attempt}``         public: the page the QR opens (signed)
``POST /pay/{tenant}/{order}/{attempt}/bank``   public (signed): pay by bank, the consent
``POST /pay/.../apple-pay``                     public (signed): a Stripe intent for a wallet
``GET /pay/.../status``                         public (signed): the session's status
``GET /.well-known/apple-developer-merchantid-domain-association``  (at the root)
==============================================  =========================================

Every provider call is made by a durable effect (:mod:`.effects`), after the payment
session that names the attempt (and so the idempotency key, derived from the attempt id)
was committed, so a crash between the call and its record is retried as a look-up by the
attempt id (:func:`fynlo_sync.domains.payments.providers.flow.start` with ``retry``). A
webhook is verified on the raw body and its event id recorded (``fynlo_provider_events``,
the ``providers`` component): a delivery of an event already seen does nothing more; a new
one is noted on its session (``webhook``), which plans the ``webhook`` effect keyed by the
event id, and the route answers at once. The effect re-fetches the payment (so order does
not matter) and authors, under the tenant's lock, only what is newer: the
``payment_sessions`` record, and the ``payment_*`` commands on the order when the payments
plugin is loaded. Handlers decode, call the library, encode.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import secrets
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Struct

from fynlo_sync.domains.payments.providers import PaymentProvider, WebhookEvent, flow
from fynlo_sync.domains.payments.providers.plugin import ORDERS, SESSIONS, ProvidersSettings
from fynlo_sync.domains.payments.providers.qr import pay_link, payment_qr, verify_link
from fynlo_sync.errors import CallerError, RejectedOpError
from fynlo_sync.ops import Record
from fynlo_sync.plugins import Draft
from fynlo_sync.replica import Compose, NothingToAuthorError
from fynlo_sync.store.migrations import Component
from fynlo_sync.store.sqlport import SqlPort
from server.auth import AccessToken, Device
from server.plugins import PLUGIN_PREFIX, PluginContext

__all__ = ["PROVIDERS_COMPONENT", "ROOT_ROUTES", "ROUTES", "WebhookLog", "lifespan", "tip_of"]

TIPS_PERCENT = (0, 5, 10, 20)


class Providers:
    def __init__(self, settings: ProvidersSettings) -> None:
        self.by_name: dict[str, PaymentProvider] = {}
        if settings.stripe_secret_key:
            from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider

            self.by_name["stripe"] = StripeProvider(
                settings.stripe_secret_key,
                webhook_secret=settings.stripe_webhook_secret,
                api_base=settings.stripe_api_base or None,
            )
        if settings.bank_url:
            from fynlo_sync.domains.payments.providers.open_banking import OpenBankingProvider

            self.by_name["bank"] = OpenBankingProvider(
                settings.bank_url,
                api_key=settings.bank_api_key,
                webhook_secret=settings.bank_webhook_secret,
            )

    def get(self, name: str) -> PaymentProvider:
        provider = self.by_name.get(name)
        if provider is None:
            raise NotConfiguredError(f"no {name} provider is configured", provider=name)
        return provider

    async def aclose(self) -> None:
        for provider in self.by_name.values():
            await provider.aclose()  # type: ignore[attr-defined]


class NotConfiguredError(CallerError):
    code = "provider-not-configured"
    status = 404


class OrderNotFoundError(CallerError):
    code = "record-not-found"
    status = 404


class InvalidTipError(CallerError):
    code = "invalid-tip"


class PayLinkError(CallerError):
    code = "bad-pay-link"
    status = 403


_PROVIDERS: weakref.WeakKeyDictionary[PluginContext, Providers] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def lifespan(ctx: PluginContext) -> AsyncIterator[None]:
    await WebhookLog(ctx.backend.accounts.db).migrate()
    providers = Providers(ctx.settings)
    _PROVIDERS[ctx] = providers
    try:
        yield
    finally:
        await providers.aclose()


def _providers(plugin: PluginContext) -> Providers:
    return _PROVIDERS[plugin]


def _settings(plugin: PluginContext) -> ProvidersSettings:
    settings: ProvidersSettings = plugin.settings
    return settings


def _payments_loaded(plugin: PluginContext) -> bool:
    try:
        return "payment_submit" in plugin.registry.collection(ORDERS).commands
    except RejectedOpError:
        return False


def _refund_limit(plugin: PluginContext) -> int | None:
    """The payments plugin's refund limit (19.5), kept on a session so its ``refund``
    command asks for a manager above it (25.7); None without the payments plugin."""
    rules = getattr(plugin.registry.plugin("payments"), "rules", None)
    limit = getattr(rules, "refund_manager_limit", None)
    return limit if type(limit) is int else None


def _method_provider(method: str) -> str:
    return "bank" if method == "open_banking" else "stripe"


# Webhooks ---------------------------------------------------------------------------------

#: The ``providers`` component (in the accounts database, through the one migration runner):
#: every webhook event seen, by provider and event id. ``queued_ms`` is set once the event's
#: effect is in the outbox (or it was ``ignored``): an event noted but never queued (the
#: server died in between) is queued again when the provider redelivers it.
PROVIDERS_COMPONENT = Component(
    "providers",
    (
        """
        CREATE TABLE fynlo_provider_events (
            provider TEXT NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            tenant_id TEXT,
            attempt_id TEXT,
            provider_id TEXT,
            received_ms BIGINT NOT NULL,
            queued_ms BIGINT,
            outcome TEXT,
            PRIMARY KEY (provider, event_id)
        )
        """,
    ),
)


class WebhookLog:
    """The webhook events seen (``fynlo_provider_events``): dedupe by event id."""

    def __init__(self, db: SqlPort) -> None:
        self.db = db

    async def migrate(self) -> list[int]:
        return await self.db.migrate(PROVIDERS_COMPONENT)

    async def note(self, event: WebhookEvent, now_ms: int) -> bool:
        """Record ``event``; True when it is to be queued (new, or noted before and never
        queued), False for a delivery of an event already queued or ignored."""
        inserted = await self.db.execute(
            "INSERT INTO fynlo_provider_events (provider, event_id, type, tenant_id,"
            " attempt_id, provider_id, received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (provider, event_id) DO NOTHING",
            event.provider,
            event.event_id,
            event.type,
            event.tenant,
            event.attempt_id,
            event.provider_id,
            now_ms,
        )
        if inserted:
            return True
        row = await self.db.fetchrow(
            "SELECT queued_ms FROM fynlo_provider_events WHERE provider = $1 AND event_id = $2",
            event.provider,
            event.event_id,
        )
        return row is not None and row[0] is None

    async def settle(self, event: WebhookEvent, outcome: str, now_ms: int) -> None:
        await self.db.execute(
            "UPDATE fynlo_provider_events SET queued_ms = $3, outcome = $4"
            " WHERE provider = $1 AND event_id = $2",
            event.provider,
            event.event_id,
            now_ms,
            outcome,
        )

    async def outcome(self, provider: str, event_id: str) -> str | None:
        row = await self.db.fetchrow(
            "SELECT outcome FROM fynlo_provider_events WHERE provider = $1 AND event_id = $2",
            provider,
            event_id,
        )
        return None if row is None else row[0]


def _log(plugin: PluginContext) -> WebhookLog:
    return WebhookLog(plugin.backend.accounts.db)


class Received(Struct, frozen=True):
    """``outcome``: ``queued`` (its effect re-fetches the payment), ``duplicate`` (this
    event was received before: nothing more happens) or ``ignored`` (it names no payment
    of ours)."""

    event_id: str
    outcome: str


async def _queue(plugin: PluginContext, event: WebhookEvent) -> str:
    """Note the event on its attempt's session (``webhook``): that commit plans the
    ``webhook`` effect, keyed by the event id, which re-fetches the payment."""
    tenant, attempt_id = event.tenant, event.attempt_id
    if not tenant or not attempt_id or not event.provider_id:
        return "ignored"
    note = {"provider": event.provider, "event_id": event.event_id, "id": event.provider_id}
    key = (SESSIONS, attempt_id)

    def build(found: Mapping[tuple[str, str], Record]) -> Sequence[Draft]:
        session = found.get(key)
        if session is None or session.deleted:
            return []  # not a payment of ours (or of this tenant)
        return [Draft.patch(SESSIONS, attempt_id, {"webhook": note})]

    try:
        await plugin.backend.author(tenant, Compose([key], build))
    except NothingToAuthorError:
        return "ignored"
    return "queued"


@post("/webhooks/{provider_name:str}", exclude_from_auth=True, status_code=200)
async def webhook(
    request: Request[Any, Any, Any],
    plugin: NamedDependency[PluginContext],
    provider_name: FromPath[str],
) -> Received:
    """A provider's webhook. Public: authenticated by its signature over the raw body.
    Records the event and answers: the payment is re-fetched by a durable effect."""
    provider = _providers(plugin).get(provider_name)
    body = await request.body()
    event = provider.parse_webhook(body, dict(request.headers), now_s=plugin.now_ms() // 1000)
    log = _log(plugin)
    if not await log.note(event, plugin.now_ms()):
        return Received(event.event_id, "duplicate")
    outcome = await _queue(plugin, event)
    await log.settle(event, outcome, plugin.now_ms())
    return Received(event.event_id, outcome)


# The QR ------------------------------------------------------------------------------------


class QrRequest(Struct, frozen=True, forbid_unknown_fields=True):
    order_id: str
    method: str = "open_banking"


class QrAnswer(Struct, frozen=True):
    attempt_id: str
    pay_url: str
    amount: int
    currency: str
    svg: str
    png_base64: str


def _balance(order: Mapping[str, Any]) -> int:
    due = order.get("balance_due")
    return int(order.get("total") or 0) if due is None else int(due)


@post("/qr", status_code=200)
async def new_qr(
    request: Request[Device, AccessToken, Any],
    plugin: NamedDependency[PluginContext],
    data: JSONBody[QrRequest],
) -> QrAnswer:
    """A new payment session for the order's balance due, with its own signed pay link and
    QR (one per attempt: a second call makes another attempt id)."""
    tenant = request.user.tenant_id
    if data.method not in ("open_banking", "apple_pay", "card"):
        raise CallerError("method must be open_banking, apple_pay or card", reason="invalid-method")
    settings = _settings(plugin)
    found = await plugin.backend.load(tenant, [(ORDERS, data.order_id)])
    order = found.get((ORDERS, data.order_id))
    if order is None or order.deleted:
        raise OrderNotFoundError(f"no order {data.order_id!r}", order_id=data.order_id)
    amount = _balance(order.fields)
    if amount <= 0:
        raise CallerError("nothing is due on this order", reason="nothing-due")
    currency = str(order.fields.get("currency") or settings.currency)
    attempt_id = "pay-" + plugin.backend.new_op_id()
    url = pay_link(
        settings.public_url + f"{PLUGIN_PREFIX}/providers",
        settings.pay_link_secret,
        tenant=tenant,
        order_id=data.order_id,
        attempt_id=attempt_id,
        amount=amount,
        currency=currency,
    )
    await plugin.backend.author(
        tenant,
        [
            Draft.put(
                SESSIONS,
                attempt_id,
                {
                    "order_id": data.order_id,
                    "method": data.method,
                    "amount": amount,
                    "currency": currency,
                    "pay_url": url,
                    "refund_limit": _refund_limit(plugin),
                    "updated_ms": plugin.now_ms(),
                },
            )
        ],
    )
    qr = payment_qr(url)
    return QrAnswer(attempt_id, url, amount, currency, qr.svg, base64.b64encode(qr.png).decode())


# A card at the terminal -------------------------------------------------------------------


class CardRequest(Struct, frozen=True, forbid_unknown_fields=True):
    order_id: str
    payment_method: str
    tip: int = 0
    capture: str = "automatic"


class CardAnswer(Struct, frozen=True):
    attempt_id: str
    amount: int
    tip: int
    currency: str
    capture: str


@post("/card", status_code=200)
async def pay_by_card(
    request: Request[Device, AccessToken, Any],
    plugin: NamedDependency[PluginContext],
    data: JSONBody[CardRequest],
) -> CardAnswer:
    """(device) A card payment for the order's balance due plus ``tip``, with a Stripe
    payment method the terminal's card SDK gave (``pm_...``). ``capture: "manual"`` holds
    the money: the terminal captures later with the session's ``capture`` command (a tip
    added after authorisation, up to ``tip``). The terminal follows the session."""
    tenant = request.user.tenant_id
    if data.capture not in ("automatic", "manual"):
        raise CallerError("capture must be automatic or manual", reason="invalid-capture")
    pm = data.payment_method
    if not pm.startswith("pm_") or len(pm) > 255:
        raise CallerError(
            "payment_method must be a Stripe payment method id (pm_...)",
            reason="invalid-payment-method",
        )
    if type(data.tip) is not int or data.tip < 0:
        raise InvalidTipError("tip must be an integer >= 0 (minor units)", reason="invalid-tip")
    provider = _providers(plugin).get("stripe")  # 404 when not configured
    found = await plugin.backend.load(tenant, [(ORDERS, data.order_id)])
    order = found.get((ORDERS, data.order_id))
    if order is None or order.deleted:
        raise OrderNotFoundError(f"no order {data.order_id!r}", order_id=data.order_id)
    amount = _balance(order.fields)
    if amount <= 0:
        raise CallerError("nothing is due on this order", reason="nothing-due")
    currency = str(order.fields.get("currency") or _settings(plugin).currency)
    attempt_id = "pay-" + plugin.backend.new_op_id()
    session = {
        "order_id": data.order_id,
        "method": "card",
        "amount": amount,
        "currency": currency,
        "tip": data.tip,
        "payment_method": pm,
        "capture": data.capture,
        "refund_limit": _refund_limit(plugin),
        "updated_ms": plugin.now_ms(),
    }
    await plugin.backend.author(tenant, [Draft.put(SESSIONS, attempt_id, session)])
    await _start_attempt(plugin, tenant, data.order_id, attempt_id, "card", amount, data.tip)
    await plugin.backend.author(
        tenant,
        [
            Draft.patch(
                SESSIONS,
                attempt_id,
                {"requested_ms": plugin.now_ms(), "provider": provider.name},
            )
        ],
    )
    return CardAnswer(attempt_id, amount, data.tip, currency, data.capture)


# The pay-at-table page ------------------------------------------------------------------


async def _checked(
    plugin: PluginContext,
    tenant: str,
    order_id: str,
    attempt_id: str,
    amount: int,
    currency: str,
    sig: str,
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    settings = _settings(plugin)
    ok = verify_link(
        settings.pay_link_secret,
        tenant=tenant,
        order_id=order_id,
        attempt_id=attempt_id,
        amount=amount,
        currency=currency,
        sig=sig,
    )
    if not ok:
        raise PayLinkError("this pay link is not valid", reason="bad-signature")
    found = await plugin.backend.load(tenant, [(ORDERS, order_id), (SESSIONS, attempt_id)])
    order, session = found.get((ORDERS, order_id)), found.get((SESSIONS, attempt_id))
    if order is None or session is None or session.fields.get("order_id") != order_id:
        raise PayLinkError("this pay link is not valid", reason="unknown-payment")
    return order.fields, session.fields


def _script_json(value: Any) -> str:
    """JSON to put inside a <script> element (raw text: entities are not decoded there, so
    only ``<`` is escaped, which keeps a ``</script>`` in a value from closing it)."""
    return json.dumps(value).replace("<", "\\u003c")


def _money(amount: int, currency: str) -> str:
    return f"{currency} {amount // 100}.{amount % 100:02d}"


def tip_of(amount: int, percent: int) -> int:
    """``percent`` of ``amount``, rounded half-up (the tip presets' rounding)."""
    return (amount * percent * 2 + 100) // 200


_PAGE_JS = """
const cfg = JSON.parse(document.getElementById('cfg').textContent);
let tip = 0;
function show() {
  document.getElementById('total').textContent = fmt(cfg.amount + tip);
  document.querySelectorAll('.tip').forEach(b =>
    b.classList.toggle('on', Number(b.dataset.tip) === tip));
}
function fmt(v) { return cfg.currency + ' ' + Math.floor(v / 100) + '.' +
  String(v % 100).padStart(2, '0'); }
document.querySelectorAll('.tip').forEach(b => b.addEventListener('click', () => {
  tip = Number(b.dataset.tip); show(); }));
async function call(path) {
  const r = await fetch(cfg.base + path, {method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({tip: tip, amount: cfg.amount, currency: cfg.currency,
                          sig: cfg.sig})});
  const body = await r.json();
  if (!r.ok) { document.getElementById('status').textContent = body.detail; return null; }
  return body;
}
document.getElementById('bank').addEventListener('click', async () => {
  let body = await call('/bank');
  while (body && !body.consent_url && body.status !== 'failed') {
    await new Promise(r => setTimeout(r, 500));
    const r = await fetch(cfg.base + '/status' + cfg.query);
    body = r.ok ? await r.json() : null;
  }
  if (body && body.consent_url) { window.location.href = body.consent_url; }
});
const apple = document.getElementById('apple');
if (window.ApplePaySession && ApplePaySession.canMakePayments()) {
  apple.disabled = false;
  apple.addEventListener('click', async () => { await call('/apple-pay'); });
} else { document.getElementById('apple-note').hidden = false; }
async function poll() {
  const r = await fetch(cfg.base + '/status' + cfg.query);
  if (r.ok) { const s = await r.json();
    if (s.status) { document.getElementById('status').textContent = s.label; }
    if (s.status === 'succeeded') {
      // Paid: what was paid, tip included, and nothing left to press.
      document.querySelectorAll('button').forEach(b => { b.disabled = true; b.hidden = true; });
      document.querySelectorAll('.tip-row').forEach(e => { e.hidden = true; });
      document.getElementById('total-label').textContent = 'Paid ';
      document.getElementById('total').textContent = fmt(s.paid);
      document.getElementById('apple-note').hidden = true;
      return; } }
  setTimeout(poll, 1000);
}
show(); poll();
"""

_PAGE_CSS = (
    "body{font-family:sans-serif;max-width:26rem;margin:1.5rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.4rem}table{width:100%;border-collapse:collapse}"
    "td{padding:.3rem 0;border-bottom:1px solid #eee}td.n{text-align:right}"
    ".total{font-size:1.6rem;font-weight:bold;margin:1rem 0}.tips{display:flex;gap:.4rem}"
    ".tip{flex:1;padding:.6rem;font-size:1rem;border:1px solid #888;background:#fff;"
    "border-radius:.4rem}.tip.on{background:#1a5;color:#fff;border-color:#1a5}"
    ".pay{display:block;width:100%;margin:.6rem 0;padding:.9rem;font-size:1.1rem;"
    "border:0;border-radius:.5rem;color:#fff}#bank{background:#1a5}#apple{background:#000}"
    "#apple:disabled{background:#999}#status{margin-top:1rem;font-weight:bold}"
    ".note{color:#666;font-size:.85rem}[hidden]{display:none!important}"
)


@get("/pay/{tenant:str}/{order_id:str}/{attempt_id:str}", exclude_from_auth=True)
async def pay_page(
    plugin: NamedDependency[PluginContext],
    tenant: FromPath[str],
    order_id: FromPath[str],
    attempt_id: FromPath[str],
    amount: Annotated[int, QueryParameter(ge=1)],
    currency: Annotated[str, QueryParameter(min_length=3, max_length=3)],
    sig: Annotated[str, QueryParameter(max_length=128)],
) -> Response[str]:
    """The page the QR opens: the bill, a tip, pay by bank or Apple Pay. Public: the
    link's signature binds the tenant, order, attempt, amount and currency."""
    order, session = await _checked(plugin, tenant, order_id, attempt_id, amount, currency, sig)
    lines = order.get("lines") or {}
    rows = "".join(
        f"<tr><td>{int(line['qty'])} &times; {html.escape(str(line.get('item', '')))}</td>"
        f"<td class='n'>{_money(int(line['qty']) * int(line['unit_price']), currency)}</td></tr>"
        for _, line in sorted(lines.items())
    )
    tips = "".join(
        f"<button class='tip' data-tip='{tip_of(amount, p)}'>"
        f"{'No tip' if p == 0 else f'{p}%'}</button>"
        for p in TIPS_PERCENT
    )
    query = f"?amount={amount}&currency={currency}&sig={sig}"
    cfg = {
        "amount": amount,
        "currency": currency,
        "sig": sig,
        "query": query,
        "base": f"{PLUGIN_PREFIX}/providers/pay/{tenant}/{order_id}/{attempt_id}",
    }
    table = html.escape(str(order.get("table") or ""))
    nonce = secrets.token_urlsafe(16)
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Your bill</title><style nonce='{nonce}'>{_PAGE_CSS}</style></head><body>"
        f"<h1>Your bill{' &middot; table ' + table if table else ''}</h1>"
        f"<table id='lines'>{rows}</table>"
        f"<p>Due <b id='due'>{_money(amount, currency)}</b></p>"
        f"<p class='tip-row'>Add a tip</p><div class='tips tip-row'>{tips}</div>"
        "<div class='total'><span id='total-label'>Total </span>"
        f"<span id='total'>{_money(amount, currency)}</span></div>"
        "<button class='pay' id='bank'>Pay by bank</button>"
        "<button class='pay' id='apple' disabled>Apple Pay</button>"
        "<p class='note' id='apple-note' hidden>Apple Pay is not available on this device.</p>"
        "<p id='status' role='status'></p>"
        f"<script type='application/json' id='cfg'>{_script_json(cfg)}"
        f"</script><script nonce='{nonce}'>{_PAGE_JS}</script></body></html>"
    )
    del session
    # The server's default policy forbids everything; this page runs its own script and
    # style (by nonce) and talks to this server only.
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    )
    return Response(body, media_type="text/html", headers={"Content-Security-Policy": policy})


class PayRequest(Struct, frozen=True, forbid_unknown_fields=True):
    tip: int
    amount: int
    currency: str
    sig: str


class BankAnswer(Struct, frozen=True):
    attempt_id: str
    consent_url: str | None
    status: str


def _check_tip(data: PayRequest) -> None:
    if type(data.tip) is not int or data.tip < 0 or data.tip > data.amount:
        raise InvalidTipError("tip must be between 0 and the amount due", reason="invalid-tip")


async def _start(
    plugin: PluginContext,
    tenant: str,
    order_id: str,
    attempt_id: str,
    method: str,
    data: PayRequest,
) -> Mapping[str, Any]:
    """Ask for the session's provider payment: commit the order's ``payment_start`` and the
    session's request; the ``start`` effect (the floor's outbox, planned in that commit)
    calls the provider. Returns the session once the effect recorded the answer (or as it
    is after a while: the page keeps polling)."""
    _, session = await _checked(
        plugin, tenant, order_id, attempt_id, data.amount, data.currency, data.sig
    )
    _check_tip(data)
    provider = _providers(plugin).get(_method_provider(method))  # 404 when not configured
    if not session.get("requested_ms"):
        await _start_attempt(plugin, tenant, order_id, attempt_id, method, data.amount, data.tip)
        await plugin.backend.author(
            tenant,
            [
                Draft.patch(
                    SESSIONS,
                    attempt_id,
                    {
                        "method": method,
                        "tip": data.tip,
                        "requested_ms": plugin.now_ms(),
                        "provider": provider.name,
                    },
                )
            ],
        )
    return await _wait_started(plugin, tenant, attempt_id)


async def _wait_started(
    plugin: PluginContext, tenant: str, attempt_id: str, timeout_s: float = 15.0
) -> Mapping[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        found = await plugin.backend.load(tenant, [(SESSIONS, attempt_id)])
        fields = found[(SESSIONS, attempt_id)].fields
        done = fields.get("provider_id") or fields.get("status") == "failed"
        if done or loop.time() > deadline:
            return fields
        await asyncio.sleep(0.05)


async def _start_attempt(
    plugin: PluginContext,
    tenant: str,
    order_id: str,
    attempt_id: str,
    method: str,
    amount: int,
    tip: int,
) -> None:
    """The order's ``payment_start`` (when the payments plugin is loaded), committed on its
    own and **before** the session asks for a provider payment: if the order refuses it (an
    attempt is still live, the amount is above the balance), nothing is asked of any
    provider. An attempt already started by an earlier press is fine."""
    if not _payments_loaded(plugin):
        return
    args = {"attempt_id": attempt_id, "method": method, "amount": amount, "tip": tip}
    result = await plugin.backend.author(
        tenant, [Draft.command(ORDERS, order_id, "payment_start", args)]
    )
    outcome = result.outcomes[0]
    if outcome.status != "rejected":
        return
    found = await plugin.backend.load(tenant, [(ORDERS, order_id)])
    order = found.get((ORDERS, order_id))
    if flow.attempt_state(None if order is None else order.fields, attempt_id) is None:
        raise RejectedOpError(
            f"the payment cannot start: {outcome.reason} ({outcome.detail})",
            reason=outcome.reason or "rejected",
        )


_PAY_PATH = "/pay/{tenant:str}/{order_id:str}/{attempt_id:str}"


@post(_PAY_PATH + "/bank", exclude_from_auth=True, status_code=200)
async def pay_by_bank(
    plugin: NamedDependency[PluginContext],
    tenant: FromPath[str],
    order_id: FromPath[str],
    attempt_id: FromPath[str],
    data: JSONBody[PayRequest],
) -> BankAnswer:
    """Pay by bank: the bank payment for the amount and tip; the page goes to its consent."""
    session = await _start(plugin, tenant, order_id, attempt_id, "open_banking", data)
    action = session.get("action") or {}
    return BankAnswer(attempt_id, action.get("url"), str(session.get("status") or "requested"))


class WalletAnswer(Struct, frozen=True):
    attempt_id: str
    client_secret: str | None
    publishable_key: str
    status: str


@post(_PAY_PATH + "/apple-pay", exclude_from_auth=True, status_code=200)
async def pay_by_apple_pay(
    plugin: NamedDependency[PluginContext],
    tenant: FromPath[str],
    order_id: FromPath[str],
    attempt_id: FromPath[str],
    data: JSONBody[PayRequest],
) -> WalletAnswer:
    """Apple Pay through Stripe: an intent marked with the wallet; Stripe.js on the phone
    confirms it with the Apple Pay payment method and the webhook brings the result."""
    session = await _start(plugin, tenant, order_id, attempt_id, "apple_pay", data)
    return WalletAnswer(
        attempt_id,
        session.get("client_secret"),
        _settings(plugin).stripe_publishable_key,
        str(session.get("status") or "requested"),
    )


class SessionStatus(Struct, frozen=True):
    status: str | None
    label: str
    failure_code: str | None
    consent_url: str | None = None
    #: Once paid: what the customer paid, the tip included (minor units).
    paid: int | None = None


_LABELS = {
    "requires_action": "Waiting for your approval",
    "processing": "Processing",
    "authorized": "Authorised",
    "succeeded": "Paid. Thank you!",
    "failed": "The payment failed",
    "canceled": "The payment was cancelled",
}


@get(_PAY_PATH + "/status", exclude_from_auth=True)
async def pay_status(
    plugin: NamedDependency[PluginContext],
    tenant: FromPath[str],
    order_id: FromPath[str],
    attempt_id: FromPath[str],
    amount: Annotated[int, QueryParameter(ge=1)],
    currency: Annotated[str, QueryParameter(min_length=3, max_length=3)],
    sig: Annotated[str, QueryParameter(max_length=128)],
) -> SessionStatus:
    _, session = await _checked(plugin, tenant, order_id, attempt_id, amount, currency, sig)
    status = session.get("status")
    action = session.get("action") or {}
    paid = None
    if status == "succeeded":
        paid = int(session.get("amount") or 0) + int(session.get("tip") or 0)
    return SessionStatus(
        status,
        _LABELS.get(str(status), ""),
        session.get("failure_code"),
        action.get("url"),
        paid,
    )


# Apple Pay's domain file, at the root --------------------------------------------------


@get("/.well-known/apple-developer-merchantid-domain-association", exclude_from_auth=True)
async def apple_pay_association(plugin: NamedDependency[PluginContext]) -> Response[str]:
    """The file Apple fetches to verify the domain (FYNLO_PROVIDERS_APPLE_PAY_ASSOCIATION)."""
    text = _settings(plugin).apple_pay_association
    if not text:
        raise NotConfiguredError(
            "FYNLO_PROVIDERS_APPLE_PAY_ASSOCIATION is not set", provider="apple_pay"
        )
    return Response(text, media_type="text/plain")


ROUTES = [webhook, new_qr, pay_by_card, pay_page, pay_by_bank, pay_by_apple_pay, pay_status]
ROOT_ROUTES = [apple_pay_association]
