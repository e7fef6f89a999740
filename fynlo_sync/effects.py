"""Durable effects, as values: what a plugin asks for, what its handler sees, and the pure
rules of the outbox (retry with capped exponential backoff, dead-lettering, leases).

An :class:`Effect` is planned purely at commit (``DomainPlugin.effects(changes)``) and
written to the tenant's outbox in the same transaction as the commit, under its stable
``key``. A worker claims due effects with a lease, runs the plugin's async
:data:`EffectHandler` with an :class:`EffectContext`, and settles the attempt with
:func:`settle`. The handler passes ``ctx.key`` as the idempotency key of every outside
call, so a re-run (a crash after the call, a lease that expired) repeats the call without
repeating its effect. Ops the handler authors through ``ctx.author`` are committed in the
same transaction that marks the effect done: exactly once, whatever crashes.

Everything here is pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fynlo_sync.canonical import checksum
from fynlo_sync.ops import Change, Record

__all__ = [
    "SERVER_NODE",
    "Attempt",
    "Decide",
    "Draft",
    "Effect",
    "EffectContext",
    "EffectError",
    "EffectHandler",
    "EffectRow",
    "EffectState",
    "OpAuthor",
    "PermanentEffectError",
    "RetryPolicy",
    "RetryableEffectError",
    "Settlement",
    "backoff_ms",
    "settle",
]

#: The node id of ops the server authors (effects, webhooks, admin, conflict resolution).
SERVER_NODE = "server"

#: ``pending`` waits for its due time; ``running`` is claimed (its due time is the lease's
#: end); ``done`` succeeded; ``dead`` failed for good (an operator may retry it).
EffectState = Literal["pending", "running", "done", "dead"]


@dataclass(frozen=True, slots=True)
class Effect:
    """Work a plugin wants done after the server commits (call Stripe, print a ticket).

    ``key`` is stable and deterministic from the commit that calls for it, unique in the
    tenant: :meth:`of` makes ``<plugin>.<name>:<node_id>:<node_seq>`` from the change (the
    op) that called for it; a plugin may derive its own (a payment attempt id and step).
    Left empty, the registry derives one from the payload's checksum."""

    plugin: str
    name: str
    payload: Mapping[str, Any]
    key: str = ""

    @classmethod
    def of(cls, change: Change, plugin: str, name: str, payload: Mapping[str, Any]) -> Effect:
        """The effect ``change`` calls for, keyed by the op that made the change."""
        return cls(plugin, name, payload, f"{plugin}.{name}:{change.node_id}:{change.node_seq}")

    def keyed(self) -> Effect:
        """This effect with its key filled in (a checksum of the payload when unset)."""
        if self.key:
            return self
        digest = checksum({"plugin": self.plugin, "name": self.name, "payload": self.payload})
        return Effect(self.plugin, self.name, self.payload, f"{self.plugin}.{self.name}:{digest}")


