"""Wire messages, the protocol version, and decoding in the normative validation order.

Push validation order (``docs/protocol.md``): envelope (a JSON object with ``protocol``),
protocol version, batch size, float-free values and checksum over the ops *as sent*, op
shapes, then (in the engine, with state) seq continuity and each op.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct

from fynlo_sync.canonical import MAX_SAFE_INTEGER, canonical_bytes, checksum
from fynlo_sync.errors import (
    BatchTooLargeError,
    ChecksumMismatchError,
    ClockAheadError,
    InvalidValueError,
    MalformedError,
    NodeMismatchError,
    ProtocolVersionError,
)
from fynlo_sync.limits import (
    DEFAULT_LIMITS,
    FIELDS_LEVEL,
    Limits,
    check_depth,
    check_value_limits,
)
from fynlo_sync.ops import (
    Batch,
    Change,
    Cursor,
    Ident,
    NodeIdent,
    Op,
    Outcome,
    Record,
    SeqNo,
    ops_checksum,
)

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_SKEW_MS",
    "PROTOCOL_VERSION",
    "PageRows",
    "Row",
    "Poke",
    "PullPage",
    "PushResult",
    "WirePage",
    "canonical_change",
    "change_bytes",
    "change_parts",
    "check_batch",
    "check_clock",
    "outbox_checksum",
    "decode",
    "decode_batch",
    "decode_page",
    "decode_page_rows",
    "encode",
    "encode_batch",
    "page_checksum",
    "page_rows",
    "record_bytes",
    "verify_page",
    "wire_page",
]

T = TypeVar("T")

PROTOCOL_VERSION = 1
DEFAULT_MAX_BATCH = 1000

_encoder = msgspec.json.Encoder()
_generic = msgspec.json.Decoder()


class PushResult(Struct, frozen=True):
    """The server's answer to a push: one outcome per op, the node's high-water mark, and
    the feed cursor after the commit."""

    node_id: str
    high_water: int
    cursor: int
    outcomes: list[Outcome]


class PullPage(Struct, frozen=True, omit_defaults=True):
    """Changes after ``since``, in feed order. ``cursor`` is the last change's sequence (or
    ``since`` when empty); ``more`` says whether to ask again; ``checksum`` is the MD5 of the
    canonical bytes of ``changes``.

    A compacted page (protocol 1.1, ``docs/protocol.md`` section 23) says ``compacted`` and
    carries the requesting node's ``high_water``; a feed page has neither member on the
    wire (it is byte for byte a version 1.0 page)."""

    since: int
    cursor: int
    more: bool
    changes: list[Change]
    checksum: str
    compacted: bool = False
    high_water: int | None = None


class WirePage(Struct, frozen=True, omit_defaults=True):
    """A :class:`PullPage` as the server sends it: ``changes`` is the concatenation of the
    canonical bytes stored for each change at commit, so making a page decodes nothing
    and the checksum is one MD5 over those bytes."""

    since: int
    cursor: int
    more: bool
    changes: msgspec.Raw
    checksum: str
    compacted: bool = False
    high_water: int | None = None


class Poke(Struct, frozen=True, tag="poke"):
    """Sent over the WebSocket when a tenant's feed moves."""

    cursor: int


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise MalformedError(f"invalid {kind.__name__}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise MalformedError(f"body is not valid JSON: {exc}") from exc


_sorted_encoder = msgspec.json.Encoder(order="sorted")


def page_checksum(changes: list[Change]) -> str:
    """The checksum of changes this side produced (the server making a page).

    Its values were validated on the way in, so the canonical bytes come straight from
    msgspec with sorted keys: byte-identical to RFC 8785 when no key or string holds a
    character outside the BMP (then code point, UTF-8 and UTF-16 orders agree). Where one
    does (a 4-byte UTF-8 sequence, lead byte 0xF0 or above), the full canonicaliser runs.
    Received pages are always verified by :func:`decode_page`, never by this shortcut.
    """
    fast = _sorted_encoder.encode(changes)
    if max(fast, default=0) < 0xF0:
        return hashlib.md5(fast, usedforsecurity=False).hexdigest()
    return checksum(msgspec.to_builtins(changes))


#: Every byte but the UTF-8 lead bytes of characters outside the BMP (there, UTF-16 code
#: unit order and code point order can differ, so msgspec's sorted keys may not be RFC
#: 8785's): deleting these leaves nothing when no such character appears.
_BMP_BYTES = bytes(range(0xF0))


_CHANGE = b'{"node_id":%b,"node_seq":%d,"op_id":%b,"record":%b,"seq":%d}'


def record_bytes(record: Record) -> bytes:
    """A record's JSON with sorted keys (msgspec): as long as :func:`encoded_size` of it,
    and what :func:`change_bytes` splices into its change."""
    return _sorted_encoder.encode(record)


def change_bytes(change: Change, record: bytes) -> bytes:
    """:func:`canonical_change` of ``change``, given :func:`record_bytes` of its record: the
    record is spliced in, not encoded again (the change's members in sorted order:
    ``node_id``, ``node_seq``, ``op_id``, ``record``, ``seq``)."""
    fast = _CHANGE % (
        _sorted_encoder.encode(change.node_id),
        change.node_seq,
        _sorted_encoder.encode(change.op_id),
        record,
        change.seq,
    )
    # ASCII (the common case, checked at C speed) has no byte that translate keeps.
    if fast.isascii() or not fast.translate(None, _BMP_BYTES):
        return fast
    return canonical_bytes(msgspec.to_builtins(change))


def change_parts(change: Change) -> tuple[bytes, bytes]:
    """:func:`canonical_change` of ``change`` and :func:`record_bytes` of its record, from
    one encoding of the change: the record's bytes are the slice of it between the
    change's ``record`` and ``seq`` members (its members sorted: ``node_id``,
    ``node_seq``, ``op_id``, ``record``, ``seq``). A member separator holds a quote that
    no backslash precedes, which a string's bytes never do; so the first ``,"record":`` is
    the change's own (only two strings and an integer come before it) and so is the last
    ``,"seq":`` (only an integer comes after it)."""
    fast = _sorted_encoder.encode(change)
    record = fast[fast.index(b',"record":') + 10 : fast.rindex(b',"seq":')]
    # ASCII (the common case, checked at C speed) has no byte that translate keeps.
    if fast.isascii() or not fast.translate(None, _BMP_BYTES):
        return fast, record
    return canonical_bytes(msgspec.to_builtins(change)), record


def canonical_change(change: Change) -> bytes:
    """The RFC 8785 bytes of a change this side made (its values were validated): msgspec's
    sorted-key encoding, or the full canonicaliser when a character outside the BMP
    appears. Stores keep these bytes at commit; a page is their concatenation."""
    fast = _sorted_encoder.encode(change)
    # ASCII (the common case, checked at C speed) has no byte that translate keeps.
    if fast.isascii() or not fast.translate(None, _BMP_BYTES):
        return fast
    return canonical_bytes(msgspec.to_builtins(change))


def wire_page(
    since: int,
    rows: list[tuple[int, bytes]],
    size: int,
    *,
    compacted: bool = False,
    high_water: int | None = None,
    max_bytes: int | None = None,
) -> WirePage:
    """The page for ``rows`` (feed seq, canonical change bytes) read with ``LIMIT size + 1``
    (the extra one says ``more``), cut short so that its changes take at most ``max_bytes``
    (but always at least one change, so that a page always moves the cursor)."""
    more = len(rows) > size
    rows = rows[:size]
    if max_bytes is not None:
        total = 0
        for n, (_, change) in enumerate(rows):
            total += len(change) + 1
            if total > max_bytes and n > 0:
                rows, more = rows[:n], True
                break
    body = b"[" + b",".join(b for _, b in rows) + b"]"
    return WirePage(
        since=since,
        cursor=rows[-1][0] if rows else since,
        more=more,
        changes=msgspec.Raw(body),
        checksum=hashlib.md5(body, usedforsecurity=False).hexdigest(),
        compacted=compacted,
        high_water=high_water,
    )


def verify_page(page: PullPage) -> None:
    """Check an already decoded page with the full canonicaliser (it may hold values this
    side did not validate, so :func:`page_checksum`'s shortcut does not apply)."""
    if checksum(msgspec.to_builtins(page.changes)) != page.checksum:
        raise ChecksumMismatchError(
            f"pull page after cursor {page.since} does not match its checksum", since=page.since
        )


def _verified_wire(body: bytes) -> WirePage | None:
    """``body`` as a :class:`WirePage` whose ``changes`` bytes, exactly as received, have
    the MD5 it claims (a 1.1 server's page); ``None`` for anything else."""
    try:
        wire = _wire_page.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if hashlib.md5(wire.changes, usedforsecurity=False).hexdigest() != wire.checksum:
        return None
    return wire


def decode_page(body: bytes) -> PullPage:
    """Decode a pull page, verifying its checksum over ``changes`` *as received*.

    A newer server may add members to changes and records (``docs/protocol.md`` section
    17); decoding drops them, so a checksum recomputed from the decoded page would not
    match: this checks the bytes that arrived. Every transport returns pages decoded by
    this function, so the terminal does not verify them a second time.

    First the MD5 of the ``changes`` bytes exactly as received: a server that sends the
    canonical bytes (every 1.1 server, :class:`WirePage`) is verified by that one hash, and
    the changes are decoded straight into Structs. Otherwise (re-encoded on the way, an
    older server) the changes are canonicalised and hashed, as section 9.3 says."""
    wire = _verified_wire(body)
    if wire is not None:
        try:
            changes = _changes_decoder.decode(wire.changes)
        except msgspec.ValidationError as exc:
            raise MalformedError(f"invalid PullPage: {exc}") from exc
        return PullPage(
            since=wire.since,
            cursor=wire.cursor,
            more=wire.more,
            changes=changes,
            checksum=wire.checksum,
            compacted=wire.compacted,
            high_water=wire.high_water,
        )
    try:
        raw = _generic.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("changes"), list):
        raise MalformedError("a pull page must be an object with a `changes` array")
    claimed = raw.get("checksum")
    actual = checksum(raw["changes"])
    if actual != claimed:
        raise ChecksumMismatchError(
            f"pull page after cursor {raw.get('since')} does not match its checksum",
            since=raw.get("since"),
        )
    try:
        return msgspec.convert(raw, PullPage)
    except msgspec.ValidationError as exc:
        raise MalformedError(f"invalid PullPage: {exc}") from exc


