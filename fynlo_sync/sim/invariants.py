"""What must hold in a simulated world: after every step, and at the end after healing.

After every step, for every tenant:

* the feed has no hole, and the server's records are exactly the feed folded up;
* every node's op log holds seqs ``1..high_water`` with no gap, each the op that node
  made at that seq (no seq reused, nothing invented);
* no op applied twice: each op has at most one record change and one conflict change in
  the feed, and only the changes its outcome allows;
* no acknowledged op lost: a terminal's acknowledged seq is at most the server's
  high-water mark, and every op it ever committed locally is still in its outbox or in the
  server's log;
* a terminal's confirmed state is exactly the server's feed folded up to its cursor;
* stock counts are exact: on the server, the sum of the deltas of the ops that applied;
  in a terminal's view, the confirmed count plus its own pending deltas not yet in it;
* no row of another tenant on any replica;
* every registered plugin's invariants (:meth:`DomainPlugin.invariants
  <fynlo_sync.plugins.DomainPlugin.invariants>`; orders: a total equals the sum of its
  lines) hold on the server, and those marked ``on_terminals`` on every terminal's local
  and confirmed views;
* each node's ops carry strictly increasing HLCs (crashes and clock jumps included).

At the end (everything healed and synced until quiet): the plugins' invariants hold on the
server; every replica equals the server;
every op ever made has exactly one outcome on the server; every conflict outcome has its
record in the queue, open or resolved; every op that was not simply applied, and whose
answer reached its author, is remembered by the author with its reason. (An op whose
answer was lost and that the author then saw committed in the feed, by pulling before
pushing again, is acknowledged without an answer: the client cannot know its outcome.
Those are counted as ``unseen_outcomes``.)
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from fynlo_sync.hlc import from_wire
from fynlo_sync.ops import Change, Outcome, Record
from fynlo_sync.plugins import CONFLICTS

if TYPE_CHECKING:
    from fynlo_sync.sim.world import SimTerminal, World

__all__ = ["INVARIANTS", "Violation", "check_end", "check_step", "parked_by", "quiet"]

#: Every invariant of the engine by name, for reports (plugins add theirs, by their names).
INVARIANTS = (
    "feed-gap",
    "server-state",
    "seq-gap",
    "seq-reuse",
    "applied-twice",
    "acked-lost",
    "op-lost",
    "confirmed-state",
    "stock-count",
    "tenant-isolation",
    "hlc-order",
    "protocol",
    "high-water",
    "server-error",
    "sync-error",
    "not-quiet",
    "diverged",
    "outcome-missing",
    "conflict-unaccounted",
    "outcome-unknown",
)

_STOCK = "stock"


class Violation(Exception):
    """An invariant failed. ``name`` is the invariant, ``step`` the step index."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail
        self.step: int | None = None


def parked_by(change: Change) -> bool:
    """Is this change the conflict record its op was parked as (not an edit of one)?"""
    record = change.record
    if record.collection != CONFLICTS:
        return False
    parked = record.fields.get("op")
    return isinstance(parked, dict) and parked.get("op_id") == change.op_id


def _fold(changes: list[Change]) -> dict[tuple[str, str], Record]:
    out: dict[tuple[str, str], Record] = {}
    for change in changes:
        out[change.record.key] = change.record
    return out


def _check_plugins(world: World, where: str, records: list[Record], *, terminal: bool) -> None:
    """The registered plugins' invariants over one replica's view of a tenant."""
    found = world.registry.check_invariants(records, terminal=terminal)
    if found:
        raise Violation(found[0].invariant, f"{where}: {found[0].message}")


def _check_tenant(where: str, tenant: str, nodes: set[str], record: Record) -> None:
    if record.collection == CONFLICTS:
        op = record.fields.get("op") or {}
        if op.get("node_id") not in nodes or not str(record.fields.get("record_id")).startswith(
            tenant + "."
        ):
            raise Violation("tenant-isolation", f"{where}: conflict {record.record_id} not ours")
    elif not record.record_id.startswith(tenant + "."):
        raise Violation("tenant-isolation", f"{where}: {record.key} belongs to another tenant")


