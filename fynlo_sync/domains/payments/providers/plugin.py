"""The ``providers`` plugin: provider settings, the ``payment_sessions`` collection a
terminal reads, and the server module with the webhook routes, the pay-at-table page and
Apple Pay's domain association file.

A payment session (one record per payment attempt, id = the attempt id) is what the
provider said last, in our terms: ``provider``, ``provider_id``, ``status`` (the port's
table), ``action`` (what the customer must do: 3-D Secure, or the bank consent the QR
opens), ``pay_url`` (the signed pay-at-table link the QR holds), ``wallet``, and a
``finding`` (``late-failure``, ``taken-after-close``) a manager must see. Only the server
writes sessions; terminals read them. The attempt itself (its state, the money) lives in the
order and is moved by the ``payment_*`` commands the server authors from the same report.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import msgspec

from fynlo_sync.domains.payments.attempts import OFFLINE_OVERRIDE, REFUND_ABOVE_LIMIT
from fynlo_sync.domains.payments.providers import STATUSES, ProviderPayment, is_newer
from fynlo_sync.domains.payments.providers.flow import attempt_commands, attempt_state
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.hlc import from_wire, millis_of
from fynlo_sync.ops import Change, Op
from fynlo_sync.plugins import (
    SERVER_NODE,
    Collection,
    Command,
    CommandContext,
    DomainPlugin,
    Draft,
    Effect,
    EffectHandler,
    Field,
)

__all__ = [
    "API_REFUND_METHODS",
    "ORDERS",
    "SESSIONS",
    "SESSIONS_COLLECTION",
    "ProvidersPlugin",
    "ProvidersSettings",
    "made_offline",
    "refund_command",
    "refundable",
    "report_drafts",
    "session_view",
    "sessions_collection",
]

ORDERS = "orders"

SESSIONS = "payment_sessions"


class ProvidersSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``FYNLO_PROVIDERS_*``.

    ``pay_link_secret`` (32+ characters) signs the QR's pay links; ``public_url`` is the
    address a customer's phone reaches the server at. Stripe: ``stripe_secret_key``,
    ``stripe_webhook_secret``, ``stripe_api_base`` (empty: Stripe itself; localstripe in
    tests), ``stripe_publishable_key`` (for the pay page). The bank: ``bank_url``,
    ``bank_api_key``, ``bank_webhook_secret``. ``apple_pay_association``: the text of the
    domain association file Apple gives (served at
    ``/.well-known/apple-developer-merchantid-domain-association``)."""

    pay_link_secret: Annotated[str, msgspec.Meta(min_length=32)]
    public_url: str = "http://127.0.0.1:8000"
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", max_length=3)] = "GBP"
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    stripe_publishable_key: str = ""
    bank_url: str = ""
    bank_api_key: str = ""
    bank_webhook_secret: str = ""
    apple_pay_association: str = ""


def _server_only(before: Mapping[str, Any] | None, after: Mapping[str, Any], op: Op) -> None:
    if op.node_id != SERVER_NODE:
        raise RejectedOpError(
            "payment sessions are written by the server only", reason="server-only"
        )
    status = after.get("status")
    if status is not None and status not in STATUSES:
        raise RejectedOpError(f"unknown session status {status!r}", reason="invalid-field")


def _refuse(reason: str, detail: str, **extra: Any) -> RejectedOpError:
    return RejectedOpError(detail, reason=reason, **extra)


def capture_command(ctx: CommandContext) -> dict[str, Any]:
    """``capture`` ``{"tip"}`` (a terminal's command on a held card payment, manual
    capture): capture the session's amount plus ``tip``, at most what the provider holds
    (``capturable``: a tip after authorisation fits in what was authorised; there is no
    incremental authorisation). Asked once: a second capture is refused, never charged."""
    session = ctx.record
    if session is None:
        raise _refuse("record-not-found", "no such payment session")
    if session.get("capture") != "manual":
        raise _refuse("not-manual-capture", "this payment is captured automatically")
    if session.get("capture_amount") is not None:
        raise _refuse("capture-requested", "a capture was already asked for this payment")
    if session.get("status") != "authorized":
        raise _refuse("not-authorised", f"the payment is {session.get('status')!r}, not authorized")
    tip = ctx.args.get("tip", 0)
    if type(tip) is not int or tip < 0:
        raise _refuse("invalid-tip", "tip must be an integer >= 0 (minor units)")
    total = int(session.get("amount") or 0) + tip
    capturable = int(session.get("capturable") or 0)
    if total > capturable:
        raise _refuse(
            "capture-above-authorised",
            f"{total} is more than the {capturable} authorised",
            capturable=capturable,
        )
    return {"capture_tip": tip, "capture_amount": total, "capture_requested_ms": ctx.received_ms}


