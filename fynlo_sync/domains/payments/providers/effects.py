"""The providers plugin's effect handlers: every provider call that moves money runs here,
from a durable effect (the floor's outbox), never from a request handler.

``start`` (key ``start:<attempt_id>``, planned when the pay page commits a session's
request): create the attempt's payment at its provider (Stripe for cards and Apple Pay, the
bank for open banking) and confirm it when a payment method is known. On a re-run
(``ctx.attempt > 1``: the worker died, the lease ran out, the outcome was ambiguous) the
payment is looked up by the attempt id before anything is created. What the provider said
is authored with the effect's completion (:func:`.plugin.report_drafts`), so it is recorded
exactly once.

``webhook`` (key ``webhook:<provider>:<event id>``, planned when the webhook route noted a
verified event on the session): re-fetch the payment the event names (the event's own
snapshot may be older than what was seen already) and report it, and settle the refunds
of it that were ``pending`` and are no longer.

``refund`` (key ``refund:<attempt>:<refund_id>``) and ``refund_check`` (key
``refund-check:<attempt>:<refund_id>``, for a refund the provider reported ``pending``):
only a ``succeeded`` refund authors the order's ``payment_refund``.

All decide what to author under the tenant's lock, at completion
(:meth:`~fynlo_sync.effects.OpAuthor.decide`): a report that is not newer than the session
and the order at that moment (another effect, another event got there first) authors
nothing, so reports in any order converge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    PaymentProvider,
    ProviderAmbiguousError,
    ProviderPayment,
    ProviderRefund,
    ProviderRefusedError,
    RefundBoundError,
    flow,
)
from fynlo_sync.domains.payments.providers.plugin import (
    API_REFUND_METHODS,
    ORDERS,
    SESSIONS,
    ProvidersSettings,
    report_drafts,
)
from fynlo_sync.effects import (
    Draft,
    EffectContext,
    PermanentEffectError,
    RetryableEffectError,
)
from fynlo_sync.ops import Record

__all__ = ["cancel", "capture", "make_provider", "refund", "refund_check", "start", "webhook"]


def make_provider(settings: ProvidersSettings, method: str) -> PaymentProvider:
    """The provider of ``method`` from the plugin's settings (its own HTTP client)."""
    if method == "open_banking":
        if not settings.bank_url:
            raise PermanentEffectError("FYNLO_PROVIDERS_BANK_URL is not set")
        from fynlo_sync.domains.payments.providers.open_banking import OpenBankingProvider

        return OpenBankingProvider(
            settings.bank_url,
            api_key=settings.bank_api_key,
            webhook_secret=settings.bank_webhook_secret,
        )
    if not settings.stripe_secret_key:
        raise PermanentEffectError("FYNLO_PROVIDERS_STRIPE_SECRET_KEY is not set")
    from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider

    return StripeProvider(
        settings.stripe_secret_key,
        webhook_secret=settings.stripe_webhook_secret,
        api_base=settings.stripe_api_base or None,
    )


async def _session(ctx: EffectContext, attempt_id: str) -> Mapping[str, Any]:
    """The fields of the attempt's payment session (none, or deleted: a permanent error)."""
    session = await ctx.read(SESSIONS, attempt_id)
    if session is None or session.deleted:
        raise PermanentEffectError(f"no payment session {attempt_id!r}")
    return session.fields


@asynccontextmanager
async def _provider(ctx: EffectContext, method: str) -> AsyncIterator[PaymentProvider]:
    """The provider of ``method`` for one call, closed after it; an ambiguous outcome (a
    timeout, a 5xx) is retried by the outbox, which looks the payment up first."""
    provider = make_provider(ctx.settings, method)
    try:
        yield provider
    except ProviderAmbiguousError as exc:
        raise RetryableEffectError(exc.detail) from exc
    finally:
        await provider.aclose()  # type: ignore[attr-defined]


