"""Card refunds through Stripe, against localstripe (protocol 19.4, 25.7): a terminal asks
with the payment session's ``refund`` command; the ``refund`` effect (idempotency key
``fynlo:<attempt>:refund-<refund_id>``, our refund id in the refund's metadata) asks
Stripe; once Stripe confirms, the server authors the order's ``payment_refund`` and the
ledger posts the refund's set. The amount is bounded by what we recorded as taken and not
yet refunded (localstripe accepts over-refunds: we refuse them). A refund whose answer was
lost is looked up by our refund id, not made again. With ``card_results: server`` a
terminal's own ``payment_refund`` of a card is refused ``server-only``. A terminal's
``payment_cancel`` of a provider attempt cancels the payment at the provider too."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import httpx
import msgspec
import pytest
import stripe

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    PaymentProvider,
    ProviderAmbiguousError,
    ProviderRefund,
    flow,
)
from fynlo_sync.domains.payments.providers import effects as provider_effects
from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.sandbox.processes import ServiceProcess
from tests.providers.conftest import STRIPE_WEBHOOK_SECRET, PayWorld, open_pay_world, wait_until
from tests.providers.test_manual_capture import _rogue_till, _status
from tests.providers.test_pay_at_table import order_with_lines, session
from tests.providers.test_stripe import run

CARD = "/v1/plugins/providers/card"
AUTH = {"Authorization": "Bearer sk_test_fynlo"}


@pytest.fixture(scope="module")
def refund_world(
    tmp_path_factory: pytest.TempPathFactory, localstripe: ServiceProcess
) -> Iterator[PayWorld]:
    """The server with the orders, payments and providers plugins, wired to localstripe."""
    with open_pay_world(
        tmp_path_factory.mktemp("refunds"), localstripe.url, payments=True
    ) as world:
        yield world


def _stripe_refunds(world: PayWorld, pi: str) -> list[tuple[str, int]]:
    """Stripe's refunds of the intent that carry our refund id: (our id, amount)."""
    r = httpx.get(f"{world.stripe_url}/v1/refunds", params={"payment_intent": pi}, headers=AUTH)
    r.raise_for_status()
    return sorted(
        (str(x["metadata"]["fynlo_refund_id"]), int(x["amount"]))
        for x in r.json()["data"]
        if (x.get("metadata") or {}).get("fynlo_refund_id")
    )


def _paid(world: PayWorld) -> tuple[Any, str, str, str]:
    """A card payment of 3250 taken (automatic capture) and recorded on the order."""
    terminal, order_id = order_with_lines(world)
    body = {"order_id": order_id, "payment_method": "pm_card_visa"}
    attempt_id = terminal.transport.post(CARD, body)["attempt_id"]
    pi = _status(terminal, attempt_id, "succeeded").fields["provider_id"]

    def captured() -> Any:
        terminal.sync()
        a = terminal.get("orders", order_id).fields["payments"][attempt_id]
        return a["state"] == "captured"

    wait_until(captured, what="the attempt captured")
    return terminal, order_id, attempt_id, pi


def _result(terminal: Any, attempt_id: str, refund_id: str) -> dict[str, Any]:
    def done() -> Any:
        s = session(terminal, attempt_id)
        return s is not None and (s.fields.get("refund_results") or {}).get(refund_id)

    found: dict[str, Any] = wait_until(done, what=f"refund {refund_id} answered")
    return found


def _order_refunded(terminal: Any, order_id: str, attempt_id: str, refund_ids: set[str]) -> Any:
    def recorded() -> Any:
        terminal.sync()
        order = terminal.get("orders", order_id)
        a = order.fields["payments"][attempt_id]
        return order if set(a["refunds"]) == refund_ids else None

    return wait_until(recorded, what=f"refunds {sorted(refund_ids)} on the order")


def _refused(terminal: Any, attempt_id: str, args: dict[str, Any]) -> RejectedOpError:
    with pytest.raises(RejectedOpError) as refused:
        terminal.command("payment_sessions", attempt_id, "refund", args)
    return refused.value


