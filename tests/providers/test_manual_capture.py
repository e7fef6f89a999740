"""Manual capture for a tip added after authorisation, against localstripe: the terminal
pays by card with ``capture: "manual"`` (the authorisation holds the amount and the most the
tip may be), then sends the session's ``capture`` command with the tip; a durable effect
captures once. A second capture, or a tip above what was authorised, is refused; a capture
whose answer was lost is looked up, not made again."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from fynlo_sync.domains.payments.providers import (
    CreatePayment,
    ProviderAmbiguousError,
    ProviderPayment,
    flow,
)
from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.sandbox.processes import ServiceProcess
from tests.providers.conftest import PayWorld, open_pay_world, wait_until
from tests.providers.test_pay_at_table import order_with_lines, session
from tests.providers.test_stripe import run

CARD = "/v1/plugins/providers/card"
AUTH = {"Authorization": "Bearer sk_test_fynlo"}


def _status(terminal: Any, attempt_id: str, status: str) -> Any:
    return wait_until(
        lambda: (
            (s := session(terminal, attempt_id)) is not None
            and s.fields.get("status") == status
            and s
        ),
        what=f"session {attempt_id} {status}",
    )


def _intent(world: PayWorld, pi: str) -> dict[str, Any]:
    r = httpx.get(f"{world.stripe_url}/v1/payment_intents/{pi}", headers=AUTH)
    r.raise_for_status()
    out: dict[str, Any] = r.json()
    return out


def _captured(world: PayWorld, pi: str) -> tuple[str, int]:
    """The intent's status and what it took. localstripe gives no ``amount_received`` and
    records the released part of a partial capture as a refund on the charge."""
    r = httpx.get(
        f"{world.stripe_url}/v1/payment_intents/{pi}",
        params={"expand[]": "latest_charge"},
        headers=AUTH,
    )
    r.raise_for_status()
    intent = r.json()
    charge = intent["latest_charge"]
    return intent["status"], int(charge["amount"]) - int(charge["amount_refunded"])


def test_a_tip_added_after_authorisation_is_captured_once(pay_world: PayWorld) -> None:
    terminal, order_id = order_with_lines(pay_world)  # 3250 due
    body = {"order_id": order_id, "payment_method": "pm_card_visa", "capture": "manual"}
    answer = terminal.transport.post(CARD, {**body, "tip": 650})
    assert (answer["amount"], answer["tip"], answer["capture"]) == (3250, 650, "manual")
    attempt_id = answer["attempt_id"]
    held = _status(terminal, attempt_id, "authorized")
    assert (held.fields["capturable"], held.fields["received"]) == (3900, 0)
    pi = held.fields["provider_id"]
    assert _intent(pay_world, pi)["status"] == "requires_capture"

    # The customer writes a tip of 400 on the slip; the terminal captures 3250 + 400.
    terminal.command("payment_sessions", attempt_id, "capture", {"tip": 400})
    terminal.sync()
    paid = _status(terminal, attempt_id, "succeeded")
    assert (paid.fields["capture_amount"], paid.fields["capture_tip"]) == (3650, 400)
    assert _captured(pay_world, pi) == ("succeeded", 3650)

    # A second capture is refused (by the terminal's own copy of the rule, and the server's).
    with pytest.raises(RejectedOpError) as again:
        terminal.command("payment_sessions", attempt_id, "capture", {"tip": 0})
    assert again.value.extra["reason"] == "capture-requested"
    effects = [e for e in pay_world.effects() if e["key"] == f"capture:{attempt_id}"]
    assert [(e["state"], e["attempts"]) for e in effects] == [("done", 1)]
    assert _captured(pay_world, pi) == ("succeeded", 3650)


def test_a_tip_above_what_was_authorised_and_bad_requests_are_refused(
    pay_world: PayWorld,
) -> None:
    terminal, order_id = order_with_lines(pay_world)
    body = {"order_id": order_id, "payment_method": "pm_card_visa", "capture": "manual"}
    attempt_id = terminal.transport.post(CARD, body)["attempt_id"]  # no tip room
    _status(terminal, attempt_id, "authorized")
    for args, reason in (
        ({"tip": 1}, "capture-above-authorised"),
        ({"tip": -1}, "invalid-tip"),
        ({"tip": "5"}, "invalid-tip"),
    ):
        with pytest.raises(RejectedOpError) as refused:
            terminal.command("payment_sessions", attempt_id, "capture", args)
        assert refused.value.extra["reason"] == reason
    # An automatic payment has nothing to capture by hand.
    other, other_order = order_with_lines(pay_world)
    auto = other.transport.post(CARD, {"order_id": other_order, "payment_method": "pm_card_visa"})
    _status(other, auto["attempt_id"], "succeeded")
    with pytest.raises(RejectedOpError) as automatic:
        other.command("payment_sessions", auto["attempt_id"], "capture", {"tip": 0})
    assert automatic.value.extra["reason"] == "not-manual-capture"
    url = pay_world.url + CARD
    token = terminal.transport  # the HTTP problems of the route
    for bad, reason in (
        ({**body, "capture": "later"}, "invalid-capture"),
        ({**body, "payment_method": "4242424242424242"}, "invalid-payment-method"),
        ({**body, "tip": -5}, "invalid-tip"),
        ({**body, "order_id": "nope"}, "record-not-found"),
    ):
        try:
            token.post(CARD, bad)
        except Exception as exc:
            assert getattr(exc, "status", None) in (400, 404), exc
            extra = getattr(exc, "extra", {})
            assert reason in (getattr(exc, "code", ""), extra.get("reason")), (exc, extra)
        else:
            raise AssertionError(f"{bad} was accepted at {url}")


class LostCaptureAnswer(StripeProvider):
    """Stripe captured, but the answer never came back (a timeout after the call)."""

    captures = 0

    async def capture(
        self, provider_id: str, amount: int | None = None, *, key: str
    ) -> ProviderPayment:
        type(self).captures += 1
        await super().capture(provider_id, amount, key=key)
        raise ProviderAmbiguousError("timed out reading the answer")


def test_a_capture_whose_answer_was_lost_is_looked_up_not_made_again(
    localstripe: ServiceProcess,
) -> None:
    async def body() -> tuple[Any, ...]:
        p = LostCaptureAnswer("sk_test_fynlo", api_base=localstripe.url)
        try:
            attempt_id = "att_" + secrets.token_hex(6)
            request = CreatePayment(
                attempt_id=attempt_id,
                amount=2400,
                currency="GBP",
                capture="manual",
                payment_method="pm_card_visa",
            )
            held = await flow.start(p, request, retry=False)
            with pytest.raises(ProviderAmbiguousError):
                await flow.capture(p, attempt_id, 2200)
            # The effect's next attempt: the look-up finds the capture made.
            found = await flow.capture(p, attempt_id, 2200)
            assert found is not None
            again = await flow.capture(p, attempt_id, 2200)
            assert again is not None
            # (localstripe records the released 200 as a refund of the 2400 charge)
            taken = found.amount_received - found.amount_refunded
            return held.status, found.status, taken, again.status, p.captures
        finally:
            await p.aclose()

    assert run(body()) == ("authorized", "succeeded", 2200, "succeeded", 1)


@pytest.fixture(scope="module")
def paid_world(tmp_path_factory: pytest.TempPathFactory, localstripe: ServiceProcess) -> Any:
    """The server with the payments plugin too: the capture moves the order's attempt."""
    with open_pay_world(tmp_path_factory.mktemp("paid"), localstripe.url, payments=True) as world:
        yield world


