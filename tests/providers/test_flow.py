"""The flow's pure half (provider view -> payment_* commands) and the provider-fault
simulation (no double charge, no lost capture; and it does catch a flow without look-up)."""

from __future__ import annotations

from typing import Any

import pytest

from fynlo_sync.domains.payments.providers import ProviderPayment, flow
from fynlo_sync.domains.payments.providers.flow import attempt_commands
from fynlo_sync.domains.payments.providers.simulation import Faults, run


def pay(status: str, **kw: Any) -> ProviderPayment:
    return ProviderPayment(
        provider="stripe",
        provider_id="pi_1",
        attempt_id="a1",
        status=status,  # type: ignore[arg-type]
        raw_status=status,
        amount=2000,
        currency="GBP",
        **kw,
    )


def names(state: str | None, p: ProviderPayment) -> list[str]:
    return [name for name, _ in attempt_commands("a1", state, p).commands]


@pytest.mark.parametrize(
    ("state", "status", "expected"),
    [
        ("created", "created", ["payment_submit"]),
        ("pending", "created", []),
        ("created", "requires_action", ["payment_submit", "payment_require_action"]),
        ("requires_action", "requires_action", []),
        ("created", "authorized", ["payment_submit", "payment_authorise"]),
        ("requires_action", "authorized", ["payment_authorise"]),
        ("authorised", "authorized", []),
        ("created", "succeeded", ["payment_submit", "payment_capture"]),
        ("requires_action", "succeeded", ["payment_authorise", "payment_capture"]),
        ("authorised", "succeeded", ["payment_capture"]),
        ("captured", "succeeded", []),  # a duplicate report: nothing
        ("captured", "authorized", []),  # an older report arriving late: nothing
        ("pending", "canceled", ["payment_cancel"]),
        ("cancelled", "canceled", []),
        ("pending", "failed", ["payment_fail"]),
        ("failed", "failed", []),
        (None, "succeeded", []),
    ],
)
def test_provider_views_become_the_commands_that_catch_the_attempt_up(
    state: str | None, status: str, expected: list[str]
) -> None:
    extra = {"amount_received": 2000} if status == "succeeded" else {}
    assert names(state, pay(status, **extra)) == expected


def test_capture_records_what_the_provider_took_and_expiry_is_its_own_command() -> None:
    plan = attempt_commands("a1", "authorised", pay("succeeded", amount_received=1750))
    assert plan.commands == (
        ("payment_capture", {"attempt_id": "a1", "provider_ref": "pi_1", "amount": 1750}),
    )
    expired = attempt_commands("a1", "requires_action", pay("failed", failure_code="expired"))
    assert [n for n, _ in expired.commands] == ["payment_expire"]
    declined = attempt_commands("a1", "pending", pay("failed", failure_code="card_declined"))
    assert declined.commands[0][1]["reason"] == "card_declined"


def test_a_held_capture_carries_its_tip_and_takes_at_most_what_was_asked() -> None:
    """A manual capture (25.6): the order's capture gets the session's ``capture_tip``, and
    the amount asked bounds what is recorded (localstripe reports the whole hold)."""
    held = pay("succeeded", amount_received=2400)
    plan = attempt_commands("a1", "authorised", held, tip=300, asked=2300)
    assert plan.commands == (
        (
            "payment_capture",
            {"attempt_id": "a1", "provider_ref": "pi_1", "amount": 2300, "tip": 300},
        ),
    )
    exact = attempt_commands("a1", "authorised", pay("succeeded", amount_received=2300), asked=2400)
    assert exact.commands[0][1] == {"attempt_id": "a1", "provider_ref": "pi_1", "amount": 2300}


def test_a_late_failure_reverses_the_capture_and_money_after_close_is_a_finding() -> None:
    late = attempt_commands("a1", "captured", pay("failed", failure_code="provider_rejected"))
    reverse = {"attempt_id": "a1", "provider_ref": "pi_1", "reason": "provider_rejected"}
    assert (late.commands, late.finding) == ((("payment_reverse", reverse),), "late-failure")
    refunded = attempt_commands("a1", "refunded_partial", pay("failed"))
    assert (refunded.commands, refunded.finding) == ((), "late-failure")  # a person decides
    done = attempt_commands("a1", "failed", pay("failed", failure_code="provider_rejected"))
    assert (done.commands, done.finding) == ((), None)  # reversed already
    after = attempt_commands("a1", "cancelled", pay("succeeded", amount_received=2000))
    assert (after.commands, after.finding) == ((), "taken-after-close")


