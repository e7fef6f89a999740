"""The virtual network: one link per terminal, wrapping the loopback transport.

A link can be partitioned (every message fails), and each message on it can be dropped
before the server (``drop_request``), answered but the answer lost after the server
committed (``drop_response``), delivered twice (``duplicate``), held in flight and
delivered later, out of order, when the schedule says (``delay``), or answered while the
terminal's process dies before it reads the answer (``crash``).

Every push that reaches the server, now or later, is checked against an independent model
of the protocol: the network remembers each node's high-water mark and the first outcome
of every seq it has seen answered, and the server's answer must be exactly what the
protocol says (replayed seqs as ``duplicate`` with their original outcome; a first new
seq that is not ``high_water + 1`` refused as ``seq-gap`` with ``expected``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from fynlo_sync.errors import FynloError, PeerError, SeqGapError, SeqReuseError, TransportError
from fynlo_sync.ops import Batch, Outcome
from fynlo_sync.protocol import PullPage, PushResult
from fynlo_sync.replica import ServerReplica
from fynlo_sync.sim.invariants import Violation
from fynlo_sync.sim.schedule import Fault
from fynlo_sync.transport.loopback import LoopbackTransport

__all__ = ["Crashed", "Link", "Network"]


class Crashed(BaseException):
    """The terminal's process died here (raised through the client, like a kill)."""


@dataclass(slots=True)
class _NodeModel:
    high_water: int = 0
    first: dict[int, Outcome] = field(default_factory=dict)


class Network:
    """Every link to the one server replica, the protocol model, and the fault counters."""

    def __init__(self, replica: ServerReplica, trace: Callable[[str], None]) -> None:
        self.replica = replica
        self.trace = trace
        self.fired: Counter[str] = Counter()
        self.links: list[Link] = []
        self._models: dict[tuple[str, str], _NodeModel] = {}

    def link(self, tenant: str, node_id: str, name: str) -> Link:
        made = Link(self, tenant, node_id, name)
        self.links.append(made)
        return made

    def fire(self, kind: str) -> None:
        self.fired[kind] += 1

    # ------------------------------------------------------------------ delivery

    def deliver(self, link: Link, batch: Batch, *, late: bool = False) -> PushResult:
        """Hand a push to the server and check its answer against the protocol model."""
        model = self._models.setdefault((link.tenant, batch.node_id), _NodeModel())
        hw = model.high_water
        stored = self.replica.store.high_water(link.tenant, batch.node_id)
        if stored != hw:
            raise Violation(
                "high-water",
                f"server says node {batch.node_id} is at seq {stored}, its answers said {hw}",
            )
        expected: list[Outcome] = []
        error: tuple[str, int | None] | None = None
        for op in batch.ops:
            if op.seq > hw:
                if op.seq != hw + 1:
                    error = ("seq-gap", hw + 1)
                break
            first = model.first[op.seq]
            if first.op_id != op.op_id:
                error = ("seq-reuse", None)
                break
            expected.append(
                Outcome(
                    op_id=op.op_id,
                    seq=op.seq,
                    status="duplicate",
                    reason=first.reason,
                    detail=first.detail,
                    conflict_id=first.conflict_id,
                    original=first.status,
                )
            )
        wire = LoopbackTransport(self.replica, link.tenant, link.node_id)
        try:
            result = wire.push(batch)
        except FynloError as exc:
            if not isinstance(exc, PeerError):
                raise Violation("server-error", f"push failed on the server: {exc!r}") from exc
            got = (exc.code, exc.extra.get("expected"))
            if error is None or got[0] != error[0] or (error[1] is not None and got != error):
                raise Violation(
                    "protocol",
                    f"push of seqs {_span(batch)} by {batch.node_id} at high-water {hw}: "
                    f"server refused with {got}, the protocol says {error or 'accept'}",
                ) from exc
            self.trace(f"  {'late ' if late else ''}push {_span(batch)} refused: {exc.code}")
            if isinstance(exc, SeqGapError | SeqReuseError):
                self.fire(exc.code)
            raise
        except Exception as exc:
            raise Violation("server-error", f"push failed on the server: {exc!r}") from exc
        if error is not None:
            raise Violation(
                "protocol",
                f"push of seqs {_span(batch)} by {batch.node_id} at high-water {hw} was "
                f"accepted; the protocol says {error}",
            )
        got_dups = result.outcomes[: len(expected)]
        new = result.outcomes[len(expected) :]
        want_hw = max(hw, batch.ops[-1].seq) if batch.ops else hw
        if (
            got_dups != expected
            or len(result.outcomes) != len(batch.ops)
            or any(o.status == "duplicate" for o in new)
            or [o.op_id for o in new] != [op.op_id for op in batch.ops[len(expected) :]]
            or result.high_water != want_hw
            or result.node_id != batch.node_id
        ):
            raise Violation(
                "protocol",
                f"push of seqs {_span(batch)} by {batch.node_id} at high-water {hw}: answer "
                f"{[(o.seq, o.status, o.original) for o in result.outcomes]} hw "
                f"{result.high_water}; expected {len(expected)} duplicates then new ops, "
                f"hw {want_hw}",
            )
        for outcome in new:
            model.first[outcome.seq] = outcome
        model.high_water = result.high_water
        statuses = Counter(o.status for o in result.outcomes)
        summary = " ".join(f"{k}={statuses[k]}" for k in sorted(statuses))
        self.trace(f"  {'late ' if late else ''}push {_span(batch)} -> {summary}")
        return result

    def deliver_delayed(self, link: Link, index: int) -> None:
        if not link.inflight:
            self.trace("  nothing in flight")
            return
        position = index % len(link.inflight)
        # Late by definition: the sender timed out and went on without it.
        self.fire("late-delivery")
        if position:
            self.fire("reorder")  # it also overtakes an older delayed message
        batch = link.inflight.pop(position)
        with contextlib.suppress(PeerError):  # the sender has long given up on the answer
            self.deliver(link, batch, late=True)

    def pull(self, link: Link, since: int, limit: int, *, compact: bool = False) -> PullPage:
        wire = LoopbackTransport(self.replica, link.tenant, link.node_id)
        return wire.pull(since, limit, compact=compact)


