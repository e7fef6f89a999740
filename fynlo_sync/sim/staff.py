"""The simulator's staff workload: a week of clock-ins, breaks, outages during which a shift
ends on another terminal, and a manager's approvals, through real terminals and a server
replica; every invariant (the plugins' own) checked after every step, on the server and on
each terminal, and convergence checked at the end.

A schedule is a list of steps (plain tuples, so hypothesis can generate and shrink them):

* ``("punch", terminal, employee, kind, minutes)``: the clock moves ``minutes`` forward and
  ``employee`` (the terminal's signed-in actor) punches ``kind`` there; a punch the rules
  refuse at write time is simply not made (that is the rules working);
* ``("sync", terminal)``: push and pull, unless the terminal is offline;
* ``("outage", terminal)``: the terminal's network goes down, or comes back;
* ``("at", minutes)``: the clock moves to ``minutes`` after the week's start (if later);
* ``("approve", day)``: the manager, on the back-office terminal, approves that day's
  overtime of every timecard that has some.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.staff import StaffPlugin
from fynlo_sync.domains.timeclock import TimeclockPlugin, timecard_id
from fynlo_sync.errors import FynloError, RejectedOpError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op, Record
from fynlo_sync.plugins import Registry
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, MemoryTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport

__all__ = [
    "EMPLOYEES",
    "TERMINALS",
    "WEEK",
    "Outcome",
    "labour_week",
    "random_schedule",
    "run_schedule",
    "shrink",
]

TERMINALS = ("ipad-a", "ipad-b", "office")
EMPLOYEES = ("s1", "s2", "s3")
KINDS = ("clock_in", "break_start", "break_end", "clock_out")
#: Monday 23 November 2026, 04:00 UTC (the business-day cutoff).
WEEK = "2026-11-23"
WEEK_START = 1_795_392_000_000 + 4 * 3_600_000
MINUTE = 60_000

Step = tuple[Any, ...]


@dataclass
class Outcome:
    steps: int = 0
    punches: int = 0
    refused_locally: int = 0
    violations: list[str] = field(default_factory=list)
    #: The server's records at the end (timecards and employees: the labour report's input).
    records: list[Record] = field(default_factory=list)


def _registry() -> Registry:
    return conflict.registry([OrdersPlugin(), StaffPlugin(), TimeclockPlugin()])


def _bootstrap(server: ServerReplica) -> None:
    ops = []
    people = [("m1", "manager"), *((e, "staff") for e in EMPLOYEES)]
    for seq, (employee, role) in enumerate(people, start=1):
        ops.append(
            Op(
                op_id=f"server-{seq}",
                node_id="server",
                seq=seq,
                hlc=to_wire(pack(WEEK_START - 1000 + seq, 0)),
                base_seq=0,
                collection="employees",
                record_id=employee,
                kind="command",
                name="add",
                args={
                    "name": employee.upper(),
                    "role": role,
                    "wage_per_hour": 1800,
                    "currency": "USD",
                },
            )
        )
    server.push("t1", Batch.of("server", ops))


def run_schedule(schedule: Sequence[Step]) -> Outcome:
    """Run ``schedule``; the outcome lists every invariant violation (none: it held)."""
    clock = ManualClock(start_ms=WEEK_START)
    registry = _registry()
    server = ServerReplica(MemoryServerStore(), registry, now_ms=clock)
    _bootstrap(server)
    terminals = {
        name: Terminal(
            MemoryTerminalStore(name),
            registry,
            LoopbackTransport(server, "t1", name),
            wall=clock,
            rng=random.Random(name),
        )
        for name in TERMINALS
    }
    terminals["office"].actor = "m1"
    offline: set[str] = set()
    out = Outcome()
    seen: set[str] = set()

    def check(where: str) -> None:
        found = [
            f"server: {v.message}" for v in registry.check_invariants(server.store.records("t1"))
        ]
        for name, t in terminals.items():
            found += [
                f"{name}: {v.message}"
                for v in registry.check_invariants(t.store.records(), terminal=True)
            ]
        for message in found:
            if message not in seen:
                seen.add(message)
                out.violations.append(f"after {where}: {message}")

    for t in terminals.values():
        t.sync()
    counter = 0
    for index, step in enumerate(schedule):
        out.steps += 1
        action = step[0]
        if action == "punch":
            _, name, employee, kind, minutes = step
            clock.advance(minutes * MINUTE)
            t = terminals[name]
            t.actor = employee
            counter += 1
            args: dict[str, Any] = {
                "employee_id": employee,
                "week": WEEK,
                "week_start_ms": WEEK_START,
                "rules": "us-ca",
                "rounding": None,
                "punch_id": f"{name}-{counter}",
                "kind": kind,
                "at_ms": clock(),
            }
            if kind == "break_start":
                args.update(paid=False, expected_min=30)
            try:
                t.command("timecards", timecard_id(employee, WEEK), "punch", args)
                out.punches += 1
            except RejectedOpError:
                out.refused_locally += 1
        elif action == "at":
            clock.set(max(clock(), WEEK_START + step[1] * MINUTE))
        elif action == "sync":
            if step[1] not in offline:
                terminals[step[1]].sync()
        elif action == "outage":
            offline.symmetric_difference_update({step[1]})
        elif action == "approve":
            office = terminals["office"]
            if "office" not in offline:
                office.sync()
            for employee in EMPLOYEES:
                record = office.get("timecards", timecard_id(employee, WEEK))
                if record is None:
                    continue
                day = record.fields["days"][step[1]]
                if day["approval"] == "to_approve":
                    try:
                        office.command(
                            "timecards",
                            record.record_id,
                            "approve_day",
                            {"day": step[1], "decision": "approve"},
                        )
                    except FynloError:
                        out.refused_locally += 1
        check(f"step {index} {step}")
    offline.clear()
    for _ in range(2):
        for t in terminals.values():
            t.sync()
    check("the final sync")
    out.records = server.store.records("t1")
    truth = {r.key: r.fields for r in out.records}
    for name, t in terminals.items():
        mine = {r.key: r.fields for r in t.store.records()}
        if mine != truth:
            differ = sorted(k for k in set(mine) | set(truth) if mine.get(k) != truth.get(k))
            out.violations.append(f"{name} did not converge: {differ[:3]}")
        if t.pending():
            out.violations.append(f"{name} still has {len(t.pending())} pending ops")
    return out


def random_schedule(rng: random.Random, days: int = 5) -> list[Step]:
    """A plausible week: each employee clocks in at the start of the day on one iPad,
    maybe takes a break, and clocks out, often on the other iPad and sometimes while the
    first is offline; syncs come and go; the manager approves one day's overtime a day."""
    ipads = TERMINALS[:2]
    steps: list[Step] = []
    for day in range(days):
        start = {e: rng.choice(ipads) for e in EMPLOYEES}
        steps.append(("at", day * 24 * 60 + 3 * 60))  # 07:00
        for employee in EMPLOYEES:
            steps.append(("punch", start[employee], employee, "clock_in", rng.randint(0, 30)))
        if rng.random() < 0.5:
            steps.append(("outage", "ipad-a"))  # the internet is down on ipad-a
        for employee in EMPLOYEES:
            if rng.random() < 0.7:
                wait, length = rng.randint(30, 120), rng.randint(10, 45)
                steps.append(("punch", start[employee], employee, "break_start", wait))
                steps.append(("punch", start[employee], employee, "break_end", length))
        for k, employee in enumerate(EMPLOYEES):
            where = rng.choice(ipads)  # often the other terminal
            minutes = rng.randint(240, 480) if k == 0 else rng.randint(0, 150)
            steps.append(("punch", where, employee, "clock_out", minutes))
            if rng.random() < 0.5:
                steps.append(("sync", where))
        if ("outage", "ipad-a") in steps[-16:]:
            steps.append(("outage", "ipad-a"))
        for name in ipads:
            steps.append(("sync", name))
        steps.append(("approve", rng.randint(0, 6)))
        steps.append(("punch", "office", "m1", "clock_in", 30))  # the evening manager
        steps.append(("punch", "office", "m1", "clock_out", rng.randint(120, 300)))
    return steps


