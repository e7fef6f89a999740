"""A push body whose ``ops`` bytes are already canonical is verified from those bytes (no
canonicaliser pass); any other body takes the full path, with the same answers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from fynlo_sync import protocol
from fynlo_sync.canonical import checksum
from fynlo_sync.errors import ChecksumMismatchError, InvalidValueError
from fynlo_sync.ops import Batch, Op
from fynlo_sync.protocol import _canonical_md5, decode_batch, encode_batch


def _op(seq: int, fields: dict[str, object]) -> Op:
    return Op(
        op_id=f"o{seq}",
        node_id="n1",
        seq=seq,
        hlc="018bcfe568010000",
        base_seq=0,
        collection="notes",
        record_id="r1",
        kind="put",
        fields=fields,
    )


BATCH = Batch.of("n1", [_op(1, {"title": "café ☕", "likes": 3}), _op(2, {"tags": ["x"]})])


def test_the_terminal_sends_canonical_ops_and_the_server_reads_their_md5() -> None:
    body = encode_batch(BATCH)
    raw = json.loads(body)
    assert _canonical_md5(body, raw["ops"]) == BATCH.checksum
    assert decode_batch(body) == BATCH


@pytest.mark.parametrize(
    "ops",
    [
        [{"b": 1, "a": 2}],  # keys out of order
        [{"s": "\U0001f600"}],  # outside the BMP: UTF-16 order decides
        [{"n": 1234567890123456}],  # a long number: the full path checks its range
    ],
)
def test_other_bytes_take_the_full_path(ops: list[object]) -> None:
    body = json.dumps({"ops": ops}, ensure_ascii=False).encode()
    assert _canonical_md5(body, json.loads(body)["ops"]) is None


def test_reencoded_bodies_still_verify_and_wrong_sums_are_still_refused() -> None:
    pretty = msgspec.json.format(encode_batch(BATCH), indent=2)
    assert decode_batch(pretty) == BATCH  # not canonical bytes: canonicalised, same sum
    raw = json.loads(encode_batch(BATCH))
    backwards = [dict(reversed(op.items())) for op in raw["ops"]]  # keys not sorted
    sent = msgspec.json.encode(backwards)
    wrong = {**raw, "ops": backwards, "checksum": hashlib.md5(sent).hexdigest()}
    with pytest.raises(ChecksumMismatchError) as info:
        decode_batch(msgspec.json.encode(wrong))
    assert info.value.extra["expected"] == checksum(raw["ops"])


def test_floats_and_unsafe_integers_are_refused_with_their_path() -> None:
    raw = json.loads(encode_batch(BATCH))
    raw["ops"][0]["fields"]["likes"] = 4.5
    with pytest.raises(InvalidValueError) as info:
        decode_batch(json.dumps(raw).encode())
    assert "$.ops[0]" in info.value.detail
    raw["ops"][0]["fields"]["likes"] = 2**53
    with pytest.raises(InvalidValueError):
        decode_batch(json.dumps(raw).encode())


def _bodies() -> list[bytes]:
    """Bodies of every shape the fast path must either decode as the full path does or
    leave to it: canonical, re-encoded, floats, big numbers, long strings, other versions,
    too many ops, wrong sums, an absent ``actor`` written as null, unknown members."""
    good = json.loads(encode_batch(BATCH))
    changes: list[Callable[[Any], None]] = [
        lambda b: b["ops"][0]["fields"].update(likes=1.5),
        lambda b: b["ops"][0]["fields"].update(likes=2**53),
        lambda b: b["ops"][0]["fields"].update(title="x" * 40_000),
        lambda b: b["ops"][0]["fields"].update(blob={"k": "y" * 70_000}),
        lambda b: b.update(protocol=2),
        lambda b: b.update(checksum="0" * 32),
        lambda b: b["ops"][0].update(actor=None),
        lambda b: b["ops"][0].update(extra=1),
        lambda b: b["ops"][0].update(seq=0),
        lambda b: b["ops"].extend([b["ops"][1]] * 30),
        lambda b: b.update(  # a body over max_string_bytes of short strings and scalars
            ops=[dict(b["ops"][0], seq=n, fields={"title": "z" * 2000}) for n in range(1, 22)]
        ),
        # Nesting: at the depth limit (64: body, ops, op, fields, then 60 levels), one past
        # it, and under a member the batch does not have (skipped by a decoder, still
        # counted); an integer out of range deep inside a field; a non-hex HLC.
        lambda b: b["ops"][0]["fields"].update(deep=_nested(60)),
        lambda b: b["ops"][0]["fields"].update(deep=_nested(61)),
        lambda b: b["ops"][1]["fields"].update(tags=[{"n": [1, None, True, "s", {}]}]),
        lambda b: b.update(extra=_nested(70)),
        lambda b: b["ops"][1]["fields"].update(tags=[[-(2**53)]]),
        lambda b: b["ops"][1].update(hlc="018bcfe56801000g"),
    ]
    out = [encode_batch(BATCH), msgspec.json.format(encode_batch(BATCH), indent=1)]
    for change in changes:
        body = json.loads(json.dumps(good))
        change(body)
        if body["checksum"] != "0" * 32:  # the MD5 of the ops' sorted bytes
            sent = msgspec.json.encode(body["ops"], order="sorted")
            body["checksum"] = hashlib.md5(sent).hexdigest()
        out.append(msgspec.json.encode(body, order="sorted"))
    return out


def _nested(levels: int) -> object:
    value: object = 1
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


#: How many bodies :func:`_bodies` makes.
BODIES = 19


def test_every_body_is_compared() -> None:
    assert len(_bodies()) == BODIES


def _outcome(body: bytes, max_ops: int) -> object:
    try:
        return decode_batch(body, max_ops=max_ops)
    except Exception as exc:  # the answer compared: the same error, the same words
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("index", range(BODIES))
def test_the_struct_fast_path_answers_as_the_full_path(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _bodies()[index]
    fast = _outcome(body, max_ops=30)
    monkeypatch.setattr(protocol, "_fast_batch", lambda *args: None)
    assert _outcome(body, max_ops=30) == fast


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "café ☕", "likes": 3, "tags": ["x", None, True], "z": {"b": 1, "a": "\u0007"}},
        {"emoji": "🍔 burger", "\U0001d4b3": 1},  # outside the BMP: the full canonicaliser decides
        {"big": 2**53 - 1, "small": -(2**53 - 1)},  # 16 digits: the full path too
        {"control": '\n\t"\\\u001f\u2028'},
    ],
)
def test_the_terminals_outbox_checksum_is_the_canonical_one(fields: dict[str, object]) -> None:
    ops = [_op(1, fields), _op(2, {"n": 0}), _op(3, fields)]
    assert protocol.outbox_checksum(ops) == Batch.of("n1", ops).checksum


def test_an_outbox_checksum_still_refuses_an_integer_out_of_range() -> None:
    with pytest.raises(InvalidValueError):
        protocol.outbox_checksum([_op(1, {"big": 2**53})])