@dataclass(frozen=True, slots=True)
class Draft:
    """An op the server is to author, before it has a seq or an HLC (the replica gives
    those under the tenant's lock). ``op_id`` is minted then too unless given (a caller
    that must name the op in another op of the same batch mints it first)."""

    collection: str
    record_id: str
    kind: Literal["put", "patch", "delete", "command"]
    fields: dict[str, Any] | None = None
    name: str | None = None
    args: dict[str, Any] | None = None
    op_id: str | None = None
    #: The employee the server acts for (a route's signed-in actor): the op carries it, so
    #: the engine's actor check (protocol 20.1) applies and the op log keeps who it was.
    actor: str | None = None

    @classmethod
    def command(
        cls,
        collection: str,
        record_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> Draft:
        return cls(collection, record_id, "command", name=name, args=dict(args or {}), actor=actor)

    @classmethod
    def put(cls, collection: str, record_id: str, fields: Mapping[str, Any]) -> Draft:
        return cls(collection, record_id, "put", fields=dict(fields))

    @classmethod
    def patch(cls, collection: str, record_id: str, fields: Mapping[str, Any]) -> Draft:
        return cls(collection, record_id, "patch", fields=dict(fields))

    @classmethod
    def delete(cls, collection: str, record_id: str) -> Draft:
        return cls(collection, record_id, "delete")


#: ``build(found)``: drafts decided from the records of its keys as they are at commit.
Decide = Callable[[Mapping[tuple[str, str], Record]], Sequence[Draft]]


class OpAuthor:
    """``ctx.author``: ops an effect handler writes as node ``server``. They are collected
    and committed, in order and in one batch, in the transaction that marks the effect
    done; if the handler fails (or its lease was lost), none of them is committed.

    :meth:`decide` defers a choice to that transaction: ``build`` gets the records of
    ``keys`` as they are under the tenant's lock (another effect or a webhook may have
    moved them since the handler read them) and returns the drafts, possibly none."""

    def __init__(self) -> None:
        self.drafts: list[Draft] = []
        self.decisions: list[tuple[tuple[tuple[str, str], ...], Decide]] = []

    def decide(self, keys: Sequence[tuple[str, str]], build: Decide) -> None:
        self.decisions.append((tuple(keys), build))

    def command(
        self, collection: str, record_id: str, name: str, args: Mapping[str, Any] | None = None
    ) -> None:
        self.drafts.append(Draft.command(collection, record_id, name, args))

    def put(self, collection: str, record_id: str, fields: Mapping[str, Any]) -> None:
        self.drafts.append(Draft.put(collection, record_id, fields))

    def patch(self, collection: str, record_id: str, fields: Mapping[str, Any]) -> None:
        self.drafts.append(Draft.patch(collection, record_id, fields))

    def delete(self, collection: str, record_id: str) -> None:
        self.drafts.append(Draft.delete(collection, record_id))

    def batch(self, drafts: Sequence[Draft]) -> None:
        self.drafts.extend(drafts)


@dataclass(frozen=True, slots=True)
class EffectContext:
    """What an effect handler sees.

    ``key`` is the idempotency key to pass to every outside call (``<tenant>/<effect
    key>``, unique across tenants); ``attempt`` counts from 1 (above 1, an earlier attempt
    may have reached the outside world: look its outcome up by ``key``); ``now_ms`` is the
    worker's clock; ``settings`` the plugin's own (``None`` if it declares none);
    ``read(collection, record_id)`` the record now (``None`` if it never existed);
    ``author`` writes ops as node ``server`` (see :class:`OpAuthor`)."""

    tenant: str
    effect: Effect
    key: str
    attempt: int
    now_ms: int
    settings: Any
    read: Callable[[str, str], Awaitable[Record | None]]
    author: OpAuthor


#: ``async def handler(ctx: EffectContext) -> None``. Returning means done; raising a
#: :class:`RetryableEffectError` (or any other exception, or running past the worker's
#: timeout) retries later; raising a :class:`PermanentEffectError` dead-letters at once.
EffectHandler = Callable[[EffectContext], Awaitable[None]]


class EffectError(Exception):
    """Raised by an effect handler to say how the attempt failed."""


class RetryableEffectError(EffectError):
    """Try again later (the provider is down, a timeout whose outcome was looked up)."""


class PermanentEffectError(EffectError):
    """Never going to work (the card was declined for good, the payload is invalid)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``base_ms * 2**(failures - 1)``, at most ``cap_ms``; after ``max_failures``
    failures in a row the effect is dead. ``lease_ms`` is how long a claim lasts;
    ``timeout_ms`` how long a handler may run (shorter than the lease, so an attempt that
    is still running is never claimed again)."""

    base_ms: int = 1_000
    cap_ms: int = 300_000
    max_failures: int = 8
    lease_ms: int = 60_000
    timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        if not 0 < self.timeout_ms < self.lease_ms:
            raise ValueError("an effect's timeout must be positive and shorter than its lease")
        if self.base_ms < 1 or self.cap_ms < self.base_ms or self.max_failures < 1:
            raise ValueError("backoff needs 1 <= base_ms <= cap_ms and max_failures >= 1")


def backoff_ms(policy: RetryPolicy, failures: int) -> int:
    """The wait after the ``failures``-th failure in a row (exponential, capped)."""
    return min(policy.cap_ms, policy.base_ms << min(max(failures - 1, 0), 40))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at an effect: when it started and finished, and how it ended
    (``result`` is ``None`` while it runs, or when its worker died and the lease ran out)."""

    attempt: int
    started_ms: int
    finished_ms: int | None = None
    result: Literal["done", "retry", "dead"] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EffectRow:
    """An effect in a tenant's outbox."""

    tenant: str
    effect: Effect
    state: EffectState
    #: Claims so far (it fences a finish: only the current claim may settle the effect).
    attempts: int
    #: Failures in a row (an operator's retry resets it).
    failures: int
    #: When it is next due (pending) or when its lease ends (running).
    due_ms: int
    created_ms: int
    last_error: str | None = None
    history: tuple[Attempt, ...] = field(default=())

    @property
    def key(self) -> str:
        return self.effect.key

    @property
    def idempotency_key(self) -> str:
        return f"{self.tenant}/{self.effect.key}"


@dataclass(frozen=True, slots=True)
class Settlement:
    """How an attempt ends: the effect's next state and due time, and the attempt's record."""

    state: EffectState
    due_ms: int
    failures: int
    result: Literal["done", "retry", "dead"]
    error: str | None


def settle(
    row: EffectRow, error: BaseException | None, *, now_ms: int, policy: RetryPolicy
) -> Settlement:
    """Decide the end of ``row``'s current attempt (``error`` is what the handler raised)."""
    if error is None:
        return Settlement("done", now_ms, 0, "done", None)
    text = f"{type(error).__name__}: {error}"[:500]
    failures = row.failures + 1
    if isinstance(error, PermanentEffectError) or failures >= policy.max_failures:
        return Settlement("dead", now_ms, failures, "dead", text)
    return Settlement("pending", now_ms + backoff_ms(policy, failures), failures, "retry", text)
