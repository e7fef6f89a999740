"""canonical_bytes writes normalised values with msgspec (the benchmarks' speed fix); it
must give exactly the bytes of the JSON text form, for every code point and shape."""

from __future__ import annotations

from typing import Any

import pytest

from fynlo_sync.canonical import canonical_bytes, canonical_text
from fynlo_sync.errors import InvalidValueError


def test_every_code_point_encodes_as_the_text_form() -> None:
    points = [*range(0xD800), *range(0xE000, 0x10000), 0x10000, 0x1F600, 0x10FFFF]
    different = [
        hex(cp)
        for cp in points
        if canonical_bytes({chr(cp): chr(cp) + "x"})
        != canonical_text({chr(cp): chr(cp) + "x"}).encode("utf-8")
    ]
    assert different == []


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, True, None, -(2**53 - 1), "x"], "a": {}, "\U0001f600": 1, "\ufb01": 2},
        [[], {}, "", 0, False, {"z": {"y": {"x": [1, 2, {"w": None}]}}}],
        ("tuple", 2**53 - 1),
        'line\nbreak\t"quoted" \\ \x00\x1f\x7f',
    ],
)
def test_shapes_encode_as_the_text_form(value: Any) -> None:
    assert canonical_bytes(value) == canonical_text(value).encode("utf-8")


@pytest.mark.parametrize(
    "value", ["\ud800", {"\udfff": 1}, {"a": 0.5}, [2**53], {1: "x"}, {"a": {"b": [set()]}}]
)
def test_refused_values_are_still_refused(value: Any) -> None:
    with pytest.raises(InvalidValueError):
        canonical_bytes(value)
