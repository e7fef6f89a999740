"""A push body whose ``ops`` bytes are already canonical is verified from those bytes (no
canonicaliser pass); any other body takes the full path, with the same answers."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest

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