def shrink(schedule: Sequence[Step], fails: Any = None) -> list[Step]:
    """The smallest sub-schedule (removing chunks, halves first, then single steps) that
    still fails: ``fails(schedule)`` is true (default: any invariant violation)."""
    test = fails or (lambda s: bool(run_schedule(s).violations))
    current = list(schedule)
    size = max(1, len(current) // 2)
    while True:
        index, removed = 0, False
        while index < len(current):
            candidate = current[:index] + current[index + size :]
            if candidate and test(candidate):
                current, removed = candidate, True
            else:
                index += size
        if size == 1 and not removed:
            return current
        size = max(1, size // 2)


def labour_week(seed: int, folder: Any) -> dict[str, Any]:
    """The demo's staff week (a random week of ``seed``): its labour report written to
    ``folder`` as ``labour.json``, ``labour.csv`` and ``labour.svg``; returns the summary."""
    import json
    from pathlib import Path

    from fynlo_sync.domains.timeclock.report import labour_report

    outcome = run_schedule(random_schedule(random.Random(seed)))
    report = labour_report(
        WEEK,
        [r for r in outcome.records if r.collection == "timecards"],
        [r for r in outcome.records if r.collection == "employees"],
    )
    where = Path(folder)
    (where / "labour.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (where / "labour.csv").write_text(report.csv())
    (where / "labour.svg").write_text(report.svg())
    weeks = [r.to_json() for r in report.rows if r.day == "week"]
    return {
        "week": WEEK,
        "punches": outcome.punches,
        "refused_at_write_time": outcome.refused_locally,
        "violations": outcome.violations,
        "employees": weeks,
        "picture": str(where / "labour.svg"),
    }