async def start(ctx: EffectContext) -> None:
    attempt_id = str(ctx.effect.payload["attempt_id"])
    fields = await _session(ctx, attempt_id)
    if fields.get("provider_id"):
        return  # recorded by an earlier run (or a webhook that came first)
    state = flow.attempt_state(_fields(await ctx.read(ORDERS, str(fields["order_id"]))), attempt_id)
    if state in _CLOSED:
        # The terminal closed the attempt before its payment was made: make none (the
        # ``cancel`` effect cancels one an earlier run may have made).
        ctx.author.patch(
            SESSIONS,
            attempt_id,
            {"status": "canceled", "failure_code": f"attempt-{state}", "updated_ms": ctx.now_ms},
        )
        return
    method = str(fields.get("method") or "open_banking")
    request = CreatePayment(
        attempt_id=attempt_id,
        amount=int(fields["amount"]) + int(fields.get("tip") or 0),
        currency=str(fields["currency"]),
        tenant=ctx.tenant,
        wallet="apple_pay" if method == "apple_pay" else None,
        capture="manual" if fields.get("capture") == "manual" else "automatic",
        payment_method=str(fields["payment_method"]) if fields.get("payment_method") else None,
        reference=f"Order {fields['order_id']}"[:18],
    )
    async with _provider(ctx, method) as provider:
        try:
            payment = await flow.start(provider, request, retry=ctx.attempt > 1)
        except ProviderRefusedError as exc:
            # Refused for good: say so on the session (committed with the effect's completion).
            ctx.author.patch(
                SESSIONS,
                attempt_id,
                {"status": "failed", "failure_code": "provider-refused", "updated_ms": ctx.now_ms},
            )
            del exc
            return
    report(ctx, attempt_id, str(fields["order_id"]), payment)


def report(ctx: EffectContext, attempt_id: str, order_id: str, payment: ProviderPayment) -> None:
    """Author what ``payment`` says of the attempt, decided at the effect's completion from
    the session and the order as they are then: only what is newer."""
    session_key, order_key = (SESSIONS, attempt_id), (ORDERS, order_id)

    def build(found: Mapping[tuple[str, str], Record]) -> Sequence[Draft]:
        session = found.get(session_key)
        if session is None or session.deleted:
            return []
        order = found.get(order_key)
        return report_drafts(
            attempt_id,
            session.fields,
            None if order is None else order.fields,
            payment,
            payments_loaded=True,  # no attempt in the order: no order commands
            now_ms=ctx.now_ms,
        )

    ctx.author.decide([session_key, order_key], build)


async def capture(ctx: EffectContext) -> None:
    """Capture a held card payment for the amount the terminal's ``capture`` command fixed
    (the session's amount plus the tip). :func:`.flow.capture` looks the payment up first
    and captures only one that is still held, so a re-run after an ambiguous outcome (a
    timeout, a 5xx, a crash after the call) finds the capture made and charges nothing
    more."""
    attempt_id = str(ctx.effect.payload["attempt_id"])
    fields = await _session(ctx, attempt_id)
    amount = int(fields["capture_amount"])
    async with _provider(ctx, str(fields.get("method") or "card")) as provider:
        try:
            payment = await flow.capture(provider, attempt_id, amount)
        except ProviderRefusedError as exc:
            raise PermanentEffectError(f"the provider refused the capture: {exc.detail}") from exc
    if payment is None:
        raise PermanentEffectError(f"no provider payment for attempt {attempt_id!r}")
    report(ctx, attempt_id, str(fields["order_id"]), payment)


#: The method whose provider a webhook's provider name is.
_METHOD_OF = {"stripe": "card", "bank": "open_banking"}


