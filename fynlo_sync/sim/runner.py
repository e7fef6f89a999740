"""Run schedules, sum up what they did, and shrink a failing one to a short reproduction."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fynlo_sync.plugins import Registry
from fynlo_sync.sim.invariants import Violation
from fynlo_sync.sim.schedule import Schedule, Step, generate
from fynlo_sync.sim.world import World

__all__ = ["Failure", "RunResult", "Summary", "run_many", "run_schedule", "shrink"]


@dataclass(frozen=True, slots=True)
class Failure:
    invariant: str
    detail: str
    step: int | None

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "detail": self.detail, "step": self.step}


@dataclass(slots=True)
class RunResult:
    schedule: Schedule
    failure: Failure | None
    trace: str
    trace_hash: str
    steps: int
    checks: int
    commit_checks: int
    faults: Counter[str]
    outcomes: Counter[str]
    rejected: Counter[str]
    ops_made: int
    seconds: float
    #: Non-applied outcomes of ops acknowledged through the feed only, never answered to
    #: their author (see :mod:`fynlo_sync.sim.invariants`).
    unseen_outcomes: int = 0
    #: Payments on the server at the end: by method, refunds, voids, overpayments.
    payments: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.failure is None


@contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary folder for the SQLite files, in RAM when the machine offers it."""
    base = os.environ.get("FYNLO_SIM_TMP")
    if base is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        base = "/dev/shm"
    with tempfile.TemporaryDirectory(prefix="fynlo-sim-", dir=base) as folder:
        yield Path(folder)


def run_schedule(schedule: Schedule, registry: Registry | None = None) -> RunResult:
    """Run one schedule in a fresh world; never raises for an invariant, reports it."""
    started = time.perf_counter()
    failure: Failure | None = None
    with _scratch() as folder:
        world = World(schedule, folder, registry)
        try:
            world.run()
        except Violation as exc:
            failure = Failure(exc.name, exc.detail, exc.step)
            world.lines.append(f"VIOLATION {exc.name}: {exc.detail}")
        except Exception as exc:  # a crash of the code under test is a finding too
            failure = Failure(f"exception:{type(exc).__name__}", str(exc), world.steps_run or None)
            world.lines.append(f"EXCEPTION {type(exc).__name__}: {exc}")
        outcomes: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        made = 0
        payments: Counter[str] = Counter()
        try:
            payments = world.payment_counts()
            for _node, outcome in world.outcomes():
                outcomes[outcome.status] += 1
                if outcome.status == "rejected":
                    rejected[outcome.reason or "?"] += 1
            made = sum(len(t.made) for t in world.terminals)
        finally:
            world.close()
    trace = world.trace_text()
    return RunResult(
        schedule=schedule,
        failure=failure,
        trace=trace,
        trace_hash=hashlib.sha256(trace.encode("utf-8")).hexdigest(),
        steps=world.steps_run,
        checks=world.checks,
        commit_checks=world.commit_checks,
        faults=world.network.fired,
        outcomes=outcomes,
        rejected=rejected,
        ops_made=made,
        seconds=time.perf_counter() - started,
        unseen_outcomes=world.unseen_outcomes,
        payments=payments,
    )


# ---------------------------------------------------------------------- shrinking


def _without_terminal(schedule: Schedule, gone: int) -> Schedule | None:
    if schedule.terminals <= 1:
        return None
    steps: list[Step] = []
    for step in schedule.steps:
        if step.kind in ("tick", "restart_server"):
            steps.append(step)
        elif step.t != gone:
            steps.append(replace(step, t=step.t - 1) if step.t > gone else step)
    terminals = schedule.terminals - 1
    return replace(
        schedule, terminals=terminals, tenants=min(schedule.tenants, terminals), steps=tuple(steps)
    )


