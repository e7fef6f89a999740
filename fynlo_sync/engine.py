"""The sync engine, pure (sans-I/O in the manner of h11).

It takes values (a batch, the node's high-water mark, the outcomes already stored for
replayed seqs, the current records the batch touches, the registry) and returns a
:class:`Plan` of values (records to write, change-feed entries, one outcome per op,
conflicts parked). It never touches a database, a socket, the wall clock or a random
source, so the terminal, the server and the simulator all run the same decisions.

:func:`apply_op` decides one op against one record; :func:`plan_push` runs a batch through
it on the server; :func:`rebase` runs a terminal's pending ops over the server's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import UNSET

from fynlo_sync.canonical import MAX_SAFE_INTEGER
from fynlo_sync.errors import BatchTooLargeError, RejectedOpError, SeqGapError, SeqReuseError
from fynlo_sync.limits import DEFAULT_LIMITS, Limits, encoded_size
from fynlo_sync.ops import Batch, Change, Conflict, Op, Outcome, OutcomeStatus, Record, Stamp
from fynlo_sync.plugins import (
    CONFLICTS,
    SERVER_NODE,
    Collection,
    CommandContext,
    Contest,
    Effect,
    Registry,
)
from fynlo_sync.protocol import change_parts

__all__ = [
    "Applied",
    "Plan",
    "actor_keys",
    "apply_op",
    "authorize",
    "check_permission",
    "conflict_id_of",
    "plan_push",
    "rebase",
]

Key = tuple[str, str]


class Applied(msgspec.Struct, frozen=True, gc=False):
    """The result of one op against one record.

    ``record`` is the record's new state, or ``None`` when the op changed nothing (rejected,
    parked, or a no-op). ``conflict`` is set when the op was parked for manual resolution.
    """

    status: OutcomeStatus
    record: Record | None = None
    reason: str | None = None
    detail: str | None = None
    conflict: Conflict | None = None
    #: The rule that refused a rejected op (a terminal raises it to the caller).
    error: RejectedOpError | None = None


@dataclass(slots=True)
class Plan:
    """What committing a batch means, as values. A store writes it in one transaction."""

    node_id: str
    high_water: int
    #: Final state of every record the batch changed, by (collection, record_id).
    writes: dict[Key, Record] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    #: One outcome per op of the batch, in order.
    outcomes: list[Outcome] = field(default_factory=list)
    #: Outcomes of the ops that were new in this batch (to store in the op log).
    new_outcomes: list[Outcome] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    #: The server feed sequence after this batch.
    cursor: int = 0
    #: Work the plugins ask for once the plan is committed (pure descriptions with stable
    #: keys; the store writes them to the tenant's outbox in the commit's transaction).
    effects: list[Effect] = field(default_factory=list)
    #: The server's receive time of the batch (the outbox's creation time of its effects).
    received_ms: int | None = None
    #: The canonical bytes of each change (:func:`~fynlo_sync.protocol.canonical_change`),
    #: in order, made once by :func:`plan_push`: the feed rows a store writes.
    feed: list[bytes] = field(default_factory=list)
    #: The JSON of each record in ``writes`` (its final state), by key: the record rows.
    bodies: dict[Key, bytes] = field(default_factory=dict)


def _stamp(op: Op, seq: int) -> Stamp:
    return Stamp(hlc=op.hlc, node_id=op.node_id, seq=seq)


def _reject(exc: RejectedOpError) -> Applied:
    reason = exc.extra.get("reason") or exc.code
    return Applied(status="rejected", reason=str(reason), detail=exc.detail, error=exc)


def _finish(
    collection: Collection,
    base: Record | None,
    op: Op,
    stamp: Stamp,
    fields: dict[str, Any],
    stamps: dict[str, Stamp],
    seq: int,
) -> Record:
    if collection.derive is not None:
        derived = collection.derive(fields)
        for name in sorted(derived) if len(derived) > 1 else derived:
            value = derived[name]
            if name not in fields or fields[name] != value:
                fields[name] = value
                stamps[name] = stamp
    # Positional (collection, record_id, fields, stamps, deleted, deleted_stamp, version).
    return Record(
        op.collection,
        op.record_id,
        fields,
        stamps,
        False,
        None,
        seq if seq else (base.version if base is not None else 0),
    )


def _add(collection: Collection, name: str, current: Any, delta: int) -> int:
    """A counter's new value; refuses to leave the exact integer range of JSON."""
    total: int = (current or 0) + delta
    if not -MAX_SAFE_INTEGER <= total <= MAX_SAFE_INTEGER:
        raise RejectedOpError(
            f"{collection.name}.{name} would leave -(2**53-1)..2**53-1",
            reason="invalid-field",
            field=name,
        )
    return total


