"""Generate ``docs/protocol/vectors/*.json`` from our implementation, checking it as we go.

Run ``.venv/bin/python -m tests.protocol.generate_vectors`` to rewrite the files;
``test_vectors.py`` fails when the files and this generator disagree.

Where the answer is obvious (canonical text, MD5 of short texts, HLC arithmetic, which
side a strategy keeps) the expected value is written here by hand and the generator
refuses to run if the implementation disagrees with it. The rest (whole records, push
responses) is produced by the implementation and checked by the hand assertions in
``_check_*`` below and by the JavaScript port.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import msgspec

import conflict
from fynlo_sync.canonical import canonical_text, checksum
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.orders.states import COMMANDS, STATES, next_state
from fynlo_sync.engine import apply_op
from fynlo_sync.errors import PROBLEM_BASE, ClockError, InvalidValueError
from fynlo_sync.hlc import HybridClock, from_wire, pack, to_wire
from fynlo_sync.ops import Batch, Op, Record, Stamp, ops_checksum
from fynlo_sync.plugins import Collection, Field, Registry
from fynlo_sync.schema import domains_document
from tests.protocol.actors_vectors import actors_vectors
from tests.protocol.ledger_vectors import ledger_vectors
from tests.protocol.payments_vectors import (
    drawers_vectors,
    fees_vectors,
    payments_delete_vectors,
    payments_state_vectors,
)
from tests.protocol.providers_vectors import session_capture_vectors, session_refund_vectors
from tests.protocol.staff_vectors import fraud_vectors, overtime_vectors, timeclock_vectors
from tests.protocol.vectors import (
    VECTOR_DIR,
    RawJSON,
    collection_to_json,
    dumps,
    normative,
    registry_for,
)

__all__ = ["T0", "build_all", "hlc_of", "main"]

#: The epoch of every vector: 2023-11-14T22:13:20Z in milliseconds.
T0 = 1_700_000_000_000


def hlc_of(offset_ms: int, counter: int = 0) -> str:
    return to_wire(pack(T0 + offset_ms, counter))


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


# --------------------------------------------------------------------------- canonical

#: (name, input, expected canonical text) -- every expected text is written by hand.
CANONICAL: list[tuple[str, Any, str]] = [
    ("empty object", {}, "{}"),
    ("empty array", [], "[]"),
    ("literals", [True, False, None], "[true,false,null]"),
    ("top-level string", "hello", '"hello"'),
    ("top-level integer", 42, "42"),
    ("members sorted, no whitespace", {"b": 1, "a": 2}, '{"a":2,"b":1}'),
    (
        "nested objects are sorted too",
        {"c": {"z": 0, "y": 1}, "b": [{"k": 1, "j": 2}], "a": None},
        '{"a":null,"b":[{"j":2,"k":1}],"c":{"y":1,"z":0}}',
    ),
    (
        "keys: empty first, upper case before lower case, a prefix before its extensions",
        {"ab": 3, "a": 1, "B": 2, "": 4, "A": 5},
        '{"":4,"A":5,"B":2,"a":1,"ab":3}',
    ),
    ("keys that look like numbers sort as text", {"10": 1, "9": 2, "1": 3}, '{"1":3,"10":1,"9":2}'),
    (
        "RFC 8785 section 3.2.3 key order (string values instead of numbers)",
        {
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\U0001f600": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        },
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
    (
        "a supplementary-plane key (UTF-16 D83D DE00) sorts before U+FF5A",
        {"\uff5a": 1, "\U0001f600": 2, "\u00e9": 3, "z": 4},
        '{"z":4,"\u00e9":3,"\U0001f600":2,"\uff5a":1}',
    ),
    (
        "keys are compared as code units, never normalised: e+U+0301 and U+00E9 are distinct",
        {"\u00e9": 2, "e\u0301": 1},
        '{"e\u0301":1,"\u00e9":2}',
    ),
    ("quote and backslash are escaped, slash is not", 'say "hi" \\ a/b', '"say \\"hi\\" \\\\ a/b"'),
    ("the five short escapes", "\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
    (
        "other controls below U+0020 are \\u00xx with lowercase hex",
        "\u0000\u0001\u000b\u000e\u001b\u001f",
        '"\\u0000\\u0001\\u000b\\u000e\\u001b\\u001f"',
    ),
    ("DEL and C1 controls are written as they are", "\u007f\u0080\u009f", '"\u007f\u0080\u009f"'),
    ("U+2028 and U+2029 are written as they are", "\u2028\u2029", '"\u2028\u2029"'),
    (
        "non-ASCII text is written as UTF-8, not escaped",
        "caf\u00e9 \u20ac 5",
        '"caf\u00e9 \u20ac 5"',
    ),
    ("an emoji (supplementary plane) is written as UTF-8", "\U0001f354", '"\U0001f354"'),
    (
        "an emoji ZWJ sequence and a flag stay as they are",
        "\U0001f469\u200d\U0001f373 \U0001f1eb\U0001f1f7",
        '"\U0001f469\u200d\U0001f373 \U0001f1eb\U0001f1f7"',
    ),
    ("BOM and noncharacters are ordinary characters", "\ufeff\uffff", '"\ufeff\uffff"'),
    (
        "a decomposed accent is not normalised",
        "Cre\u0300me bru\u0302le\u0301e",
        '"Cre\u0300me bru\u0302le\u0301e"',
    ),
    ("zero", 0, "0"),
    ("negative zero written as an integer is 0", RawJSON("-0"), "0"),
    ("the largest integer, 2^53-1", 9007199254740991, "9007199254740991"),
    ("the smallest integer, -(2^53-1)", -9007199254740991, "-9007199254740991"),
    ("integers in an array", [1, -1, 100, -250, 1000000], "[1,-1,100,-250,1000000]"),
    ("arrays keep their order", [3, 1, 2, "b", "a"], '[3,1,2,"b","a"]'),
    (
        "deeply nested arrays and objects",
        {"z": [{"b": [], "a": {}}], "a": [[[]]], "m": {"y": {"x": {"w": [None]}}}},
        '{"a":[[[]]],"m":{"y":{"x":{"w":[null]}}},"z":[{"a":{},"b":[]}]}',
    ),
    (
        "an op as a terminal sends it",
        {
            "op_id": "7c0f1e4a-5b6d-4e8f-9a0b-1c2d3e4f5a6b",
            "node_id": "till-1",
            "seq": 1,
            "hlc": "018bcfe568000000",
            "base_seq": 0,
            "collection": "orders",
            "record_id": "o-1",
            "kind": "command",
            "fields": None,
            "name": "add_line",
            "args": {"line_id": "l1", "item": "Caf\u00e9 cr\u00e8me", "qty": 2, "unit_price": 450},
        },
        '{"args":{"item":"Caf\u00e9 cr\u00e8me","line_id":"l1","qty":2,"unit_price":450},'
        '"base_seq":0,"collection":"orders","fields":null,"hlc":"018bcfe568000000",'
        '"kind":"command","name":"add_line","node_id":"till-1",'
        '"op_id":"7c0f1e4a-5b6d-4e8f-9a0b-1c2d3e4f5a6b","record_id":"o-1","seq":1}',
    ),
]

#: (name, input, refusal) -- each input must be refused; the refusal names why.
CANONICAL_REFUSED: list[tuple[str, Any, str]] = [
    ("a fraction", 1.5, "float"),
    ("a fraction that is a whole number", RawJSON("1.0"), "float"),
    ("zero written with a fraction", RawJSON("0.0"), "float"),
    ("negative zero written with a fraction", RawJSON("-0.0"), "float"),
    ("an exponent", RawJSON("1e2"), "float"),
    ("an upper-case exponent with a sign", RawJSON("5E+3"), "float"),
    ("a number too large for a double (non-finite)", RawJSON("1e400"), "float"),
    ("a negative number too large for a double (non-finite)", RawJSON("-1e400"), "float"),
    ("a float nested in an object", {"name": "Soup", "price": RawJSON("4.5")}, "float"),
    ("a float nested in an array", [1, 2, RawJSON("2.5")], "float"),
    ("2^53 is one past the largest integer", 9007199254740992, "integer-range"),
    ("-2^53 is one past the smallest integer", -9007199254740992, "integer-range"),
    ("2^64", 18446744073709551616, "integer-range"),
    ("a big integer nested in an object", {"total": 12345678901234567890}, "integer-range"),
    ("a lone high surrogate", "\ud800", "surrogate"),
    ("a lone low surrogate", "a\udc00b", "surrogate"),
    ("a surrogate pair in the wrong order", "\ude00\ud83d", "surrogate"),
    ("a lone surrogate in a key", {"\ud83d": 1}, "surrogate"),
]


def _parse_raw(value: Any) -> Any:
    """What a JSON parser makes of the vector's input (RawJSON numbers included)."""
    return json.loads(dumps(value))


