"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and the MD5 batch checksum.

This is the part every port must match byte for byte. The accepted values are I-JSON
without floats:

* objects with string keys, arrays, strings, ``true``, ``false``, ``null``;
* integers in ``-(2**53-1) .. 2**53-1``;
* no floats at all (money is integer minor units), no NaN or infinities, no lone
  surrogates in strings.

Serialisation follows RFC 8785: object members sorted by the UTF-16 code units of their
keys, no whitespace, strings escaped exactly as ECMAScript's ``JSON.stringify`` does
(``\\"``, ``\\\\``, ``\\b``, ``\\f``, ``\\n``, ``\\r``, ``\\t``, other controls below U+0020
as ``\\u00xx`` in lowercase hex, everything else literal), output encoded as UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

from fynlo_sync.errors import InvalidValueError

__all__ = [
    "MAX_SAFE_INTEGER",
    "canonical_bytes",
    "canonical_text",
    "check_value",
    "checksum",
    "member_path",
]

MAX_SAFE_INTEGER = 2**53 - 1
_LOW, _HIGH = -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER

_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)
# Over a normalised value (keys already in RFC 8785 order, every value checked), msgspec
# writes the same bytes as ``_encoder`` + UTF-8 (same escapes, lowercase \u00xx, everything
# else literal), ~5x faster; tests/benchmarks/test_canonical_bytes.py checks every code point.
_bytes_encoder = msgspec.json.Encoder()


def member_path(path: str, key: str) -> str:
    """``path`` + the member ``key`` as JSONPath (RFC 9535): ``.key`` for an ASCII name that
    is an identifier, else ``['...']`` with ``'``, ``\\`` and control characters escaped
    (``$['a b']``, ``$['']``, ``$['a.b']``)."""
    if key.isascii() and key.isidentifier():
        return f"{path}.{key}"
    quoted = "".join("\\" + c if c in "'\\" else f"\\u{ord(c):04x}" if c < " " else c for c in key)
    return f"{path}['{quoted}']"


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _normalise(value: Any, path: str) -> Any:
    """Validate ``value`` and return it with object keys in RFC 8785 order."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise InvalidValueError(
            f"integer at {path} is outside -(2**53-1)..2**53-1", path=path, reason="integer-range"
        )
    if kind is dict:
        keys = list(value)
        astral = False
        for key in keys:
            if type(key) is not str:
                raise InvalidValueError(f"object key at {path} is not a string", path=path)
            if not astral and not key.isascii() and max(key) > "\uffff":
                astral = True
        if astral:
            keys.sort(key=_utf16_key)
        else:
            keys.sort()  # for BMP-only keys code-point order equals UTF-16 order
        out: dict[str, Any] = {}
        for key in keys:
            item = value[key]
            # Plain scalars inline: no call and no path string on the hot path.
            t = type(item)
            if t is str or item is None or t is bool or (t is int and _LOW <= item <= _HIGH):
                out[key] = item
            else:
                out[key] = _normalise(item, member_path(path, key))
        return out
    if kind is list or kind is tuple:
        items: list[Any] = []
        for i, item in enumerate(value):
            t = type(item)
            if t is str or item is None or t is bool or (t is int and _LOW <= item <= _HIGH):
                items.append(item)
            else:
                items.append(_normalise(item, f"{path}[{i}]"))
        return items
    if kind is float:
        raise InvalidValueError(
            f"float at {path}: floats are not allowed; use integers (money in minor units)",
            path=path,
            reason="float",
        )
    raise InvalidValueError(
        f"value of type {kind.__name__} at {path} is not JSON", path=path, reason="type"
    )


def check_value(value: Any, path: str = "$") -> None:
    """Raise :class:`InvalidValueError` unless ``value`` is float-free I-JSON.

    Lone surrogates are refused here too: a local write holding one could never be
    checksummed, so it would block its terminal's outbox for good."""
    try:
        _bytes_encoder.encode(_normalise(value, path))
    except UnicodeEncodeError as exc:
        raise InvalidValueError(
            f"string at {path} contains a lone surrogate, which is not valid I-JSON",
            path=path,
            reason="surrogate",
        ) from exc


def canonical_text(value: Any) -> str:
    """The RFC 8785 canonical JSON text of ``value``."""
    return _encoder.encode(_normalise(value, "$"))


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 canonical form of ``value`` as UTF-8 bytes."""
    try:
        return _bytes_encoder.encode(_normalise(value, "$"))
    except UnicodeEncodeError as exc:
        raise InvalidValueError(
            "string contains a lone surrogate, which is not valid I-JSON", reason="surrogate"
        ) from exc


def checksum(value: Any) -> str:
    """Lowercase hex MD5 of the canonical bytes of ``value`` (a batch's ``ops`` array)."""
    return hashlib.md5(canonical_bytes(value), usedforsecurity=False).hexdigest()