#: A record as a terminal stores it: ``(collection, record_id, JSON body)``.
Row = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class PageRows:
    """A pull page as a terminal applies it: each change's record as JSON bytes (page
    order; a feed page may hold a record more than once, the last is its state), the
    largest ``node_seq`` among the asking node's changes (``mine``) and the largest stamp
    HLC of the records (``newest``, wire form; ``""`` when none)."""

    since: int
    cursor: int
    more: bool
    compacted: bool
    high_water: int | None
    rows: list[Row]
    mine: int
    newest: str


#: The shapes :func:`decode_page_rows` checks a page's changes against: exactly what
#: decoding into :class:`~fynlo_sync.ops.Change` accepts, without making the field values
#: (each stays its JSON bytes) and with a stamp's HLC checked for length here and for its
#: digits once per page (a pattern per stamp is a third of a page's decode).
_Hlc16 = Annotated[str, Meta(min_length=16, max_length=16)]


class _StampShape(Struct, frozen=True, array_like=True):
    hlc: _Hlc16
    node_id: NodeIdent
    seq: Cursor


class _RecordShape(Struct, frozen=True):
    collection: Ident
    record_id: Ident
    fields: msgspec.Raw  # must be an object: checked by its first byte (a dict of Raw
    # values, one object each, was most of a record's decode)
    stamps: dict[str, _StampShape]
    deleted: bool = False
    deleted_stamp: _StampShape | None = None
    version: Cursor = 0