def _contested(current: Record, name: str, op: Op) -> Stamp | None:
    """The server stamp of ``name`` if another node wrote it after the op's base."""
    stamp = current.stamps.get(name)
    if stamp is not None and stamp.seq > op.base_seq and stamp.node_id != op.node_id:
        return stamp
    return None


def conflict_id_of(op: Op) -> str:
    """A parked op's conflict id: ``<node_id>:<seq>``, unique in the tenant by
    construction (an op id is only as unique as the terminal that made it)."""
    return f"{op.node_id}:{op.seq}"


def _park(op: Op, current: Record | None, contested: list[str]) -> Applied:
    conflict = Conflict(
        conflict_id=conflict_id_of(op),
        collection=op.collection,
        record_id=op.record_id,
        op=op,
        server=current,
        contested=sorted(contested),
    )
    return Applied(status="conflict", conflict=conflict)


def _forbidden(message: str, permission: str | None) -> RejectedOpError:
    return RejectedOpError(message, reason="forbidden", permission=permission)


def authorize(op: Op, registry: Registry, actor: Record | None) -> None:
    """Raise a ``forbidden`` :class:`RejectedOpError` unless ``op``'s actor may make it.

    ``actor`` is the actor's record as this replica knows it (``None``: no such record).
    With no actor policy in the registry, actors are recorded but not checked. An op with
    an actor needs that actor to be an active employee holding the permission the op
    needs (if any); an op without one may not need a permission, unless the server made it.
    """
    if registry.actor_policy is None:
        return
    collection = registry.collection(op.collection)
    needed = collection.permissions.get(op.name or op.kind)
    if op.actor_id is None and (needed is None or op.node_id == SERVER_NODE):
        return
    check_permission(registry, op.actor_id, actor, needed)


def check_permission(
    registry: Registry, actor_id: str | None, actor: Record | None, needed: str | None
) -> None:
    """The actor check of protocol 20.1 for one permission, reusable outside an op (a
    route acting for an employee): raise a ``forbidden`` :class:`RejectedOpError` (its
    ``permission`` member names ``needed``) unless ``actor_id`` names an active employee
    whose record is ``actor`` and who holds ``needed`` (``None``: any active employee).
    Passes when the registry has no actor policy."""
    policy = registry.actor_policy
    if policy is None:
        return
    if actor_id is None:
        if needed is None:
            raise _forbidden("an employee must be signed in", needed)
        raise _forbidden(f"{needed} is needed: sign in an employee who holds it", needed)
    if actor is None or actor.deleted:
        raise _forbidden(f"actor {actor_id!r} is not an employee of the tenant", needed)
    if not policy.active(actor.fields):
        raise _forbidden(f"employee {actor_id!r} is not active", needed)
    if needed is not None and needed not in policy.permissions(actor.fields):
        raise _forbidden(f"employee {actor_id!r} does not hold {needed}", needed)


def _held(op: Op, registry: Registry, actor: Record | None) -> frozenset[str] | None:
    """What a command sees as :attr:`CommandContext.permissions` (after :func:`authorize`
    passed): ``None`` when actors are not checked."""
    policy = registry.actor_policy
    if policy is None or op.node_id == SERVER_NODE:
        return None
    if op.actor_id is None or actor is None:
        return frozenset()
    return policy.permissions(actor.fields)


