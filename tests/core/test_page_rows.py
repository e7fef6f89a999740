"""``decode_page_rows`` (the terminal's pull: records kept as the bytes received) accepts
exactly the pages ``decode_page`` accepts, with the same records, and raises the same
errors for the rest."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fynlo_sync.errors import FynloError
from fynlo_sync.ops import Change, Record, Stamp
from fynlo_sync.protocol import (
    canonical_change,
    decode_page,
    decode_page_rows,
    encode,
    page_rows,
    wire_page,
)
from fynlo_sync.testing import json_values

_record = msgspec.json.Decoder(Record)


def _change(seq: int, fields: dict[str, Any], node: str = "n1", **extra: Any) -> Change:
    stamps = {k: Stamp(f"018bcfe5680000{seq:02x}", node, seq) for k in fields}
    record = Record("orders", f"r{seq % 3}", fields, stamps, **extra)
    return Change(seq=seq, op_id=f"op{seq}", node_id=node, node_seq=seq, record=record)


def _body(changes: list[Change], **page: Any) -> bytes:
    rows = [(c.seq, canonical_change(c)) for c in changes]
    return encode(wire_page(0, rows, len(rows), **page))


def _same(body: bytes, node: str = "n1") -> None:
    try:
        expected = page_rows(decode_page(body), node)
    except FynloError as exc:
        with pytest.raises(type(exc)) as got:
            decode_page_rows(body, node)
        assert str(got.value) == str(exc)
        return
    rows = decode_page_rows(body, node)
    decoded = [(c, r, _record.decode(b)) for c, r, b in rows.rows]
    assert decoded == [(c, r, _record.decode(b)) for c, r, b in expected.rows]
    assert (rows.since, rows.cursor, rows.more, rows.compacted, rows.high_water) == (
        expected.since,
        expected.cursor,
        expected.more,
        expected.compacted,
        expected.high_water,
    )
    assert (rows.mine, rows.newest) == (expected.mine, expected.newest)


keys = st.text(max_size=6).filter(lambda k: not k.startswith("_"))


@given(st.lists(st.dictionaries(keys, json_values(max_leaves=6), max_size=4), max_size=5))
def test_a_servers_page_gives_the_same_records(maps: list[dict[str, Any]]) -> None:
    changes = [_change(i + 1, f, node="n1" if i % 2 else "n2") for i, f in enumerate(maps)]
    _same(_body(changes, compacted=True, high_water=3))
    _same(_body(changes), node="n2")


def test_the_records_are_the_bytes_received() -> None:
    changes = [_change(1, {"a": 1}), _change(2, {"b": "x"}, deleted=True)]
    rows = decode_page_rows(_body(changes), "n1")
    assert [b for _, _, b in rows.rows] == [
        canonical_change(c).split(b'"record":', 1)[1].rsplit(b',"seq"', 1)[0] for c in changes
    ]
    assert rows.mine == 2 and rows.newest == "018bcfe568000002"


_GOOD = _body([_change(1, {"a": 1}), _change(2, {"b": 2})])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"018bcfe568000001"', b'"018BCFE568000001"'),  # a stamp's HLC: uppercase
        (b'"018bcfe568000001"', b'"018bcfe56800000g"'),  # not hex
        (b'"018bcfe568000001"', b'"018bcfe56800001"'),  # too short
        (b'"018bcfe568000001"', b'"018bcfe568000001\\n"'),  # a newline after it
        (b'"deleted_stamp":null', b'"deleted_stamp":["zz","n1",1]'),
        (b'"deleted_stamp":null', b'"deleted_stamp":["018bcfe56800000G","n1",1]'),
        (b'"version":0', b'"version":-1'),
        (b'"version":0', b'"version":1.5'),
        (b'"deleted":false', b'"deleted":0'),
        (b'"fields":{"a":1}', b'"fields":[1]'),
        (b'"record_id":"r1"', b'"record_id":""'),
        (b'"node_seq":1', b'"node_seq":0'),
        (b'"collection":"orders",', b""),
    ],
)
def test_a_bad_record_is_refused_as_decode_page_refuses_it(old: bytes, new: bytes) -> None:
    changes = _GOOD.split(b'"changes":', 1)[1].rsplit(b',"checksum"', 1)[0]
    bad = changes.replace(old, new, 1)
    assert bad != changes
    body = msgspec.json.encode(
        {
            "since": 0,
            "cursor": 2,
            "more": False,
            "changes": msgspec.Raw(bad),
            "checksum": hashlib.md5(bad).hexdigest(),
        }
    )
    _same(body)


def test_a_tampered_or_re_encoded_page_is_checked_as_decode_page_checks_it() -> None:
    _same(_GOOD.replace(b'"a":1', b'"a":2', 1))  # checksum mismatch
    _same(msgspec.json.format(_GOOD, indent=2))  # re-encoded: the canonical path
    _same(b"[]")
    _same(b"not json")
