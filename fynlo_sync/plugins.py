"""The domain plugin interface, the conflict strategy protocol, and the registry.

A :class:`DomainPlugin` declares collections (with typed field schemas and merge kinds),
named commands, validators, conflict strategies, effects to run after the server commits,
invariants over its records (:class:`Invariant`), its settings (a msgspec Struct read from
``FYNLO_<PLUGIN>_<FIELD>``, see :func:`load_settings`) and, in a module of its own that only
the server imports, HTTP routes and a lifespan hook (``server_module``). A collection's state
machine is data (:class:`StateTable`), so the schema export can hand it to other ports.
Every hook has a no-op default, so a plugin states only what it needs.

A :class:`Strategy` is a pure, deterministic function from a :class:`Contest` (one field two
writers disagree about) to a :class:`Resolution`. Strategies are chosen by name, per
collection and per field, from the registry; the built-ins live in the ``conflict`` package.

Everything here is pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

from fynlo_sync.effects import SERVER_NODE, Draft, Effect, EffectContext, EffectHandler
from fynlo_sync.errors import (
    CallerError,
    IllegalTransitionError,
    RejectedOpError,
    SettingsError,
    UnknownCollectionError,
    UnknownCommandError,
)
from fynlo_sync.ops import Change, Op, Record, Stamp

__all__ = [
    "CONFLICTS",
    "SERVER_NODE",
    "ActorPolicy",
    "Collection",
    "Command",
    "CommandContext",
    "Contest",
    "Draft",
    "DomainPlugin",
    "Effect",
    "EffectContext",
    "EffectHandler",
    "Extension",
    "Field",
    "FieldKind",
    "FieldType",
    "Invariant",
    "InvariantViolation",
    "RecordsByCollection",
    "Registry",
    "Resolution",
    "StateTable",
    "Strategy",
    "load_settings",
    "settings_prefix",
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


class CommandContext(msgspec.Struct, frozen=True, gc=False):
    """What a command sees: the record's current fields (``None`` if it does not exist or
    is deleted), the op's arguments, the op itself (author, HLC), and ``received_ms``: the
    server's receive time of the batch in ms (``None`` while a terminal applies the command
    optimistically; the server's answer, with the server's time, replaces that state).
    ``client_address``: the address the server received the batch from (``None`` on a
    terminal, for the server's own ops, or when unknown), for network checks."""

    record: Mapping[str, Any] | None
    args: Mapping[str, Any]
    op: Op
    received_ms: int | None = None
    client_address: str | None = None
    #: The permissions the op's actor holds when a plugin's actor policy checks actors
    #: (empty when the op has no actor); ``None`` when actors are not checked (no actor
    #: policy, or the server's own op). See :meth:`require`.
    permissions: frozenset[str] | None = None

    def require(self, permission: str, why: str) -> bool:
        """A rule that needs ``permission`` only in some cases (a refund above a limit):
        refuse the op (``forbidden``, naming the permission, as the actor check of protocol
        section 20.1 does) unless its actor holds it. Returns False when actors are not
        checked, so the caller applies its own fallback; True when the actor holds it."""
        if self.permissions is None:
            return False
        if permission not in self.permissions:
            who = self.op.actor_id
            raise RejectedOpError(
                f"{why} needs {permission}: "
                + (
                    "sign in an employee who holds it"
                    if who is None
                    else f"employee {who!r} does not hold it"
                ),
                reason="forbidden",
                permission=permission,
            )
        return True


#: A command returns the fields it sets (a patch); to refuse, it raises a RejectedOpError.
Command = Callable[[CommandContext], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StateTable:
    """A collection's state machine as data: every transition in one table.

    ``transitions[(state, command)]`` is the state after ``command``; a pair that is absent
    is illegal. ``None`` is the state of a record that does not exist (or is deleted).
    ``states`` lists every state in merge precedence, lowest first (``smart_merge`` keeps
    the later one when two writers set ``field`` concurrently); ``final`` are the states
    nothing leaves. ``commands`` lists the commands the table governs, in a stable order.
    Commands enforce it through :meth:`advance`; :meth:`to_json` is its form in the schema
    export (``docs/protocol.md`` section 21).
    """

    field: str
    states: tuple[str, ...]
    transitions: Mapping[tuple[str | None, str], str]
    commands: tuple[str, ...] = ()
    final: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        known = set(self.states)
        if len(known) != len(self.states):
            raise CallerError(f"state table of {self.field!r} lists a state twice")
        commands = self.commands or tuple(sorted({c for _, c in self.transitions}))
        object.__setattr__(self, "commands", commands)
        for (before, command), after in sorted(
            self.transitions.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
        ):
            for state in (before, after):
                if state is not None and state not in known:
                    raise CallerError(
                        f"state table of {self.field!r}: {state!r} is not one of its states"
                    )
            if command not in commands:
                raise CallerError(
                    f"state table of {self.field!r}: command {command!r} is not listed"
                )
            if before in self.final:
                raise CallerError(
                    f"state table of {self.field!r}: final state {before!r} has a transition"
                )
        for state in sorted(self.final):
            if state not in known:
                raise CallerError(f"state table of {self.field!r}: final {state!r} unknown")

    def next(self, state: str | None, command: str) -> str | None:
        """The state after ``command`` in ``state``, or ``None`` if it is illegal."""
        return self.transitions.get((state, command))

    def advance(self, record: Mapping[str, Any] | None, command: str, noun: str = "") -> str:
        """The state ``command`` takes ``record`` (``None``: absent) to; raises
        :class:`IllegalTransitionError` (reason ``illegal-transition``) if the table has no
        such transition."""
        state = None if record is None else record.get(self.field)
        target = None
        if state is None or type(state) is str:
            target = self.transitions.get((state, command))
        if target is None:
            raise IllegalTransitionError(
                f"{noun or 'the record'} cannot {command} when "
                f"{state if state is not None else 'it does not exist'}",
                reason="illegal-transition",
                state=state,
                command=command,
            )
        return target

    def to_json(self) -> dict[str, Any]:
        """The table as plain JSON (``docs/protocol.md`` section 21)."""
        order = {s: k for k, s in enumerate(self.states)}
        rows = sorted(
            self.transitions.items(),
            key=lambda kv: (
                -1 if kv[0][0] is None else order[kv[0][0]],
                self.commands.index(kv[0][1]),
            ),
        )
        return {
            "field": self.field,
            "states": list(self.states),
            "final": [s for s in self.states if s in self.final],
            "commands": list(self.commands),
            "transitions": [
                {"from": before, "command": command, "to": after}
                for (before, command), after in rows
            ],
        }


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    fields: Mapping[str, Field]
    #: Default strategy for contested fields, by name.
    strategy: str = "smart_merge"
    #: Per-field strategy overrides, by name. ``"_deleted"`` names the one for delete races.
    field_strategies: Mapping[str, str] = field(default_factory=dict)
    #: State precedence for ``state`` fields, lowest first (taken from ``state_table``
    #: when it has one).
    states: tuple[str, ...] = ()
    commands: Mapping[str, Command] = field(default_factory=dict)
    #: Computes derived fields (e.g. an order's total) from the record's fields.
    derive: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    #: Unknown fields are rejected unless this is False.
    strict: bool = True
    #: A rule over a put or patch: ``validate(before, after, op)`` raises a RejectedOpError
    #: to refuse it (``before`` is None for a new record). Commands check their own rules.
    validate: Callable[[Mapping[str, Any] | None, Mapping[str, Any], Op], None] | None = None
    #: The state machine of one of its ``state`` fields, as data.
    state_table: StateTable | None = None
    #: The permission an op's actor must hold, by command name (or ``put``/``patch``/
    #: ``delete``); see :class:`ActorPolicy`.
    permissions: Mapping[str, str] = field(default_factory=dict)
    #: A rule over a delete of a live record: ``delete_guard(fields, op)`` raises a
    #: RejectedOpError to refuse it (payments refuses to delete an order that holds a
    #: payment). It runs before any delete race is resolved (protocol section 11.5).
    delete_guard: Callable[[Mapping[str, Any], Op], None] | None = None
    #: The required fields' names, sorted (computed once: every op checks them).
    _required: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: Per field, what :meth:`check_fields` tests, computed once: (the Python type its
    #: values must have, or None for any; command only; None refused; a counter).
    _checks: Mapping[str, tuple[type | None, bool, bool, bool]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        required = tuple(name for name in sorted(self.fields) if self.fields[name].required)
        object.__setattr__(self, "_required", required)
        checks = {
            name: (
                _TYPES.get(spec.type, dict),
                spec.command_only,
                spec.required or spec.kind == "counter",
                spec.kind == "counter",
            )
            for name, spec in self.fields.items()
        }
        object.__setattr__(self, "_checks", checks)
        table = self.state_table
        if table is None:
            return
        spec = self.fields.get(table.field)
        if spec is None or spec.kind != "state":
            raise CallerError(
                f"collection {self.name!r}: the state table's field {table.field!r} "
                "is not one of its fields of kind 'state'"
            )
        if not self.states:
            object.__setattr__(self, "states", table.states)
        elif tuple(self.states) != table.states:
            raise CallerError(
                f"collection {self.name!r}: states differ from its state table's states"
            )
        missing = [c for c in table.commands if c not in self.commands]
        if missing:
            raise CallerError(
                f"collection {self.name!r}: its state table governs commands it lacks: "
                + ", ".join(missing)
            )

    def check_fields(self, values: Mapping[str, Any], *, by_command: bool) -> None:
        """Raise :class:`RejectedOpError` if ``values`` breaks the schema (the first
        offending field in name order)."""
        checks = self._checks
        for name, value in values.items():
            check = checks.get(name)
            if check is None or (check[1] and not by_command):
                break
            if value is None:
                if check[2]:
                    break
                continue
            want = check[0]
            if (want is not None and type(value) is not want) or (
                check[3] and type(value) is not int
            ):
                break
        else:
            return  # every field passes: no need to find the first that does not
        self._check_fields_in_order(values, by_command=by_command)

    def _check_fields_in_order(self, values: Mapping[str, Any], *, by_command: bool) -> None:
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
        for name in self._required:
            if values.get(name) is None:
                raise RejectedOpError(
                    f"{self.name}.{name} is required", reason="invalid-field", field=name
                )


#: The Python type of each field type's values (``any``: every value).
_TYPES: dict[str, type | None] = {
    "any": None,
    "int": int,
    "money": int,
    "str": str,
    "bool": bool,
    "list": list,
}


def _type_ok(kind: FieldType, value: Any) -> bool:
    want = _TYPES.get(kind, dict)
    return want is None or type(value) is want


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


#: A tenant's live records (not deleted) by collection, each in record id order. Every
#: collection of the registry has an entry (maybe empty).
RecordsByCollection = Mapping[str, Sequence[Record]]


@dataclass(frozen=True, slots=True)
class Invariant:
    """A rule that must hold over a tenant's records, checked by the simulator after every
    step (on the server, and on every terminal when ``on_terminals``) and by
    ``fynlo check`` against a live database.

    ``check`` is pure: it reads the records and returns one message per violation (none:
    it holds). A rule that spans records (a ledger balances) may be broken for a moment on
    a terminal that has pulled half of what the server committed together: give it
    ``on_terminals=False``.
    """

    name: str
    check: Callable[[RecordsByCollection], Iterable[str]]
    description: str = ""
    on_terminals: bool = True


@dataclass(frozen=True, slots=True)
class InvariantViolation:
    """One message of one invariant of one plugin."""

    plugin: str
    invariant: str
    message: str


def settings_prefix(plugin_name: str) -> str:
    """``FYNLO_<NAME>_``: the plugin's name upper-cased, anything but letters and digits
    made ``_`` (``table-booking`` -> ``FYNLO_TABLE_BOOKING_``)."""
    name = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in plugin_name.upper())
    return f"FYNLO_{name}_"


S = TypeVar("S", bound=msgspec.Struct)


def _from_text(raw: str, kind: Any) -> Any:
    """A value of ``kind`` from the text of an environment variable: numbers and booleans
    (``true``/``false``/``1``/``0``) as msgspec reads strings; lists and tuples are comma
    separated."""
    base = kind
    while typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    if typing.get_origin(base) in (list, tuple, set, frozenset):
        items: Any = [part.strip() for part in raw.split(",") if part.strip()]
        return msgspec.convert(items, kind, strict=False)
    return msgspec.convert(raw, kind, strict=False)


def load_settings(model: type[S], prefix: str, environ: Mapping[str, str]) -> S:
    """Read ``model`` (a msgspec Struct) from ``environ``: field ``x`` from ``<prefix>X``.

    A field with a default may be left unset (or empty); one without must be set. Values are
    converted to the field's type (with its ``msgspec.Meta`` constraints) and the Struct's
    ``__post_init__`` runs. Every failure, and every variable under ``prefix`` that is no
    field, raises :class:`SettingsError` naming the variable.
    """
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for spec in msgspec.structs.fields(model):
        var = prefix + spec.name.upper()
        names[var] = spec.name
        raw = environ.get(var)
        if raw is None or raw == "":
            if spec.required:
                raise SettingsError(
                    f"{var} is not set: {model.__name__}.{spec.name} has no default", variable=var
                )
            continue
        try:
            values[spec.name] = _from_text(raw, spec.type)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"{var}: {exc}", variable=var) from None
    for var in sorted(environ):
        if var.startswith(prefix) and var not in names:
            raise SettingsError(
                f"{var} is not a setting of {model.__name__} (it has: "
                + ", ".join(sorted(names))
                + ")",
                variable=var,
            )
    try:
        return msgspec.convert(values, model)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for var, name in sorted(names.items()):
            if f"`$.{name}`" in text:
                raise SettingsError(f"{var}: {text}", variable=var) from None
        for var in sorted(names, key=len, reverse=True):
            if text.startswith(f"{var}:") or text.startswith(f"{var} "):
                # a __post_init__ check that names its variable
                raise SettingsError(text, variable=var) from None
        raise SettingsError(f"{prefix}*: {text}", variable=prefix + "*") from None


@dataclass(frozen=True, slots=True)
class ActorPolicy:
    """Who may act. An op's ``actor`` names a record of ``collection`` (the tenant's
    employees); the engine checks that it exists, is ``active``, and holds the permission
    the op needs (:attr:`Collection.permissions`) among ``permissions`` of its fields."""

    collection: str
    active: Callable[[Mapping[str, Any]], bool]
    permissions: Callable[[Mapping[str, Any]], frozenset[str]]


@dataclass(frozen=True, slots=True)
class Extension:
    """Fields, commands and derived fields that one plugin adds to a collection another
    plugin declares (the payments plugin keeps an order's payment attempts in the order, so
    that one command sees the order's total and every attempt at once).

    The registry merges it into the collection: a field or command name the collection
    already has is refused, and ``derive`` runs after the collection's own ``derive``,
    seeing its results (so it can read an order's derived ``total``). ``guard`` is a rule
    over every command of the collection, its own and the extension's:
    ``guard(before, after, ctx)`` sees the record's fields before the command and after
    its patch and derive, and raises a RejectedOpError to refuse it (payments refuses to
    void an order that holds captured money). ``delete_guard(fields, op)`` does the same
    for a delete of a live record (payments refuses to delete an order with payments)."""

    collection: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    commands: Mapping[str, Command] = field(default_factory=dict)
    derive: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    guard: Callable[[Mapping[str, Any] | None, Mapping[str, Any], CommandContext], None] | None = (
        None
    )
    #: A rule over deletes of the collection's records (:attr:`Collection.delete_guard`),
    #: run after the collection's own.
    delete_guard: Callable[[Mapping[str, Any], Op], None] | None = None


def _extended(base: Collection, ext: Extension) -> Collection:
    for kind, theirs, ours in (
        ("field", base.fields, ext.fields),
        ("command", base.commands, ext.commands),
    ):
        for name in sorted(ours):
            if name in theirs:
                raise CallerError(f"an extension redeclares {base.name}.{name} ({kind})")
    derive = base.derive
    if ext.derive is not None:
        first, then = base.derive, ext.derive

        def derive(fields: Mapping[str, Any]) -> dict[str, Any]:
            out = {} if first is None else first(fields)
            out.update(then({**fields, **out}))
            return out

    commands = {**base.commands, **ext.commands}
    if ext.guard is not None:
        commands = {name: _guarded(commands[name], ext.guard, derive) for name in commands}
    delete_guard = base.delete_guard
    if ext.delete_guard is not None:
        own, theirs_ = base.delete_guard, ext.delete_guard

        def delete_guard(fields: Mapping[str, Any], op: Op) -> None:
            if own is not None:
                own(fields, op)
            theirs_(fields, op)

    return replace(
        base,
        fields={**base.fields, **ext.fields},
        commands=commands,
        derive=derive,
        delete_guard=delete_guard,
    )


def _guarded(
    command: Command,
    guard: Callable[[Mapping[str, Any] | None, Mapping[str, Any], CommandContext], None],
    derive: Callable[[Mapping[str, Any]], dict[str, Any]] | None,
) -> Command:
    def run(ctx: CommandContext) -> dict[str, Any]:
        patch = command(ctx)
        after = {**(ctx.record or {}), **patch}
        if derive is not None:
            after.update(derive(after))
        guard(ctx.record, after, ctx)
        return patch

    return run


class DomainPlugin:
    """Base class with no-op defaults. Override what the domain needs.

    A plugin without settings is built with no arguments. One that declares
    ``settings_model`` (a msgspec Struct) is built by :meth:`from_env`, which reads its
    fields from ``FYNLO_<NAME>_<FIELD>`` and passes the Struct as ``settings``.
    """

    name: str = "plugin"
    #: The msgspec Struct of this plugin's settings, or None if it has none.
    settings_model: ClassVar[type[msgspec.Struct] | None] = None
    #: The dotted module the server imports for this plugin's ``ROUTES`` (Litestar route
    #: handlers) and ``lifespan`` (see ``docs/plugins.md``). This module never imports it,
    #: so the plugin's domain code stays free of the web framework.
    server_module: ClassVar[str | None] = None
    #: This plugin's settings (an instance of ``settings_model``), or None.
    settings: Any = None

    def __init__(self, settings: Any = None) -> None:
        if settings is not None:
            self.settings = settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DomainPlugin:
        """The plugin, with its settings read from ``environ`` (validated: a bad or
        missing variable raises :class:`SettingsError` naming it)."""
        if cls.settings_model is None:
            return cls()
        return cls(settings=load_settings(cls.settings_model, settings_prefix(cls.name), environ))

    def joined(self, names: frozenset[str]) -> DomainPlugin:
        """The plugin as it runs in a registry with the plugins ``names`` (its own name
        among them): a plugin whose default depends on another plugin being loaded
        returns a copy that decided it (the payments plugin's ``card_results: auto``).
        Default: itself. Must not change ``self``: one instance may join two registries."""
        return self

    def beside(self, plugins: tuple[DomainPlugin, ...]) -> DomainPlugin:
        """The plugin as it runs beside ``plugins`` (the registry's, each already
        :meth:`joined`, itself among them): a plugin whose rules read another plugin's
        settings returns a copy that took them (the providers plugin's session ``refund``
        reads the payments plugin's refund limit and offline window). Default: itself.
        Must not change ``self`` or the others."""
        return self

    def invariants(self) -> Iterable[Invariant]:
        """Pure rules over the tenant's records (see :class:`Invariant`)."""
        return ()

    def actor_policy(self) -> ActorPolicy | None:
        """The plugin that owns the tenant's employees says who may act (at most one)."""
        return None

    def collections(self) -> Iterable[Collection]:
        return ()

    def extensions(self) -> Iterable[Extension]:
        """Additions to collections that other plugins declare (see :class:`Extension`)."""
        return ()

    def strategies(self) -> Iterable[Strategy]:
        return ()

    def effects(self, changes: list[Change]) -> list[Effect]:
        """Pure: which effects the committed changes call for (run by the server)."""
        return []

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        """This plugin's effect handlers by effect name: ``async def h(ctx: EffectContext)``
        (see :mod:`fynlo_sync.effects`). An effect with no handler here goes to
        :meth:`perform`."""
        return {}

    def perform(self, effect: Effect) -> None:
        """The old synchronous hook, still honoured: carry out an effect that has no async
        handler. It runs on the effect worker like a handler, at least once (a crash
        between its work and the record of it runs it again), so it must be idempotent
        by ``effect.key``."""


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
    # Checked when a plugin checks actors (the staff plugin): protocol 20.1.
    permissions={"resolve": "conflict.resolve"},
)


class Registry:
    """Collections, commands and strategies by name, built from plugins."""

    def __init__(
        self, plugins: Iterable[DomainPlugin] = (), strategies: Iterable[Strategy] = ()
    ) -> None:
        given = tuple(plugins)
        loaded = frozenset(p.name for p in given)
        joined = tuple(p.joined(loaded) for p in given)
        self.plugins: tuple[DomainPlugin, ...] = tuple(p.beside(joined) for p in joined)
        self._collections: dict[str, Collection] = {CONFLICTS: _CONFLICTS_COLLECTION}
        self._strategies: dict[str, Strategy] = {}
        self.actor_policy: ActorPolicy | None = None
        for plugin in self.plugins:
            policy = plugin.actor_policy()
            if policy is not None:
                if self.actor_policy is not None:
                    raise CallerError("two plugins declare who may act (an actor policy)")
                self.actor_policy = policy
        for strategy in strategies:
            self.add_strategy(strategy)
        for plugin in self.plugins:
            for strategy in plugin.strategies():
                self.add_strategy(strategy)
            for collection in plugin.collections():
                if collection.name in self._collections:
                    raise CallerError(f"collection {collection.name!r} is declared twice")
                self._collections[collection.name] = collection
        self._invariants: list[tuple[str, Invariant]] = []
        seen: dict[str, str] = {}
        for plugin in self.plugins:
            for invariant in plugin.invariants():
                if invariant.name in seen:
                    raise CallerError(
                        f"invariant {invariant.name!r} of plugin {plugin.name!r} is declared "
                        f"already (by {seen[invariant.name]!r}): names are unique"
                    )
                seen[invariant.name] = plugin.name
                self._invariants.append((plugin.name, invariant))
        for plugin in self.plugins:
            for ext in plugin.extensions():
                base = self._collections.get(ext.collection)
                if base is None:
                    raise CallerError(
                        f"plugin {plugin.name!r} extends unknown collection {ext.collection!r}"
                    )
                self._collections[ext.collection] = _extended(base, ext)
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

    @property
    def strategy_names(self) -> list[str]:
        return sorted(self._strategies)

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
        """The effects the changes call for, each with its key (see :meth:`Effect.keyed`)."""
        out: list[Effect] = []
        for plugin in self.plugins:
            out.extend(effect.keyed() for effect in plugin.effects(changes))
        return out

    def plugin(self, name: str) -> DomainPlugin | None:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        return None

    def handler(self, effect: Effect) -> EffectHandler:
        """The async handler of ``effect``: its plugin's, or one around the plugin's
        synchronous :meth:`DomainPlugin.perform`."""
        plugin = self.plugin(effect.plugin)
        if plugin is None:
            raise CallerError(f"no plugin {effect.plugin!r} for effect {effect.name!r}")
        found = plugin.effect_handlers().get(effect.name)
        if found is not None:
            return found

        async def perform(ctx: EffectContext) -> None:
            plugin.perform(ctx.effect)

        return perform

    def invariants(self) -> list[tuple[str, Invariant]]:
        """Every plugin's invariants, as ``(plugin name, invariant)`` in plugin order."""
        return list(self._invariants)

    def check_invariants(
        self, records: Iterable[Record], *, terminal: bool = False
    ) -> list[InvariantViolation]:
        """Run every invariant over one tenant's ``records`` (deleted ones are left out);
        ``terminal``: only those that must hold on a terminal too."""
        by_collection: dict[str, list[Record]] = {name: [] for name in self._collections}
        for record in records:
            if not record.deleted:
                by_collection.setdefault(record.collection, []).append(record)
        for rows in by_collection.values():
            rows.sort(key=lambda r: r.record_id)
        out: list[InvariantViolation] = []
        for plugin, invariant in self._invariants:
            if terminal and not invariant.on_terminals:
                continue
            for message in invariant.check(by_collection):
                out.append(InvariantViolation(plugin, invariant.name, message))
        return out

    def perform(self, effect: Effect) -> None:
        """Run ``effect`` through the synchronous hook of the plugin that asked for it."""
        plugin = self.plugin(effect.plugin)
        if plugin is None:
            raise CallerError(f"no plugin {effect.plugin!r} for effect {effect.name!r}")
        plugin.perform(effect)