def _simpler_steps(step: Step) -> Iterator[Step]:
    if step.faults:
        yield replace(step, faults=())
        for i, fault in enumerate(step.faults):
            if fault != "ok":
                yield replace(step, faults=(*step.faults[:i], "ok", *step.faults[i + 1 :]))
    if step.dt:
        yield replace(step, dt=0)
    if step.kind in ("jump", "drift") and step.a:
        yield replace(step, a=step.a // abs(step.a))
    if step.kind == "crash" and step.a > 1:
        yield replace(step, a=1)


def shrink(
    schedule: Schedule,
    invariant: str,
    *,
    budget: int = 400,
    registry: Registry | None = None,
    run: Callable[[Schedule], RunResult] | None = None,
) -> tuple[Schedule, int]:
    """The smallest schedule found that still breaks ``invariant``: fewer terminals,
    tenants and steps, simpler faults. Returns it and how many runs it took."""
    runs = 0

    def execute(candidate: Schedule) -> RunResult:
        return run(candidate) if run is not None else run_schedule(candidate, registry)

    def fails(candidate: Schedule) -> bool:
        nonlocal runs
        if runs >= budget:
            return False
        runs += 1
        result = execute(candidate)
        return result.failure is not None and result.failure.invariant == invariant

    best = schedule
    first = execute(best)
    if first.failure is not None and first.failure.step is not None:
        cut = first.failure.step + 1
        if cut < len(best.steps) and fails(best.with_steps(best.steps[:cut])):
            best = best.with_steps(best.steps[:cut])
    progress = True
    while progress and runs < budget:
        progress = False
        for gone in range(best.terminals - 1, -1, -1):
            candidate = _without_terminal(best, gone) if gone < best.terminals else None
            if candidate is not None and fails(candidate):
                best, progress = candidate, True
        if best.tenants > 1:
            candidate = replace(best, tenants=1)
            if fails(candidate):
                best, progress = candidate, True
        chunk = max(1, len(best.steps) // 2)
        while chunk >= 1 and runs < budget:
            i = 0
            while i < len(best.steps) and runs < budget:
                candidate = best.with_steps(best.steps[:i] + best.steps[i + chunk :])
                if fails(candidate):
                    best, progress = candidate, True
                else:
                    i += chunk
            chunk //= 2
        for i in range(len(best.steps)):
            for simpler in _simpler_steps(best.steps[i]):
                steps = (*best.steps[:i], simpler, *best.steps[i + 1 :])
                if fails(best.with_steps(steps)):
                    best, progress = best.with_steps(steps), True
                    break
        plainer = (
            replace(best, batch_size=100),
            replace(best, page_size=100),
            replace(best, server="sqlite"),
        )
        for candidate in plainer:
            if candidate != best and fails(candidate):
                best, progress = candidate, True
    return replace(best, note=f"shrunk from {len(schedule.steps)} steps"), runs


# ---------------------------------------------------------------------- many schedules


@dataclass(slots=True)
class Summary:
    seed: int
    schedules: int = 0
    steps: int = 0
    checks: int = 0
    commit_checks: int = 0
    ops_made: int = 0
    unseen_outcomes: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    payments: Counter[str] = field(default_factory=Counter)
    failures: list[RunResult] = field(default_factory=list)
    reproduction: Schedule | None = None
    reproduction_result: RunResult | None = None
    shrink_runs: int = 0
    seconds: float = 0.0
    _hash: Any = field(default_factory=hashlib.sha256)

    @property
    def trace_hash(self) -> str:
        digest: str = self._hash.hexdigest()
        return digest

    def add(self, result: RunResult) -> None:
        self.schedules += 1
        self.steps += result.steps
        self.checks += result.checks
        self.commit_checks += result.commit_checks
        self.ops_made += result.ops_made
        self.unseen_outcomes += result.unseen_outcomes
        self.faults.update(result.faults)
        self.outcomes.update(result.outcomes)
        self.rejected.update(result.rejected)
        self.payments.update(result.payments)
        self._hash.update(result.trace_hash.encode("ascii"))
        if result.failure is not None:
            self.failures.append(result)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seed": self.seed,
            "schedules": self.schedules,
            "steps": self.steps,
            "invariant_checks": self.checks,
            "commit_checks": self.commit_checks,
            "ops_made": self.ops_made,
            "outcomes": dict(sorted(self.outcomes.items())),
            "rejected": dict(sorted(self.rejected.items())),
            "unseen_outcomes": self.unseen_outcomes,
            "payments": dict(sorted(self.payments.items())),
            "faults": dict(sorted(self.faults.items())),
            "failures": len(self.failures),
            "trace_hash": self.trace_hash,
            "seconds": round(self.seconds, 2),
        }
        if self.failures:
            first = self.failures[0]
            assert first.failure is not None
            out["failure"] = {"seed": first.schedule.seed, **first.failure.to_json()}
            if self.reproduction is not None and self.reproduction_result is not None:
                out["reproduction"] = {
                    "schedule": self.reproduction.to_json(),
                    "steps": [s.describe() for s in self.reproduction.steps],
                    "failure": None
                    if self.reproduction_result.failure is None
                    else self.reproduction_result.failure.to_json(),
                    "shrink_runs": self.shrink_runs,
                    "trace": self.reproduction_result.trace.splitlines(),
                }
        return out


def run_many(
    seed: int,
    schedules: int,
    *,
    terminals: tuple[int, int] = (2, 5),
    steps: tuple[int, int] = (15, 40),
    shrink_budget: int = 400,
    registry: Registry | None = None,
    progress: Callable[[RunResult], None] | None = None,
) -> Summary:
    """Run schedules ``seed``, ``seed + 1``, ... ; stop at the first failure and shrink it."""
    summary = Summary(seed=seed)
    started = time.perf_counter()
    for k in range(schedules):
        schedule = generate(seed + k, terminals=terminals, steps=steps)
        result = run_schedule(schedule, registry)
        summary.add(result)
        if progress is not None:
            progress(result)
        if result.failure is not None:
            repro, runs = shrink(
                schedule, result.failure.invariant, budget=shrink_budget, registry=registry
            )
            summary.reproduction = repro
            summary.reproduction_result = run_schedule(repro, registry)
            summary.shrink_runs = runs
            break
    summary.seconds = time.perf_counter() - started
    return summary