def test_thousands_of_attempts_under_faults_charge_once_and_lose_nothing() -> None:
    report = run(seed=3, attempts=1000)
    assert report["payment_attempts"] >= 1000
    for name in (
        "double_charges",
        "lost_captures",
        "phantom_captures",
        "unreversed_late_failures",
        "two_live",
        "live_left",
    ):
        assert report[name] == 0, (name, report)
    # Every fault happened, many times.
    for name in (
        "lost_answers",
        "timeouts",
        "errors_5xx",
        "crashes",
        "duplicate_webhooks",
        "reordered_webhooks",
        "webhooks_before_answer",
        "expiry_races",
        "late_failures",
        "fallbacks_to_card",
        "ambiguous_retries",
    ):
        assert report["faults"][name] > 5, (name, report["faults"])
    assert report == run(seed=3, attempts=1000)  # a seed repeats exactly


def test_the_simulation_catches_a_retry_that_does_not_look_up_first() -> None:
    report = run(seed=3, attempts=600, lookup_first=False)
    assert report["provider_payments"] > report["payment_attempts"]
    assert report["double_charges"] > 0


def test_a_provider_that_keeps_keys_needs_the_look_up_less_but_it_still_holds() -> None:
    report = run(seed=5, attempts=400, faults=Faults(idempotent=True))
    assert (report["double_charges"], report["lost_captures"]) == (0, 0)


