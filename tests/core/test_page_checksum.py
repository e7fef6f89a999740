"""The server's shortcut for page checksums equals the full RFC 8785 canonicaliser."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fynlo_sync.canonical import checksum
from fynlo_sync.ops import Change, Record, Stamp
from fynlo_sync.protocol import page_checksum
from fynlo_sync.testing import json_values

keys = st.text(max_size=6).filter(lambda k: not k.startswith("_"))
field_maps = st.dictionaries(keys, json_values(max_leaves=8), max_size=5)


def change(seq: int, fields: dict[str, Any]) -> Change:
    stamp = Stamp(hlc="018bcfe568000001", node_id="n1", seq=seq)
    record = Record("orders", f"r{seq}", fields, {k: stamp for k in fields})
    return Change(seq=seq, op_id=f"op{seq}", node_id="n1", node_seq=seq, record=record)


@given(st.lists(field_maps, max_size=4))
def test_shortcut_equals_the_canonical_checksum(maps: list[dict[str, Any]]) -> None:
    changes = [change(i + 1, fields) for i, fields in enumerate(maps)]
    assert page_checksum(changes) == checksum(msgspec.to_builtins(changes))


def test_keys_outside_the_bmp_take_the_full_path() -> None:
    # U+1F600 sorts before U+FB01 in UTF-16 but after it by code point.
    changes = [change(1, {"\ufb01": 1, "\U0001f600": 2})]
    assert page_checksum(changes) == checksum(msgspec.to_builtins(changes))
