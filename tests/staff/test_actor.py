"""Every op's actor: checksummed, optional, and checked against the employee's permissions
on the server and already on the terminal."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from msgspec import UNSET

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.staff import StaffPlugin
from fynlo_sync.errors import ChecksumMismatchError, RejectedOpError
from fynlo_sync.ops import Batch, Op, ops_checksum
from fynlo_sync.protocol import decode_batch
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from tests.core.conftest import NotesPlugin
from tests.staff.conftest import TerminalFactory, as_server


def op(seq: int, actor: str | None, name: str = "add", record: str = "e9", **args: object) -> Op:
    return Op(
        op_id=f"till-{seq}",
        node_id="till",
        seq=seq,
        hlc=f"{0x018BCFE5680A0000 + seq:016x}",
        base_seq=0,
        collection="employees",
        record_id=record,
        kind="command",
        name=name,
        args={"name": "New", "role": "staff", **args},
        actor=UNSET if actor is None else actor,
    )


def test_an_op_without_actor_has_the_bytes_an_older_terminal_sends() -> None:
    wire = msgspec.json.encode(op(1, None))
    assert b"actor" not in wire
    assert (
        decode_batch(msgspec.json.encode(Batch.of("till", [op(1, None)]))).ops[0].actor_id is None
    )


def test_the_actor_is_covered_by_the_checksum() -> None:
    batch = Batch.of("till", [op(1, "m1")])
    assert ops_checksum([op(1, "m1")]) != ops_checksum([op(1, None)])
    body = msgspec.json.encode(batch).replace(b'"actor":"m1"', b'"actor":"o1"')
    with pytest.raises(ChecksumMismatchError):
        decode_batch(body)


@pytest.mark.parametrize(
    ("actor", "status", "detail"),
    [
        ("m1", "applied", None),
        ("s1", "rejected", "employee.manage"),
        ("ghost", "rejected", "not an employee"),
        (None, "rejected", "employee.manage"),
    ],
)
def test_the_server_checks_the_actor_holds_the_permission(
    staffed: ServerReplica, actor: str | None, status: str, detail: str | None
) -> None:
    result = staffed.push(
        "t1", msgspec.json.encode(Batch.of("till", [op(1, actor)])), node_id="till"
    )
    outcome = result.outcomes[0]
    assert outcome.status == status
    if detail is not None:
        assert outcome.reason == "forbidden" and detail in (outcome.detail or "")
    # The op log keeps the actor.
    logged = staffed.store.changes("t1", 0, 100)
    if status == "applied":
        assert logged[-1].record.fields["added_by"] == actor


def test_a_deactivated_employee_can_no_longer_act(staffed: ServerReplica) -> None:
    assert as_server(staffed, "employees", "m1", "deactivate", {}) == "applied"
    result = staffed.push(
        "t1", msgspec.json.encode(Batch.of("till", [op(1, "m1")])), node_id="till"
    )
    assert result.outcomes[0].reason == "forbidden"
    assert "not active" in (result.outcomes[0].detail or "")


def test_the_terminal_refuses_at_write_time_and_queues_nothing(
    staffed: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("till")
    t.sync()
    t.actor = "s1"
    with pytest.raises(RejectedOpError) as info:
        t.command("employees", "e9", "add", {"name": "New", "role": "staff"})
    assert info.value.extra["reason"] == "forbidden"
    assert info.value.extra["permission"] == "employee.manage"
    assert t.pending() == []
    t.actor = "m1"
    t.command("employees", "e9", "add", {"name": "New", "role": "staff"})
    t.sync()
    assert t.pending() == [] and t.outcomes() == []  # outcomes() lists only the notable
    record = t.get("employees", "e9")
    assert record is not None and record.fields["added_by"] == "m1"


def test_resolving_a_conflict_on_a_terminal_needs_conflict_resolve(tmp_path: Path) -> None:
    """Protocol 13 and 20.1: a terminal's resolution (the chosen version, then ``resolve``)
    by an actor without ``conflict.resolve`` is refused at write time, and neither op of it
    is queued; a supervisor's goes through."""
    registry = conflict.registry([OrdersPlugin(), StaffPlugin(), NotesPlugin()])
    server = ServerReplica(MemoryServerStore(), registry, now_ms=ManualClock())
    for employee, role in (("s1", "staff"), ("v1", "supervisor")):
        assert as_server(
            server, "employees", employee, "add", {"name": employee, "role": role}
        ) == ("applied")

    def terminal(node: str) -> Terminal:
        store = SqliteTerminalStore(tmp_path / f"{node}.db", node)
        return Terminal(store, registry, LoopbackTransport(server, "t1", node), wall=ManualClock())

    a, b = terminal("a"), terminal("b")
    a.sync(), b.sync()
    a.put("notes_manual", "n1", {"title": "a"})
    b.put("notes_manual", "n1", {"title": "b"})
    a.sync(), b.sync(), a.sync()
    parked = b.records("conflicts")
    assert len(parked) == 1
    b.actor = "s1"
    before = b.pending()
    with pytest.raises(RejectedOpError) as info:
        b.resolve_conflict(parked[0].record_id, "incoming")
    assert (info.value.extra["reason"], info.value.extra["permission"]) == (
        "forbidden",
        "conflict.resolve",
    )
    assert b.pending() == before
    b.actor = "v1"
    b.resolve_conflict(parked[0].record_id, "incoming")
    b.sync()
    resolved = b.get("conflicts", parked[0].record_id)
    assert resolved is not None and resolved.fields["state"] == "resolved"
