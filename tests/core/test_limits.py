"""The limits of ``docs/protocol.md`` section 22, pure: the depth scan over raw text, the
terminal refusing locally what the server would refuse, and the client splitting a batch
the server finds too large."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from fynlo_sync.engine import apply_op
from fynlo_sync.errors import BatchTooLargeError, LimitExceededError, RejectedOpError
from fynlo_sync.limits import DEFAULT_LIMITS, Limits, check_depth, check_value_limits
from fynlo_sync.plugins import Registry
from fynlo_sync.replica import ServerReplica
from tests.core.conftest import TerminalFactory, mkop


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("[]", 1),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', 1),
        ('[["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]]', 2),
        ('[[["\\\\"], ["]]]]]]]]"]]]', 3),
        ("[" + "[" * 40 + "]" * 40 + "," + "[" * 50 + "]" * 50 + "]", 51),
        ("[" + '{"k": [' * 31 + "]}" * 31 + "]", 63),
    ],
)
def test_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    check_depth(text.encode(), depth)
    if depth > 1:
        with pytest.raises(LimitExceededError) as caught:
            check_depth(text.encode(), depth - 1)
        assert caught.value.extra == {"limit": "depth", "max": depth - 1}
    assert json.loads(text) is not None  # every case is valid JSON


def test_depth_of_a_hostile_body_is_refused_without_recursion() -> None:
    with pytest.raises(LimitExceededError):
        check_depth(b"[" * 1_000_000, 64)
    check_depth(b"[" * 64, 64)  # not JSON, but not too deep: the parser refuses it


def test_limits_hold_together() -> None:
    with pytest.raises(ValueError, match="4 x max_record_bytes"):
        Limits(max_record_bytes=2 << 20)
    with pytest.raises(ValueError, match="max_string_bytes"):
        Limits(max_string_bytes=1 << 17)
    assert DEFAULT_LIMITS.max_depth == 64


def test_value_limits_name_the_path() -> None:
    small = Limits(
        max_string_bytes=8,
        max_field_bytes=32,
        max_record_bytes=128,
        max_push_growth_bytes=512,
        max_page_bytes=512,
    )
    check_value_limits({"a": "12345678", "b": [1, 2, 3]}, "$.fields", small)
    with pytest.raises(LimitExceededError) as caught:
        check_value_limits({"a": {"k": "ééééé"}}, "$.fields", small)  # 10 UTF-8 bytes
    assert caught.value.extra["path"] == "$.fields.a.k"
    assert caught.value.extra["limit"] == "string_bytes"
    with pytest.raises(LimitExceededError) as caught:
        check_value_limits({"a": [1234] * 8}, "$.fields", small)
    assert caught.value.extra["limit"] == "field_bytes"
    deep: list[object] = []
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(LimitExceededError) as caught:
        check_value_limits({"a": deep}, "$.fields", small)
    assert caught.value.extra["limit"] == "depth"


def test_terminal_refuses_locally_what_the_server_would_refuse(
    make_terminal: TerminalFactory,
) -> None:
    t = make_terminal("n1")
    deep: list[object] = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(LimitExceededError):
        t.put("notes", "a", {"tags": deep})
    with pytest.raises(LimitExceededError):
        t.put("notes", "a", {"title": "x" * (DEFAULT_LIMITS.max_string_bytes + 1)})
    t.put("notes", "a", {"title": "x" * DEFAULT_LIMITS.max_string_bytes})
    assert [op.seq for op in t.pending()] == [1]  # nothing refused took a seq


def test_record_too_large_is_a_rejection(registry: Registry) -> None:
    small = Limits(
        max_string_bytes=8,
        max_field_bytes=32,
        max_record_bytes=36,
        max_push_growth_bytes=160,
        max_page_bytes=160,
    )
    first = apply_op(None, mkop(1, "put", fields={"title": "12345678"}), registry, 1, limits=small)
    assert first.status == "applied" and first.record is not None
    grown = apply_op(
        first.record, mkop(2, "patch", fields={"body": "12345678"}), registry, 2, limits=small
    )
    assert (grown.status, grown.reason) == ("rejected", "record-too-large")
    assert isinstance(grown.error, RejectedOpError)
    gone = apply_op(first.record, mkop(3, "delete"), registry, 3, limits=small)
    assert gone.status == "applied"  # a delete never grows a record


def test_client_halves_a_batch_the_server_finds_too_large(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    t = make_terminal("n1", batch_size=100)
    t.put("notes", "a", {"title": "x" * 20_000})
    for i in range(60):
        t.patch("notes", "a", {"likes": i})
    server.limits = Limits(max_push_growth_bytes=1_048_576)  # ~50 changes of this record
    with pytest.raises(BatchTooLargeError):
        server.push("t1", _batch(t))
    assert t.sync() is not None
    assert t.pending() == []
    assert server.store.high_water("t1", "n1") == 61


def _batch(t: object) -> bytes:
    from fynlo_sync.ops import Batch
    from fynlo_sync.protocol import encode_batch

    return encode_batch(Batch.of("n1", t.pending()))  # type: ignore[attr-defined]


def test_the_server_bounds_incoming_hlcs(registry: Registry) -> None:
    from fynlo_sync.errors import ClockAheadError
    from fynlo_sync.hlc import pack, to_wire
    from fynlo_sync.ops import Batch, Op
    from fynlo_sync.protocol import encode_batch
    from fynlo_sync.store import MemoryServerStore
    from fynlo_sync.testing import ManualClock

    wall = ManualClock(start_ms=1_800_000_000_000)
    replica = ServerReplica(MemoryServerStore(), registry, now_ms=wall, max_skew_ms=300_000)

    def op(seq: int, ms: int) -> Op:
        made = mkop(seq, "put", record=f"r{seq}", fields={"title": "t"})
        return msgspec.structs.replace(made, hlc=to_wire(pack(ms, 0xFFFF)))

    edge = Batch.of("n1", [op(1, 1_800_000_300_000)])  # exactly the allowance: accepted
    assert replica.push("t1", encode_batch(edge), node_id="n1").high_water == 1
    ahead = Batch.of("n1", [op(2, 1_800_000_000_000), op(3, 1_800_000_300_001)])
    with pytest.raises(ClockAheadError) as caught:
        replica.push("t1", encode_batch(ahead), node_id="n1")
    assert caught.value.extra == {"index": 1, "max_skew_ms": 300_000}
    assert replica.store.high_water("t1", "n1") == 1  # nothing of the batch applied
    wall.advance(1)  # real time caught up: the same batch is accepted as it is
    assert replica.push("t1", encode_batch(ahead), node_id="n1").high_water == 3


def _reference_depth(text: bytes) -> int:
    """The depth by the plain definition: strings' contents dropped by a tokenising
    regex, then the running count of openings minus closings."""
    import re
    from itertools import accumulate

    stripped = re.sub(rb'"[^"\\]*(?:\\.[^"\\]*)*"', b"", text)
    steps = [1 if b in b"[{" else -1 for b in stripped if b in b"[]{}"]
    return max(accumulate(steps), default=0)


def _random_json(rng: random.Random, depth: int = 0) -> object:
    pick = rng.random()
    if depth > 8 or pick < 0.3:
        return "".join(rng.choice('[]{}"\\a\n') for _ in range(rng.randint(0, 6)))
    if pick < 0.65:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_random_json(rng, 9): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_depth_scan_agrees_with_the_plain_definition_on_json_with_hostile_strings() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        text = json.dumps(_random_json(rng), ensure_ascii=rng.random() < 0.5).encode()
        want = _reference_depth(text)
        check_depth(text, max(want, 8))
        if want > 8:
            with pytest.raises(LimitExceededError) as caught:
                check_depth(text, 8)
            assert f"nests {want} levels" in caught.value.detail
    for deep in (65, 70, 200):  # balanced but deeper than the limit: the exact depth named
        with pytest.raises(LimitExceededError) as caught:
            check_depth(b"[" * deep + b"]" * deep, 64)
        assert f"nests {deep} levels" in caught.value.detail
