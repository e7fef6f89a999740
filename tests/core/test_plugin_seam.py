"""The plugin interface's data types: state tables, invariants, and plugin settings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated

import msgspec
import pytest

import conflict
from fynlo_sync.domains.orders import ORDERS, TABLE, OrdersPlugin
from fynlo_sync.errors import CallerError, IllegalTransitionError, SettingsError
from fynlo_sync.ops import Record, Stamp
from fynlo_sync.plugins import (
    Collection,
    DomainPlugin,
    Field,
    Invariant,
    InvariantViolation,
    RecordsByCollection,
    StateTable,
    load_settings,
    settings_prefix,
)

DOOR = StateTable(
    field="state",
    states=("closed", "open", "locked"),
    transitions={
        (None, "install"): "closed",
        ("closed", "open"): "open",
        ("open", "shut"): "closed",
    },
    commands=("install", "open", "shut"),
    final=frozenset({"locked"}),
)


def _noop(ctx: object) -> dict[str, object]:
    return {}


def test_a_state_table_advances_or_refuses_with_illegal_transition() -> None:
    assert DOOR.advance(None, "install") == "closed"
    assert DOOR.advance({"state": "closed"}, "open") == "open"
    assert DOOR.next("open", "open") is None
    with pytest.raises(IllegalTransitionError) as refused:
        DOOR.advance({"state": "open"}, "open", "the door")
    assert refused.value.extra == {
        "command": "open",
        "reason": "illegal-transition",
        "state": "open",
    }
    assert str(refused.value) == "the door cannot open when open"
    # A state field that holds something other than a string is simply not in the table.
    with pytest.raises(IllegalTransitionError):
        DOOR.advance({"state": ["open"]}, "shut")


@pytest.mark.parametrize(
    ("transitions", "final", "message"),
    [
        ({("ajar", "open"): "open"}, frozenset(), "'ajar' is not one of its states"),
        ({("closed", "kick"): "open"}, frozenset(), "command 'kick' is not listed"),
        ({("locked", "open"): "open"}, frozenset({"locked"}), "final state 'locked'"),
        ({}, frozenset({"gone"}), "final 'gone' unknown"),
    ],
)
def test_a_state_table_that_contradicts_itself_is_refused(
    transitions: dict[tuple[str | None, str], str], final: frozenset[str], message: str
) -> None:
    with pytest.raises(CallerError, match=message):
        StateTable("state", ("closed", "open", "locked"), transitions, ("open",), final)


def test_a_collection_takes_its_states_from_its_table_and_checks_it() -> None:
    fields = {"state": Field("str", kind="state")}
    doors = Collection(
        "doors", fields, state_table=DOOR, commands=dict.fromkeys(DOOR.commands, _noop)
    )
    assert doors.states == DOOR.states
    with pytest.raises(CallerError, match="is not one of its fields of kind 'state'"):
        Collection("doors", {"state": Field("str")}, state_table=DOOR)
    with pytest.raises(CallerError, match="states differ"):
        Collection("doors", fields, states=("open",), state_table=DOOR)
    with pytest.raises(CallerError, match="governs commands it lacks: install, open, shut"):
        Collection("doors", fields, state_table=DOOR)


def test_the_orders_table_is_data_in_spec_order() -> None:
    shape = TABLE.to_json()
    assert shape["field"] == "status"
    assert shape["states"] == ["open", "sent", "ready", "served", "closed", "voided"]
    assert shape["final"] == ["closed", "voided"]
    assert shape["transitions"][0] == {"from": None, "command": "open", "to": "open"}
    assert {"from": "sent", "command": "add_line", "to": "open"} in shape["transitions"]
    assert len(shape["transitions"]) == len(TABLE.transitions) == 16
    assert conflict.registry([OrdersPlugin()]).collection(ORDERS).state_table is TABLE


def _record(collection: str, record_id: str, deleted: bool = False, **fields: object) -> Record:
    stamp = Stamp("0000000000000001", "n", 1)
    return Record(
        collection=collection,
        record_id=record_id,
        fields=dict(fields),
        stamps=dict.fromkeys(fields, stamp),
        deleted=deleted,
        deleted_stamp=stamp if deleted else None,
        version=1,
    )


def test_the_orders_invariant_reports_a_total_that_is_not_its_lines() -> None:
    registry = conflict.registry([OrdersPlugin()])
    line = {"item": "tea", "qty": 2, "unit_price": 150, "sent": False}
    good = _record(ORDERS, "o1", status="open", currency="EUR", lines={"a": line}, total=300)
    bad = _record(ORDERS, "o2", status="open", currency="EUR", lines={"a": line}, total=299)
    broken = _record(ORDERS, "o3", status="open", currency="EUR", lines={"a": 7}, total=0)
    gone = _record(ORDERS, "o4", deleted=True, lines={"a": line}, total=1)
    assert registry.check_invariants([good, gone]) == []
    assert registry.check_invariants([broken, bad, good]) == [
        InvariantViolation("orders", "order-total", "order o2 total 299 but its lines sum to 300"),
        InvariantViolation(
            "orders",
            "order-total",
            "order o3 total 0 but its lines sum to nothing (its lines are malformed: TypeError)",
        ),
    ]


class _Ledger(DomainPlugin):
    name = "ledger"

    def invariants(self) -> Iterable[Invariant]:
        def balanced(records: RecordsByCollection) -> Iterator[str]:
            total = sum(r.fields.get("amount", 0) for r in records["orders"])
            if total != 0:
                yield f"postings sum to {total}"

        return (Invariant("balanced", balanced, on_terminals=False),)


def test_invariants_see_every_collection_and_can_be_server_only() -> None:
    registry = conflict.registry([OrdersPlugin(), _Ledger()])
    assert [(p, i.name) for p, i in registry.invariants()] == [
        ("orders", "order-total"),
        ("ledger", "balanced"),
    ]
    # The ledger reads "orders" even when the tenant has none (every collection has a key).
    assert registry.check_invariants([]) == []
    odd = _record(ORDERS, "o1", amount=5, lines={}, total=0)
    assert registry.check_invariants([odd]) == [
        InvariantViolation("ledger", "balanced", "postings sum to 5")
    ]
    assert registry.check_invariants([odd], terminal=True) == []


def test_an_invariant_name_twice_is_refused() -> None:
    class Twice(DomainPlugin):
        name = "twice"

        def invariants(self) -> Iterable[Invariant]:
            return (Invariant("x", lambda r: ()), Invariant("x", lambda r: ()))

    with pytest.raises(CallerError, match="invariant 'x' of plugin 'twice' is declared already"):
        conflict.registry([Twice()])


class _CardSettings(msgspec.Struct, frozen=True):
    api_key: str
    stamps_per_card: Annotated[int, msgspec.Meta(ge=1, le=50)] = 10
    enabled: bool = True
    tiers: tuple[str, ...] = ("bronze",)

    def __post_init__(self) -> None:
        if self.api_key.startswith(" "):
            raise ValueError("api_key must not start with a space")


class _Cards(DomainPlugin):
    name = "stamp-card"
    settings_model = _CardSettings


def test_plugin_settings_come_from_its_prefix() -> None:
    assert settings_prefix("stamp-card") == "FYNLO_STAMP_CARD_"
    plugin = _Cards.from_env(
        {
            "FYNLO_STAMP_CARD_API_KEY": "k",
            "FYNLO_STAMP_CARD_STAMPS_PER_CARD": "8",
            "FYNLO_STAMP_CARD_ENABLED": "false",
            "FYNLO_STAMP_CARD_TIERS": "bronze, gold",
            "FYNLO_OTHER_X": "ignored",
        }
    )
    assert plugin.settings == _CardSettings("k", 8, False, ("bronze", "gold"))
    defaults = _Cards.from_env({"FYNLO_STAMP_CARD_API_KEY": "k", "FYNLO_STAMP_CARD_TIERS": ""})
    assert defaults.settings == _CardSettings("k")
    # A plugin without settings is still built with no arguments, whatever the environment.
    assert OrdersPlugin.from_env({"FYNLO_ORDERS_ANYTHING": "1"}).settings is None


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        ({}, "FYNLO_STAMP_CARD_API_KEY", "is not set"),
        ({"FYNLO_STAMP_CARD_STAMPS_PER_CARD": "ten"}, "FYNLO_STAMP_CARD_STAMPS_PER_CARD", "int"),
        ({"FYNLO_STAMP_CARD_STAMPS_PER_CARD": "0"}, "FYNLO_STAMP_CARD_STAMPS_PER_CARD", ">= 1"),
        ({"FYNLO_STAMP_CARD_ENABLED": "maybe"}, "FYNLO_STAMP_CARD_ENABLED", "bool"),
        (
            {"FYNLO_STAMP_CARD_STAMP_PER_CARD": "3"},
            "FYNLO_STAMP_CARD_STAMP_PER_CARD",
            "not a setting",
        ),
        ({"FYNLO_STAMP_CARD_API_KEY": " k"}, "FYNLO_STAMP_CARD_*", "must not start"),
    ],
)
def test_a_bad_plugin_setting_names_its_variable(
    env: dict[str, str], variable: str, says: str
) -> None:
    full = {"FYNLO_STAMP_CARD_API_KEY": "k", **env} if env else {}
    with pytest.raises(SettingsError) as refused:
        _Cards.from_env(full)
    assert str(refused.value).startswith(variable), str(refused.value)
    assert says in str(refused.value)
    assert refused.value.extra["variable"] == variable


def test_load_settings_takes_any_prefix() -> None:
    got = load_settings(_CardSettings, "X_", {"X_API_KEY": "a", "X_STAMPS_PER_CARD": "50"})
    assert got.stamps_per_card == 50
