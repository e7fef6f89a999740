"""Size and shape limits (``docs/protocol.md`` section 22), pure.

One value, :class:`Limits`, says how deep a JSON message may nest, how long one string and
one field value may be, how large one record may grow, how many bytes of feed one push may
add and how many bytes one pull page may carry. The server reads them from its settings;
terminals use :data:`DEFAULT_LIMITS` so that they refuse locally what the server would
refuse (a value that no conforming terminal can queue cannot wedge its outbox).

:func:`check_depth` runs over the raw bytes *before* a JSON parser sees them: the parsers
(msgspec, Python's ``json``, ``JSON.parse``, Swift's ``JSONSerialization``) recurse, and a
value nested ~1,000 deep is accepted by one and crashes another, so the limit sits far
below any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import msgspec

from fynlo_sync.canonical import member_path
from fynlo_sync.errors import LimitExceededError

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "check_depth",
    "FIELDS_LEVEL",
    "check_value_limits",
    "encoded_size",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of section 22, with their reference defaults."""

    #: Deepest nesting of arrays and objects in one JSON message (the message itself is 1).
    max_depth: int = 64
    #: Longest string (a value or a member name) inside an op, in UTF-8 bytes.
    max_string_bytes: int = 32 * 1024
    #: Largest value of one field (or one command's ``args``), canonical JSON bytes.
    max_field_bytes: int = 64 * 1024
    #: Largest record ``fields`` after an op, JSON bytes; a larger result is rejected.
    max_record_bytes: int = 256 * 1024
    #: Most bytes of records one push may add to the feed (the sum over its changes).
    max_push_growth_bytes: int = 16 * 1024 * 1024
    #: Most bytes of changes in one pull page (a page always holds at least one change).
    max_page_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 8 <= self.max_depth <= 512:
            raise ValueError("max_depth must be in 8..512")
        if self.max_string_bytes > self.max_field_bytes:
            raise ValueError("max_string_bytes may not exceed max_field_bytes")
        if self.max_field_bytes > self.max_record_bytes:
            raise ValueError("max_field_bytes may not exceed max_record_bytes")
        # One op adds at most its record and a parked conflict (the op and the record):
        # a single op must always fit, or a terminal could never push it.
        if self.max_push_growth_bytes < 4 * self.max_record_bytes:
            raise ValueError("max_push_growth_bytes must be at least 4 x max_record_bytes")
        if self.max_page_bytes < 4 * self.max_record_bytes:
            raise ValueError("max_page_bytes must be at least 4 x max_record_bytes")


DEFAULT_LIMITS = Limits()

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_DELTA = [0] * 256
for _open in b"[{":
    _DELTA[_open] = 1
for _close in b"]}":
    _DELTA[_close] = -1

_encoder = msgspec.json.Encoder()


def _outside_strings(body: bytes) -> bytes:
    """``body`` without its JSON strings' contents, at C speed: escaped backslashes and
    escaped quotes removed first (pairing backslashes from the left, as a parser does),
    every quote left then opens or closes a string, so the even pieces between quotes are
    what lies outside strings. Where the text is malformed this may differ from the
    parser's reading only after the first error, and a prefix's depth is counted exactly,
    so the deepest level a parser could reach is never underestimated."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(body.split(b'"')[::2])


def _deepest(brackets: bytes, max_depth: int) -> int:
    """The deepest nesting of ``brackets`` (only ``[]{}``, which count alike). Balanced,
    in at most ``max_depth`` rounds of C-speed work: each round removes every innermost
    pair (adjacent, once the kinds are one), exactly one level. Otherwise (unbalanced
    text, or deeper than the limit) the running count, in Python."""
    level = brackets.translate(_ONE_KIND)
    rounds = 0
    while level and rounds <= max_depth:
        inner = level.replace(b"[]", b"")
        if len(inner) == len(level):
            break
        level, rounds = inner, rounds + 1
    if not level:
        return rounds
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def check_depth(body: bytes, max_depth: int) -> None:
    """Raise :class:`LimitExceededError` (``limit: "depth"``) if the JSON text ``body``
    nests arrays and objects deeper than ``max_depth``. Malformed text is left to the
    parser; only brackets outside strings count."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return  # cannot be deeper than it has openings (the common, small case)
    brackets = _outside_strings(body).translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return
    deepest = _deepest(brackets, max_depth)
    if deepest > max_depth:
        raise LimitExceededError(
            f"the JSON nests {deepest} levels deep; the limit is {max_depth}",
            limit="depth",
            max=max_depth,
        )


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what the feed and the wire carry)."""
    return len(_encoder.encode(value))


def _strings(value: Any, path: str, max_bytes: int) -> None:
    kind = type(value)
    if kind is str:
        if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
            raise LimitExceededError(
                f"the string at {path} is longer than {max_bytes} UTF-8 bytes",
                limit="string_bytes",
                max=max_bytes,
                path=path,
            )
    elif kind is dict:
        for key, item in value.items():
            _strings(key, path, max_bytes)
            _strings(item, member_path(path, key), max_bytes)
    elif kind is list:
        for i, item in enumerate(value):
            _strings(item, f"{path}[{i}]", max_bytes)


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests deeper than ``max_depth`` (iterative: never recurses)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > max_depth:
                return True
            children = item.values() if kind is dict else item
            stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False


#: Levels above an op's ``fields`` (or ``args``) in a batch: body, ``ops``, the op.
FIELDS_LEVEL = 4


def check_value_limits(
    values: Any, path: str, limits: Limits = DEFAULT_LIMITS, *, depth: bool = True
) -> None:
    """Check a write's ``fields`` (or a command's ``args``): its nesting (as it will sit in
    a batch, :data:`FIELDS_LEVEL`), every string, and every field's value, within the
    limits. A terminal runs this before anything recursive sees the value."""
    if type(values) is not dict:
        return
    if depth and _too_deep(values, limits.max_depth - FIELDS_LEVEL + 1):
        raise LimitExceededError(
            f"the value at {path} nests too deeply for a batch; the limit is "
            f"{limits.max_depth} levels",
            limit="depth",
            max=limits.max_depth,
        )
    for name in sorted(values):
        value = values[name]
        where = member_path(path, name)
        _strings(name, where, limits.max_string_bytes)
        try:
            size = encoded_size(value)
        except UnicodeEncodeError:
            return  # a lone surrogate: check_value refuses it, with its own reason
        if size > limits.max_field_bytes:
            raise LimitExceededError(
                f"the value at {where} is {size} bytes; the limit is {limits.max_field_bytes}",
                limit="field_bytes",
                max=limits.max_field_bytes,
                path=where,
            )
        if size > limits.max_string_bytes:
            _strings(value, where, limits.max_string_bytes)
