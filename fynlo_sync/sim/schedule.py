"""A fault schedule: the explicit list of steps one simulated service runs.

Every random choice is made here, when the schedule is generated from its seed; running a
schedule draws nothing the schedule does not already say (op ids come from per-terminal
generators seeded by the schedule's seed). So a schedule replays exactly, and it can be
shrunk by deleting steps: every step is meaningful in any world state, because its
targets are selectors (``a``, ``b``) resolved against what the terminal sees then.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

__all__ = [
    "FAULTS",
    "STEP_KINDS",
    "WRITES",
    "Fault",
    "Schedule",
    "Step",
    "StepKind",
    "generate",
]

StepKind = Literal[
    "write",  # t does a local write: `what`, with selectors a, b
    "sync",  # t pushes everything then pulls; `faults` says what happens to each message
    "pull",  # t pulls only (as on a poke)
    "deliver",  # the network delivers t's delayed message number `a` (reordering)
    "partition",  # t's link goes down
    "heal",  # t's link comes back
    "crash",  # t's process dies: now (a == 0) or at its a-th store write from now
    "jump",  # t's wall clock jumps by a ms (either way)
    "drift",  # t's wall clock starts drifting by a ppm
    "restart_server",  # the server process restarts from its database
    "tick",  # time passes
]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)

Fault = Literal["ok", "drop_request", "drop_response", "duplicate", "delay", "crash"]
FAULTS: tuple[str, ...] = get_args(Fault)[1:]

WRITES = (
    "open",
    "add_line",
    "remove_line",
    "send",
    "ready",
    "serve",
    "close",
    "void",
    "note",
    "tags",
    "covers",
    "delete",
    "stock",
    "table",
    "resolve",
    "pay",
    "refund",
    "void_payment",
)
_WRITE_WEIGHTS = (6, 10, 2, 4, 3, 3, 3, 2, 4, 3, 2, 1, 4, 2, 3, 8, 4, 1)


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    t: int = 0
    what: str = ""
    a: int = 0
    b: int = 0
    #: For sync/pull: what the network does to the 1st, 2nd, ... message of this step.
    faults: tuple[Fault, ...] = ()
    #: Virtual milliseconds that pass before the step.
    dt: int = 0

    def describe(self) -> str:
        if self.kind == "write":
            return f"T{self.t} {self.what}({self.a},{self.b})"
        if self.kind in ("sync", "pull"):
            faults = f" [{' '.join(self.faults)}]" if self.faults else ""
            return f"T{self.t} {self.kind}{faults}"
        if self.kind in ("deliver", "crash", "jump", "drift"):
            return f"T{self.t} {self.kind}({self.a})"
        if self.kind in ("partition", "heal"):
            return f"T{self.t} {self.kind}"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v not in (0, "", ())}
        out["kind"] = self.kind
        if self.faults:
            out["faults"] = list(self.faults)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Step:
        parts = dict(raw)
        parts["faults"] = tuple(parts.get("faults", ()))
        return cls(**parts)


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    terminals: int
    tenants: int
    steps: tuple[Step, ...]
    batch_size: int = 2
    page_size: int = 3
    #: The server's store: "sqlite" (a file; it can restart) or "memory".
    server: str = "sqlite"
    #: Terminals catch up with compacted pulls (protocol 1.1), or with feed pages.
    compact: bool = True
    #: Informational: how the schedule was made (or shrunk).
    note: str = field(default="", compare=False)

    def tenant_of(self, t: int) -> int:
        return t % self.tenants

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "terminals": self.terminals,
            "tenants": self.tenants,
            "batch_size": self.batch_size,
            "page_size": self.page_size,
            "server": self.server,
            "compact": self.compact,
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Schedule:
        return cls(
            seed=int(raw["seed"]),
            terminals=int(raw["terminals"]),
            tenants=int(raw["tenants"]),
            batch_size=int(raw.get("batch_size", 2)),
            page_size=int(raw.get("page_size", 3)),
            server=str(raw.get("server", "sqlite")),
            compact=bool(raw.get("compact", True)),
            steps=tuple(Step.from_json(s) for s in raw["steps"]),
        )

    def with_steps(self, steps: tuple[Step, ...]) -> Schedule:
        return replace(self, steps=steps)


def _faults(rng: random.Random, rate: float) -> tuple[Fault, ...]:
    out: list[Fault] = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < rate:
            out.append(rng.choice(FAULTS))  # type: ignore[arg-type]
        else:
            out.append("ok")
    while out and out[-1] == "ok":
        out.pop()
    return tuple(out)


def generate(
    seed: int,
    *,
    terminals: tuple[int, int] = (2, 5),
    steps: tuple[int, int] = (15, 40),
) -> Schedule:
    """A random schedule: a restaurant service with faults, all drawn from ``seed``."""
    rng = random.Random(seed)
    n = rng.randint(*terminals)
    tenants = 2 if n >= 3 else 1
    rate = rng.choice((0.0, 0.1, 0.25, 0.5))
    length = rng.randint(*steps)
    out: list[Step] = []

    def dt() -> int:
        return rng.choice((0, 5, 50, 400, 2_000, 15_000))

    def write(t: int, what: str | None = None, a: int | None = None) -> Step:
        return Step(
            "write",
            t=t,
            what=what or rng.choices(WRITES, _WRITE_WEIGHTS)[0],
            a=rng.randrange(8) if a is None else a,
            b=rng.randrange(100),
            dt=dt(),
        )

    while len(out) < length:
        t = rng.randrange(n)
        roll = rng.random()
        if roll < 0.42:
            out.append(write(t))
        elif roll < 0.62:
            out.append(Step("sync", t=t, faults=_faults(rng, rate), dt=dt()))
        elif roll < 0.65:
            out.append(Step("pull", t=t, faults=_faults(rng, rate), dt=dt()))
        elif roll < 0.68:
            out.append(Step("deliver", t=t, a=rng.randrange(4), dt=dt()))
        elif roll < 0.70:
            # Two pushes held in flight, the newer delivered first (a reorder), then the older.
            out.append(Step("sync", t=t, faults=("delay",), dt=dt()))
            out.append(write(t))
            out.append(Step("sync", t=t, faults=("delay",), dt=dt()))
            out.append(Step("deliver", t=t, a=1, dt=dt()))
            out.append(Step("deliver", t=t, a=0, dt=dt()))
        elif roll < 0.78:
            # Split brain: t is cut off while a peer of the same tenant edits the same thing.
            peers = [p for p in range(n) if p != t and p % tenants == t % tenants]
            out.append(Step("partition", t=t, dt=dt()))
            target = rng.randrange(4)
            what = rng.choice(("note", "tags", "add_line", "table", "close", "void", "covers"))
            out.append(write(t, what, target))
            if peers:
                peer = rng.choice(peers)
                out.append(Step("sync", t=peer, dt=dt()))
                out.append(write(peer, rng.choice((what, "note", "void", "table")), target))
                out.append(Step("sync", t=peer, faults=_faults(rng, rate), dt=dt()))
            out.append(Step("heal", t=t, dt=dt()))
        elif roll < 0.82:
            out.append(Step("heal", t=t, dt=dt()))
        elif roll < 0.87:
            at = rng.choice((0, 0, 1, 2, 3, 5, 8))
            out.append(Step("crash", t=t, a=at, dt=dt()))
        elif roll < 0.89:
            delta = rng.choice((-86_400_000, -3_600_000, -90_000, 90_000, 3_600_000, 86_400_000))
            out.append(Step("jump", t=t, a=delta, dt=dt()))
        elif roll < 0.91:
            out.append(Step("drift", t=t, a=rng.choice((-50_000, -200, 200, 50_000)), dt=dt()))
        elif roll < 0.92:
            out.append(Step("restart_server", dt=dt()))
        else:
            out.append(Step("tick", dt=rng.choice((1_000, 60_000, 600_000))))
    return Schedule(
        seed=seed,
        terminals=n,
        tenants=tenants,
        steps=tuple(out[:length]),
        batch_size=rng.choice((1, 2, 3, 100)),
        page_size=rng.choice((1, 2, 3, 500)),
        server=rng.choice(("sqlite", "sqlite", "sqlite", "memory")),
        compact=rng.random() < 0.75,
        note="generated",
    )
