"""Effect faults, simulated: the durable outbox under a worker that crashes after its claim,
a provider that times out after it succeeded, and completions that arrive twice (a worker
that outlived its lease, a settle sent again). Deterministic for a seed: a virtual clock,
a seeded random source, the real replica, engine and memory store.

Checked at the end (the exactly-once oracle): every effect is ``done``; the provider
performed every effect's side effect exactly once (it saw some keys more than once); the
op each effect authored is in the feed exactly once; every late completion was refused.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.effects import (
    SERVER_NODE,
    EffectContext,
    EffectHandler,
    EffectRow,
    RetryableEffectError,
    RetryPolicy,
)
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op, Record
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.memory import MemoryServerStore

__all__ = ["EffectFaultReport", "FakeProvider", "run_effect_faults", "sent_order"]

FAULTS = ("crash_after_claim", "timeout_after_success", "duplicate_completion")


class FakeProvider:
    """A provider with real idempotency: the first call of a key performs the side effect
    and stores its result; a repeated key returns that result and performs nothing."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.side_effects: Counter[str] = Counter()

    def call(self, key: str, what: str) -> str:
        self.calls[key] += 1
        if key not in self.results:
            self.side_effects[key] += 1
            self.results[key] = f"printed {what}"
        return self.results[key]


class _Printer(OrdersPlugin):
    """Kitchen tickets through the fake provider; the result comes back as the order's
    ``note`` (an op of node ``server``). ``timeout_next`` makes the next call time out
    after the provider did its work."""

    def __init__(self, provider: FakeProvider) -> None:
        super().__init__()
        self.provider = provider
        self.timeout_next = False

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        return {"kitchen_ticket": self.print_ticket}

    async def print_ticket(self, ctx: EffectContext) -> None:
        order = ctx.effect.payload["order_id"]
        result = self.provider.call(ctx.key, order)
        if self.timeout_next:
            self.timeout_next = False
            raise RetryableEffectError("the provider timed out (after it printed)")
        ctx.author.patch("orders", order, {"note": result})


@dataclass
class EffectFaultReport:
    seed: int
    effects: int = 0
    attempts: int = 0
    performed: int = 0
    provider_calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "effects": self.effects,
            "attempts": self.attempts,
            "performed": self.performed,
            "provider_calls": self.provider_calls,
            "faults": {name: self.faults[name] for name in FAULTS},
            "violations": list(self.violations),
        }


def sent_order(node: str, index: int) -> list[Op]:
    """Order ``o<index>`` of ``node``: open, one line, sent to the kitchen (seqs
    ``3 * index + 1`` to ``+ 3``): one kitchen ticket effect."""
    line = {"line_id": "l1", "item": "soup", "qty": 1, "unit_price": 450}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("open", {"currency": "GBP"}),
        ("add_line", line),
        ("send_to_kitchen", {}),
    ]
    first = 3 * index + 1
    return [
        Op(
            op_id=f"{node}-{first + k}",
            node_id=node,
            seq=first + k,
            hlc=to_wire(pack(1_700_000_000_000 + first + k, 0)),
            base_seq=0,
            collection="orders",
            record_id=f"o{index}",
            kind="command",
            name=name,
            args=args,
        )
        for k, (name, args) in enumerate(steps)
    ]


def run_effect_faults(
    seed: int, orders: int = 12, *, fault_rate: float = 0.35, broken_fence: bool = False
) -> EffectFaultReport:
    """Send ``orders`` orders to the kitchen and drive their effects through seeded faults.
    ``broken_fence`` makes late completions go through (a store without the attempt fence):
    the oracle must then catch the doubled result."""
    rng = random.Random(seed)
    now = [1_700_000_000_000]
    provider = FakeProvider()
    plugin = _Printer(provider)
    store = MemoryServerStore()
    policy = RetryPolicy(base_ms=100, cap_ms=800, max_failures=1000, lease_ms=5000, timeout_ms=4000)
    replica = ServerReplica(
        store,
        conflict.registry([plugin]),
        now_ms=lambda: now[0],
        rng=random.Random(seed),
        policy=policy,
        inline_effects=False,
    )
    report = EffectFaultReport(seed)
    for index in range(orders):
        replica.push("t", Batch.of("till", sent_order("till", index)))
    crashed: list[EffectRow] = []

    async def read(tenant: str, collection: str, record_id: str) -> Record | None:
        return replica.read(tenant, collection, record_id)

    for _ in range(10_000):
        rows = replica.claim_effects(limit=rng.randint(1, 4))
        if not rows:
            if all(r.state == "done" for r in store.effect_rows("t")):
                break
            now[0] += 1_000  # nothing due: time passes, leases and backoffs run out
            continue
        for row in rows:
            report.attempts += 1
            fault = rng.choice(FAULTS) if rng.random() < fault_rate else None
            if fault == "crash_after_claim":
                report.faults[fault] += 1
                crashed.append(row)  # the worker died holding the claim
                continue
            if fault == "timeout_after_success":
                report.faults[fault] += 1
                plugin.timeout_next = True
            now[0] += rng.randint(1, 50)
            settlement, drafts = asyncio.run(replica.attempt(row, read))
            replica.finish_effect(row, settlement, drafts)
            if fault == "duplicate_completion":
                report.faults[fault] += 1
                if _late(replica, row, settlement, drafts, broken_fence):
                    report.violations.append(f"a second completion of {row.key} was taken")
        # a worker that died long ago comes back and reports its attempt
        for row in [r for r in crashed if rng.random() < 0.3]:
            crashed.remove(row)
            report.faults["duplicate_completion"] += 1
            settlement, drafts = asyncio.run(replica.attempt(row, read))
            current = next(r for r in store.effect_rows("t") if r.key == row.key)
            if current.attempts != row.attempts or current.state != "running":
                if _late(replica, row, settlement, drafts, broken_fence):
                    report.violations.append(f"a stale completion of {row.key} was taken")
            else:  # its lease has not run out: it is still the current claim
                replica.finish_effect(row, settlement, drafts)
    _check(report, store, provider, orders)
    return report


def _late(
    replica: ServerReplica, row: EffectRow, settlement: Any, drafts: Any, broken_fence: bool
) -> bool:
    """Offer a completion that is not current; True if it was taken."""
    if broken_fence:  # the bug the fence prevents: settle whatever arrives
        if drafts:
            replica.author(row.tenant, drafts)
        return False
    return replica.finish_effect(row, settlement, drafts)


def _check(
    report: EffectFaultReport, store: MemoryServerStore, provider: FakeProvider, orders: int
) -> None:
    rows = store.effect_rows("t")
    report.effects = len(rows)
    report.performed = sum(provider.side_effects.values())
    report.provider_calls = sum(provider.calls.values())
    if len(rows) != orders:
        report.violations.append(f"{len(rows)} effects for {orders} sends")
    for row in rows:
        if row.state != "done":
            report.violations.append(f"{row.key} is {row.state}")
        if provider.side_effects[row.idempotency_key] != 1:
            report.violations.append(
                f"{row.key}: side effect performed {provider.side_effects[row.idempotency_key]}"
                " times"
            )
    notes = Counter(
        c.record.record_id
        for c in store.changes("t", 0, 1_000_000)
        if c.node_id == SERVER_NODE and c.record.collection == "orders"
    )
    for index in range(orders):
        if notes[f"o{index}"] != 1:
            report.violations.append(
                f"o{index}: the printer's result is in the feed {notes[f'o{index}']} times"
            )