class _ChangeShape(Struct, frozen=True):
    seq: SeqNo
    op_id: Ident
    node_id: NodeIdent
    node_seq: SeqNo
    record: msgspec.Raw


_change_shapes = msgspec.json.Decoder(list[_ChangeShape])
_record_shape = msgspec.json.Decoder(_RecordShape)
_NOT_HEX = str.maketrans("", "", "0123456789abcdef")
_OPEN_BRACE = ord("{")


def page_rows(page: PullPage, node_id: str) -> PageRows:
    """:class:`PageRows` of a decoded page (each record encoded once)."""
    rows: list[Row] = []
    mine = 0
    newest = ""  # wire HLCs are fixed-width lowercase hex: text order is number order
    for change in page.changes:
        record = change.record
        rows.append((record.collection, record.record_id, _encoder.encode(record)))
        if change.node_id == node_id and change.node_seq > mine:
            mine = change.node_seq
        if record.stamps:
            newest = max(newest, *[stamp.hlc for stamp in record.stamps.values()])
    return PageRows(
        page.since, page.cursor, page.more, page.compacted, page.high_water, rows, mine, newest
    )


def decode_page_rows(body: bytes, node_id: str) -> PageRows:
    """:func:`page_rows` of :func:`decode_page` of ``body``, for the terminal ``node_id``,
    with the records' bytes taken as received when the page is a 1.1 server's (its
    ``changes`` bytes have the MD5 it claims): those bytes are checked against the shape of
    a change without decoding the field values, and each record's JSON is sliced out, not
    decoded and encoded again. Anything else (another checksum form, a value a shape
    refuses) goes to :func:`decode_page`, which accepts the same pages and raises the same
    errors, so this function answers exactly as that one does."""
    wire = _verified_wire(body)
    if wire is not None:
        try:
            changes = _change_shapes.decode(wire.changes)
            rows: list[Row] = []
            hlcs: list[str] = []  # every stamp's (the newest HLC is the largest)
            deleted: list[str] = []  # deletion stamps' (checked, not counted: 9.3)
            mine = 0
            decode = _record_shape.decode
            for change in changes:
                raw = change.record
                record = decode(raw)
                if memoryview(record.fields)[0] != _OPEN_BRACE:
                    raise msgspec.ValidationError("fields is not an object")
                rows.append((record.collection, record.record_id, bytes(raw)))
                if change.node_id == node_id and change.node_seq > mine:
                    mine = change.node_seq
                if record.stamps:
                    hlcs.extend([stamp.hlc for stamp in record.stamps.values()])
                if record.deleted_stamp is not None:
                    deleted.append(record.deleted_stamp.hlc)
            newest = max(hlcs, default="")
        except msgspec.ValidationError:
            pass  # decode_page names the problem
        else:
            if not ("".join(hlcs) + "".join(deleted)).translate(_NOT_HEX):
                return PageRows(
                    wire.since,
                    wire.cursor,
                    wire.more,
                    wire.compacted,
                    wire.high_water,
                    rows,
                    mine,
                    newest,
                )
    return page_rows(decode_page(body), node_id)


