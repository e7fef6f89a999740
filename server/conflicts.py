"""The manual conflict queue over HTTP: list parked conflicts, resolve one.

A resolution is ordinary ops, authored by the server's own node ``server`` (it keeps its
own gapless seqs in the op log like any replica), pushed through the same replica loop as a
terminal's batch: the chosen version (if any) as a ``patch``/``delete``/``command`` op, then
the ``resolve`` command on the conflict record. The ops' ``base_seq`` is the feed's cursor:
the person saw the current state when choosing, so the chosen version is not contested.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Literal

from msgspec import Struct

from fynlo_sync.errors import (
    CallerError,
    ClockError,
    ConflictNotFoundError,
    SeqGapError,
    SeqReuseError,
)
from fynlo_sync.hlc import HybridClock, from_wire, to_wire
from fynlo_sync.ops import Batch, Op, OpKind, Record
from fynlo_sync.plugins import CONFLICTS
from fynlo_sync.protocol import PushResult, encode_batch
from server.backends import Backend

__all__ = ["SERVER_NODE", "ResolveRequest", "list_conflicts", "resolve_conflict"]

SERVER_NODE = "server"


class ResolveRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """``server`` keeps the server's version; ``incoming`` applies the parked op;
    ``value`` patches the record with ``fields``."""

    choice: Literal["server", "incoming", "value"]
    fields: dict[str, Any] | None = None


async def list_conflicts(backend: Backend, tenant: str, state: str = "open") -> list[Record]:
    rows = await backend.records(tenant, CONFLICTS)
    return [r for r in rows if not r.deleted and (state == "all" or r.fields.get("state") == state)]


def _op(
    rng: random.Random,
    seq: int,
    hlc: str,
    base: int,
    collection: str,
    record_id: str,
    kind: OpKind,
    **parts: Any,
) -> Op:
    return Op(
        op_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        node_id=SERVER_NODE,
        seq=seq,
        hlc=hlc,
        base_seq=base,
        collection=collection,
        record_id=record_id,
        kind=kind,
        **parts,
    )


def _resolution_ops(
    conflict: Record,
    request: ResolveRequest,
    *,
    first_seq: int,
    base_seq: int,
    clock: HybridClock,
    rng: random.Random,
) -> list[Op]:
    parked: Mapping[str, Any] = conflict.fields["op"]
    collection, record_id = parked["collection"], parked["record_id"]
    for stamp in conflict.stamps.values():
        with suppress(ClockError):
            clock.update(from_wire(stamp.hlc))
    ops: list[Op] = []
    seq = first_seq
    chosen: Op | None = None
    if request.choice == "incoming":
        kind = parked["kind"]
        if kind == "delete":
            parts: dict[str, Any] = {}
        elif kind == "command":
            parts = {"name": parked["name"], "args": parked["args"]}
        else:
            kind, parts = "patch", {"fields": parked["fields"]}
        chosen = _op(rng, seq, to_wire(clock.now()), base_seq, collection, record_id, kind, **parts)
    elif request.choice == "value":
        if not request.fields:
            raise CallerError("choice 'value' needs `fields`", field="fields")
        chosen = _op(
            rng,
            seq,
            to_wire(clock.now()),
            base_seq,
            collection,
            record_id,
            "patch",
            fields=request.fields,
        )
    if chosen is not None:
        ops.append(chosen)
        seq += 1
    args = {"resolution_op_id": None if chosen is None else chosen.op_id}
    ops.append(
        _op(
            rng,
            seq,
            to_wire(clock.now()),
            base_seq,
            CONFLICTS,
            conflict.record_id,
            "command",
            name="resolve",
            args=args,
        )
    )
    return ops


async def resolve_conflict(
    backend: Backend,
    tenant: str,
    conflict_id: str,
    request: ResolveRequest,
    *,
    clock: HybridClock,
    rng: random.Random,
    attempts: int = 5,
) -> PushResult:
    """Resolve a parked conflict as the server node. Races with another resolver (the
    server's seqs were taken meanwhile) are retried."""
    for attempt in range(attempts):
        found = await backend.load(tenant, [(CONFLICTS, conflict_id)])
        conflict = found.get((CONFLICTS, conflict_id))
        if conflict is None or conflict.deleted:
            raise ConflictNotFoundError(f"no conflict {conflict_id!r}", conflict_id=conflict_id)
        first = await backend.high_water(tenant, SERVER_NODE) + 1
        ops = _resolution_ops(
            conflict,
            request,
            first_seq=first,
            base_seq=await backend.cursor(tenant),
            clock=clock,
            rng=rng,
        )
        try:
            return await backend.push(
                tenant, encode_batch(Batch.of(SERVER_NODE, ops)), node_id=None
            )
        except (SeqGapError, SeqReuseError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
