"""Our implementation against every vector in docs/protocol/vectors (the files, as read)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from fynlo_sync.canonical import canonical_bytes, canonical_text, check_value, checksum
from fynlo_sync.domains.orders.states import COMMANDS, STATES, next_state
from fynlo_sync.engine import apply_op
from fynlo_sync.errors import ClockError, InvalidValueError
from fynlo_sync.hlc import HybridClock, from_wire, to_wire
from fynlo_sync.ops import Op, Record, ops_checksum
from tests.protocol.vectors import (
    DOCUMENT_FILES,
    VECTOR_DIR,
    VECTOR_FILES,
    load,
    normative,
    registry_for,
    run_push_vector,
)


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


CANONICAL = load("canonical.json")
CHECKSUM = load("checksum.json")
HLC = load("hlc.json")
CONFLICTS = load("conflicts.json")
ORDERS = load("orders_state.json")
PUSH = load("push.json")
#: compact.json has push.json's shape (section 23.8): the same runner, the same checks.
PUSH_LIKE = PUSH + load("compact.json")


def test_every_vector_file_is_present_and_named_uniquely() -> None:
    on_disk = sorted(p.name for p in VECTOR_DIR.glob("*.json"))
    assert on_disk == sorted(VECTOR_FILES + DOCUMENT_FILES)
    for name in VECTOR_FILES:
        names = _ids(load(name))
        assert names, name
        assert len(names) == len(set(names)), f"{name} repeats a vector name"


@pytest.mark.parametrize("vector", CANONICAL, ids=_ids(CANONICAL))
def test_canonical(vector: dict[str, Any]) -> None:
    if "error" in vector:
        with pytest.raises(InvalidValueError) as info:
            canonical_bytes(vector["input"])
        assert info.value.extra["reason"] == vector["error"]
        with pytest.raises(InvalidValueError):
            checksum(vector["input"])
        with pytest.raises(InvalidValueError):  # a local write refuses it too
            check_value(vector["input"])
    else:
        assert canonical_text(vector["input"]) == vector["canonical"]
        assert canonical_bytes(vector["input"]) == vector["canonical"].encode("utf-8")


@pytest.mark.parametrize("vector", CHECKSUM, ids=_ids(CHECKSUM))
def test_checksum(vector: dict[str, Any]) -> None:
    ops = msgspec.convert(vector["ops"], list[Op])
    assert canonical_text(vector["ops"]) == vector["canonical"]
    assert hashlib.md5(vector["canonical"].encode("utf-8")).hexdigest() == vector["md5"]
    assert checksum(vector["ops"]) == vector["md5"]
    assert ops_checksum(ops) == vector["md5"]


@pytest.mark.parametrize("vector", HLC, ids=_ids(HLC))
def test_hlc(vector: dict[str, Any]) -> None:
    wall = [0]
    clock = HybridClock(
        lambda: wall[0], last=from_wire(vector["last"]), max_drift_ms=vector["max_drift_ms"]
    )
    for step in vector["steps"]:
        if step["op"] == "decode":
            if "error" in step:
                with pytest.raises(ClockError):
                    from_wire(step["wire"])
            else:
                value = from_wire(step["wire"])
                assert (value >> 16, value & 0xFFFF) == (
                    step["expect_ms"],
                    step["expect_counter"],
                )
                assert to_wire(value) == step["wire"]
            continue
        wall[0] = step["wall"]
        before = clock.last
        call: Callable[[], int] = (
            clock.now
            if step["op"] == "now"
            else lambda s=step: clock.update(from_wire(s["remote"]))  # type: ignore[misc]
        )
        if "error" in step:
            with pytest.raises(ClockError):
                call()
            assert clock.last == before, "a refused step must not move the clock"
        else:
            got = call()
            assert to_wire(got) == step["expect"]
            assert (got >> 16, got & 0xFFFF) == (step["expect_ms"], step["expect_counter"])
            assert clock.last == got


def _record(data: dict[str, Any] | None) -> Record | None:
    return None if data is None else msgspec.convert(data, Record)


def _applied(vector: dict[str, Any], registry: Any) -> dict[str, Any]:
    result = apply_op(
        _record(vector["server" if "server" in vector else "record"]),
        msgspec.convert(vector["op"], Op),
        registry,
        vector["seq"],
    )
    out: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "record": None if result.record is None else msgspec.to_builtins(result.record),
    }
    if "conflict" in vector["expect"]:
        out["conflict"] = None if result.conflict is None else msgspec.to_builtins(result.conflict)
    return out


@pytest.mark.parametrize("vector", CONFLICTS, ids=_ids(CONFLICTS))
def test_conflicts(vector: dict[str, Any]) -> None:
    assert vector["collection"]["strategy"] == vector["strategy"]
    registry = registry_for([vector["collection"]])
    assert _applied(vector, registry) == vector["expect"]


def test_conflict_vectors_cover_every_builtin_strategy() -> None:
    strategies = {v["strategy"] for v in CONFLICTS}
    assert strategies == {"server_wins", "client_wins", "smart_merge", "manual"}
    statuses = {v["expect"]["status"] for v in CONFLICTS}
    assert statuses == {"applied", "merged", "conflict", "rejected"}


@pytest.mark.parametrize("vector", ORDERS, ids=_ids(ORDERS))
def test_orders_state(vector: dict[str, Any]) -> None:
    assert next_state(vector["state"], vector["command"]) == vector["next"]
    assert vector["allowed"] == (vector["next"] is not None)
    registry = registry_for(orders=True)
    assert _applied(vector, registry) == vector["expect"]


def test_orders_vectors_cover_every_state_command_pair() -> None:
    pairs = {(v["state"], v["command"]) for v in ORDERS}
    assert pairs == {(s, c) for s in (None, *STATES) for c in COMMANDS}


@pytest.mark.parametrize("vector", PUSH_LIKE, ids=_ids(PUSH_LIKE))
def test_push(vector: dict[str, Any]) -> None:
    expected = [step["expect"] for step in vector["steps"]]
    assert [normative(r) for r in run_push_vector(vector)] == expected


def test_vector_files_are_what_the_generator_writes() -> None:
    from tests.protocol.generate_vectors import build_all

    for name, text in build_all().items():
        on_disk = (VECTOR_DIR / name).read_text(encoding="utf-8")
        assert on_disk == text, (
            f"{name} differs from the generator: run "
            "`.venv/bin/python -m tests.protocol.generate_vectors` and review the diff"
        )


@pytest.mark.parametrize("vector", PUSH_LIKE, ids=_ids(PUSH_LIKE))
def test_push_vectors_checksums_match_their_contents(vector: dict[str, Any]) -> None:
    """Every page checksum in push.json is the MD5 of the page as written in the file, and
    every accepted batch's checksum is the MD5 of its ops (a port re-checks exactly this)."""
    for step in vector["steps"]:
        answer = step["expect"]
        if "pull" in step and answer["status"] == 200:
            assert checksum(answer["body"]["changes"]) == answer["body"]["checksum"]
        if "body" in step.get("push", {}) and answer["status"] == 200:
            assert checksum(step["push"]["body"]["ops"]) == step["push"]["body"]["checksum"]