def check_batch(
    batch: Batch, *, node_id: str | None = None, max_ops: int = DEFAULT_MAX_BATCH
) -> None:
    """Envelope rules that need no state: version, size, node (``node_id`` is the
    authenticated sender, when there is one), seq continuity. The replica runs this once
    per push, before it takes the tenant's lock; :func:`~fynlo_sync.engine.plan_push`
    assumes it passed."""
    if batch.protocol != PROTOCOL_VERSION:
        raise ProtocolVersionError(
            f"protocol version {batch.protocol} is not supported; this side speaks "
            f"{PROTOCOL_VERSION}",
            supported=[PROTOCOL_VERSION],
        )
    if len(batch.ops) > max_ops:
        raise BatchTooLargeError(
            f"batch has {len(batch.ops)} ops; the limit is {max_ops}", limit=max_ops
        )
    if node_id is not None and batch.node_id != node_id:
        raise NodeMismatchError(
            f"batch is for node {batch.node_id!r} but the sender is {node_id!r}",
            node_id=batch.node_id,
        )
    previous: int | None = None
    for index, op in enumerate(batch.ops):
        if op.node_id != batch.node_id:
            raise NodeMismatchError(
                f"op {index} names node {op.node_id!r}, the batch is for {batch.node_id!r}",
                index=index,
            )
        if previous is not None and op.seq != previous + 1:
            raise MalformedError(
                f"ops in a batch must have consecutive seqs: op {index} has seq {op.seq} "
                f"after {previous}",
                index=index,
            )
        previous = op.seq


_wire_page = msgspec.json.Decoder(WirePage)
_changes_decoder = msgspec.json.Decoder(list[Change])


def encode_batch(batch: Batch) -> bytes:
    """A push body. Keys sorted, so the ``ops`` bytes are their canonical form whenever the
    values are (the terminal validated them), and the server verifies them in one pass."""
    return _sorted_encoder.encode(batch)


def _no_float(text: str) -> Any:
    raise ValueError("a float")


#: Decodes a body as long as it holds no float (the common case): a float sends the body to
#: the full path, which names the float's path.
_float_free = msgspec.json.Decoder(float_hook=_no_float)


class _OpsBytes(Struct):
    ops: msgspec.Raw = msgspec.Raw(b"")


_ops_bytes = msgspec.json.Decoder(_OpsBytes)
#: Digits to "9", every other byte to " ": a run of 16 nines is an integer that may be
#: outside the exact range (or a long digit string), which the full path decides.
_DIGIT_RUNS = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"9" * 16