def test_a_card_refund_is_made_at_stripe_once_and_recorded_by_the_server(
    refund_world: PayWorld,
) -> None:
    terminal, order_id, attempt_id, pi = _paid(refund_world)
    # The terminal cannot record a card refund itself: the provider makes it.
    direct = {"attempt_id": attempt_id, "refund_id": "r0", "amount": 100}
    with pytest.raises(RejectedOpError) as server_only:
        terminal.command("orders", order_id, "payment_refund", direct)
    assert server_only.value.extra["reason"] == "server-only"

    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "r1", "amount": 3250})
    terminal.sync()
    result = _result(terminal, attempt_id, "r1")
    assert (result["status"], result["amount"]) == ("succeeded", 3250)
    assert result["provider_refund_id"].startswith("re_")
    assert _stripe_refunds(refund_world, pi) == [("r1", 3250)]

    order = _order_refunded(terminal, order_id, attempt_id, {"r1"})
    a = order.fields["payments"][attempt_id]
    assert (a["state"], a["refunded"], a["refunds"]["r1"]["amount"]) == ("refunded", 3250, 3250)
    assert order.stamps["payments"].node_id == "server"

    def posted() -> Any:
        terminal.sync()
        return terminal.get("ledger", f"{order_id}:{attempt_id}:refund:r1")

    ledger = wait_until(posted, what="the refund's posting set")
    legs = sorted((p["kind"], p["amount"]) for p in ledger.fields["postings"])
    assert legs == [("refund", -3250), ("refund", 3250)]

    # Nothing is left: a further refund is refused by us, and Stripe is not asked.
    refused = _refused(terminal, attempt_id, {"refund_id": "r2", "amount": 1})
    assert (refused.extra["reason"], refused.extra["refundable"]) == ("refund-above-captured", 0)
    effects = [e for e in refund_world.effects() if e["key"] == f"refund:{attempt_id}:r1"]
    assert [(e["state"], e["attempts"]) for e in effects] == [("done", 1)]
    assert _stripe_refunds(refund_world, pi) == [("r1", 3250)]


def test_a_partial_refund_then_the_rest(refund_world: PayWorld) -> None:
    terminal, order_id, attempt_id, pi = _paid(refund_world)
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "a", "amount": 1000})
    terminal.sync()
    assert _result(terminal, attempt_id, "a")["status"] == "succeeded"
    order = _order_refunded(terminal, order_id, attempt_id, {"a"})
    a = order.fields["payments"][attempt_id]
    assert (a["state"], a["refunded"]) == ("refunded_partial", 1000)

    refused = _refused(terminal, attempt_id, {"refund_id": "b", "amount": 2251})
    assert (refused.extra["reason"], refused.extra["refundable"]) == (
        "refund-above-captured",
        2250,
    )
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "b", "amount": 2250})
    terminal.sync()
    assert _result(terminal, attempt_id, "b")["status"] == "succeeded"
    order = _order_refunded(terminal, order_id, attempt_id, {"a", "b"})
    a = order.fields["payments"][attempt_id]
    assert (a["state"], a["refunded"]) == ("refunded", 3250)
    assert _stripe_refunds(refund_world, pi) == [("a", 1000), ("b", 2250)]


def test_an_over_refund_and_bad_refunds_are_refused_by_us(refund_world: PayWorld) -> None:
    terminal, _order_id, attempt_id, pi = _paid(refund_world)
    over = _refused(terminal, attempt_id, {"refund_id": "x", "amount": 3251})
    assert (over.extra["reason"], over.extra["refundable"]) == ("refund-above-captured", 3250)
    for args, reason in (
        ({"refund_id": "x", "amount": 0}, "invalid-amount"),
        ({"refund_id": "x", "amount": "5"}, "invalid-amount"),
        ({"refund_id": "", "amount": 5}, "invalid-argument"),
        ({"amount": 5}, "invalid-argument"),
        ({"refund_id": "x", "amount": 5, "approved_by": 7}, "invalid-argument"),
    ):
        assert _refused(terminal, attempt_id, args).extra["reason"] == reason, args
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "x", "amount": 5})
    again = _refused(terminal, attempt_id, {"refund_id": "x", "amount": 5})
    assert again.extra["reason"] == "duplicate-refund"
    terminal.sync()
    assert _result(terminal, attempt_id, "x")["status"] == "succeeded"
    assert _stripe_refunds(refund_world, pi) == [("x", 5)]

    # A held payment (manual capture, not yet captured) has nothing taken to refund.
    other, other_order = order_with_lines(refund_world)
    body = {"order_id": other_order, "payment_method": "pm_card_visa", "capture": "manual"}
    held = other.transport.post(CARD, body)["attempt_id"]
    _status(other, held, "authorized")
    assert _refused(other, held, {"refund_id": "h", "amount": 5}).extra["reason"] == "not-captured"
    # No such session.
    assert _refused(other, "pay-nope", {"refund_id": "h", "amount": 5}).extra["reason"] == (
        "record-not-found"
    )