def test_the_order_and_the_ledger_split_a_tip_added_after_authorisation(
    paid_world: PayWorld,
) -> None:
    """Authorised 3250 + 650 of tip room; the slip says 400: Stripe takes 3650, and the
    order's attempt and the ledger say 3250 paid + 400 tip, fees on the 3250 only."""
    terminal, order_id = order_with_lines(paid_world)  # 3250 due
    body = {"order_id": order_id, "payment_method": "pm_card_visa", "capture": "manual"}
    attempt_id = terminal.transport.post(CARD, {**body, "tip": 650})["attempt_id"]
    pi = _status(terminal, attempt_id, "authorized").fields["provider_id"]
    held = terminal.get("orders", order_id).fields["payments"][attempt_id]
    assert (held["state"], held["amount"], held["tip"]) == ("authorised", 3250, 650)

    terminal.command("payment_sessions", attempt_id, "capture", {"tip": 400})
    terminal.sync()
    _status(terminal, attempt_id, "succeeded")
    assert _captured(paid_world, pi) == ("succeeded", 3650)

    def captured() -> Any:
        terminal.sync()
        order = terminal.get("orders", order_id)
        a = order.fields["payments"][attempt_id]
        return order if a["state"] == "captured" else None

    order = wait_until(captured, what="the attempt captured")
    a = order.fields["payments"][attempt_id]
    assert (a["captured"], a["amount"], a["tip"], a["overpaid"]) == (3650, 3250, 400, 0)
    # GB card 150 bp + 20 of 3250 = 48.75 -> 49 + 20; platform 100 bp of 3250 = 32.5 -> 33.
    assert (a["fees"]["processing"], a["fees"]["platform"]) == (69, 33)
    money = {k: order.fields[k] for k in ("paid", "tips", "collected", "balance_due")}
    assert money == {"paid": 3250, "tips": 400, "collected": 3650, "balance_due": 0}
    assert order.fields["refunds_due"] == {}

    def posted() -> Any:
        terminal.sync()
        return terminal.get("ledger", f"{order_id}:{attempt_id}:capture")

    ledger = wait_until(posted, what="the capture's posting set")
    legs = {p["kind"]: p["amount"] for p in ledger.fields["postings"]}
    assert legs == {
        "gross": -3650,
        "processor_fee": 69,
        "platform_fee": 33,
        "tip": 400,
        "net": 3650 - 69 - 33 - 400,
    }


