"""Ops, batches and records: frozen msgspec Structs that serve the log, the wire and tests.

Field values inside ``fields`` and ``args`` are float-free JSON (see
:mod:`fynlo_sync.canonical`); money is always integer minor units.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from fynlo_sync.canonical import MAX_SAFE_INTEGER, check_value, checksum
from fynlo_sync.hlc import WIRE_PATTERN

__all__ = [
    "Batch",
    "Change",
    "Conflict",
    "OpKind",
    "Op",
    "Outcome",
    "OutcomeStatus",
    "Record",
    "Stamp",
    "ops_checksum",
]

# The length too: "$" in a pattern also matches before a final newline.
Hlc = Annotated[str, Meta(pattern=WIRE_PATTERN, min_length=16, max_length=16)]
#: An op's HLC: the same rule, its digits checked by :meth:`Op.__post_init__` (a regex per
#: op was a third of a push body's decode); the schema still shows the pattern.
OpHlc = Annotated[
    str, Meta(min_length=16, max_length=16, extra_json_schema={"pattern": WIRE_PATTERN})
]
_HEX = "0123456789abcdef"
Ident = Annotated[str, Meta(min_length=1, max_length=128)]
#: Node ids are shorter, so that a conflict id ("<node_id>:<seq>") is an identifier too.
NodeIdent = Annotated[str, Meta(min_length=1, max_length=64)]
SeqNo = Annotated[int, Meta(ge=1, le=MAX_SAFE_INTEGER)]
Cursor = Annotated[int, Meta(ge=0, le=MAX_SAFE_INTEGER)]
OpKind = Literal["put", "patch", "delete", "command"]
OutcomeStatus = Literal["applied", "merged", "conflict", "rejected", "duplicate"]


class Op(Struct, frozen=True, omit_defaults=False, gc=False):
    """One change made on one replica.

    ``kind`` is ``put`` / ``patch`` (with ``fields``), ``delete`` (no fields), or
    ``command`` (a named domain command with ``name`` and ``args``, run by a plugin).
    Unused members are ``null`` on the wire.

    ``actor`` (optional, added within protocol 1) is the employee signed in on the terminal
    when the op was made; it is *omitted* for a device-level op, so an op without an actor
    has exactly the bytes (and checksum) an older terminal sends. ``null`` is read as
    absent. Use :attr:`actor_id`.
    """

    op_id: Ident
    node_id: NodeIdent
    seq: SeqNo
    hlc: OpHlc
    base_seq: Cursor
    collection: Ident
    record_id: Ident
    kind: OpKind
    fields: dict[str, Any] | None = None
    name: str | None = None
    args: dict[str, Any] | None = None
    actor: Ident | UnsetType | None = UNSET

    @property
    def actor_id(self) -> str | None:
        """The op's actor (an employee id), or ``None`` for a device-level op."""
        return self.actor if isinstance(self.actor, str) else None

    def __post_init__(self) -> None:
        if len(self.hlc) == 16 and self.hlc.strip(_HEX):  # strip leaves any other character
            raise ValueError(f"`hlc` must be 16 lowercase hex digits ({self.hlc!r})")
        if (
            "\x00" in self.op_id
            or "\x00" in self.node_id
            or "\x00" in self.collection
            or "\x00" in self.record_id
        ):
            ident = next(
                i
                for i in (self.op_id, self.node_id, self.collection, self.record_id)
                if "\x00" in i
            )
            raise ValueError(f"identifiers may not contain U+0000 ({ident!r})")
        kind = self.kind
        if kind == "command":
            if self.name is None or self.args is None:
                raise ValueError("a command op needs `name` and `args`")
            if self.fields is not None:
                raise ValueError("a command op has no `fields`")
            return
        if kind == "delete":
            if self.fields is not None or self.name is not None or self.args is not None:
                raise ValueError("a delete op has no `fields`, `name` or `args`")
            return
        if self.fields is None:
            raise ValueError(f"a {kind} op needs `fields`")
        if self.name is not None or self.args is not None:
            raise ValueError(f"a {kind} op has no `name` or `args`")
        for key in self.fields:
            if key.startswith("_"):
                raise ValueError(f"field names may not start with '_' ({key!r})")


def ops_checksum(ops: list[Op] | tuple[Op, ...]) -> str:
    """The batch checksum: lowercase hex MD5 of the canonical bytes of the ops array."""
    return checksum(msgspec.to_builtins(ops))


class Batch(Struct, frozen=True):
    """Consecutive ops of one node, committed whole or not at all."""

    protocol: int
    node_id: NodeIdent
    ops: list[Op]
    checksum: str

    def __post_init__(self) -> None:
        if "\x00" in self.node_id:
            raise ValueError(f"identifiers may not contain U+0000 ({self.node_id!r})")

    @classmethod
    def of(cls, node_id: str, ops: list[Op], protocol: int = 1) -> Batch:
        return cls(protocol=protocol, node_id=node_id, ops=ops, checksum=ops_checksum(ops))


class Stamp(Struct, frozen=True, array_like=True, gc=False):
    """Who last wrote a field: ``(hlc, node_id)`` orders writes; ``seq`` is the server feed
    sequence at which the write was committed (0 for a terminal's pending write)."""

    hlc: Hlc
    node_id: NodeIdent
    seq: Cursor

    def key(self) -> tuple[str, bytes]:
        """Last-writer-wins order: HLC (fixed-width hex sorts numerically), then node_id."""
        return (self.hlc, self.node_id.encode("utf-8"))


class Record(Struct, frozen=True, gc=False):
    """The state of one record, with a stamp for every field (and for its deletion)."""

    collection: Ident
    record_id: Ident
    fields: dict[str, Any]
    stamps: dict[str, Stamp]
    deleted: bool = False
    deleted_stamp: Stamp | None = None
    version: Cursor = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.collection, self.record_id)


class Change(Struct, frozen=True, gc=False):
    """One entry of the server's change feed: the record's state after ``seq``, made by op
    ``op_id``, the ``node_seq``-th op of ``node_id``."""

    seq: SeqNo
    op_id: Ident
    node_id: NodeIdent
    node_seq: SeqNo
    record: Record


class Outcome(Struct, frozen=True, gc=False):
    """What happened to one op. ``reason``/``detail`` explain a rejection; ``original`` is
    the first outcome of an op that arrives again as a duplicate."""

    op_id: Ident
    seq: SeqNo
    status: OutcomeStatus
    reason: str | None = None
    detail: str | None = None
    conflict_id: str | None = None
    original: OutcomeStatus | None = None
    #: The op's actor, kept in the op log for audit (omitted when the op had none).
    actor: str | UnsetType = UNSET


ConflictState = Literal["open", "resolved"]


class Conflict(Struct, frozen=True):
    """A parked conflict: both versions, who made the incoming one and when."""

    conflict_id: Ident
    collection: Ident
    record_id: Ident
    op: Op
    server: Record | None
    contested: list[str]
    state: ConflictState = "open"
    resolved_by: str | None = None
    resolution_op_id: str | None = None


def check_fields(fields: dict[str, Any], path: str = "$.fields") -> None:
    """Float-free JSON check for a local write's values."""
    check_value(fields, path)
