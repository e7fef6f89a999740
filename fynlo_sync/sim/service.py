"""The demo's restaurant service over the real server: terminals on HTTP + WebSockets, each
behind a :class:`~fynlo_sync.sim.cable.Cable` that the service unplugs mid-service.

The service is drawn from a seed (which terminal does what, which ones lose the internet,
which order two of them fight over), so ``--seed`` repeats it; only timings vary. It runs
on one thread; the poke listeners run on their own and only fill queues.

Phases: doors open (everyone online, syncing after each turn and on every poke), outage
(some cables pulled; the cut-off terminals keep taking orders; one order and one table are
edited on both sides of the cut), back online (cables back in; each reconnected terminal
catches up), closing (parked conflicts resolved by the manager, every table closed), then
the audit against the server's feed (and its op log when the server runs in-process).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import ORDERS
from fynlo_sync.domains.payments.drawers import DRAWERS
from fynlo_sync.domains.payments.till import Till
from fynlo_sync.errors import FynloError, RejectedOpError, TransportError
from fynlo_sync.ops import Change, Op, Outcome, Record
from fynlo_sync.plugins import CONFLICTS, Registry
from fynlo_sync.sim import workload
from fynlo_sync.sim.cable import Cable
from fynlo_sync.sim.invariants import parked_by
from fynlo_sync.sim.payments import has_payments, money_report, settle
from fynlo_sync.sim.schedule import Step
from fynlo_sync.store.sqlite import SqliteTerminalStore
from fynlo_sync.transport.http import HttpTransport, PokeListener

__all__ = ["Audit", "Desk", "Service", "SyncEvent"]

NAMES = ("till-1", "till-2", "bar", "patio", "kitchen", "host")
#: What a turn does, and how often (the demo never deletes: see Audit).
TURN_WRITES = (
    ("open", 5),
    ("add_line", 12),
    ("send", 3),
    ("ready", 2),
    ("serve", 2),
    ("close", 2),
    ("void", 1),
    ("note", 3),
    ("tags", 2),
    ("covers", 1),
    ("stock", 3),
    ("table", 1),
    ("pay", 3),
)
#: How long a terminal waits for the poke of the newest change before it syncs anyway.
POKE_WAIT_S = 1.0
#: The fight over one order and one table across the cut.
SPLIT_WRITES = ("note", "tags", "add_line", "table", "covers")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class SyncEvent:
    at: float
    ms: float
    ok: bool
    why: str
    pushed: int = 0
    pulled: int = 0
    error: str = ""


@dataclass(slots=True)
class Desk:
    """One terminal of the demo and what happened to it."""

    index: int
    name: str
    cable: Cable
    link: HttpTransport
    client: Terminal
    listener: PokeListener
    made: list[Op] = field(default_factory=list)
    syncs: list[SyncEvent] = field(default_factory=list)
    outages: list[list[float]] = field(default_factory=list)
    pokes: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    catch_up_ms: list[float] = field(default_factory=list)

    @property
    def online(self) -> bool:
        return self.cable.plugged

    @property
    def node_id(self) -> str:
        return self.client.node_id


@dataclass(slots=True)
class Audit:
    """Every op made, checked against what the server holds."""

    ops_made: int = 0
    ops_pushed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    ops_lost: int = 0
    ops_duplicated: int = 0
    parked: int = 0
    resolved: int = 0
    open_conflicts: int = 0
    converged: bool = False
    differences: list[str] = field(default_factory=list)
    feed_length: int = 0
    exact: bool = False
    orders: int = 0
    orders_total_minor: int = 0
    totals_ok: bool = True
    #: The money at the end (``fynlo_sync.sim.payments.money_report``), or empty without
    #: the payments plugin.
    money: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Event:
    at: float
    text: str


class Service:
    def __init__(
        self,
        *,
        url: str,
        enroll: Callable[[str], str],
        registry: Registry,
        folder: Path,
        terminals: int,
        seed: int,
        turns: int,
        pace: float = 0.0,
        floor: bool = True,
        server_log: Callable[[], dict[str, list[Outcome]]] | None = None,
        on_update: Callable[[Service], None] | None = None,
    ) -> None:
        if terminals < 2:
            raise ValueError("the demo needs at least 2 terminals")
        self.url = url
        self.registry = registry
        self.folder = folder
        self.rng = random.Random(seed)
        self.seed = seed
        self.turns = turns
        self.pace = pace
        self.floor = floor
        self.server_log = server_log
        self.on_update = on_update
        self.phase = "starting"
        self.events: list[Event] = []
        self.phases: list[tuple[str, float]] = []
        self.started = time.perf_counter()
        self.desks: list[Desk] = []
        self.enter("enrolling")
        host, _, port = url.removeprefix("http://").partition(":")
        for index in range(terminals):
            name = NAMES[index] if index < len(NAMES) else f"till-{index - 2}"
            cable = Cable(host, int(port))
            link = HttpTransport.enroll(cable.url, enroll(name))
            store = SqliteTerminalStore(folder / f"{name}.db", link.node_id)
            client = Terminal(
                store,
                registry,
                link,
                wall=wall_ms,
                rng=random.Random(f"{seed}:{name}"),
            )
            listener = PokeListener(link, rng=random.Random(f"{seed}:{name}:ws")).start()
            self.desks.append(Desk(index, name, cable, link, client, listener))

    # ------------------------------------------------------------------ plumbing

    def now(self) -> float:
        return time.perf_counter() - self.started

    def say(self, text: str) -> None:
        self.events.append(Event(self.now(), text))
        self._update()

    def _update(self) -> None:
        if self.on_update is not None:
            self.on_update(self)

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.phases.append((phase, self.now()))
        self.say(f"— {phase} —")

    def sync(self, desk: Desk, why: str) -> bool:
        started = time.perf_counter()
        at = self.now()
        try:
            report = desk.client.sync()
        except TransportError as exc:
            ms = (time.perf_counter() - started) * 1000
            desk.syncs.append(SyncEvent(at, ms, False, why, error=exc.code))
            return False
        ms = (time.perf_counter() - started) * 1000
        desk.syncs.append(SyncEvent(at, ms, True, why, report.pushed, report.pulled))
        return True

    def drain_pokes(self) -> None:
        """Each terminal waits (briefly) for the WebSocket poke that announces the feed's
        newest cursor, then syncs if it is behind. Deciding by the cursor rather than by
        when a poke happens to arrive keeps a seed's service the same from run to run."""
        newest = max(d.client.store.meta().cursor for d in self.desks)
        for desk in self.desks:
            behind = desk.client.store.meta().cursor < newest
            deadline = time.perf_counter() + (POKE_WAIT_S if desk.online and behind else 0.0)
            heard = 0
            while True:
                cursor = desk.listener.next(max(0.0, deadline - time.perf_counter()))
                if cursor is None:
                    break
                desk.pokes += 1
                heard = max(heard, cursor)
                if heard >= newest:
                    break
            while desk.listener.next(0) is not None:  # older pokes still queued
                desk.pokes += 1
            if desk.client.store.meta().cursor < newest:
                self.sync(desk, "poke")

    def write(self, desk: Desk, what: str, a: int, b: int, order_id: str | None = None) -> list[Op]:
        step = Step("write", t=desk.index, what=what, a=a, b=b)
        try:
            ops = workload.act(
                desk.client, "bistro", desk.index, step, order_id=order_id, online=desk.online
            )
        except RejectedOpError as exc:
            desk.refused[str(exc.extra.get("reason") or exc.code)] += 1
            return []
        if not ops and order_id is None:
            ops = workload.act(desk.client, "bistro", desk.index, Step("write", what="open", a=a))
        desk.made.extend(ops)
        return ops

    def turn(self, desk: Desk) -> None:
        names = [w for w, _ in TURN_WRITES if self.floor or w not in ("stock", "table")]
        weights = [n for w, n in TURN_WRITES if self.floor or w not in ("stock", "table")]
        what = self.rng.choices(names, weights)[0]
        self.write(desk, what, self.rng.randrange(8), self.rng.randrange(100))

    def pause(self) -> None:
        self._update()
        if self.pace:
            time.sleep(self.pace)

    # ------------------------------------------------------------------ the service

    def run(self) -> Audit:
        rounds = max(3, self.turns)
        first, second = max(1, rounds // 3), max(2, (2 * rounds) // 3)
        cut = self._choose_cut()
        self.enter("doors open")
        if self.floor:
            self.desks[0].made.extend(workload.seed_floor(self.desks[0].client, "bistro"))
        for desk in self.desks:
            self.sync(desk, "open")
        for round_no in range(rounds):
            if round_no == first:
                self._outage(cut)
            if round_no == second:
                self._reconnect(cut)
            for desk in self.desks:
                self.turn(desk)
                self.sync(desk, "turn")  # a cut-off terminal tries too, and fails
            self.drain_pokes()
            self.pause()
        self.enter("closing")
        self._resolve_parked()
        self._refund_overpayments()
        self._close_tables()
        self._close_drawers()
        self.enter("audit")
        audit = self._audit()
        self.say(
            f"converged: {'yes' if audit.converged else 'NO'}; lost {audit.ops_lost}, "
            f"duplicated {audit.ops_duplicated}"
        )
        return audit

    def _choose_cut(self) -> list[Desk]:
        # The manager's till (0) stays up; about a third of the others lose the internet.
        others = self.desks[1:]
        count = max(1, min(len(others), round(len(self.desks) / 3)))
        return sorted(self.rng.sample(others, count), key=lambda d: d.index)

    def _outage(self, cut: list[Desk]) -> None:
        self.enter("outage")
        shared = self._shared_bill(cut)
        for desk in cut:
            desk.cable.unplug()
            desk.outages.append([self.now(), -1.0])
            self.say(f"{desk.name} loses the internet")
        self._split_brain(cut[0])
        if shared is not None:
            self._double_cash(shared, cut)

    def _split_brain(self, away: Desk) -> None:
        """An order and a table edited on both sides of the cut."""
        here = self.desks[0]
        mine = {o.record_id for o in here.client.records(ORDERS)}
        shared = [
            o
            for o in away.client.records(ORDERS)
            if o.record_id in mine and o.fields.get("status") in ("open", "sent", "served")
        ]
        if not shared:
            return
        order = shared[self.rng.randrange(len(shared))]
        self.say(f"{away.name} (offline) and {here.name} both edit {order.record_id}")
        table = self.rng.randrange(workload.TABLE_COUNT)
        for desk in (away, here):
            for what in SPLIT_WRITES:
                if what == "table" and not self.floor:
                    continue
                self.write(desk, what, table, self.rng.randrange(100), order_id=order.record_id)
            self.sync(desk, "turn")

    # ------------------------------------------------------------------ payments

    def _till(self, desk: Desk) -> Till:
        ids = itertools.count()
        return Till(
            desk.client,
            f"bistro.drawer.{desk.name}",
            lambda: f"{desk.name}.{desk.client.store.meta().next_seq}.{next(ids)}",
            online=lambda: desk.online,
        )

    def _pay(self, desk: Desk, order_id: str, how: int) -> None:
        first = desk.client.store.meta().next_seq
        try:
            settle(desk.client, self._till(desk), order_id, how)
        except RejectedOpError as exc:
            desk.refused[str(exc.extra.get("reason") or exc.code)] += 1
        desk.made.extend(op for op in desk.client.pending() if op.seq >= first)

    def _shared_bill(self, cut: list[Desk]) -> str | None:
        """Just before the outage: a table's bill that the terminals about to be cut off
        (and the manager's till) all have."""
        manager = self.desks[0]
        if not has_payments(manager.client):
            return None
        order_id = "bistro.o0.shared"
        manager.made.append(manager.client.command(ORDERS, order_id, "open", {"currency": "GBP"}))
        line = {"line_id": "s1", "item": "steak", "qty": 2, "unit_price": 2400}
        manager.made.append(manager.client.command(ORDERS, order_id, "add_line", line))
        for desk in (manager, *cut):
            self.sync(desk, "turn")
        return order_id

    def _double_cash(self, order_id: str, cut: list[Desk]) -> None:
        """Two terminals cut off from the server both take cash for the whole bill (the
        second one is the manager's, online, when only one terminal is cut off)."""
        pair = cut[:2] if len(cut) >= 2 else [cut[0], self.desks[0]]
        self.say(f"{pair[0].name} and {pair[1].name} both take cash for {order_id}")
        for desk in pair:
            self._pay(desk, order_id, 0)
            self.sync(desk, "turn")

    def _refund_overpayments(self) -> None:
        """The manager sees what is due back (an overpayment found at sync) and refunds it
        from the drawer; and voids a card payment a guest changed their mind about."""
        manager = self.desks[0]
        if not has_payments(manager.client):
            return
        till = self._till(manager)
        for order in manager.client.records(ORDERS):
            for attempt_id, due in sorted((order.fields.get("refunds_due") or {}).items()):
                first = manager.client.store.meta().next_seq
                try:
                    with manager.client.store.transaction():
                        if manager.client.get(DRAWERS, till.drawer_id) is None:
                            till.open_drawer(10_000, "GBP")
                        till.refund(order.record_id, attempt_id, due["amount"], approved_by="mgr")
                    self.say(
                        f"{manager.name} refunds {due['amount']} overpaid on {order.record_id}"
                    )
                except RejectedOpError as exc:
                    manager.refused[str(exc.extra.get("reason") or exc.code)] += 1
                manager.made.extend(op for op in manager.client.pending() if op.seq >= first)
        for order in manager.client.records(ORDERS):
            if order.fields.get("status") not in ("open", "served") or not order.fields.get(
                "balance_due"
            ):
                continue
            first = manager.client.store.meta().next_seq
            with contextlib.suppress(RejectedOpError):
                attempt_id = till.start(order.record_id, "card", 1)
                for name in ("submit", "authorise"):
                    manager.client.command(
                        ORDERS, order.record_id, f"payment_{name}", {"attempt_id": attempt_id}
                    )
                till.void(order.record_id, attempt_id)
                self.say(f"{manager.name} voids an authorised card payment on {order.record_id}")
            manager.made.extend(op for op in manager.client.pending() if op.seq >= first)
            break
        self.sync(manager, "closing")

    def _close_drawers(self) -> None:
        """Every till counts its drawer (the bar is 50p short) and closes it: a Z-report."""
        for desk in self.desks:
            self.sync(desk, "closing")
            drawer = desk.client.get(DRAWERS, f"bistro.drawer.{desk.name}")
            if drawer is None or drawer.fields.get("status") != "open":
                continue
            counted = int(drawer.fields["expected"]) - (50 if desk.name == "bar" else 0)
            desk.made.append(self._till(desk).close_drawer(counted))
            self.sync(desk, "closing")
        self.drain_pokes()

    def _reconnect(self, cut: list[Desk]) -> None:
        self.enter("back online")
        for desk in cut:
            desk.cable.plug()
            desk.outages[-1][1] = self.now()
            started = time.perf_counter()
            pushed = pulled = 0
            for _attempt in range(50):
                if self.sync(desk, "reconnect"):
                    pushed, pulled = desk.syncs[-1].pushed, desk.syncs[-1].pulled
                    break
                time.sleep(desk.client.backoff.next_delay_ms() / 1000)
            desk.client.backoff.reset()
            ms = (time.perf_counter() - started) * 1000
            desk.catch_up_ms.append(ms)
            self.say(f"{desk.name} is back: pushed {pushed}, pulled {pulled} in {ms:.0f} ms")
        self.drain_pokes()

    def _resolve_parked(self) -> None:
        manager = self.desks[0]
        self.sync(manager, "closing")
        queue = [c for c in manager.client.records(CONFLICTS) if c.fields.get("state") == "open"]
        for number, parked in enumerate(queue):
            choice: Any = "server" if number % 2 == 0 else "incoming"
            with contextlib.suppress(RejectedOpError):
                manager.made.extend(manager.client.resolve_conflict(parked.record_id, choice))
                self.say(f"{manager.name} resolves a parked conflict ({choice} wins)")
        self.sync(manager, "closing")
        self.drain_pokes()

    def _close_tables(self) -> None:
        steps = {"open": "close", "sent": "ready", "ready": "serve", "served": "close"}
        for _pass in range(6):
            busy = False
            for desk in self.desks:
                self.sync(desk, "closing")
                for order in desk.client.records(ORDERS):
                    step = steps.get(order.fields.get("status", ""))
                    if step is None or not order.record_id.startswith(f"bistro.o{desk.index}."):
                        continue  # each till closes its own tables
                    busy = True
                    if step == "close" and has_payments(desk.client):
                        self._pay(desk, order.record_id, self.rng.randrange(3))
                    self.write(desk, step, 0, 0, order_id=order.record_id)
                self.sync(desk, "closing")
            self.drain_pokes()
            self.pause()
            if not busy:
                break
        for _round in range(4):
            for desk in self.desks:
                self.sync(desk, "closing")

    # ------------------------------------------------------------------ the audit

    def _feed(self) -> list[Change]:
        link = self.desks[0].link
        feed: list[Change] = []
        cursor = 0
        while True:
            page = link.pull(cursor, 1000)
            feed.extend(page.changes)
            cursor = page.cursor
            if not page.more:
                return feed

    def _audit(self) -> Audit:
        audit = Audit()
        feed = self._feed()
        audit.feed_length = len(feed)
        state: dict[tuple[str, str], Record] = {}
        for change in feed:
            state[change.record.key] = change.record
        server_rows = [state[k] for k in sorted(state)]
        record_changes: Counter[str] = Counter()
        for change in feed:
            if not parked_by(change):
                record_changes[change.op_id] += 1
        notable: dict[str, Outcome] = {}
        for desk in self.desks:
            for outcome in desk.client.outcomes():
                notable[outcome.op_id] = outcome
        logs = self.server_log() if self.server_log is not None else None
        audit.exact = logs is not None
        for desk in self.desks:
            audit.ops_made += len(desk.made)
            audit.ops_pushed += sum(s.pushed for s in desk.syncs)
            log = {o.op_id: o for o in (logs or {}).get(desk.node_id, [])}
            for op in desk.made:
                status: str | None
                if logs is not None:
                    found = log.get(op.op_id)
                    status = None if found is None else found.status
                    reason = None if found is None else found.reason
                else:
                    known = notable.get(op.op_id)
                    if known is not None:
                        status = known.original or known.status
                        reason = known.reason
                    else:
                        status = "applied" if record_changes[op.op_id] else None
                        reason = None
                if status is None:
                    audit.ops_lost += 1
                    continue
                audit.statuses[status] += 1
                if status == "rejected":
                    audit.rejected_reasons[reason or "?"] += 1
                audit.ops_duplicated += max(0, record_changes[op.op_id] - 1)
            pending = desk.client.pending()
            if desk.client.store.records() != server_rows or pending:
                audit.differences.append(f"{desk.name}: {len(pending)} pending, view differs")
        queue = [r for r in server_rows if r.collection == CONFLICTS]
        audit.parked = len(queue)
        audit.resolved = sum(1 for r in queue if r.fields.get("state") == "resolved")
        audit.open_conflicts = audit.parked - audit.resolved
        if audit.statuses["conflict"] != audit.parked:
            audit.differences.append(
                f"{audit.statuses['conflict']} ops parked but {audit.parked} in the queue"
            )
        for record in server_rows:
            if record.collection == ORDERS and not record.deleted:
                audit.orders += 1
                audit.orders_total_minor += int(record.fields.get("total") or 0)
                lines = record.fields.get("lines") or {}
                if record.fields.get("total") != sum(
                    line["qty"] * line["unit_price"] for line in lines.values()
                ):
                    audit.totals_ok = False
        if has_payments(self.desks[0].client):
            audit.money = money_report(server_rows)
        audit.converged = not audit.differences and audit.ops_lost == 0 and audit.totals_ok
        return audit

    def close(self) -> None:
        for desk in self.desks:
            with contextlib.suppress(Exception):
                desk.listener.stop()
            desk.cable.close()
            with contextlib.suppress(FynloError):
                desk.link.close()
            desk.client.store.close()
