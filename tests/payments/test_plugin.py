"""The payments plugin as loaded by the server and `fynlo check`: settings from the
environment, its invariants, its collections in the domains document."""

from __future__ import annotations

import pytest

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.payments import PaymentsPlugin
from fynlo_sync.errors import SettingsError
from fynlo_sync.ops import Record
from fynlo_sync.plugin_loader import load_plugins
from fynlo_sync.schema import domains_document
from tests.payments.fixtures import attempt_in, order_with

SPECS = ("fynlo_sync.domains.orders:OrdersPlugin", "fynlo_sync.domains.payments:PaymentsPlugin")


def test_settings_from_the_environment() -> None:
    plugins = load_plugins(
        SPECS,
        {
            "FYNLO_PAYMENTS_REFUND_MANAGER_LIMIT": "700",
            "FYNLO_PAYMENTS_TIP_PRESETS_BP": "1000,1500",
        },
    )
    payments = plugins[1]
    assert isinstance(payments, PaymentsPlugin)
    assert payments.rules.refund_manager_limit == 700
    assert payments.rules.tips.presets_bp == (1000, 1500)
    us = load_plugins(
        SPECS,
        {
            "FYNLO_PAYMENTS_COUNTRY": "US",
            "FYNLO_PAYMENTS_FEE_BEARER": "customer",
            "FYNLO_PAYMENTS_SURCHARGE_BP": "290",
        },
    )[1]
    assert isinstance(us, PaymentsPlugin) and us.rules.fee_bearer == "customer"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"FYNLO_PAYMENTS_FEE_BEARER": "customer"}, "surcharge-banned"),
        (
            {
                "FYNLO_PAYMENTS_COUNTRY": "US",
                "FYNLO_PAYMENTS_FEE_BEARER": "customer",
                "FYNLO_PAYMENTS_SURCHARGE_BP": "350",
            },
            "surcharge-above-cap",
        ),
        ({"FYNLO_PAYMENTS_TIP_ROUNDING": "bankers"}, "FYNLO_PAYMENTS_TIP_ROUNDING"),
        ({"FYNLO_PAYMENTS_REFUND_MANAGER_LIMIT": "-1"}, "FYNLO_PAYMENTS_REFUND_MANAGER_LIMIT"),
        ({"FYNLO_PAYMENTS_SURCHARGE": "1"}, "FYNLO_PAYMENTS_SURCHARGE"),
        # "$" in the pattern also matches before a final newline: the length holds too
        ({"FYNLO_PAYMENTS_COUNTRY": "US\n"}, "FYNLO_PAYMENTS_COUNTRY"),
    ],
)
def test_bad_settings_stop_the_start_naming_the_problem(
    environ: dict[str, str], needle: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_plugins(SPECS, environ)
    assert needle in info.value.detail


def test_invariants_run_through_the_registry() -> None:
    registry = conflict.registry([OrdersPlugin(), PaymentsPlugin()])
    names = [(plugin, inv.name) for plugin, inv in registry.invariants()]
    assert ("payments", "payments-money") in names and ("payments", "payments-ledger") in names
    good = order_with({"a1": attempt_in("captured")})
    broken_fields = dict(good.fields, collected=1)
    broken = Record("orders", "o-1", broken_fields, good.stamps, version=4)
    by_name = {inv.name: inv for _, inv in registry.invariants()}
    money = by_name["payments-money"]
    assert list(money.check({"orders": [good], "drawers": [], "ledger": []})) == []
    assert any("collected is 1" in m for m in money.check({"orders": [broken]}))


def test_the_domains_document_shows_the_extended_orders() -> None:
    doc = domains_document(conflict.registry([OrdersPlugin(), PaymentsPlugin()]))
    text = repr(doc)
    assert "payment_capture" in text and "refunds_due" in text and "drawer_move" in text