class Link:
    """A terminal's transport: the loopback, through the network's faults."""

    def __init__(self, network: Network, tenant: str, node_id: str, name: str) -> None:
        self.network = network
        self.tenant = tenant
        self.node_id = node_id
        self.name = name
        self.partitioned = False
        #: Faults for the next messages, armed by the simulator for one step.
        self.plan: list[Fault] = []
        #: Delayed pushes, not yet delivered.
        self.inflight: list[Batch] = []
        #: Outcomes the terminal read from an answer, by seq (it must remember them).
        self.answered: dict[int, Outcome] = {}
        #: Answers returned during the current client call, not yet known to be stored.
        self.fresh: list[list[Outcome]] = []
        self.died_here = False

    def settle(self, *, crashed: bool) -> None:
        """The client call ended. If the terminal died in its store after reading an answer,
        that last answer may not have been stored; if it died here, in the link, the answer
        it died on was never handed over (and is not in ``fresh``)."""
        kept = self.fresh[:-1] if crashed and not self.died_here else self.fresh
        for outcomes in kept:
            for outcome in outcomes:
                self.answered.setdefault(outcome.seq, outcome)
        self.fresh = []
        self.died_here = False

    def _next(self) -> Fault:
        if self.partitioned:
            self.network.fire("partitioned-message")
            raise TransportError(f"{self.name}: network unreachable")
        fault = self.plan.pop(0) if self.plan else "ok"
        if fault != "ok":
            self.network.fire(fault)
        return fault

    def push(self, batch: Batch) -> PushResult:
        fault = self._next()
        if fault == "drop_request":
            self.network.trace(f"  push {_span(batch)} lost on the way")
            raise TransportError(f"{self.name}: request lost")
        if fault == "delay":
            self.inflight.append(batch)
            self.network.trace(f"  push {_span(batch)} delayed")
            raise TransportError(f"{self.name}: timed out")
        result = self.network.deliver(self, batch)
        if fault == "duplicate":
            self.network.trace("  the network duplicated it")
            self.network.deliver(self, batch, late=True)
        elif fault == "drop_response":
            self.network.trace("  answer lost")
            raise TransportError(f"{self.name}: connection reset")
        elif fault == "crash":
            self.network.trace("  terminal dies before reading the answer")
            self.died_here = True
            raise Crashed
        self.fresh.append(list(result.outcomes))
        return result

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        fault = self._next()
        if fault in ("drop_request", "drop_response", "delay"):
            self.network.trace(f"  pull after {since} failed ({fault})")
            raise TransportError(f"{self.name}: pull failed")
        page = self.network.pull(self, since, limit, compact=compact)
        if fault == "crash":
            self.network.trace(f"  terminal dies reading the page after {since}")
            self.died_here = True
            raise Crashed
        return page


def _span(batch: Batch) -> str:
    if not batch.ops:
        return "[]"
    return f"{batch.ops[0].seq}..{batch.ops[-1].seq}"