def test_a_bank_payment_is_refunded_by_hand(refund_world: PayWorld) -> None:
    """The bank has no refund API: the session's refund is ``manual-refund`` (a manager
    transfers the money back and records it with the order's ``payment_refund``)."""
    terminal, order_id = order_with_lines(refund_world)
    qr = terminal.transport.post("/v1/plugins/providers/qr", {"order_id": order_id})
    terminal.sync()
    refused = _refused(terminal, qr["attempt_id"], {"refund_id": "m", "amount": 5})
    assert (refused.extra["reason"], refused.extra["method"]) == ("manual-refund", "open_banking")


def test_a_rogue_tills_card_refund_is_refused_on_push(refund_world: PayWorld) -> None:
    _terminal, order_id, attempt_id, pi = _paid(refund_world)
    rogue = _rogue_till(refund_world)
    rogue.sync()
    args = {"attempt_id": attempt_id, "refund_id": "rogue", "amount": 3250}
    rogue.command("orders", order_id, "payment_refund", args)
    rogue.sync()
    outcome = next(o for o in rogue.outcomes() if o.status == "rejected")
    assert outcome.reason == "server-only"
    a = rogue.get("orders", order_id).fields["payments"][attempt_id]
    assert (a["state"], a["refunds"]) == ("captured", {})
    assert _stripe_refunds(refund_world, pi) == []


class LostRefundAnswer(StripeProvider):
    """Stripe refunded, but the answer never came back (a timeout after the call)."""

    refunds = 0

    async def refund(
        self, provider_id: str, amount: int, *, key: str, refund_id: str = ""
    ) -> ProviderRefund:
        type(self).refunds += 1
        await super().refund(provider_id, amount, key=key, refund_id=refund_id)
        raise ProviderAmbiguousError("timed out reading the answer")


def test_a_refund_whose_answer_was_lost_is_looked_up_not_made_again(
    localstripe: ServiceProcess,
) -> None:
    async def body() -> tuple[Any, ...]:
        p = LostRefundAnswer("sk_test_fynlo", api_base=localstripe.url)
        LostRefundAnswer.refunds = 0
        try:
            attempt_id = "att_" + secrets.token_hex(6)
            request = CreatePayment(
                attempt_id=attempt_id, amount=2400, currency="GBP", payment_method="pm_card_visa"
            )
            paid = await flow.start(p, request, retry=False)
            pi = paid.provider_id
            with pytest.raises(ProviderAmbiguousError):
                await flow.refund(p, attempt_id, pi, "r1", 2400, retry=False)
            # The effect's next attempt: the look-up finds the refund made.
            found = await flow.refund(p, attempt_id, pi, "r1", 2400, retry=True)
            listed = [(r.ours, r.amount) for r in await p.find_refunds(pi)]
            return paid.status, found.ours, found.amount, listed, LostRefundAnswer.refunds
        finally:
            await p.aclose()

    assert run(body()) == ("succeeded", "r1", 2400, [("r1", 2400)], 1)


