"""Every bad-input rule on the push path: a typed error naming the problem, nothing
half-applied, the terminal's outbox intact."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from fynlo_sync.canonical import checksum
from fynlo_sync.errors import (
    BatchTooLargeError,
    ChecksumMismatchError,
    FynloError,
    InvalidValueError,
    MalformedError,
    NodeMismatchError,
    PeerError,
    ProtocolVersionError,
    SeqGapError,
)
from fynlo_sync.ops import Batch
from fynlo_sync.plugins import Registry
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore
from tests.core.conftest import TerminalFactory, mkop


def good_body(first: int = 1, count: int = 2) -> dict[str, Any]:
    ops = [
        mkop(s, "put" if s == 1 else "patch", fields={"likes": 1})
        for s in range(first, first + count)
    ]
    return msgspec.to_builtins(Batch.of("n1", ops))  # type: ignore[no-any-return]


def resign(body: dict[str, Any]) -> dict[str, Any]:
    body["checksum"] = checksum(body["ops"])
    return body


def send(replica: ServerReplica, body: dict[str, Any] | bytes) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return replica.push("t1", raw, node_id="n1")


Mutation = Callable[[dict[str, Any]], dict[str, Any] | bytes]


def tamper(body: dict[str, Any]) -> dict[str, Any]:
    body["ops"][1]["fields"]["likes"] = 1000
    return body


def version(body: dict[str, Any]) -> dict[str, Any]:
    body["protocol"] = 99
    return body


def add_float(body: dict[str, Any]) -> bytes:
    body["ops"][0]["fields"]["likes"] = 1.5
    # the client signs what it sends; a float cannot even be canonicalised
    return json.dumps(body).encode()


def float_as_exponent(body: dict[str, Any]) -> bytes:
    text = json.dumps(resign(body)).replace('"likes": 1}', '"likes": 1e0}', 1)
    return text.encode()


def drop_seq(body: dict[str, Any]) -> dict[str, Any]:
    del body["ops"][1]["seq"]
    return resign(body)


def bad_hlc(body: dict[str, Any]) -> dict[str, Any]:
    body["ops"][0]["hlc"] = 123
    return resign(body)


def hlc_with_newline(body: dict[str, Any]) -> dict[str, Any]:
    # "$" in a pattern also matches before a final newline: the length must hold too
    body["ops"][0]["hlc"] += "\n"
    return resign(body)


def not_json(body: dict[str, Any]) -> bytes:
    return b'{"protocol": 1, "ops": ['


def other_node(body: dict[str, Any]) -> dict[str, Any]:
    body["ops"][1]["node_id"] = "n2"
    return resign(body)


def no_checksum(body: dict[str, Any]) -> dict[str, Any]:
    del body["checksum"]
    return body


def huge_int(body: dict[str, Any]) -> dict[str, Any]:
    body["ops"][0]["fields"]["likes"] = 2**60
    body["checksum"] = "0" * 32
    return body


CASES: list[tuple[str, Mutation, type[FynloError], str, int]] = [
    ("wrong checksum", tamper, ChecksumMismatchError, "does not match", 422),
    ("unknown protocol version", version, ProtocolVersionError, "protocol version 99", 400),
    ("float", add_float, InvalidValueError, r"float at \$\.ops\[0\]\.fields\.likes", 422),
    ("float written 1e0", float_as_exponent, InvalidValueError, "float", 422),
    ("integer beyond 2**53-1", huge_int, InvalidValueError, "outside", 422),
    ("missing field", drop_seq, MalformedError, "missing required field `seq`", 422),
    ("wrong type", bad_hlc, MalformedError, "hlc", 422),
    ("hlc with a final newline", hlc_with_newline, MalformedError, "hlc", 422),
    ("not JSON", not_json, MalformedError, "not valid JSON", 422),
    ("no checksum", no_checksum, MalformedError, "checksum", 422),
    ("op of another node", other_node, NodeMismatchError, "names node 'n2'", 403),
]


@pytest.mark.parametrize(
    ("name", "mutate", "error", "match", "status"), CASES, ids=[c[0] for c in CASES]
)
def test_refused_batches_change_nothing(
    registry: Registry,
    name: str,
    mutate: Mutation,
    error: type[FynloError],
    match: str,
    status: int,
) -> None:
    replica = ServerReplica(MemoryServerStore(), registry)
    send(replica, good_body(1, 1))
    before = (
        replica.store.records("t1"),
        replica.store.cursor("t1"),
        replica.store.high_waters("t1"),
    )
    body = good_body(2, 2)
    body["ops"] = [
        good_body(1, 1)["ops"][0] | {"seq": 2, "op_id": "x2", "kind": "patch"},
        body["ops"][1],
    ]
    body = resign(body)
    with pytest.raises(error, match=match) as info:
        send(replica, mutate(body))
    assert isinstance(info.value, PeerError)
    problem = info.value.problem()
    assert problem["status"] == status == info.value.status
    assert problem["type"].startswith("https://fynlo.dev/problems/")
    after = (
        replica.store.records("t1"),
        replica.store.cursor("t1"),
        replica.store.high_waters("t1"),
    )
    assert after == before


def test_seq_gap_names_the_expected_seq(registry: Registry) -> None:
    replica = ServerReplica(MemoryServerStore(), registry)
    send(replica, good_body(1, 2))
    with pytest.raises(SeqGapError) as info:
        send(replica, good_body(5, 1))
    assert info.value.extra["expected"] == 3
    assert info.value.problem()["expected"] == 3
    assert replica.store.high_water("t1", "n1") == 2


def test_oversized_batch_is_refused_before_hashing(registry: Registry) -> None:
    replica = ServerReplica(MemoryServerStore(), registry, max_batch=3)
    body = good_body(1, 4)
    body["checksum"] = "not even checked"
    with pytest.raises(BatchTooLargeError, match="limit is 3") as info:
        send(replica, body)
    assert info.value.status == 413
    assert replica.store.cursor("t1") == 0


def test_unknown_collection_and_illegal_transition_are_kept_as_rejections(
    registry: Registry,
) -> None:
    replica = ServerReplica(MemoryServerStore(), registry)
    ops = [
        mkop(1, "put", collection="tables", fields={"name": "4"}),
        mkop(2, "command", collection="orders", record="o1", name="close", args={}),
        mkop(3, "command", collection="orders", record="o1", name="open", args={"currency": "GBP"}),
    ]
    result = send(replica, msgspec.to_builtins(Batch.of("n1", ops)))
    assert [(o.status, o.reason) for o in result.outcomes] == [
        ("rejected", "unknown-collection"),
        ("rejected", "illegal-transition"),
        ("applied", None),
    ]
    assert "tables" in result.outcomes[0].detail
    assert replica.store.high_water("t1", "n1") == 3  # never blocks later ops


def test_a_refused_push_leaves_the_outbox_intact(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1")
    t.put("notes", "n", {"likes": 1})
    t.patch("notes", "n", {"likes": 2})
    t.sync()
    t.patch("notes", "n", {"likes": 3})
    outbox = t.store.outbox()
    server.max_batch = 0  # the server now refuses every batch as too large
    with pytest.raises(BatchTooLargeError):
        t.sync()
    assert t.store.outbox() == outbox
    assert [op.seq for op in t.pending()] == [3]
    server.max_batch = 1000
    t.sync()
    assert t.pending() == []