def canonical_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, value, text in CANONICAL:
        actual = canonical_text(_parse_raw(value))
        if actual != text:
            raise AssertionError(f"canonical {name!r}: ours {actual!r}, by hand {text!r}")
        out.append({"name": name, "input": value, "canonical": text})
    for name, value, reason in CANONICAL_REFUSED:
        try:
            from fynlo_sync.canonical import canonical_bytes

            canonical_bytes(_parse_raw(value))
        except InvalidValueError as exc:
            if exc.extra.get("reason") != reason:
                raise AssertionError(
                    f"{name!r}: refused as {exc.extra}, expected {reason}"
                ) from exc
        else:
            raise AssertionError(f"{name!r} was not refused")
        out.append({"name": name, "input": value, "error": reason})
    return out


# ---------------------------------------------------------------------------- checksum

#: MD5 of the two bytes ``[]``, from RFC 1321 arithmetic everyone can redo with md5sum.
EMPTY_MD5 = "d751713988987e9331980363e24189ce"


def _op(
    seq: int,
    kind: str,
    *,
    node: str = "till-1",
    hlc: str | None = None,
    base: int = 0,
    collection: str = "notes",
    record: str = "r1",
    fields: dict[str, Any] | None = None,
    name: str | None = None,
    args: dict[str, Any] | None = None,
    op_id: str | None = None,
) -> Op:
    return Op(
        op_id=op_id or f"{node}-op-{seq}",
        node_id=node,
        seq=seq,
        hlc=hlc or hlc_of(seq),
        base_seq=base,
        collection=collection,
        record_id=record,
        kind=kind,  # type: ignore[arg-type]
        fields=fields,
        name=name,
        args=args,
    )


def checksum_vectors() -> list[dict[str, Any]]:
    batches: list[tuple[str, list[Op]]] = [
        ("an empty batch", []),
        ("one delete", [_op(1, "delete")]),
        ("one put", [_op(1, "put", fields={"title": "Soup", "price": 450})]),
        (
            "a command with non-ASCII arguments",
            [
                _op(
                    7,
                    "command",
                    collection="orders",
                    record="o-1",
                    base=12,
                    name="add_line",
                    args={
                        "line_id": "l1",
                        "item": "Cr\u00e8me br\u00fbl\u00e9e \U0001f36e",
                        "qty": 2,
                        "unit_price": 650,
                    },
                )
            ],
        ),
        (
            "three consecutive ops",
            [
                _op(3, "put", fields={"title": "Stew", "tags": ["hot", "new"], "likes": 0}),
                _op(4, "patch", fields={"likes": 1, "meta": {"z": None, "a": True}}),
                _op(5, "delete", base=9),
            ],
        ),
        (
            "escapes and controls inside field values",
            [_op(1, "put", fields={"body": 'line 1\nline 2\t"quoted" \\ \u0007'})],
        ),
        (
            "an op with its actor (section 20): the actor sorts first",
            [
                msgspec.structs.replace(
                    _op(
                        4,
                        "command",
                        collection="timecards",
                        record="e-7.2026-11-30",
                        name="approve_day",
                        args={"day": 2, "decision": "approve"},
                    ),
                    actor="e-1",
                )
            ],
        ),
    ]
    by_hand = {
        "an empty batch": "[]",
        "one delete": '[{"args":null,"base_seq":0,"collection":"notes","fields":null,'
        '"hlc":"018bcfe568010000","kind":"delete","name":null,"node_id":"till-1",'
        '"op_id":"till-1-op-1","record_id":"r1","seq":1}]',
        "an op with its actor (section 20): the actor sorts first": '[{"actor":"e-1",'
        '"args":{"day":2,"decision":"approve"},"base_seq":0,"collection":"timecards",'
        '"fields":null,"hlc":"018bcfe568040000","kind":"command","name":"approve_day",'
        '"node_id":"till-1","op_id":"till-1-op-4","record_id":"e-7.2026-11-30","seq":4}]',
    }
    out = []
    for name, ops in batches:
        text = canonical_text(_builtins(ops))
        if name in by_hand and text != by_hand[name]:
            raise AssertionError(f"checksum {name!r}: ours {text!r}, by hand {by_hand[name]!r}")
        md5 = hashlib.md5(text.encode("utf-8")).hexdigest()
        if md5 != ops_checksum(ops):
            raise AssertionError(f"checksum {name!r} disagrees with ops_checksum")
        out.append({"name": name, "ops": _builtins(ops), "canonical": text, "md5": md5})
    if out[0]["md5"] != EMPTY_MD5:
        raise AssertionError("md5 of [] is wrong")
    return out


# --------------------------------------------------------------------------------- hlc

DRIFT = 300_000
#: A step: ("now", wall_offset, expected) or ("update", wall_offset, remote, expected) or
#: ("decode", wire, expected); an expected of None means the step must fail (ClockError)
#: and leave the clock as it was. Offsets are milliseconds after T0; expected values are
#: (offset_ms, counter) pairs worked out by hand from the rules in docs/protocol.md.
Step = tuple[Any, ...]
HLC_SEQUENCES: list[tuple[str, tuple[int, int] | int, int | None, list[Step]]] = [
    (
        "local events in one millisecond count up, the next millisecond resets the counter",
        0,
        DRIFT,
        [("now", 0, (0, 0)), ("now", 0, (0, 1)), ("now", 0, (0, 2)), ("now", 1, (1, 0))],
    ),
    (
        "a wall clock that goes backwards never moves the clock backwards",
        0,
        DRIFT,
        [
            ("now", 0, (0, 0)),
            ("now", -1000, (0, 1)),
            ("now", -999, (0, 2)),
            ("now", 0, (0, 3)),
            ("now", 1, (1, 0)),
        ],
    ),
    (
        "counter overflow carries into the milliseconds, then the wall clock catches up",
        (0, 65534),
        DRIFT,
        [
            ("now", 0, (0, 65535)),
            ("now", 0, (1, 0)),
            ("now", 0, (1, 1)),
            ("now", 1, (1, 2)),
            ("now", 2, (2, 0)),
        ],
    ),
    (
        "a received timestamp ahead of us is adopted plus one",
        0,
        DRIFT,
        [
            ("now", 0, (0, 0)),
            ("update", 0, (100, 7), (100, 8)),
            ("now", 1, (100, 9)),
            ("now", 100, (100, 10)),
            ("now", 101, (101, 0)),
        ],
    ),
    (
        "a received timestamp behind us only advances the counter",
        (0, 5),
        DRIFT,
        [("update", 0, (-50, 3), (0, 6)), ("update", 0, (0, 6), (0, 7))],
    ),
    (
        "a received timestamp behind the wall clock is overtaken by it",
        0,
        DRIFT,
        [("update", 10, (5, 9), (10, 0))],
    ),
    (
        "a received timestamp with a full counter carries into the milliseconds",
        0,
        DRIFT,
        [("update", 0, (10, 65535), (11, 0)), ("now", 0, (11, 1))],
    ),
    (
        "a remote clock more than max_drift_ms ahead is refused and changes nothing",
        0,
        DRIFT,
        [
            ("now", 0, (0, 0)),
            ("update", 0, (DRIFT + 1, 0), None),
            ("now", 0, (0, 1)),
            ("update", 0, (DRIFT, 0), (DRIFT, 1)),
        ],
    ),
    (
        "without a drift bound any remote clock is adopted",
        0,
        None,
        [("update", 0, (86_400_000, 3), (86_400_000, 4))],
    ),
    (
        "a clock restored from storage ahead of the wall clock keeps counting from it",
        (1000, 3),
        DRIFT,
        [("now", 0, (1000, 4)), ("now", 999, (1000, 5)), ("now", 1000, (1000, 6))],
    ),
]

MAX_HLC_WIRE = "ffffffffffffffff"


def _wire(value: tuple[int, int]) -> str:
    return hlc_of(value[0], value[1])