def test_the_effect_looks_a_lost_refund_up_and_stripe_shows_one(
    refund_world: PayWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's ``refund`` effect meets a lost answer (Stripe refunded, the effect saw a
    timeout): it is retried, finds the refund by our refund id, and records it once."""
    terminal, order_id, attempt_id, pi = _paid(refund_world)
    made = provider_effects.make_provider
    LostRefundAnswer.refunds = 0

    def lossy(settings: Any, method: str) -> PaymentProvider:
        real = made(settings, method)
        if LostRefundAnswer.refunds:
            return real  # the fault once only
        assert isinstance(real, StripeProvider)
        return LostRefundAnswer(
            settings.stripe_secret_key, api_base=settings.stripe_api_base or None
        )

    monkeypatch.setattr(provider_effects, "make_provider", lossy)
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "L", "amount": 1200})
    terminal.sync()
    result = _result(terminal, attempt_id, "L")
    assert (result["status"], result["amount"]) == ("succeeded", 1200)
    assert _stripe_refunds(refund_world, pi) == [("L", 1200)]
    assert LostRefundAnswer.refunds == 1
    order = _order_refunded(terminal, order_id, attempt_id, {"L"})
    a = order.fields["payments"][attempt_id]
    assert (a["state"], a["refunded"]) == ("refunded_partial", 1200)
    effects = [e for e in refund_world.effects() if e["key"] == f"refund:{attempt_id}:L"]
    assert [(e["state"], e["attempts"]) for e in effects] == [("done", 2)]


def test_a_terminals_cancel_of_a_held_card_cancels_it_at_stripe(refund_world: PayWorld) -> None:
    """A terminal's ``payment_cancel`` of a provider attempt (the customer walks away from
    a held card) calls for the ``cancel`` effect: Stripe's hold is cancelled too, so the
    money can never be captured later, and the session says ``canceled``."""
    terminal, order_id = order_with_lines(refund_world)
    body = {"order_id": order_id, "payment_method": "pm_card_visa", "capture": "manual"}
    attempt_id = terminal.transport.post(CARD, body)["attempt_id"]
    pi = _status(terminal, attempt_id, "authorized").fields["provider_id"]
    terminal.sync()
    cancel = {"attempt_id": attempt_id, "reason": "requested_by_customer"}
    terminal.command("orders", order_id, "payment_cancel", cancel)
    terminal.sync()
    done = _status(terminal, attempt_id, "canceled")
    assert done.fields["provider_id"] == pi
    r = httpx.get(f"{refund_world.stripe_url}/v1/payment_intents/{pi}", headers=AUTH)
    assert r.json()["status"] == "canceled"
    order = terminal.get("orders", order_id)
    assert order.fields["payments"][attempt_id]["state"] == "cancelled"
    assert order.fields["balance_due"] == 3250
    effects = [e for e in refund_world.effects() if e["key"] == f"cancel:{attempt_id}"]
    assert [(e["state"], e["attempts"]) for e in effects] == [("done", 1)]
    # A cancelled hold has nothing to capture: the session's capture is refused.
    with pytest.raises(RejectedOpError) as refused:
        terminal.command("payment_sessions", attempt_id, "capture", {"tip": 0})
    assert refused.value.extra["reason"] == "not-authorised"


def test_a_refund_above_the_limit_needs_a_manager_before_stripe_is_asked(
    refund_world: PayWorld,
) -> None:
    """The payments plugin's refund limit (5000 by default) is kept on the session and
    checked by its ``refund`` command: above it, no approval is ``manager-required`` and
    Stripe is not asked; with ``approved_by`` the refund is made and the server's
    ``payment_refund`` carries the approval (the order accepts it)."""
    terminal = refund_world.terminal()
    order_id = "o-" + secrets.token_hex(3)
    terminal.command("orders", order_id, "open", {"currency": "GBP", "table": "9"})
    line = {"line_id": "l1", "item": "Tasting menu", "qty": 1, "unit_price": 6000}
    terminal.command("orders", order_id, "add_line", line)
    terminal.sync()
    body = {"order_id": order_id, "payment_method": "pm_card_visa"}
    attempt_id = terminal.transport.post(CARD, body)["attempt_id"]
    paid = _status(terminal, attempt_id, "succeeded")
    assert paid.fields["refund_limit"] == 5000
    pi = paid.fields["provider_id"]
    refused = _refused(terminal, attempt_id, {"refund_id": "big", "amount": 6000})
    assert refused.extra["reason"] == "manager-required"
    assert _stripe_refunds(refund_world, pi) == []
    args = {"refund_id": "big", "amount": 6000, "approved_by": "Mo (manager)"}
    terminal.command("payment_sessions", attempt_id, "refund", args)
    terminal.sync()
    assert _result(terminal, attempt_id, "big")["status"] == "succeeded"
    order = _order_refunded(terminal, order_id, attempt_id, {"big"})
    recorded = order.fields["payments"][attempt_id]["refunds"]["big"]
    assert (recorded["amount"], recorded["approved_by"]) == (6000, "Mo (manager)")
    assert _stripe_refunds(refund_world, pi) == [("big", 6000)]


class PendingRefunds(StripeProvider):
    """Stripe's refund statuses that localstripe never produces (its refunds are always
    ``succeeded`` at once): our refund ids in :attr:`script` are reported with the status
    given there (``pending``, then ``succeeded`` or ``failed``; ``hidden``: a look-up does
    not find it); an id in :attr:`made_here`
    is not made at localstripe at all (a refund that fails never moves money). Every other
    call, and every other refund, is localstripe's."""

    script: ClassVar[dict[str, str]] = {}
    made_here: ClassVar[dict[str, ProviderRefund]] = {}

    async def refund(
        self, provider_id: str, amount: int, *, key: str, refund_id: str = ""
    ) -> ProviderRefund:
        if refund_id in type(self).made_here:
            made = ProviderRefund(
                provider="stripe",
                refund_id=f"re_here_{refund_id}",
                provider_id=provider_id,
                amount=amount,
                status="pending",
                ours=refund_id,
            )
            type(self).made_here[refund_id] = made
            return made
        return self._scripted(
            await super().refund(provider_id, amount, key=key, refund_id=refund_id)
        )

    async def find_refunds(self, provider_id: str) -> Sequence[ProviderRefund]:
        found = list(await super().find_refunds(provider_id))
        here = type(self).made_here.values()
        found += [r for r in here if r.refund_id and r.provider_id == provider_id]
        # ``hidden``: a look-up that does not find the refund (its check gives up).
        return [self._scripted(r) for r in found if type(self).script.get(r.ours) != "hidden"]

    def _scripted(self, refund: ProviderRefund) -> ProviderRefund:
        status = type(self).script.get(refund.ours)
        if status is None:
            return refund
        reason = "lost_or_stolen_card" if status == "failed" else ""
        return msgspec.structs.replace(refund, status=status, failure_reason=reason)