def _rogue_till(world: PayWorld) -> Any:
    """A till whose payments plugin lets terminals report card results (``card_results:
    terminal``): a buggy or malicious one, enrolled in the same tenant as the others."""
    import time

    import conflict
    from fynlo_sync.client import Terminal
    from fynlo_sync.domains.orders import OrdersPlugin
    from fynlo_sync.domains.payments.plugin import PaymentsPlugin
    from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin
    from fynlo_sync.domains.payments.settings import PaymentsSettings
    from fynlo_sync.store.sqlite import SqliteTerminalStore
    from fynlo_sync.transport.http import HttpTransport
    from server import admin

    providers = world.registry.plugin("providers")
    assert isinstance(providers, ProvidersPlugin)
    payments = PaymentsPlugin(PaymentsSettings(card_results="terminal"))
    registry = conflict.registry([OrdersPlugin(), payments, providers])
    code = admin.enroll_device(world.settings, world.tenant).enrollment_code
    link = HttpTransport.enroll(world.url, code)
    folder = world.world.folder
    return Terminal(
        SqliteTerminalStore(folder / f"rogue-{link.node_id}.db", link.node_id),
        registry,
        link,
        wall=lambda: time.time_ns() // 1_000_000,
    )


def test_a_terminal_cannot_capture_a_card_only_the_providers_report_can(
    paid_world: PayWorld,
) -> None:
    """With the providers plugin, a card attempt's capture reaches the order only as the
    server's op (``card_results: server``, protocol 19.4): a terminal's ``payment_capture``
    is refused ``server-only``, locally by a till running the same plugins, and on push
    for one that does not; the capture the effect authors from Stripe's answer applies."""
    terminal, order_id = order_with_lines(paid_world)  # 3250 due
    body = {"order_id": order_id, "payment_method": "pm_card_visa", "capture": "manual"}
    attempt_id = terminal.transport.post(CARD, {**body, "tip": 0})["attempt_id"]
    _status(terminal, attempt_id, "authorized")
    held = terminal.get("orders", order_id).fields["payments"][attempt_id]
    assert (held["state"], held["method"]) == ("authorised", "card")
    capture = {"attempt_id": attempt_id}

    with pytest.raises(RejectedOpError) as refused:
        terminal.command("orders", order_id, "payment_capture", capture)
    assert refused.value.extra["reason"] == "server-only"

    rogue = _rogue_till(paid_world)
    rogue.sync()
    rogue.command("orders", order_id, "payment_capture", capture)
    assert rogue.get("orders", order_id).fields["payments"][attempt_id]["state"] == "captured"
    rogue.sync()
    outcome = next(o for o in rogue.outcomes() if o.status == "rejected")
    assert (outcome.reason, rogue.pending()) == ("server-only", [])
    order = rogue.get("orders", order_id)
    assert order.fields["payments"][attempt_id]["state"] == "authorised"  # rebased away
    assert order.fields["balance_due"] == 3250

    # The real capture: the session's command, the effect, Stripe's answer, the server's op.
    terminal.command("payment_sessions", attempt_id, "capture", {"tip": 0})
    terminal.sync()

    def captured() -> Any:
        rogue.sync()
        found = rogue.get("orders", order_id)
        return found if found.fields["payments"][attempt_id]["state"] == "captured" else None

    order = wait_until(captured, what="the server's capture")
    a = order.fields["payments"][attempt_id]
    assert (a["captured"], order.fields["balance_due"]) == (3250, 0)
    assert order.stamps["payments"].node_id == "server"