class _Wall:
    """A settable wall clock for the generator."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def hlc_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, start, drift, steps in HLC_SEQUENCES:
        # A start of 0 is the zero HLC; a pair is (ms after T0, counter).
        last = to_wire(0) if start == 0 else _wire(start)  # type: ignore[arg-type]
        wall = _Wall()
        clock = HybridClock(wall, last=from_wire(last), max_drift_ms=drift)
        rows: list[dict[str, Any]] = []
        for step in steps:
            wall.ms = T0 + step[1]
            row: dict[str, Any] = {"op": step[0], "wall": wall.ms}
            expected = step[-1]
            try:
                if step[0] == "now":
                    got = clock.now()
                else:
                    row["remote"] = _wire(step[2])
                    got = clock.update(from_wire(row["remote"]))
            except ClockError:
                if expected is not None:
                    raise
                row["error"] = "clock"
                rows.append(row)
                continue
            if expected is None or to_wire(got) != _wire(expected):
                raise AssertionError(f"hlc {name!r} step {step}: got {to_wire(got)}")
            row["expect"] = to_wire(got)
            row["expect_ms"] = T0 + expected[0]
            row["expect_counter"] = expected[1]
            rows.append(row)
        out.append({"name": name, "max_drift_ms": drift, "last": last, "steps": rows})
    out.extend(_hlc_limits())
    return out


def _hlc_limits() -> list[dict[str, Any]]:
    top = (1 << 48) - 1
    # The last representable value: no event can follow it.
    clock = HybridClock(lambda: top, last=from_wire(MAX_HLC_WIRE), max_drift_ms=None)
    try:
        clock.now()
    except ClockError:
        pass
    else:
        raise AssertionError("the clock ran past 2**64-1")
    # A wall clock reading beyond 48 bits is refused.
    bad = HybridClock(lambda: 1 << 48, max_drift_ms=None)
    try:
        bad.now()
    except ClockError:
        pass
    else:
        raise AssertionError("a 49-bit wall clock was accepted")
    decoded = [
        ("0000000000000000", (0, 0)),
        ("018bcfe568000000", (T0, 0)),
        ("018bcfe56801ffff", (T0 + 1, 65535)),
        ("ffffffffffffffff", (top, 65535)),
        ("018BCFE568000000", None),
        ("18bcfe568000000", None),
        ("0018bcfe568000000", None),
        ("0x8bcfe568000000", None),
        (" 18bcfe568000000", None),
        ("018bcfe56800000g", None),
    ]
    steps: list[dict[str, Any]] = []
    for text, want in decoded:
        try:
            value = from_wire(text)
        except ClockError:
            if want is not None:
                raise
            steps.append({"op": "decode", "wire": text, "error": "clock"})
            continue
        if want is None or (value >> 16, value & 0xFFFF) != want:
            raise AssertionError(f"decode {text!r} gave {value}")
        steps.append(
            {"op": "decode", "wire": text, "expect_ms": want[0], "expect_counter": want[1]}
        )
    return [
        {
            "name": "the wire form is exactly 16 lowercase hex digits",
            "max_drift_ms": None,
            "last": "0000000000000000",
            "steps": steps,
        },
        {
            "name": "after the largest value 2^64-1 no event can be stamped",
            "max_drift_ms": None,
            "last": MAX_HLC_WIRE,
            "steps": [{"op": "now", "wall": top, "error": "clock"}],
        },
        {
            "name": "a wall clock reading that does not fit in 48 bits is refused",
            "max_drift_ms": None,
            "last": "0000000000000000",
            "steps": [{"op": "now", "wall": 1 << 48, "error": "clock"}],
        },
    ]


# --------------------------------------------------------------------------- conflicts

NOTE_STATES = ("draft", "review", "published")


def notes_collection(
    strategy: str,
    *,
    name: str | None = None,
    field_strategies: dict[str, str] | None = None,
    strict: bool = True,
    required_title: bool = False,
) -> Collection:
    """The schema of every conflict vector: one field of each kind."""
    return Collection(
        name=name or f"notes_{strategy}",
        fields={
            "title": Field("str", required=required_title),
            "body": Field("str"),
            "price": Field("money"),
            "likes": Field("int", kind="counter"),
            "tags": Field("list", kind="set"),
            "status": Field("str", kind="state"),
            "meta": Field("object", kind="map"),
            "locked": Field("str", command_only=True),
        },
        strategy=strategy,
        field_strategies=field_strategies or {},
        states=NOTE_STATES,
        strict=strict,
    )


A = "node-a"  # wrote the server's state
B = "node-b"  # sends the incoming op
#: The server state every conflict vector starts from, written by node-a at feed seq 5
#: (HLC T0+10ms); `price` is older (seq 2); `body` was last written by node-b itself.
STAMP_A = Stamp(hlc=hlc_of(10), node_id=A, seq=5)
STAMP_OLD = Stamp(hlc=hlc_of(1), node_id=A, seq=2)
STAMP_B = Stamp(hlc=hlc_of(8), node_id=B, seq=4)
SERVER_SEQ = 6  # the feed seq the vector's write gets


def server_row(collection: str, *, deleted: bool = False, **changes: Any) -> Record:
    fields: dict[str, Any] = {
        "title": "Soup",
        "body": "hot",
        "price": 450,
        "likes": 2,
        "tags": ["hot"],
        "status": "review",
        "meta": {"a": 1, "b": 2},
    }
    stamps = {name: STAMP_A for name in fields}
    stamps["price"] = STAMP_OLD
    stamps["body"] = STAMP_B
    for key, value in changes.items():
        fields[key] = value
        stamps.setdefault(key, STAMP_A)
    return Record(
        collection=collection,
        record_id="r1",
        fields=dict(sorted(fields.items())),
        stamps=dict(sorted(stamps.items())),
        deleted=deleted,
        deleted_stamp=STAMP_A if deleted else None,
        version=5,
    )


NEWER = hlc_of(20)
OLDER = hlc_of(5)


def incoming(
    collection: str,
    kind: str,
    fields: dict[str, Any] | None = None,
    *,
    hlc: str = NEWER,
    base: int = 3,
    node: str = B,
) -> Op:
    return _op(
        9,
        kind,
        node=node,
        hlc=hlc,
        base=base,
        collection=collection,
        record="r1",
        fields=fields,
        op_id=f"{node}-op-9",
    )


#: A scenario: name, features, server row (or None) and the op, given the collection name.
Scenario = tuple[str, list[str], Callable[[str], Record | None], Callable[[str], Op]]

COMMON: list[Scenario] = [
    (
        "uncontested: the op had seen the other node's write (base_seq 5)",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"title": "Stew"}, hlc=OLDER, base=5),
    ),
    (
        "uncontested: the field was last written at seq 2, before the op's base_seq 3",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"price": 500}, hlc=OLDER),
    ),
    (
        "uncontested: a node's own earlier write never contests its later op",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"body": "cold"}, hlc=OLDER),
    ),
    (
        "contested lww field, incoming HLC newer",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"title": "Stew"}, hlc=NEWER),
    ),
    (
        "contested lww field, incoming HLC older",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"title": "Stew"}, hlc=OLDER),
    ),
    (
        "contested lww field, equal HLC: node-b > node-a by UTF-8 bytes",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"title": "Stew"}, hlc=STAMP_A.hlc),
    ),
    (
        "contested lww field, equal HLC: node-0 < node-a by UTF-8 bytes",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"title": "Stew"}, hlc=STAMP_A.hlc, node="node-0"),
    ),
    (
        "contested and uncontested fields in one op (incoming older)",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"title": "Stew", "price": 500}, hlc=OLDER),
    ),
    (
        "a counter adds its delta even when another node wrote it after the base",
        ["counter"],
        server_row,
        lambda c: incoming(c, "patch", {"likes": 3}, hlc=OLDER),
    ),
    (
        "a put on an existing record writes only its fields, and its counters add",
        ["lww", "counter"],
        server_row,
        lambda c: incoming(c, "put", {"title": "Stew", "likes": -1}, base=5),
    ),
    (
        "a put creates a record; a counter's first value is taken as written",
        ["lww", "counter"],
        lambda c: None,
        lambda c: incoming(c, "put", {"title": "Tea", "likes": 4, "tags": ["x", "y"]}),
    ),
    (
        "delete after seeing every write",
        ["delete"],
        server_row,
        lambda c: incoming(c, "delete", base=5),
    ),
    (
        "delete racing a newer edit by another node (the delete's HLC is newer)",
        ["delete"],
        server_row,
        lambda c: incoming(c, "delete", hlc=NEWER),
    ),
    (
        "delete racing a newer edit by another node (the delete's HLC is older)",
        ["delete"],
        server_row,
        lambda c: incoming(c, "delete", hlc=OLDER),
    ),
    (
        "edit racing a delete it had not seen (the edit's HLC is newer)",
        ["delete", "lww"],
        lambda c: server_row(c, deleted=True),
        lambda c: incoming(c, "patch", {"title": "Stew"}, hlc=NEWER),
    ),
    (
        "put racing a delete it had not seen (the put's HLC is older)",
        ["delete", "lww"],
        lambda c: server_row(c, deleted=True),
        lambda c: incoming(c, "put", {"title": "Stew"}, hlc=OLDER),
    ),
    (
        "patch after a delete the op had seen is rejected",
        ["delete"],
        lambda c: server_row(c, deleted=True),
        lambda c: incoming(c, "patch", {"title": "Stew"}, base=5),
    ),
    (
        "put after a delete the op had seen recreates the record from nothing",
        ["delete", "lww", "counter"],
        lambda c: server_row(c, deleted=True),
        lambda c: incoming(c, "put", {"title": "Stew", "likes": 1}, base=5),
    ),
    (
        "patch of a record that never existed is rejected",
        ["lww"],
        lambda c: None,
        lambda c: incoming(c, "patch", {"title": "Stew"}),
    ),
    (
        "delete of a record that never existed is rejected",
        ["delete"],
        lambda c: None,
        lambda c: incoming(c, "delete"),
    ),
    (
        "delete of a deleted record changes nothing",
        ["delete"],
        lambda c: server_row(c, deleted=True),
        lambda c: incoming(c, "delete"),
    ),
    (
        "an unknown field is rejected",
        ["schema"],
        server_row,
        lambda c: incoming(c, "patch", {"colour": "red"}, base=5),
    ),
    (
        "a value of the wrong type is rejected",
        ["schema"],
        server_row,
        lambda c: incoming(c, "patch", {"price": "4.50"}, base=5),
    ),
    (
        "a command-only field cannot be put or patched",
        ["schema"],
        server_row,
        lambda c: incoming(c, "patch", {"locked": "yes"}, base=5),
    ),
    (
        "null clears an optional field",
        ["lww"],
        server_row,
        lambda c: incoming(c, "patch", {"body": None, "title": None}, base=5),
    ),
]

SMART_ONLY: list[Scenario] = [
    (
        "set: contested arrays union, server items first then new incoming items",
        ["set"],
        lambda c: server_row(c, tags=["hot", "spicy"]),
        lambda c: incoming(c, "patch", {"tags": ["cold", "hot", "vegan"]}, hlc=OLDER),
    ),
    (
        "set: items compare as JSON values, so true is not 1 and false is not 0",
        ["set"],
        lambda c: server_row(c, tags=[1, 0, "a", {"k": [1, 2]}]),
        lambda c: incoming(
            c, "patch", {"tags": [True, False, 1, {"k": [1, 2]}, {"k": [2, 1]}]}, hlc=OLDER
        ),
    ),
    (
        "set: an uncontested write replaces the array",
        ["set"],
        lambda c: server_row(c, tags=["hot", "spicy"]),
        lambda c: incoming(c, "patch", {"tags": ["cold"]}, base=5),
    ),
    (
        "state: the later state in the table wins although its HLC is older",
        ["state"],
        server_row,
        lambda c: incoming(c, "patch", {"status": "published"}, hlc=OLDER),
    ),
    (
        "state: the earlier state in the table loses although its HLC is newer",
        ["state"],
        server_row,
        lambda c: incoming(c, "patch", {"status": "draft"}, hlc=NEWER),
    ),
    (
        "state: the same state on both sides falls back to last writer wins",
        ["state"],
        server_row,
        lambda c: incoming(c, "patch", {"status": "review"}, hlc=NEWER),
    ),
    (
        "state: a value outside the table falls back to last writer wins",
        ["state"],
        server_row,
        lambda c: incoming(c, "patch", {"status": "archived"}, hlc=OLDER),
    ),
    (
        "map: keys merge, the newer writer wins keys both wrote (incoming newer)",
        ["map"],
        server_row,
        lambda c: incoming(c, "patch", {"meta": {"b": 3, "c": 4}}, hlc=NEWER),
    ),
    (
        "map: keys merge, the newer writer wins keys both wrote (incoming older)",
        ["map"],
        server_row,
        lambda c: incoming(c, "patch", {"meta": {"b": 3, "c": 4}}, hlc=OLDER),
    ),
    (
        "map: a server value that is not an object falls back to last writer wins",
        ["map"],
        lambda c: server_row(c, meta=None),
        lambda c: incoming(c, "patch", {"meta": {"c": 4}}, hlc=OLDER),
    ),
]


def _apply_vector(
    name: str,
    features: list[str],
    collection: Collection,
    server: Record | None,
    op: Op,
    registry: Registry,
) -> dict[str, Any]:
    result = apply_op(server, op, registry, SERVER_SEQ)
    return {
        "name": name,
        "strategy": collection.strategy,
        "features": features,
        "collection": collection_to_json(collection),
        "server": None if server is None else _builtins(server),
        "op": _builtins(op),
        "seq": SERVER_SEQ,
        "expect": {
            "status": result.status,
            "reason": result.reason,
            "record": None if result.record is None else _builtins(result.record),
            "conflict": None if result.conflict is None else _builtins(result.conflict),
        },
    }


def conflict_vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, list[str], Collection, Record | None, Op]] = []
    for strategy in ("server_wins", "client_wins", "smart_merge", "manual"):
        collection = notes_collection(strategy)
        scenarios = COMMON + (SMART_ONLY if strategy == "smart_merge" else [])
        for name, features, row, make in scenarios:
            cases.append(
                (
                    f"{strategy}: {name}",
                    features,
                    collection,
                    row(collection.name),
                    make(collection.name),
                )
            )
    special = [
        (
            "smart_merge with a manual override for one field parks when that field is contested",
            notes_collection(
                "smart_merge", name="notes_override", field_strategies={"title": "manual"}
            ),
            {"title": "Stew", "tags": ["cold"]},
        ),
        (
            "smart_merge with a manual override: another contested field still merges",
            notes_collection(
                "smart_merge", name="notes_override", field_strategies={"title": "manual"}
            ),
            {"status": "published", "tags": ["cold"]},
        ),
    ]
    for name, collection, fields in special:
        cases.append(
            (
                name,
                ["lww", "set", "state", "park"],
                collection,
                server_row(collection.name),
                incoming(collection.name, "patch", fields, hlc=OLDER),
            )
        )
    override = notes_collection(
        "smart_merge", name="notes_keep", field_strategies={"_deleted": "server_wins"}
    )
    cases.append(
        (
            "a `_deleted` override decides delete races: server_wins keeps the edited record",
            ["delete"],
            override,
            server_row(override.name),
            incoming(override.name, "delete", hlc=NEWER),
        )
    )
    loose = notes_collection("smart_merge", name="notes_loose", strict=False)
    cases.append(
        (
            "a non-strict collection accepts unknown fields and merges them as lww",
            ["lww"],
            loose,
            server_row(loose.name, colour="red"),
            incoming(loose.name, "patch", {"colour": "blue"}, hlc=OLDER),
        )
    )
    required = notes_collection("smart_merge", name="notes_required", required_title=True)
    cases.append(
        (
            "a put that leaves a required field empty is rejected",
            ["schema"],
            required,
            None,
            incoming(required.name, "put", {"body": "x"}),
        )
    )
    cases.append(
        (
            "a patch cannot null a required field",
            ["schema"],
            required,
            server_row(required.name),
            incoming(required.name, "patch", {"title": None}, base=5),
        )
    )
    out = []
    for name, features, collection, server, op in cases:
        registry = registry_for([collection_to_json(collection)])
        out.append(_apply_vector(name, features, collection, server, op, registry))
    _check_conflicts(out)
    return out


def _check_conflicts(vectors: list[dict[str, Any]]) -> None:
    """Hand-written expectations for the cases whose answer is obvious."""
    by_name = {v["name"]: v["expect"] for v in vectors}

    def field(name: str, key: str) -> Any:
        record = by_name[name]["record"]
        return None if record is None else record["fields"].get(key)

    for s in ("server_wins", "client_wins", "smart_merge", "manual"):
        assert (
            by_name[f"{s}: uncontested: the op had seen the other node's write (base_seq 5)"][
                "status"
            ]
            == "applied"
        )
        assert (
            field(f"{s}: uncontested: the op had seen the other node's write (base_seq 5)", "title")
            == "Stew"
        )
        name = f"{s}: a counter adds its delta even when another node wrote it after the base"
        assert by_name[name]["status"] == "applied" and field(name, "likes") == 5
        assert by_name[f"{s}: patch of a record that never existed is rejected"]["reason"] == (
            "record-not-found"
        )
        assert by_name[f"{s}: patch after a delete the op had seen is rejected"]["reason"] == (
            "record-deleted"
        )
        assert by_name[f"{s}: an unknown field is rejected"]["reason"] == "unknown-field"
        assert by_name[f"{s}: a value of the wrong type is rejected"]["reason"] == "invalid-field"
        assert by_name[f"{s}: a command-only field cannot be put or patched"]["reason"] == (
            "command-only-field"
        )
        put = f"{s}: a put on an existing record writes only its fields, and its counters add"
        assert field(put, "likes") == 1 and field(put, "body") == "hot"
    contested = "contested lww field, incoming HLC newer"
    assert field(f"server_wins: {contested}", "title") == "Soup"
    assert by_name[f"server_wins: {contested}"]["status"] == "merged"
    assert field(f"client_wins: {contested}", "title") == "Stew"
    assert field(f"smart_merge: {contested}", "title") == "Stew"
    assert field("smart_merge: contested lww field, incoming HLC older", "title") == "Soup"
    assert by_name[f"manual: {contested}"]["status"] == "conflict"
    assert by_name[f"manual: {contested}"]["record"] is None
    assert by_name[f"manual: {contested}"]["conflict"]["contested"] == ["title"]
    mixed = "contested and uncontested fields in one op (incoming older)"
    assert field(f"server_wins: {mixed}", "title") == "Soup"
    assert field(f"server_wins: {mixed}", "price") == 500
    assert by_name[f"manual: {mixed}"]["record"] is None
    race = "delete racing a newer edit by another node (the delete's HLC is newer)"
    assert by_name[f"server_wins: {race}"]["reason"] == "kept-server"
    assert by_name[f"client_wins: {race}"]["record"]["deleted"] is True
    assert by_name[f"smart_merge: {race}"]["record"]["deleted"] is True
    assert by_name[f"manual: {race}"]["conflict"]["contested"] == ["_deleted"]
    older = "delete racing a newer edit by another node (the delete's HLC is older)"
    assert by_name[f"smart_merge: {older}"]["reason"] == "kept-server"
    assert field(
        "smart_merge: set: contested arrays union, server items first then new incoming items",
        "tags",
    ) == ["hot", "spicy", "cold", "vegan"]
    assert field(
        "smart_merge: set: items compare as JSON values, so true is not 1 and false is not 0",
        "tags",
    ) == [1, 0, "a", {"k": [1, 2]}, True, False, {"k": [2, 1]}]
    assert (
        field(
            "smart_merge: state: the later state in the table wins although its HLC is older",
            "status",
        )
        == "published"
    )
    assert field(
        "smart_merge: map: keys merge, the newer writer wins keys both wrote (incoming newer)",
        "meta",
    ) == {"a": 1, "b": 3, "c": 4}
    assert field(
        "smart_merge: map: keys merge, the newer writer wins keys both wrote (incoming older)",
        "meta",
    ) == {"a": 1, "b": 2, "c": 4}


# ------------------------------------------------------------------------ orders state

ORDER_ARGS: dict[str, dict[str, Any]] = {
    "open": {"currency": "EUR", "table": "T9"},
    "add_line": {"line_id": "l2", "item": "Bread", "qty": 1, "unit_price": 300},
    "remove_line": {"line_id": "l1"},
    "send_to_kitchen": {},
    "mark_ready": {},
    "serve": {},
    "close": {},
    "void": {"reason": "customer left"},
}


def order_row(state: str) -> Record:
    """An order in ``state`` with one line not yet sent to the kitchen (total 2 x 450)."""
    fields: dict[str, Any] = {
        "currency": "EUR",
        "lines": {"l1": {"item": "Soup", "qty": 2, "unit_price": 450, "sent": False}},
        "opened_by": A,
        "status": state,
        "table": "T4",
        "total": 900,
    }
    return Record(
        collection="orders",
        record_id="o-1",
        fields=fields,
        stamps={name: STAMP_A for name in fields},
        version=5,
    )


def orders_vectors() -> list[dict[str, Any]]:
    registry = registry_for(orders=True)
    out = []
    for state in (None, *STATES):
        for command in COMMANDS:
            target = next_state(state, command)
            row = None if state is None else order_row(state)
            op = _op(
                9,
                "command",
                node=B,
                hlc=NEWER,
                base=5,
                collection="orders",
                record="o-1",
                name=command,
                args=ORDER_ARGS[command],
                op_id=f"{B}-op-9",
            )
            result = apply_op(row, op, registry, SERVER_SEQ)
            allowed = target is not None
            if allowed != (result.status == "applied"):
                raise AssertionError(f"orders ({state}, {command}): {result}")
            if not allowed and result.reason != "illegal-transition":
                raise AssertionError(f"orders ({state}, {command}): {result.reason}")
            if allowed:
                assert result.record is not None
                if result.record.fields["status"] != target:
                    raise AssertionError(f"orders ({state}, {command}) went elsewhere")
            out.append(
                {
                    "name": f"{state or 'absent'} + {command}",
                    "state": state,
                    "command": command,
                    "allowed": allowed,
                    "next": target,
                    "record": None if row is None else _builtins(row),
                    "op": _builtins(op),
                    "seq": SERVER_SEQ,
                    "expect": {
                        "status": result.status,
                        "reason": result.reason,
                        "record": None if result.record is None else _builtins(result.record),
                    },
                }
            )
    # Hand-checked rows of the table (docs/protocol.md section "Orders").
    table = {(v["state"], v["command"]): v["next"] for v in out}
    assert table[(None, "open")] == "open" and table[("open", "open")] is None
    assert table[("served", "add_line")] == "open" and table[("closed", "void")] is None
    assert sum(v["allowed"] for v in out) == 16
    return out


# -------------------------------------------------------------------------------- push

NOTES = notes_collection("smart_merge", name="notes")
NOTES_MANUAL = notes_collection("manual", name="notes_manual")


def _body(batch: Batch) -> dict[str, Any]:
    return dict(_builtins(batch))


def _batch(node: str, ops: list[Op], **overrides: Any) -> dict[str, Any]:
    body = _body(Batch.of(node, ops))
    body.update(overrides)
    return body


def _push(body: dict[str, Any] | str, node: str = "till-1") -> dict[str, Any]:
    if isinstance(body, str):
        return {"push": {"node_id": node, "body_text": body}}
    return {"push": {"node_id": node, "body": body}}


def _pull(cursor: int, limit: int = 100) -> dict[str, Any]:
    return {"pull": {"cursor": cursor, "limit": limit}}


def _ops(first: int, last: int, node: str = "till-1", **kw: Any) -> list[Op]:
    """Ops first..last of a node: a put of r<seq>'s title, each on its own record."""
    return [
        _op(seq, "put", node=node, record=f"r{seq}", fields={"title": f"t{seq}"}, **kw)
        for seq in range(first, last + 1)
    ]