@pytest.fixture
def pending_refunds(monkeypatch: pytest.MonkeyPatch) -> type[PendingRefunds]:
    made = provider_effects.make_provider
    PendingRefunds.script, PendingRefunds.made_here = {}, {}

    def stand_in(settings: Any, method: str) -> PaymentProvider:
        real = made(settings, method)
        if not isinstance(real, StripeProvider):
            return real
        return PendingRefunds(settings.stripe_secret_key, api_base=settings.stripe_api_base or None)

    monkeypatch.setattr(provider_effects, "make_provider", stand_in)
    return PendingRefunds


def _effect(world: PayWorld, key: str) -> dict[str, Any] | None:
    return next((e for e in world.effects() if e["key"] == key), None)


def test_a_pending_refund_is_recorded_on_the_order_only_once_it_succeeded(
    refund_world: PayWorld, pending_refunds: type[PendingRefunds]
) -> None:
    """Stripe answers ``pending``: the session says so, the order has no refund yet (the
    money is not back with the customer), and the amount stays held. The ``refund_check``
    effect asks again (with the outbox's backoff) until Stripe says ``succeeded``; then the
    server authors the order's ``payment_refund``, once."""
    terminal, order_id, attempt_id, pi = _paid(refund_world)
    pending_refunds.script["P"] = "pending"
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "P", "amount": 1000})
    terminal.sync()
    result = _result(terminal, attempt_id, "P")
    assert (result["status"], result["provider_status"], result["amount"]) == (
        "pending",
        "pending",
        1000,
    )
    assert result["provider_refund_id"].startswith("re_")
    check_key = f"refund-check:{attempt_id}:P"

    def asked_again() -> Any:
        found = _effect(refund_world, check_key)
        return found if found is not None and found["attempts"] >= 1 else None

    still = wait_until(asked_again, what="the pending refund asked again")
    assert still["state"] in ("pending", "running")  # still pending at Stripe: retrying
    terminal.sync()
    a = terminal.get("orders", order_id).fields["payments"][attempt_id]
    assert (a["state"], a["refunds"]) == ("captured", {})
    held = _refused(terminal, attempt_id, {"refund_id": "Q", "amount": 2251})
    assert (held.extra["reason"], held.extra["refundable"]) == ("refund-above-captured", 2250)

    del pending_refunds.script["P"]  # Stripe settles it: localstripe's own ``succeeded``
    order = _order_refunded(terminal, order_id, attempt_id, {"P"})
    a = order.fields["payments"][attempt_id]
    assert (a["state"], a["refunded"]) == ("refunded_partial", 1000)
    assert _result(terminal, attempt_id, "P")["status"] == "succeeded"
    assert _stripe_refunds(refund_world, pi) == [("P", 1000)]
    done = wait_until(
        lambda: (_effect(refund_world, check_key) or {}).get("state") == "done",
        what="the check done",
    )
    assert done
    first = _effect(refund_world, f"refund:{attempt_id}:P")
    assert first is not None and (first["state"], first["attempts"]) == ("done", 1)