def actor_keys(ops: Sequence[Op], registry: Registry) -> list[Key]:
    """The actor records a batch's check reads (load them in the push's transaction)."""
    policy = registry.actor_policy
    if policy is None:
        return []
    return sorted({(policy.collection, a) for op in ops if (a := op.actor_id) is not None})


def apply_op(
    current: Record | None,
    op: Op,
    registry: Registry,
    seq: int = 0,
    *,
    received_ms: int | None = None,
    actor: Record | None = None,
    limits: Limits = DEFAULT_LIMITS,
    client_address: str | None = None,
) -> Applied:
    """Decide ``op`` against ``current`` (the record now, or ``None`` if it never existed).

    ``seq`` is the server feed sequence the write will get (0 on a terminal);
    ``received_ms`` the server's receive time of the batch (``None`` on a terminal), which
    commands see as :attr:`CommandContext.received_ms`; ``actor`` the record of the op's
    actor, if it has one (see :func:`authorize`). Deterministic: the same inputs give the
    same result on every replica. A result whose ``fields`` would be larger than
    ``limits.max_record_bytes`` is rejected (``record-too-large``).
    """
    applied = _apply_op(current, op, registry, seq, received_ms, actor, client_address)
    if applied.record is not None and not applied.record.deleted:
        size = encoded_size(applied.record.fields)
        if size > limits.max_record_bytes:
            return _too_large(op, size, limits)
    return applied


def _too_large(op: Op, size: int, limits: Limits) -> Applied:
    return _reject(
        RejectedOpError(
            f"{op.collection}/{op.record_id} would be {size} bytes; the limit is "
            f"{limits.max_record_bytes}",
            reason="record-too-large",
        )
    )


def _apply_op(
    current: Record | None,
    op: Op,
    registry: Registry,
    seq: int,
    received_ms: int | None,
    actor: Record | None,
    client_address: str | None = None,
) -> Applied:
    try:
        collection = registry.collection(op.collection)
        checked = registry.actor_policy is not None
        if checked:
            authorize(op, registry, actor)
        stamp = Stamp(op.hlc, op.node_id, seq)
        if op.kind == "command":
            assert op.name is not None and op.args is not None
            command = collection.commands.get(op.name) or registry.command(collection, op.name)
            live = current if current is not None and not current.deleted else None
            patch = command(
                CommandContext(
                    None if live is None else live.fields,
                    op.args,
                    op,
                    received_ms,
                    client_address,
                    _held(op, registry, actor) if checked else None,
                )
            )
            collection.check_fields(patch, by_command=True)
            fields = dict(live.fields) if live is not None else {}
            stamps = dict(live.stamps) if live is not None else {}
            for name in sorted(patch):
                fields[name] = patch[name]
                stamps[name] = stamp
            collection.check_required(fields)
            return Applied("applied", _finish(collection, current, op, stamp, fields, stamps, seq))
        if op.kind == "delete":
            return _apply_delete(collection, current, op, registry, stamp, seq)
        if collection.name == CONFLICTS:
            raise RejectedOpError(
                "conflicts are written by the server and the resolve command only",
                reason="command-only-field",
            )
        assert op.fields is not None
        collection.check_fields(op.fields, by_command=False)
        return _apply_write(collection, current, op, registry, stamp, seq)
    except RejectedOpError as exc:
        return _reject(exc)