def push_sequences() -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """(name, steps, options) for every push.json vector."""
    one_two = _ops(1, 2)
    tampered = _batch("till-1", one_two)
    tampered["ops"][1]["fields"]["title"] = "tampered"
    future_op = dict(_builtins(_ops(1, 1)[0]))
    future_op["priority"] = "high"  # a member this server version does not know
    future = {
        "protocol": 1,
        "node_id": "till-1",
        "ops": [future_op],
        "checksum": checksum([future_op]),
        "sent_at": "2023-11-14T22:13:20Z",
    }
    stale_sum = dict(future)
    stale_sum["checksum"] = ops_checksum(_ops(1, 1))  # the checksum without the new member
    reused = _ops(2, 3)
    reused[0] = _op(2, "put", record="r2", fields={"title": "other"}, op_id="till-1-op-2-again")
    rejected_first = [
        _op(1, "patch", record="missing", fields={"title": "x"}),
        _op(2, "put", record="r2", fields={"title": "t2"}),
        _op(3, "put", record="r3", fields={"price": "free"}),
        _op(4, "patch", record="r2", fields={"likes": 2}),
    ]
    float_body = json.dumps(_batch("till-1", [])).replace(
        '"ops": []',
        (
            '"ops": [{"op_id": "till-1-op-1", "node_id": "till-1", "seq": 1, '
            '"hlc": "018bcfe568010000", "base_seq": 0, "collection": "notes", "record_id": "r1", '
            '"kind": "put", "fields": {"price": 4.5}, "name": null, "args": null}]'
        ),
    )
    big_op = dict(_builtins(_ops(1, 1)[0]))
    big_op["fields"] = {"price": 9007199254740992}
    big = {"protocol": 1, "node_id": "till-1", "ops": [big_op], "checksum": "0" * 32}
    shapeless_op = dict(_builtins(_ops(1, 1)[0]))
    del shapeless_op["hlc"]
    shapeless = {
        "protocol": 1,
        "node_id": "till-1",
        "ops": [shapeless_op],
        "checksum": checksum([shapeless_op]),
    }
    upper_hlc = dict(_builtins(_ops(1, 1)[0]))
    upper_hlc["hlc"] = upper_hlc["hlc"].upper()
    upper = {
        "protocol": 1,
        "node_id": "till-1",
        "ops": [upper_hlc],
        "checksum": checksum([upper_hlc]),
    }
    newline_hlc = dict(_builtins(_ops(1, 1)[0]))
    newline_hlc["hlc"] += "\n"  # "$" in a regular expression also matches before it
    trailing = {
        "protocol": 1,
        "node_id": "till-1",
        "ops": [newline_hlc],
        "checksum": checksum([newline_hlc]),
    }
    parked = [
        _op(
            1,
            "put",
            node="till-a",
            collection="notes_manual",
            record="n1",
            fields={"title": "Soup", "likes": 1},
            hlc=hlc_of(10),
        ),
    ]
    racing = [
        _op(
            1,
            "patch",
            node="till-b",
            collection="notes_manual",
            record="n1",
            fields={"title": "Stew", "likes": 2},
            hlc=hlc_of(12),
            base=0,
        ),
    ]
    resolve = [
        _op(
            2,
            "patch",
            node="till-a",
            collection="notes_manual",
            record="n1",
            fields={"title": "Stew"},
            hlc=hlc_of(30),
            base=2,
        ),
        _op(
            3,
            "command",
            node="till-a",
            collection="conflicts",
            record="till-b:1",
            name="resolve",
            args={"resolution_op_id": "till-a-op-2"},
            hlc=hlc_of(31),
            base=2,
        ),
    ]
    return [
        (
            "batches in order; pull the feed in pages",
            [
                _push(_batch("till-1", one_two)),
                _push(
                    _batch("till-1", [_op(3, "patch", record="r1", fields={"likes": 5}, base=2)])
                ),
                _pull(0),
                _pull(0, 2),
                _pull(2, 2),
                _pull(3),
            ],
            {},
        ),
        (
            "an empty batch is answered with the node's high-water mark",
            [
                _push(_batch("till-1", [])),
                _push(_batch("till-1", _ops(1, 1))),
                _push(_batch("till-1", [])),
            ],
            {},
        ),
        (
            "a retransmitted batch is answered from the op log and changes nothing",
            [_push(_batch("till-1", one_two)), _push(_batch("till-1", one_two)), _pull(0)],
            {},
        ),
        (
            "an overlapping batch: the replayed seqs are duplicates, the rest apply",
            [_push(_batch("till-1", one_two)), _push(_batch("till-1", _ops(2, 4))), _pull(2)],
            {},
        ),
        (
            "a gap is refused with the expected seq; resending from there succeeds",
            [
                _push(_batch("till-1", _ops(1, 1))),
                _push(_batch("till-1", _ops(3, 4))),
                _push(_batch("till-1", _ops(2, 4))),
            ],
            {},
        ),
        (
            "a node's first batch must start at seq 1",
            [_push(_batch("till-1", _ops(2, 2)))],
            {},
        ),
        (
            "a tampered batch is refused whole; the original then applies",
            [_push(tampered), _pull(0), _push(_batch("till-1", one_two))],
            {},
        ),
        (
            "the checksum covers the ops as sent, members unknown to the server included",
            [_push(stale_sum), _push(future), _pull(0)],
            {},
        ),
        (
            "a replayed seq with a different op_id is refused and nothing of the batch applies",
            [
                _push(_batch("till-1", one_two)),
                _push(_batch("till-1", reused)),
                _pull(2),
                _push(_batch("till-1", _ops(3, 3))),
            ],
            {},
        ),
        (
            "a rejected op is final and does not block the ops after it",
            [
                _push(_batch("till-1", rejected_first)),
                _pull(0),
                _push(_batch("till-1", rejected_first)),
            ],
            {},
        ),
        (
            "a manual conflict parks the op in `conflicts`; resolving it is a command",
            [
                _push(_batch("till-a", parked), "till-a"),
                _push(_batch("till-b", racing), "till-b"),
                _pull(1),
                _push(_batch("till-a", resolve), "till-a"),
                _pull(2),
            ],
            {},
        ),
        (
            "an unknown protocol version is refused",
            [_push(_batch("till-1", one_two, protocol=2))],
            {},
        ),
        (
            "validation order: the protocol version is checked before the checksum",
            [_push(dict(tampered, protocol=2))],
            {},
        ),
        (
            "a batch over the server's limit is refused before its checksum is checked",
            [_push(dict(_batch("till-1", _ops(1, 3)), checksum="0" * 32))],
            {"max_batch": 2},
        ),
        (
            "a batch for another node than the authenticated device is refused",
            [_push(_batch("till-2", _ops(1, 1, node="till-2")), "till-1")],
            {},
        ),
        (
            "validation order: the checksum is checked before the device",
            [_push(dict(_batch("till-2", _ops(1, 1, node="till-2")), checksum="0" * 32), "till-1")],
            {},
        ),
        (
            "an op naming another node than its batch is refused",
            [_push(_batch("till-1", [*_ops(1, 1), *_ops(2, 2, node="till-2")]))],
            {},
        ),
        (
            "seqs inside a batch must be consecutive",
            [_push(_batch("till-1", [*_ops(1, 1), *_ops(3, 3)]))],
            {},
        ),
        ("a float anywhere in the ops is refused", [_push(float_body)], {}),
        ("an integer beyond 2^53-1 is refused", [_push(big)], {}),
        ("a body that is not JSON is refused", [_push('{"protocol": 1, "ops": [')], {}),
        (
            "an escaped lone surrogate makes the body invalid JSON",
            [_push(json.dumps(_batch("till-1", _ops(1, 1))).replace('"t1"', '"t\\ud800"'))],
            {},
        ),
        (
            "a number too large for a double makes the body invalid JSON",
            [_push(json.dumps(_batch("till-1", [])).replace('"ops": []', '"ops": [1e400]'))],
            {},
        ),
        ("a body without a protocol member is refused", [_push('{"ops": []}')], {}),
        ("an op without an hlc is refused", [_push(shapeless)], {}),
        ("an HLC in upper case is refused", [_push(upper)], {}),
        ("an HLC with a final newline (17 characters) is refused", [_push(trailing)], {}),
        ("pull: a negative cursor is refused", [_pull(-1)], {}),
        ("pull: a limit of 0 is refused", [_pull(0, 0)], {}),
        ("pull: a cursor above 2^53-1 is refused", [_pull(2**53)], {}),
        *limit_sequences(),
    ]