async def webhook(ctx: EffectContext) -> None:
    payload = ctx.effect.payload
    attempt_id = str(payload["attempt_id"])
    method = _METHOD_OF.get(str(payload["provider"]))
    if method is None:
        raise PermanentEffectError(f"no provider {payload['provider']!r}")
    fields = await _session(ctx, attempt_id)
    pending = _pending_refunds(fields)
    async with _provider(ctx, method) as provider:
        try:
            payment = await flow.refresh(provider, attempt_id, str(payload["provider_id"]))
            refunds = (
                await provider.find_refunds(payment.provider_id) if payment and pending else []
            )
        except ProviderRefusedError as exc:
            raise PermanentEffectError(f"the provider refused the look-up: {exc.detail}") from exc
    if payment is None:
        return
    if payment.attempt_id and payment.attempt_id != attempt_id:
        raise PermanentEffectError(
            f"payment {payment.provider_id!r} is of attempt {payment.attempt_id!r}, "
            f"not {attempt_id!r}"
        )
    order_id = str(fields["order_id"])
    report(ctx, attempt_id, order_id, payment)
    # Any event of the payment (Stripe's ``refund.updated``, ``charge.refund.updated``,
    # ``charge.refunded``) settles its refunds the provider no longer reports pending, even
    # one whose ``refund_check`` effect has given up (25.7).
    settles = [
        (found.ours, pending[found.ours], found)
        for found in sorted(refunds, key=lambda r: (r.ours, r.refund_id))
        if found.ours in pending and flow.refund_outcome(found.status) != "pending"
    ]
    if settles:
        _settle_refunds(ctx, attempt_id, order_id, settles)