def _apply_delete(
    collection: Collection,
    current: Record | None,
    op: Op,
    registry: Registry,
    stamp: Stamp,
    seq: int,
) -> Applied:
    if collection.name == CONFLICTS:
        raise RejectedOpError("conflicts are resolved, not deleted", reason="command-only-field")
    if current is None:
        raise RejectedOpError(
            f"{op.collection}/{op.record_id} does not exist", reason="record-not-found"
        )
    if current.deleted:
        return Applied("applied")  # already gone: nothing to do
    if collection.delete_guard is not None:
        collection.delete_guard(current.fields, op)  # a domain may refuse (section 11.5)
    status: OutcomeStatus = "applied"
    rivals = [s for name in sorted(current.fields) if (s := _contested(current, name, op))]
    if rivals:
        newest = max(rivals, key=Stamp.key)
        contest = Contest(
            collection=op.collection,
            record_id=op.record_id,
            field="_deleted",
            kind="lww",
            server_value=False,
            server_stamp=newest,
            incoming_value=True,
            incoming_stamp=stamp,
        )
        deleted = _deleted_after(registry, collection, contest)
        if deleted is None:
            return _park(op, current, ["_deleted"])
        if not deleted:
            return Applied("merged", reason="kept-server", detail="a newer edit kept the record")
        status = "merged"
    record = Record(
        collection=op.collection,
        record_id=op.record_id,
        fields=dict(current.fields),
        stamps=dict(current.stamps),
        deleted=True,
        deleted_stamp=stamp,
        version=seq if seq else current.version,
    )
    return Applied(status, record)


def _deleted_after(registry: Registry, collection: Collection, contest: Contest) -> bool | None:
    """Resolve a delete-versus-edit race: is the record deleted after it (None: park)?"""
    strategy = registry.strategy_for(collection, "_deleted")
    if strategy is None:
        return None
    resolution = strategy.resolve(contest)
    if resolution.choice == "park":
        return None
    if resolution.choice == "server":
        return bool(contest.server_value)
    if resolution.choice == "incoming":
        return bool(contest.incoming_value)
    return bool(resolution.value)


def _apply_write(
    collection: Collection,
    current: Record | None,
    op: Op,
    registry: Registry,
    stamp: Stamp,
    seq: int,
) -> Applied:
    assert op.fields is not None
    incoming = op.fields
    status: OutcomeStatus = "applied"
    if current is None or current.deleted:
        if current is None and op.kind == "patch":
            raise RejectedOpError(
                f"{op.collection}/{op.record_id} does not exist", reason="record-not-found"
            )
        start: dict[str, Any] = {}
        stamps: dict[str, Stamp] = {}
        if current is not None:
            # Deleted. Was the delete one this op had not seen, by someone else?
            assert current.deleted_stamp is not None
            ds = current.deleted_stamp
            if ds.seq > op.base_seq and ds.node_id != op.node_id:
                contest = Contest(
                    collection=op.collection,
                    record_id=op.record_id,
                    field="_deleted",
                    kind="lww",
                    server_value=True,
                    server_stamp=ds,
                    incoming_value=False,
                    incoming_stamp=stamp,
                )
                deleted = _deleted_after(registry, collection, contest)
                if deleted is None:
                    return _park(op, current, ["_deleted"])
                if deleted:
                    return Applied("merged", reason="kept-server", detail="record was deleted")
                status = "merged"
            elif op.kind == "patch":
                raise RejectedOpError(
                    f"{op.collection}/{op.record_id} was deleted", reason="record-deleted"
                )
            if op.kind == "patch":
                start = dict(current.fields)
                stamps = dict(current.stamps)
        for name in sorted(incoming):
            spec = collection.fields.get(name)
            value = incoming[name]
            if spec is not None and spec.kind == "counter" and op.kind == "patch":
                value = _add(collection, name, start.get(name), value)
            start[name] = value
            stamps[name] = stamp
        collection.check_required(start)
        if collection.validate is not None:
            before = None if current is None or current.deleted else current.fields
            collection.validate(before, start, op)
        return Applied(status, _finish(collection, current, op, stamp, start, stamps, seq))

    fields = dict(current.fields)
    stamps = dict(current.stamps)
    contested: list[str] = []
    for name in sorted(incoming):
        spec = collection.fields.get(name)
        kind = spec.kind if spec is not None else "lww"
        value = incoming[name]
        if kind == "counter":
            fields[name] = _add(collection, name, fields.get(name), value)
            stamps[name] = stamp
            continue
        rival = _contested(current, name, op)
        if rival is None:
            fields[name] = value
            stamps[name] = stamp
            continue
        contest = Contest(
            collection=op.collection,
            record_id=op.record_id,
            field=name,
            kind=kind,
            server_value=current.fields.get(name),
            server_stamp=rival,
            incoming_value=value,
            incoming_stamp=stamp,
            states=collection.states,
        )
        strategy = registry.strategy_for(collection, name)
        resolution = None if strategy is None else strategy.resolve(contest)
        if resolution is None or resolution.choice == "park":
            contested.append(name)
            continue
        status = "merged"
        if resolution.choice == "incoming":
            fields[name] = value
            stamps[name] = stamp
        elif resolution.choice == "value":
            fields[name] = resolution.value
            stamps[name] = stamp
    if contested:
        return _park(op, current, contested)
    collection.check_fields({k: fields.get(k) for k in sorted(incoming)}, by_command=False)
    if collection.validate is not None:
        collection.validate(current.fields, fields, op)
    return Applied(status, _finish(collection, current, op, stamp, fields, stamps, seq))


