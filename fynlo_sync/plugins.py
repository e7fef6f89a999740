"""The domain plugin interface, the conflict strategy protocol, and the registry.

A :class:`DomainPlugin` declares collections (with typed field schemas and merge kinds),
named commands, validators, conflict strategies, and effects to run after the server
commits. Every hook has a no-op default, so a plugin states only what it needs.

A :class:`Strategy` is a pure, deterministic function from a :class:`Contest` (one field two
writers disagree about) to a :class:`Resolution`. Strategies are chosen by name, per
collection and per field, from the registry; the built-ins live in the ``conflict`` package.

Everything here is pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from fynlo_sync.errors import (
    CallerError,
    IllegalTransitionError,
    RejectedOpError,
    UnknownCollectionError,
    UnknownCommandError,
)
from fynlo_sync.ops import Change, Op, Stamp

__all__ = [
    "CONFLICTS",
    "Collection",
    "Command",
    "CommandContext",
    "Contest",
    "DomainPlugin",
    "Effect",
    "Field",
    "FieldKind",
    "FieldType",
    "Registry",
    "Resolution",
    "Strategy",
]

FieldType = Literal["str", "int", "money", "bool", "list", "object", "any"]
#: How concurrent writes to a field combine under ``smart_merge``:
#: ``lww`` last writer wins by (hlc, node_id); ``counter`` values written are deltas and add;
#: ``set`` (a JSON array) unions; ``state`` takes the value of higher precedence in the
#: collection's state table; ``map`` (a JSON object) merges key by key.
FieldKind = Literal["lww", "counter", "set", "state", "map"]

#: The system collection that holds the manual conflict queue.
CONFLICTS = "conflicts"


@dataclass(frozen=True, slots=True)
class Field:
    type: FieldType = "any"
    kind: FieldKind = "lww"
    required: bool = False
    #: Only commands may write it (a put or patch naming it is rejected).
    command_only: bool = False


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a command sees: the record's current fields (``None`` if it does not exist or
    is deleted), the op's arguments, and the op itself (author, HLC)."""

    record: Mapping[str, Any] | None
    args: Mapping[str, Any]
    op: Op


