"""Extension: one plugin adds fields, commands and derived fields to another's collection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.engine import apply_op
from fynlo_sync.errors import CallerError
from fynlo_sync.plugins import CommandContext, DomainPlugin, Extension, Field
from tests.core.conftest import mkop


def _stars(ctx: CommandContext) -> dict[str, Any]:
    return {"stars": ctx.args["stars"]}


class Reviews(DomainPlugin):
    name = "reviews"

    def __init__(self, ext: Extension) -> None:
        self.ext = ext

    def extensions(self) -> Iterable[Extension]:
        return (self.ext,)


GOOD = Extension(
    collection="orders",
    fields={"stars": Field("int", command_only=True), "per_star": Field("int", command_only=True)},
    commands={"review": _stars},
    derive=lambda f: {"per_star": (f.get("total") or 0) // max(1, f.get("stars") or 1)},
)


def test_extension_adds_fields_commands_and_a_derive_that_sees_the_base_derive() -> None:
    registry = conflict.registry([OrdersPlugin(), Reviews(GOOD)])
    orders = registry.collection("orders")
    assert "stars" in orders.fields and "review" in orders.commands and "void" in orders.commands
    ops = [
        mkop(1, "command", collection="orders", record="o", name="open", args={"currency": "GBP"}),
        mkop(
            2,
            "command",
            collection="orders",
            record="o",
            name="add_line",
            args={"line_id": "l", "item": "x", "qty": 1, "unit_price": 900},
        ),
        mkop(3, "command", collection="orders", record="o", name="review", args={"stars": 3}),
    ]
    record = None
    for op in ops:
        result = apply_op(record, op, registry, op.seq)
        assert result.status == "applied", result.detail
        record = result.record
    assert record is not None
    assert (record.fields["total"], record.fields["stars"], record.fields["per_star"]) == (
        900,
        3,
        300,
    )
    # the plain orders registry knows nothing of it
    plain = conflict.registry([OrdersPlugin()]).collection("orders")
    assert "stars" not in plain.fields


@pytest.mark.parametrize(
    "ext",
    [
        Extension(collection="orders", fields={"total": Field("money")}),
        Extension(collection="orders", commands={"void": _stars}),
        Extension(collection="nope", fields={"x": Field("int")}),
    ],
)
def test_an_extension_cannot_redeclare_or_extend_the_unknown(ext: Extension) -> None:
    with pytest.raises(CallerError):
        conflict.registry([OrdersPlugin(), Reviews(ext)])
