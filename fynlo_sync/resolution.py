"""Resolving a parked conflict, as ops the server authors (pure).

A resolution is ordinary ops by node ``server``: the chosen version (if any) as a
``patch``/``delete``/``command`` op of the target record, then the ``resolve`` command on
the conflict record, in one batch. :func:`resolution` decides them under the tenant's lock
(it is a :class:`~fynlo_sync.replica.Compose`'s ``build``): a conflict that is already
resolved gets only the ``resolve`` command, which the engine rejects, so a second resolver
can never apply its version over the first one's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from fynlo_sync.canonical import check_value
from fynlo_sync.errors import CallerError, ConflictNotFoundError, MalformedError
from fynlo_sync.limits import check_value_limits
from fynlo_sync.ops import Record
from fynlo_sync.plugins import CONFLICTS, Draft

__all__ = ["ResolveRequest", "resolution"]

Key = tuple[str, str]


class ResolveRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """``server`` keeps the server's version; ``incoming`` applies the parked op;
    ``value`` patches the record with ``fields``. ``actor``: the employee resolving it
    (protocol 20.1: needs ``conflict.resolve`` when the server checks actors); the
    ``resolve`` op carries it."""

    choice: Literal["server", "incoming", "value"]
    fields: dict[str, Any] | None = None
    actor: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


def _check_fields(fields: dict[str, Any]) -> None:
    """A person's chosen values are a write like any other: the op rules and the JSON
    profile and limits hold (else the server would fail building its own op)."""
    for name in fields:
        if name.startswith("_"):
            raise MalformedError(f"field names may not start with '_' ({name!r})", field="fields")
    check_value_limits(fields, "$.fields")
    check_value(fields, "$.fields")


def resolution(
    conflict_id: str,
    request: ResolveRequest,
    rows: Mapping[Key, Record],
    new_id: Callable[[], str],
) -> list[Draft]:
    """The drafts that resolve ``conflict_id`` as ``request`` says, given the current
    records (``rows`` holds the conflict record, or lacks it)."""
    if request.choice == "value" and not request.fields:
        raise CallerError("choice 'value' needs `fields`", field="fields")
    if request.fields is not None:
        _check_fields(request.fields)
    conflict = rows.get((CONFLICTS, conflict_id))
    if conflict is None or conflict.deleted:
        raise ConflictNotFoundError(f"no conflict {conflict_id!r}", conflict_id=conflict_id)
    parked: Mapping[str, Any] = conflict.fields["op"]
    collection, record_id = parked["collection"], parked["record_id"]
    chosen: Draft | None = None
    if conflict.fields.get("state") != "open":
        pass  # only the resolve command: rejected as an illegal transition
    elif request.choice == "incoming":
        kind = parked["kind"]
        if kind == "delete":
            chosen = Draft(collection, record_id, "delete", op_id=new_id())
        elif kind == "command":
            chosen = Draft(
                collection,
                record_id,
                "command",
                name=parked["name"],
                args=dict(parked["args"]),
                op_id=new_id(),
            )
        else:
            chosen = Draft(collection, record_id, "patch", fields=parked["fields"], op_id=new_id())
    elif request.choice == "value":
        chosen = Draft(collection, record_id, "patch", fields=request.fields, op_id=new_id())
    args = {"resolution_op_id": None if chosen is None else chosen.op_id}
    resolve = Draft.command(CONFLICTS, conflict_id, "resolve", args, actor=request.actor)
    return [resolve] if chosen is None else [chosen, resolve]