#: Methods refunded through Stripe's refund API (the bank has none: ``manual-refund``).
API_REFUND_METHODS = frozenset({"card", "apple_pay"})


def refundable(session: Mapping[str, Any]) -> int:
    """What the session's payment may still have refunded through the provider: what it
    took (the capture asked for, else what the provider received) minus every refund asked
    that was not refused."""
    asked = session.get("capture_amount")
    taken = int(session.get("received") or 0)
    if asked is not None:
        taken = min(taken, int(asked))
    results = session.get("refund_results") or {}
    out = 0
    for rid, req in (session.get("refunds") or {}).items():
        if (results.get(rid) or {}).get("status") != "refused":
            out += int(req["amount"])
    return taken - out


def made_offline(ctx: CommandContext, offline_after_ms: int | None) -> bool:
    """Whether the server finds the op made offline (19.4): it received the batch more than
    ``offline_after_ms`` after the time of the op's HLC (the op waited in the terminal's
    outbox). A terminal applying the op has no receive time (False: the server's answer
    replaces its prediction); the server's own ops, and a registry without the payments
    plugin (``offline_after_ms`` None), are never offline."""
    if offline_after_ms is None or ctx.received_ms is None or ctx.op.node_id == SERVER_NODE:
        return False
    return ctx.received_ms - millis_of(from_wire(ctx.op.hlc)) > offline_after_ms


def refund_command(
    ctx: CommandContext, *, current_limit: int | None = None, offline_after_ms: int | None = None
) -> dict[str, Any]:
    """``refund`` ``{"refund_id", "amount", "approved_by"?}`` (a terminal's command on a
    card or Apple Pay payment that was taken): ask the provider to give ``amount`` back.
    Bounded by what was taken and not yet refunded (refused ``refund-above-captured``,
    with ``refundable``: the provider is never asked for more; localstripe would accept
    it). The ``refund`` effect (key ``refund:<attempt>:<refund_id>``) makes the call and,
    once the provider confirms, the server authors the order's ``payment_refund``. A bank
    payment has no refund by API: ``manual-refund`` (a manager pays it back by transfer
    and records it with the order's ``payment_refund``).

    ``current_limit`` and ``offline_after_ms`` are the payments plugin's refund limit and
    offline window as they are now (None without the payments plugin): a session with no
    stored ``refund_limit`` (made before it was kept) takes the current limit, never none;
    a request the server finds made offline needs a manager (``payment.offline``)."""
    session = ctx.record
    if session is None:
        raise _refuse("record-not-found", "no such payment session")
    method = str(session.get("method") or "")
    if method == "open_banking":
        raise _refuse(
            "manual-refund",
            "a bank payment is refunded by a transfer from the restaurant's account, not "
            "through the provider: record it with the order's payment_refund",
            method=method,
        )
    if method not in API_REFUND_METHODS:
        raise _refuse("invalid-method", f"no provider refund for method {method!r}")
    if session.get("status") != "succeeded":
        raise _refuse(
            "not-captured",
            f"the payment is {session.get('status')!r}: nothing was taken to refund",
            status=session.get("status"),
        )
    refund_id = ctx.args.get("refund_id")
    if not isinstance(refund_id, str) or not 0 < len(refund_id) <= 64:
        raise _refuse(
            "invalid-argument", "refund_id must be 1 to 64 characters", argument="refund_id"
        )
    refunds = dict(session.get("refunds") or {})
    if refund_id in refunds:
        raise _refuse("duplicate-refund", f"refund {refund_id!r} was already asked for")
    amount = ctx.args.get("amount")
    if type(amount) is not int or amount < 1:
        raise _refuse("invalid-amount", "amount must be an integer >= 1 (minor units)")
    left = refundable(session)
    if amount > left:
        raise _refuse(
            "refund-above-captured",
            f"only {left} of this payment is left to refund",
            refundable=left,
        )
    approved_by = ctx.args.get("approved_by")
    if approved_by is not None and not isinstance(approved_by, str):
        raise _refuse("invalid-argument", "approved_by must be a string", argument="approved_by")
    limit = session.get("refund_limit")
    if type(limit) is not int:
        limit = current_limit  # a session made before the limit was kept on it
    if type(limit) is int and amount > limit:
        # The payments plugin's refund limit (19.5), checked before the provider is asked:
        # the server's ``payment_refund`` carries this approval.
        why = f"a refund above {limit}"
        if ctx.require(REFUND_ABOVE_LIMIT, why):
            approved_by = ctx.op.actor_id
        elif approved_by is None:
            raise _refuse("manager-required", f"{why} needs a manager's approval")
    if made_offline(ctx, offline_after_ms):
        # 19.4's offline risk limit: a refund made offline needs a manager.
        why = "a refund made offline"
        if ctx.require(OFFLINE_OVERRIDE, why):
            approved_by = ctx.op.actor_id
        elif approved_by is None:
            raise _refuse("manager-required", f"{why} needs a manager's approval")
    refunds[refund_id] = {
        "amount": amount,
        "by": ctx.op.node_id,
        "actor": ctx.op.actor_id,
        "approved_by": approved_by,
        "requested_ms": ctx.received_ms,
    }
    return {"refunds": refunds}