def _pending_refunds(fields: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The refunds asked on the session whose result is ``pending``, by our refund id."""
    results = fields.get("refund_results") or {}
    asked = fields.get("refunds") or {}
    return {
        refund_id: asked[refund_id]
        for refund_id in sorted(results)
        if (results[refund_id] or {}).get("status") == "pending" and refund_id in asked
    }


async def _asked_refund(
    ctx: EffectContext,
) -> tuple[str, str, Mapping[str, Any], Mapping[str, Any]]:
    """The effect's attempt and refund ids, the session's fields and the refund asked."""
    attempt_id = str(ctx.effect.payload["attempt_id"])
    refund_id = str(ctx.effect.payload["refund_id"])
    fields = await _session(ctx, attempt_id)
    asked = (fields.get("refunds") or {}).get(refund_id)
    if asked is None:
        raise PermanentEffectError(f"no refund {refund_id!r} asked on {attempt_id!r}")
    return attempt_id, refund_id, fields, asked


async def refund(ctx: EffectContext) -> None:
    """Refund what a terminal asked (the session's ``refund`` command) at the provider,
    then record it: the server authors the order's ``payment_refund`` (the ledger posts the
    refund's set) and the session's ``refund_results``, under the tenant's lock, once.

    Bounded by our own record first: the order's attempt (what it captured minus what is
    refunded, :func:`~fynlo_sync.domains.payments.attempts.attempt_net`) must cover the
    amount, or the refund is ``refused`` (``refund-above-captured``) and the provider is
    not asked. The idempotency key (``fynlo:<attempt>:refund-<refund_id>``) comes from the
    effect's payload, committed before the call; on a re-run the payment's refunds are
    looked up by our refund id (:func:`.flow.refund`) before another is made."""
    attempt_id, refund_id, fields, asked = await _asked_refund(ctx)
    if refund_id in (fields.get("refund_results") or {}):
        return  # recorded by an earlier run
    amount = int(asked["amount"])
    order_id = str(fields["order_id"])
    method = str(fields.get("method") or "card")
    order = await ctx.read(ORDERS, order_id)
    attempt = _attempt_of(order, attempt_id)
    if method not in API_REFUND_METHODS:
        _refund_result(ctx, attempt_id, refund_id, {"status": "refused", "reason": "manual-refund"})
        return
    if attempt is not None:
        left = _net(attempt)
        if refund_id in (attempt.get("refunds") or {}) or amount > left:
            reason = "duplicate-refund" if refund_id in (attempt.get("refunds") or {}) else None
            _refund_result(
                ctx,
                attempt_id,
                refund_id,
                {
                    "status": "refused",
                    "reason": reason or "refund-above-captured",
                    "refundable": left,
                },
            )
            return
    provider_id = fields.get("provider_id")
    if not provider_id:
        raise PermanentEffectError(f"no provider payment recorded for {attempt_id!r}")
    async with _provider(ctx, method) as provider:
        try:
            done = await flow.refund(
                provider, attempt_id, str(provider_id), refund_id, amount, retry=ctx.attempt > 1
            )
        except (ProviderRefusedError, RefundBoundError) as exc:
            reason = str(exc.extra.get("reason") or exc.code)
            _refund_result(
                ctx,
                attempt_id,
                refund_id,
                {"status": "refused", "reason": reason, "detail": exc.detail},
            )
            return
    _settle_refund(ctx, attempt_id, order_id, refund_id, asked, done)


def _settle_refund(
    ctx: EffectContext,
    attempt_id: str,
    order_id: str,
    refund_id: str,
    asked: Mapping[str, Any],
    done: ProviderRefund,
) -> None:
    """Record what the provider says of one refund (:func:`_settle_refunds`)."""
    _settle_refunds(ctx, attempt_id, order_id, [(refund_id, asked, done)])


def _provider_result(done: ProviderRefund) -> dict[str, Any]:
    """The session's ``refund_results`` entry for what the provider says of a refund
    (:func:`.flow.refund_outcome`): ``succeeded``; ``refused`` for ``failed``/``canceled``,
    with the reason (the amount is refundable again); ``pending`` for anything else."""
    outcome = flow.refund_outcome(done.status)
    result: dict[str, Any] = {
        "status": outcome,
        "amount": done.amount,
        "provider_refund_id": done.refund_id,
        "provider_status": done.status,
    }
    if outcome == "refused":
        result["reason"] = f"provider-{done.status}"
        if done.failure_reason:
            result["provider_reason"] = done.failure_reason
    return result


#: One refund to settle: our refund id, the refund asked (the session's ``refunds``
#: entry), and the provider's refund.
Settle = tuple[str, Mapping[str, Any], ProviderRefund]


def _settle_refunds(
    ctx: EffectContext, attempt_id: str, order_id: str, settles: Sequence[Settle]
) -> None:
    """Record what the provider says of each refund, decided at completion from the
    session and the order as they are then: a ``succeeded`` refund authors the order's
    ``payment_refund`` (when the order has the attempt and not yet this refund: the money
    is back with the customer); every refund still open (no result, or ``pending``) gets
    its result. One decision for them all: ``refund_results`` is patched once, whole, so
    two refunds settled by one effect (a webhook) both land."""
    session_key, order_key = (SESSIONS, attempt_id), (ORDERS, order_id)

    def build(found: Mapping[tuple[str, str], Record]) -> Sequence[Draft]:
        session = found.get(session_key)
        if session is None or session.deleted:
            return []
        results = dict(session.fields.get("refund_results") or {})
        attempt = _attempt_of(found.get(order_key), attempt_id)
        drafts: list[Draft] = []
        changed = False
        for refund_id, asked, done in settles:
            if not _open(results, refund_id):
                continue
            result = _provider_result(done)
            results[refund_id] = {**result, "updated_ms": ctx.now_ms}
            changed = True
            if result["status"] != "succeeded" or attempt is None:
                continue
            if refund_id in (attempt.get("refunds") or {}):
                continue
            args: dict[str, Any] = {
                "attempt_id": attempt_id,
                "refund_id": refund_id,
                "amount": done.amount,
            }
            approver = asked.get("approved_by")  # the request's approval (25.7)
            if approver:
                args["approved_by"] = approver
            drafts.append(Draft.command(ORDERS, order_id, "payment_refund", args))
        if changed:
            drafts.append(Draft.patch(SESSIONS, attempt_id, {"refund_results": results}))
        return drafts

    ctx.author.decide([session_key, order_key], build)


async def refund_check(ctx: EffectContext) -> None:
    """A refund the provider reported ``pending`` (key ``refund-check:<attempt>:<id>``):
    ask again (the refund found by our refund id) until it is ``succeeded`` (the order's
    ``payment_refund`` is authored then), ``failed`` or ``canceled`` (``refused``). Still
    pending: retried with the outbox's backoff (:class:`RetryableEffectError`)."""
    attempt_id, refund_id, fields, asked = await _asked_refund(ctx)
    if (fields.get("refund_results") or {}).get(refund_id, {}).get("status") != "pending":
        return  # settled already
    async with _provider(ctx, str(fields.get("method") or "card")) as provider:
        try:
            done = await flow.refund_status(provider, str(fields["provider_id"]), refund_id)
        except ProviderRefusedError as exc:
            raise RetryableEffectError(f"the provider refused the look-up: {exc.detail}") from exc
    if done is None:
        raise PermanentEffectError(f"the provider has no refund {refund_id!r} of {attempt_id!r}")
    if flow.refund_outcome(done.status) == "pending":
        raise RetryableEffectError(f"refund {refund_id!r} is still {done.status!r}")
    _settle_refund(ctx, attempt_id, str(fields["order_id"]), refund_id, asked, done)


def _attempt_of(order: Record | None, attempt_id: str) -> Mapping[str, Any] | None:
    if order is None or order.deleted:
        return None
    found = (order.fields.get("payments") or {}).get(attempt_id)
    return found if isinstance(found, Mapping) else None


def _net(attempt: Mapping[str, Any]) -> int:
    from fynlo_sync.domains.payments.attempts import attempt_net

    return attempt_net(attempt)


def _refund_result(
    ctx: EffectContext, attempt_id: str, refund_id: str, result: Mapping[str, Any]
) -> None:
    key = (SESSIONS, attempt_id)

    def build(found: Mapping[tuple[str, str], Record]) -> Sequence[Draft]:
        session = found.get(key)
        if session is None or session.deleted:
            return []
        results = dict(session.fields.get("refund_results") or {})
        if not _open(results, refund_id):
            return []
        results[refund_id] = {**result, "updated_ms": ctx.now_ms}
        return [Draft.patch(SESSIONS, attempt_id, {"refund_results": results})]

    ctx.author.decide([key], build)


def _open(results: Mapping[str, Any], refund_id: str) -> bool:
    """A refund with no result yet, or one still ``pending``, may be settled."""
    return (results.get(refund_id) or {}).get("status") in (None, "pending")


#: Attempt states in which no payment may be made for the attempt.
_CLOSED = frozenset({"failed", "cancelled", "expired"})


def _fields(record: Record | None) -> Mapping[str, Any] | None:
    return None if record is None or record.deleted else record.fields


async def cancel(ctx: EffectContext) -> None:
    """A terminal cancelled a provider attempt on the order (``payment_cancel``): cancel
    its payment at the provider too (key ``fynlo:<attempt>:cancel``), so money cannot be
    taken after the attempt closed. :func:`.flow.cancel` looks the payment up by the attempt
    id and cancels only a live one (before authorisation, or a hold); if the provider took
    the money already, the report is the ``taken-after-close`` finding (25.1)."""
    attempt_id = str(ctx.effect.payload["attempt_id"])
    session = await ctx.read(SESSIONS, attempt_id)
    if session is None or session.deleted or not session.fields.get("requested_ms"):
        return  # no provider was asked for this attempt
    fields = session.fields
    if not fields.get("provider_id") and fields.get("status") in ("canceled", "failed"):
        return  # the start made no payment (the attempt was closed first, or refused)
    if not fields.get("provider_id"):
        # The ``start`` effect has not recorded yet: try again once it has (it makes no
        # payment for a closed attempt, and says so on the session).
        raise RetryableEffectError(f"the start of {attempt_id!r} has not recorded yet")
    async with _provider(ctx, str(fields.get("method") or "card")) as provider:
        payment = await flow.cancel(provider, attempt_id)
    if payment is not None:
        report(ctx, attempt_id, str(fields["order_id"]), payment)