def _stock_deltas(ops: list[Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for op in ops:
        if op.collection == _STOCK and op.fields is not None:
            out[op.record_id] += int(op.fields.get("count") or 0)
    return out


class _TenantView:
    """What the server holds for one tenant, read once per check."""

    def __init__(self, world: World, tenant: str) -> None:
        store = world.replica.store
        self.tenant = tenant
        self.feed = store.changes(tenant, 0, 1 << 40)
        self.records = store.records(tenant)
        self.high_waters = store.high_waters(tenant)
        self.nodes = world.nodes_of(tenant)
        self.logs: dict[str, list[Outcome]] = {n: store.op_log(tenant, n) for n in self.nodes}


def check_commit(world: World, node_id: str) -> None:
    """After a terminal commits a transaction (a local write, an ack, one pulled page):
    that terminal's invariants, against the server as it is now."""
    world.commit_checks += 1
    for term in world.terminals:
        if term.node_id == node_id:
            _check_terminal(world, _view(world, term.tenant), term, mid_call=True)


def _view(world: World, tenant: str) -> _TenantView:
    """The server's state for ``tenant``, read again only when it moved."""
    store = world.replica.store
    key = (
        id(store),
        len(world.terminals),
        store.cursor(tenant),
        tuple(sorted(store.high_waters(tenant).items())),
    )
    cached = world.views.get(tenant)
    if cached is None or cached[0] != key:
        cached = world.views[tenant] = (key, _TenantView(world, tenant))
    return cached[1]


def check_step(world: World) -> None:
    world.checks += 1
    for tenant in world.tenants:
        view = _view(world, tenant)
        _check_server(world, view)
        for term in world.terminals:
            if term.tenant == tenant:
                _check_terminal(world, view, term)


def _check_server(world: World, view: _TenantView) -> None:
    tenant = view.tenant
    nodes = set(view.nodes)
    seqs = [c.seq for c in view.feed]
    if seqs != list(range(1, len(seqs) + 1)):
        raise Violation("feed-gap", f"{tenant} feed seqs are {seqs}")
    folded = _fold(view.feed)
    if view.records != [folded[k] for k in sorted(folded)]:
        raise Violation("server-state", f"{tenant} records differ from the feed folded up")
    for node in sorted(view.high_waters):
        if node not in nodes:
            raise Violation("tenant-isolation", f"{tenant} has ops of foreign node {node}")
    by_op: dict[tuple[str, int], Outcome] = {}
    for node in view.nodes:
        log = view.logs[node]
        hw = view.high_waters.get(node, 0)
        if [o.seq for o in log] != list(range(1, hw + 1)):
            raise Violation(
                "seq-gap", f"{node} applied seqs {[o.seq for o in log]}, high-water {hw}"
            )
        made = world.made_by(node)
        for outcome in log:
            op = made.get(outcome.seq)
            if op is None or op.op_id != outcome.op_id:
                raise Violation(
                    "seq-reuse",
                    f"{node} seq {outcome.seq} applied as {outcome.op_id}, "
                    f"made as {None if op is None else op.op_id}",
                )
            by_op[(node, outcome.seq)] = outcome
        hlcs = [from_wire(made[s].hlc) for s in sorted(made)]
        if any(b <= a for a, b in pairwise(hlcs)):
            raise Violation("hlc-order", f"{node}'s ops do not have increasing HLCs")
    counts: Counter[tuple[str, int, bool]] = Counter()
    for change in view.feed:
        is_conflict = parked_by(change)
        counts[(change.node_id, change.node_seq, is_conflict)] += 1
        found = by_op.get((change.node_id, change.node_seq))
        if found is None or found.op_id != change.op_id:
            raise Violation(
                "applied-twice",
                f"feed seq {change.seq} comes from {change.node_id}#{change.node_seq}, "
                "which has no such outcome",
            )
        allowed = ("conflict",) if is_conflict else ("applied", "merged")
        if found.status not in allowed:
            raise Violation(
                "applied-twice",
                f"feed seq {change.seq} by an op whose outcome is {found.status}",
            )
        _check_tenant(f"server {tenant}", tenant, nodes, change.record)
    for (node, seq, is_conflict), count in sorted(counts.items()):
        if count > 1:
            what = "conflict" if is_conflict else "record"
            raise Violation("applied-twice", f"{node}#{seq} has {count} {what} changes")
    for (node, seq), outcome in sorted(by_op.items()):
        if outcome.status == "conflict" and counts[(node, seq, True)] != 1:
            raise Violation("conflict-unaccounted", f"{node}#{seq} parked but not queued")
    applied = [
        world.made_by(node)[seq]
        for (node, seq), outcome in sorted(by_op.items())
        if outcome.status in ("applied", "merged")
    ]
    deltas = _stock_deltas(applied)
    _check_plugins(world, f"server {tenant}", view.records, terminal=False)
    for record in view.records:
        if record.collection == _STOCK and record.fields.get("count") != deltas[record.record_id]:
            raise Violation(
                "stock-count",
                f"server {record.record_id} count {record.fields.get('count')}, the applied "
                f"ops add up to {deltas[record.record_id]}",
            )


def _check_terminal(
    world: World, view: _TenantView, term: SimTerminal, *, mid_call: bool = False
) -> None:
    """``mid_call``: inside a client call, whose new ops the oracle has not been handed yet."""
    store = term.store.inner
    where = f"T{term.index}"
    meta = store.meta()
    node = term.node_id
    hw = view.high_waters.get(node, 0)
    if meta.acked_seq > hw:
        raise Violation(
            "acked-lost", f"{where} was acknowledged up to {meta.acked_seq}, server {hw}"
        )
    if meta.cursor > len(view.feed):
        raise Violation("confirmed-state", f"{where} cursor {meta.cursor} beyond the feed")
    outbox = {op.seq: op for op in store.outbox(0)}
    log = view.logs[node]
    for seq in range(1, meta.next_seq):
        made = term.made.get(seq)
        if made is None:
            if mid_call:
                continue
            raise Violation("op-lost", f"{where} used seq {seq} but never returned its op")
        in_box = outbox.get(seq)
        if in_box is not None:
            if in_box.op_id != made.op_id:
                raise Violation("seq-reuse", f"{where} outbox seq {seq} is another op")
        elif seq > hw or log[seq - 1].op_id != made.op_id:
            raise Violation(
                "op-lost", f"{where} op seq {seq} is neither in its outbox nor on the server"
            )
    for seq in sorted(term.made):
        if seq >= meta.next_seq:
            raise Violation("op-lost", f"{where} forgot seq {seq} (next seq {meta.next_seq})")
    confirmed = _fold(view.feed[: meta.cursor])
    server_rows = store.server_records()
    if server_rows != [confirmed[k] for k in sorted(confirmed)]:
        raise Violation(
            "confirmed-state", f"{where} confirmed state differs from the feed up to {meta.cursor}"
        )
    reflected = {c.node_seq for c in view.feed[: meta.cursor] if c.node_id == node and c.op_id}
    pending = [op for seq, op in sorted(outbox.items()) if seq not in reflected]
    deltas = _stock_deltas(pending)
    nodes = set(view.nodes)
    local = store.records()
    _check_plugins(world, where, local, terminal=True)
    _check_plugins(world, f"{where} confirmed", server_rows, terminal=True)
    for record in local:
        _check_tenant(where, view.tenant, nodes, record)
        if record.collection == _STOCK:
            base = confirmed.get(record.key)
            want = (0 if base is None else base.fields.get("count") or 0) + deltas[record.record_id]
            if record.fields.get("count") != want:
                raise Violation(
                    "stock-count",
                    f"{where} shows {record.record_id} at {record.fields.get('count')}: "
                    f"confirmed {None if base is None else base.fields.get('count')} plus "
                    f"pending deltas {deltas[record.record_id]} is {want}",
                )


def quiet(world: World) -> bool:
    store = world.replica.store
    for link in world.network.links:
        if link.inflight:
            return False
    for term in world.terminals:
        meta = term.store.inner.meta()
        if term.client.pending() or meta.cursor != store.cursor(term.tenant):
            return False
    return True


def check_end(world: World) -> None:
    if not quiet(world):
        raise Violation("not-quiet", "replicas still have work after healing and syncing")
    for tenant in world.tenants:
        view = _TenantView(world, tenant)
        _check_plugins(world, f"server {tenant} at the end", view.records, terminal=False)
        for term in world.terminals:
            if term.tenant != tenant:
                continue
            store = term.store.inner
            if store.records() != view.records or store.server_records() != view.records:
                diff = _first_difference(store.records(), view.records)
                raise Violation("diverged", f"T{term.index} differs from the server: {diff}")
            known = {o.seq: o for o in store.outcomes()}
            for outcome in view.logs[term.node_id]:
                if outcome.status == "applied":
                    continue
                if outcome.seq not in term.link.answered:
                    # Acknowledged through the feed only (the answer was lost and the
                    # terminal pulled before pushing again): the client cannot know it.
                    world.unseen_outcomes += 1
                    continue
                mine = known.get(outcome.seq)
                status = None if mine is None else (mine.original or mine.status)
                if status != outcome.status or mine is None or mine.reason != outcome.reason:
                    raise Violation(
                        "outcome-unknown",
                        f"T{term.index} op {outcome.seq} was {outcome.status} "
                        f"({outcome.reason}) on the server; the terminal knows "
                        f"{None if mine is None else (status, mine.reason)}",
                    )
        for node in view.nodes:
            made = world.made_by(node)
            if len(view.logs[node]) != len(made):
                raise Violation(
                    "outcome-missing",
                    f"{node} made {len(made)} ops, the server has outcomes for "
                    f"{len(view.logs[node])}",
                )
        queue = {r.record_id: r for r in view.records if r.collection == CONFLICTS}
        parked = [o for n in view.nodes for o in view.logs[n] if o.status == "conflict"]
        if len(parked) != len(queue):
            raise Violation(
                "conflict-unaccounted", f"{len(parked)} ops parked, {len(queue)} in the queue"
            )
        for outcome in parked:
            record = queue.get(outcome.conflict_id or "")
            if record is None or record.fields.get("state") not in ("open", "resolved"):
                raise Violation("conflict-unaccounted", f"conflict {outcome.conflict_id} missing")


def _first_difference(mine: list[Record], theirs: list[Record]) -> str:
    a = {r.key: r for r in mine}
    b = {r.key: r for r in theirs}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: terminal {a.get(key)} server {b.get(key)}"
    return "order differs"