#: A command returns the fields it sets (a patch); to refuse, it raises a RejectedOpError.
Command = Callable[[CommandContext], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    fields: Mapping[str, Field]
    #: Default strategy for contested fields, by name.
    strategy: str = "smart_merge"
    #: Per-field strategy overrides, by name. ``"_deleted"`` names the one for delete races.
    field_strategies: Mapping[str, str] = field(default_factory=dict)
    #: State precedence for ``state`` fields, lowest first.
    states: tuple[str, ...] = ()
    commands: Mapping[str, Command] = field(default_factory=dict)
    #: Computes derived fields (e.g. an order's total) from the record's fields.
    derive: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    #: Unknown fields are rejected unless this is False.
    strict: bool = True
    #: A rule over a put or patch: ``validate(before, after, op)`` raises a RejectedOpError
    #: to refuse it (``before`` is None for a new record). Commands check their own rules.
    validate: Callable[[Mapping[str, Any] | None, Mapping[str, Any], Op], None] | None = None

    def check_fields(self, values: Mapping[str, Any], *, by_command: bool) -> None:
        """Raise :class:`RejectedOpError` if ``values`` breaks the schema."""
        for name in sorted(values):
            spec = self.fields.get(name)
            if spec is None:
                if self.strict:
                    raise RejectedOpError(
                        f"{self.name} has no field {name!r}", reason="unknown-field", field=name
                    )
                continue
            if spec.command_only and not by_command:
                raise RejectedOpError(
                    f"{self.name}.{name} can only be changed by a command",
                    reason="command-only-field",
                    field=name,
                )
            value = values[name]
            if value is None:
                if spec.required or spec.kind == "counter":
                    raise RejectedOpError(
                        f"{self.name}.{name} is "
                        + ("required" if spec.required else "a counter: write an integer delta"),
                        reason="invalid-field",
                        field=name,
                    )
                continue
            if not _type_ok(spec.type, value):
                raise RejectedOpError(
                    f"{self.name}.{name} must be of type {spec.type}",
                    reason="invalid-field",
                    field=name,
                )
            if spec.kind == "counter" and type(value) is not int:
                raise RejectedOpError(
                    f"{self.name}.{name} is a counter: write an integer delta",
                    reason="invalid-field",
                    field=name,
                )

    def check_required(self, values: Mapping[str, Any]) -> None:
        for name in sorted(self.fields):
            if self.fields[name].required and values.get(name) is None:
                raise RejectedOpError(
                    f"{self.name}.{name} is required", reason="invalid-field", field=name
                )


def _type_ok(kind: FieldType, value: Any) -> bool:
    t = type(value)
    if kind == "any":
        return True
    if kind in ("int", "money"):
        return t is int
    if kind == "str":
        return t is str
    if kind == "bool":
        return t is bool
    if kind == "list":
        return t is list
    return t is dict


@dataclass(frozen=True, slots=True)
class Contest:
    """One field that another node wrote after the incoming op's ``base_seq``.

    For a race between a delete and an edit, ``field`` is ``"_deleted"`` and the values are
    booleans (is the record deleted on that side).
    """

    collection: str
    record_id: str
    field: str
    kind: FieldKind
    server_value: Any
    server_stamp: Stamp
    incoming_value: Any
    incoming_stamp: Stamp
    states: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolution:
    """``server`` keeps the server's value, ``incoming`` takes the op's, ``value`` sets
    ``value`` (a merge), ``park`` sends the whole op to the manual conflict queue."""

    choice: Literal["server", "incoming", "value", "park"]
    value: Any = None


@runtime_checkable
class Strategy(Protocol):
    name: str

    def resolve(self, contest: Contest) -> Resolution: ...


@dataclass(frozen=True, slots=True)
class Effect:
    """Work a plugin wants done after the server commits (call Stripe, print a ticket)."""

    plugin: str
    name: str
    payload: Mapping[str, Any]


class DomainPlugin:
    """Base class with no-op defaults. Override what the domain needs."""

    name: str = "plugin"

    def collections(self) -> Iterable[Collection]:
        return ()

    def strategies(self) -> Iterable[Strategy]:
        return ()

    def effects(self, changes: list[Change]) -> list[Effect]:
        """Pure: which effects the committed changes call for (run by the server)."""
        return []

    def perform(self, effect: Effect) -> None:
        """Carry out one of this plugin's effects after the commit (may do I/O: call
        Stripe, print a kitchen ticket). It must be idempotent: a crash between commit and
        effect means the server runs it again on restart."""


def _resolve_conflict(ctx: CommandContext) -> dict[str, Any]:
    if ctx.record is None:
        raise RejectedOpError("no such conflict", reason="record-not-found")
    if ctx.record.get("state") != "open":
        raise IllegalTransitionError(
            "the conflict is already resolved", reason="illegal-transition"
        )
    resolution = ctx.args.get("resolution_op_id")
    if resolution is not None and type(resolution) is not str:
        raise RejectedOpError("resolution_op_id must be a string", reason="invalid-argument")
    return {"state": "resolved", "resolved_by": ctx.op.node_id, "resolution_op_id": resolution}


_CONFLICTS_COLLECTION = Collection(
    name=CONFLICTS,
    fields={
        "collection": Field("str", command_only=True),
        "record_id": Field("str", command_only=True),
        "op": Field("object", command_only=True),
        "server": Field("any", command_only=True),
        "contested": Field("list", command_only=True),
        "state": Field("str", kind="state", command_only=True),
        "resolved_by": Field("any", command_only=True),
        "resolution_op_id": Field("any", command_only=True),
    },
    strategy="server_wins",
    states=("open", "resolved"),
    commands={"resolve": _resolve_conflict},
)


class Registry:
    """Collections, commands and strategies by name, built from plugins."""

    def __init__(
        self, plugins: Iterable[DomainPlugin] = (), strategies: Iterable[Strategy] = ()
    ) -> None:
        self.plugins: tuple[DomainPlugin, ...] = tuple(plugins)
        self._collections: dict[str, Collection] = {CONFLICTS: _CONFLICTS_COLLECTION}
        self._strategies: dict[str, Strategy] = {}
        for strategy in strategies:
            self.add_strategy(strategy)
        for plugin in self.plugins:
            for strategy in plugin.strategies():
                self.add_strategy(strategy)
            for collection in plugin.collections():
                if collection.name in self._collections:
                    raise CallerError(f"collection {collection.name!r} is declared twice")
                self._collections[collection.name] = collection
        for collection in self._collections.values():
            names = [collection.strategy, *collection.field_strategies.values()]
            for name in names:
                if name not in self._strategies and name != "manual":
                    # "manual" needs no object: it always parks.
                    raise CallerError(
                        f"collection {collection.name!r} names unknown strategy {name!r}"
                    )

    def add_strategy(self, strategy: Strategy) -> None:
        self._strategies[strategy.name] = strategy

    @property
    def collection_names(self) -> list[str]:
        return sorted(self._collections)

    def collection(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise UnknownCollectionError(
                f"unknown collection {name!r}", reason="unknown-collection", collection=name
            ) from None

    def command(self, collection: Collection, name: str) -> Command:
        try:
            return collection.commands[name]
        except KeyError:
            raise UnknownCommandError(
                f"collection {collection.name!r} has no command {name!r}",
                reason="unknown-command",
                command=name,
            ) from None

    def strategy_for(self, collection: Collection, field_name: str) -> Strategy | None:
        """The strategy for a contested field; ``None`` means manual (park)."""
        name = collection.field_strategies.get(field_name, collection.strategy)
        if name == "manual":
            return self._strategies.get("manual")
        return self._strategies[name]

    def effects(self, changes: list[Change]) -> list[Effect]:
        out: list[Effect] = []
        for plugin in self.plugins:
            out.extend(plugin.effects(changes))
        return out

    def perform(self, effect: Effect) -> None:
        """Run ``effect`` through the plugin that asked for it."""
        for plugin in self.plugins:
            if plugin.name == effect.plugin:
                plugin.perform(effect)
                return
        raise CallerError(f"no plugin {effect.plugin!r} for effect {effect.name!r}")