def test_a_pending_refund_that_fails_is_refused_and_the_amount_is_freed(
    refund_world: PayWorld, pending_refunds: type[PendingRefunds]
) -> None:
    terminal, order_id, attempt_id, pi = _paid(refund_world)
    pending_refunds.script["F"] = "pending"
    pending_refunds.made_here["F"] = ProviderRefund(
        provider="stripe", refund_id="", provider_id="", amount=0, status="", ours="F"
    )
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "F", "amount": 3250})
    terminal.sync()
    assert _result(terminal, attempt_id, "F")["status"] == "pending"
    held = _refused(terminal, attempt_id, {"refund_id": "G", "amount": 1})
    assert (held.extra["reason"], held.extra["refundable"]) == ("refund-above-captured", 0)

    pending_refunds.script["F"] = "failed"

    def refused() -> Any:
        terminal.sync()
        seen = session(terminal, attempt_id)
        found = None if seen is None else seen.fields["refund_results"]["F"]
        return found if found is not None and found["status"] == "refused" else None

    result = wait_until(refused, what="the failed refund refused")
    assert (result["reason"], result["provider_reason"]) == (
        "provider-failed",
        "lost_or_stolen_card",
    )
    a = terminal.get("orders", order_id).fields["payments"][attempt_id]
    assert (a["state"], a["refunds"]) == ("captured", {})
    # The amount is refundable again: the whole payment, refunded for real at localstripe.
    del pending_refunds.script["F"]
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "G", "amount": 3250})
    terminal.sync()
    assert _result(terminal, attempt_id, "G")["status"] == "succeeded"
    order = _order_refunded(terminal, order_id, attempt_id, {"G"})
    assert order.fields["payments"][attempt_id]["refunded"] == 3250
    assert _stripe_refunds(refund_world, pi) == [("G", 3250)]


def test_a_refund_event_settles_pending_refunds_whose_checks_gave_up(
    refund_world: PayWorld, pending_refunds: type[PendingRefunds]
) -> None:
    """Stripe's ``refund.updated`` names the refund's intent, attempt and tenant (we put
    them in the refund's metadata): its ``webhook`` effect looks the intent's refunds up and
    settles every one that was ``pending`` and is no longer, in one commit, even when the
    ``refund_check`` effects are dead (an operator never retried them)."""
    terminal, order_id, attempt_id, pi = _paid(refund_world)
    pending_refunds.script.update({"W1": "pending", "W2": "pending"})
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "W1", "amount": 1000})
    terminal.command("payment_sessions", attempt_id, "refund", {"refund_id": "W2", "amount": 500})
    terminal.sync()
    assert _result(terminal, attempt_id, "W1")["status"] == "pending"
    assert _result(terminal, attempt_id, "W2")["status"] == "pending"
    pending_refunds.script.update({"W1": "hidden", "W2": "hidden"})
    checks = [f"refund-check:{attempt_id}:W1", f"refund-check:{attempt_id}:W2"]
    wait_until(
        lambda: all((_effect(refund_world, k) or {}).get("state") == "dead" for k in checks),
        what="both checks given up",
    )
    terminal.sync()
    assert terminal.get("orders", order_id).fields["payments"][attempt_id]["refunds"] == {}

    pending_refunds.script.clear()  # Stripe settles both: localstripe's own ``succeeded``
    r = httpx.get(
        f"{refund_world.stripe_url}/v1/refunds", params={"payment_intent": pi}, headers=AUTH
    )
    made = {x["metadata"]["fynlo_refund_id"]: x for x in r.json()["data"]}
    w1 = made["W1"]
    assert (w1["metadata"]["fynlo_attempt_id"], w1["metadata"]["fynlo_tenant"]) == (
        attempt_id,
        refund_world.tenant,
    )
    event_id = "evt_refund_" + secrets.token_hex(4)
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "refund.updated",
            "created": int(time.time()),
            "data": {"object": w1},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(
        body, STRIPE_WEBHOOK_SECRET, int(time.time())
    )
    hook = refund_world.url + "/v1/plugins/providers/webhooks/stripe"
    answer = httpx.post(
        hook, content=body, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["outcome"]) == (200, "queued"), answer.text

    order = _order_refunded(terminal, order_id, attempt_id, {"W1", "W2"})
    a = order.fields["payments"][attempt_id]
    assert (a["state"], a["refunded"]) == ("refunded_partial", 1500)
    seen = session(terminal, attempt_id)
    assert seen is not None
    results = seen.fields["refund_results"]
    assert {k: (v["status"], v["amount"]) for k, v in results.items()} == {
        "W1": ("succeeded", 1000),
        "W2": ("succeeded", 500),
    }
    assert _stripe_refunds(refund_world, pi) == [("W1", 1000), ("W2", 500)]
    done = _effect(refund_world, f"webhook:stripe:{event_id}")
    assert done is not None and done["state"] == "done"
    assert all((_effect(refund_world, k) or {}).get("state") == "dead" for k in checks)
