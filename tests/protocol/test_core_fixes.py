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