def _canonical_md5(body: bytes, ops: list[Any]) -> str | None:
    """The checksum of ``ops`` from the bytes as sent, when those bytes are already their
    canonical form: ``ops`` decoded without a float, no character outside the BMP, no
    16-digit number, and msgspec's sorted encoding of the decoded value equal to the bytes
    (which makes them RFC 8785's, as :func:`page_checksum` explains). ``None``: the caller
    canonicalises (section 4.2), as for any other body."""
    sent = bytes(_ops_bytes.decode(body).ops)
    if sent.translate(None, _BMP_BYTES) or _LONG_NUMBER in sent.translate(_DIGIT_RUNS):
        return None
    if _sorted_encoder.encode(ops) != sent:
        return None
    return hashlib.md5(sent, usedforsecurity=False).hexdigest()


def outbox_checksum(ops: list[Op]) -> str:
    """:func:`~fynlo_sync.ops.ops_checksum` of ops this side validated when they were made
    (a terminal's outbox: :func:`~fynlo_sync.canonical.check_value` refused floats, lone
    surrogates and integers out of range before the op was written).

    Their canonical bytes then come from msgspec's sorted-key encoding in one C pass, as for
    :func:`page_checksum`; where a character outside the BMP or a 16-digit number appears,
    the full canonicaliser decides (and refuses what it must), so the answer is always
    ``ops_checksum(ops)`` (``tests/core/test_batch_bytes.py`` checks both)."""
    fast = _sorted_encoder.encode(ops)
    if fast.translate(None, _BMP_BYTES) or _LONG_NUMBER in fast.translate(_DIGIT_RUNS):
        return ops_checksum(ops)
    return hashlib.md5(fast, usedforsecurity=False).hexdigest()


#: The reference skew allowance: how far ahead of the server's clock an op's HLC may be.
DEFAULT_MAX_SKEW_MS = 300_000


def check_clock(batch: Batch, now_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> None:
    """Refuse a batch holding an op whose HLC's milliseconds are more than ``max_skew_ms``
    ahead of ``now_ms`` (``docs/protocol.md`` 5.2, 8.2 step 12a): such a terminal would win
    every last-writer-wins contest until the others' clocks caught up."""
    bound = now_ms + max_skew_ms
    for index, op in enumerate(batch.ops):
        ms = int(op.hlc, 16) >> 16
        if ms > bound:
            raise ClockAheadError(
                f"op {index} has an HLC {ms - now_ms} ms ahead of the server's clock; the "
                f"allowance is {max_skew_ms} ms: fix this terminal's clock",
                index=index,
                max_skew_ms=max_skew_ms,
            )


#: Decodes a whole batch straight into its Structs (C speed), refusing a float where any
#: value may stand: the common case of :func:`decode_batch`, tried first.
_typed_batch = msgspec.json.Decoder(Batch, float_hook=_no_float)
#: What a batch's sorted encoding has after its ``ops`` array (``protocol`` is checked).
_TAIL = b',"protocol":%d}' % PROTOCOL_VERSION


def _fast_batch(body: bytes, max_ops: int, limits: Limits) -> Batch | None:
    """The batch when ``body`` is the common case, in one C pass and a walk of the ops'
    values: it decodes straight into a :class:`Batch` without a float (a nesting too deep
    for the decoder raises ``RecursionError``, and goes to the full path like any other
    failure), speaks this protocol version, has at most ``max_ops`` ops, is byte for byte
    the sorted encoding of what it decoded to (so no unknown member, no whitespace, and the
    ``ops`` bytes are their canonical form when no character outside the BMP appears:
    :func:`page_checksum` explains why), its ``ops`` bytes have the MD5 it claims, and the
    ops' values are plain (:func:`_plain`: every integer in the exact range, nesting within
    ``limits.max_depth``, and no string or field that could be over a limit). Then the full
    path of :func:`decode_batch` accepts it too and decodes the same value; ``None``:
    anything else, and the full path decides (and names the problem)."""
    try:
        batch = _typed_batch.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if batch.protocol != PROTOCOL_VERSION or len(batch.ops) > max_ops:
        return None
    if _sorted_encoder.encode(batch) != body:
        return None
    # The sorted members: checksum, node_id, ops, protocol.
    head = b'{"checksum":%b,"node_id":%b,"ops":' % (
        _sorted_encoder.encode(batch.checksum),
        _sorted_encoder.encode(batch.node_id),
    )
    if not (body.startswith(head) and body.endswith(_TAIL)):
        return None
    sent = body[len(head) : len(body) - len(_TAIL)]
    if not sent.isascii() and sent.translate(None, _BMP_BYTES):
        return None
    if hashlib.md5(sent, usedforsecurity=False).hexdigest() != batch.checksum:
        return None
    if not _plain(batch.ops, limits, len(body) > limits.max_string_bytes):
        return None
    return batch


def _plain(ops: list[Op], limits: Limits, large: bool) -> bool:
    """Whether the values of every op's ``fields`` and ``args`` pass the checks the full
    path makes on them (section 4: integers within -(2**53-1)..2**53-1; section 22: depth,
    string and field sizes) without making them: every integer in range, and either the
    body is small (``large`` false: then no string or field value can be over a limit, for
    each is a part of the body) with nesting within the depth limit, or every member name
    and value is a short string or a plain scalar (encoded, a string of n characters takes
    at most 6n + 2 bytes, its UTF-8 at most 4n). ``False``: the full path decides."""
    strings, fields = limits.max_string_bytes, limits.max_field_bytes
    if large and fields < 32:
        return False
    low, high = -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER
    for op in ops:
        for values in (op.fields, op.args):
            if not values:
                continue
            for name, value in values.items():
                kind = type(value)
                if kind is str:
                    if large and (len(value) * 4 > strings or len(value) * 6 + 2 > fields):
                        return False
                elif kind is int:
                    if not low <= value <= high:
                        return False
                elif kind is dict or kind is list:
                    if large or not _nested_plain(value, limits.max_depth):
                        return False
                elif not (value is None or kind is bool):
                    return False
                if large and len(name) * 4 > strings:
                    return False
    return True


def _nested_plain(value: Any, max_depth: int) -> bool:
    """Whether a container value of a field (at level :data:`FIELDS_LEVEL` + 1 of the body)
    nests within ``max_depth`` and holds only integers in the exact range and other plain
    JSON values (iterative: never recurses)."""
    low, high = -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER
    stack: list[tuple[Any, int]] = [(value, FIELDS_LEVEL + 1)]
    while stack:
        item, level = stack.pop()
        if level > max_depth:
            return False
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, level + 1))
            elif kind is int:
                if not low <= child <= high:
                    return False
            elif not (child is None or kind is bool or kind is str):
                return False
    return True