def _conflict_record(conflict: Conflict, stamp: Stamp, seq: int) -> Record:
    fields: dict[str, Any] = {
        "collection": conflict.collection,
        "record_id": conflict.record_id,
        "op": msgspec.to_builtins(conflict.op),
        "server": None if conflict.server is None else msgspec.to_builtins(conflict.server),
        "contested": list(conflict.contested),
        "state": "open",
        "resolved_by": None,
        "resolution_op_id": None,
    }
    return Record(
        collection=CONFLICTS,
        record_id=conflict.conflict_id,
        fields=fields,
        stamps={name: stamp for name in sorted(fields)},
        version=seq,
    )


def plan_push(
    batch: Batch,
    *,
    high_water: int,
    prior: Mapping[int, Outcome],
    rows: Mapping[Key, Record],
    registry: Registry,
    cursor: int,
    received_ms: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    client_address: str | None = None,
) -> Plan:
    """Plan committing ``batch`` on the server.

    ``high_water`` is the node's last applied seq; ``prior`` the stored outcomes of the
    batch's seqs at or below it; ``rows`` the current records the batch touches and those of
    its actors (:func:`actor_keys`; missing keys never existed); ``cursor`` the server
    feed's last sequence number; ``received_ms`` the server's receive time (injected by the
    replica; commands see it).

    The batch has passed :func:`fynlo_sync.protocol.check_batch` (the replica runs it
    once per push, before taking the lock).

    Raises :class:`SeqGapError` when the first new op is not ``high_water + 1``,
    :class:`SeqReuseError` when a replayed seq carries a different op_id, and
    :class:`BatchTooLargeError` (``max_growth_bytes``) when the batch's changes would add
    more than ``limits.max_push_growth_bytes`` to the feed (send fewer ops at once).
    """
    plan = Plan(
        node_id=batch.node_id, high_water=high_water, cursor=cursor, received_ms=received_ms
    )
    working: dict[Key, Record] = dict(rows)
    policy = registry.actor_policy
    max_record = limits.max_record_bytes
    # The plan's members, as locals in the loop (written back once it is done).
    outcomes, new_outcomes, changes = plan.outcomes, plan.new_outcomes, plan.changes
    writes, feed, record_bodies = plan.writes, plan.feed, plan.bodies
    last = high_water  # the node's last applied seq so far
    #: Each change's (canonical bytes, record bytes) when made in the loop (``None``: at
    #: the end: a parked conflict's record).
    made: list[tuple[bytes, bytes] | None] = []
    keys: list[Key] = []  # each change's record key
    for op in batch.ops:
        seq = op.seq
        if seq <= high_water:
            first = prior.get(seq)
            if first is None:
                raise SeqReuseError(
                    f"seq {seq} of node {op.node_id!r} is at or below the high-water "
                    f"mark {high_water} but has no stored outcome",
                    seq=seq,
                )
            if first.op_id != op.op_id:
                raise SeqReuseError(
                    f"seq {seq} of node {op.node_id!r} was applied as op "
                    f"{first.op_id!r}, not {op.op_id!r}",
                    seq=seq,
                )
            outcomes.append(
                Outcome(
                    op_id=op.op_id,
                    seq=seq,
                    status="duplicate",
                    reason=first.reason,
                    detail=first.detail,
                    conflict_id=first.conflict_id,
                    original=first.status,
                )
            )
            continue
        if seq != last + 1:
            raise SeqGapError(
                f"node {op.node_id!r} sent seq {seq}; the next expected seq is {last + 1}",
                expected=last + 1,
            )
        key = (op.collection, op.record_id)
        # apply_op's steps, with its record size check made on the record's bytes (which
        # hold its fields' JSON, so are never shorter): each record is encoded once, in
        # its change (the record's bytes are a slice of the change's).
        result = _apply_op(
            working.get(key),
            op,
            registry,
            cursor + 1,
            received_ms,
            None if policy is None else _actor_of(op, registry, working),
            client_address,
        )
        record = result.record
        change = None
        if record is not None:
            change = Change(cursor + 1, op.op_id, op.node_id, seq, record)
            parts = change_parts(change)
            if len(parts[1]) > max_record and not record.deleted:
                size = encoded_size(record.fields)
                if size > max_record:
                    result, record, change = _too_large(op, size, limits), None, None
        conflict = result.conflict
        actor = op.actor
        outcome = Outcome(
            op.op_id,
            seq,
            result.status,
            result.reason,
            result.detail,
            None if conflict is None else conflict.conflict_id,
            None,
            actor if isinstance(actor, str) else UNSET,
        )
        if change is not None:
            cursor += 1
            working[key] = writes[key] = change.record
            changes.append(change)
            made.append(parts)
            keys.append(key)
        if conflict is not None:
            cursor += 1
            parked = _conflict_record(conflict, _stamp(op, cursor), cursor)
            ckey = (CONFLICTS, parked.record_id)
            working[ckey] = writes[ckey] = parked
            changes.append(Change(cursor, op.op_id, op.node_id, seq, parked))
            made.append(None)
            keys.append(ckey)
            plan.conflicts.append(conflict)
        last = seq
        outcomes.append(outcome)
        new_outcomes.append(outcome)
    plan.high_water, plan.cursor = last, cursor
    if changes:
        # Each record encoded once: its size (the growth), its row, its change's bytes.
        growth = 0
        for change, known, key in zip(changes, made, keys, strict=True):
            change_json, body = change_parts(change) if known is None else known
            growth += len(body)
            record_bodies[key] = body
            feed.append(change_json)
        if growth > limits.max_push_growth_bytes:
            raise BatchTooLargeError(
                f"the batch would add {growth} bytes to the feed; the limit is "
                f"{limits.max_push_growth_bytes}: send fewer ops at once",
                max_growth_bytes=limits.max_push_growth_bytes,
            )
        plan.effects = registry.effects(changes)
    return plan


def _actor_of(op: Op, registry: Registry, rows: Mapping[Key, Record]) -> Record | None:
    policy, actor_id = registry.actor_policy, op.actor_id
    if policy is None or actor_id is None:
        return None
    return rows.get((policy.collection, actor_id))


def rebase(
    server: Record | None,
    pending: Sequence[Op],
    registry: Registry,
    actors: Callable[[Key], Record | None] | None = None,
) -> Record | None:
    """A terminal's view of one record: the server's state with its pending ops re-applied.

    Conflicts are predicted exactly as the server will decide them if nothing else arrives
    first; a parked or rejected op leaves the record as it was. ``actors`` reads an actor's
    record from the terminal's local view (for :func:`authorize`).
    """
    record = server
    policy = registry.actor_policy
    for op in pending:
        actor_id = op.actor_id
        actor = None
        if policy is not None and actor_id is not None and actors is not None:
            actor = actors((policy.collection, actor_id))
        result = apply_op(record, op, registry, 0, actor=actor)
        if result.record is not None:
            record = result.record
    return record