SESSIONS_COLLECTION = Collection(
    name=SESSIONS,
    fields={
        "order_id": Field("str", required=True),
        "method": Field("str"),
        "provider": Field("str"),
        "provider_id": Field("any"),
        "status": Field("str"),
        "amount": Field("money"),
        "currency": Field("str"),
        "action": Field("any"),
        "pay_url": Field("any"),
        "wallet": Field("any"),
        "failure_code": Field("any"),
        "finding": Field("any"),
        "received": Field("money"),
        "settled": Field("bool"),
        "tip": Field("money"),
        "requested_ms": Field("int"),
        "client_secret": Field("any"),
        "webhook": Field("any"),
        "payment_method": Field("any"),
        "capture": Field("any"),
        "capturable": Field("money"),
        "capture_tip": Field("money", command_only=True),
        "capture_amount": Field("money", command_only=True),
        "capture_requested_ms": Field("any", command_only=True),
        "refund_limit": Field("any"),
        "refunds": Field("any", command_only=True),
        "refund_results": Field("any"),
        "updated_ms": Field("int"),
    },
    strategy="server_wins",
    validate=_server_only,
    commands={"capture": capture_command, "refund": refund_command},
)


def sessions_collection(current_limit: int | None, offline_after_ms: int | None) -> Collection:
    """The sessions collection whose ``refund`` decides with the payments plugin's refund
    limit and offline window (both None without the payments plugin)."""

    def refund(ctx: CommandContext) -> dict[str, Any]:
        return refund_command(ctx, current_limit=current_limit, offline_after_ms=offline_after_ms)

    commands: dict[str, Command] = {**SESSIONS_COLLECTION.commands, "refund": refund}
    return dataclasses.replace(SESSIONS_COLLECTION, commands=commands)


class ProvidersPlugin(DomainPlugin):
    """Stripe (cards, Apple Pay) and open banking for the payments plugin."""

    name = "providers"
    settings_model: ClassVar[type[msgspec.Struct] | None] = ProvidersSettings
    server_module: ClassVar[str | None] = "server.payment_providers"

    #: The payments plugin's refund limit and offline window (ms) beside which this plugin
    #: runs (:meth:`beside`), or None without it.
    refund_limit: int | None = None
    offline_after_ms: int | None = None

    def beside(self, plugins: tuple[DomainPlugin, ...]) -> ProvidersPlugin:
        """A copy that took the payments plugin's refund limit and offline window (the
        session's ``refund`` decides with them), or itself without the payments plugin."""
        rules = next((getattr(p, "rules", None) for p in plugins if p.name == "payments"), None)
        limit = getattr(rules, "refund_manager_limit", None)
        window = getattr(rules, "offline_after_ms", None)
        if type(limit) is not int and type(window) is not int:
            return self
        decided = copy.copy(self)
        decided.refund_limit = limit if type(limit) is int else None
        decided.offline_after_ms = window if type(window) is int else None
        return decided

    def collections(self) -> tuple[Collection, ...]:
        if self.refund_limit is None and self.offline_after_ms is None:
            return (SESSIONS_COLLECTION,)
        return (sessions_collection(self.refund_limit, self.offline_after_ms),)

    def effects(self, changes: list[Change]) -> list[Effect]:
        """A session whose payment was asked for (``requested_ms``) and not yet made calls
        for the ``start`` effect, keyed by the attempt; a session with a webhook event
        noted (``webhook``) for the ``webhook`` effect, keyed by the provider's event id.
        Planned again (by any later change of the session), an effect is kept once."""
        out: list[Effect] = []
        for change in changes:
            record = change.record
            if record.collection == ORDERS and not record.deleted:
                out.extend(_cancels(change))
                continue
            if record.collection != SESSIONS or record.deleted:
                continue
            fields = record.fields
            if fields.get("requested_ms") and not fields.get("provider_id"):
                out.append(
                    Effect(
                        self.name,
                        "start",
                        {"attempt_id": record.record_id},
                        key=f"start:{record.record_id}",
                    )
                )
            if fields.get("capture_amount") is not None and fields.get("status") == "authorized":
                out.append(
                    Effect(
                        self.name,
                        "capture",
                        {"attempt_id": record.record_id},
                        key=f"capture:{record.record_id}",
                    )
                )
            results = fields.get("refund_results") or {}
            for refund_id in sorted(fields.get("refunds") or {}):
                payload = {"attempt_id": record.record_id, "refund_id": refund_id}
                if refund_id not in results:
                    key = f"refund:{record.record_id}:{refund_id}"
                    out.append(Effect(self.name, "refund", payload, key=key))
                elif (results[refund_id] or {}).get("status") == "pending":
                    # The provider said ``pending``: ask again until it settles (25.7).
                    key = f"refund-check:{record.record_id}:{refund_id}"
                    out.append(Effect(self.name, "refund_check", payload, key=key))
            note = fields.get("webhook")
            if isinstance(note, Mapping) and note.get("event_id"):
                out.append(
                    Effect(
                        self.name,
                        "webhook",
                        {
                            "attempt_id": record.record_id,
                            "provider": str(note.get("provider")),
                            "provider_id": str(note.get("id")),
                            "event_id": str(note["event_id"]),
                        },
                        key=f"webhook:{note.get('provider')}:{note['event_id']}",
                    )
                )
        return out

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        from fynlo_sync.domains.payments.providers.effects import (
            cancel,
            capture,
            refund,
            refund_check,
            start,
            webhook,
        )

        return {
            "cancel": cancel,
            "capture": capture,
            "refund": refund,
            "refund_check": refund_check,
            "start": start,
            "webhook": webhook,
        }