#: Small limits for the size vectors (section 22), so that their bodies stay short.
SMALL_LIMITS = {
    "max_string_bytes": 16,
    "max_field_bytes": 32,
    "max_record_bytes": 96,
    "max_push_growth_bytes": 4096,
    "max_page_bytes": 768,
}


def _deep_body(depth: int) -> str:
    """A batch whose op's ``tags`` nests so that the body's deepest point is ``depth``
    (body 1, ops 2, op 3, fields 4, tags 5...). Signed, so only depth can refuse it."""
    inner = "[" * (depth - 4) + "]" * (depth - 4)
    op = dict(_builtins(_op(1, "put", fields={"title": "t", "tags": []})))
    op["fields"]["tags"] = "DEEP"
    ops_text = json.dumps([op]).replace('"DEEP"', inner)
    signature = checksum(json.loads(ops_text))
    body = {"protocol": 1, "node_id": "till-1", "ops": "OPS", "checksum": signature}
    return json.dumps(body).replace('"OPS"', ops_text)


def _float_in(fields_text: str) -> str:
    """A batch whose one op's ``fields`` is the JSON text given (holding a float)."""
    op = dict(_builtins(_op(1, "put", fields={"title": "t"})))
    op["fields"] = "FIELDS"
    body = {"protocol": 1, "node_id": "till-1", "ops": [op], "checksum": "0" * 32}
    return json.dumps(body).replace('"FIELDS"', fields_text)


