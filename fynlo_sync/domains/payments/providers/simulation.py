"""Provider faults, simulated: thousands of payment attempts through the real flow
(:mod:`.flow`) against a simulated card provider and bank, under the faults that cost
money when handled wrongly:

* an answer lost after the provider acted; a timeout before it did; a 5xx either way;
* a crash between the provider call and recording its answer (the durable effect runs
  again, with ``retry``);
* webhooks duplicated, reordered, or delivered before the API call that caused them
  returned;
* a bank payment's 15-minute expiry racing the customer's approval; a late failure after
  ``executed``; 3-D Secure completed or abandoned; declines.

Like localstripe, the simulated card provider may keep no idempotency keys
(``idempotent=False``, the default): only the look-up after an ambiguous outcome keeps a
retry from creating a second payment.

The server side is modelled as the wiring does it: every provider call runs from a durable
effect (a record that survives a crash, with its key and try count); webhooks are deduped by
event id and re-fetch the payment; the provider's view becomes ``payment_*`` commands by
:func:`.flow.attempt_commands`, applied to the attempt by the payments state table; when a
bank attempt fails or expires, the order starts a card attempt for the same balance, only
once no attempt is live. At the end everything is drained and reconciled, then checked:

* ``double_charges``: orders where the providers took more than was due, or an attempt
  with more than one payment that took money;
* ``lost_captures``: money a provider took that the attempt does not show as captured (with
  the same amount);
* ``phantom_captures``: attempts shown captured with no money taken;
* ``two_live``: steps at which an order had two live attempts.

Deterministic for a seed: no clock, no I/O (the asyncio loop only runs coroutines).
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fynlo_sync.domains.payments.providers import (
    Action,
    CreatePayment,
    ProviderAmbiguousError,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderRefusedError,
    WebhookEvent,
    flow,
)
from fynlo_sync.domains.payments.states import LIVE_STATES, TRANSITIONS

__all__ = ["Faults", "SimProvider", "run"]

EXPIRY_MS = 15 * 60 * 1000

#: The payments plugin's attempt table and live states (one table, theirs).
_TABLE = TRANSITIONS
_LIVE = LIVE_STATES


@dataclass(frozen=True)
class Faults:
    lost_answer: float = 0.05
    timeout: float = 0.05
    error_5xx: float = 0.03
    crash: float = 0.04
    duplicate_webhook: float = 0.2
    reorder_webhooks: float = 0.3
    webhook_before_answer: float = 0.2
    #: Does the card provider keep idempotency keys? (localstripe does not.)
    idempotent: bool = False


@dataclass
class _Pay:
    pid: str
    attempt_id: str
    amount: int
    kind: str
    method: str | None
    capture: str
    created_ms: int
    status: str = "created"
    received: int = 0
    failure: str | None = None
    late_failed: bool = False

    def view(self) -> ProviderPayment:
        action = None
        if self.status == "requires_action":
            action = Action(
                type="bank_consent" if self.kind == "bank" else "three_d_secure",
                url=f"sim://{self.pid}",
                expires_at_ms=self.created_ms + EXPIRY_MS if self.kind == "bank" else None,
            )
        return ProviderPayment(
            provider=self.kind,
            provider_id=self.pid,
            attempt_id=self.attempt_id,
            status=self.status,  # type: ignore[arg-type]
            raw_status=self.status,
            amount=self.amount,
            currency="GBP",
            amount_capturable=self.amount if self.status == "authorized" else 0,
            amount_received=self.received,
            failure_code=self.failure,
            action=action,
        )


class SimProvider:
    """A card provider (``kind="card"``) or a bank (``kind="bank"``) in memory, with faults.

    Card: created -> (confirm) succeeded | authorized (manual) | requires_action (3-D
    Secure, method ``3ds``) | failed (method ``decline``). Bank: created in
    requires_action, expires after 15 minutes unless approved first."""

    def __init__(
        self,
        kind: str,
        rng: random.Random,
        faults: Faults,
        now: Callable[[], int],
        counts: dict[str, int],
    ) -> None:
        self.name = kind
        self.kind = kind
        self.rng = rng
        self.faults = faults
        self.now = now
        self.counts = counts
        self.payments: dict[str, _Pay] = {}
        self.keys: dict[str, Any] = {}
        self.events: list[tuple[str, str]] = []  # (event_id, pid)
        #: Payments in requires_action, and bank payments that took money (kept as changes
        #: happen, so the simulation never scans every payment).
        self.waiting: set[str] = set()
        self.by_attempt: dict[str, list[str]] = {}
        self.succeeded: set[str] = set()
        self.hook: Callable[[str, str], Any] | None = None
        self.enabled = True
        self._n = 0

    # Faults ----------------------------------------------------------------------------

    async def _call(self, key: str | None, act: Callable[[], Any]) -> Any:
        f = self.faults if self.enabled else Faults(0, 0, 0, 0, 0, 0, 0, self.faults.idempotent)
        r = self.rng.random()
        if r < f.timeout:
            self.counts["timeouts"] += 1
            raise ProviderAmbiguousError("sim: timeout before the provider acted")
        r -= f.timeout
        if key is not None and (self.faults.idempotent or self.kind == "bank") and key in self.keys:
            result = self.keys[key]
        else:
            result = act()
            if key is not None:
                self.keys[key] = result
        if r < f.lost_answer:
            self.counts["lost_answers"] += 1
            raise ProviderAmbiguousError("sim: the answer was lost")
        r -= f.lost_answer
        if r < f.error_5xx:
            self.counts["errors_5xx"] += 1
            raise ProviderAmbiguousError("sim: 502 after acting")
        if isinstance(result, ProviderError):
            raise result
        return result

    def _emit(self, pay: _Pay) -> None:
        if pay.status == "requires_action":
            self.waiting.add(pay.pid)
        else:
            self.waiting.discard(pay.pid)
        if pay.status == "succeeded" and not pay.late_failed:
            self.succeeded.add(pay.pid)
        else:
            self.succeeded.discard(pay.pid)
        self._n += 1
        self.events.append((f"evt_{self.kind}_{self._n}", pay.pid))

    async def _early_webhooks(self) -> None:
        early = self.enabled and self.hook is not None and self.events
        if early and self.rng.random() < self.faults.webhook_before_answer:
            assert self.hook is not None
            self.counts["webhooks_before_answer"] += 1
            event_id, pid = self.events.pop()
            await self.hook(event_id, pid)

    # The port --------------------------------------------------------------------------

    async def create(self, request: CreatePayment, *, key: str) -> ProviderPayment:
        def act() -> ProviderPayment:
            self._n += 1
            pid = f"{self.kind}_{self._n}"
            pay = _Pay(
                pid,
                request.attempt_id,
                request.amount,
                self.kind,
                request.payment_method,
                request.capture,
                self.now(),
            )
            if self.kind == "bank":
                pay.status = "requires_action"
            self.payments[pid] = pay
            self.by_attempt.setdefault(request.attempt_id, []).append(pid)
            self._emit(pay)
            return pay.view()

        result: ProviderPayment = await self._call(key, act)
        await self._early_webhooks()
        return result

    async def confirm(self, provider_id: str, *, key: str) -> ProviderPayment:
        def act() -> ProviderPayment:
            pay = self.payments[provider_id]
            if pay.status != "created":
                return pay.view()
            if pay.method == "decline":
                pay.status, pay.failure = "failed", "card_declined"
            elif pay.method == "3ds":
                pay.status = "requires_action"
            elif pay.capture == "manual":
                pay.status = "authorized"
            else:
                pay.status, pay.received = "succeeded", pay.amount
            self._emit(pay)
            return pay.view()

        result: ProviderPayment = await self._call(key, act)
        await self._early_webhooks()
        return result

    async def capture(
        self, provider_id: str, amount: int | None = None, *, key: str
    ) -> ProviderPayment:
        def act() -> Any:
            pay = self.payments[provider_id]
            if pay.status == "succeeded":
                return pay.view()
            if pay.status != "authorized":
                return ProviderRefusedError(f"sim: cannot capture in {pay.status}")
            pay.status, pay.received = "succeeded", pay.amount if amount is None else amount
            self._emit(pay)
            return pay.view()

        result: ProviderPayment = await self._call(key, act)
        return result

    async def cancel(self, provider_id: str, *, key: str) -> ProviderPayment:
        def act() -> Any:
            pay = self.payments[provider_id]
            if pay.status == "canceled":
                return pay.view()
            if pay.status not in ("created", "requires_action", "authorized"):
                return ProviderRefusedError(f"sim: cannot cancel in {pay.status}")
            pay.status, pay.failure = "canceled", None
            self._emit(pay)
            return pay.view()

        result: ProviderPayment = await self._call(key, act)
        return result

    async def refund(
        self, provider_id: str, amount: int, *, key: str, refund_id: str = ""
    ) -> ProviderRefund:
        raise ProviderRefusedError("sim: no refunds")

    async def find_refunds(self, provider_id: str) -> Sequence[ProviderRefund]:
        return []

    async def retrieve(self, provider_id: str) -> ProviderPayment:
        self.tick()
        result: ProviderPayment = await self._call(None, self.payments[provider_id].view)
        return result

    async def find(self, attempt_id: str) -> Sequence[ProviderPayment]:
        self.tick()

        def act() -> list[ProviderPayment]:
            pids = sorted(self.by_attempt.get(attempt_id, ()))
            return [self.payments[pid].view() for pid in pids]

        result: list[ProviderPayment] = await self._call(None, act)
        return result

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], *, now_s: int) -> WebhookEvent:
        raise NotImplementedError("the simulator delivers events directly")

    # The customer and the bank's clock ---------------------------------------------------

    def tick(self) -> None:
        if self.kind != "bank":
            return
        now = self.now()
        for pid in sorted(self.waiting):
            pay = self.payments[pid]
            if pay.status == "requires_action" and now >= pay.created_ms + EXPIRY_MS:
                pay.status, pay.failure = "failed", "expired"
                self._emit(pay)

    def customer(self, pid: str, approve: bool) -> bool:
        """The customer approves or declines (3-D Secure or the bank); False if too late."""
        self.tick()
        pay = self.payments[pid]
        if pay.status != "requires_action":
            return False
        if not approve:
            pay.status, pay.failure = "failed", "authorization_failed"
        elif pay.kind == "card" and pay.capture == "manual":
            pay.status = "authorized"
        else:
            pay.status, pay.received = "succeeded", pay.amount
        self._emit(pay)
        return True

    def fail_late(self, pid: str) -> None:
        pay = self.payments[pid]
        pay.status, pay.failure, pay.late_failed = "failed", "provider_rejected", True
        self._emit(pay)


@dataclass
class _Effect:
    kind: str  # start, cancel, capture, webhook
    order: str
    attempt: str
    key: str
    tries: int = 0
    pid: str | None = None


@dataclass
class _World:
    rng: random.Random
    faults: Faults
    #: False: a retried effect creates again without looking up first (the bug this
    #: simulation exists to catch; only for showing that it does).
    lookup_first: bool = True
    now_ms: int = 1_800_000_000_000
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "timeouts",
                "lost_answers",
                "errors_5xx",
                "crashes",
                "webhooks",
                "duplicate_webhooks",
                "reordered_webhooks",
                "webhooks_before_answer",
                "webhooks_deduped",
                "expiry_races",
                "late_failures",
                "fallbacks_to_card",
                "declines",
                "three_d_secure",
                "cancels",
                "ambiguous_retries",
                "two_live",
                "findings",
            ),
            0,
        )
    )
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    effects: dict[str, _Effect] = field(default_factory=dict)
    seen_events: set[str] = field(default_factory=set)
    attempts: int = 0
    #: Live attempts (order, attempt) and orders touched since the last fallback pass.
    live: set[tuple[str, str]] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.card = SimProvider("card", self.rng, self.faults, lambda: self.now_ms, self.counts)
        self.bank = SimProvider("bank", self.rng, self.faults, lambda: self.now_ms, self.counts)
        self.card.hook = self.webhook
        self.bank.hook = self.webhook

    def provider(self, method: str) -> SimProvider:
        return self.bank if method == "open_banking" else self.card

    # The server ----------------------------------------------------------------------

    def start_attempt(self, order_id: str, method: str, card: str, capture: str) -> None:
        order = self.orders[order_id]
        if any(a["state"] in _LIVE for a in order["attempts"].values()):
            return  # payments refuses a second live attempt (attempt-live)
        balance = order["due"] - sum(a["captured"] for a in order["attempts"].values())
        if balance <= 0:
            return
        self.attempts += 1
        aid = f"{order_id}-a{len(order['attempts']) + 1}"
        order["attempts"][aid] = {
            "state": "created",
            "method": method,
            "card": card,
            "capture": capture,
            "amount": balance,
            "captured": 0,
        }
        self.live.add((order_id, aid))
        self.effects[f"{aid}:start"] = _Effect("start", order_id, aid, f"{aid}:start")

    def apply(self, order_id: str, aid: str, payment: ProviderPayment) -> None:
        attempt = self.orders[order_id]["attempts"][aid]
        plan = flow.attempt_commands(aid, attempt["state"], payment)
        if plan.finding:
            self.counts["findings"] += 1
            attempt.setdefault("findings", []).append(plan.finding)
        for name, args in plan.commands:
            target = _TABLE.get((attempt["state"], name[len("payment_") :]))
            if target is None:
                raise AssertionError(f"illegal {name} in {attempt['state']} for {aid}")
            attempt["state"] = target
            if name == "payment_capture":
                attempt["captured"] = args["amount"]
            attempt["provider_ref"] = args["provider_ref"]
        if attempt["state"] not in _LIVE:
            self.live.discard((order_id, aid))
        self.touched.add(order_id)
        self.check_live(order_id)

    def check_live(self, order_id: str) -> None:
        live = [a for a in self.orders[order_id]["attempts"].values() if a["state"] in _LIVE]
        if len(live) > 1:
            self.counts["two_live"] += 1

    async def webhook(self, event_id: str, pid: str) -> None:
        """The webhook route: dedupe by event id, re-fetch, apply (as a durable effect)."""
        self.counts["webhooks"] += 1
        if event_id in self.seen_events:
            self.counts["webhooks_deduped"] += 1
            return
        self.seen_events.add(event_id)
        kind = "bank" if pid.startswith("bank") else "card"
        pay = (self.bank if kind == "bank" else self.card).payments[pid]
        order_id = pay.attempt_id.split("-a")[0]
        self.effects[f"webhook:{event_id}"] = _Effect(
            "webhook", order_id, pay.attempt_id, f"webhook:{event_id}", pid=pid
        )

    async def run_effect(self, effect: _Effect) -> None:
        order = self.orders[effect.order]
        attempt = order["attempts"][effect.attempt]
        provider = self.provider(attempt["method"])
        retry = effect.tries > 0
        effect.tries += 1
        if retry:
            self.counts["ambiguous_retries"] += 1
        try:
            if effect.kind == "start":
                request = CreatePayment(
                    attempt_id=effect.attempt,
                    amount=attempt["amount"],
                    currency="GBP",
                    capture="manual" if attempt["capture"] == "manual" else "automatic",
                    payment_method=attempt["card"] if provider.kind == "card" else None,
                )
                payment: ProviderPayment | None = await flow.start(
                    provider, request, retry=retry and self.lookup_first
                )
            elif effect.kind == "cancel":
                payment = await flow.cancel(provider, effect.attempt)
            elif effect.kind == "capture":
                payment = await flow.capture(provider, effect.attempt)
            else:
                payment = await flow.refresh(provider, effect.attempt, effect.pid)
        except ProviderAmbiguousError:
            return  # the effect stays; its next run looks the payment up first
        except ProviderRefusedError:
            del self.effects[effect.key]
            return
        if provider.enabled and self.rng.random() < self.faults.crash:
            self.counts["crashes"] += 1
            return  # crashed after the call, before recording: the effect runs again
        if payment is not None:
            self.apply(effect.order, effect.attempt, payment)
        del self.effects[effect.key]
        if effect.kind == "start" and attempt["capture"] == "manual":
            self.effects[f"{effect.attempt}:capture"] = _Effect(
                "capture", effect.order, effect.attempt, f"{effect.attempt}:capture"
            )

    async def deliver_webhooks(self, provider: SimProvider) -> None:
        batch, provider.events = provider.events, []
        if len(batch) > 1 and provider.enabled and self.rng.random() < self.faults.reorder_webhooks:
            self.counts["reordered_webhooks"] += 1
            self.rng.shuffle(batch)
        for event_id, pid in batch:
            await self.webhook(event_id, pid)
            if provider.enabled and self.rng.random() < self.faults.duplicate_webhook:
                self.counts["duplicate_webhooks"] += 1
                await self.webhook(event_id, pid)

    def fallback(self, order_id: str) -> None:
        order = self.orders[order_id]
        attempts = order["attempts"]
        if any(a["state"] in _LIVE for a in attempts.values()):
            return
        paid = sum(a["captured"] for a in attempts.values())
        last = attempts[sorted(attempts, key=lambda k: int(k.rsplit("a", 1)[1]))[-1]]
        closed = last["state"] in ("failed", "expired", "cancelled")
        if paid < order["due"] and closed and len(attempts) < 4:
            if last["method"] == "open_banking":
                self.counts["fallbacks_to_card"] += 1
            self.start_attempt(order_id, "card", "ok", "automatic")

    # The customer, the terminal, the clock -------------------------------------------

    def act(self) -> None:
        r = self.rng.random()
        if r < 0.5:
            waiting = [
                prov.payments[pid]
                for prov in (self.card, self.bank)
                for pid in sorted(prov.waiting)
            ]
            if waiting:
                pay = self.rng.choice(waiting)
                prov = self.bank if pay.kind == "bank" else self.card
                approve = self.rng.random() < 0.85
                late = pay.kind == "bank" and self.now_ms >= pay.created_ms + EXPIRY_MS - 1000
                prov.customer(pay.pid, approve)  # refused when the consent expired first
                if late:
                    self.counts["expiry_races"] += 1
        elif r < 0.6:
            # The clock jumps (a bank consent may expire; approval races it).
            self.now_ms += self.rng.choice((1_000, 60_000, 5 * 60_000, 14 * 60_000 + 59_000))
        elif r < 0.65:
            # A terminal gives up on a live attempt (abandoned 3-D Secure, a customer leaves).
            live = [(o, a) for o, a in sorted(self.live) if f"{a}:cancel" not in self.effects]
            if live:
                oid, aid = self.rng.choice(live)
                self.counts["cancels"] += 1
                self.effects[f"{aid}:cancel"] = _Effect("cancel", oid, aid, f"{aid}:cancel")
        elif r < 0.67:
            settled = sorted(self.bank.succeeded)
            if settled:
                self.counts["late_failures"] += 1
                self.bank.fail_late(self.rng.choice(settled))

    async def step(self) -> None:
        choice = self.rng.random()
        if choice < 0.45 and self.effects:
            # Insertion order (the language guarantees it), so a seed repeats exactly.
            key = self.rng.choice(list(self.effects))
            await self.run_effect(self.effects[key])
        elif choice < 0.7:
            await self.deliver_webhooks(self.rng.choice((self.card, self.bank)))
        else:
            self.act()
        touched, self.touched = self.touched, set()
        for oid in sorted(touched):
            self.fallback(oid)

    async def drain(self) -> None:
        """Faults off; every effect and webhook runs; then a reconciliation sweep (the
        server's periodic refresh of live attempts) until nothing changes."""
        self.card.enabled = self.bank.enabled = False
        for _ in range(50):
            self.now_ms += EXPIRY_MS + 1  # every consent still waiting expires
            await self.deliver_webhooks(self.card)
            await self.deliver_webhooks(self.bank)
            for key in sorted(self.effects):
                if key in self.effects:
                    await self.run_effect(self.effects[key])
            for oid in sorted(self.orders):
                for aid, a in sorted(self.orders[oid]["attempts"].items()):
                    if a["state"] in _LIVE:
                        pay = await flow.refresh(self.provider(a["method"]), aid, None)
                        if pay is not None:
                            self.apply(oid, aid, pay)
                        elif f"{aid}:start" not in self.effects:
                            self.effects[f"{aid}:start"] = _Effect(
                                "start", oid, aid, f"{aid}:start"
                            )
                    if a["state"] == "authorised" and f"{aid}:capture" not in self.effects:
                        self.effects[f"{aid}:capture"] = _Effect(
                            "capture", oid, aid, f"{aid}:capture"
                        )
                self.fallback(oid)
            if not self.effects and not self.card.events and not self.bank.events:
                # Customers still holding a 3-D Secure challenge give up.
                waiting = sorted(self.card.waiting)
                if not waiting:
                    return
                for pid in waiting:
                    self.card.customer(pid, False)

    def check(self) -> dict[str, int]:
        double = lost = phantom = unreversed = 0
        by_attempt: dict[str, list[_Pay]] = {}
        for prov in (self.card, self.bank):
            for p in prov.payments.values():
                by_attempt.setdefault(p.attempt_id, []).append(p)
        for oid in sorted(self.orders):
            order = self.orders[oid]
            taken = 0
            for aid, a in sorted(order["attempts"].items()):
                pays = by_attempt.get(aid, [])
                took = [p for p in pays if p.status == "succeeded"]
                taken += sum(p.received for p in took)
                if len(took) > 1:
                    double += 1
                got = sum(p.received for p in took)
                if got and (a["state"] not in flow.ATTEMPT_SETTLED or a["captured"] != got):
                    lost += 1
                late = any(p.late_failed for p in pays)
                if a["state"] in flow.ATTEMPT_SETTLED and not got and not late:
                    phantom += 1
                if late and not got and a["state"] in flow.ATTEMPT_SETTLED:
                    unreversed += 1  # the provider took it back; the attempt still shows it
            if taken > order["due"]:
                double += 1
        return {
            "double_charges": double,
            "lost_captures": lost,
            "phantom_captures": phantom,
            "unreversed_late_failures": unreversed,
        }


def _new_order(world: _World, n: int) -> None:
    oid = f"o{n}"
    world.orders[oid] = {"due": world.rng.randrange(500, 12_000), "attempts": {}}
    r = world.rng.random()
    if r < 0.55:
        world.start_attempt(oid, "open_banking", "-", "automatic")
    else:
        card = world.rng.choices(("ok", "decline", "3ds"), weights=(70, 15, 15))[0]
        if card == "decline":
            world.counts["declines"] += 1
        if card == "3ds":
            world.counts["three_d_secure"] += 1
        capture = "manual" if world.rng.random() < 0.3 else "automatic"
        world.start_attempt(oid, "card", card, capture)


async def _run(
    seed: int, attempts: int, faults: Faults, progress: bool, lookup_first: bool
) -> dict[str, Any]:
    world = _World(random.Random(seed), faults, lookup_first)
    n = 0
    batch = 0
    while world.attempts < attempts:
        # A few orders at a time share the simulated world, so their events interleave.
        batch += 1
        for _ in range(8):
            n += 1
            _new_order(world, n)
        for _ in range(world.rng.randrange(20, 80)):
            await world.step()
        if progress and batch % 100 == 0:
            print(f"  payments: {world.attempts} attempts", file=sys.stderr, flush=True)
    await world.drain()
    result = world.check()
    live_left = sum(
        1 for o in world.orders.values() for a in o["attempts"].values() if a["state"] in _LIVE
    )
    return {
        "seed": seed,
        "orders": len(world.orders),
        "payment_attempts": world.attempts,
        "provider_payments": len(world.card.payments) + len(world.bank.payments),
        **result,
        "two_live": world.counts["two_live"],
        "live_left": live_left,
        "faults": {k: v for k, v in sorted(world.counts.items()) if k != "two_live"},
        "idempotent_provider": faults.idempotent,
    }


def run(
    seed: int = 1,
    attempts: int = 10_000,
    faults: Faults | None = None,
    progress: bool = False,
    *,
    lookup_first: bool = True,
) -> dict[str, Any]:
    """Simulate at least ``attempts`` payment attempts; the report as a JSON-ready dict."""
    return asyncio.run(_run(seed, attempts, faults or Faults(), progress, lookup_first))