#: Methods with a provider payment to cancel.
PROVIDER_METHODS = frozenset({"card", "apple_pay", "open_banking"})


def _cancels(change: Change) -> list[Effect]:
    """A terminal's ``payment_cancel`` of a provider attempt (a change of the order's
    payments by a node other than ``server`` that leaves it ``cancelled``) calls for the
    ``cancel`` effect, keyed by the attempt: the provider's payment is cancelled too (before
    authorisation, or a hold not yet captured), so it cannot take the money later."""
    record = change.record
    stamp = record.stamps.get("payments")
    if change.node_id == SERVER_NODE or stamp is None or stamp.seq != change.seq:
        return []
    out: list[Effect] = []
    for attempt_id, attempt in sorted((record.fields.get("payments") or {}).items()):
        if attempt.get("state") == "cancelled" and attempt.get("method") in PROVIDER_METHODS:
            out.append(
                Effect(
                    "providers",
                    "cancel",
                    {"attempt_id": attempt_id, "order_id": record.record_id},
                    key=f"cancel:{attempt_id}",
                )
            )
    return out


def session_view(session: Mapping[str, Any], attempt_id: str) -> ProviderPayment | None:
    """What a session last recorded, as a provider report (None before the first)."""
    if not session.get("status") or not session.get("provider_id"):
        return None
    return ProviderPayment(
        provider=str(session.get("provider")),
        provider_id=str(session["provider_id"]),
        attempt_id=attempt_id,
        status=session["status"],
        raw_status="",
        amount=int(session.get("amount") or 0),
        currency=str(session.get("currency") or ""),
        amount_received=int(session.get("received") or 0),
        settled=bool(session.get("settled")),
    )


def report_drafts(
    attempt_id: str,
    session: Mapping[str, Any],
    order: Mapping[str, Any] | None,
    payment: ProviderPayment,
    *,
    payments_loaded: bool,
    now_ms: int,
) -> list[Draft]:
    """The server ops a provider report calls for: the order's ``payment_*`` commands (when
    the payments plugin is loaded) and the session's patch, only for what is newer. A
    duplicate or older report yields nothing."""
    order_id = str(session["order_id"])
    drafts: list[Draft] = []
    finding = None
    if payments_loaded:
        tip, asked = session.get("capture_tip"), session.get("capture_amount")
        plan = attempt_commands(
            attempt_id,
            attempt_state(order, attempt_id),
            payment,
            tip=None if tip is None else int(tip),
            asked=None if asked is None else int(asked),
        )
        drafts += [Draft.command(ORDERS, order_id, n, a) for n, a in plan.commands]
        finding = plan.finding
    fresh_finding = finding is not None and session.get("finding") != finding
    if is_newer(session_view(session, attempt_id), payment) or fresh_finding:
        action = payment.action
        patch: dict[str, Any] = {
            "provider": payment.provider,
            "provider_id": payment.provider_id,
            "status": payment.status,
            "received": payment.amount_received,
            "settled": payment.settled,
            "failure_code": payment.failure_code,
            "capturable": payment.amount_capturable,
            "action": None
            if action is None
            else {
                "type": action.type,
                "url": action.url,
                "client_secret": action.client_secret,
                "expires_at_ms": action.expires_at_ms,
            },
            "updated_ms": now_ms,
        }
        if payment.wallet:
            patch["wallet"] = payment.wallet
            patch["client_secret"] = payment.client_secret
        if fresh_finding:
            patch["finding"] = finding
        drafts.append(Draft.patch(SESSIONS, attempt_id, patch))
    return drafts