def limit_sequences() -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """Section 22 (limits), 13 (the conflicts collection) and 2 (identifiers)."""
    small = {"limits": SMALL_LIMITS}
    nul = dict(_builtins(_op(1, "put", fields={"title": "t"})))
    nul["record_id"] = "r\u0000"
    nul_body = {"protocol": 1, "node_id": "till-1", "ops": [nul], "checksum": checksum([nul])}
    grow = [_op(1, "put", fields={"title": "0123456789abcdef"})] + [
        _op(seq, "patch", fields={"likes": 1}) for seq in range(2, 21)
    ]
    return [
        (
            "limits: a value nested deeper than 64 levels is refused while parsing",
            [_push(_deep_body(65)), _pull(0)],
            {},
        ),
        (
            "limits: a value nested exactly 64 levels deep is accepted",
            [_push(_deep_body(64))],
            {},
        ),
        (
            "limits: a string longer than max_string_bytes (UTF-8) is refused",
            [
                _push(_batch("till-1", [_op(1, "put", fields={"title": "\u00e9" * 9})])),
                _pull(0),
                _push(_batch("till-1", [_op(1, "put", fields={"title": "\u00e9" * 8})])),
            ],
            small,
        ),
        (
            "limits: a field value larger than max_field_bytes is refused",
            [
                _push(_batch("till-1", [_op(1, "put", fields={"tags": ["abcdef"] * 5})])),
                _pull(0),
            ],
            small,
        ),
        (
            "limits: an op that would grow its record past max_record_bytes is rejected",
            [
                _push(
                    _batch(
                        "till-1",
                        [
                            _op(1, "put", fields={"title": "0123456789abcdef", "tags": ["a"]}),
                            _op(2, "patch", fields={"meta": {"k": "0123456789abcde"}}),
                            _op(3, "patch", fields={"body": "0123456789abcdef"}),
                            _op(4, "patch", fields={"likes": 1}),
                        ],
                    )
                ),
            ],
            small,
        ),
        (
            "limits: a batch that would add more than max_push_growth_bytes to the feed is "
            "refused; fewer ops at once go through; pages are cut at max_page_bytes",
            [
                _push(_batch("till-1", grow)),
                _push(_batch("till-1", grow[:10])),
                _push(_batch("till-1", grow[10:])),
                _pull(0),
                _pull(4),
            ],
            small,
        ),
        (
            "put, patch and delete on `conflicts` are rejected",
            [
                _push(
                    _batch(
                        "till-1",
                        [
                            _op(1, "put", collection="conflicts", record="x:1", fields={}),
                            _op(2, "patch", collection="conflicts", record="x:1", fields={}),
                            _op(3, "delete", collection="conflicts", record="x:1"),
                        ],
                    )
                ),
                _pull(0),
            ],
            {},
        ),
        ("an identifier holding U+0000 is refused", [_push(nul_body), _pull(0)], {}),
        (
            "invalid-value: a member name that is not an identifier is quoted in the path",
            [_push(_float_in('{"a b": {"": {"x.y": 0.5}}}'))],
            {},
        ),
        (
            "an op whose HLC is more than the skew allowance ahead of the server's clock is "
            "refused",
            [
                _push(
                    _batch(
                        "till-1",
                        [
                            *_ops(1, 1),
                            _op(
                                2, "put", record="r2", fields={"title": "t"}, hlc="ffffffffffff0000"
                            ),
                        ],
                    )
                ),
                _pull(0),
            ],
            {},
        ),
    ]


