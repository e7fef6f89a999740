"""Payments in the simulator: two terminals cut off from the server take cash for one order
(found at sync, never summed), and planted money bugs the invariants catch and shrink."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fynlo_sync.domains.payments import attempts as attempts_module
from fynlo_sync.domains.payments.attempts import attempt_net
from fynlo_sync.domains.payments.fees import FeeQuote, FeeSchedule, Method, quote
from fynlo_sync.sim.runner import run_schedule, shrink
from fynlo_sync.sim.schedule import Schedule, Step


def _schedule(*extra: Step) -> Schedule:
    """T0 opens a table and both terminals sync; both lose the link and each takes cash for
    the whole bill (with a tip); the links heal."""
    steps = [
        Step("write", t=0, what="open"),
        Step("write", t=0, what="add_line", b=4),
        Step("sync", t=0),
        Step("sync", t=1),
        Step("partition", t=0),
        Step("partition", t=1),
        *extra,
        Step("write", t=0, what="pay", b=0),
        Step("write", t=1, what="pay", b=4),
        Step("heal", t=0),
        Step("heal", t=1),
        Step("sync", t=0),
        Step("sync", t=1),
    ]
    return Schedule(seed=3, terminals=2, tenants=1, steps=tuple(steps), server="memory")


def test_two_offline_cash_payments_are_an_overpayment_in_the_simulator() -> None:
    result = run_schedule(_schedule())
    assert result.ok, result.failure
    assert result.payments["cash"] == 2 and result.payments["overpayments"] == 1
    assert result.payments["refunds_due_open"] == 1


def _fee_on_the_tip(
    schedule: FeeSchedule, method: Method, country: str, currency: str, day: str, amount: int
) -> FeeQuote:
    """The planted bug: the platform fee charged on the tip too (the amount plus 10 %)."""
    return quote(schedule, method, country, currency, day, amount + amount // 10)


def _refund_beyond(attempt: Mapping[str, Any]) -> int:
    """The planted bug: a refund bound that forgets the change given."""
    return attempt_net(attempt) + int(attempt["change"])


@pytest.mark.parametrize(
    ("name", "plant", "extra"),
    [
        ("fee on the tip", ("quote", _fee_on_the_tip), ()),
        (
            "refund above capture",
            ("attempt_net", _refund_beyond),
            (Step("write", t=0, what="pay", b=0), Step("write", t=0, what="refund", b=3)),
        ),
    ],
)
def test_a_planted_money_bug_is_caught_and_shrunk(
    monkeypatch: pytest.MonkeyPatch, name: str, plant: tuple[str, Any], extra: tuple[Step, ...]
) -> None:
    noisy = _schedule(Step("write", t=1, what="note"), Step("tick", dt=5), *extra)
    assert run_schedule(noisy).ok  # without the bug the same service is fine
    monkeypatch.setattr(attempts_module, plant[0], plant[1])
    result = run_schedule(noisy)
    assert result.failure is not None, name
    assert result.failure.invariant == "payments-money", result.failure
    small, runs = shrink(noisy, result.failure.invariant, budget=60)
    assert len(small.steps) < len(noisy.steps) and runs <= 60
    assert run_schedule(small).failure is not None
