"""Core bugs found while writing docs/protocol.md, each pinned by a test."""

from __future__ import annotations

import random

import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.errors import InvalidValueError
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, MemoryTerminalStore
from fynlo_sync.transport import LoopbackTransport
from tests.protocol.generate_vectors import NOTES, T0
from tests.protocol.vectors import collection_to_json, registry_for


def test_a_lone_surrogate_is_refused_at_the_local_write_not_at_push() -> None:
    # Before the fix, check_value let "\ud800" through: the write was stored, and every
    # later push failed computing the checksum, so the outbox was stuck for good.
    registry = registry_for([collection_to_json(NOTES)])
    server = ServerReplica(MemoryServerStore(), registry)
    terminal = Terminal(
        MemoryTerminalStore("n1"),
        registry,
        LoopbackTransport(server, "t1", "n1"),
        wall=lambda: T0,
        rng=random.Random(1),
    )
    with pytest.raises(InvalidValueError) as info:
        terminal.put("notes", "r1", {"title": "bad \ud800"})
    assert info.value.extra["reason"] == "surrogate"
    assert terminal.pending() == []
    terminal.put("notes", "r2", {"title": "fine"})
    report = terminal.sync()
    assert (report.pushed, report.pending) == (1, 0)


def test_set_union_compares_json_values_not_python_equality() -> None:
    # Python's == says True == 1; JSON (and Swift, and JavaScript) say otherwise.
    from conflict.strategies import _union

    assert _union([1, 0], [True, False, 1]) == [1, 0, True, False]


def _page_body(extra_member: bool, tamper: bool = False) -> bytes:
    import json

    from fynlo_sync.canonical import checksum

    change = {
        "seq": 1,
        "op_id": "o1",
        "node_id": "n1",
        "node_seq": 1,
        "record": {
            "collection": "notes",
            "record_id": "r1",
            "fields": {"title": "t"},
            "stamps": {"title": ["018bcfe568010000", "n1", 1]},
            "deleted": False,
            "deleted_stamp": None,
            "version": 1,
        },
    }
    if extra_member:  # an optional member a newer server added (protocol.md section 17)
        change["origin"] = "till"
        change["record"]["shard"] = 7  # type: ignore[index]
    body = {"since": 0, "cursor": 1, "more": False, "changes": [change]}
    body["checksum"] = checksum(body["changes"])
    if tamper:
        change["record"]["fields"]["title"] = "tampered"  # type: ignore[index]
    return json.dumps(body).encode()


def test_a_page_from_a_newer_server_verifies_over_the_changes_as_received() -> None:
    from fynlo_sync.errors import ChecksumMismatchError
    from fynlo_sync.protocol import PullPage, decode, decode_page, verify_page

    # Before: decoding first dropped the unknown members, and the checksum recomputed over
    # the decoded page no longer matched, so an old terminal could never pull again.
    with pytest.raises(ChecksumMismatchError):
        verify_page(decode(_page_body(extra_member=True), PullPage))
    page = decode_page(_page_body(extra_member=True))  # verified over the bytes received
    assert page.changes[0].record.fields == {"title": "t"}
    assert (
        decode_page(_page_body(extra_member=False)).checksum
        == decode(_page_body(extra_member=False), PullPage).checksum
    )
    with pytest.raises(ChecksumMismatchError):
        decode_page(_page_body(extra_member=True, tamper=True))
