"""Who reports a card attempt's provider state (protocol 19.4, ``card_results``): with
``server`` (the default beside the providers plugin) only node ``server`` sends the
commands that say what a provider did for a card, open banking or Apple Pay attempt; a
terminal still starts, cancels, fails and refunds, and cash is the terminal's alone. With
``terminal`` (no providers plugin: a standalone reader reporting through the till) any
node does."""

from __future__ import annotations

from typing import Any

import pytest

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin, PaymentsSettings
from fynlo_sync.domains.payments.attempts import PROVIDER_STATE_COMMANDS
from fynlo_sync.domains.payments.money import MoneyError
from fynlo_sync.domains.payments.providers.plugin import ProvidersPlugin
from fynlo_sync.engine import apply_op
from fynlo_sync.errors import SettingsError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op, Record
from fynlo_sync.plugin_loader import load_plugins
from fynlo_sync.plugins import SERVER_NODE, Registry
from tests.payments.fixtures import attempt_in, order_with, payments_registry

SPECS = ("fynlo_sync.domains.orders:OrdersPlugin", "fynlo_sync.domains.payments:PaymentsPlugin")
WITH_PROVIDERS = (*SPECS, "fynlo_sync.domains.payments.providers.plugin:ProvidersPlugin")
PROVIDERS_ENV = {"FYNLO_PROVIDERS_PAY_LINK_SECRET": "x" * 32}
SERVER = payments_registry(PaymentsSettings(card_results="server"))

#: Each provider-state command, the attempt state it is legal from, and valid arguments.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("payment_submit", "created", {"provider_ref": "pi_1"}),
    ("payment_require_action", "pending", {}),
    ("payment_authorise", "pending", {}),
    ("payment_capture", "authorised", {}),
    ("payment_expire", "created", {}),
    ("payment_reverse", "captured", {"reason": "payment_returned"}),
    ("payment_fee_correction", "captured", {"correction_id": "bt_1", "processing_fee": 38}),
]


def _op(name: str, args: dict[str, Any], node: str = "till-b") -> Op:
    return Op(
        op_id=f"{node}-op-9",
        node_id=node,
        seq=9,
        hlc=to_wire(pack(1_700_000_005_000, 0)),
        base_seq=4,
        collection="orders",
        record_id="o-1",
        kind="command",
        name=name,
        args={"attempt_id": "a1", **args},
    )


def _apply(registry: Registry, row: Record, name: str, args: dict[str, Any], node: str) -> Any:
    return apply_op(row, _op(name, args, node), registry, 12)


def test_the_cases_cover_every_provider_state_command() -> None:
    assert {name for name, _, _ in CASES} == PROVIDER_STATE_COMMANDS


@pytest.mark.parametrize("method", ["card", "open_banking", "apple_pay"])
@pytest.mark.parametrize(("name", "state", "args"), CASES)
def test_server_mode_refuses_a_terminals_report_and_applies_the_servers(
    name: str, state: str, args: dict[str, Any], method: str
) -> None:
    row = order_with({"a1": attempt_in(state, method=method)})
    refused = _apply(SERVER, row, name, args, "till-b")
    assert (refused.status, refused.reason) == ("rejected", "server-only"), refused
    assert _apply(SERVER, row, name, args, SERVER_NODE).status == "applied"
    # Terminal mode: the till's report is the provider's word.
    assert _apply(payments_registry(), row, name, args, "till-b").status == "applied"