def decode_batch(
    body: bytes, *, max_ops: int = DEFAULT_MAX_BATCH, limits: Limits = DEFAULT_LIMITS
) -> Batch:
    """Decode and verify a push body (envelope, version, size, floats, checksum, op shapes,
    the limits of ``limits``: depth before parsing, the rest once the ops are decoded; see
    ``docs/protocol.md`` sections 8.2 and 22). Raises a typed :class:`PeerError` naming the
    problem. The rules over the decoded batch (node, seq continuity) are
    :func:`check_batch`'s, which the replica runs once."""
    quick = _fast_batch(body, max_ops, limits)
    if quick is not None:
        return quick
    check_depth(body, limits.max_depth)
    fast = True
    try:
        raw = _float_free.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        fast = False
        try:
            raw = _generic.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MalformedError("a batch must be a JSON object")
    version = raw.get("protocol")
    if type(version) is not int:
        raise MalformedError("the batch has no integer `protocol` member", field="protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolVersionError(
            f"protocol version {version} is not supported; this side speaks {PROTOCOL_VERSION}",
            supported=[PROTOCOL_VERSION],
        )
    ops = raw.get("ops")
    if not isinstance(ops, list):
        raise MalformedError("the batch has no `ops` array", field="ops")
    if len(ops) > max_ops:
        raise BatchTooLargeError(f"batch has {len(ops)} ops; the limit is {max_ops}", limit=max_ops)
    claimed = raw.get("checksum")
    if type(claimed) is not str:
        raise MalformedError("the batch has no string `checksum` member", field="checksum")
    actual = _canonical_md5(body, ops) if fast else None
    if actual is None:
        try:
            actual = checksum(ops)
        except InvalidValueError as exc:
            raise InvalidValueError(exc.detail.replace("$", "$.ops", 1), **exc.extra) from exc
    if actual != claimed:
        raise ChecksumMismatchError(
            f"checksum {claimed!r} does not match the ops (their MD5 is {actual!r})",
            expected=actual,
        )
    try:
        batch = msgspec.convert(raw, Batch)
    except msgspec.ValidationError as exc:
        raise MalformedError(f"invalid batch: {exc}") from exc
    if len(body) > limits.max_string_bytes:  # else no string or field can be over a limit
        for index, op in enumerate(batch.ops):
            check_value_limits(op.fields, f"$[{index}].fields", limits, depth=False)
            check_value_limits(op.args, f"$[{index}].args", limits, depth=False)
    return batch