def push_vectors() -> list[dict[str, Any]]:
    out = _sequence_vectors(push_sequences())
    _check_push(out)
    return out


def _sequence_vectors(
    sequences: list[tuple[str, list[dict[str, Any]], dict[str, Any]]],
) -> list[dict[str, Any]]:
    """push.json-shaped vectors: each sequence run through the reference server."""
    from tests.protocol.vectors import run_push_vector

    out = []
    for name, steps, options in sequences:
        vector: dict[str, Any] = {
            "name": name,
            "collections": [collection_to_json(NOTES), collection_to_json(NOTES_MANUAL)],
            **options,
            "steps": steps,
        }
        for step, response in zip(steps, run_push_vector(vector), strict=True):
            step["expect"] = normative(response)
        out.append(vector)
    return out


def _check_push(vectors: list[dict[str, Any]]) -> None:
    """Hand-written expectations: statuses, problem types, duplicates, high-water marks."""
    by_name = {v["name"]: [s["expect"] for s in v["steps"]] for v in vectors}

    def problem(name: str, index: int = 0) -> tuple[int, str]:
        got = by_name[name][index]
        return got["status"], got["problem"]["type"].rsplit("/", 1)[-1]

    first = by_name["batches in order; pull the feed in pages"]
    assert first[0]["body"]["high_water"] == 2 and first[0]["body"]["cursor"] == 2
    assert first[1]["body"]["high_water"] == 3 and first[1]["body"]["cursor"] == 3
    assert [c["seq"] for c in first[2]["body"]["changes"]] == [1, 2, 3]
    assert first[3]["body"]["more"] is True and first[4]["body"]["more"] is False
    assert first[5]["body"]["changes"] == [] and first[5]["body"]["checksum"] == EMPTY_MD5
    again = by_name["a retransmitted batch is answered from the op log and changes nothing"]
    assert [o["status"] for o in again[1]["body"]["outcomes"]] == ["duplicate", "duplicate"]
    assert [o["original"] for o in again[1]["body"]["outcomes"]] == ["applied", "applied"]
    assert len(again[2]["body"]["changes"]) == 2
    gap = by_name["a gap is refused with the expected seq; resending from there succeeds"]
    assert gap[1]["status"] == 409 and gap[1]["problem"]["expected"] == 2
    assert problem("a node's first batch must start at seq 1") == (409, "seq-gap")
    assert problem("a tampered batch is refused whole; the original then applies") == (
        422,
        "checksum-mismatch",
    )
    assert problem("an unknown protocol version is refused") == (400, "protocol-version")
    assert problem("validation order: the protocol version is checked before the checksum") == (
        400,
        "protocol-version",
    )
    assert problem("a batch over the server's limit is refused before its checksum is checked") == (
        413,
        "batch-too-large",
    )
    assert problem("a batch for another node than the authenticated device is refused") == (
        403,
        "node-mismatch",
    )
    assert problem("validation order: the checksum is checked before the device") == (
        422,
        "checksum-mismatch",
    )
    assert problem("a float anywhere in the ops is refused") == (422, "invalid-value")
    assert problem("a body that is not JSON is refused") == (422, "malformed")
    assert problem("an escaped lone surrogate makes the body invalid JSON") == (422, "malformed")
    assert problem("a number too large for a double makes the body invalid JSON") == (
        422,
        "malformed",
    )
    reused = "a replayed seq with a different op_id is refused and nothing of the batch applies"
    assert problem(reused, 1) == (409, "seq-reuse")
    assert by_name[reused][2]["body"]["changes"] == []
    rejected = by_name["a rejected op is final and does not block the ops after it"]
    assert [o["status"] for o in rejected[0]["body"]["outcomes"]] == [
        "rejected",
        "applied",
        "rejected",
        "applied",
    ]
    assert rejected[0]["body"]["high_water"] == 4
    parked = by_name["a manual conflict parks the op in `conflicts`; resolving it is a command"]
    assert parked[1]["body"]["outcomes"][0]["status"] == "conflict"
    assert parked[2]["body"]["changes"][0]["record"]["collection"] == "conflicts"
    assert [o["status"] for o in parked[3]["body"]["outcomes"]] == ["applied", "applied"]
    assert parked[4]["body"]["changes"][-1]["record"]["fields"]["state"] == "resolved"
    _check_limits(by_name, problem)


def _check_limits(by_name: dict[str, list[Any]], problem: Callable[..., tuple[int, str]]) -> None:
    deep = by_name["limits: a value nested deeper than 64 levels is refused while parsing"]
    assert problem("limits: a value nested deeper than 64 levels is refused while parsing") == (
        422,
        "limit-exceeded",
    )
    assert deep[0]["problem"]["limit"] == "depth" and deep[0]["problem"]["max"] == 64
    assert deep[1]["body"]["changes"] == []
    ok = by_name["limits: a value nested exactly 64 levels deep is accepted"]
    assert ok[0]["status"] == 200
    text = by_name["limits: a string longer than max_string_bytes (UTF-8) is refused"]
    assert text[0]["problem"]["limit"] == "string_bytes"
    assert text[0]["problem"]["path"] == "$[0].fields.title"
    assert text[2]["status"] == 200
    field = by_name["limits: a field value larger than max_field_bytes is refused"]
    assert field[0]["problem"]["limit"] == "field_bytes"
    record = by_name["limits: an op that would grow its record past max_record_bytes is rejected"]
    assert [(o["status"], o["reason"]) for o in record[0]["body"]["outcomes"]] == [
        ("applied", None),
        ("applied", None),
        ("rejected", "record-too-large"),
        ("applied", None),
    ]
    grow = by_name[
        "limits: a batch that would add more than max_push_growth_bytes to the feed is "
        "refused; fewer ops at once go through; pages are cut at max_page_bytes"
    ]
    assert grow[0]["status"] == 413 and grow[0]["problem"]["max_growth_bytes"] == 4096
    assert grow[1]["status"] == grow[2]["status"] == 200
    assert grow[3]["body"]["more"] is True and len(grow[3]["body"]["changes"]) < 20
    assert len(json.dumps(grow[3]["body"]["changes"], separators=(",", ":"))) <= 768
    conflicts = by_name["put, patch and delete on `conflicts` are rejected"]
    assert [o["reason"] for o in conflicts[0]["body"]["outcomes"]] == ["command-only-field"] * 3
    assert conflicts[1]["body"]["changes"] == []
    assert problem("an identifier holding U+0000 is refused") == (422, "malformed")
    quoted = by_name["invalid-value: a member name that is not an identifier is quoted in the path"]
    assert quoted[0]["problem"]["path"] == "$[0].fields['a b']['']['x.y']"
    ahead = by_name[
        "an op whose HLC is more than the skew allowance ahead of the server's clock is refused"
    ]
    assert ahead[0]["problem"] == {
        "type": PROBLEM_BASE + "clock-ahead",
        "status": 422,
        "index": 1,
        "max_skew_ms": 300000,
    }
    assert ahead[1]["body"]["changes"] == []


