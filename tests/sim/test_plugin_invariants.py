"""The simulator checks every registered plugin's invariants: on the server after every
step and at the end, and on terminals for those marked ``on_terminals``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import conflict
from fynlo_sync.domains.orders import ORDERS, OrdersPlugin
from fynlo_sync.plugins import DomainPlugin, Invariant, RecordsByCollection, Registry
from fynlo_sync.sim import Schedule, Step, run_schedule
from fynlo_sync.sim.floor import FloorPlugin


class _AtMostOneLine(DomainPlugin):
    """A rule the service breaks at its second line: an order holds at most one line."""

    name = "one-line"

    def __init__(self, on_terminals: bool) -> None:
        super().__init__()
        self.on_terminals = on_terminals

    def invariants(self) -> Iterable[Invariant]:
        def check(records: RecordsByCollection) -> Iterator[str]:
            for order in records[ORDERS]:
                if len(order.fields.get("lines") or {}) > 1:
                    yield f"order {order.record_id} has {len(order.fields['lines'])} lines"

        return (Invariant("one-line", check, on_terminals=self.on_terminals),)


def _schedule() -> Schedule:
    steps = [Step("write", t=0, what="open")]
    steps += [Step("write", t=0, what="add_line", b=b) for b in (1, 2)]
    return Schedule(seed=5, terminals=1, tenants=1, steps=tuple(steps))


def _registry(on_terminals: bool) -> Registry:
    return conflict.registry([OrdersPlugin(), FloorPlugin(), _AtMostOneLine(on_terminals)])


def test_a_plugin_invariant_that_holds_everywhere_is_checked_on_the_terminal() -> None:
    result = run_schedule(_schedule(), _registry(on_terminals=True))
    assert result.failure is not None
    assert result.failure.invariant == "one-line"
    assert result.failure.detail.startswith("T0: order ")
    assert result.failure.step == 2


def test_a_server_only_invariant_is_not_held_against_a_terminal() -> None:
    # The terminal breaks the rule at step 2 but is not checked; the server is, once the
    # lines reach it (here when the run heals and syncs everything, after the last step).
    result = run_schedule(_schedule(), _registry(on_terminals=False))
    assert result.failure is not None and result.failure.invariant == "one-line"
    assert result.failure.detail.startswith("server r0: order ")
    assert result.failure.step == 3
