from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given

from fynlo_sync.canonical import MAX_SAFE_INTEGER, canonical_bytes, canonical_text, checksum
from fynlo_sync.errors import InvalidValueError
from fynlo_sync.testing import json_values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ([1, [2, {"z": None, "y": True}], False], '[1,[2,{"y":true,"z":null}],false]'),
        ('tab\there\nnew"q\\', '"tab\\there\\nnew\\"q\\\\"'),
        ("\u0001\u001f\u007f", '"\\u0001\\u001f\u007f"'),
        ("\b\f\r", '"\\b\\f\\r"'),
        ("café 🍔 €", '"café 🍔 €"'),
        ("\u2028", '"\u2028"'),
        (-MAX_SAFE_INTEGER, str(-MAX_SAFE_INTEGER)),
        (0, "0"),
        ({}, "{}"),
        ([], "[]"),
    ],
)
def test_known_canonical_forms(value: Any, text: str) -> None:
    assert canonical_text(value) == text


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is D83D DE00 in UTF-16, which sorts before U+FB01 (FB01) though its code point
    # is larger: RFC 8785 section 3.2.3.
    value = {"\ufb01": 1, "\U0001f600": 2, "a": 3, "é": 4}
    assert canonical_text(value) == '{"a":3,"é":4,"\U0001f600":2,"\ufb01":1}'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1.5, "float"),
        (1.0, "float"),
        ({"price": 2.5}, "float"),
        (float("nan"), "float"),
        (float("inf"), "float"),
        (MAX_SAFE_INTEGER + 1, "integer-range"),
        (-(MAX_SAFE_INTEGER + 1), "integer-range"),
        ({1: "x"}, None),
        ({"x": {1, 2}}, "type"),
    ],
)
def test_refused_values_name_the_problem(value: Any, reason: str | None) -> None:
    with pytest.raises(InvalidValueError) as info:
        canonical_bytes(value)
    if reason is not None:
        assert info.value.extra["reason"] == reason


def test_a_float_error_names_its_path() -> None:
    with pytest.raises(InvalidValueError, match=r"\$\.lines\[1\]\.price"):
        canonical_bytes({"lines": [{"price": 1}, {"price": 0.5}]})


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(InvalidValueError) as info:
        canonical_bytes("\ud800")
    assert info.value.extra["reason"] == "surrogate"


def test_checksum_is_md5_of_the_canonical_bytes() -> None:
    ops = [{"seq": 1, "a": "é"}]
    assert checksum(ops) == hashlib.md5('[{"a":"é","seq":1}]'.encode()).hexdigest()


@given(json_values())
def test_canonical_text_round_trips_through_json(value: Any) -> None:
    text = canonical_text(value)
    assert json.loads(text) == value
    assert canonical_text(json.loads(text)) == text  # idempotent