# ----------------------------------------------------------------------- domains as data


def domains_vector() -> dict[str, Any]:
    """Section 21: the domains document of the default plugins (what `fynlo schema export
    --json` prints with FYNLO_PLUGINS unset); its orders table is exactly section 15.1's."""
    doc = domains_document(conflict.registry([OrdersPlugin()]))
    orders = next(c for c in doc["collections"] if c["name"] == "orders")
    table = orders["state_table"]
    assert orders["plugin"] == "orders" and orders["derive"] and orders["validate"]
    assert table["states"] == list(STATES) and table["commands"] == list(COMMANDS)
    rows = {(t["from"], t["command"]): t["to"] for t in table["transitions"]}
    assert len(rows) == len(table["transitions"]) == 16
    assert rows == {
        (state, command): next_state(state, command)
        for state in (None, *STATES)
        for command in COMMANDS
        if next_state(state, command) is not None
    }
    return doc


# ------------------------------------------------------------------ compact.json (23)


def _cpull(cursor: int, limit: int = 100, node: str = "till-1") -> dict[str, Any]:
    return {"pull": {"cursor": cursor, "limit": limit, "compact": True, "node_id": node}}


def compact_sequences() -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """(name, steps, options) for every compact.json vector (section 23)."""
    edits = [
        _op(1, "put", record="r1", fields={"title": "soup"}),
        _op(2, "patch", record="r1", fields={"title": "stew"}),
        _op(3, "put", record="r2", fields={"title": "tea"}),
        _op(4, "patch", record="r1", fields={"likes": 3}),
    ]
    deleted = [
        _op(1, "put", record="r1", fields={"title": "soup"}),
        _op(2, "put", record="r2", fields={"title": "tea"}),
        _op(3, "delete", record="r1"),
    ]
    three = _ops(1, 3)
    moved = [_op(4, "patch", record="r1", fields={"likes": 1})]
    parked = [
        _op(
            1,
            "put",
            node="till-a",
            collection="notes_manual",
            record="n1",
            fields={"title": "Soup"},
            hlc=hlc_of(10),
        ),
    ]
    racing = [
        _op(
            1,
            "patch",
            node="till-b",
            collection="notes_manual",
            record="n1",
            fields={"title": "Stew"},
            hlc=hlc_of(12),
        ),
    ]
    resolve = [
        _op(
            2,
            "command",
            node="till-a",
            collection="conflicts",
            record="till-b:1",
            name="resolve",
            args={"resolution_op_id": None},
            hlc=hlc_of(30),
            base=2,
        ),
    ]
    rejected = [
        _op(1, "patch", record="missing", fields={"title": "x"}),
        _op(2, "put", record="r1", fields={"title": "mine"}),
    ]
    overwritten = [
        _op(1, "patch", node="till-2", record="r1", fields={"title": "theirs"}, base=2),
    ]
    return [
        (
            "a record written several times is sent once, at its current state",
            [_push(_batch("till-1", edits)), _cpull(0), _pull(0)],
            {},
        ),
        (
            "a deleted record is sent as its tombstone",
            [_push(_batch("till-1", deleted)), _cpull(0), _cpull(2)],
            {},
        ),
        (
            "two pages: a record written after the first moves to the second",
            [
                _push(_batch("till-1", three)),
                _cpull(0, 2),
                _push(_batch("till-1", moved)),
                _cpull(2, 2),
            ],
            {},
        ),
        (
            "the conflict queue: a parked op's record, then the same record resolved",
            [
                _push(_batch("till-a", parked), "till-a"),
                _push(_batch("till-b", racing), "till-b"),
                _cpull(0, node="till-a"),
                _push(_batch("till-a", resolve), "till-a"),
                _cpull(1, node="till-a"),
            ],
            {},
        ),
        (
            "high_water acknowledges ops that have no entry: rejected, or overwritten",
            [
                _push(_batch("till-1", rejected)),
                _push(_batch("till-2", overwritten), "till-2"),
                _cpull(0),
                _cpull(0, node="till-2"),
            ],
            {},
        ),
        ("compact pull: a negative cursor is refused", [_cpull(-1)], {}),
    ]


def compact_vectors() -> list[dict[str, Any]]:
    out = _sequence_vectors(compact_sequences())
    _check_compact(out)
    return out


def _check_compact(vectors: list[dict[str, Any]]) -> None:
    """Hand-written expectations for section 23."""
    by_name = {v["name"]: [s["expect"] for s in v["steps"]] for v in vectors}

    def entries(page: dict[str, Any]) -> list[tuple[int, str]]:
        return [(c["seq"], c["record"]["record_id"]) for c in page["body"]["changes"]]

    once = by_name["a record written several times is sent once, at its current state"]
    assert entries(once[1]) == [(3, "r2"), (4, "r1")] and once[1]["body"]["compacted"] is True
    assert once[1]["body"]["changes"][1]["record"]["fields"] == {"title": "stew", "likes": 3}
    assert once[1]["body"]["high_water"] == 4 and once[1]["body"]["cursor"] == 4
    assert len(once[2]["body"]["changes"]) == 4 and "compacted" not in once[2]["body"]
    gone = by_name["a deleted record is sent as its tombstone"]
    assert entries(gone[1]) == [(2, "r2"), (3, "r1")]
    assert gone[1]["body"]["changes"][1]["record"]["deleted"] is True
    assert entries(gone[2]) == [(3, "r1")]
    moved = by_name["two pages: a record written after the first moves to the second"]
    assert entries(moved[1]) == [(1, "r1"), (2, "r2")] and moved[1]["body"]["more"] is True
    assert entries(moved[3]) == [(3, "r3"), (4, "r1")] and moved[3]["body"]["more"] is False
    queue = by_name["the conflict queue: a parked op's record, then the same record resolved"]
    assert [c["record"]["collection"] for c in queue[2]["body"]["changes"]] == [
        "notes_manual",
        "conflicts",
    ]
    (resolved,) = queue[4]["body"]["changes"]
    assert resolved["record"]["fields"]["state"] == "resolved" and resolved["seq"] == 3
    acked = by_name["high_water acknowledges ops that have no entry: rejected, or overwritten"]
    assert acked[0]["body"]["outcomes"][0]["status"] == "rejected"
    assert [c["node_id"] for c in acked[2]["body"]["changes"]] == ["till-2"]
    assert acked[2]["body"]["high_water"] == 2 and acked[3]["body"]["high_water"] == 1
    negative = by_name["compact pull: a negative cursor is refused"][0]
    assert negative["status"] == 422


# -------------------------------------------------------------------------------- main

BUILDERS: dict[str, Callable[[], Any]] = {
    "canonical.json": canonical_vectors,
    "checksum.json": checksum_vectors,
    "hlc.json": hlc_vectors,
    "conflicts.json": conflict_vectors,
    "orders_state.json": orders_vectors,
    "push.json": push_vectors,
    "domains.json": domains_vector,
    "timeclock_state.json": timeclock_vectors,
    "overtime.json": overtime_vectors,
    "timeclock_fraud.json": fraud_vectors,
    "compact.json": compact_vectors,
    "payments_state.json": payments_state_vectors,
    "fees.json": fees_vectors,
    "payments_delete.json": payments_delete_vectors,
    "drawers.json": drawers_vectors,
    "session_capture.json": session_capture_vectors,
    "session_refund.json": session_refund_vectors,
    "ledger.json": ledger_vectors,
    "actors.json": actors_vectors,
}


def build_all() -> dict[str, str]:
    """The text of every vector file."""
    return {name: dumps(build()) + "\n" for name, build in BUILDERS.items()}


def main() -> None:
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in build_all().items():
        (VECTOR_DIR / name).write_text(text, encoding="utf-8")
        data = json.loads(text)
        print(f"{name}: {len(data)} vectors" if isinstance(data, list) else f"{name}: a document")


if __name__ == "__main__":
    main()
