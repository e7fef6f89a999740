"""Our implementation against payments_state.json and fees.json, as read from the files."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fynlo_sync.domains.payments.fees import (
    FeeRate,
    FeeSchedule,
    SurchargeRule,
    check_surcharge,
    quote,
    service_charge,
)
from fynlo_sync.domains.payments.money import (
    MoneyError,
    gross_up,
    percent_of,
    split_equal,
    split_ratio,
)
from fynlo_sync.domains.payments.routing import rank_methods
from fynlo_sync.domains.payments.states import COMMANDS, STATES, next_state
from fynlo_sync.domains.payments.tips import TipSettings, tip_amount
from fynlo_sync.engine import apply_op
from fynlo_sync.ops import Op, Record
from tests.payments.fixtures import payments_registry
from tests.protocol.payments_vectors import settings_of
from tests.protocol.vectors import load

STATE = load("payments_state.json")
FEES = load("fees.json")


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


@pytest.mark.parametrize("vector", STATE, ids=_ids(STATE))
def test_payments_state(vector: dict[str, Any]) -> None:
    table = next_state(vector["state"], vector["command"])
    assert vector["allowed"] == (table is not None)
    if vector["command"] != "refund" and not vector["name"].startswith("rule:"):
        assert table == vector["next"]
    record = msgspec.convert(vector["record"], Record)
    op = msgspec.convert(vector["op"], Op)
    registry = payments_registry(settings_of(vector.get("settings")))
    result = apply_op(record, op, registry, vector["seq"], received_ms=vector.get("received_ms"))
    got = {
        "status": result.status,
        "reason": result.reason,
        "record": None if result.record is None else msgspec.to_builtins(result.record),
    }
    assert got == vector["expect"]


def test_payments_state_covers_every_pair() -> None:
    assert {(v["state"], v["command"]) for v in STATE if v["command"] in COMMANDS} == {
        (s, c) for s in (None, *STATES) for c in COMMANDS
    }


def _schedule(rates: list[dict[str, Any]]) -> FeeSchedule:
    return FeeSchedule(FeeRate(**r) for r in rates)


def _run_fee(v: dict[str, Any]) -> Any:
    kind = v["kind"]
    if kind == "percent":
        return percent_of(v["amount"], v["rate_bp"], v["rounding"])
    if kind == "split_equal":
        return split_equal(v["total"], v["parts"])
    if kind == "split_ratio":
        return split_ratio(v["total"], v["weights"])
    if kind == "gross_up":
        charge = gross_up(v["net"], v["rate_bp"], v["fixed"])
        fee = percent_of(charge, v["rate_bp"], "half-up") + v["fixed"]
        return {"charge": charge, "fee": fee, "net": charge - fee}
    if kind == "tip":
        s = v["settings"]
        settings = TipSettings(s["enabled"], tuple(s["presets_bp"]), s["base"], s["rounding"])
        return tip_amount(settings, amount=v["amount"], order_total=v["order_total"], **v["choice"])
    if kind == "fee":
        q = quote(
            _schedule(v["rates"]), v["method"], v["country"], v["currency"], v["day"], v["amount"]
        )
        return {"processing": q.processing, "platform": q.platform}
    if kind == "surcharge":
        rules = [
            SurchargeRule(
                **{
                    **r,
                    "banned_methods": tuple(r["banned_methods"]),
                    "allowed_funding": tuple(r["allowed_funding"]),
                }
            )
            for r in v["rules"]
        ]
        return check_surcharge(
            "customer",
            country=v["country"],
            method=v["method"],
            day=v["day"],
            surcharge_bp=v["surcharge_bp"],
            processing_bp=v["processing_bp"],
            consumer=v["consumer"],
            funding=v["funding"],
            rules=rules,
        )
    if kind == "service_charge":
        return service_charge(v["amount"], v["rate_bp"], v["rounding"])
    assert kind == "route"
    ranking = rank_methods(
        _schedule(v["rates"]),
        amount=v["amount"],
        country=v["country"],
        currency=v["currency"],
        day=v["day"],
        methods=v["methods"],
    )
    return [
        {
            "method": o.method,
            "processing": o.quote.processing,
            "platform": o.quote.platform,
            "cost": o.cost,
        }
        for o in ranking
    ]


@pytest.mark.parametrize("vector", FEES, ids=_ids(FEES))
def test_fees(vector: dict[str, Any]) -> None:
    if "error" in vector:
        with pytest.raises(MoneyError) as info:
            _run_fee(vector)
        assert info.value.extra["reason"] == vector["error"]
    else:
        assert _run_fee(vector) == vector["expect"]


DELETE = load("payments_delete.json")


@pytest.mark.parametrize("vector", DELETE, ids=_ids(DELETE))
def test_payments_delete(vector: dict[str, Any]) -> None:
    record = msgspec.convert(vector["record"], Record)
    op = msgspec.convert(vector["op"], Op)
    result = apply_op(record, op, payments_registry(), vector["seq"])
    got = {
        "status": result.status,
        "reason": result.reason,
        "record": None if result.record is None else msgspec.to_builtins(result.record),
        "conflict": None if result.conflict is None else msgspec.to_builtins(result.conflict),
    }
    assert got == vector["expect"]


DRAWERS = load("drawers.json")


@pytest.mark.parametrize("vector", DRAWERS, ids=_ids(DRAWERS))
def test_drawers(vector: dict[str, Any]) -> None:
    from fynlo_sync.domains.payments.drawers import match_movement

    if vector.get("kind") == "match":
        finding = match_movement(vector["movement"], vector["order"], vector["deleted"])
        assert finding == vector["expect"]
        return
    record = None if vector["record"] is None else msgspec.convert(vector["record"], Record)
    op = msgspec.convert(vector["op"], Op)
    result = apply_op(record, op, payments_registry(), vector["seq"])
    got = {
        "status": result.status,
        "reason": result.reason,
        "record": None if result.record is None else msgspec.to_builtins(result.record),
    }
    assert got == vector["expect"]