def test_server_mode_leaves_a_terminal_what_moves_no_providers_money() -> None:
    created = order_with({"a1": attempt_in("created")})
    for name, args in [
        ("payment_cancel", {"reason": "requested_by_customer"}),
        ("payment_fail", {"reason": "card_declined"}),
    ]:
        assert _apply(SERVER, created, name, args, "till-b").status == "applied", name
    start = {"method": "card", "amount": 1000}
    assert _apply(SERVER, order_with({}), "payment_start", start, "till-b").status == "applied"
    # A bank payment has no refund by API: the terminal records the transfer back.
    refund = {"refund_id": "r2", "amount": 300}
    bank = order_with({"a1": attempt_in("captured", method="open_banking")})
    assert _apply(SERVER, bank, "payment_refund", refund, "till-b").status == "applied"
    cash_paid = order_with({"a1": attempt_in("captured", method="cash")})
    assert _apply(SERVER, cash_paid, "payment_refund", refund, "till-b").status == "applied"
    # Cash is the terminal's own: its fee correction (a cash fee of 0 corrected) is no
    # provider's report.
    cash = order_with({"a1": attempt_in("captured", method="cash")})
    fee = {"correction_id": "c1", "processing_fee": 5}
    assert _apply(SERVER, cash, "payment_fee_correction", fee, "till-b").status == "applied"


@pytest.mark.parametrize("method", ["card", "apple_pay"])
def test_server_mode_refuses_a_terminals_card_refund_and_applies_the_servers(method: str) -> None:
    """The provider makes a card or Apple Pay refund (the session's ``refund``, protocol
    25.7); only the server records it on the order."""
    refund = {"refund_id": "r2", "amount": 300}
    paid = order_with({"a1": attempt_in("captured", method=method)})
    refused = _apply(SERVER, paid, "payment_refund", refund, "till-b")
    assert (refused.status, refused.reason) == ("rejected", "server-only"), refused
    assert _apply(SERVER, paid, "payment_refund", refund, SERVER_NODE).status == "applied"
    assert _apply(payments_registry(), paid, "payment_refund", refund, "till-b").status == (
        "applied"
    )


def test_the_illegal_transition_comes_before_the_author() -> None:
    row = order_with({"a1": attempt_in("created")})
    result = _apply(SERVER, row, "payment_capture", {}, "till-b")
    assert (result.status, result.reason) == ("rejected", "illegal-transition")


def _rules(registry: Registry) -> PaymentsSettings:
    plugin = registry.plugin("payments")
    assert isinstance(plugin, PaymentsPlugin)
    return plugin.rules


def test_auto_is_server_beside_the_providers_plugin_and_terminal_without() -> None:
    alone = PaymentsPlugin()
    assert _rules(conflict.registry([OrdersPlugin(), alone])).card_results == "terminal"
    beside = conflict.registry([OrdersPlugin(), alone, ProvidersPlugin()])
    assert _rules(beside).card_results == "server"
    assert alone.rules.card_results == "terminal"  # the instance itself is unchanged
    # From the environment: auto by default, an explicit value wins.
    assert _rules(conflict.registry(load_plugins(WITH_PROVIDERS, PROVIDERS_ENV))).card_results == (
        "server"
    )
    explicit = {**PROVIDERS_ENV, "FYNLO_PAYMENTS_CARD_RESULTS": "terminal"}
    assert _rules(conflict.registry(load_plugins(WITH_PROVIDERS, explicit))).card_results == (
        "terminal"
    )
    server = {"FYNLO_PAYMENTS_CARD_RESULTS": "server"}
    assert _rules(conflict.registry(load_plugins(SPECS, server))).card_results == "server"
    # Settings passed in code are taken as given.
    given = PaymentsPlugin(PaymentsSettings())
    assert _rules(conflict.registry([OrdersPlugin(), given, ProvidersPlugin()])).card_results == (
        "terminal"
    )


def test_a_bad_card_results_setting_stops_the_start_naming_it() -> None:
    with pytest.raises(SettingsError) as info:
        load_plugins(SPECS, {"FYNLO_PAYMENTS_CARD_RESULTS": "till"})
    assert "FYNLO_PAYMENTS_CARD_RESULTS" in info.value.detail
    with pytest.raises(MoneyError) as bad:
        PaymentsSettings(card_results="till")  # type: ignore[arg-type]
    assert bad.value.extra["reason"] == "invalid-setting"