def test_fynlo_sim_payments_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fynlo_sync.cli import main

    assert main(["sim", "--payments", "300", "--seed", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["payment_attempts"] >= 300
    assert (report["double_charges"], report["lost_captures"]) == (0, 0)


def test_a_report_authors_only_what_is_newer() -> None:
    from fynlo_sync.domains.payments.providers.plugin import report_drafts

    session: dict[str, Any] = {"order_id": "o1", "amount": 2000, "currency": "GBP"}
    order = {"payments": {"a1": {"state": "pending"}}}
    paid = pay("succeeded", amount_received=2000)
    drafts = report_drafts("a1", session, order, paid, payments_loaded=True, now_ms=5)
    assert [(d.collection, d.kind, d.name) for d in drafts] == [
        ("orders", "command", "payment_capture"),
        ("payment_sessions", "patch", None),
    ]
    assert drafts[1].fields is not None
    after = {**session, **drafts[1].fields}
    captured = {"payments": {"a1": {"state": "captured"}}}
    assert report_drafts("a1", after, captured, paid, payments_loaded=True, now_ms=6) == []
    older = pay("requires_action")
    assert report_drafts("a1", after, captured, older, payments_loaded=True, now_ms=7) == []
    late = pay("failed", failure_code="provider_rejected")
    first = report_drafts("a1", after, captured, late, payments_loaded=True, now_ms=8)
    assert [(d.collection, d.name) for d in first] == [
        ("orders", "payment_reverse"),
        ("payment_sessions", None),
    ]
    assert first[1].fields is not None and first[1].fields["finding"] == "late-failure"
    again = {**after, **first[1].fields}
    reversed_order = {"payments": {"a1": {"state": "failed"}}}
    assert report_drafts("a1", again, reversed_order, late, payments_loaded=True, now_ms=9) == []


def test_a_requested_session_calls_for_one_start_effect_keyed_by_its_attempt() -> None:
    from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin
    from fynlo_sync.ops import Change, Record

    def change(fields: dict[str, Any], collection: str = "payment_sessions") -> Change:
        record = Record(collection, "pay-1", fields, {})
        return Change(seq=1, op_id="op", node_id="server", node_seq=1, record=record)

    plugin = ProvidersPlugin()
    asked = change({"order_id": "o1", "requested_ms": 5})
    [effect] = plugin.effects([asked])
    assert (effect.plugin, effect.name, effect.key) == ("providers", "start", "start:pay-1")
    assert effect.payload == {"attempt_id": "pay-1"}
    assert plugin.effects([change({"order_id": "o1"})]) == []  # not asked for yet
    made = change({"order_id": "o1", "requested_ms": 5, "provider_id": "pay_x"})
    assert plugin.effects([made]) == []  # the provider answered: nothing more to do
    assert plugin.effects([change({"requested_ms": 5}, collection="orders")]) == []
    noted = change(
        {
            "order_id": "o1",
            "provider_id": "pay_x",
            "webhook": {"provider": "bank", "event_id": "ev-9", "id": "pay_x"},
        }
    )
    [hook] = plugin.effects([noted])
    assert (hook.name, hook.key) == ("webhook", "webhook:bank:ev-9")
    assert hook.payload == {
        "attempt_id": "pay-1",
        "provider": "bank",
        "provider_id": "pay_x",
        "event_id": "ev-9",
    }
    held = {"order_id": "o1", "provider_id": "pi_x", "capture_amount": 1800}
    assert plugin.effects([change({**held, "status": "requires_action"})]) == []
    [take] = plugin.effects([change({**held, "status": "authorized"})])
    assert (take.name, take.key, take.payload) == (
        "capture",
        "capture:pay-1",
        {"attempt_id": "pay-1"},
    )
    assert plugin.effects([change({**held, "status": "succeeded"})]) == []  # captured
    handlers = sorted(plugin.effect_handlers())
    assert handlers == ["cancel", "capture", "refund", "refund_check", "start", "webhook"]


def test_a_terminals_cancel_of_a_provider_attempt_calls_for_the_cancel_effect() -> None:
    """``payment_cancel`` by a terminal of a card, Apple Pay or bank attempt: the ``cancel``
    effect, keyed by the attempt. Not for the server's own cancel (the provider's word), a
    cash attempt, or a change that did not touch the payments."""
    from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin
    from fynlo_sync.hlc import pack, to_wire
    from fynlo_sync.ops import Change, Record, Stamp

    def change(state: str, method: str, node: str = "till-a", stamp_seq: int = 7) -> Change:
        attempts = {"a1": {"state": state, "method": method}, "a0": {"state": "captured"}}
        stamp = Stamp(to_wire(pack(1_700_000_000_000, 0)), node, stamp_seq)
        record = Record("orders", "o1", {"payments": attempts}, {"payments": stamp})
        return Change(seq=7, op_id="op", node_id=node, node_seq=3, record=record)

    plugin = ProvidersPlugin()
    for method in ("card", "apple_pay", "open_banking"):
        [effect] = plugin.effects([change("cancelled", method)])
        assert (effect.name, effect.key, effect.payload) == (
            "cancel",
            "cancel:a1",
            {"attempt_id": "a1", "order_id": "o1"},
        )
    assert plugin.effects([change("cancelled", "card", node="server")]) == []
    assert plugin.effects([change("cancelled", "cash")]) == []
    assert plugin.effects([change("cancelled", "card", stamp_seq=6)]) == []  # other field
    assert plugin.effects([change("authorised", "card")]) == []


def test_only_a_succeeded_refund_is_recorded_and_a_pending_one_is_asked_again() -> None:
    """25.7: Stripe's refund statuses. ``succeeded`` records the order's refund;
    ``failed``/``canceled`` refuse it (the amount is refundable again); ``pending``,
    ``requires_action`` and a status we do not know are pending (the money is not back
    yet): the session's pending result calls for the ``refund_check`` effect."""
    from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin, refundable
    from fynlo_sync.ops import Change, Record

    outcomes = {
        s: flow.refund_outcome(s)
        for s in ("succeeded", "pending", "requires_action", "failed", "canceled", "", "new")
    }
    assert outcomes == {
        "succeeded": "succeeded",
        "pending": "pending",
        "requires_action": "pending",
        "failed": "refused",
        "canceled": "refused",
        "": "pending",
        "new": "pending",
    }
    asked = {"r1": {"amount": 1000}, "r2": {"amount": 500}, "r3": {"amount": 200}}
    paid = {"order_id": "o1", "provider_id": "pi_x", "received": 3250, "refunds": asked}

    def planned(results: dict[str, Any]) -> list[tuple[str, str]]:
        record = Record("payment_sessions", "pay-1", {**paid, "refund_results": results}, {})
        change = Change(seq=1, op_id="op", node_id="server", node_seq=1, record=record)
        return [(e.name, e.key) for e in ProvidersPlugin().effects([change])]

    results = {"r1": {"status": "pending"}, "r2": {"status": "succeeded"}}
    assert planned(results) == [
        ("refund_check", "refund-check:pay-1:r1"),
        ("refund", "refund:pay-1:r3"),
    ]
    assert planned({**results, "r1": {"status": "refused"}}) == [("refund", "refund:pay-1:r3")]
    # A pending refund holds its amount; a refused one frees it.
    assert refundable({**paid, "refund_results": results}) == 3250 - 1700
    assert refundable({**paid, "refund_results": {"r1": {"status": "refused"}}}) == 3250 - 700
